"""The ledger: :class:`Ledger` (the API every other module calls) over a
:class:`LedgerStore` (SQLite in :mod:`taskmill.ledger.sqlite`, the only place SQL is written;
dicts in :mod:`taskmill.ledger.memory`)."""

from __future__ import annotations

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
    "MILL_AUTHOR_PREFIX",
    "STORE_ERRORS",
    "TASK_COLUMNS",
    "Change",
    "EventRow",
    "ImportItem",
    "Ledger",
    "LedgerStore",
    "OrderSlot",
    "open_store",
    "refuse_mill_author",
    "refuse_mill_close_reason",
    "task_from_row",
    "validate_dep_type",
    "validate_field",
    "validate_priority",
    "validate_status",
]


def open_store(path: Path) -> LedgerStore:
    """The store of the ledger at ``path`` (its own connection: a watcher's, a thread's)."""
    from .sqlite import SqliteStore

    return SqliteStore.open(path)


def _store_errors() -> tuple[type[Exception], ...]:
    from .sqlite import STORE_ERRORS as errors

    return errors


STORE_ERRORS = _store_errors()
"""What a store raises when its data cannot be read now (locked, replaced): try again."""
