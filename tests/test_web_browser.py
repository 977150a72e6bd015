"""The dashboard page in a real headless Chromium (Debian's /usr/bin/chromium), driven with the
Python ``playwright`` package against ``taskmill serve`` started as a subprocess on 127.0.0.1.

Screenshots go to ``test-artifacts/`` (git-ignored) for a person to look at; the measured
CLI-to-screen latencies go to ``test-artifacts/web-latency.txt``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM = Path(os.environ.get("TASKMILL_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
PY = sys.executable
LIVE_LIMIT_S = 1.0

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) "
                "to run the dashboard's browser tests", allow_module_level=True)
playwright_sync = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[dev]')")

from taskmill.ledger import Ledger  # noqa: E402
from test_web_api import DIFF_MARKER, Seed, _start_server, _stop_server, seed_project  # noqa: E402

Page = Any


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    with playwright_sync.sync_playwright() as p:
        # a persistent context gets its own fresh --user-data-dir
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900})
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    pg = browser.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))

    def on_console(msg: Any) -> None:
        # expected: the 409 the actions test asks for, the 403 for a log outside .taskmill/,
        # and the stream dropping at shutdown
        expected = ("status of 409", "status of 403", "net::ERR_")
        if msg.type == "error" and not any(e in msg.text for e in expected):
            errors.append(msg.text)

    pg.on("console", on_console)
    try:
        yield pg
    finally:
        pg.close()
    assert not errors, f"the page logged errors: {errors}"


class Served:
    def __init__(self, seed: Seed) -> None:
        self.seed = seed
        self.proc, self.info = _start_server(seed.root)
        self.url = self.info["url"].rstrip("/")

    def stop(self) -> None:
        _stop_server(self.proc)


@pytest.fixture
def served(git_repo: Path) -> Iterator[Served]:
    server = Served(seed_project(git_repo, extra_tasks=30))
    try:
        yield server
    finally:
        server.stop()


def shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=False)
    return path


def record_latency(name: str, seconds: float) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    with (ARTIFACTS / "web-latency.txt").open("a", encoding="utf-8") as fh:
        fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {name}: {seconds * 1000:.0f} ms\n")


def taskmill_cli(repo: Path, *args: str) -> None:
    """Run the CLI as another process."""
    subprocess.run([PY, "-m", "taskmill", *args], cwd=repo, check=True, capture_output=True)


def shown_after_commit(page: Page, repo: Path, task_id: str, condition: str) -> float:
    """Seconds from the ledger commit of the task's last change to the page showing it.

    The page notes the time (Date.now(), on the same machine's clock) in the animation frame
    where ``condition`` first holds; the commit time is the ``ts`` of the task's last audit
    event.
    """
    from datetime import datetime

    handle = page.wait_for_function(f"({condition}) ? Date.now() : false", timeout=5000,
                                    polling="raf")
    shown_ms = float(handle.json_value())
    led = Ledger.open(repo / ".taskmill" / "taskmill.db", prefix="tm")
    try:
        ts = led.events(task_id)[-1].ts
    finally:
        led.close_db()
    committed = datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    return shown_ms / 1000 - committed


def wait_live(page: Page) -> None:
    page.wait_for_selector("#live.on", timeout=30_000)


# -- the graph --------------------------------------------------------------------------------


def test_graph_renders_every_task_and_dependency(page: Page, served: Served) -> None:
    seed = served.seed
    expected = len(seed.ids) - 1  # the tombstone is not drawn
    page.goto(served.url + "/")
    page.wait_for_selector("#graph-count[data-nodes]")
    assert page.locator("svg.graph g.node").count() == expected
    assert page.get_attribute("#graph-count", "data-nodes") == str(expected)
    api_graph = json.loads(page.evaluate("fetch('/api/graph').then(r => r.text())"))
    assert page.locator("svg.graph path.edge").count() == len(api_graph["edges"]) >= 5
    node = page.locator(f"svg.graph g.node[data-id='{seed['flaky']}']")
    assert "s-blocked" in (node.get_attribute("class") or "")
    assert "s-ready" in (page.locator(f"g.node[data-id='{seed['ready']}']").get_attribute("class") or "")
    wait_live(page)
    shot(page, "graph.png")

    # filter by status, then by label
    page.goto(served.url + "/#/graph?status=open")
    page.wait_for_function("document.querySelectorAll('svg.graph g.node').length > 0 && "
                           "[...document.querySelectorAll('svg.graph g.node')]"
                           ".every(n => n.dataset.status === 'open')")
    page.select_option("#label-filter", "ui")  # the epic and the ready task
    page.wait_for_function("document.querySelectorAll('svg.graph g.node').length === 2")
    assert "label=ui" in page.evaluate("location.hash")
    page.goto(served.url + "/#/graph?label=core&status=closed")
    page.wait_for_function("document.querySelectorAll('svg.graph g.node').length === 1")
    assert page.locator(f"svg.graph g.node[data-id='{seed['parse']}']").count() == 1

    # zoom and pan change the view; a click opens the task
    page.goto(served.url + "/#/graph")
    page.wait_for_function(f"document.querySelectorAll('svg.graph g.node').length === {expected}")
    before = page.get_attribute("#graph-root", "transform")
    box = page.locator("svg.graph").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -400)
    page.wait_for_function(f"document.getElementById('graph-root').getAttribute('transform') !== {json.dumps(before)}")
    zoomed = page.get_attribute("#graph-root", "transform")
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 120, box["y"] + box["height"] / 2 + 40, steps=5)
    page.mouse.up()
    assert page.get_attribute("#graph-root", "transform") != zoomed
    page.locator("button[title=fit]").click()
    page.locator(f"svg.graph g.node[data-id='{seed['parse']}']").click()
    page.wait_for_selector("#task-title")
    assert page.inner_text("#task-title") == "Parse the config file"
    assert page.evaluate("location.hash") == f"#/task/{seed['parse']}"


def test_graph_of_a_few_hundred_tasks(page: Page, git_repo: Path) -> None:
    server = Served(seed_project(git_repo, extra_tasks=300))
    try:
        expected = len(server.seed.ids) - 1
        start = time.monotonic()
        page.goto(server.url + "/")
        page.wait_for_function(
            f"document.querySelectorAll('svg.graph g.node').length === {expected}",
            timeout=30_000)
        elapsed = time.monotonic() - start
        record_latency(f"graph of {expected} tasks, page load to drawn", elapsed)
        assert elapsed < 5.0
        shot(page, "graph-300.png")
        box = page.locator("svg.graph").bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + 200, box["y"] + 150)
        page.mouse.wheel(0, -350)
        page.wait_for_timeout(200)
        shot(page, "graph-300-zoomed.png")
    finally:
        server.stop()


# -- the task page ----------------------------------------------------------------------------


def test_task_page_shows_attempts_diff_checks_and_log(page: Page, served: Served) -> None:
    seed = served.seed
    page.goto(f"{served.url}/#/task/{seed['parse']}")
    page.wait_for_selector("#task-title")
    assert page.inner_text("#task-title") == "Parse the config file"
    attempts = page.locator("details.attempt")
    assert attempts.count() == 2
    # the latest attempt with a commit is open and shows the diff `git show` produced
    diff = page.locator(f"details.attempt[data-attempt='{seed.attempts['parse2']}'] pre.diff")
    diff.wait_for()
    text = diff.inner_text()
    assert DIFF_MARKER in text and "+++ b/config.py" in text
    assert seed.commit in text
    summary = page.locator(f"details.attempt[data-attempt='{seed.attempts['parse2']}'] > summary")
    s = summary.inner_text()
    assert "passed" in s and "claude" in s and "sonnet" in s and "$0.0080" in s and "1m 0s" in s
    shot(page, "task.png")
    # the agent log, read from .taskmill/logs by the server
    log = page.locator(f"details[data-log='{seed.attempts['parse2']}:agent']")
    log.locator("summary").click()
    page.wait_for_function(
        f"document.querySelector(\"details[data-log='{seed.attempts['parse2']}:agent'] pre\")"
        ".textContent.includes('switched to tomllib')")
    # the failed attempt: its check output and failure
    first = page.locator(f"details.attempt[data-attempt='{seed.attempts['parse1']}']")
    first.locator("summary").click()
    first.locator(".check").first.wait_for()
    assert "FAILED test_parse_empty" in first.inner_text()
    assert "1 failed: test_parse_empty" in first.inner_text()
    # fields and dependencies both ways
    assert page.locator("[data-field=status]").get_attribute("data-value") == "closed"
    assert seed["cli"] in page.inner_text("#task-side")
    page.locator(f"details.attempt[data-attempt='{seed.attempts['parse2']}'] pre.diff").scroll_into_view_if_needed()
    shot(page, "task-diff.png")

    # a log outside .taskmill/ is refused, and the page says so
    page.goto(f"{served.url}/#/task/{seed['flaky']}")
    page.wait_for_selector("#task-title")
    page.wait_for_function("document.getElementById('task-title').textContent.includes('flaky')")
    outside = page.locator(f"details.attempt[data-attempt='{seed.attempts['flaky1']}']")
    outside.locator("details.sub > summary").click()
    page.wait_for_function(
        f"document.querySelector(\"details[data-log='{seed.attempts['flaky1']}:agent'] pre\")"
        ".textContent.includes('[forbidden]')")
    assert "only files under .taskmill/ are served" in outside.inner_text()


def test_actions_from_the_page(page: Page, served: Served) -> None:
    seed = served.seed
    page.goto(f"{served.url}/#/task/{seed['flaky']}")
    page.wait_for_selector("#unblock")
    wait_live(page)
    page.fill("#comment-text", "Give the network test a longer timeout.")
    page.click("#comment-send")
    page.wait_for_selector("text=Give the network test a longer timeout.")
    assert page.input_value("#comment-text") == ""
    page.click("#unblock")
    page.wait_for_function("document.querySelector('[data-field=status]').dataset.value === 'open'")
    page.select_option("#priority-select", "3")  # sent at once
    page.wait_for_function("document.querySelector('[data-field=priority]').dataset.value === '3'")
    # an error from the API is shown with its code
    page.goto(f"{served.url}/#/task/{seed['parse']}")
    page.wait_for_selector("#reopen")
    page.click("#reopen")
    page.wait_for_function("document.querySelector('[data-field=status]').dataset.value === 'open'")
    shot(page, "task-actions.png")
    # changes need the dashboard's token (the page carries it), on loopback too
    result = page.evaluate("""async (id) => {
        const token = document.querySelector('meta[name="taskmill-token"]').content;
        const r = await fetch(`/api/tasks/${id}/reopen`, {method: 'POST', body: '{}',
            headers: {'Content-Type': 'application/json', 'Authorization': 'Bearer ' + token}});
        return [r.status, (await r.json()).error.code];
    }""", seed["parse"])
    assert result == [409, "conflict"]
    without = httpx.post(f"{served.url}/api/tasks/{seed['parse']}/reopen", json={}, timeout=10)
    assert without.status_code == 401


def test_now_page_and_pause(page: Page, served: Served) -> None:
    seed = served.seed
    page.goto(f"{served.url}/#/now")
    page.wait_for_selector("#workers")
    wait_live(page)
    workers = page.inner_text("#workers")
    assert seed["cli"] in workers and "agent turn 1" in workers
    assert seed["merge"] in page.inner_text("#merge-queue")
    assert seed["flaky"] in page.inner_text("#blocked")
    assert "circuit breaker" in page.inner_text("#blocked")
    assert "claude" in page.inner_text("#now") and "gpt-5" in page.inner_text("#now")
    shot(page, "now.png")
    page.click("#pause-toggle")
    page.wait_for_selector("#mill-state.paused")
    assert (seed.root / ".taskmill" / "run" / "paused").exists()
    page.click("#pause-toggle")
    page.wait_for_selector("#mill-state.running")
    assert not (seed.root / ".taskmill" / "run" / "paused").exists()
    # a pause made outside the page (another dashboard, a person) shows up live
    (seed.root / ".taskmill" / "run" / "paused").write_text("", encoding="utf-8")
    page.wait_for_selector("#mill-state.paused", timeout=3000)
    # a mill event appended to the events file shows up live
    with (seed.root / ".taskmill" / "run" / "events.ndjson").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"ts": "2026-01-01T10:00:09Z", "event": "merge_rejected",
                             "task": seed["merge"], "reason": "conflict"}) + "\n")
    page.wait_for_function(
        "document.getElementById('workers').textContent.includes('merge rejected')", timeout=3000)
    assert page.locator("#merge-queue").count() == 0


# -- live updates from another process ----------------------------------------------------------


def test_cli_changes_appear_without_reload(page: Page, served: Served) -> None:
    seed = served.seed
    tid = seed["ready"]
    page.goto(f"{served.url}/#/task/{tid}")
    page.wait_for_selector("[data-field=priority]")
    wait_live(page)
    page.evaluate("window.__marker = 'same page'")
    assert page.get_attribute("[data-field=priority]", "data-value") == "3"

    taskmill_cli(seed.root, "update", tid, "--priority", "0")
    latency = shown_after_commit(page, seed.root, tid,
                                 "document.querySelector('[data-field=priority]')"
                                 ".dataset.value === '0'")
    record_latency("task page: taskmill update --priority 0, commit to screen", latency)
    assert page.evaluate("window.__marker") == "same page"  # no reload
    assert latency < LIVE_LIMIT_S, f"the change took {latency:.3f}s to reach the page"

    taskmill_cli(seed.root, "comment", tid, "from the CLI")
    latency = shown_after_commit(page, seed.root, tid,
                                 "document.getElementById('task-data').textContent"
                                 ".includes('from the CLI')")
    record_latency("task page: taskmill comment, commit to screen", latency)
    assert latency < LIVE_LIMIT_S

    page.goto(f"{served.url}/#/graph")
    page.wait_for_selector(f"svg.graph g.node[data-id='{tid}']")
    page.evaluate("window.__marker = 'graph page'")
    taskmill_cli(seed.root, "close", tid)
    latency = shown_after_commit(
        page, seed.root, tid,
        f"document.querySelector(\"svg.graph g.node[data-id='{tid}']\").dataset.status === 'closed'")
    record_latency("graph: taskmill close, commit to screen", latency)
    assert page.evaluate("window.__marker") == "graph page"
    assert latency < LIVE_LIMIT_S, f"the change took {latency:.3f}s to reach the graph"
    shot(page, "graph-after-close.png")


def test_an_epic_shows_its_progress_and_children(page: Page, served: Served) -> None:
    """Issue 8, item 7: the graph's epic node shows n/m children closed; its page lists them."""
    seed = served.seed
    page.goto(served.url + "/")
    progress = page.locator(f"svg.graph g.node[data-id='{seed['epic']}'] g.progress")
    progress.wait_for()
    task = json.loads(page.evaluate(f"fetch('/api/tasks/{seed['epic']}').then(r => r.text())"))
    assert task["children"] >= 1
    assert progress.get_attribute("data-children") == str(task["children"])
    assert progress.get_attribute("data-closed") == str(task["children_closed"])
    page.goto(f"{served.url}/#/task/{seed['epic']}")
    page.wait_for_selector("#children li")
    assert page.locator("#children li").count() == task["children"]
    assert f"{task['children_closed']} of {task['children']} closed" in page.inner_text("#task-data")


def test_workflows_page_groups_formula_instances_and_shows_orders(page: Page,
                                                                  served: Served) -> None:
    from test_web_contract import _seed_workflows

    _seed_workflows(served.seed.root)
    page.goto(f"{served.url}/#/workflows")
    page.wait_for_selector("#orders")
    orders = page.inner_text("#orders")
    assert "hourly" in orders and "every 1h" in orders and "byhand" in orders
    assert "manual: fires only" in orders
    groups = page.locator("#formula-instances details.instance")
    assert groups.count() == 2  # the pour, and the order's
    text = page.inner_text("#formula-instances")
    assert "two" in text and "0 of 2 closed" in text and "poured by order hourly" in text
    shot(page, "workflows.png")
