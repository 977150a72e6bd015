"""Beads' readiness rules, as plain functions both stores share (the SQLite store's SQL in
:mod:`taskmill.ledger.sqlite.readiness` says the same; the contract tests hold them equal).

Read from Beads 1.x (``internal/storage/issueops/ready_work.go``, ``blocked.go``,
``internal/types/types.go``) and, for ``conditional-blocks``, from the rule Beads documents
(``blocked_cache.go``: "B runs only if A fails"):

- ``ready`` never offers a record that is not work: an ``issue_type`` in
  :data:`READY_EXCLUDE_TYPES` (Beads' ``readyWorkExcludeTypes``), or a record with
  ``pinned: true`` or ``ephemeral: true`` (Beads' own fields, kept by the importer among the
  record's unknown fields, ``extra.fields``);
- a task whose ``defer_until`` is in the future is not ready, nor are its children;
- blocking dependencies (:data:`~taskmill.model.BLOCKING_TYPES`), each of which holds its task
  while it :func:`holds <blocks_now>`: ``blocks`` while the blocker is not done and not
  ``pinned``; ``conditional-blocks`` unless the blocker was closed with a failure
  (:func:`is_failure_close`), is ``pinned`` or is deleted; ``waits-for`` while the gate over
  the spawner's children is shut (:func:`gate_shut`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from ..model import BLOCKS, CLOSED, CONDITIONAL_BLOCKS, PINNED, TOMBSTONE, WAITS_FOR
from .lean_readiness import ANY_CHILDREN as ANY_CHILDREN
from .lean_readiness import FAILURE_CLOSE_KEYWORDS as FAILURE_CLOSE_KEYWORDS

READY_EXCLUDE_TYPES = ("merge-request", "gate", "molecule", "message", "agent", "role", "rig")
"""Beads' ``readyWorkExcludeTypes``: records of these types are never ready work."""


ALL_CHILDREN = "all-children"

INERT_BLOCKER_STATUSES = frozenset({CLOSED, TOMBSTONE, PINNED})
"""A ``blocks`` blocker in one of these does not block; a ``waits-for`` child in one of these
is not active."""


def _ascii_lower(text: str) -> str:
    """Lower case for ASCII letters only (as SQLite's LIKE compares)."""
    return text.translate(_ASCII_LOWER)


_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def is_failure_close(reason: str | None) -> bool:
    """Beads' ``IsFailureClose``: the close reason holds one of the failure keywords."""
    if not reason:
        return False
    low = _ascii_lower(reason)
    return any(k in low for k in FAILURE_CLOSE_KEYWORDS)


def order_key(created_at: str | None) -> str:
    """A creation time as a key that sorts oldest first: UTC with microseconds (a time
    without an offset is taken as UTC); a time that cannot be read sorts after every other."""
    if isinstance(created_at, str):
        if len(created_at) == 27 and created_at[10] == "T" and created_at[-1] == "Z" \
                and created_at[19] == "." and created_at[:4].isdigit():
            return created_at  # taskmill's own form (clock.iso): already the key
        try:
            when = datetime.fromisoformat(created_at)
        except ValueError:
            pass
        else:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return "~" + (created_at if isinstance(created_at, str) else "")


def extra_fields(extra: str | None) -> dict[str, Any]:
    """The unknown fields an import kept for a task (``extra.fields``)."""
    if not extra:
        return {}
    fields = json.loads(extra).get("fields")
    return fields if isinstance(fields, dict) else {}


def _is_one(value: Any) -> bool:
    """As SQLite's ``json_extract(...) = 1``: JSON true, 1 or 1.0."""
    return isinstance(value, bool | int | float) and value == 1


def is_nonwork(issue_type: str, extra: str | None) -> bool:
    """Not work to offer: an excluded type, or ``pinned``/``ephemeral`` set."""
    if issue_type in READY_EXCLUDE_TYPES:
        return True
    fields = extra_fields(extra)
    return _is_one(fields.get("pinned")) or _is_one(fields.get("ephemeral"))


def defer_until(extra: str | None) -> str | None:
    """The task's ``defer_until`` as kept (a string), or None."""
    value = extra_fields(extra).get("defer_until")
    return value if isinstance(value, str) else None


def deferred(value: Any, now: str) -> bool:
    """``defer_until`` ``value`` (as stored) lies after ``now`` (an ISO time)."""
    if not isinstance(value, str):
        return False
    key = order_key(value)
    return not key.startswith("~") and key > order_key(now)


def waits_for_gate(dep_extra: str | None) -> str:
    """Beads' ``ParseWaitsForGateMetadata``: the gate a ``waits-for`` dependency's metadata
    names (``any-children``), else ``all-children``."""
    meta = extra_fields(dep_extra).get("metadata")
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except ValueError:
            return ALL_CHILDREN
    if isinstance(meta, dict) and meta.get("gate") == ANY_CHILDREN:
        return ANY_CHILDREN
    return ALL_CHILDREN


def gate_shut(gate: str, child_statuses: Iterable[str]) -> bool:
    """Whether a ``waits-for`` gate over a spawner whose children have ``child_statuses``
    still holds its waiter (Beads 1.x ``ComputeBlockedIDsInTx``, step 5; deleted children do
    not count): all-children while any child is active; any-children while no child is
    closed and one is active."""
    statuses = [s for s in child_statuses if s != TOMBSTONE]
    active = any(s not in INERT_BLOCKER_STATUSES for s in statuses)
    if gate == ANY_CHILDREN:
        return active and CLOSED not in statuses
    return active


def blocks_now(dep_type: str, status: str, close_reason: str | None) -> bool:
    """Whether a ``blocks``/``conditional-blocks`` dependency on a task with ``status`` and
    ``close_reason`` holds its dependent."""
    if dep_type == BLOCKS:
        return status not in INERT_BLOCKER_STATUSES
    if dep_type == CONDITIONAL_BLOCKS:
        if status in (TOMBSTONE, PINNED):
            return False
        return not (status == CLOSED and is_failure_close(close_reason))
    return False


__all__ = [
    "ALL_CHILDREN",
    "ANY_CHILDREN",
    "FAILURE_CLOSE_KEYWORDS",
    "INERT_BLOCKER_STATUSES",
    "READY_EXCLUDE_TYPES",
    "WAITS_FOR",
    "blocks_now",
    "defer_until",
    "deferred",
    "extra_fields",
    "gate_shut",
    "is_failure_close",
    "is_nonwork",
    "order_key",
    "waits_for_gate",
]
