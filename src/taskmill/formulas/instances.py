"""The poured instances of formulas, as groups: each epic a pour made, with its steps."""

from __future__ import annotations

from typing import Any

from ..ledger import Ledger
from ..model import CLOSED
from .pour import EPIC_TYPE


def formula_instances(ledger: Ledger, *, limit: int = 200) -> list[dict[str, Any]]:
    """The newest ``limit`` poured instances (epics with a ``formula`` in their metadata),
    each with its step tasks and how many are closed; unfinished ones first."""
    out: list[dict[str, Any]] = []
    for epic in ledger.list_tasks(issue_type=EPIC_TYPE):
        meta = epic.metadata or {}
        if not isinstance(meta.get("formula"), str):
            continue
        steps = ledger.store.child_tasks(epic.id)
        out.append({
            "epic": epic.id, "title": epic.title, "formula": meta["formula"],
            "status": epic.status, "vars": meta.get("vars") or {}, "key": meta.get("key"),
            "order": meta.get("order"), "created_at": epic.created_at,
            "closed": sum(1 for t in steps if t.status == CLOSED), "total": len(steps),
            "tasks": [{"id": t.id, "title": t.title, "status": t.status,
                       "step": (t.metadata or {}).get("step_key")} for t in steps]})
    out.sort(key=lambda i: (i["status"] == CLOSED, _neg(i["created_at"])))
    return out[:limit]


def _neg(text: str) -> str:
    """Sorts ISO times newest first."""
    return "".join(chr(0x10FFFF - ord(c)) for c in text)
