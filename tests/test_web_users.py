"""Who did what (``taskmill serve --users FILE``): the users file's checks, a request with a
person's token acting as that person (the audit trail names them), the page carrying the
token it was opened with; and the mill ``serve --mill`` runs: started, stopped as
``taskmill run``'s Ctrl-C (the turn in flight is cut after the grace, the task stays
resumable), started again."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from mill_helpers import MillRepo, agent_script
from taskmill.clock import SystemClock
from taskmill.errors import Conflict, InvalidInput
from taskmill.ledger import Ledger
from taskmill.mill_service import MillService
from taskmill.project import open_project
from taskmill.web.app import create_app
from taskmill.web.users import load_users

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdef"


def users_file(folder: Path, text: str, *, mode: int = 0o600, name: str = "users.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def test_the_users_file_maps_tokens_to_people(tmp_path: Path) -> None:
    toml = users_file(tmp_path / "cfg", f'alice = "{ALICE}"\nbob = "{BOB}"\n')
    assert load_users(toml) == {ALICE: "alice", BOB: "bob"}
    as_json = users_file(tmp_path / "cfg", json.dumps({"alice": ALICE}), name="users.json")
    assert load_users(as_json) == {ALICE: "alice"}


@pytest.mark.parametrize(("text", "mode", "message"), [
    (f'alice = "{ALICE}"\n', 0o644, "others can read it (mode 644)"),
    ('alice = "short"\n', 0o600, "at least 16 characters"),
    (f'alice = "{ALICE}"\nbob = "{ALICE}"\n', 0o600, "bob and alice have the same token"),
    (f'"mill:x" = "{ALICE}"\n', 0o600, "is not a person's name"),
    ("", 0o600, "map each person to their token"),
    ("alice = ", 0o600, "not valid TOML"),
])
def test_a_bad_users_file_is_refused(tmp_path: Path, text: str, mode: int,
                                     message: str) -> None:
    path = users_file(tmp_path / "cfg", text, mode=mode)
    with pytest.raises(InvalidInput, match=re.escape(message)) as exc:
        load_users(path)
    if mode == 0o644:
        assert exc.value.hint == f"chmod 600 {path}"


def test_a_users_file_inside_the_repository_is_refused(taskmill_repo: Path,
                                                       cli: Callable[..., Any]) -> None:
    inside = users_file(taskmill_repo / "secrets", f'alice = "{ALICE}"\n')
    with pytest.raises(InvalidInput, match="inside the repository"):
        load_users(inside, repo_root=taskmill_repo)
    result = cli("serve", "--port", "0", "--users", str(inside), cwd=taskmill_repo)
    assert result.exit_code == 2 and "inside the repository" in result.stderr


@pytest.fixture
def people(taskmill_repo: Path) -> Iterator[tuple[TestClient, str, str]]:
    with Ledger.open(taskmill_repo / ".taskmill" / "taskmill.db", prefix="tm",
                     actor="tester") as led:
        tid = led.create("a task", checks=["true"]).id
    app = create_app(taskmill_repo, dict(os.environ), SystemClock(),
                     users={ALICE: "alice", BOB: "bob"})
    with TestClient(app, base_url="http://127.0.0.1:8765") as client:
        yield client, app.state.token, tid


def test_each_request_acts_as_the_person_whose_token_it_carries(
        people: tuple[TestClient, str, str], taskmill_repo: Path) -> None:
    client, token, tid = people
    alice = {"Authorization": f"Bearer {ALICE}"}
    bob = {"Authorization": f"Bearer {BOB}"}
    # with people, reads need a token on the loopback too
    assert client.get("/api/project").status_code == 401
    assert client.get("/api/project", headers=alice).json()["person"] == "alice"
    assert client.get("/api/project", headers={
        "Authorization": f"Bearer {token}"}).json()["person"] is None
    assert client.patch(f"/api/tasks/{tid}", json={"priority": 0}, headers=alice).status_code == 200
    assert client.post(f"/api/tasks/{tid}/comments", json={"text": "hi"},
                       headers=bob).json()["author"] == "bob"
    refused = client.post(f"/api/tasks/{tid}/comments", json={"text": "x", "author": "alice"},
                          headers=bob)
    assert refused.status_code == 403
    assert client.post("/api/mill/pause", json={}, headers=alice).json() == {"paused": True}
    assert client.post("/api/mill/resume", json={}, headers=bob).json() == {"paused": False}
    with Ledger.open(taskmill_repo / ".taskmill" / "taskmill.db", prefix="tm") as led:
        trail = [(e.kind, e.actor) for e in led.events(limit=20)]
    assert ("updated", "alice") in trail and ("commented", "bob") in trail
    assert ("mill_paused", "alice") in trail and ("mill_resumed", "bob") in trail
    # the page opened with a person's token carries that token (never the dashboard's)
    first = client.get(f"/?token={BOB}", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/"
    page = client.get("/")  # with the cookie
    assert f'content="{BOB}"' in page.text and token not in page.text
    assert client.get("/api/project").json()["person"] == "bob"  # the cookie alone


def test_the_mill_service_stops_as_taskmill_run_does_and_starts_again(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path, run={"agent": "bot", "grace": 0.5})
    bot = agent_script(tmp_path / "bot.py", """
        if CALL == 1:
            save("first-turn-started", "1")
            time.sleep(60)
        (WT / "out.txt").write_text("done")
    """, spy=repo.spy)
    repo.write_config(run={"agent": "bot", "grace": 0.5},
                      agents={"bot": {"adapter": "exec", "command": [bot]}})
    repo.create("tm-a", checks=["test -f out.txt"])
    with open_project(repo.root, dict(os.environ)) as project:
        paths, config = project.paths, project.config
    service = MillService(paths, config, dict(os.environ), SystemClock(), poll_s=0.1)

    def until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, what
            time.sleep(0.05)

    service.start("alice")
    with pytest.raises(Conflict, match="the mill is"):
        service.start("alice")
    until(lambda: (repo.spy / "first-turn-started").exists(), "the first turn started")
    assert service.status().state == "running"
    t0 = time.monotonic()
    assert service.stop("alice").state == "stopping"
    until(lambda: service.status().state == "stopped", "the mill stopped")
    assert time.monotonic() - t0 < 15  # the grace (0.5 s), not the turn's 60 s
    task = repo.task("tm-a")
    assert task["status"] == "in_progress"  # resumable, as after taskmill run's Ctrl-C
    assert [a["outcome"] for a in repo.attempts("tm-a")] == ["interrupted"]
    with pytest.raises(Conflict, match="not running"):
        service.stop("alice")

    service.start("alice")  # the interrupted task is resumed and lands
    until(lambda: repo.task("tm-a")["status"] == "closed", "the task landed", timeout=60)
    service.close(timeout=30)
    assert service.status().state == "stopped" and service.status().runs == 2
    assert (repo.root / "out.txt").read_text() == "done"


def test_serve_mill_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """``taskmill serve --mill`` stopped by SIGTERM drains its mill (the grace) and exits."""
    repo = MillRepo(tmp_path)
    bot = agent_script(tmp_path / "bot.py", """
        save("turn-started", "1")
        time.sleep(60)
    """, spy=repo.spy)
    repo.write_config(run={"agent": "bot", "grace": 0.5},
                      agents={"bot": {"adapter": "exec", "command": [bot]}})
    repo.create("tm-a", checks=["true"])
    proc = subprocess.Popen([sys.executable, "-m", "taskmill", "serve", "--port", "0", "--json",
                             "--mill"], cwd=repo.root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and json.loads(proc.stdout.readline())["mill"] is True
        deadline = time.monotonic() + 30
        while not (repo.spy / "turn-started").exists():
            assert time.monotonic() < deadline and proc.poll() is None, "no turn started"
            time.sleep(0.05)
        proc.terminate()
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert repo.task("tm-a")["status"] == "in_progress"
    assert [a["outcome"] for a in repo.attempts("tm-a")] == ["interrupted"]
