"""Orders (``.taskmill/orders``): a fake clock drives cron and interval orders through a
simulated week, across a kill (a crash mid-firing) and a restart; catch_up, skip_if_open,
event, condition and manual orders."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import CliResult
from taskmill.clock import FixedClock, iso
from taskmill.errors import InvalidInput
from taskmill.ledger import Ledger
from taskmill.orders import OrderScheduler, load_orders

MONDAY = datetime(2026, 1, 5, tzinfo=UTC)
Cli = Callable[..., CliResult]


class Killed(BaseException):
    """Stands for a kill -9 in the middle of a firing: nothing after it runs."""


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def scheduler(root: Path, clock: FixedClock, **kw: object) -> OrderScheduler:
    found = OrderScheduler(load_orders(root / "orders"), formulas_dir=root / "formulas",
                           roles_dir=root / "roles", clock=clock, **kw)  # type: ignore[arg-type]
    found.validate()
    return found


def open_ledger(root: Path, clock: FixedClock) -> Ledger:
    return Ledger.open(root / "taskmill.db", prefix="tm", clock=clock, actor="test")


def run_until(sched: OrderScheduler, ledger: Ledger, clock: FixedClock, end: datetime,
              fired: list[tuple[str, str, float]]) -> None:
    """Sleep to each next slot (as taskmill watch does) and tick, until ``end``."""
    while True:
        nxt = sched.next_due()
        if nxt is None or nxt > end:
            clock.advance(max(0.0, (end - clock.now()).total_seconds()))
            return
        clock.advance((nxt - clock.now()).total_seconds())
        for f in sched.tick(ledger):
            if f.outcome == "fired":
                assert f.scheduled is not None and f.at is not None
                fired.append((f.order, f.slot, (f.at - f.scheduled).total_seconds()))


def test_a_week_of_cron_and_interval_slots_fires_each_once_across_a_kill(tmp_path: Path,
                                                                         monkeypatch:
                                                                         pytest.MonkeyPatch
                                                                         ) -> None:
    write(tmp_path, "orders/nightly.toml", '[order]\ncreate = { title = "nightly {{ slot }}" }\n'
          'trigger = "cron"\nschedule = "0 3 * * *"\ncatch_up = "all"\n')
    write(tmp_path, "orders/sweep.toml", '[order]\ncreate = { title = "sweep {{ slot }}" }\n'
          'trigger = "interval"\ninterval = "6h"\ncatch_up = "all"\n')
    clock = FixedClock(MONDAY)
    ledger = open_ledger(tmp_path, clock)
    sched = scheduler(tmp_path, clock)
    sched.arm(ledger)
    fired: list[tuple[str, str, float]] = []
    run_until(sched, ledger, clock, MONDAY + timedelta(days=2, hours=5, minutes=59), fired)
    # Wednesday 06:00: the sweep's slot is being fired when the process is killed
    calls = {"n": 0}
    real_create = Ledger.create

    def dying_create(self: Ledger, *args: object, **kwargs: object) -> object:
        calls["n"] += 1
        real_create(self, *args, **kwargs)  # type: ignore[arg-type]
        raise Killed  # after the task is written, before the transaction commits

    monkeypatch.setattr(Ledger, "create", dying_create)
    clock.advance(60)
    with pytest.raises(Killed):
        sched.tick(ledger)
    assert calls["n"] == 1
    monkeypatch.setattr(Ledger, "create", real_create)
    ledger.close_db()
    # down for 13 hours: the 12:00 and 18:00 sweeps pass too; then a fresh process starts
    clock.advance(13 * 3600)
    ledger = open_ledger(tmp_path, clock)
    sched = scheduler(tmp_path, clock)
    sched.arm(ledger)
    for f in sched.tick(ledger):  # catch_up = "all": the three sweeps, late
        assert f.outcome == "fired"
        fired.append((f.order, f.slot, -1.0))
    run_until(sched, ledger, clock, MONDAY + timedelta(days=7), fired)

    nightly = [s for o, s, _ in fired if o == "nightly"]
    sweep = [s for o, s, _ in fired if o == "sweep"]
    assert nightly == [iso(MONDAY + timedelta(days=d, hours=3)) for d in range(7)]
    assert sweep == [iso(MONDAY + timedelta(hours=6 * k)) for k in range(1, 29)]
    # each slot exactly once, in the ledger too, and nothing left of the killed firing
    for name, slots in (("nightly", nightly), ("sweep", sweep)):
        rows = ledger.store.order_slots(name, outcomes=["fired"])
        assert sorted(r.slot for r in rows) == sorted(slots)
        assert len({r.task_id for r in rows}) == len(slots)
    assert len(ledger.list_tasks()) == len(nightly) + len(sweep)
    # on time while it ran: each fired at its scheduled second
    assert all(lat == 0.0 for _o, _s, lat in fired if lat >= 0)
    kinds = [e.kind for e in ledger.events(limit=None) if e.kind.startswith("order_")]
    assert kinds.count("order_fired") == len(nightly) + len(sweep)
    assert ledger.verify().ok


@pytest.mark.parametrize(("catch_up", "fired_after", "missed"),
                         [("all", 3, 0), ("one", 1, 2), ("none", 0, 3)])
def test_catch_up_after_downtime(tmp_path: Path, catch_up: str, fired_after: int,
                                 missed: int) -> None:
    write(tmp_path, "orders/daily.toml", '[order]\ncreate = { title = "daily" }\n'
          f'trigger = "cron"\nschedule = "0 3 * * *"\ncatch_up = "{catch_up}"\n')
    clock = FixedClock(MONDAY)
    ledger = open_ledger(tmp_path, clock)
    scheduler(tmp_path, clock).arm(ledger)
    clock.advance(3 * 86400 + 600)  # down over three 03:00 slots; back at 00:10 Thursday
    sched = scheduler(tmp_path, clock)
    sched.arm(ledger)
    done = sched.tick(ledger)
    assert [f.outcome for f in done].count("fired") == fired_after
    rows = ledger.store.order_slots("daily", outcomes=["missed"])
    if missed:
        assert len(rows) == 1 and f"{missed} slot" in rows[0].reason
    else:
        assert rows == []
    assert sched.tick(ledger) == []  # nothing twice
    clock.advance(3 * 3600 - 600)  # Thursday 03:00: back on schedule
    assert [f.outcome for f in sched.tick(ledger)] == ["fired"]
    status = sched.status(ledger)[0]
    assert status["next"] == iso(MONDAY + timedelta(days=4, hours=3))


def test_skip_if_open_holds_the_next_instance_until_the_last_is_closed(tmp_path: Path) -> None:
    write(tmp_path, "orders/hourly.toml", '[order]\ncreate = { title = "check in" }\n'
          'trigger = "interval"\ninterval = "1h"\nskip_if_open = true\n')
    clock = FixedClock(MONDAY)
    ledger = open_ledger(tmp_path, clock)
    sched = scheduler(tmp_path, clock)
    sched.arm(ledger)
    clock.advance(3600)
    [first] = sched.tick(ledger)
    assert first.outcome == "fired" and first.task_id
    clock.advance(3600)
    [second] = sched.tick(ledger)
    assert second.outcome == "skipped" and second.task_id == first.task_id
    assert "skip_if_open" in sched.status(ledger)[0]["why_not"]
    ledger.close(first.task_id, "done")
    clock.advance(3600)
    [third] = sched.tick(ledger)
    assert third.outcome == "fired" and third.task_id != first.task_id


def test_event_order_pours_once_per_matching_landing(tmp_path: Path) -> None:
    write(tmp_path, "formulas/followup.toml", 'formula = "followup"\n[vars.task]\n'
          '[[steps]]\nid = "docs"\ntitle = "Document {{ task }}"\n')
    write(tmp_path, "orders/docs.toml", '[order]\npour = "followup"\n'
          'vars = { task = "{{ event.task }}" }\ntrigger = "event"\non = "task.landed"\n'
          'filter = { label = "api" }\n')
    clock = FixedClock(MONDAY, step=1.0)
    ledger = open_ledger(tmp_path, clock)
    api = ledger.create("api change", labels=["api"])
    other = ledger.create("other change")
    sched = scheduler(tmp_path, clock)
    sched.arm(ledger)
    ledger.close(other.id, "landed abc on main", system=True)
    ledger.close(api.id, "landed def on main", system=True)
    [fired] = sched.tick(ledger)
    assert fired.outcome == "fired"
    epic = ledger.show(fired.task_id or "")
    assert [c.title for c in epic.child_tasks] == [f"Document {api.id}"]
    # a restart looks at the events after the last one it dealt with: nothing twice
    again = scheduler(tmp_path, clock)
    again.arm(ledger)
    assert again.tick(ledger) == []
    ledger.reopen(api.id)
    ledger.close(api.id, "closed by hand")  # closed, not landed: no match
    assert again.tick(ledger) == []


def test_condition_order_fires_when_its_check_passes(tmp_path: Path) -> None:
    write(tmp_path, "orders/cond.toml", '[order]\ncreate = { title = "work to do" }\n'
          'trigger = "condition"\ncheck = "scripts/needs-work"\ninterval = "5m"\n')
    answers = [1, 0]
    clock = FixedClock(MONDAY)
    ledger = open_ledger(tmp_path, clock)
    sched = scheduler(tmp_path, clock, run_check=lambda cmd: (answers.pop(0), "out"))
    sched.arm(ledger)
    clock.advance(300)
    assert sched.tick(ledger) == []
    assert "exited 1" in sched.status(ledger)[0]["why_not"]
    clock.advance(300)
    assert [f.outcome for f in sched.tick(ledger)] == ["fired"]


def test_manual_order_and_a_failing_pour_is_recorded_not_retried(tmp_path: Path) -> None:
    write(tmp_path, "formulas/two.toml", 'formula = "two"\n[vars.x]\n[[steps]]\nid = "a"\n'
          'title = "A {{ x }}"\n')
    write(tmp_path, "orders/byhand.toml", '[order]\npour = "two"\nvars = { x = "1" }\n'
          'trigger = "manual"\n')
    clock = FixedClock(MONDAY, step=1.0)
    ledger = open_ledger(tmp_path, clock)
    sched = scheduler(tmp_path, clock)
    sched.arm(ledger)
    assert sched.tick(ledger) == []
    assert sched.status(ledger)[0]["why_not"].startswith("manual")
    fired = sched.fire_manual(ledger, "byhand")
    assert fired.outcome == "fired" and sched.status(ledger)[0]["last"]["task"] == fired.task_id
    # the formula changes under the order: the next firing fails, is recorded, creates nothing
    write(tmp_path, "formulas/two.toml", 'formula = "two"\n[vars.x]\n[[steps]]\nid = "a"\n'
          'title = "A {{ y }}"\n')
    count = len(ledger.list_tasks())
    failed = sched.fire_manual(ledger, "byhand")
    assert failed.outcome == "failed" and "undefined" in failed.reason
    assert len(ledger.list_tasks()) == count


@pytest.mark.parametrize(("text", "line", "words"), [
    ('[order]\ncreate = { title = "x" }\ntrigger = "cron"\nschedule = "61 * * * *"\n', 4,
     "not a cron expression"),
    ('[order]\ncreate = { title = "x" }\ntrigger = "interval"\n', 1, "needs interval"),
    ('[order]\ncreate = { title = "x" }\ntrigger = "interval"\ninterval = "soon"\n', 4,
     "not like 30s"),
    ('[order]\ncreate = { title = "x" }\ntrigger = "manual"\ncolour = "red"\n', 4,
     "Extra inputs"),
    ('[order]\npour = "nope"\ntrigger = "manual"\n', 2, "no formula 'nope'"),
])
def test_bad_orders_name_file_and_line(tmp_path: Path, text: str, line: int,
                                       words: str) -> None:
    write(tmp_path, "orders/bad.toml", text)
    with pytest.raises(InvalidInput) as err:
        scheduler(tmp_path, FixedClock(MONDAY))
    assert f"bad.toml, line {line}:" in err.value.message
    assert words in err.value.message


@pytest.mark.parametrize(("catch_up", "fired", "missed"), [("all", 3, 0), ("one", 1, 2),
                                                          ("none", 0, 3)])
def test_event_catch_up_after_downtime(tmp_path: Path, catch_up: str, fired: int,
                                       missed: int) -> None:
    write(tmp_path, "orders/closed.toml", '[order]\ncreate = { title = "after {{ event.task }}" }'
          f'\ntrigger = "event"\non = "task.closed"\ncatch_up = "{catch_up}"\n')
    clock = FixedClock(MONDAY, step=1.0)
    ledger = open_ledger(tmp_path, clock)
    sched = scheduler(tmp_path, clock)
    sched.arm(ledger)
    first = ledger.create("seen live")
    ledger.close(first.id, "done")
    assert [f.outcome for f in sched.tick(ledger)] == ["fired"]
    # the watch is down while three tasks close
    down = [ledger.create(f"while down {n}").id for n in range(3)]
    for tid in down:
        ledger.close(tid, "done")
    again = scheduler(tmp_path, clock)
    again.arm(ledger)
    done = again.tick(ledger)
    assert [f.outcome for f in done].count("fired") == fired
    assert [f.outcome for f in done].count("missed") == (1 if missed else 0)
    made = [ledger.get(f.task_id or "").title for f in done if f.outcome == "fired"]
    assert made == [f"after {tid}" for tid in down][len(down) - fired:]
    # back to live: the next close fires, whatever catch_up says
    ledger.close(ledger.create("live again").id, "done")
    assert [f.outcome for f in again.tick(ledger)] == ["fired"]
    assert again.tick(ledger) == []


def test_cli_orders_list_and_fire(cli: Cli, taskmill_repo: Path) -> None:
    tm = taskmill_repo / ".taskmill"
    write(tm, "orders/nightly.toml", '[order]\ncreate = { title = "nightly" }\n'
          'trigger = "cron"\nschedule = "0 3 * * *"\nskip_if_open = true\n')
    write(tm, "orders/byhand.toml", '[order]\ncreate = { title = "by hand" }\n'
          'trigger = "manual"\n')
    out = cli("orders", "list", cwd=taskmill_repo).ok().stdout
    assert "nightly: create 'nightly', cron 0 3 * * * (UTC)" in out
    assert "not armed yet" in out and "fires only with `taskmill orders fire NAME`" in out
    fired = cli("orders", "fire", "nightly", "--json", cwd=taskmill_repo).ok().json()
    assert fired["outcome"] == "fired" and fired["task"]
    held = cli("orders", "fire", "nightly", cwd=taskmill_repo).ok().stdout
    assert held.startswith("nightly skipped: the last instance") and "skip_if_open" in held
    listed = {o["order"]: o for o in cli("orders", "list", "--json", cwd=taskmill_repo)
              .ok().json()}
    assert listed["nightly"]["last"]["task"] == fired["task"]
    assert "skip_if_open" in listed["nightly"]["why_not"]
    write(tm, "orders/bad.toml", '[order]\ntrigger = "manual"\n')
    bad = cli("orders", "list", "--json", cwd=taskmill_repo)
    assert bad.exit_code == 2 and bad.error()["code"] == "order_invalid"
    assert "bad.toml, line 1" in bad.error()["message"]
