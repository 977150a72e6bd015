"""When an order's slots fall: cron and interval schedules, and the ledger events an event
order listens for."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from croniter import croniter

from ..clock import iso, parse_iso
from ..model import BLOCKED, CLOSED, OPEN, Event, Task
from .model import Order

MAX_SLOTS = 10_000
"""Slots looked at per order and tick (a week of downtime of an every-minute cron)."""
EVENT_SLOT = "event:"


def slot_key(when: datetime) -> str:
    return iso(when)


def slot_time(key: str) -> datetime | None:
    return None if key.startswith(EVENT_SLOT) else parse_iso(key.split("manual:")[-1])


def event_key(seq: int) -> str:
    return f"{EVENT_SLOT}{seq:012d}"


def event_seq(key: str) -> int | None:
    return int(key[len(EVENT_SLOT):]) if key.startswith(EVENT_SLOT) else None


def next_slot(order: Order, after: datetime) -> datetime | None:
    """The first slot of a timed order strictly after ``after`` (None: the order is not
    timed). Interval slots are ``after`` plus the interval: ``after`` is always a slot (or
    the moment the order was armed), so they stay on one grid. Cron is read in UTC."""
    if order.trigger == "cron":
        assert order.schedule is not None
        nxt = croniter(order.schedule, after.astimezone(UTC)).get_next(datetime)
        assert isinstance(nxt, datetime)
        return nxt if nxt.tzinfo else nxt.replace(tzinfo=UTC)
    every = order.every
    if order.trigger in ("interval", "condition") and every is not None:
        return after + every
    return None


def due_slots(order: Order, after: datetime, now: datetime) -> Iterator[datetime]:
    """The slots in (``after``, ``now``], oldest first (at most :data:`MAX_SLOTS`)."""
    current = after
    for _ in range(MAX_SLOTS):
        nxt = next_slot(order, current)
        if nxt is None or nxt > now:
            return
        yield nxt
        current = nxt


def task_event(event: Event, task: Task | None) -> str | None:
    """The order event (``task.landed`` ...) a ledger event is, if any."""
    if event.task_id is None:
        return None
    if event.kind == "created":
        return "task.created"
    if event.kind not in ("updated", "imported"):
        return None
    status = (event.data.get("changes") or {}).get("status")
    if not isinstance(status, list) or len(status) != 2:
        return None
    old, new = status
    if new == CLOSED:
        reason = (event.data.get("changes") or {}).get("close_reason")
        text = reason[-1] if isinstance(reason, list) and reason else (
            task.close_reason if task is not None else None)
        return "task.landed" if isinstance(text, str) and text.startswith("landed ") \
            else "task.closed"
    if new == BLOCKED:
        return "task.blocked"
    if old == CLOSED and new == OPEN:
        return "task.reopened"
    return None


def event_matches(order: Order, kind: str, task: Task | None) -> bool:
    """Whether ``kind`` of ``task`` is what the event order waits for."""
    if order.on is None or task is None:
        return False
    if kind != order.on and not (order.on == "task.closed" and kind == "task.landed"):
        return False
    wanted = order.filter
    if wanted is None:
        return True
    if wanted.label is not None and wanted.label not in task.labels:
        return False
    if wanted.issue_type is not None and task.issue_type != wanted.issue_type:
        return False
    return wanted.role is None or getattr(task, "role", None) == wanted.role


def late(slot: datetime, now: datetime, tolerance: timedelta) -> bool:
    return now - slot > tolerance
