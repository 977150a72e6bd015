"""The door for people, in a real headless Chromium (as tests/test_web_browser.py): a person
opens the page with their own token (``taskmill serve --mill --users FILE``: the mill is
``taskmill watch`` in the server), asks for work with a request template, watches the scripted
agent work it (the status line moves without a reload) until it waits for approval (``[merge]
require_approval = true``), opens the approval (the diff, the checks, the reviewer's
findings), approves it, sees it land, and the audit trail names them; a form missing a
required field shows the error and creates nothing; at 390 px wide a person sends a task back
with a comment (its next prompt has it) and approves it.

Screenshots go to the test's tmp_path (``door-*.png``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from mill_helpers import MillRepo, git
from test_web_browser import CHROMIUM, CHROMIUM_ARGS, playwright_sync

PY = sys.executable
ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdef"
UI_TEXT = '''\
description = "Change a piece of text people see"

[[fields]]
name = "where"
label = "Where is the text?"
required = true
help = "The screen or message, e.g. the footer"

[[fields]]
name = "new_text"
label = "The new text"
kind = "textarea"
required = true

[task]
title = "UI text: {{ where }}"
description = "Make {{ where }} say: {{ new_text }}"
checks = ["grep -q Goodbye strings.txt"]
labels = ["ui-text"]
'''

FINDING = {"file": "strings.txt", "line_start": 1, "line_end": 1, "severity": "nit",
           "confidence": 0.8, "title": "a warmer goodbye", "explanation": "say it kindly"}

Page = Any


@dataclass
class Door:
    repo: MillRepo
    proc: subprocess.Popen[str]
    base: str

    def api(self, token: str = ALICE) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=10,
                            headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def door(tmp_path: Path) -> Iterator[Door]:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"tasks": {
        # the first turn gets the text wrong (its check fails), the second gets it right
        "footer": {"1": {"files": {"strings.txt": "See you\n"}, "commit": True, "sleep": 1},
                   "*": {"files": {"strings.txt": "Goodbye\n"}, "commit": True, "sleep": 1}},
        # right at once (and again after a send-back: the scripted agent reads no prompt)
        "banner": {"files": {"strings.txt": "Goodbye\n"}, "commit": True, "sleep": 1}}}))
    review = tmp_path / "review.json"
    review.write_text(json.dumps({"default": {"stdout": json.dumps({"findings": [FINDING]}) + "\n"}}))
    repo = MillRepo(tmp_path, run={"agent": "robot"},
                    agents={"robot": {"adapter": "scripted", "script": str(script)},
                            "reviewer": {"adapter": "scripted", "script": str(review)}})
    config = repo.root / ".taskmill" / "config.toml"
    config.write_text(config.read_text(encoding="utf-8")
                      + "\n[review]\n\n[merge]\nrequire_approval = true\n", encoding="utf-8")
    folder = repo.root / ".taskmill" / "templates"
    folder.mkdir()
    (folder / "ui-text.toml").write_text(UI_TEXT, encoding="utf-8")
    orders = repo.root / ".taskmill" / "orders"  # an order the watch waits for (a year away)
    orders.mkdir()
    (orders / "new-year.toml").write_text(
        '[order]\ncreate = { title = "review the year" }\ntrigger = "cron"\n'
        'schedule = "0 3 1 1 *"\n', encoding="utf-8")
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-q", "-m", "a request template")
    users = tmp_path / "config" / "taskmill" / "users.toml"
    users.parent.mkdir(parents=True)
    users.write_text(f'alice = "{ALICE}"\nbob = "{BOB}"\n', encoding="utf-8")
    users.chmod(0o600)
    proc = subprocess.Popen(
        [PY, "-m", "taskmill", "serve", "--port", "0", "--json", "--mill", "--users",
         str(users)], cwd=repo.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise AssertionError(f"taskmill serve did not start: {proc.communicate()[1]}")
    info = json.loads(line)
    assert info["users"] == ["alice", "bob"] and info["mill"] is True
    try:
        yield Door(repo, proc, info["url"].split("?")[0].rstrip("/"))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=40)  # the mill drains first (as taskmill run's Ctrl-C)
        finally:
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_as(chromium: Any, door: Door, token: str, *, width: int = 1280,
            height: int = 860) -> tuple[Any, Page, list[str]]:
    context = chromium.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" and not any(
        e in msg.text for e in ("status of 400", "net::ERR_")) else None)
    page.goto(f"{door.base}/?token={token}")  # once: the page then has a cookie
    page.wait_for_selector("#live.on", timeout=30_000)
    return context, page, errors


def fill_request(page: Page, where: str | None, new_text: str) -> None:
    page.goto(page.url.split("#")[0] + "#/new")
    page.wait_for_selector("#template-fields #field-where")
    if where is not None:
        page.fill("#field-where", where)
    page.fill("#field-new_text", new_text)


def status_is(page: Page, text: str, *, starts: bool = False, timeout: float = 30_000) -> None:
    """Wait until the task page's status line says ``text`` (drawn by the live stream)."""
    test = "startsWith" if starts else "includes"
    page.wait_for_function(
        f"(document.getElementById('status-line') || {{textContent: ''}}).textContent"
        f".{test}({json.dumps(text)})", timeout=timeout)


