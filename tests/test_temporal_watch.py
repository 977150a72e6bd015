"""``taskmill watch`` on the Temporal executor: a real Temporal dev server, a ``taskmill
worker`` process with its own clone of the shared remote, the watch in the user's checkout.

- in process, on a fake clock: the watch idles with no task (the clock jumps to the order's
  slot, nothing dispatched before), the order fires, the task it creates runs on the worker
  and lands on the remote, and a stop ends the watch;
- ``taskmill watch`` as a process (``[executor] kind = "temporal"``): it stays up with
  nothing to do, a task created while it watches lands, an event order fires on that
  landing and its task lands too, a second watch runs beside it as it does locally (each
  task dispatched once, the slot fired once), and Ctrl-C ends both cleanly;
- Ctrl-C while a workflow runs: the watch exits at once (grace 0), the workflow goes on and
  lands, nothing is left claimed;
- ``serve --mill`` (:class:`~taskmill.mill_service.MillService`) on a temporal ``[executor]``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mill_helpers import agent_script, kill_group, wait_for
from taskmill.clock import FixedClock, SystemClock, iso
from taskmill.mill.events import EventBus
from taskmill.mill.settings import RunSettings, agent_cmd_config
from taskmill.mill.watch import project_watch
from taskmill.mill_service import MillService
from taskmill.project import open_project
from taskmill.temporal.mill import TemporalMill
from temporal_helpers import Cluster, dump

WRITE_FILE = """
(WT / f"{TASK}.txt").write_text(f"done by {TASK}\\n")
"""
HOLD_AGENT = """
(SPY / f"started-{TASK}").write_text("")
while not (SPY / "release").exists():
    time.sleep(0.05)
