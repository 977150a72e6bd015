"""``taskmill watch`` in one process on a fake clock and the memory store: three simulated
days of a daily cron order pouring a formula, each instance worked by scripted turns (a
step's own ``max_iterations`` holds), and a stop signal ending the watch cleanly."""

from __future__ import annotations

import os
import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mill_helpers import MillRepo
from taskmill.agents.base import AgentConfig
from taskmill.clock import FixedClock, iso
from taskmill.ledger.memory import MemoryStore
from taskmill.mill.engine import Mill
from taskmill.mill.events import EventBus
from taskmill.mill.settings import RunSettings
from taskmill.mill.watch import Watch
from taskmill.orders import OrderScheduler, load_orders
from taskmill.project import open_project
from taskmill.testing.turns import FakeTurn, Reply, ScriptedTurns

FAKE_AGENT = AgentConfig(name="fake", adapter="exec", command=("not-run",))
DAILY = '''\
formula = "daily"
[vars.day]
[[steps]]
id = "report"
title = "Report for {{ day }}"
[[steps]]
id = "fix"
needs = ["report"]
title = "Fix what the report of {{ day }} found"
checks = ["false"]
max_iterations = 1
'''
ORDER = '''\
[order]
pour = "daily"
vars = { day = "{{ scheduled[:10] }}" }
trigger = "cron"
schedule = "0 3 * * *"
'''


def test_three_days_of_a_daily_order_in_one_watch(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path, files={".taskmill/formulas/daily.toml": DAILY,
                                     ".taskmill/orders/daily.toml": ORDER})
    store = MemoryStore()
    repo.store = store

    def work(turn: FakeTurn) -> Reply:
        (turn.worktree / f"{turn.task_id}.txt").write_text(f"{turn.iteration}\n")
        return Reply()

    turns = ScriptedTurns(work)
    clock = FixedClock(datetime(2026, 1, 5, tzinfo=UTC), step=0.001)
    events: list[dict[str, Any]] = []
    env = dict(os.environ)
    with open_project(repo.root, env) as project:
        settings = RunSettings.from_config(project.config.run, {
            "contain": "group", "allow_unchecked": True, "workers": 2})
        bus = EventBus(clock)
        bus.subscribe(events.append)
        scheduler = OrderScheduler(load_orders(project.paths.dir / "orders"),
                                   formulas_dir=project.paths.dir / "formulas",
                                   roles_dir=None, clock=clock)
        scheduler.validate()
        watch = Watch(scheduler, clock=clock, bus=bus, poll=3600.0)
        mill = Mill(project.paths, project.config, settings, env=env, clock=clock, bus=bus,
                    agent_override=FAKE_AGENT, turn_runner=turns, store=lambda: store,
                    watch=watch)

        def stop_after_three_days(event: dict[str, Any]) -> None:
            finished = [e for e in events if e["event"] == "task_finished"]
            if event["event"] == "task_finished" and len(finished) == 6:
                mill.signal(signal.SIGTERM)

        bus.subscribe(stop_after_three_days)
        summary = mill.run()

    assert summary.stopped_by == signal.SIGTERM and summary.exit_code == 143
    fired = [e for e in events if e["event"] == "order_fired"]
    assert [e["scheduled"] for e in fired] == [
        iso(datetime(2026, 1, d, 3, tzinfo=UTC)) for d in (5, 6, 7)]
    assert all(0 <= e["latency"] < 1.0 for e in fired)
    ledger = repo.ledger
    epics = ledger.list_tasks(issue_type="epic")
    assert sorted(e.title for e in epics) == [
        f"daily: day=2026-01-0{d}" for d in (5, 6, 7)]
    for epic in epics:
        report, fix = sorted(ledger.list_tasks(parent=epic.id), key=lambda t: t.title,
                             reverse=True)
        assert report.title.startswith("Report") and report.status == "closed"
        assert (report.close_reason or "").startswith("landed ")
        # the step's own Ralph loop: one iteration (the run's default is 5), then blocked
        assert fix.status == "blocked" and len(turns.calls(fix.id)) == 1
    repo.assert_all_landed_once([t.id for t in ledger.list_tasks()
                                 if t.title.startswith("Report")])
    assert ledger.verify().ok