def mark(page: Page) -> None:
    """Mark the page's document: a reload would lose the mark (see :func:`same_document`)."""
    page.evaluate("window.doorMark = 'not reloaded'")


def same_document(page: Page) -> bool:
    return bool(page.evaluate("window.doorMark === 'not reloaded'"))


def audit(door: Door) -> list[dict[str, Any]]:
    """``taskmill log --json``: the audit trail."""
    out = door.repo.cli("log", "--json", "--limit", "1000")
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout))


def approval_card(page: Page, task_id: str) -> Any:
    """Open the approval from the task page (its "Review and approve" link)."""
    page.click("#open-approval")
    card = page.locator(f".approval[data-task='{task_id}']")
    card.wait_for(timeout=30_000)
    return card


def test_a_person_asks_for_work_approves_it_and_it_lands_named(
        door: Door, chromium: Any, tmp_path: Path) -> None:
    context, page, errors = open_as(chromium, door, ALICE)
    graph = context.new_page()  # a second tab on the graph: the task appears there at once
    graph.goto(f"{door.base}/#/graph")
    graph.wait_for_selector("#live.on", timeout=30_000)
    assert page.text_content("#person") == "as alice"
    page.wait_for_function(
        "document.getElementById('mill-toggle').textContent === 'Stop mill'")
    # serve --mill runs taskmill watch: the page says so, and when the next order fires
    page.wait_for_function("document.getElementById('mill-state').textContent"
                           ".startsWith('mill watching: next order ')")
    next_order = page.evaluate("state.service.next_order")
    assert next_order.endswith("-01-01T03:00:00.000000Z"), next_order
    mark(page)

    # a required field left empty: the error is on the form, nothing is created
    fill_request(page, None, "Goodbye")
    page.click("#request-submit")
    page.wait_for_function("document.getElementById('error-where').textContent !== ''")
    assert page.text_content("#error-where") == "Where is the text? is required"
    assert "invalid" in (page.get_attribute("#field-where", "class") or "")
    page.screenshot(path=str(tmp_path / "door-missing-field.png"))
    with door.api() as http:
        assert http.get("/api/tasks").json() == []

    # filled in: created as alice, shown on the graph at once, worked by the mill
    page.fill("#field-where", "the footer")
    page.click("#request-submit")
    page.wait_for_selector("#status-line")
    task_id = page.url.rsplit("/", 1)[1]
    graph.wait_for_selector(f'.node[data-id="{task_id}"]', timeout=5000)
    graph.screenshot(path=str(tmp_path / "door-graph.png"))
    # the status line moves without a reload: a failed first attempt, then the approval
    status_is(page, "attempt 2 of 5: the check `grep -q Goodbye strings.txt` failed")
    page.screenshot(path=str(tmp_path / "door-working.png"))
    status_is(page, "waiting for approval", starts=True)
    assert page.text_content("#status-line") == "waiting for approval"
    page.screenshot(path=str(tmp_path / "door-waiting.png"))
    assert not (door.repo.root / "strings.txt").exists()  # nothing landed yet

    # the approval: the diff, the checks, the reviewer's finding; approved from the page
    card = approval_card(page, task_id)
    text = card.inner_text()
    assert "strings.txt" in text and "+Goodbye" in text, text  # the diff
    assert "grep -q Goodbye strings.txt" in text, text  # the checks
    assert "a warmer goodbye" in text, text  # the review finding
    page.screenshot(path=str(tmp_path / "door-approval.png"), full_page=True)
    card.locator("button.approve").click()
    page.wait_for_selector("#no-approvals")

    # back on the task page (no reload): it lands
    page.evaluate(f"location.hash = '#/task/{task_id}'")
    status_is(page, "landed in ", starts=True)
    page.screenshot(path=str(tmp_path / "door-landed.png"))
    landed = page.text_content("#status-line") or ""
    head = git(door.repo.root, "rev-parse", "main").strip()
    assert landed == f"landed in {head[:7]}"
    assert (door.repo.root / "strings.txt").read_text() == "Goodbye\n"
    assert same_document(page)  # every change above came through the live stream

    # the person stops the mill from the page; the audit trail names them
    page.click("#mill-toggle")
    page.wait_for_function("document.getElementById('mill-toggle').textContent === 'Start mill'",
                           timeout=60_000)  # the stop's grace, on a loaded machine
    with door.api() as http:
        task = http.get(f"/api/tasks/{task_id}").json()
        assert task["labels"] == ["ui-text"] and task["checks"] == ["grep -q Goodbye strings.txt"]
        assert task["awaiting_approval"] is False
    trail = audit(door)
    mine = [(e["kind"], e["actor"]) for e in trail if e["task_id"] == task_id]
    assert mine[0] == ("created", "alice")
    assert ("approval_requested", "alice") not in mine  # the mill asked, not alice
    approvals = [e for e in trail if e["kind"] == "approved"]
    assert [(e["task_id"], e["actor"]) for e in approvals] == [(task_id, "alice")]
    assert ("mill_stopped", "alice") in {(e["kind"], e["actor"]) for e in trail}
    assert not errors, errors
    context.close()


