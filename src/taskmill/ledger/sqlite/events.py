"""The audit trail in SQLite: appending chained events inside the write transaction (the head
kept in ``meta``), the unit of work that nests, and the reads over events."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ...audit import event_from_row
from ...model import Event
from ..lean_write import append_event, read_head, set_head
from ..store import Change, EventRow
from .schema import write_tx
from .split import closed

_EVENT_COLUMNS = "seq, ts, actor, task_id, kind, data, prev_hash, hash"


class AuditLog:
    """Appends events inside the caller's write transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.pending: tuple[int, str] | None = None

    def begin(self) -> None:
        self.pending = read_head(self._conn)

    def append(self, *, ts: str, actor: str, task_id: str | None, kind: str,
               data: dict[str, Any]) -> int:
        if self.pending is None:
            self.begin()
        assert self.pending is not None
        self.pending = append_event(self._conn, self.pending, ts=ts, actor=actor,
                                    task_id=task_id, kind=kind, data=data)
        return self.pending[0]

    def finish(self) -> None:
        """Record the new head; call before the transaction commits."""
        if self.pending is None:
            return
        set_head(self._conn, self.pending)
        self.pending = None


class EventRows:
    """The unit of work and the ``events`` table."""

    conn: sqlite3.Connection
    _audit: AuditLog
    _depth: int
    _reading = False
    """Inside a :meth:`snapshot` of its own (which a write on this connection ends first)."""
    before_commit: list[Callable[[], None]]
    """Run in order at the end of the outermost :meth:`transaction`, before it commits."""

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction; the events appended in it are chained and committed with it.

        Inside another one it is a savepoint: an exception leaving it undoes its own writes
        (and events) only, and the outer one goes on; nothing is committed before the
        outermost one ends."""
        if self._depth:
            name = f"tm_sp{self._depth}"
            self.conn.execute(f"SAVEPOINT {name}")
            pending = self._audit.pending
            self._depth += 1
            try:
                yield
            except BaseException:
                self.conn.execute(f"ROLLBACK TO {name}")
                self.conn.execute(f"RELEASE {name}")
                self._audit.pending = pending
                raise
            else:
                self.conn.execute(f"RELEASE {name}")
            finally:
                self._depth -= 1
            return
        if self._reading:  # a write ends the snapshot it is in: what is read after it
            self._reading = False  # is of the state it leaves (as without a snapshot)
            self.conn.execute("COMMIT")  # (the read's: nothing was written)
        with write_tx(self.conn):
            self._depth = 1
            self._audit.begin()
            try:
                yield
                while self.before_commit:  # (what the transaction's work left to its end)
                    self.before_commit.pop(0)()
            except BaseException:
                self._audit.pending = None
                raise
            finally:
                self._depth = 0
                self.before_commit.clear()
            self._audit.finish()

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A read transaction (``BEGIN``: its first read fixes the state the others see,
        as WAL keeps it for a reader), ended with it, or by a write on this connection
        meanwhile (:meth:`transaction`); inside a transaction, that one."""
        conn = self.conn
        if self._reading or conn.in_transaction:
            yield
            return
        conn.execute("BEGIN")
        self._reading = True
        try:
            yield
        finally:
            if self._reading:  # (else a write ended it, and what is open now is not its own)
                self._reading = False
                if not closed(conn) and conn.in_transaction:
                    conn.execute("COMMIT")  # (nothing was written: the read ends)

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    def append_event(self, *, ts: str, actor: str, task_id: str | None, kind: str,
                     data: dict[str, Any]) -> int:
        return self._audit.append(ts=ts, actor=actor, task_id=task_id, kind=kind, data=data)

    def events(self, task_id: str | None = None, *, limit: int | None = None) -> list[Event]:
        sql = f"SELECT {_EVENT_COLUMNS} FROM events"
        args: list[Any] = []
        if task_id is not None:
            sql += " WHERE task_id = ?"
            args.append(task_id)
        sql += " ORDER BY seq"
        if limit:
            sql = (f"SELECT * FROM ({sql.replace(' ORDER BY seq', ' ORDER BY seq DESC')}"
                   f" LIMIT {int(limit)}) ORDER BY seq")
        return [event_from_row(r) for r in self.conn.execute(sql, args)]

    def events_since(self, seq: int, limit: int) -> list[Event]:
        return [event_from_row(r) for r in self.conn.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit))]

    def recent_events(self, task_id: str, kinds: Sequence[str], limit: int) -> list[Event]:
        """``task_id``'s newest events of ``kinds``, newest first."""
        marks = ",".join("?" * len(kinds))
        return [event_from_row(r) for r in self.conn.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE task_id = ? AND kind IN ({marks})"
            " ORDER BY seq DESC LIMIT ?", (task_id, *kinds, limit))]

    def events_of_kinds(self, kinds: Sequence[str], *, task_id: str | None = None,
                        since: str | None = None) -> list[Event]:
        if not kinds:
            return []
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE kind IN ({','.join('?' * len(kinds))})"
        args: list[Any] = list(kinds)
        if task_id is not None:
            sql += " AND task_id = ?"
            args.append(task_id)
        if since is not None:
            sql += " AND ts >= ?"
            args.append(since)
        return [event_from_row(r) for r in self.conn.execute(sql + " ORDER BY seq", args)]

    def changes_since(self, seq: int) -> list[Change]:
        return [Change(int(s), t, k) for s, t, k in self.conn.execute(
            "SELECT seq, task_id, kind FROM events WHERE seq > ? ORDER BY seq", (seq,))]

    def last_seq(self) -> int:
        return int(self.conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])

    def claimed_after_last_attempt(self, task_id: str) -> bool:
        claimed, started = self.conn.execute(
            "SELECT max(CASE WHEN kind = 'claimed' THEN seq END),"
            " max(CASE WHEN kind = 'attempt_started' THEN seq END)"
            " FROM events WHERE task_id = ?", (task_id,)).fetchone()
        return claimed is not None and started is not None and bool(claimed > started)

    def audit_head(self) -> tuple[int, str]:
        return read_head(self.conn)

    def event_rows(self, after: int = 0, upto: int | None = None) -> Iterator[EventRow]:
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE seq > ?"
        args: list[Any] = [after]
        if upto is not None:
            sql += " AND seq <= ?"
            args.append(upto)
        for row in self.conn.execute(sql + " ORDER BY seq", args):
            yield EventRow(*row)

    def event_hash(self, seq: int) -> str | None:
        row = self.conn.execute("SELECT hash FROM events WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else str(row[0])
