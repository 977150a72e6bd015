"""The dashboard's JSON API (``taskmill serve``), driven with Starlette's TestClient over a
seeded ledger in a real git repository; the graph layout; the live-update watcher; and one
real server process streaming server-sent events while the CLI changes the ledger."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from conftest import run_git
from taskmill.clock import FixedClock, SystemClock, iso
from taskmill.ledger import Ledger
from taskmill.project import init as init_project
from taskmill.web import graph_layout
from taskmill.web.api import ROUTES, Broadcaster, MillLog, openapi_document
from taskmill.web.app import create_app

PY = sys.executable
DIFF_MARKER = "def parse_config(text):"


# -- a seeded project --------------------------------------------------------------------------


@dataclass
class Seed:
    root: Path
    ids: dict[str, str]
    commit: str
    attempts: dict[str, int]
    outside_log: Path

    def __getitem__(self, key: str) -> str:
        return self.ids[key]


def _attempt(led: Ledger, task_id: str, iteration: int, *, agent: str, model: str | None,
             started: str, ended: str | None, outcome: str | None, tin: int = 0, tout: int = 0,
             cost: float | None = None, commit: str | None = None, log_path: str | None = None,
             detail: dict[str, Any] | None = None) -> int:
    with led.transaction():
        cur = led.store.conn.execute(
            "INSERT INTO attempts (task_id, iteration, agent, model, started_at, ended_at, outcome,"
            " input_tokens, output_tokens, cost_usd, commit_sha, log_path, detail, run_id, lap)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'run1', 1)",
            (task_id, iteration, agent, model, started, ended, outcome, tin, tout, cost, commit,
             log_path, json.dumps(detail) if detail is not None else None))
        attempt_id = int(cur.lastrowid or 0)
        led.record("attempt_started", task_id, {"attempt": attempt_id, "iteration": iteration,
                                                "agent": agent, "model": model})
    return attempt_id


def seed_project(repo: Path, *, extra_tasks: int = 0) -> Seed:
    """A repository with a small, realistic backlog:

    - ``parse``: closed, landed; two attempts (failed checks, then passed with a real commit
      on ``taskmill/<id>`` and an agent log under ``.taskmill/logs/``)
    - ``cli``: in progress, waits on nothing; one running attempt (outcome NULL)
    - ``docs``: open, waits on ``cli`` (blocks) and is a child of ``epic``
    - ``flaky``: blocked by the mill, with the reason as its last comment; an attempt whose
      log path points outside ``.taskmill/``
    - ``merge``: in progress, in the merge queue
    - ``ready``: open and ready, label ``ui``
    - ``epic``: open epic, label ``ui``
    - ``gone``: a tombstone
    - ``extra_tasks`` more: a chain of three, then tasks that often wait on recent ones
    """
    clock = FixedClock(step=1.0)
    project = init_project(repo, {"USER": "seeder"}, prefix="tm", clock=clock)
    led = project.ledger
    ids: dict[str, str] = {}
    try:
        ids["epic"] = led.create("Config epic", issue_type="epic", labels=["ui"], priority=1).id
        ids["parse"] = led.create("Parse the config file", labels=["core"], priority=1,
                                  checks=["python -m pytest -q tests/test_config.py"]).id
        ids["cli"] = led.create("Use the config in the CLI", labels=["core"],
                                after=[ids["parse"]]).id
        ids["docs"] = led.create("Document the config", after=[ids["cli"]],
                                 parent=ids["epic"], labels=["docs"]).id
        ids["flaky"] = led.create("Fix the flaky network test", priority=0, issue_type="bug").id
        ids["merge"] = led.create("Add --verbose flag", priority=2).id
        ids["ready"] = led.create("Colour the output", priority=3, labels=["ui"]).id
        ids["gone"] = led.create("Old idea").id
        with led.transaction():  # as a Beads import leaves it (update refuses tombstone)
            led.store.conn.execute("UPDATE tasks SET status = 'tombstone' WHERE id = ?", (ids["gone"],))
        led.comment(ids["parse"], "Use tomllib, not a hand-written parser.", author="alice")

        # a real commit on the task branch: the diff the dashboard shows
        run_git(repo, "checkout", "-q", "-b", f"taskmill/{ids['parse']}")
        (repo / "config.py").write_text(f"{DIFF_MARKER}\n    return dict(line.split('=', 1)"
                                        " for line in text.splitlines())\n", encoding="utf-8")
        run_git(repo, "add", "config.py")
        run_git(repo, "commit", "-q", "-m", f"taskmill: {ids['parse']} iteration 2")
        commit = run_git(repo, "rev-parse", "HEAD").strip()
        run_git(repo, "checkout", "-q", "main")

        logs = project.paths.logs / ids["parse"]
        logs.mkdir(parents=True)
        log1 = logs / "lap1-iter1.log"
        log1.write_text("agent: reading the task\nagent: wrote a parser\n", encoding="utf-8")
        log2 = logs / "lap1-iter2.log"
        log2.write_text("agent: switched to tomllib\nagent: done\n", encoding="utf-8")
        log2.with_suffix(".checks.log").write_text("$ pytest\n3 passed\n", encoding="utf-8")
        log2.with_name(f"{log2.stem}.review-try1.log").write_text("not JSON\n", encoding="utf-8")
        log2.with_name(f"{log2.stem}.review-try2.log").write_text(
            '{"findings": []}\n', encoding="utf-8")
        outside = repo.parent / "outside.log"
        outside.write_text("secret\n", encoding="utf-8")

        attempts = {
            "parse1": _attempt(
                led, ids["parse"], 1, agent="claude", model="sonnet",
                started="2026-01-01T10:00:00.000000Z", ended="2026-01-01T10:02:30.000000Z",
                outcome="failed", tin=1200, tout=300, cost=0.012, log_path=str(log1),
                detail={"changed": True, "failure": "1 failed: test_parse_empty",
                        "failure_kind": "checks",
                        "checks": [{"command": "python -m pytest -q tests/test_config.py",
                                    "exit_code": 1, "ok": False, "duration_s": 1.5,
                                    "timed_out": False,
                                    "output_tail": "FAILED test_parse_empty"}]}),
            "parse2": _attempt(
                led, ids["parse"], 2, agent="claude", model="sonnet",
                started="2026-01-01T10:03:00.000000Z", ended="2026-01-01T10:04:00.000000Z",
                outcome="passed", tin=800, tout=200, cost=0.008, commit=commit,
                log_path=str(log2),
                detail={"changed": True, "checks": [{"command": "pytest", "exit_code": 0,
                                                     "ok": True, "duration_s": 0.9,
                                                     "timed_out": False,
                                                     "output_tail": "3 passed"}]}),
            "flaky1": _attempt(
                led, ids["flaky"], 1, agent="codex", model="gpt-5",
                started="2026-01-01T11:00:00.000000Z", ended="2026-01-01T11:00:40.000000Z",
                outcome="turn_failed", tin=500, tout=50, cost=0.004, log_path=str(outside),
                detail={"failure": "the agent exited with 1", "failure_kind": "turn"}),
            "cli1": _attempt(
                led, ids["cli"], 1, agent="claude", model=None,
                started=iso(SystemClock().now()), ended=None, outcome=None),
        }
        led.close(ids["parse"], f"landed {commit}", system=True)
        led.claim(ids["cli"], "mill:run1")
        led.claim(ids["merge"], "mill:run1")
        led.update(ids["flaky"], {"status": "blocked"})
        led.comment(ids["flaky"], "taskmill blocked this task: circuit breaker: the same "
                                  "failure 3 times", author="mill:run1",
                                  system=True)
        if extra_tasks:
            import random

            rng = random.Random(42)
            extra: list[str] = []
            words = ["parser", "cache", "index", "API", "schema", "report", "login", "queue",
                     "export", "search", "billing", "upload"]
            for i in range(extra_tasks):
                after: list[str] = []
                if i in (1, 2):  # a chain of three to start with
                    after = [extra[-1]]
                elif i > 3 and rng.random() < 0.55:  # work that waits on recent work
                    window = extra[max(0, i - 12):i]
                    after = rng.sample(window, k=min(len(window), rng.choice((1, 1, 2))))
                title = f"{rng.choice(('Build', 'Test', 'Fix', 'Refactor'))} the " \
                        f"{rng.choice(words)} ({i})"
                tid = led.create(title, priority=i % 5, labels=["extra"], after=after).id
                ids[f"extra{i}"] = tid
                extra.append(tid)

        run_dir = project.paths.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        events = [
            {"ts": "2026-01-01T10:00:00.000000Z", "event": "run_started", "run_id": "run1",
             "target": "main", "workers": 2},
            {"ts": "2026-01-01T10:00:01.000000Z", "event": "dispatched", "task": ids["cli"],
             "title": "Use the config in the CLI", "lap": 1, "in_flight": 1},
            {"ts": "2026-01-01T10:00:02.000000Z", "event": "turn_started", "task": ids["cli"],
             "iteration": 1, "agent": "claude", "attempt": attempts["cli1"]},
            {"ts": "2026-01-01T10:00:03.000000Z", "event": "dispatched", "task": ids["merge"],
             "title": "Add --verbose flag", "lap": 1, "in_flight": 2},
            {"ts": "2026-01-01T10:00:04.000000Z", "event": "checks_passed", "task": ids["merge"],
             "iteration": 1, "commit": commit, "tokens": 10},
            {"ts": "2026-01-01T10:00:05.000000Z", "event": "merge_queued", "task": ids["merge"]},
        ]
        (run_dir / "events.ndjson").write_text(
            "".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    finally:
        project.close()
    return Seed(repo, ids, commit, attempts, outside)


@pytest.fixture
def seeded(git_repo: Path) -> Seed:
    return seed_project(git_repo)


@pytest.fixture
def client(seeded: Seed) -> Iterator[TestClient]:
    app = create_app(seeded.root, dict(os.environ), SystemClock())
    # changes need the dashboard's token, on loopback too (a script passes it as a bearer)
    with TestClient(app, base_url="http://127.0.0.1",
                    headers={"Authorization": f"Bearer {app.state.token}"}) as c:
        yield c


def error_of(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return dict(body["error"])


JSON = {"Content-Type": "application/json"}


# -- reading ----------------------------------------------------------------------------------


def test_project_and_stats(client: TestClient, seeded: Seed) -> None:
    data = client.get("/api/project").json()
    assert data["prefix"] == "tm"
    assert Path(data["root"]) == seeded.root.resolve()
    assert data["paused"] is False
    assert {"core", "ui", "docs"} <= set(data["labels"])
    assert data["statuses"][:5] == ["open", "in_progress", "blocked", "deferred", "closed"]
    assert "tombstone" in data["statuses"]
    assert data["seq"] > 0
    stats = client.get("/api/stats").json()
    assert stats["attempts"] == 4
    assert stats["input_tokens"] == 2500
    assert stats == data["stats"]


def test_list_tasks_and_filters(client: TestClient, seeded: Seed) -> None:
    everything = client.get("/api/tasks").json()
    assert len(everything) == 7
    assert seeded["gone"] not in {t["id"] for t in everything}
    assert len(client.get("/api/tasks?all=1").json()) == 8
    in_progress = client.get("/api/tasks?status=in_progress").json()
    assert {t["id"] for t in in_progress} == {seeded["cli"], seeded["merge"]}
    two = client.get("/api/tasks?status=open,blocked").json()
    assert {t["status"] for t in two} == {"open", "blocked"}
    ui = client.get("/api/tasks?label=ui").json()
    assert {t["id"] for t in ui} == {seeded["epic"], seeded["ready"]}
    assert [t["id"] for t in client.get("/api/tasks?type=bug").json()] == [seeded["flaky"]]
    children = client.get(f"/api/tasks?parent={seeded['epic']}").json()
    assert [t["id"] for t in children] == [seeded["docs"]]
    assert len(client.get("/api/tasks?limit=2").json()) == 2
    error_of(client.get("/api/tasks?limit=lots"), 400, "invalid")


def test_ready_and_blocked(client: TestClient, seeded: Seed) -> None:
    ready = [t["id"] for t in client.get("/api/ready").json()]
    assert ready == [seeded["epic"], seeded["ready"]]
    blocked = {b["id"]: b for b in client.get("/api/blocked").json()}
    assert seeded["flaky"] in blocked
    assert "circuit breaker" in blocked[seeded["flaky"]]["last_comment"]["text"]
    assert blocked[seeded["docs"]]["blocked_by"] == [seeded["cli"]]
    assert blocked[seeded["docs"]]["last_comment"] is None


def test_show_task(client: TestClient, seeded: Seed) -> None:
    data = client.get(f"/api/tasks/{seeded['parse']}").json()
    assert data["status"] == "closed"
    assert data["close_reason"] == f"landed {seeded.commit}"
    assert [d["issue_id"] for d in data["dependents"]] == [seeded["cli"]]
    assert data["dependents"][0]["title"] == "Use the config in the CLI"
    assert data["comments"][0]["text"].startswith("Use tomllib")
    first, second = data["attempts"]
    assert (first["outcome"], second["outcome"]) == ("failed", "passed")
    assert first["duration_s"] == 150.0 and second["duration_s"] == 60.0
    assert first["detail"]["checks"][0]["output_tail"] == "FAILED test_parse_empty"
    assert second["commit_sha"] == seeded.commit
    assert second["has_log"] and second["has_checks_log"] and not first["has_checks_log"]
    assert second["has_review_log"] and not first["has_review_log"]
    assert not first["running"]

    docs = client.get(f"/api/tasks/{seeded['docs']}").json()
    assert {(d["depends_on_id"], d["type"]) for d in docs["dependencies"]} == {
        (seeded["cli"], "blocks"), (seeded["epic"], "parent-child")}
    assert docs["blocked_by"] == [seeded["cli"]]
    running = client.get(f"/api/tasks/{seeded['cli']}").json()["attempts"][0]
    assert running["running"] and running["outcome"] is None
    assert running["duration_s"] is not None and running["duration_s"] >= 0

    # a unique prefix of an id is accepted
    prefix = seeded["parse"][:-1]
    if sum(1 for v in seeded.ids.values() if v.startswith(prefix)) == 1:
        assert client.get(f"/api/tasks/{prefix}").json()["id"] == seeded["parse"]
    error_of(client.get("/api/tasks/tm-nope"), 404, "not_found")


def test_task_events_and_audit_trail(client: TestClient, seeded: Seed) -> None:
    events = client.get(f"/api/tasks/{seeded['parse']}/events").json()
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "created" and "commented" in kinds and "attempt_started" in kinds
    assert all(e["task_id"] == seeded["parse"] for e in events)
    everything = client.get("/api/events?limit=1000").json()
    assert [e["seq"] for e in everything] == sorted(e["seq"] for e in everything)
    last = everything[-1]["seq"]
    assert client.get(f"/api/events?since={last}").json() == []
    assert [e["seq"] for e in client.get(f"/api/events?since={last - 2}").json()] == [
        last - 1, last]
    assert len(client.get("/api/events?limit=3").json()) == 3


def test_attempt_diff(client: TestClient, seeded: Seed) -> None:
    tid = seeded["parse"]
    data = client.get(f"/api/tasks/{tid}/attempts/{seeded.attempts['parse2']}/diff").json()
    assert data["commit"] == seeded.commit
    assert DIFF_MARKER in data["diff"]
    assert "+++ b/config.py" in data["diff"]
    assert data["truncated"] is False
    # an attempt that made no commit changed nothing: no diff (never another commit's)
    none = client.get(f"/api/tasks/{tid}/attempts/{seeded.attempts['parse1']}/diff").json()
    assert none["no_change"] is True and none["commit"] is None and none["diff"] == ""
    # a running attempt has no commit yet
    error_of(client.get(f"/api/tasks/{seeded['cli']}/attempts/{seeded.attempts['cli1']}/diff"),
             404, "not_found")
    error_of(client.get(f"/api/tasks/{tid}/attempts/999/diff"), 404, "not_found")
    # an attempt of another task is not this task's
    error_of(client.get(f"/api/tasks/{seeded['cli']}/attempts/{seeded.attempts['parse2']}/diff"),
             404, "not_found")


def test_attempt_diff_of_a_vanished_commit(client: TestClient, seeded: Seed) -> None:
    led = Ledger.open(seeded.root / ".taskmill" / "taskmill.db", prefix="tm")
    try:
        aid = _attempt(led, seeded["ready"], 1, agent="x", model=None,
                       started="2026-01-01T00:00:00Z", ended="2026-01-01T00:00:01Z",
                       outcome="failed", commit="0123456789abcdef0123456789abcdef01234567")
        bad = _attempt(led, seeded["ready"], 2, agent="x", model=None,
                       started="2026-01-01T00:00:00Z", ended="2026-01-01T00:00:01Z",
                       outcome="failed", commit="--output=/tmp/pwned")
    finally:
        led.close_db()
    error_of(client.get(f"/api/tasks/{seeded['ready']}/attempts/{aid}/diff"), 404, "not_found")
    error_of(client.get(f"/api/tasks/{seeded['ready']}/attempts/{bad}/diff"), 400, "invalid")
    assert not Path("/tmp/pwned").exists()


def test_attempt_logs_only_under_taskmill(client: TestClient, seeded: Seed) -> None:
    tid = seeded["parse"]
    agent = client.get(f"/api/tasks/{tid}/attempts/{seeded.attempts['parse2']}/log").json()
    assert agent["kind"] == "agent" and "switched to tomllib" in agent["text"]
    checks = client.get(
        f"/api/tasks/{tid}/attempts/{seeded.attempts['parse2']}/log?kind=checks").json()
    assert "3 passed" in checks["text"]
    error_of(client.get(f"/api/tasks/{tid}/attempts/{seeded.attempts['parse1']}/log?kind=checks"),
             404, "not_found")
    # the mill's review of the attempt: its last try's log
    review = client.get(
        f"/api/tasks/{tid}/attempts/{seeded.attempts['parse2']}/log?kind=review").json()
    assert review["text"] == '{"findings": []}\n' and review["path"].endswith(".review-try2.log")
    error_of(client.get(f"/api/tasks/{tid}/attempts/{seeded.attempts['parse1']}/log?kind=review"),
             404, "not_found")
    error_of(client.get(f"/api/tasks/{tid}/attempts/{seeded.attempts['parse2']}/log?kind=x"),
             400, "invalid")
    # a log path outside .taskmill/ is refused, and so is a symlink leading out of it
    err = error_of(client.get(f"/api/tasks/{seeded['flaky']}/attempts/"
                              f"{seeded.attempts['flaky1']}/log"), 403, "forbidden")
    assert ".taskmill" in err["message"]
    link = seeded.root / ".taskmill" / "logs" / "link.log"
    link.symlink_to(seeded.outside_log)
    led = Ledger.open(seeded.root / ".taskmill" / "taskmill.db", prefix="tm")
    try:
        aid = _attempt(led, seeded["flaky"], 2, agent="codex", model=None,
                       started="2026-01-01T00:00:00Z", ended="2026-01-01T00:00:01Z",
                       outcome="failed", log_path=str(link))
        rel = _attempt(led, seeded["flaky"], 3, agent="codex", model=None,
                       started="2026-01-01T00:00:00Z", ended="2026-01-01T00:00:01Z",
                       outcome="failed", log_path=".taskmill/../../outside.log")
    finally:
        led.close_db()
    error_of(client.get(f"/api/tasks/{seeded['flaky']}/attempts/{aid}/log"), 403, "forbidden")
    error_of(client.get(f"/api/tasks/{seeded['flaky']}/attempts/{rel}/log"), 403, "forbidden")


def test_graph(client: TestClient, seeded: Seed) -> None:
    data = client.get("/api/graph").json()
    ids = {n["id"] for n in data["nodes"]}
    assert ids == {v for k, v in seeded.ids.items() if k != "gone"}  # tombstones excluded
    assert data["total"] == 7
    edges = {(e["source"], e["target"], e["type"]) for e in data["edges"]}
    assert (seeded["parse"], seeded["cli"], "blocks") in edges
    assert (seeded["cli"], seeded["docs"], "blocks") in edges
    assert (seeded["epic"], seeded["docs"], "parent-child") in edges
    by_id = {n["id"]: n for n in data["nodes"]}
    assert by_id[seeded["parse"]]["x"] < by_id[seeded["cli"]]["x"] < by_id[seeded["docs"]]["x"]
    assert by_id[seeded["flaky"]]["status"] == "blocked"
    assert by_id[seeded["ready"]]["ready"] is True
    for edge in data["edges"]:
        assert len(edge["points"]) >= 2
    assert data["width"] > 0 and data["height"] > 0

    only_open = client.get("/api/graph?status=open").json()
    assert {n["status"] for n in only_open["nodes"]} == {"open"}
    assert {(e["source"], e["target"]) for e in only_open["edges"]} == {
        (seeded["epic"], seeded["docs"])}
    ui = client.get("/api/graph?label=ui").json()
    assert {n["id"] for n in ui["nodes"]} == {seeded["epic"], seeded["ready"]}
    with_all = client.get("/api/graph?all=1").json()
    assert seeded["gone"] in {n["id"] for n in with_all["nodes"]}
    # the layout is cached: the same structure gives the same positions
    assert client.get("/api/graph").json()["nodes"] == data["nodes"]


def test_now(client: TestClient, seeded: Seed) -> None:
    now = client.get("/api/now").json()
    assert now["paused"] is False and now["mill_running"] is True
    workers = {w["task"]["id"]: w for w in now["workers"]}
    assert set(workers) == {seeded["cli"], seeded["merge"]}
    cli = workers[seeded["cli"]]
    assert cli["attempt"]["running"] is True and cli["attempt"]["agent"] == "claude"
    assert cli["phase"].startswith("agent turn 1")
    assert workers[seeded["merge"]]["phase"] == "in the merge queue"
    assert [q["task"]["id"] for q in now["merge_queue"]] == [seeded["merge"]]
    assert now["merge_queue"][0]["position"] == 0
    totals = now["totals"]
    assert totals["all"]["attempts"] == 4
    assert totals["by_agent"]["claude"]["input_tokens"] == 2000
    assert totals["by_agent"]["claude"]["cost_usd"] == pytest.approx(0.02)
    assert totals["by_agent"]["claude"]["passed"] == 1
    assert totals["by_agent"]["codex"]["seconds"] == 40.0
    assert totals["by_model"]["sonnet"]["seconds"] == 210.0
    assert totals["by_model"]["gpt-5"]["output_tokens"] == 50
    assert "(default)" in totals["by_model"]  # the running attempt has no model yet
    blocked = {b["id"]: b for b in now["blocked"]}
    assert "circuit breaker" in blocked[seeded["flaky"]]["last_comment"]["text"]
    assert [e["event"] for e in now["events"]][-1] == "merge_queued"

    # the merge lands: the queue empties and the worker goes
    events = seeded.root / ".taskmill" / "run" / "events.ndjson"
    with events.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"ts": "2026-01-01T10:00:06Z", "event": "landed",
                             "task": seeded["merge"], "commit": seeded.commit}) + "\n")
    led = Ledger.open(seeded.root / ".taskmill" / "taskmill.db", prefix="tm")
    try:
        led.close(seeded["merge"], f"landed {seeded.commit}", system=True)
    finally:
        led.close_db()
    now = client.get("/api/now").json()
    assert now["merge_queue"] == []
    assert {w["task"]["id"] for w in now["workers"]} == {seeded["cli"]}


# -- actions ----------------------------------------------------------------------------------


def test_reprioritise_and_update(client: TestClient, seeded: Seed) -> None:
    tid = seeded["ready"]
    data = client.patch(f"/api/tasks/{tid}", json={"priority": 0}).json()
    assert data["priority"] == 0
    assert client.get(f"/api/tasks/{tid}").json()["priority"] == 0
    events = client.get(f"/api/tasks/{tid}/events").json()
    assert events[-1]["kind"] == "updated"
    assert events[-1]["data"]["changes"]["priority"] == [3, 0]
    assert events[-1]["actor"] == os.environ["USER"]
    error_of(client.patch(f"/api/tasks/{tid}", json={"priority": 9}), 400, "invalid")
    error_of(client.patch(f"/api/tasks/{tid}", json={"seq": 1}), 400, "invalid")
    error_of(client.patch(f"/api/tasks/{tid}", json={}), 400, "invalid")
    error_of(client.patch(f"/api/tasks/{tid}", content=b"[1]", headers=JSON), 400, "invalid")
    error_of(client.patch(f"/api/tasks/{tid}", content=b"{nope", headers=JSON), 400, "invalid")
    error_of(client.patch("/api/tasks/tm-nope", json={"priority": 1}), 404, "not_found")


def test_reopen_unblock_comment(client: TestClient, seeded: Seed) -> None:
    closed = seeded["parse"]
    assert client.post(f"/api/tasks/{closed}/reopen", json={}).json()["status"] == "open"
    error_of(client.post(f"/api/tasks/{closed}/reopen", json={}), 409, "conflict")

    flaky = seeded["flaky"]
    assert client.post(f"/api/tasks/{flaky}/unblock", json={}).json()["status"] == "open"
    error_of(client.post(f"/api/tasks/{flaky}/unblock", json={}), 409, "conflict")
    assert flaky in {t["id"] for t in client.get("/api/ready").json()}

    resp = client.post(f"/api/tasks/{flaky}/comments", json={"text": "Retry with a timeout."})
    assert resp.status_code == 201
    assert resp.json()["author"] == os.environ["USER"]
    comments = client.get(f"/api/tasks/{flaky}").json()["comments"]
    assert comments[-1]["text"] == "Retry with a timeout."
    error_of(client.post(f"/api/tasks/{flaky}/comments", json={"text": "  "}), 400, "invalid")
    error_of(client.post(f"/api/tasks/{flaky}/comments", json={}), 400, "invalid")
    error_of(client.post("/api/tasks/tm-nope/comments", json={"text": "x"}), 404, "not_found")


def test_comment_reaches_the_next_prompt(client: TestClient, seeded: Seed) -> None:
    from taskmill.mill.prompt import PromptContext, build_prompt

    tid = seeded["ready"]
    client.post(f"/api/tasks/{tid}/comments", json={"text": "Use the theme colours."})
    led = Ledger.open(seeded.root / ".taskmill" / "taskmill.db", prefix="tm")
    try:
        prompt = build_prompt(led.show(tid), PromptContext(iteration=2, max_iterations=5))
    finally:
        led.close_db()
    assert "Use the theme colours." in prompt


def test_pause_and_resume(client: TestClient, seeded: Seed) -> None:
    pause_file = seeded.root / ".taskmill" / "run" / "paused"
    assert client.post("/api/mill/pause", json={}).json() == {"paused": True}
    assert pause_file.exists()
    assert client.post("/api/mill/pause", json={}).json() == {"paused": True}
    assert client.get("/api/project").json()["paused"] is True
    mill = client.get("/api/mill").json()
    assert mill["paused"] is True and mill["events"][0]["event"] == "run_started"
    assert client.post("/api/mill/resume", json={}).json() == {"paused": False}
    assert not pause_file.exists()
    assert client.get("/api/now").json()["paused"] is False


def test_mill_engine_honours_the_pause_file(client: TestClient, seeded: Seed) -> None:
    from taskmill.mill import engine

    assert engine.PAUSE_FILE == "paused"
    client.post("/api/mill/pause", json={})
    assert (seeded.root / ".taskmill" / "run" / engine.PAUSE_FILE).exists()


# -- errors, OpenAPI ------------------------------------------------------------------------------


def test_errors_are_json(client: TestClient) -> None:
    error_of(client.get("/api/nothing-here"), 404, "not_found")
    error_of(client.request("DELETE", "/api/tasks/tm-x", headers=JSON), 405,
             "method_not_allowed")
    error_of(client.get("/api/mill/pause"), 405, "method_not_allowed")


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        assert part in node, f"unresolved $ref {ref}"
        node = node[part]
    return node


def _walk_refs(doc: dict[str, Any], node: Any) -> None:
    if isinstance(node, dict):
        if "$ref" in node:
            _resolve(doc, node["$ref"])
        for value in node.values():
            _walk_refs(doc, value)
    elif isinstance(node, list):
        for value in node:
            _walk_refs(doc, value)


def test_openapi_is_valid_and_complete(client: TestClient) -> None:
    doc = client.get("/api/openapi.json").json()
    assert doc == openapi_document(ROUTES)
    assert re.fullmatch(r"3\.\d+\.\d+", doc["openapi"])
    assert doc["info"]["title"] and doc["info"]["version"]
    assert isinstance(doc["paths"], dict) and doc["paths"]
    operation_ids: list[str] = []
    methods = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
    for path, item in doc["paths"].items():
        assert path.startswith("/api/")
        declared = set(re.findall(r"{(\w+)}", path))
        for method, op in item.items():
            assert method in methods, (path, method)
            operation_ids.append(op["operationId"])
            assert op["responses"] and all(
                re.fullmatch(r"[1-5]\d\d|default", code) for code in op["responses"])
            for response in op["responses"].values():
                assert response["description"]
            params = op.get("parameters", [])
            for p in params:
                assert p["in"] in ("path", "query", "header", "cookie")
                assert "schema" in p and p["name"]
                if p["in"] == "path":
                    assert p["required"] is True
            assert {p["name"] for p in params if p["in"] == "path"} == declared, path
            if "requestBody" in op:
                assert "application/json" in op["requestBody"]["content"]
    assert len(operation_ids) == len(set(operation_ids))
    _walk_refs(doc, doc)
    # every API route of the app is described, and nothing else
    app_routes = {(r.path, m.lower()) for r in client.app.routes  # type: ignore[attr-defined]
                  if getattr(r, "path", "").startswith("/api/")
                  for m in (getattr(r, "methods", None) or []) if m != "HEAD"}
    described = {(p, m) for p, item in doc["paths"].items() for m in item}
    assert app_routes == described


def test_openapi_validates_with_a_validator_when_installed(client: TestClient) -> None:
    validator = pytest.importorskip("openapi_spec_validator",
                                    reason="openapi-spec-validator is not installed")
    validator.validate(client.get("/api/openapi.json").json())


# -- access control -------------------------------------------------------------------------------


def test_loopback_guard(seeded: Seed) -> None:
    app = create_app(seeded.root, dict(os.environ), SystemClock())
    with TestClient(app, base_url="http://127.0.0.1:8765",
                    headers={"Authorization": f"Bearer {app.state.token}"}) as c:
        assert c.get("/api/stats").status_code == 200
        assert c.get("/api/stats", headers={"Host": "localhost:8765"}).status_code == 200
        error_of(c.get("/api/stats", headers={"Host": "attacker.example:8765"}), 403,
                 "forbidden")  # DNS rebinding
        error_of(c.post("/api/mill/pause", content=b"{}",
                        headers={"Content-Type": "text/plain"}), 415, "invalid")
        error_of(c.post("/api/mill/pause", json={},
                        headers={"Origin": "http://attacker.example"}), 403, "forbidden")
        assert c.post("/api/mill/pause", json={},
                      headers={"Origin": "http://127.0.0.1:8765"}).status_code == 200
        page = c.get("/")
        assert page.status_code == 200 and "app.js" in page.text
        assert c.get("/static/app.js").status_code == 200


def test_token_required_when_not_on_loopback(seeded: Seed) -> None:
    token = "s3cret-token"
    app = create_app(seeded.root, dict(os.environ), SystemClock(), token=token, loopback=False)
    with TestClient(app, base_url="http://dashboard.example:8765") as c:
        error_of(c.get("/api/stats"), 401, "unauthorized")
        error_of(c.get("/"), 401, "unauthorized")
        error_of(c.get("/api/stats?token=wrong"), 401, "unauthorized")
        error_of(c.get("/api/stats", headers={"Authorization": "Bearer wrong"}), 401,
                 "unauthorized")
        assert c.get("/api/stats", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        # the page: ?token= once, then a cookie (and the token leaves the address bar)
        first = c.get(f"/?token={token}&x=1", follow_redirects=False)
        assert first.status_code == 303
        assert first.headers["location"] == "/?x=1"
        cookie = first.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        assert c.get("/api/stats").status_code == 200  # the client kept the cookie
        assert c.post("/api/mill/pause", json={}).status_code == 200
    with TestClient(app, base_url="http://dashboard.example:8765") as c:
        resp = c.get(f"/api/stats?token={token}")
        assert resp.status_code == 200 and "set-cookie" in resp.headers
        assert c.get("/api/project").status_code == 200
    with TestClient(app, base_url="http://dashboard.example:8765") as c:
        c.cookies.set(first.headers["set-cookie"].split("=")[0], "forged")
        error_of(c.get("/api/stats"), 401, "unauthorized")


def test_serve_command_is_registered(cli: Any, taskmill_repo: Path) -> None:
    result = cli("--help", cwd=taskmill_repo).ok()
    assert "serve" in result.stdout
    help_text = cli("serve", "--help", cwd=taskmill_repo).ok().stdout
    assert "--host" in help_text and "--port" in help_text and "--json" in help_text


def test_serve_outside_a_ledger_fails_cleanly(cli: Any, git_repo: Path) -> None:
    result = cli("serve", "--port", "0", "--json", cwd=git_repo)
    assert result.exit_code == 2
    assert result.error()["code"] == "not_initialized"


def test_is_loopback() -> None:
    from taskmill.cli.serve_cmd import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert is_loopback("127.0.0.2") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    assert not is_loopback("example.com") and not is_loopback("::")


# -- live updates ---------------------------------------------------------------------------------


def test_mill_log_reads_appends_partial_lines_and_rotation(tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    log = MillLog(path)
    assert log.refresh() == []
    path.write_text('{"ts": "1", "event": "run_started", "run_id": "r"}\n{"ts": "2", "ev',
                    encoding="utf-8")
    assert [e["event"] for e in log.refresh()] == ["run_started"]
    with path.open("a", encoding="utf-8") as fh:
        fh.write('ent": "dispatched", "task": "tm-a"}\nnot json\n')
    assert [e["event"] for e in log.refresh()] == ["dispatched"]
    assert log.refresh() == []
    assert log.snapshot()["last_by_task"]["tm-a"]["event"] == "dispatched"
    path.rename(tmp_path / "events.ndjson.1")
    path.write_text('{"ts": "3", "event": "merge_queued", "task": "tm-b"}\n', encoding="utf-8")
    assert [e["event"] for e in log.refresh()] == ["merge_queued"]
    snap = log.snapshot()
    assert "tm-a" not in snap["last_by_task"] and snap["queued_at"] == {"tm-b": "3"}
    path.unlink()
    assert log.refresh() == [] and log.snapshot()["recent"] == []


def test_broadcaster_notices_other_processes(seeded: Seed) -> None:
    from taskmill.paths import locate

    paths = locate(seeded.root, {})
    b = Broadcaster(paths, MillLog(paths.run_dir / "events.ndjson"))
    try:
        assert b.check() == []
        led = Ledger.open(paths.db, prefix="tm")
        try:
            led.update(seeded["ready"], {"priority": 0})
        finally:
            led.close_db()
        messages = b.check()
        assert messages == [{"type": "ledger", "seq": b.seq, "tasks": [seeded["ready"]],
                             "kinds": ["updated"]}]
        assert b.check() == []
        with (paths.run_dir / "events.ndjson").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"ts": "x", "event": "landed", "task": seeded["merge"]}) + "\n")
        (paths.run_dir / "paused").write_text("", encoding="utf-8")
        messages = b.check()
        assert [m["type"] for m in messages] == ["mill", "paused"]
        assert messages[0]["tasks"] == [seeded["merge"]] and messages[1]["paused"] is True
    finally:
        if b._store is not None:
            b._store.close()


def _start_server(repo: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen([PY, "-m", "taskmill", "serve", "--port", "0", "--json"], cwd=repo,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise AssertionError(f"taskmill serve did not start: {proc.communicate()[1]}")
    info = json.loads(line)
    return proc, info


def _stop_server(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - a hung server
        proc.kill()
        proc.wait()
        raise AssertionError("taskmill serve did not stop on SIGTERM") from None
    finally:
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_server_streams_changes_made_by_the_cli(seeded: Seed) -> None:
    proc, info = _start_server(seeded.root)
    try:
        assert info["token"] and info["host"] == "127.0.0.1"
        token_file = Path(info["token_file"])
        assert token_file == seeded.root / ".taskmill" / "run" / "serve.token"
        assert token_file.read_text().strip() == info["token"]
        assert token_file.stat().st_mode & 0o777 == 0o600
        base = info["url"].rstrip("/")
        with httpx.Client(timeout=10) as http:
            assert http.get(f"{base}/api/project").json()["prefix"] == "tm"
            with http.stream("GET", f"{base}/api/stream") as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                lines = stream.iter_lines()

                def next_message() -> dict[str, Any]:
                    for line in lines:
                        if line.startswith("data: "):
                            return dict(json.loads(line[6:]))
                    raise AssertionError("the stream ended")

                assert next_message()["type"] == "hello"
                subprocess.run([PY, "-m", "taskmill", "update", seeded["ready"], "--priority",
                                "0"], cwd=seeded.root, check=True, capture_output=True)
                done = time.monotonic()
                message = next_message()
                latency = time.monotonic() - done
                assert message["type"] == "ledger"
                assert message["tasks"] == [seeded["ready"]]
                assert latency < 1.0, f"the change reached the stream after {latency:.3f}s"
                # changes need the token, on loopback too
                assert http.post(f"{base}/api/mill/pause", json={}).status_code == 401
                http.post(f"{base}/api/mill/pause", json={},
                          headers={"Authorization": f"Bearer {info['token']}"})
                kinds = {next_message()["type"], }
                assert kinds == {"paused"}
    finally:
        _stop_server(proc)
    assert not (seeded.root / ".taskmill" / "run" / "serve.token").exists()  # gone with it


# -- the graph layout -----------------------------------------------------------------------------


def _no_overlaps(layout: graph_layout.Layout, sp: graph_layout.Spacing) -> None:
    boxes = sorted((n.x, n.y) for n in layout.nodes.values())
    for i, (x1, y1) in enumerate(boxes):
        for x2, y2 in boxes[i + 1:]:
            if x2 - x1 >= sp.node_width:
                break
            assert abs(y2 - y1) >= sp.node_height, ((x1, y1), (x2, y2))


def test_layout_layers_follow_dependencies() -> None:
    edges = [("a", "b", "blocks"), ("b", "c", "blocks"), ("a", "c", "blocks"),
             ("d", "c", "parent-child")]
    layout = graph_layout.layered_layout(["a", "b", "c", "d", "lonely"], edges)
    layer = {n.id: n.layer for n in layout.nodes.values() if n.id != "lonely"}
    assert layer["a"] < layer["b"] < layer["c"]
    assert layer["d"] == layer["c"] - 1  # a source sits just before what waits on it
    assert len(layout.edges) == 4
    long_edge = next(e for e in layout.edges if (e.source, e.target) == ("a", "c"))
    assert len(long_edge.points) == 3  # routed through one dummy node
    assert layout.nodes["lonely"].component == 1
    _no_overlaps(layout, graph_layout.Spacing())


def test_layout_breaks_cycles_and_ignores_bad_edges() -> None:
    # b -> a (blocks wins over the related a -> b), a -> c, c -> b: a cycle
    edges = [("a", "b", "related"), ("b", "a", "blocks"), ("a", "c", "related"),
             ("c", "b", "related"), ("a", "a", "blocks"), ("a", "ghost", "blocks")]
    layout = graph_layout.layered_layout(["a", "b", "c"], edges)
    assert set(layout.nodes) == {"a", "b", "c"}
    kept = {(e.source, e.target, e.type) for e in layout.edges}
    assert ("b", "a", "blocks") in kept and ("a", "b", "related") not in kept
    assert len(kept) == 3
    assert sum(e.reversed for e in layout.edges) == 1
    for e in layout.edges:
        xs = [p[0] for p in e.points]
        assert xs == sorted(xs, reverse=e.reversed)


def test_layout_reduces_crossings() -> None:
    # two chains listed so that a naive order crosses them
    nodes = ["a1", "b1", "a2", "b2", "a3", "b3"]
    edges = [("a1", "b2", "blocks"), ("a2", "b1", "blocks"), ("b1", "a3", "blocks"),
             ("b2", "b3", "blocks")]
    layout = graph_layout.layered_layout(nodes, edges)
    assert layout.crossings == 0


def test_layout_of_a_few_hundred_tasks_is_fast_and_compact() -> None:
    import random

    rng = random.Random(7)
    nodes = [f"t{i}" for i in range(400)]
    edges = []
    for i in range(20, 400):
        if rng.random() < 0.6:
            for _ in range(rng.randint(1, 2)):
                j = rng.randrange(max(0, i - 40), i)
                edges.append((nodes[j], nodes[i], "blocks"))
    start = time.perf_counter()
    layout = graph_layout.layered_layout(nodes, edges)
    elapsed = time.perf_counter() - start
    assert set(layout.nodes) == set(nodes)
    assert elapsed < 2.0
    sp = graph_layout.Spacing()
    _no_overlaps(layout, sp)
    for node in layout.nodes.values():
        assert 0 <= node.x <= layout.width and 0 <= node.y <= layout.height
    singles = [n for n in layout.nodes.values() if n.component == max(
        m.component for m in layout.nodes.values())]
    assert len({round(n.y) for n in singles}) < len(singles)  # a grid, not one long column


def test_layout_empty() -> None:
    layout = graph_layout.layered_layout([], [])
    assert layout.to_json() == {"width": 0.0, "height": 0.0, "crossings": 0, "nodes": [],
                                "edges": []}


def test_tasks_left_in_progress_by_a_stopped_run_show_as_interrupted(client: TestClient,
                                                                     seeded: Seed) -> None:
    import fcntl

    tid = seeded.ids["cli"]  # claimed by mill:run1, whose run is not running
    assert client.get(f"/api/tasks/{tid}").json().get("interrupted") is True
    listed = {t["id"]: t for t in client.get("/api/tasks").json()}
    assert listed[tid].get("interrupted") is True
    assert "interrupted" not in listed[seeded.ids["flaky"]]
    # while run1 holds its lock it is working the task, not interrupted
    run_dir = seeded.root / ".taskmill" / "run"
    fd = os.open(run_dir / "run-run1.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert "interrupted" not in client.get(f"/api/tasks/{tid}").json()
    finally:
        os.close(fd)


def test_a_role_is_set_checked_and_its_spent_budget_shown(client: TestClient,
                                                          seeded: Seed) -> None:
    roles = seeded.root / ".taskmill" / "roles"
    roles.mkdir()
    (roles / "writer.toml").write_text("[budget]\ntokens_per_day = 10\n", encoding="utf-8")
    tid = seeded["ready"]
    error = error_of(client.patch(f"/api/tasks/{tid}", json={"role": "ghost"}), 400, "invalid")
    assert "roles: writer" in error["message"]
    assert client.patch(f"/api/tasks/{tid}", json={"role": "writer"}).json()["role"] == "writer"
    assert tid in {t["id"] for t in client.get("/api/ready").json()}
    led = Ledger.open(seeded.root / ".taskmill" / "taskmill.db", prefix="tm", actor="mill:x")
    try:
        now = iso(SystemClock().now())
        aid = led.start_attempt(tid, iteration=1, agent="a", model=None, log_path="l",
                                run_id="x", lap=1, actor="mill:x", now=now, role="writer")
        led.finish_attempt(tid, aid, outcome="failed", input_tokens=8, output_tokens=4,
                           cost_usd=None, commit=None, model=None, detail={}, seconds=1.0,
                           usage_error=None, actor="mill:x", now=now)
    finally:
        led.close_db()
    task = client.get(f"/api/tasks/{tid}").json()
    assert "12 of 10 tokens today" in task["held"]
    assert tid not in {t["id"] for t in client.get("/api/ready").json()}
    blocked = {b["id"]: b for b in client.get("/api/blocked").json()}
    assert "writer" in blocked[tid]["reasons"][0]
    assert client.get("/api/now").json()["totals"]["by_role"]["writer"]["attempts"] == 1