(WT / f"{TASK}.txt").write_text("done\\n")
"""
DAILY = ('[order]\ncreate = { title = "daily sweep" }\ntrigger = "cron"\n'
         'schedule = "0 3 * * *"\n')
FOLLOW_UP = '''\
[order]
create = { title = "follow up {{ event.task }}" }
trigger = "event"
on = "task.landed"
filter = { label = "api" }
'''


@pytest.fixture
def cluster(tmp_path: Path, temporal_server: str):
    c = Cluster(tmp_path, temporal_server, checks=["test -f README.md"],
                files={".taskmill/orders/daily.toml": DAILY})
    yield c
    c.stop()


def test_watch_on_temporal_idles_fires_an_order_and_lands_its_task_on_a_fake_clock(
        cluster: Cluster) -> None:
    repo = cluster.repo
    agent = agent_script(cluster.tmp / "agent.py", WRITE_FILE, spy=repo.spy)
    cluster.start_worker(1)
    clock = FixedClock(datetime(2026, 1, 5, tzinfo=UTC))
    events: list[dict[str, Any]] = []
    env = dict(os.environ)
    with open_project(repo.root, env) as project:
        settings = RunSettings.from_config(project.config.run, {"allow_unchecked": True})
        bus = EventBus(clock)
        bus.subscribe(events.append)
        watch = project_watch(project.paths, env, clock=clock, bus=bus, poll=60.0)
        table = project.config.executor
        assert table.kind == "temporal" and table.address == cluster.address
        mill = TemporalMill(project.paths, project.config, settings, env=env, clock=clock,
                            bus=bus, address=cluster.address, task_queue=table.task_queue,
                            heartbeat_timeout=table.heartbeat_timeout,
                            agent_override=agent_cmd_config(agent), watch=watch)

        def stop_once_landed(event: dict[str, Any]) -> None:
            if event["event"] == "task_finished":
                mill.signal(signal.SIGTERM)

        bus.subscribe(stop_once_landed)
        summary = mill.run()

    kinds = [e["event"] for e in events]
    assert kinds.index("watch_started") < kinds.index("order_fired") \
        < kinds.index("dispatched"), dump(events)
    # no task: it idled (on the fake clock: no wall time) until the order's slot at 03:00,
    # sleeping at most its poll at a time
    assert clock.slept and max(clock.slept) <= 60.0 and sum(clock.slept) == 3 * 3600.0
    [fired] = [e for e in events if e["event"] == "order_fired"]
    assert fired["scheduled"] == iso(datetime(2026, 1, 5, 3, tzinfo=UTC))
    [task] = repo.ledger.list_tasks()
    assert task.title == "daily sweep"
    landings = cluster.remote_landings()
    assert {k: len(v) for k, v in landings.items()} == {task.id: 1}, cluster.log(1)
    assert repo.ledger.get(task.id).close_reason == f"landed {landings[task.id][0]}"
    assert [(o.task_id, o.outcome) for o in summary.outcomes] == [(task.id, "landed")]
    assert summary.stopped_by == signal.SIGTERM and summary.exit_code == 128 + signal.SIGTERM
    assert kinds[-1] == "run_finished"


def spawn_watch(cluster: Cluster, events: Path, *args: str) -> subprocess.Popen[str]:
    """``taskmill watch`` on the repository's ``[executor] kind = "temporal"`` (no flag)."""
    repo = cluster.repo
    return subprocess.Popen(repo.command("watch", "--allow-unchecked", "--quiet",
                                         "--json-events", str(events), *args),
                            cwd=repo.root, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def kinds_of(path: Path, kind: str) -> list[dict[str, Any]]:
    return [e for e in read_events(path) if e["event"] == kind]


def stop(proc: subprocess.Popen[str], signum: int = signal.SIGINT) -> tuple[int, str, float]:
    """Send ``signum``; the exit status, standard error and how long it took to exit."""
    start = time.monotonic()
    proc.send_signal(signum)
    _out, err = proc.communicate(timeout=60)
    return proc.returncode, err, time.monotonic() - start


@pytest.mark.slow  # two watches and four tasks through the cluster: 20-30 s
def test_taskmill_watch_on_temporal_stays_up_lands_new_work_fires_orders_and_stops(
        tmp_path: Path, temporal_server: str) -> None:
    cluster = Cluster(tmp_path, temporal_server, checks=["test -f README.md"],
                      files={".taskmill/orders/follow.toml": FOLLOW_UP})
    procs: list[subprocess.Popen[str]] = []
    try:
        repo = cluster.repo
        agent = agent_script(tmp_path / "agent.py", WRITE_FILE, spy=repo.spy)
        cluster.start_worker(1)
        first_events = tmp_path / "first.ndjson"
        first = spawn_watch(cluster, first_events, "--agent-cmd", agent)
        procs.append(first)
        assert wait_for(lambda: kinds_of(first_events, "watch_started") or first.poll(),
                        timeout=60, interval=0.1)
        # nothing to do: it stays up, idle, and dispatches nothing
        time.sleep(1.5)
        assert first.poll() is None, first.communicate()[1]
        assert [e["executor"] for e in kinds_of(first_events, "run_started")] == ["temporal"]
        assert not kinds_of(first_events, "dispatched")

        # a task created while it watches is dispatched to the worker and lands on the
        # remote; its landing fires the event order, whose task lands too
        repo.ledger.create("change the api", task_id="tm-api", labels=["api"])

        def follow_up(closed: bool = False) -> str | None:
            found = [t for t in repo.ledger.list_tasks() if t.title == "follow up tm-api"
                     and (t.status == "closed" or not closed)]
            return found[0].id if found else None

        assert wait_for(lambda: follow_up(closed=True), timeout=120, interval=0.2), \
            dump(read_events(first_events)[-10:]) + cluster.log(1)
        follow = str(follow_up())
        assert first.poll() is None  # still up

        # a second watch beside it: not refused, as locally; each task is dispatched by
        # one of them only, each order slot fired once
        second_events = tmp_path / "second.ndjson"
        second = spawn_watch(cluster, second_events, "--agent-cmd", agent)
        procs.append(second)
        assert wait_for(lambda: kinds_of(second_events, "watch_started") or second.poll(),
                        timeout=60, interval=0.1)
        assert second.poll() is None, second.communicate()[1]
        repo.ledger.create("change the api again", task_id="tm-api2", labels=["api"])
        assert wait_for(lambda: len([t for t in repo.ledger.list_tasks()
                                     if t.status == "closed"]) == 4,
                        timeout=120, interval=0.2), dump(repo.ledger.list_tasks())

        for proc in (first, second):  # Ctrl-C: a clean stop, at once (nothing in flight)
            code, err, took = stop(proc)
            assert code == 128 + signal.SIGINT, err
            assert "SIGINT: stopping" in err and "Traceback" not in err, err
            assert took < 15, took
        ids = [t.id for t in repo.ledger.list_tasks()]
        assert sorted(ids) == sorted(["tm-api", "tm-api2", follow, *[
            t.id for t in repo.ledger.list_tasks() if t.title == "follow up tm-api2"]])
        landings = cluster.remote_landings()
        assert {k: len(v) for k, v in landings.items()} == dict.fromkeys(ids, 1)
        dispatched = [e["task"] for path in (first_events, second_events)
                      for e in kinds_of(path, "dispatched")]
        assert sorted(dispatched) == sorted(ids)
        fired = [e for path in (first_events, second_events)
                 for e in kinds_of(path, "order_fired")]
        assert len(fired) == 2
        rows = repo.ledger.store.order_slots("follow", outcomes=["fired"])
        assert len(rows) == 2
        # nothing half-done: no task in progress or claimed, the run locks gone
        assert all(t.status == "closed" for t in repo.ledger.list_tasks())
        assert repo.ledger.claims("mill:") == []
        assert not list(repo.root.joinpath(".taskmill", "run").glob("run-*.lock"))
        finished = [e for e in read_events(first_events) if e["event"] == "run_finished"]
        assert finished and finished[0]["stopped_by"] == "SIGINT"
        repo.verify_ok()
    finally:
        for proc in procs:
            if proc.poll() is None:
                kill_group(proc)
        cluster.stop()


def test_ctrl_c_while_a_workflow_runs_leaves_it_running_and_it_lands(
        tmp_path: Path, temporal_server: str) -> None:
    cluster = Cluster(tmp_path, temporal_server, checks=["test -f README.md"])
    proc = None
    try:
        repo = cluster.repo
        agent = agent_script(tmp_path / "agent.py", HOLD_AGENT, spy=repo.spy)
        cluster.start_worker(1)
        events = tmp_path / "events.ndjson"
        proc = spawn_watch(cluster, events, "--agent-cmd", agent, "--grace", "0")
        assert wait_for(lambda: kinds_of(events, "watch_started") or proc.poll(), timeout=60,
                        interval=0.1)
        repo.create("tm-a")
        assert wait_for(lambda: (repo.spy / "started-tm-a").exists(), timeout=60), \
            cluster.log(1)
        code, err, took = stop(proc)
        assert code == 128 + signal.SIGINT and "Traceback" not in err, err
        assert took < 15, took
        assert repo.ledger.get("tm-a").status == "in_progress"  # its workflow goes on
        (repo.spy / "release").write_text("")
        assert wait_for(lambda: repo.ledger.get("tm-a").status == "closed", timeout=60), \
            cluster.log(1)
        assert {k: len(v) for k, v in cluster.remote_landings().items()} == {"tm-a": 1}
        finished = kinds_of(events, "run_finished")
        assert finished and finished[0]["stopped_by"] == "SIGINT"
        assert not kinds_of(events, "task_finished")  # it did not wait for the workflow
        repo.verify_ok()
    finally:
        if proc is not None and proc.poll() is None:
            kill_group(proc)
        cluster.stop()


def test_serve_mill_runs_the_watch_on_a_temporal_executor(cluster: Cluster) -> None:
    repo = cluster.repo
    agent = agent_script(cluster.tmp / "agent.py", WRITE_FILE, spy=repo.spy)
    cluster.start_worker(1)
    env = dict(os.environ)
    events: list[dict[str, Any]] = []
    with open_project(repo.root, env) as project:
        paths, config = project.paths, project.config
    service = MillService(paths, config, env, SystemClock(), poll_s=60.0,
                          agent_override=agent_cmd_config(agent), on_event=events.append,
                          overrides={"allow_unchecked": True})
    try:
        service.start("test")
        assert wait_for(lambda: any(e["event"] == "watch_started" for e in events),
                        timeout=60), service.status()
        assert service.status().state == "watching"
        [run] = [e for e in events if e["event"] == "run_started"]
        assert run["executor"] == "temporal"
        repo.create("tm-a")
        service.wake()  # as the page does: the idle watch (poll 60 s) looks at once
        assert wait_for(lambda: repo.ledger.get("tm-a").status == "closed", timeout=60), (
            service.status(), cluster.log(1))
        assert {k: len(v) for k, v in cluster.remote_landings().items()} == {"tm-a": 1}
        service.stop("test")
        assert wait_for(lambda: service.status().state == "stopped", timeout=30)
        status = service.status()
        assert status.error is None and status.last_exit == 128 + signal.SIGTERM
    finally:
        service.close(timeout=30)


def test_serve_mill_on_temporal_without_an_address_says_so_and_starts_nothing(
        tmp_path: Path) -> None:
    from mill_helpers import MillRepo
    from taskmill.errors import InvalidInput

    repo = MillRepo(tmp_path)
    with (repo.root / ".taskmill" / "config.toml").open("a") as fh:
        fh.write('\n[executor]\nkind = "temporal"\n')
    env = dict(os.environ)
    with open_project(repo.root, env) as project:
        service = MillService(project.paths, project.config, env, SystemClock())
    with pytest.raises(InvalidInput, match="needs the Temporal frontend") as err:
        service.start("test")
    assert "[executor] address" in (err.value.hint or "")
    assert service.status().state == "stopped"
