"""The orders' scheduler: arms the orders, fires each slot that falls due exactly once, and
says what each order did and will do (``taskmill orders list``).

Crash safety: a slot is recorded (:meth:`LedgerStore.record_order_slot`) in the same
transaction as the work it creates, and the slot's key is its scheduled time (or the event's
seq), so a ``kill -9`` at any point leaves the slot either fired and recorded, or neither
(then the next start fires it, as ``catch_up`` says). Every slot also leaves an audit event
(``order_fired``, ``order_skipped``, ``order_missed``, ``order_failed``, ``order_armed``).
The clock is passed in: tests drive a week of slots with a fake one.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2

from ..clock import Clock, iso
from ..errors import TaskmillError
from ..formulas import find_formula, load_formula, plan_pour, pour
from ..ledger import Ledger, OrderSlot
from ..model import CLOSED, TOMBSTONE
from ..paths import LedgerPaths
from ..roles import check_role
from .load import LoadedOrder, find_order
from .model import Order
from .status import MANUAL, last_timed_slot, order_status
from .triggers import (
    due_slots,
    event_key,
    event_matches,
    event_seq,
    late,
    next_slot,
    slot_key,
    task_event,
)

LATE = timedelta(seconds=60)
"""A slot found due later than this after its time was missed (``catch_up = "none"``)."""
_TEMPLATES = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)

CheckRunner = Callable[[str], tuple[int, str]]
"""Runs a condition order's check: the command -> (exit status, the end of its output)."""


@dataclass
class Firing:
    """What became of one slot."""

    order: str
    slot: str
    outcome: str
    """fired, skipped, missed or failed"""
    task_id: str | None = None
    reason: str = ""
    scheduled: datetime | None = None
    at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {"order": self.order, "slot": self.slot, "outcome": self.outcome,
                "task": self.task_id, "reason": self.reason,
                "scheduled": iso(self.scheduled) if self.scheduled else None,
                "at": iso(self.at) if self.at else None,
                "latency": (round((self.at - self.scheduled).total_seconds(), 3)
                            if self.at and self.scheduled else None)}


@dataclass
class _State:
    loaded: LoadedOrder
    cursor: datetime | None = None
    """Timed orders: the latest slot dealt with (or when the order was armed)."""
    seq: int | None = None
    """Event orders: the latest ledger event looked at."""
    note: str = ""
    """Why it last did not fire, when that is not recorded (a condition not met)."""
    backlog: int | None = None
    """Event orders: the events up to this seq passed while nothing watched (``catch_up``)."""


class _Taken(Exception):
    """The slot was recorded meanwhile (another watcher): undo what this one created."""


