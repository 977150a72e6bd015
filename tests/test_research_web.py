"""The dashboard's research view in a real headless Chromium: the metric over experiments
(kept, discarded, crashed), the running best, the noise band, the table with diffs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright.sync_api")

from research_helpers import PY, ResearchRepo, example_edits, example_files
from test_web_api import _start_server, _stop_server
from test_web_browser import browser, page, shot  # noqa: F401


def test_research_view_draws_the_experiments(tmp_path: Path, page: Any) -> None:  # noqa: F811
    edits = example_edits()["edits"]
    state = tmp_path / "noise"
    research = {"branch": "research/sort", "editable": ["sortlib.py"],
                "metric": f"BENCH_NOISE=0.01 BENCH_NOISE_STATE={state} {PY} bench.py",
                "agent": "scripted-research", "baseline_runs": 3, "verify_runs": 1,
                "stop": {"experiments": 5}}
    script = {"edits": {"1": edits["1"], "2": edits["2"], "3": edits["3"], "4": edits["4"],
                        "5": edits["5"]}}
    repo = ResearchRepo(tmp_path, example_files(), research, script=script)
    repo.run()
    proc, info = _start_server(repo.root)
    try:
        page.goto(info["url"].rstrip("/") + "/#/research")
        page.wait_for_selector("#experiments tbody tr")
        assert page.locator("#experiments tbody tr").count() == 6
        assert page.locator("svg.research-chart circle.point.keep").count() == 1
        assert page.locator("svg.research-chart circle.point.discard").count() == 2
        assert page.locator("svg.research-chart text.point.crash").count() == 1
        assert page.locator("svg.research-chart path.running-best").count() == 1
        assert page.locator("svg.research-chart path.noise-band").count() == 1
        header = page.locator("#research p.muted").first.inner_text()
        assert "1 kept" in header and "1 crashed" in header and "noise" in header
        row = page.locator('#experiments tr[data-n="2"]')
        assert "keep" in row.inner_text() and "merge sort" in row.inner_text()
        row.locator("details summary").click()
        page.wait_for_selector('#experiments tr[data-n="2"] pre.diff')
        assert "Merge sort" in row.locator("pre.diff").inner_text()
        shot(page, "research-view.png")
    finally:
        _stop_server(proc)
