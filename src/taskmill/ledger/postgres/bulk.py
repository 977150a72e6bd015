"""Bulk verbs in PostgreSQL: the stored rows as they are (export, replay) and a bulk import of
rows (Beads, ``taskmill ledger migrate``), plus the plan importer's keys (the SQLite store's
:mod:`taskmill.ledger.sqlite.bulk`, in PostgreSQL's words)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from ..beads_rules import order_key
from ..store import IMPORT_ROW_COLUMNS, ImportItem, OrderSlot, Row, pack_items, unpack_items
from .tasks import LABEL_CONFLICT

_CREATED_AT = IMPORT_ROW_COLUMNS.index("created_at")

_ROW_SQL = ", ".join(IMPORT_ROW_COLUMNS)


class BulkRows:
    conn: psycopg.Connection[Any]

    def task_ids(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT id FROM tasks")}

    def task_count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM tasks").fetchall()[0][0])

    def task_rows(self, *, order: str = "id", include_tombstones: bool = True) -> Iterator[Row]:
        """Every task as a row of :data:`IMPORT_ROW_COLUMNS`, by id (``order="id"``) or in
        the order the tasks entered the ledger (``"seq"``)."""
        if order not in ("id", "seq"):
            raise ValueError(f"order must be 'id' or 'seq', not {order!r}")
        where = "" if include_tombstones else " WHERE status != 'tombstone'"
        for row in self.conn.execute(f"SELECT {_ROW_SQL} FROM tasks{where} ORDER BY {order}"):
            yield tuple(row)

    def label_rows(self) -> Iterator[tuple[str, str]]:
        """(task, label), by task and position."""
        rows: Iterator[tuple[str, str]] = self.conn.execute(
            "SELECT task_id, label FROM labels ORDER BY task_id, pos, label")
        yield from rows

    def dep_rows(self) -> Iterator[tuple[str, str, str, str | None, str | None, str | None]]:
        """(issue, depends on, type, created_at, created_by, extra), by issue and position."""
        for row in self.conn.execute(
                "SELECT issue_id, depends_on_id, type, created_at, created_by, extra FROM deps"
                " ORDER BY issue_id, pos, depends_on_id, type"):
            yield tuple(row)

    def comment_rows(self) -> Iterator[tuple[int, str, str, str, str, str | None]]:
        """(id, task, author, text, created_at, extra), by id."""
        for row in self.conn.execute(
                "SELECT id, task_id, author, text, created_at, extra FROM comments ORDER BY id"):
            yield tuple(row)

    def comment_ids(self) -> set[int]:
        return {r[0] for r in self.conn.execute("SELECT id FROM comments")}

    def import_packer(self) -> Callable[[Sequence[ImportItem]], Any]:
        return pack_items

    def import_packed(self, packed: Any) -> None:
        self.import_rows(unpack_items(packed), [])

    def import_rows(self, creates: Sequence[ImportItem], updates: Sequence[ImportItem]) -> None:
        """Write whole tasks as they are: ``updates`` replace the rows, labels, dependencies
        and comments of tasks the ledger holds, ``creates`` add new ones. Readiness is not
        recomputed (call :meth:`recompute_readiness` once after)."""
        conn = self.conn.cursor()
        if updates:
            upd_ids = [p.row[0] for p in updates]
            conn.execute("DELETE FROM labels WHERE task_id = ANY(%s)", (upd_ids,))
            conn.execute("DELETE FROM deps WHERE issue_id = ANY(%s)", (upd_ids,))
            conn.execute("DELETE FROM comments WHERE task_id = ANY(%s)", (upd_ids,))
            assignments = ", ".join(f"{c} = %s" for c in (*IMPORT_ROW_COLUMNS[1:], "created_key"))
            conn.executemany(f"UPDATE tasks SET {assignments} WHERE id = %s",
                             [(*p.row[1:], order_key(p.row[_CREATED_AT]), p.row[0])
                              for p in updates])
        if creates:
            # creation numbers in the order given, after the highest (writers hold the
            # writer lock)
            first = int(self.conn.execute("SELECT coalesce(max(seq), 0) FROM tasks")
                        .fetchall()[0][0]) + 1
            marks = ", ".join(["%s"] * (len(IMPORT_ROW_COLUMNS) + 2))
            conn.executemany(
                f"INSERT INTO tasks (seq, {_ROW_SQL}, created_key) VALUES ({marks})",
                [(first + i, *p.row, order_key(p.row[_CREATED_AT]))
                 for i, p in enumerate(creates)])
        items = [*updates, *creates]
        # (a row left for a created task's id with no task, written behind taskmill's
        # back, is the task's from now on or replaced by its own, not an error)
        conn.executemany(
            f"INSERT INTO labels (task_id, label, pos) VALUES (%s, %s, %s) {LABEL_CONFLICT}",
            [(p.row[0], lb, i) for p in items for i, lb in enumerate(p.labels)])
        conn.executemany(
            "INSERT INTO deps (issue_id, depends_on_id, type, created_at, created_by, extra, pos)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (issue_id, depends_on_id, type)"
            " DO UPDATE SET created_at = excluded.created_at, created_by = excluded.created_by,"
            " extra = excluded.extra, pos = excluded.pos",
            [(p.row[0], *d, i) for p in items for i, d in enumerate(p.deps)])
        conn.executemany(
            "INSERT INTO comments (id, task_id, author, text, created_at, extra)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            [(c[0], p.row[0], *c[1:]) for p in items for c in p.comments])

    @contextmanager
    def bulk_import(self) -> Iterator[None]:
        # nothing deferred: the indexes take the rows as they come (SQLite's drop and
        # rebuild of the secondary indexes is not ported)
        yield

    @contextmanager
    def bulk_writing(self) -> Iterator[None]:
        yield  # (the server's write-ahead log is its own)

    def stored_items(self, ids: Sequence[str]) -> dict[str, ImportItem]:
        """The stored parts of those of ``ids`` the ledger holds (labels, dependencies and
        comments by position), as :meth:`import_rows` takes them."""
        out: dict[str, ImportItem] = {}
        wanted = (list(ids),)
        for row in self.conn.execute(
                f"SELECT {_ROW_SQL} FROM tasks WHERE id = ANY(%s)", wanted):
            out[row[0]] = ImportItem(tuple(row))
        for tid, label in self.conn.execute(
                "SELECT task_id, label FROM labels WHERE task_id = ANY(%s)"
                " ORDER BY task_id, pos, label", wanted):
            if tid in out:
                out[tid].labels.append(label)
        for tid, *dep in self.conn.execute(
                "SELECT issue_id, depends_on_id, type, created_at, created_by, extra"
                " FROM deps WHERE issue_id = ANY(%s)"
                " ORDER BY issue_id, pos, depends_on_id, type", wanted):
            if tid in out:
                out[tid].deps.append(tuple(dep))
        for cid, tid, *rest in self.conn.execute(
                "SELECT id, task_id, author, text, created_at, extra FROM comments"
                " WHERE task_id = ANY(%s) ORDER BY id", wanted):
            if tid in out:
                out[tid].comments.append((cid, *rest))
        return out

    def ids_by_seq(self, first: int, last: int) -> list[str]:
        """The ids of the tasks whose creation number is in [first, last], in that order."""
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM tasks WHERE seq BETWEEN %s AND %s ORDER BY seq", (first, last))]

    def plan_keys(self, source: str) -> dict[str, str]:
        return {k: t for k, t in self.conn.execute(
            "SELECT key, task_id FROM plan_keys WHERE source = %s", (source,))}

    def set_plan_key(self, source: str, key: str, task_id: str) -> None:
        self.conn.execute(
            "INSERT INTO plan_keys (source, key, task_id) VALUES (%s, %s, %s)"
            " ON CONFLICT (source, key) DO UPDATE SET task_id = excluded.task_id",
            (source, key, task_id))

    def record_order_slot(self, slot: OrderSlot) -> bool:
        cur = self.conn.execute(
            "INSERT INTO order_slots (order_name, slot, outcome, task_id, reason, recorded_at)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (order_name, slot) DO NOTHING",
            tuple(slot))
        return cur.rowcount == 1

    def order_slots(self, order: str, *, outcomes: Sequence[str] | None = None,
                    limit: int | None = None) -> list[OrderSlot]:
        sql = ("SELECT order_name, slot, outcome, task_id, reason, recorded_at"
               " FROM order_slots WHERE order_name = %s")
        args: list[object] = [order]
        if outcomes is not None:
            sql += " AND outcome = ANY(%s)"
            args.append(list(outcomes))
        sql += " ORDER BY slot DESC"
        if limit is not None:
            sql += " LIMIT %s"
            args.append(limit)
        return [OrderSlot(*row) for row in self.conn.execute(sql, args)]
