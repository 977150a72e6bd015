"""How a task is held by a store: a row of columns (JSON fields as text), and the
:class:`~taskmill.model.Task` made from one. Shared by every store, so they agree on it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..model import OPEN, Task
from .lean import ATTEMPT_FIELDS, TASK_COLUMNS, TASK_FIELDS

__all__ = ["ATTEMPT_FIELDS", "TASK_COLUMNS", "TASK_FIELDS", "attempt_from_row", "dumps", "loads",
           "task_from_row"]

JSON_FIELDS = frozenset({"metadata", "checks", "hints"})
"""Task fields held as JSON text."""


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def task_from_row(row: Sequence[Any], labels: list[str] | None = None) -> Task:
    (tid, title, description, design, acceptance, notes, status, priority, issue_type, assignee,
     created_at, updated_at, closed_at, close_reason, external_ref, metadata, checks, agent,
     hints, gated, role) = row
    return Task(
        id=tid, title=title, description=description, design=design,
        acceptance_criteria=acceptance, notes=notes, status=status, priority=priority,
        issue_type=issue_type, assignee=assignee, labels=labels or [], created_at=created_at,
        updated_at=updated_at, closed_at=closed_at, close_reason=close_reason,
        external_ref=external_ref, metadata=loads(metadata), checks=loads(checks),
        agent=agent, hints=loads(hints), role=role, ready=(status == OPEN and not gated),
    )


def item_text(data: Any) -> str:
    """``data`` as an item of a top-level JSON array printed by ``json.dumps(data,
    ensure_ascii=False, indent=2, default=str)``: indented, less the item's leading spaces."""
    return json.dumps(data, ensure_ascii=False, indent=2, default=str).replace("\n", "\n  ")


def expand_json_fields(text: str) -> str:
    """``text`` with each JSON field a store wrote between two U+0001 characters as its compact text
    (a task's metadata, checks, hints) indented as a value of an item's key."""
    parts = text.split("\x01")
    for i in range(1, len(parts), 2):
        parts[i] = json.dumps(json.loads(parts[i]), ensure_ascii=False, indent=2,
                              default=str).replace("\n", "\n    ")
    return "".join(parts)


def attempt_from_row(row: Sequence[Any]) -> dict[str, Any]:
    item = dict(zip(ATTEMPT_FIELDS, row, strict=True))
    item["detail"] = loads(item["detail"])
    return item


def estimate(hints: str | None) -> float:
    """A task's ``estimate`` hint (its stored ``hints`` JSON) as a weight: 1 unless a
    positive number is given."""
    if hints and "estimate" in hints:
        value = json.loads(hints).get("estimate")
        if isinstance(value, int | float) and value > 0:
            return float(value)
    return 1.0
