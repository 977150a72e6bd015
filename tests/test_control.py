"""Run state: every run-state file named by LedgerPaths, pause and resume through the control
module (CLI and dashboard alike), run liveness, and a dashboard that loads no mill or agent."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from starlette.testclient import TestClient

from conftest import CliResult
from taskmill import control
from taskmill.clock import FixedClock
from taskmill.ledger import Ledger
from taskmill.locks import FileLock
from taskmill.paths import RunFiles, find_repository
from taskmill.web.app import create_app

SRC = Path(__file__).resolve().parents[1] / "src" / "taskmill"
Cli = Callable[..., CliResult]


def test_ledger_paths_name_every_run_state_file(taskmill_repo: Path) -> None:
    paths = find_repository(taskmill_repo)
    run = paths.dir / "run"
    assert paths.run.dir == paths.run_dir == run
    assert paths.run.paused == run / "paused"
    assert paths.run.events == run / "events.ndjson"
    assert paths.run.merge_lock == run / "merge.lock"
    assert paths.run.advance_journal == run / "advance.json"
    assert paths.run.homes == run / "homes"
    assert paths.run.check_home == run / "homes" / "checks"
    assert paths.run.progress("tm-a1") == run / "progress" / "tm-a1" / "notes.md"
    assert paths.run.run_lock("ab12") == run / "run-ab12.lock"
    assert paths.run.config_stamp == run / "config.checked"
    assert paths.run.serve_token == run / "serve.token"
    assert paths.run.cap_dir == run / "cap"
    assert paths.run.proxy_socket("ab12") == run / "proxy-ab12.sock"
    assert paths.run.net_socket("ab12") == run / "net-ab12.sock"
    assert paths.include == paths.dir / "include"
    assert paths.logs == paths.dir / "logs"
    run.mkdir(parents=True, exist_ok=True)
    for name in ("proxy-ab12.sock", "proxy-cd34.sock", "net-ab12.sock", "merge.lock"):
        (run / name).touch()
    assert paths.run.sockets("proxy") == [("ab12", run / "proxy-ab12.sock"),
                                          ("cd34", run / "proxy-cd34.sock")]


def test_run_state_names_are_spelled_only_in_paths() -> None:
    literals = [r'"paused"\)?\.exists', r'"events\.ndjson"', r'"merge\.lock"', r'"advance\.json"',
                r'"config\.checked"', r'"serve\.token"', r'/ "homes"', r'/ "progress"',
                r'/ "run"', r'f"run-\{', r'"proxy-\*\.sock"', r'"net-\*\.sock"', r'/ "include"',
                r'PAUSE_FILE = ', r'EVENTS_FILE = ']
    found = []
    for path in SRC.rglob("*.py"):
        if path.name == "paths.py" or "testing" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        found += [f"{path.relative_to(SRC)}: {pattern}" for pattern in literals
                  if re.search(pattern, text)]
    assert found == []


def test_pause_and_resume(tmp_path: Path) -> None:
    run = RunFiles(tmp_path / "run")
    assert not control.is_paused(run) and control.pause_signature(run) is None
    assert control.pause(run, now=FixedClock().now(), by="by a test")
    assert control.is_paused(run)
    assert run.paused.read_text(encoding="utf-8") == (
        "paused by a test at 2026-01-01T00:00:00.000000Z\n")
    signature = control.pause_signature(run)
    assert not control.pause(run, now=FixedClock().now(), by="again")  # left as it was
    assert control.pause_signature(run) == signature
    assert [p.name for p in run.dir.iterdir()] == ["paused"]  # no temporary file left
    assert control.resume(run)
    assert not control.resume(run)
    assert not control.is_paused(run)


def test_cli_pause_is_what_the_dashboard_sees(cli: Cli, taskmill_repo: Path) -> None:
    paused = cli("pause", "--json", cwd=taskmill_repo).ok().json()
    assert paused == {"paused": True, "changed": True}
    assert "already paused" in cli("pause", cwd=taskmill_repo).ok().stdout
    assert (taskmill_repo / ".taskmill" / "run" / "paused").read_text(
        encoding="utf-8").startswith("paused from the command line at ")
    app = create_app(taskmill_repo, dict(os.environ))
    with TestClient(app, base_url="http://127.0.0.1",
                    headers={"Authorization": f"Bearer {app.state.token}"}) as client:
        assert client.get("/api/mill").json()["paused"] is True
        assert client.post("/api/mill/resume", json={}).json() == {"paused": False}
    assert "not paused" in cli("resume", cwd=taskmill_repo).ok().stdout
    assert cli("resume", "--json", cwd=taskmill_repo).ok().json() == {
        "paused": False, "changed": False}


def test_run_alive_and_interrupted_tasks(taskmill_repo: Path) -> None:
    paths = find_repository(taskmill_repo)
    led = Ledger.open(paths.db, prefix="tm", actor="tester")
    try:
        a = led.create("alive's task").id
        b = led.create("dead's task").id
        led.claim(a, "mill:alive01", actor="mill:alive01")
        led.claim(b, "mill:dead0001", actor="mill:dead0001")
        with FileLock(paths.run.run_lock("alive01")):
            assert control.run_alive(paths.run_dir, "alive01")
            assert not control.run_alive(paths.run_dir, "dead0001")
            assert control.interrupted_ids(led, paths.run_dir) == {b}
            tasks = [led.get(a), led.get(b)]
            control.mark_interrupted(led, paths.run_dir, tasks)
            assert [t.interrupted for t in tasks] == [False, True]
        assert not control.run_alive(paths.run_dir, "alive01")
        assert control.interrupted_ids(led, paths.run_dir) == {a, b}
    finally:
        led.close_db()


def test_the_dashboard_loads_neither_the_mill_engine_nor_an_agent(taskmill_repo: Path) -> None:
    """The web learns file names and pause state from paths and control, not from the mill's
    engine (which imports every agent adapter)."""
    script = textwrap.dedent(f"""
        import json, os, sys
        from pathlib import Path
        from starlette.testclient import TestClient
        from taskmill.ledger import Ledger
        from taskmill.web.app import create_app

        root = Path({str(taskmill_repo)!r})
        led = Ledger.open(root / ".taskmill" / "taskmill.db", prefix="tm", actor="t")
        tid = led.create("worked by a run that died").id
        led.claim(tid, "mill:dead0001", actor="mill:dead0001")
        led.close_db()
        app = create_app(root, dict(os.environ))
        with TestClient(app, base_url="http://127.0.0.1",
                        headers={{"Authorization": "Bearer " + app.state.token}}) as c:
            for url in ("/api/project", "/api/tasks", "/api/tasks/" + tid, "/api/mill",
                        "/api/graph", "/api/stats"):
                assert c.get(url).status_code == 200, url
            assert c.get("/api/tasks/" + tid).json()["interrupted"] is True
            assert c.post("/api/mill/pause", json={{}}).json() == {{"paused": True}}
        print(json.dumps(sorted(m for m in sys.modules if m.startswith("taskmill"))))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "taskmill.web.app" in loaded and "taskmill.control" in loaded
    assert "taskmill.mill.engine" not in loaded
    assert [m for m in loaded if m == "taskmill.agents" or m.startswith("taskmill.agents.")] == []
