"""Bulk verbs in SQLite: the stored rows as they are (export, replay) and a bulk import of
rows (Beads), plus the plan importer's keys."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from operator import itemgetter
from typing import Any

from ...errors import TaskmillError
from ..beads_rules import order_key
from ..store import IMPORT_ROW_COLUMNS, ImportItem, OrderSlot, Row
from . import kept_text
from .schema import (
    LINKED_CHILDREN,
    LINKED_LABELS,
    LINKED_PARENT,
    NEW_GENERATION_SQL,
    TAKE_WAITING_SQL,
    TAKEN_WAITING_SQL,
    generation_triggers,
    linked_triggers,
    retry_locked,
)
from .tasks import chunks

_CREATED_AT = IMPORT_ROW_COLUMNS.index("created_at")
DEFERRED_INDEXES = ("tasks_ready", "deps_reverse", "deps_children")
"""The secondary indexes :meth:`BulkRows.bulk_import` builds once at the end (none of them
is read while rows are imported: the reads there go by task id): those whose keys come in
no order as the rows do (by creation time, by the task depended on), each row a write
somewhere in the index. The others take the rows as they come, at their end or at the end
of a few runs (by status and creation number; by task, a Beads file being in id order;
the sparse ones), cheaper than reading the whole table again to sort them: a 1M import's
single-core end ~4.5 s shorter, its first part no slower (interleaved, CPU time)."""
BULK_CACHE_KIB = -65536
"""SQLite's page cache while a bulk import writes rows (64 MiB, as a negative KiB count).
A 1M import (random ids) took the same time with 128 MiB (35.6-36.3 s) and 64 MiB
(35.6-36.7 s), its peak 473-484 -> 407 MiB; with 32 MiB 37.4 s and 373 MiB."""
BULK_REBUILD_MAX = 20_000
"""Tasks a ledger may hold for an import to rebuild its indexes rather than fill them."""

_ROW_SQL = ", ".join(IMPORT_ROW_COLUMNS)


_RARE = ("design", "acceptance_criteria", "notes", "external_ref", "metadata", "checks",
         "agent", "hints", "extra")
"""The columns most tasks leave empty: a row with all of them empty is inserted without them
(their defaults: '' or NULL), 13 values bound instead of 22 (a 1M import's task rows
went in ~35% faster)."""
_rare = itemgetter(*(IMPORT_ROW_COLUMNS.index(c) for c in _RARE))
_RARE_EMPTY = tuple("" if c in ("design", "acceptance_criteria", "notes") else None
                    for c in _RARE)
_COMMON_AT = [i for i, c in enumerate(IMPORT_ROW_COLUMNS) if c not in _RARE]
_common = itemgetter(*_COMMON_AT)
_SHAPES = (
    (f"INSERT INTO tasks ({_ROW_SQL}, created_key, linked)"
     f" VALUES ({', '.join('?' * (len(IMPORT_ROW_COLUMNS) + 2))})"),
    (f"INSERT INTO tasks ({', '.join(IMPORT_ROW_COLUMNS[i] for i in _COMMON_AT)},"
     f" created_key, linked) VALUES ({', '.join('?' * (len(_COMMON_AT) + 2))})"),
)


class _Rows:
    """The rows of a batch of imported tasks, made in one pass over them: each new task's
    row with its order key and ``linked`` bits (in runs of one shape, :data:`_RARE` all
    empty or not), and every task's labels, dependencies and comments."""

    __slots__ = ("comments", "deps", "deps_extra", "labels", "linked", "runs")

    def __init__(self, creates: Sequence[ImportItem], updates: Sequence[ImportItem],
                 parents: set[str] | None) -> None:
        self.runs: list[tuple[int, list[tuple[Any, ...]]]] = []
        self.linked: dict[str, int] = {}
        self.labels: list[tuple[Any, ...]] = []
        self.deps: list[tuple[Any, ...]] = []
        self.deps_extra = False
        self.comments: list[tuple[Any, ...]] = []
        for p in updates:
            self.linked[p.row[0]] = self._parts(p, parents)
        run: list[tuple[Any, ...]] = []
        shape = -1
        rare, empty, common, parts = _rare, _RARE_EMPTY, _common, self._parts
        for p in creates:
            row = p.row
            lean = int(rare(row) == empty)  # (the index of its statement)
            if lean != shape:
                if run:
                    self.runs.append((shape, run))
                    run = []
                shape = lean
            run.append((*(common(row) if lean else row), order_key(row[_CREATED_AT]),
                        parts(p, parents)))
        if run:
            self.runs.append((shape, run))
        if not self.deps_extra:  # (the usual batch: no dependency with an extra, one value
            # less to bind each)
            self.deps = [(*d[:5], d[6]) for d in self.deps]

    @classmethod
    def of(cls, runs: list[tuple[int, list[tuple[Any, ...]]]], labels: list[tuple[Any, ...]],
           deps: list[tuple[Any, ...]], deps_extra: bool) -> _Rows:
        """The rows :func:`pack_creates` made."""
        rows = cls((), (), None)
        rows.runs, rows.labels, rows.deps, rows.deps_extra = runs, labels, deps, deps_extra
        return rows

    def _parts(self, p: ImportItem, parents: set[str] | None) -> int:
        """``p``'s labels, dependencies and comments taken; its ``linked`` bits."""
        tid = p.row[0]
        linked = 0
        if p.labels:
            linked = LINKED_LABELS
            self.labels.extend([(tid, lb, i) for i, lb in enumerate(p.labels)])
        if p.deps:
            deps = self.deps
            for i, d in enumerate(p.deps):
                if d[1] == "parent-child":
                    linked |= LINKED_PARENT
                    if parents is not None:
                        parents.add(d[0])
                if d[4] is not None:
                    self.deps_extra = True
                deps.append((tid, *d, i))
        if p.comments:
            self.comments.extend([(c[0], tid, *c[1:]) for c in p.comments])
        return linked


