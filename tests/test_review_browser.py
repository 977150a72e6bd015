"""The dashboard's approvals page in headless Chromium: tasks whose checks and review passed
wait for approval (holding no worker); one is approved from the page and lands on the next
run, one is sent back with a comment that its next prompt shows."""

from __future__ import annotations

import json
from pathlib import Path

from mill_helpers import MillRepo, agent_script
from taskmill.review.approval import approval_state
from taskmill.review.book import findings
from test_web_api import _start_server, _stop_server
from test_web_browser import Page, browser, page, shot  # noqa: F401  (fixtures)

WORKER = """
(WT / f"{TASK}.txt").write_text(f"{TASK} iteration {ITER}\\n")
"""
REVIEWER = """
print(json.dumps({"findings": [{"file": "x.txt", "line_start": 1, "line_end": 1,
    "severity": "nit", "confidence": 0.7, "title": "trailing newline", "explanation": "meh"}]}))
"""


def test_approve_and_send_back_from_the_page(page: Page, tmp_path: Path) -> None:  # noqa: F811
    repo = MillRepo(tmp_path, checks=["true"])
    worker = agent_script(tmp_path / "worker.py", WORKER, spy=repo.spy)
    reviewer = agent_script(tmp_path / "reviewer.py", REVIEWER, spy=tmp_path / "rspy")
    config = repo.root / ".taskmill" / "config.toml"
    config.write_text(config.read_text() + "\n[agents.worker]\nadapter = \"exec\"\n"
                      f"command = {json.dumps([worker])}\n\n[agents.reviewer]\n"
                      f"adapter = \"exec\"\ncommand = {json.dumps([reviewer])}\n\n[review]\n\n"
                      "[merge]\nrequire_approval = true\n", encoding="utf-8")
    repo.git("commit", "-qam", "approval config")
    repo.create("tm-a", "first change")
    repo.create("tm-b", "second change")
    result = repo.run("--agent", "worker", "-j", "1")
    for tid in ("tm-a", "tm-b"):
        state = approval_state(repo.ledger, tid)
        assert state is not None and state.status == "awaiting", result.describe()

    proc, info = _start_server(repo.root)
    try:
        url = info["url"].rstrip("/")
        page.goto(url + "/#/review")
        card = page.locator(".approval[data-task='tm-a']")
        card.wait_for(timeout=30_000)
        assert page.locator(".approval").count() == 2
        text = card.inner_text()
        assert "tm-a.txt" in text and "+tm-a iteration 1" in text  # the diff
        assert "true" in text  # the checks
        assert "trailing newline" in text  # the AI finding
        assert page.locator("#hit-rate").count() == 1
        shot(page, "approvals.png")

        card.locator("button.approve").click()
        page.wait_for_function("document.querySelectorAll('.approval').length === 1")
        other = page.locator(".approval[data-task='tm-b']")
        # dismiss the reviewer's nit on tm-b from the page, with a reason
        other.locator(".finding .dismiss-reason").fill("the newline is wanted")
        other.locator(".finding button.dismiss-finding").click()
        page.wait_for_selector(".approval[data-task='tm-b'] .finding.f-dismissed")
        other.locator("textarea").fill("Say what the file is for, in its first line.")
        other.locator("button.send-back").click()
        page.wait_for_selector("#no-approvals")
    finally:
        _stop_server(proc)

    assert approval_state(repo.ledger, "tm-a").status == "approved"  # type: ignore[union-attr]
    [nit] = findings(repo.ledger, task_id="tm-b")
    assert (nit.fate, nit.reason) == ("dismissed", "the newline is wanted")
    result = repo.run("--agent", "worker", "-j", "1")
    assert repo.task("tm-a")["status"] == "closed", result.describe()
    assert repo.git("show", "main:tm-a.txt") == "tm-a iteration 1\n"
    prompts = sorted(repo.spy.glob("prompt-tm-b-*.stdin"))
    assert len(prompts) == 2
    assert "Say what the file is for, in its first line." in prompts[-1].read_text()
