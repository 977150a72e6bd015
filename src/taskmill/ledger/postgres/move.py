"""``taskmill ledger migrate --to postgresql://...``: a SQLite ledger moved into an empty
PostgreSQL one, whole, in one transaction: tasks (in creation order), labels, dependencies,
comments (their ids kept), attempts, each task's role, the plan importer's keys, the orders'
slots and the audit trail event for event (sequence numbers, text and hashes as they are, so
the chain, and the anchors in git that name its links, hold on the target). Readiness is recomputed there. The source is
read, never changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...errors import Conflict
from ..rows import ATTEMPT_FIELDS
from ..sqlite import SqliteStore
from ..store import OrderSlot
from . import PostgresStore


@dataclass
class MoveReport:
    tasks: int
    events: int
    comments: int
    attempts: int
    head: tuple[int, str]


def move_ledger(source: SqliteStore, target: PostgresStore) -> MoveReport:
    """Copy ``source`` into ``target`` (which must hold no task and no event)."""
    if target.task_count() or target.last_seq():
        raise Conflict(
            f"the PostgreSQL ledger (schema {target.schema}) is not empty: "
            f"{target.task_count()} tasks, {target.last_seq()} events",
            hint="migrate into a new database (or drop the schema first)")
    ids = [row[0] for row in source.task_rows(order="seq")]
    stored = source.stored_items(ids)
    items = [stored[tid] for tid in ids]
    attempts = source.conn.execute(
        f"SELECT {', '.join(ATTEMPT_FIELDS)} FROM attempts ORDER BY id").fetchall()
    plan_keys = source.conn.execute("SELECT source, key, task_id FROM plan_keys").fetchall()
    # a task's role is no column of an import row: copied on its own
    roles = source.conn.execute(
        "SELECT id, role FROM tasks WHERE role IS NOT NULL").fetchall()
    slots = source.conn.execute(
        "SELECT order_name, slot, outcome, task_id, reason, recorded_at FROM order_slots"
        " ORDER BY order_name, slot").fetchall()
    events = list(source.event_rows())
    head = source.audit_head()
    with target.transaction():
        target.import_rows(items, [])
        _copy_attempts(target, attempts)
        for plan_source, key, task_id in plan_keys:
            target.set_plan_key(plan_source, key, task_id)
        with target.conn.cursor() as cur:
            cur.executemany("UPDATE tasks SET role = %s WHERE id = %s",
                            [(role, tid) for tid, role in roles])
        for slot in slots:
            target.record_order_slot(OrderSlot(*slot))
        with target.conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO events (seq, ts, actor, task_id, kind, data, prev_hash, hash)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", [tuple(e) for e in events])
        if events:
            target.conn.execute(
                "INSERT INTO meta (key, value) VALUES ('audit_head', %s)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (f"{head[0]}:{head[1]}",))
        target.recompute_readiness()
    return MoveReport(tasks=len(items), events=len(events),
                      comments=sum(len(i.comments) for i in items), attempts=len(attempts),
                      head=head)


def _copy_attempts(target: PostgresStore, attempts: list[tuple[Any, ...]]) -> None:
    """The attempts as stored (their ids and detail text kept)."""
    with target.conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO attempts ({', '.join(ATTEMPT_FIELDS)})"
            f" VALUES ({', '.join(['%s'] * len(ATTEMPT_FIELDS))})", attempts)