@dataclass
class OrderScheduler:
    orders: list[LoadedOrder]
    formulas_dir: Path
    roles_dir: Path | None
    clock: Clock
    actor: str = "orders"
    run_check: CheckRunner | None = None
    late: timedelta = LATE
    _states: dict[str, _State] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self._states = {o.name: _State(o) for o in self.orders}

    # -- checking --------------------------------------------------------------------------

    def validate(self) -> None:
        """Check each order's formula and variables now (placeholders for the slot and the
        event), so a bad order stops ``taskmill watch`` at start, naming its file."""
        for loaded in self.orders:
            order = loaded.order
            context = _context(loaded.name, "SLOT", None, {"task": "TASK", "kind": "KIND",
                                                          "title": "TITLE", "labels": []})
            try:
                if order.pour is not None:
                    formula = load_formula(find_formula(self.formulas_dir, order.pour))
                    plan_pour(formula, _render_vars(order, context), roles_dir=self.roles_dir)
                elif order.create is not None:
                    _render(order.create.title, context)
                    if order.create.role is not None and self.roles_dir is not None:
                        check_role(self.roles_dir.parent, order.create.role,
                                   what="create.role")
            except TaskmillError as exc:
                raise loaded.error(loaded.line("pour" if order.pour else "create"),
                                   exc.message, hint=exc.hint) from None
            except jinja2.TemplateError as exc:
                raise loaded.error(loaded.line("vars" if order.pour else "create"),
                                   f"template error: {exc}") from None

    # -- arming ----------------------------------------------------------------------------

    def arm(self, ledger: Ledger) -> None:
        """Read where each order stands; an order never armed starts now (its first slot is
        the first one after now; an event order sees the events after now)."""
        now = self.clock.now()
        for name, state in self._states.items():
            order = state.loaded.order
            rows = ledger.store.order_slots(name)
            if order.trigger in ("cron", "interval", "condition"):
                state.cursor = last_timed_slot(rows)
                if state.cursor is None:
                    state.cursor = now
                    self._armed(ledger, name, slot_key(now), now)
            elif order.trigger == "event":
                seqs = [s for r in rows if (s := event_seq(r.slot)) is not None]
                if seqs:
                    state.seq = max(seqs)
                    state.backlog = ledger.last_seq()  # what happened while it was down
                else:
                    state.seq = ledger.last_seq()
                    self._armed(ledger, name, event_key(state.seq), now)

    def _armed(self, ledger: Ledger, name: str, key: str, now: datetime) -> None:
        with ledger.transaction() as store:
            if store.record_order_slot(OrderSlot(name, key, "armed", None,
                                                 "first seen by taskmill watch", iso(now))):
                ledger.record("order_armed", None, {"order": name, "slot": key},
                              actor=self.actor)

    # -- firing ----------------------------------------------------------------------------

    def next_due(self) -> datetime | None:
        """When the next timed slot falls (None: no timed order)."""
        times = [n for s in self._states.values() if s.cursor is not None
                 and (n := next_slot(s.loaded.order, s.cursor)) is not None]
        return min(times) if times else None

    def tick(self, ledger: Ledger) -> list[Firing]:
        """Fire every slot due now (and the events since the last look)."""
        out: list[Firing] = []
        for state in self._states.values():
            trigger = state.loaded.order.trigger
            if trigger in ("cron", "interval", "condition") and state.cursor is not None:
                out += self._timed(ledger, state)
            elif trigger == "event" and state.seq is not None:
                out += self._events(ledger, state)
        return out

    def _timed(self, ledger: Ledger, state: _State) -> list[Firing]:
        order, name = state.loaded.order, state.loaded.name
        now = self.clock.now()
        assert state.cursor is not None
        due = list(due_slots(order, state.cursor, now))
        if not due:
            return []
        if order.trigger == "condition":
            state.cursor = due[-1]
            code, output = self._check(order)
            if code != 0:
                state.note = (f"{iso(due[-1])}: the check `{order.check}` exited {code}"
                              + (f": {output}" if output else ""))
                return []
            fire: list[datetime] = due[-1:]
            missed: list[datetime] = []
        elif order.catch_up == "all":
            fire, missed = due, []
        elif order.catch_up == "one":
            fire, missed = due[-1:], due[:-1]
        else:
            fire = [d for d in due if not late(d, now, self.late)]
            missed = [d for d in due if late(d, now, self.late)]
        out: list[Firing] = []
        if missed:
            out.append(self._missed(ledger, name, order, missed, now))
        for slot in fire:
            out.append(self._fire(ledger, state.loaded, slot_key(slot), slot, None))
        state.cursor = due[-1]
        return out

    def _missed(self, ledger: Ledger, name: str, order: Order, missed: list[datetime],
                now: datetime) -> Firing:
        count = len(missed)
        span = iso(missed[0]) if count == 1 else f"{iso(missed[0])} to {iso(missed[-1])}"
        reason = (f"{count} slot{'s' if count != 1 else ''} ({span}) passed while nothing fired "
                  f"them (catch_up = {order.catch_up!r}"
                  + (": only the latest is fired)" if order.catch_up == "one" else ")"))
        key = slot_key(missed[-1])
        with ledger.transaction() as store:
            if store.record_order_slot(OrderSlot(name, key, "missed", None, reason, iso(now))):
                ledger.record("order_missed", None, {"order": name, "slot": key,
                                                     "count": count, "first": iso(missed[0])},
                              actor=self.actor)
        return Firing(name, key, "missed", None, reason, missed[-1], now)

    def _events(self, ledger: Ledger, state: _State) -> list[Firing]:
        """Fire for each matching event since the last look. Events that passed while no
        watch ran (the backlog) follow ``catch_up``: all fire, only the latest, or none."""
        out: list[Firing] = []
        order = state.loaded.order
        held: list[tuple[int, dict[str, Any]]] = []
        while True:
            assert state.seq is not None
            events = ledger.events_since(state.seq, limit=500)
            if not events:
                break
            for event in events:
                if state.backlog is not None and event.seq > state.backlog:
                    out += self._caught_up(ledger, state, held)
                state.seq = event.seq
                task = ledger.find(event.task_id) if event.task_id else None
                kind = task_event(event, task)
                if kind is None or not event_matches(order, kind, task):
                    continue
                assert task is not None
                about = {"task": task.id, "kind": kind, "title": task.title,
                         "labels": list(task.labels), "seq": event.seq}
                if state.backlog is not None and order.catch_up != "all":
                    held.append((event.seq, about))
                    continue
                out.append(self._fire(ledger, state.loaded, event_key(event.seq), None, about))
        return out + self._caught_up(ledger, state, held)

    def _caught_up(self, ledger: Ledger, state: _State,
                   held: list[tuple[int, dict[str, Any]]]) -> list[Firing]:
        """The backlog is read: fire the latest held event (``catch_up = "one"``), record
        the others as missed."""
        state.backlog = None
        if not held:
            return []
        order, name = state.loaded.order, state.loaded.name
        keep = held[-1:] if order.catch_up == "one" else []
        missed = held[:len(held) - len(keep)]
        held.clear()
        out: list[Firing] = []
        if missed:
            now = self.clock.now()
            key = event_key(missed[-1][0])
            reason = (f"{len(missed)} matching event{'s' if len(missed) != 1 else ''} passed "
                      f"while nothing watched (catch_up = {order.catch_up!r})")
            with ledger.transaction() as store:
                if store.record_order_slot(OrderSlot(name, key, "missed", None, reason,
                                                     iso(now))):
                    ledger.record("order_missed", None, {"order": name, "slot": key,
                                                         "count": len(missed)},
                                  actor=self.actor)
            out.append(Firing(name, key, "missed", None, reason, None, now))
        for seq, about in keep:
            out.append(self._fire(ledger, state.loaded, event_key(seq), None, about))
        return out

    def fire_manual(self, ledger: Ledger, name: str) -> Firing:
        """Fire ``name`` now, by hand (any trigger; ``skip_if_open`` holds)."""
        loaded = find_order(self.orders, name)
        now = self.clock.now()
        return self._fire(ledger, loaded, iso(now) + MANUAL, now, None)

    def _fire(self, ledger: Ledger, loaded: LoadedOrder, key: str, scheduled: datetime | None,
              event: dict[str, Any] | None) -> Firing:
        order, name = loaded.order, loaded.name
        now = self.clock.now()
        context = _context(name, key, scheduled, event)
        try:
            with ledger.transaction() as store:
                holder = _open_instance(ledger, name) if order.skip_if_open else None
                if holder is not None:
                    reason = (f"the last instance {holder[0]} is {holder[1]}, not finished "
                              "(skip_if_open)")
                    if not store.record_order_slot(OrderSlot(name, key, "skipped", holder[0],
                                                             reason, iso(now))):
                        raise _Taken
                    ledger.record("order_skipped", holder[0], {"order": name, "slot": key},
                                  actor=self.actor)
                    return Firing(name, key, "skipped", holder[0], reason, scheduled, now)
                created = self._create(ledger, loaded, context)
                if not store.record_order_slot(OrderSlot(name, key, "fired", created, "",
                                                         iso(now))):
                    raise _Taken
                ledger.record("order_fired", created,
                              {"order": name, "slot": key, "trigger": order.trigger,
                               **({"event": event} if event else {})}, actor=self.actor)
        except _Taken:
            return Firing(name, key, "taken", None, "recorded by another watcher", scheduled,
                          now)
        except Exception as exc:  # a bad formula must not stop the watch: record, go on
            message = exc.message if isinstance(exc, TaskmillError) else repr(exc)
            with ledger.transaction() as store:
                if store.record_order_slot(OrderSlot(name, key, "failed", None, message,
                                                     iso(now))):
                    ledger.record("order_failed", None, {"order": name, "slot": key,
                                                         "error": message}, actor=self.actor)
            return Firing(name, key, "failed", None, message, scheduled, now)
        return Firing(name, key, "fired", created, "", scheduled, now)

    def _create(self, ledger: Ledger, loaded: LoadedOrder, context: dict[str, Any]) -> str:
        order = loaded.order
        extra = {"order": loaded.name, "slot": context["slot"]}
        if order.pour is not None:
            formula = load_formula(find_formula(self.formulas_dir, order.pour))
            report = pour(ledger, formula, _render_vars(order, context),
                          roles_dir=self.roles_dir, actor=self.actor, extra=extra)
            assert report.epic is not None
            return report.epic
        assert order.create is not None
        return ledger.create(_render(order.create.title, context)[:200], metadata=extra,
                             actor=self.actor, role=order.create.role).id

    def _check(self, order: Order) -> tuple[int, str]:
        assert order.check is not None
        if self.run_check is None:
            return 1, "no check runner"
        return self.run_check(order.check)

    # -- reporting -------------------------------------------------------------------------

    def status(self, ledger: Ledger) -> list[dict[str, Any]]:
        """Each order: its trigger, last firing, next firing and why it did not fire."""
        now = self.clock.now()
        return [order_status(state.loaded, ledger.store.order_slots(name), now,
                             cursor=state.cursor, note=state.note)
                for name, state in self._states.items()]