def test_an_idle_watch_sleeps_until_a_slot_a_change_a_stop_or_the_recheck(
        tmp_path: Path) -> None:
    from taskmill.ledger import Ledger

    (tmp_path / "orders").mkdir()
    (tmp_path / "orders" / "hourly.toml").write_text(
        '[order]\ncreate = { title = "x" }\ntrigger = "interval"\ninterval = "1h"\n',
        encoding="utf-8")
    clock = FixedClock(datetime(2026, 1, 5, tzinfo=UTC))
    ledger = Ledger(MemoryStore(), prefix="tm", clock=clock, actor="test")
    scheduler = OrderScheduler(load_orders(tmp_path / "orders"), formulas_dir=tmp_path,
                               roles_dir=None, clock=clock)
    watch = Watch(scheduler, clock=clock, bus=EventBus(clock), poll=1.0, recheck=600.0)
    watch.start(ledger)
    never = lambda: False  # noqa: E731
    watch.idle(ledger, never)  # nothing happens: back after the recheck, 600 one-second looks
    assert len(clock.slept) == 600 and clock.monotonic() == 600.0
    ledger.create("new work")
    watch.idle(ledger, never)  # the ledger changed: back after one look
    assert len(clock.slept) == 601
    watch.idle(ledger, lambda: True)  # a stop asked: back at once
    assert len(clock.slept) == 601
    watch.recheck = 7200.0
    watch.idle(ledger, never)  # the slot at 01:00 falls first: back exactly then
    assert clock.now() == datetime(2026, 1, 5, 1, tzinfo=UTC)
    watch.tick(ledger)
    assert [f.outcome for f in watch.firings] == ["fired"]


def test_a_refused_task_is_worked_once_it_gets_checks(tmp_path: Path) -> None:
    """A long-running watch looks again at a task it left alone once the task changes."""
    repo = MillRepo(tmp_path, allow_unchecked=False)
    store = MemoryStore()
    repo.store = store
    turns = ScriptedTurns(lambda turn: (turn.worktree / "done.txt").write_text("x\n") and None)
    clock = FixedClock(datetime(2026, 1, 5, tzinfo=UTC), step=0.001)
    repo.create("tm-bare")
    events: list[dict[str, Any]] = []
    env = dict(os.environ)
    with open_project(repo.root, env) as project:
        settings = RunSettings.from_config(project.config.run, {"contain": "group"})
        bus = EventBus(clock)
        bus.subscribe(events.append)
        scheduler = OrderScheduler([], formulas_dir=tmp_path, roles_dir=None, clock=clock)
        mill = Mill(project.paths, project.config, settings, env=env, clock=clock, bus=bus,
                    agent_override=FAKE_AGENT, turn_runner=turns, store=lambda: store,
                    watch=Watch(scheduler, clock=clock, bus=bus, poll=5.0))

        def react(event: dict[str, Any]) -> None:
            if event["event"] == "refused":  # someone gives it checks while the watch idles
                repo.ledger.update("tm-bare", {"checks": ["test -f done.txt"]})
            if event["event"] == "task_finished":
                mill.signal(signal.SIGTERM)

        bus.subscribe(react)
        failsafe = threading.Timer(60, mill.signal, [signal.SIGINT])  # never hang the suite
        failsafe.start()
        try:
            summary = mill.run()
        finally:
            failsafe.cancel()
    kinds = [e["event"] for e in events]
    assert kinds.count("refused") == 1 and kinds.index("refused") < kinds.index("landed")
    assert repo.ledger.get("tm-bare").status == "closed"
    assert summary.refused == {} and summary.stopped_by == signal.SIGTERM
