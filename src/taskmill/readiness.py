"""Moved: readiness is kept by the ledger's store (the SQLite one's is
:mod:`taskmill.ledger.sqlite.readiness`, with the definitions); the graph algorithms are in
:mod:`taskmill.ledger.graph`. Kept here so old imports work."""

from __future__ import annotations

from .ledger.graph import closed_path, cyclic_groups
from .ledger.sqlite.readiness import (
    all_cycles,
    count_open_blockers,
    find_path,
    on_done_changed,
    recompute_all,
    refresh,
)

__all__ = ["all_cycles", "closed_path", "count_open_blockers", "cyclic_groups", "find_path",
           "on_done_changed", "recompute_all", "refresh"]