def pack_creates(creates: Sequence[ImportItem]) -> Any:
    """New tasks' rows (without comments) as :meth:`BulkRows.import_packed` writes them,
    made where the records are parsed (a worker of a big import): their statements'
    values, in :mod:`marshal`'s types, and the parents they name."""
    parents: set[str] = set()
    rows = _Rows(creates, (), parents)
    if rows.comments:
        raise ValueError("pack_creates: comments are written by import_rows")
    return rows.runs, rows.labels, rows.deps, rows.deps_extra, sorted(parents)


def _journal_alone(conn: sqlite3.Connection) -> bool:
    """Whether ``conn``'s file could be put in rollback-journal mode at once (no other
    connection had it open), and was."""
    timeout = int(conn.execute("PRAGMA busy_timeout").fetchone()[0])
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        return bool(conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0] == "delete")
    except sqlite3.OperationalError:  # (locked: another connection has it open)
        return False
    finally:
        conn.execute(f"PRAGMA busy_timeout = {timeout}")


class BulkRows:
    conn: sqlite3.Connection
    _depth: int
    before_commit: list[Callable[[], None]]
    remake_kept_text: Callable[[], None]
    _bulk_parents: set[str] | None = None
    """In a :meth:`bulk_import` (its ``linked`` triggers dropped): the parents the imported
    rows name, whose :data:`~.schema.LINKED_CHILDREN` bit is set at its end."""

    def task_ids(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT id FROM tasks")}

    def task_count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM tasks").fetchone()[0])

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
        yield from self.conn.execute(
            "SELECT task_id, label FROM labels ORDER BY task_id, pos, label")

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

    def import_rows(self, creates: Sequence[ImportItem], updates: Sequence[ImportItem]) -> None:
        """Write whole tasks as they are: ``updates`` replace the rows, labels, dependencies
        and comments of tasks the ledger holds, ``creates`` add new ones. Readiness is not
        recomputed (call :meth:`recompute_readiness` once after)."""
        conn = self.conn
        rows = _Rows(creates, updates, self._bulk_parents)
        if updates:
            upd_ids = [(p.row[0],) for p in updates]
            conn.executemany("DELETE FROM labels WHERE task_id = ?", upd_ids)
            conn.executemany("DELETE FROM deps WHERE issue_id = ?", upd_ids)
            conn.executemany("DELETE FROM comments WHERE task_id = ?", upd_ids)
            assignments = ", ".join(f"{c} = ?" for c in (*IMPORT_ROW_COLUMNS[1:], "created_key"))
            conn.executemany(f"UPDATE tasks SET {assignments}, linked = linked | ? WHERE id = ?",
                             [(*p.row[1:], order_key(p.row[_CREATED_AT]),
                               rows.linked[p.row[0]], p.row[0]) for p in updates])
        self._write(rows)

    def import_packed(self, packed: Any) -> None:
        runs, labels, deps, deps_extra, parents = packed
        if self._bulk_parents is not None:
            self._bulk_parents.update(parents)
        self._write(_Rows.of(runs, labels, deps, deps_extra))

    def import_packer(self) -> Callable[[Sequence[ImportItem]], Any]:
        return pack_creates

    def _write(self, rows: _Rows) -> None:
        conn = self.conn
        for shape, run in rows.runs:
            conn.executemany(_SHAPES[shape], run)
        # (OR REPLACE: a row left for a created task's id with no task, written behind
        # taskmill's back, is the task's from now on or replaced by its own, not an error)
        conn.executemany(
            "INSERT OR REPLACE INTO labels (task_id, label, pos) VALUES (?, ?, ?)", rows.labels)
        conn.executemany(
            "INSERT OR REPLACE INTO deps (issue_id, depends_on_id, type, created_at, created_by,"
            f"{' extra,' if rows.deps_extra else ''} pos) VALUES"
            f" (?, ?, ?, ?, ?,{' ?,' if rows.deps_extra else ''} ?)", rows.deps)
        if rows.comments:
            conn.executemany(
                "INSERT INTO comments (id, task_id, author, text, created_at, extra)"
                " VALUES (?, ?, ?, ?, ?, ?)", rows.comments)

    @contextmanager
    def bulk_import(self) -> Iterator[None]:
        # The generation drawn once for the whole import, not at every row (the triggers
        # cost an import ~12% more CPU): dropped and made again in its transaction
        # and each task's ``linked`` bits set by the import itself (the triggers, at every
        # label and parent, would cost a 1M import seconds)
        # The kept listing text (:mod:`.kept_text`) made once, at the end of the transaction:
        # the readiness counted after the rows changes many tasks' text again
        triggers = [*generation_triggers(), *linked_triggers()]
        for name, _sql in triggers:
            self.conn.execute(f"DROP TRIGGER IF EXISTS {name}")
        kept_text.drop_triggers(self.conn)
        self._bulk_parents = set()
        try:
            with self._indexes_deferred():  # (on an error the transaction rolls back the drops)
                yield
            self._linked_after_import()
        finally:
            self._bulk_parents = None
        for _name, sql in triggers:
            self.conn.execute(sql)
        self.conn.execute(NEW_GENERATION_SQL)
        if not self._depth:
            self.remake_kept_text()
        elif self.remake_kept_text not in self.before_commit:  # (its triggers dropped till
            # then; a savepoint rolled back meanwhile may have made them again)
            self.before_commit.append(self.remake_kept_text)

    def _linked_after_import(self) -> None:
        """What the dropped triggers would have set of ``linked`` that the imported rows
        alone do not: the children bit of the parents they name (kept waiting for a parent
        not there), and the bits kept for the tasks the import created."""
        parents = [(p,) for p in sorted(self._bulk_parents or ())]
        self.conn.executemany(
            f"UPDATE tasks SET linked = linked | {LINKED_CHILDREN}"
            f" WHERE id = ? AND linked & {LINKED_CHILDREN} = 0", parents)
        self.conn.executemany(
            f"INSERT INTO linked_waiting (id, bits) SELECT ?1, {LINKED_CHILDREN}"
            " WHERE NOT EXISTS (SELECT 1 FROM tasks WHERE id = ?1)"
            " ON CONFLICT (id) DO UPDATE SET bits = bits | excluded.bits", parents)
        if self.conn.execute("SELECT EXISTS (SELECT 1 FROM linked_waiting)").fetchone()[0]:
            self.conn.execute(TAKE_WAITING_SQL)
            self.conn.execute(TAKEN_WAITING_SQL)

    @contextmanager
    def bulk_writing(self) -> Iterator[None]:
        # An empty ledger's bulk import in SQLite's rollback-journal mode: the pages go
        # straight into the file (a new page needs no journal), where in WAL mode each is
        # written to the log and copied into the file at the commit's checkpoint (a 1M
        # import's commit: 3-6 s, 0.8 s this way). Only while no other connection has the
        # file open (one reading in WAL mode cannot be left to it: the switch waits for
        # none); one opening it meanwhile waits for the import's end (retry_locked).
        conn = self.conn
        if conn.in_transaction or conn.execute("SELECT 1 FROM tasks LIMIT 1").fetchone() \
                or not _journal_alone(conn):
            yield
            return
        try:
            yield
        finally:  # (left as it is while another connection still reads it: the next
            # connection made sets WAL again, as every one does)
            with suppress(TaskmillError):
                retry_locked(lambda: conn.execute("PRAGMA journal_mode = WAL"), deadline_s=10)

    @contextmanager
    def _indexes_deferred(self) -> Iterator[None]:
        # Inserting a row into each index as it comes costs more than sorting each index
        # once at the end; the rebuild reads the whole table, so only for a small ledger.
        if self.task_count() > BULK_REBUILD_MAX:
            yield
            return
        deferred = self.conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            f" AND name IN ({','.join('?' * len(DEFERRED_INDEXES))})",
            DEFERRED_INDEXES).fetchall()
        for name, _sql in deferred:
            self.conn.execute(f"DROP INDEX {name}")
        cache = self.conn.execute("PRAGMA cache_size").fetchone()[0]
        # the primary keys take rows in id order, not in the order they come: more of them
        # in memory while the rows go in
        self.conn.execute(f"PRAGMA cache_size = {BULK_CACHE_KIB}")
        try:
            yield  # on an error the transaction rolls the indexes back too
            for _name, sql in deferred:
                self.conn.execute(sql)
        finally:
            self.conn.execute(f"PRAGMA cache_size = {int(cache)}")

    def stored_items(self, ids: Sequence[str]) -> dict[str, ImportItem]:
        """The stored parts of those of ``ids`` the ledger holds (labels, dependencies and
        comments by position), as :meth:`import_rows` takes them."""
        out: dict[str, ImportItem] = {}
        for chunk in chunks(ids):
            marks = ",".join("?" * len(chunk))
            for row in self.conn.execute(
                    f"SELECT {_ROW_SQL} FROM tasks WHERE id IN ({marks})", chunk):
                out[row[0]] = ImportItem(tuple(row))
            for tid, label in self.conn.execute(
                    f"SELECT task_id, label FROM labels WHERE task_id IN ({marks})"
                    " ORDER BY task_id, pos, label", chunk):
                if tid in out:  # (not a label row left behind by a task no longer there)
                    out[tid].labels.append(label)
            for tid, *dep in self.conn.execute(
                    "SELECT issue_id, depends_on_id, type, created_at, created_by, extra"
                    f" FROM deps WHERE issue_id IN ({marks})"
                    " ORDER BY issue_id, pos, depends_on_id, type", chunk):
                if tid in out:
                    out[tid].deps.append(tuple(dep))
            for cid, tid, *rest in self.conn.execute(
                    "SELECT id, task_id, author, text, created_at, extra FROM comments"
                    f" WHERE task_id IN ({marks}) ORDER BY id", chunk):
                if tid in out:
                    out[tid].comments.append((cid, *rest))
        return out

    def ids_by_seq(self, first: int, last: int) -> list[str]:
        """The ids of the tasks whose creation number is in [first, last], in that order."""
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM tasks WHERE seq BETWEEN ? AND ? ORDER BY seq", (first, last))]

    def plan_keys(self, source: str) -> dict[str, str]:
        return {k: t for k, t in self.conn.execute(
            "SELECT key, task_id FROM plan_keys WHERE source = ?", (source,))}

    def set_plan_key(self, source: str, key: str, task_id: str) -> None:
        self.conn.execute(
            "INSERT INTO plan_keys (source, key, task_id) VALUES (?, ?, ?)"
            " ON CONFLICT(source, key) DO UPDATE SET task_id = excluded.task_id",
            (source, key, task_id))

    def record_order_slot(self, slot: OrderSlot) -> bool:
        cur = self.conn.execute(
            "INSERT INTO order_slots (order_name, slot, outcome, task_id, reason, recorded_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(order_name, slot) DO NOTHING", tuple(slot))
        return cur.rowcount == 1

    def order_slots(self, order: str, *, outcomes: Sequence[str] | None = None,
                    limit: int | None = None) -> list[OrderSlot]:
        sql = ("SELECT order_name, slot, outcome, task_id, reason, recorded_at"
               " FROM order_slots WHERE order_name = ?")
        args: list[object] = [order]
        if outcomes is not None:
            sql += f" AND outcome IN ({', '.join('?' * len(outcomes))})"
            args += list(outcomes)
        sql += " ORDER BY slot DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [OrderSlot(*row) for row in self.conn.execute(sql, args)]