def test_at_390px_a_person_sends_back_then_approves(door: Door, chromium: Any,
                                                    tmp_path: Path) -> None:
    context, page, errors = open_as(chromium, door, BOB, width=390, height=844)
    mark(page)
    fill_request(page, "the banner", "Goodbye")
    for selector in ("#template-select", "#field-where", "#request-submit", "#mill-toggle",
                     "#pause-toggle"):
        box = page.locator(selector).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, (
            selector, box)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(tmp_path / "door-390-form.png"), full_page=True)
    page.click("#request-submit")
    page.wait_for_selector("#status-line")
    task_id = page.url.rsplit("/", 1)[1]
    status_is(page, "waiting for approval", starts=True)

    # sent back with a comment: the task goes back to work with it in its next prompt
    comment = "Make it warmer: say Goodbye, friend"
    card = approval_card(page, task_id)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    card.locator("textarea.send-back-text").fill(comment)
    card.locator("button.send-back").click()
    page.wait_for_selector("#no-approvals")
    page.evaluate(f"location.hash = '#/task/{task_id}'")
    status_is(page, "waiting for approval", starts=True)  # the second round passed too
    logs = door.repo.root / ".taskmill" / "logs"
    prompts = [p.read_text(encoding="utf-8") for p in sorted(logs.rglob("prompt.md"))
               if "try" not in p.parent.name]  # the worker's prompts, not the reviewer's
    assert sum(comment in text for text in prompts) == 1, prompts

    # approved at 390 px: the button is on the screen, and works
    card = approval_card(page, task_id)
    button = card.locator("button.approve")
    # measured in one step in the page: a live refresh may draw the card again between a
    # handle's lookup and its measurement ("Element is not attached to the DOM")
    page.wait_for_function(
        """([id, width]) => {
          const card = document.querySelector(`.approval[data-task='${id}']`);
          const button = card && card.querySelector('button.approve');
          if (!button || !card.innerText.includes('+Goodbye')) return false;
          button.scrollIntoView({block: 'center'});
          const r = button.getBoundingClientRect();
          return r.width > 0 && r.left >= 0 && r.right <= width;
        }""", arg=[task_id, 390], timeout=30_000)  # the second round's diff, on the screen
    asked = [e for e in audit(door) if e["task_id"] == task_id
             and e["kind"] == "approval_requested"]
    assert len(asked) == 2
    page.screenshot(path=str(tmp_path / "door-390-approval.png"), full_page=True)
    button.click()
    page.wait_for_selector("#no-approvals")
    page.evaluate(f"location.hash = '#/task/{task_id}'")
    status_is(page, "landed in ", starts=True)
    assert page.evaluate("document.documentElement.scrollWidth <= 390 && (m =>"
                         " m.scrollWidth <= m.clientWidth)(document.querySelector('main'))"
                         ), page.evaluate(  # (a landed task's page: its commit hash too)
        "[...document.querySelectorAll('main *')].filter(e => e.getBoundingClientRect().right"
        " > 390).slice(-3).map(e => e.tagName + '.' + e.className + ': '"
        " + e.textContent.slice(0, 60))")
    assert (door.repo.root / "strings.txt").read_text() == "Goodbye\n"
    page.click("#pause-toggle")
    page.wait_for_function(
        "document.getElementById('pause-toggle').textContent === 'Resume mill'")
    page.screenshot(path=str(tmp_path / "door-390-landed.png"), full_page=True)
    assert same_document(page)
    trail = audit(door)
    kinds = [(e["kind"], e["actor"]) for e in trail if e["task_id"] == task_id]
    assert kinds[0] == ("created", "bob")
    assert ("approval_rejected", "bob") in kinds and ("approved", "bob") in kinds
    assert ("mill_paused", "bob") in {(e["kind"], e["actor"]) for e in trail}
    assert not errors, errors
    context.close()


