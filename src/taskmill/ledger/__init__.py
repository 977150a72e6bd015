"""The ledger: :class:`Ledger` (the API every other module calls) over a
:class:`LedgerStore` (SQLite in :mod:`taskmill.ledger.sqlite`, the only place SQL is written;
dicts in :mod:`taskmill.ledger.memory`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .facade import Ledger
from .rows import TASK_COLUMNS, task_from_row
from .store import Change, EventRow, ImportItem, LedgerStore, OrderSlot
from .validate import (
    MILL_AUTHOR_PREFIX,
    refuse_mill_author,
    refuse_mill_close_reason,
    validate_dep_type,
    validate_field,
    validate_priority,
    validate_status,
)

__all__ = [
    "DATABASE_URL_ENV",
    "MILL_AUTHOR_PREFIX",
    "STORE_ERRORS",
    "TASK_COLUMNS",
    "Change",
    "EventRow",
    "ImportItem",
    "Ledger",
    "LedgerStore",
    "OrderSlot",
    "check_database_url",
    "database_url",
    "open_store",
    "refuse_mill_author",
    "refuse_mill_close_reason",
    "task_from_row",
    "validate_dep_type",
    "validate_field",
    "validate_priority",
    "validate_status",
]


DATABASE_URL_ENV = "TASKMILL_DATABASE_URL"
"""The environment variable naming the ledger's PostgreSQL URL (over ``[ledger] url``)."""


def database_url(configured: str | None, env: Mapping[str, str]) -> str | None:
    """Where the ledger lives: ``$TASKMILL_DATABASE_URL``, else ``[ledger] url``
    (``configured``); None: the repository's SQLite file."""
    return env.get(DATABASE_URL_ENV) or configured or None


def open_store(path: Path, url: str | None = None) -> LedgerStore:
    """The store of the ledger at ``path``, or at the PostgreSQL ``url`` when one is given
    (its own connection: a watcher's, a thread's)."""
    if url:
        return _open_url(url)
    from .sqlite import SqliteStore

    return SqliteStore.open(path)


def check_database_url(url: str) -> None:
    """Refuse a ledger URL that is not a PostgreSQL one (:class:`InvalidInput`)."""
    from ..errors import InvalidInput

    if not url.startswith(("postgresql://", "postgres://")):
        raise InvalidInput(f"ledger URL {url!r} is not a PostgreSQL URL",
                           hint="use postgresql://user@host:port/database "
                                f"([ledger] url, {DATABASE_URL_ENV} or --database)")


def _open_url(url: str) -> LedgerStore:
    from ..errors import InvalidInput

    check_database_url(url)
    try:
        from .postgres import PostgresStore
    except ImportError as exc:
        raise InvalidInput("the ledger is in PostgreSQL, and psycopg is not installed",
                           hint="pip install 'taskmill[postgres]'") from exc
    return PostgresStore.open(url)


def _store_errors() -> tuple[type[Exception], ...]:
    from .sqlite import STORE_ERRORS as errors

    return errors


STORE_ERRORS = _store_errors()
"""What a store raises when its data cannot be read now (locked, replaced): try again."""
