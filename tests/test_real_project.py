"""The real-project flow (``taskmill.testing.real_project``) as a test: taskmill on
python-humanize with its real test suite as checks, three epics, a merge conflict, a retry,
SIGINT mid-run and a second run. Skipped, saying how to get it, when the project is not in
the cache (``make real-project`` or ``make test`` downloads it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from taskmill.testing.real_project import run_flow
from taskmill.testing.real_project_agent import EditError, apply_edit, resolve_union
from taskmill.testing.real_project_cache import Cache, default_cache_dir


@pytest.mark.slow
def test_real_project_flow(tmp_path: Path) -> None:
    cache = Cache(default_cache_dir())
    reason = cache.missing_reason()
    if reason is not None:
        pytest.skip(reason)
    report = run_flow(cache, tmp_path / "work", env=dict(os.environ))
    assert report.failed == [], report.render()


# -- the flow's scripted agent ----------------------------------------------------------------


@pytest.mark.parametrize("base", ["", "||||||| base\nfrom a import old\n"])
def test_agent_resolves_a_conflict_keeping_both_sides(base: str) -> None:
    text = ("x = 1\n<<<<<<< HEAD\nfrom humanize.roman import roman\n" + base
            + "=======\nfrom humanize.percent import percentage\n>>>>>>> main\ny = 2\n")
    assert resolve_union(text) == ("x = 1\nfrom humanize.roman import roman\n"
                                   "from humanize.percent import percentage\ny = 2\n")


def test_agent_edits_are_idempotent(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text("a\nb\n")
    edit = {"op": "replace", "path": "m.py", "old": "b\n", "new": "b\nc\n"}
    assert apply_edit(tmp_path, edit) == "applied"
    assert apply_edit(tmp_path, edit) == "already"  # a redone turn changes nothing
    assert (tmp_path / "m.py").read_text() == "a\nb\nc\n"
    append = {"op": "append", "path": "m.py", "text": "d\n"}
    assert [apply_edit(tmp_path, append), apply_edit(tmp_path, append)] == ["applied", "already"]
    with pytest.raises(EditError, match="found it 0 times"):
        apply_edit(tmp_path, {"op": "replace", "path": "m.py", "old": "zz", "new": "yy"})
