"""The SQLite ledger store: one database file in WAL mode. Every SQL statement taskmill runs
is in this package (schema, tasks, deps, readiness, attempts, events, bulk)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from ..store import LedgerStore
from .attempts import AttemptRows
from .bulk import BulkRows
from .deps import DepRows
from .events import AuditLog, EventRows
from .listing import ListingRows
from .readiness import ReadinessRows
from .schema import DatabaseError, connect, migrate
from .tasks import TaskRows

__all__ = ["STORE_ERRORS", "DatabaseError", "SqliteStore"]

STORE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, DatabaseError)
"""What a store raises when its database is locked, replaced or unreadable."""


class SqliteStore(TaskRows, DepRows, ReadinessRows, AttemptRows, EventRows, BulkRows,
                  ListingRows):
    """A :class:`~taskmill.ledger.store.LedgerStore` over one SQLite connection.

    ``conn`` is this store's own (tests and benchmarks reach the tables through it)."""

    def __init__(self, conn: sqlite3.Connection, path: Path | None = None) -> None:
        self.conn = conn
        self.path = path
        self._audit = AuditLog(conn)
        self._depth = 0
        self.before_commit: list[Callable[[], None]] = []

    @classmethod
    def open(cls, path: Path, notice: Callable[[str], None] | None = None) -> SqliteStore:
        """The store in the file ``path``, its schema upgraded first (``notice``: told
        before a long upgrade, :func:`~.schema.migrate`)."""
        conn = connect(path)
        migrate(conn, notice)
        return cls(conn, path)

    @classmethod
    def memory(cls) -> SqliteStore:
        """A private database in memory (tests)."""
        conn = connect(":memory:")
        migrate(conn)
        return cls(conn)

    def reset(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        self._depth = 0
        self._audit.pending = None
        self.before_commit.clear()

    def close(self) -> None:
        self.conn.close()


def _is_a_store(store: SqliteStore) -> LedgerStore:
    return store  # mypy checks SqliteStore against the protocol here
