"""The PostgreSQL ledger store: one schema (``taskmill`` unless told) in a database that any
number of processes on any number of machines share. Every SQL statement it runs is in this
package (schema, tasks, deps, readiness, attempts, events, bulk), mirroring the SQLite
store's modules one for one.

Selected by ``[ledger] url = "postgresql://..."`` in ``.taskmill/config.toml`` (or
``TASKMILL_DATABASE_URL``); needs the ``postgres`` extra (psycopg 3). The URL is libpq's, so
it may carry TLS options (``?sslmode=verify-full&sslrootcert=...``).

Writers take the writer lock (:func:`~.schema.lock_writer`) for their whole transaction:
claims, readiness counts and the audit chain see one writer at a time, as in SQLite, while
readers read on (see :mod:`.schema`).
"""

from __future__ import annotations

from typing import Any

import psycopg

from ..listing import PagedCellRows
from ..store import LedgerStore
from .attempts import AttemptRows
from .bulk import BulkRows
from .deps import DepRows
from .events import CHANNEL, AuditLog, EventRows
from .listing import ListingRows
from .readiness import ReadinessRows
from .schema import DatabaseError, connect, migrate
from .tasks import TaskRows

__all__ = ["CHANNEL", "DEFAULT_SCHEMA", "STORE_ERRORS", "DatabaseError", "PostgresStore"]

DEFAULT_SCHEMA = "taskmill"

STORE_ERRORS: tuple[type[Exception], ...] = (psycopg.Error, DatabaseError)
"""What this store raises when its server cannot be reached or the data read now."""


class PostgresStore(TaskRows, DepRows, ReadinessRows, AttemptRows, EventRows, BulkRows,
                    ListingRows, PagedCellRows):
    """A :class:`~taskmill.ledger.store.LedgerStore` over one PostgreSQL connection (a
    thread, a process: each its own store)."""

    def __init__(self, conn: psycopg.Connection[Any], url: str, schema: str) -> None:
        self._conn = conn
        self.url = url
        self.schema = schema
        self.path = None
        self._audit = AuditLog(conn, schema)
        self._depth = 0

    @property
    def conn(self) -> psycopg.Connection[Any]:
        """The connection; one the server dropped (a restart, a fail-over, an idle timeout)
        is replaced on the next use outside a transaction (the statement that met the drop
        failed: a transaction is never resumed on another connection)."""
        if self._conn.broken and not self._depth:
            self._conn = connect(self.url, self.schema)
            self._audit = AuditLog(self._conn, self.schema)
        return self._conn

    @conn.setter
    def conn(self, value: psycopg.Connection[Any]) -> None:
        self._conn = value

    @classmethod
    def open(cls, url: str, *, schema: str = DEFAULT_SCHEMA) -> PostgresStore:
        """Connect, creating the schema and applying the migrations it lacks."""
        conn = connect(url, schema)
        try:
            migrate(conn, schema)
        except BaseException:
            conn.close()
            raise
        return cls(conn, url, schema)

    def reset(self) -> None:
        if not self._conn.broken and \
                self._conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self._conn.pgconn.exec_(b"ROLLBACK")
        self._depth = 0
        self._audit.pending = None

    def close(self) -> None:
        self._conn.close()


def _is_a_store(store: PostgresStore) -> LedgerStore:
    return store  # mypy checks PostgresStore against the protocol here