HEADER_STATES = [
    "setPaused(false, false)",
    "setPaused(false, true)",
    "setPaused(true, true)",
    "setPaused(true, false)",
    "setPaused(false, true)",
    "setService({state: 'running', working: 12})",
    "setService({state: 'watching', next_order: '2027-01-01T03:00:00+00:00'})",
    "setService({state: 'stopping'})",
    "setService({state: 'stopped'})",
    "document.getElementById('live').textContent = 'reconnecting'",
    "document.getElementById('live').textContent = 'live'",
    "setService({state: 'running', working: 1})",
]
"""What the live stream changes in the page's header (the mill's badge, its buttons' labels,
the live mark), each as the page's own code draws it."""


@pytest.mark.parametrize("width", [390, 1280])
def test_the_headers_buttons_stay_put_while_the_mill_state_changes(
        door: Door, chromium: Any, width: int) -> None:
    """The mill's buttons do not move when what the header says of the mill changes: a
    person's tap (or a browser's click, a moment after it found the button) lands on the
    button it was aimed at, not on its neighbour (on a phone the header wraps: a longer
    badge before the buttons moved them, even onto the next line)."""
    context, page, errors = open_as(chromium, door, BOB, width=width, height=844)
    # every change drawn and measured in one task of the page's, so that nothing the live
    # stream itself says meanwhile (the server's own mill state) comes between them
    first, seen = page.evaluate(
        """(changes) => {
          const boxes = () => ['mill-toggle', 'pause-toggle'].map((id) => {
            const r = document.getElementById(id).getBoundingClientRect();
            return [r.left, r.top]; });
          const top = document.getElementById('top');
          setService({state: 'watching'});
          const first = boxes();
          return [first, changes.map((change) => {
            (0, eval)(change);
            return [change, boxes(), top.scrollWidth <= top.clientWidth]; })];
        }""", HEADER_STATES)
    for change, where, fits in seen:
        assert where == first, change
        assert fits, change
    assert not errors
    context.close()
