"""The audit trail in PostgreSQL: appending chained events inside the write transaction (the
head kept in ``meta``, read and moved under the writer lock), the unit of work that nests
(savepoints), and the reads over events. A commit that appended events notifies the
``taskmill_events`` channel (``LISTEN``: the dashboard's live feed) with the new head's
number; PostgreSQL delivers it with the commit, so a listener never hears of an event it
cannot read yet."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from ...audit import GENESIS, canonical, chain_hash, event_from_row
from ...lean_rules import event_text
from ...model import Event
from ..store import Change, EventRow
from .schema import lock_writer

_EVENT_COLUMNS = "seq, ts, actor, task_id, kind, data, prev_hash, hash"


def read_head(conn: psycopg.Connection[Any]) -> tuple[int, str]:
    row = conn.execute("SELECT value FROM meta WHERE key = 'audit_head'").fetchone()
    if row is None:
        return 0, GENESIS
    seq, digest = row[0].split(":", 1)
    return int(seq), digest


EVENT_PAGE = 5000
"""Events read at a time by :meth:`EventRows.event_rows` (``verify`` reads them all)."""
CHANNEL = "taskmill_events"
"""The channel a commit with new events notifies (the payload: ``schema:seq``)."""


class AuditLog:
    """Appends events inside the caller's write transaction."""

    def __init__(self, conn: psycopg.Connection[Any], schema: str) -> None:
        self._conn = conn
        self.schema = schema
        self.pending: tuple[int, str] | None = None
        self._start: tuple[int, str] | None = None

    def begin(self) -> None:
        self.pending = self._start = read_head(self._conn)

    def append(self, *, ts: str, actor: str, task_id: str | None, kind: str,
               data: dict[str, Any]) -> int:
        if self.pending is None:
            self.begin()
        assert self.pending is not None
        last_seq, prev = self.pending
        seq = last_seq + 1
        text = event_text(data)
        digest = chain_hash(prev, canonical(seq, ts, actor, task_id, kind, text))
        self._conn.execute(
            "INSERT INTO events (seq, ts, actor, task_id, kind, data, prev_hash, hash)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (seq, ts, actor, task_id, kind, text, prev, digest),
        )
        self.pending = (seq, digest)
        return seq

    def finish(self) -> None:
        """Record the new head; call before the transaction commits."""
        if self.pending is None or self.pending == self._start:
            self.pending = None
            return
        seq, digest = self.pending
        self._conn.execute(
            "INSERT INTO meta (key, value) VALUES ('audit_head', %s)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (f"{seq}:{digest}",),
        )
        self._conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{self.schema}:{seq}"))
        self.pending = None


