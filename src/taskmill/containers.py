"""Moved: the container rules are :mod:`taskmill.ledger.containers` (kept here so old
imports work)."""

from __future__ import annotations

from .ledger.containers import AUTO_CLOSE_REASON

__all__ = ["AUTO_CLOSE_REASON"]
