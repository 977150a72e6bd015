"""A SQLite ledger made at an older schema: the migrations before a given one applied (as an
older taskmill made it), to test what the given one does to it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from taskmill.ledger.sqlite.schema import MIGRATIONS, connect


def ledger_before(db: Path, migration: str) -> sqlite3.Connection:
    """A connection to ``db`` with every migration before ``migration`` applied."""
    conn = connect(db)
    names = [name for name, _ in MIGRATIONS]
    conn.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    for name, sql in MIGRATIONS[:names.index(migration)]:
        if callable(sql):
            sql(conn)
        else:
            conn.executescript(sql)
        conn.execute("INSERT INTO migrations VALUES (?, 'then')", (name,))
    return conn


def steps_from(migration: str) -> list[str]:
    """The names of ``migration`` and every migration after it (what a ledger made before
    ``migration`` is migrated through)."""
    names = [name for name, _ in MIGRATIONS]
    return names[names.index(migration):]
