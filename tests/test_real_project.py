"""The real-project flow (``taskmill.testing.real_project``) as a test: taskmill on
python-humanize with its real test suite as checks, three epics, a merge conflict, a retry,
SIGINT mid-run and a second run. Skipped, saying how to get it, when the project is not in
the cache (``make real-project`` or ``make test`` downloads it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from taskmill.testing.real_project import run_flow
from taskmill.testing.real_project_cache import Cache, default_cache_dir

pytestmark = pytest.mark.slow


def test_real_project_flow(tmp_path: Path) -> None:
    cache = Cache(default_cache_dir())
    reason = cache.missing_reason()
    if reason is not None:
        pytest.skip(reason)
    report = run_flow(cache, tmp_path / "work", env=dict(os.environ))
    assert report.failed == [], report.render()