class EventRows:
    """The unit of work and the ``events`` table."""

    conn: psycopg.Connection[Any]
    schema: str
    _audit: AuditLog
    _depth: int
    _reading = False
    """Inside a :meth:`snapshot` of its own (which a write on this connection ends first)."""

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction; the events appended in it are chained and committed with it.

        Inside another one it is a savepoint: an exception leaving it undoes its own writes
        (and events) only, and the outer one goes on; nothing is committed before the
        outermost one ends."""
        if self._depth:
            pending = self._audit.pending
            self._depth += 1
            try:
                with self.conn.transaction():  # a savepoint
                    yield
            except BaseException:
                self._audit.pending = pending
                raise
            finally:
                self._depth -= 1
            return
        if self._reading:  # a write ends the snapshot it is in: what is read after it
            self._reading = False  # is of the state it leaves (as without a snapshot)
            self.conn.execute("COMMIT")  # (the read's: nothing was written)
        with self.conn.transaction():
            lock_writer(self.conn, self.schema)
            self._depth = 1
            self._audit.begin()
            try:
                yield
            except BaseException:
                self._audit.pending = None
                raise
            finally:
                self._depth = 0
            self._audit.finish()

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A read-only transaction at REPEATABLE READ (one snapshot for all its statements),
        ended with it, or by a write on this connection meanwhile (:meth:`transaction`);
        inside a transaction, that one."""
        if self._depth or self._reading:
            yield
            return
        # (begun and ended by hand, not with psycopg's transaction(): a write meanwhile ends
        # it first, see transaction)
        self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        self._reading = True
        try:
            yield
        finally:
            if self._reading and not self.conn.closed:
                self._reading = False
                self.conn.execute("COMMIT")

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    def append_event(self, *, ts: str, actor: str, task_id: str | None, kind: str,
                     data: dict[str, Any]) -> int:
        if not self._depth:
            raise RuntimeError("an event is appended inside a transaction")
        return self._audit.append(ts=ts, actor=actor, task_id=task_id, kind=kind, data=data)

    def events(self, task_id: str | None = None, *, limit: int | None = None) -> list[Event]:
        sql = f"SELECT {_EVENT_COLUMNS} FROM events"
        args: list[Any] = []
        if task_id is not None:
            sql += " WHERE task_id = %s"
            args.append(task_id)
        sql += " ORDER BY seq"
        if limit:
            sql = (f"SELECT * FROM ({sql.replace(' ORDER BY seq', ' ORDER BY seq DESC')}"
                   f" LIMIT {int(limit)}) AS newest ORDER BY seq")
        return [event_from_row(r) for r in self.conn.execute(sql, args)]

    def events_since(self, seq: int, limit: int) -> list[Event]:
        return [event_from_row(r) for r in self.conn.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE seq > %s ORDER BY seq LIMIT %s",
            (seq, limit))]

    def recent_events(self, task_id: str, kinds: Sequence[str], limit: int) -> list[Event]:
        """``task_id``'s newest events of ``kinds``, newest first."""
        return [event_from_row(r) for r in self.conn.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE task_id = %s AND kind = ANY(%s)"
            " ORDER BY seq DESC LIMIT %s", (task_id, list(kinds), limit))]

    def events_of_kinds(self, kinds: Sequence[str], *, task_id: str | None = None,
                        since: str | None = None) -> list[Event]:
        if not kinds:
            return []
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE kind = ANY(%s)"
        args: list[Any] = [list(kinds)]
        if task_id is not None:
            sql += " AND task_id = %s"
            args.append(task_id)
        if since is not None:
            sql += ' AND (ts COLLATE "C") >= %s'  # byte order, as SQLite compares
            args.append(since)
        return [event_from_row(r) for r in self.conn.execute(sql + " ORDER BY seq", args)]

    def changes_since(self, seq: int) -> list[Change]:
        return [Change(int(s), t, k) for s, t, k in self.conn.execute(
            "SELECT seq, task_id, kind FROM events WHERE seq > %s ORDER BY seq", (seq,))]

    def last_seq(self) -> int:
        return int(self.conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchall()[0][0])

    def claimed_after_last_attempt(self, task_id: str) -> bool:
        claimed, started = self.conn.execute(
            "SELECT max(CASE WHEN kind = 'claimed' THEN seq END),"
            " max(CASE WHEN kind = 'attempt_started' THEN seq END)"
            " FROM events WHERE task_id = %s", (task_id,)).fetchall()[0]
        return claimed is not None and started is not None and bool(claimed > started)

    def audit_head(self) -> tuple[int, str]:
        return read_head(self.conn)

    def event_rows(self, after: int = 0, upto: int | None = None) -> Iterator[EventRow]:
        # a page at a time (the trail only grows at its end: no page misses a row)
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE seq > %s"
        if upto is not None:
            sql += f" AND seq <= {int(upto)}"
        sql += f" ORDER BY seq LIMIT {EVENT_PAGE}"
        while rows := self.conn.execute(sql, (after,)).fetchall():
            yield from (EventRow(int(r[0]), *r[1:]) for r in rows)
            after = int(rows[-1][0])

    def event_hash(self, seq: int) -> str | None:
        row = self.conn.execute("SELECT hash FROM events WHERE seq = %s", (seq,)).fetchone()
        return None if row is None else str(row[0])
