"""Moved: the SQLite plumbing is :mod:`taskmill.ledger.sqlite.schema` (kept here so old
imports work)."""

from __future__ import annotations

from .ledger.sqlite.schema import (
    BUSY_TIMEOUT_MS,
    DB_FILE_MODE,
    LOCK_RETRY_SECONDS,
    MIGRATIONS,
    DatabaseError,
    connect,
    migrate,
    retry_locked,
    write_tx,
)

__all__ = ["BUSY_TIMEOUT_MS", "DB_FILE_MODE", "LOCK_RETRY_SECONDS", "MIGRATIONS",
           "DatabaseError", "connect", "migrate", "retry_locked", "write_tx"]
