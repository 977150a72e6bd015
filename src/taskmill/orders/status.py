"""What ``taskmill orders list`` (and the dashboard) says of an order: its trigger in words,
its last and next firing, and why it did not fire."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..clock import iso
from ..ledger import OrderSlot
from .load import LoadedOrder
from .model import Order
from .triggers import next_slot, slot_time

MANUAL = "~manual"
"""The suffix of a slot fired by hand (``taskmill orders fire``): never a schedule's."""


def last_timed_slot(rows: Sequence[OrderSlot]) -> datetime | None:
    """The latest scheduled slot among an order's rows (latest key first), if any."""
    timed = [r for r in rows if slot_time(r.slot) is not None and not r.slot.endswith(MANUAL)]
    return slot_time(timed[0].slot) if timed else None


def order_status(loaded: LoadedOrder, rows: Sequence[OrderSlot], now: datetime, *,
                 cursor: datetime | None = None, note: str = "") -> dict[str, Any]:
    """``rows``: the order's recorded slots, latest key first; ``cursor``, ``note``: what a
    running scheduler knows besides (its latest slot, a condition not met)."""
    order = loaded.order
    fired = max((r for r in rows if r.outcome == "fired"), key=lambda r: r.recorded_at,
                default=None)
    other = max((r for r in rows if r.outcome in ("skipped", "missed", "failed")),
                key=lambda r: r.recorded_at, default=None)
    if cursor is None and order.trigger in ("cron", "interval", "condition"):
        cursor = last_timed_slot(rows)
    nxt = next_slot(order, cursor) if cursor is not None else None
    why = note
    if other is not None and (fired is None or other.recorded_at > fired.recorded_at):
        why = f"{other.outcome} {other.slot}: {other.reason}"
    if not why and fired is None:
        why = _idle_reason(order, armed=bool(rows))
    nxt_text: str | None = None
    if nxt is not None:
        nxt_text = iso(nxt) + (" (due: taskmill watch is not running)" if nxt < now else "")
    elif order.trigger == "cron" and not rows:
        nxt_text = f"{iso(next_slot(order, now) or now)} (once taskmill watch runs)"
    return {
        "order": loaded.name, "trigger": order.trigger, "what": _what(order),
        "when": _when(order), "skip_if_open": order.skip_if_open, "catch_up": order.catch_up,
        "last": None if fired is None else {
            "slot": fired.slot, "task": fired.task_id, "at": fired.recorded_at},
        "next": nxt_text, "why_not": why or None}


def _what(order: Order) -> str:
    if order.pour is not None:
        return f"pour {order.pour}"
    assert order.create is not None
    return f"create {order.create.title!r}" + (f" ({order.create.role})"
                                                if order.create.role else "")


def _when(order: Order) -> str:
    if order.trigger == "cron":
        return f"cron {order.schedule} (UTC)"
    if order.trigger == "interval":
        return f"every {order.interval}"
    if order.trigger == "event":
        wanted = order.filter.model_dump(exclude_none=True) if order.filter else {}
        return f"on {order.on}" + (f" of tasks with {wanted}" if wanted else "")
    if order.trigger == "condition":
        return f"when `{order.check}` exits 0 (checked every {order.interval or '1m'})"
    return "manual (taskmill orders fire NAME)"


def _idle_reason(order: Order, *, armed: bool) -> str:
    if order.trigger == "manual":
        return "manual: fires only with `taskmill orders fire NAME`"
    if not armed:
        return "not armed yet: taskmill watch has not run since the order was written"
    if order.trigger == "event":
        return f"no {order.on} event matched yet"
    return "its first slot has not come yet"