def _open_instance(ledger: Ledger, name: str) -> tuple[str, str] | None:
    fired = ledger.store.order_slots(name, outcomes=["fired"])
    last = max(fired, key=lambda r: r.recorded_at, default=None)
    if last is None or last.task_id is None:
        return None
    task = ledger.find(last.task_id)
    if task is None or task.status in (CLOSED, TOMBSTONE):
        return None
    return task.id, task.status


def _context(name: str, key: str, scheduled: datetime | None,
             event: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"order": name, "slot": key, "scheduled": iso(scheduled) if scheduled else "",
            "event": dict(event) if event is not None else {}}


def _render(template: str, context: Mapping[str, Any]) -> str:
    return _TEMPLATES.from_string(template).render(context)


def _render_vars(order: Order, context: Mapping[str, Any]) -> dict[str, Any]:
    """The order's vars, strings rendered against the slot and the event (``{{ slot }}``,
    ``{{ event.task }}``)."""
    return {k: _render(v, context) if isinstance(v, str) and "{" in v else v
            for k, v in order.vars.items()}


def shell_check(root: Path, env: Mapping[str, str], timeout: float = 60.0) -> CheckRunner:
    """Run a condition order's check in the repository with ``env``."""
    def run(command: str) -> tuple[int, str]:
        try:
            done = subprocess.run(command, shell=True, cwd=root, env=dict(env), timeout=timeout,
                                  capture_output=True, text=True, check=False)
        except subprocess.TimeoutExpired:
            return 124, f"timed out after {timeout:g}s"
        tail = (done.stdout + done.stderr).strip().splitlines()[-1:] or [""]
        return done.returncode, tail[0][:200]
    return run


def project_scheduler(paths: LedgerPaths, env: Mapping[str, str], *,
                      clock: Clock) -> OrderScheduler:
    """The repository's orders (``.taskmill/orders``), checked: a bad order file is an error
    naming its line (what ``taskmill watch`` and ``taskmill serve --mill`` run)."""
    from ..formulas import FORMULAS_DIR, ROLES_DIR
    from .load import ORDERS_DIR, load_orders

    found = OrderScheduler(load_orders(paths.dir / ORDERS_DIR),
                           formulas_dir=paths.dir / FORMULAS_DIR,
                           roles_dir=paths.dir / ROLES_DIR, clock=clock, actor="orders",
                           run_check=shell_check(paths.root, env))
    found.validate()
    return found


__all__ = ["LATE", "MANUAL", "CheckRunner", "Firing", "OrderScheduler", "project_scheduler",
           "shell_check"]
