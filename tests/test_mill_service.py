"""The mill ``taskmill serve --mill`` runs (:class:`taskmill.mill_service.MillService`) is
``taskmill watch``: its orders fire on time, a task created while it idles is picked up at
once when it is woken, and a stop while a turn runs ends the turn, records it interrupted and
leaves the task to be resumed by the next start. In process: scripted turns
(:class:`taskmill.testing.turns.ScriptedTurns`), a fake clock where time matters."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mill_helpers import MillRepo
from taskmill.agents.base import AgentConfig
from taskmill.clock import Clock, FixedClock, SystemClock, iso
from taskmill.errors import InvalidInput
from taskmill.mill_service import MillService
from taskmill.project import open_project
from taskmill.testing.turns import ScriptedTurns, Step, until_cancelled, write

FAKE_AGENT = AgentConfig(name="fake", adapter="exec", command=("not-run",))
HOURLY = '[order]\ncreate = { title = "hourly sweep" }\ntrigger = "cron"\nschedule = "0 * * * *"\n'
START = datetime(2026, 1, 5, 9, tzinfo=UTC)


def service_for(repo: MillRepo, clock: Clock, turns: ScriptedTurns, *, poll_s: float = 1.0,
                on_event: Callable[[dict[str, Any]], None] | None = None,
                **overrides: Any) -> MillService:
    env = dict(os.environ)
    with open_project(repo.root, env) as project:
        paths, config = project.paths, project.config
    return MillService(paths, config, env, clock, poll_s=poll_s, turn_runner=turns,
                       agent_override=FAKE_AGENT, on_event=on_event,
                       overrides={"contain": "group", "allow_unchecked": True, **overrides})


def until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


@pytest.fixture
def services() -> Iterator[list[MillService]]:
    """Every service a test starts is stopped at its end, whatever happened."""
    started: list[MillService] = []
    yield started
    for service in started:
        service.close(timeout=10)


def test_orders_fire_under_serve_mill(tmp_path: Path, services: list[MillService]) -> None:
    repo = MillRepo(tmp_path, files={".taskmill/orders/hourly.toml": HOURLY})
    clock = FixedClock(START, step=0.001)
    events: list[dict[str, Any]] = []
    seen: dict[str, Any] = {}

    def react(event: dict[str, Any]) -> None:
        events.append(event)
        if event["event"] in ("watch_started", "dispatched"):  # what the page would show
            seen[event["event"]] = service.status()
        if event["event"] == "task_finished":
            service.stop("alice")

    turns = ScriptedTurns(write({"swept.txt": "swept\n"}))
    # the idle watch sleeps on the fake clock (an hour a look): the slot falls at once
    service = service_for(repo, clock, turns, poll_s=3600.0, on_event=react)
    services.append(service)
    started = service.start("alice")
    assert (started.state, started.started_by, started.orders) == ("watching", "alice", 1)
    until(lambda: service.status().state == "stopped", "the watch fired, worked, stopped")

    slot = iso(START + timedelta(hours=1))
    assert seen["watch_started"].state == "watching"
    assert seen["watch_started"].next_order == slot
    assert (seen["dispatched"].state, seen["dispatched"].working) == ("running", 1)
    fired = [e for e in events if e["event"] == "order_fired"]
    assert [(e["order"], e["scheduled"]) for e in fired] == [("hourly", slot)]
    [task] = [t for t in repo.ledger.list_tasks(status=None) if t.title == "hourly sweep"]
    assert task.status == "closed" and (task.close_reason or "").startswith("landed ")
    repo.assert_all_landed_once([task.id])
    assert repo.git("show", "main:swept.txt") == "swept\n"
    status = service.status()
    assert (status.runs, status.last_exit, status.error) == (1, 143, None)  # stopped: SIGTERM
    assert (status.working, status.next_order) == (0, None)
    kinds = [e.kind for e in repo.ledger.events(limit=500)]
    assert "order_fired" in kinds  # in the audit trail, as under taskmill watch


def test_a_woken_watch_takes_new_work_at_once(tmp_path: Path,
                                               services: list[MillService]) -> None:
    """Created from the page while the watch sleeps: worked now, not at the next look."""
    repo = MillRepo(tmp_path)
    turns = ScriptedTurns(write({"done.txt": "done\n"}))
    started = threading.Event()
    service = service_for(repo, SystemClock(), turns, poll_s=3600.0,  # no look of its own
                          on_event=lambda e: started.set() if e["event"] == "watch_started"
                          else None)
    services.append(service)
    service.start("alice")
    assert started.wait(30), service.status()
    repo.create("tm-new", checks=["test -f done.txt"])
    service.wake()
    until(lambda: repo.task("tm-new")["status"] == "closed", "the new task landed", timeout=20)
    assert service.status().state in ("watching", "running")
    service.close(timeout=10)
    assert service.status().state == "stopped"


def test_stop_while_a_turn_runs_is_clean_and_the_next_start_resumes(
        tmp_path: Path, services: list[MillService]) -> None:
    repo = MillRepo(tmp_path)
    repo.create("tm-a", checks=["test -f out.txt"])
    turn_started = threading.Event()
    steps: list[Step] = [until_cancelled(turn_started), write({"out.txt": "done\n"})]
    turns = ScriptedTurns({"tm-a": steps})
    service = service_for(repo, SystemClock(), turns, grace=0.2)
    services.append(service)
    service.start("alice")
    assert turn_started.wait(30), service.status()
    running = service.status()
    assert (running.state, running.working) == ("running", 1)
    assert service.stop("alice").state == "stopping"
    until(lambda: service.status().state == "stopped", "the mill stopped", timeout=15)

    stopped = service.status()
    assert (stopped.last_exit, stopped.error, stopped.working) == (143, None, 0)
    task = repo.task("tm-a")
    assert task["status"] == "in_progress"  # resumable, as after taskmill watch's Ctrl-C
    assert [a["outcome"] for a in repo.attempts("tm-a")] == ["interrupted"]
    assert "interrupted" in [e.kind for e in repo.ledger.events("tm-a")]
    [first] = turns.calls("tm-a")
    assert first.cancel is not None and first.cancel.is_set()  # the turn was cut

    service.start("bob")  # the interrupted task is resumed and lands
    until(lambda: repo.task("tm-a")["status"] == "closed", "the task landed", timeout=30)
    service.close(timeout=30)
    assert service.status().runs == 2
    assert repo.git("show", "main:out.txt") == "done\n"
    assert [a["outcome"] for a in repo.attempts("tm-a")] == ["interrupted", "passed"]


def test_a_bad_order_file_starts_nothing(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path, files={
        ".taskmill/orders/broken.toml": '[order]\npour = "nowhere"\ntrigger = "manual"\n'})
    service = service_for(repo, SystemClock(), ScriptedTurns(write({})))
    with pytest.raises(InvalidInput, match=r"broken\.toml"):
        service.start("alice")
    assert service.status().state == "stopped"


def test_serve_mill_with_a_bad_order_file_says_so_and_serves_nothing(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path, files={
        ".taskmill/orders/broken.toml": '[order]\npour = "nowhere"\ntrigger = "manual"\n'})
    done = subprocess.run([sys.executable, "-m", "taskmill", "serve", "--port", "0", "--mill"],
                          cwd=repo.root, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done
    assert ".taskmill/orders/broken.toml, line 2: no formula 'nowhere'" in done.stderr
    assert done.stdout == ""  # no address printed
    assert not (repo.root / ".taskmill" / "run" / "serve.token").exists()
