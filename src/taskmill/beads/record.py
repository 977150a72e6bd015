"""The Beads record format: key order, the JSON text Beads writes, a stored task as a record.

A task is stored as a ``tasks`` row (:data:`Row`), its labels, its dependency rows
(:data:`DepRow`) and its comment rows (:data:`CommentRow`). :func:`export_record` turns those
back into the Beads record, applying the ``extra`` overrides (see :mod:`taskmill.beads`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

# The order Beads writes an issue's keys in (its Go struct order), with the fields taskmill
# adds at the end. A record in another order remembers its own order in ``extra.keys``.
KEY_ORDER = (
    "id", "title", "description", "design", "acceptance_criteria", "notes", "status",
    "priority", "issue_type", "assignee", "owner", "estimated_minutes", "created_at",
    "created_by", "updated_at", "closed_at", "close_reason", "external_ref", "metadata",
    "labels", "dependencies", "comments", "deleted_at", "deleted_by", "delete_reason",
    "original_type", "await_type", "await_id", "timeout", "checks", "agent", "hints",
)
DEP_KEY_ORDER = ("issue_id", "depends_on_id", "type", "created_at", "created_by")
COMMENT_KEY_ORDER = ("id", "issue_id", "author", "text", "created_at")
_RANK = {k: i for i, k in enumerate(KEY_ORDER)}
_DEP_RANK = {k: i for i, k in enumerate(DEP_KEY_ORDER)}
_COMMENT_RANK = {k: i for i, k in enumerate(COMMENT_KEY_ORDER)}

# Keys stored in columns (or the labels/deps/comments tables); all others go to extra.fields.
COLUMN_KEYS = frozenset({
    "id", "title", "description", "design", "acceptance_criteria", "notes", "status", "priority",
    "issue_type", "assignee", "created_at", "updated_at", "closed_at", "close_reason",
    "external_ref", "metadata", "labels", "dependencies", "comments", "checks", "agent", "hints",
})
DEP_COLUMN_KEYS = frozenset(DEP_KEY_ORDER)
COMMENT_COLUMN_KEYS = frozenset(COMMENT_KEY_ORDER)
# How a task's keys are written: always, only when not null (JSON columns), else only when
# not empty.
_ALWAYS_WRITTEN = frozenset({
    "id", "title", "status", "priority", "issue_type", "created_at", "updated_at",
})
_JSON_COLUMNS = frozenset({"metadata", "checks", "hints"})

ROW_COLUMNS = (
    "id", "title", "description", "design", "acceptance_criteria", "notes", "status", "priority",
    "issue_type", "assignee", "created_at", "updated_at", "closed_at", "close_reason",
    "external_ref", "metadata", "checks", "agent", "hints", "extra",
)
ROW_SQL = ", ".join(ROW_COLUMNS)

Row = tuple[Any, ...]
"""A ``tasks`` row in ``ROW_COLUMNS`` order (JSON columns as text)."""
DepRow = tuple[str, str, str | None, str | None, str | None]
"""(depends_on_id, type, created_at, created_by, extra)"""
CommentRow = tuple[int | None, str, str, str, str | None]
"""(id, author, text, created_at, extra)"""

MISSING: Any = object()
"""A key that is not in a record (``record.get(key, MISSING)``)."""


# -- JSON text -------------------------------------------------------------------------------


def dumps(value: Any) -> str:
    """Compact JSON, as stored in the ``extra`` and JSON columns."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _loads_opt(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _go_escape(text: str) -> str:
    """Escape as Go's encoding/json does by default (``<``, ``>``, ``&``, U+2028, U+2029).

    These characters can only occur inside JSON strings, so replacing them in the encoded
    text is safe; the result parses to the same value.
    """
    if "<" in text:
        text = text.replace("<", "\\u003c")
    if ">" in text:
        text = text.replace(">", "\\u003e")
    if "&" in text:
        text = text.replace("&", "\\u0026")
    if "\u2028" in text:
        text = text.replace("\u2028", "\\u2028")
    if "\u2029" in text:
        text = text.replace("\u2029", "\\u2029")
    return text


def encode_record(record: dict[str, Any]) -> str:
    """One JSONL line (without the newline) as Beads writes it."""
    return _go_escape(dumps(record))


# -- from stored parts to a Beads record -----------------------------------------------------


def _apply_extra(cand: dict[str, Any], extra: dict[str, Any] | None,
                 rank: dict[str, int]) -> dict[str, Any]:
    """Apply the overrides kept in ``extra`` and put the keys in order."""
    if extra:
        for key in extra.get("absent", ()):
            cand.pop(key, None)
        for key, value in extra.get("set", {}).items():
            cand[key] = value
        for key, value in extra.get("fields", {}).items():
            cand[key] = value
        keys = extra.get("keys")
        if keys is not None:
            out = {k: cand[k] for k in keys if k in cand}
            for k, v in cand.items():
                if k not in out:
                    out[k] = v
            return out
        big = len(rank)
        return {k: cand[k] for k in sorted(cand, key=lambda k: rank.get(k, big))}
    return cand  # built in the usual order already


def in_key_order(keys: Iterable[str]) -> bool:
    """Whether a record of these keys is in the order :func:`export_record` writes one whose
    ``extra`` holds at most the keys no column takes (``fields``): each in Beads' order,
    the keys it does not know after them, in their own order."""
    last = -1
    unknown = len(_RANK)
    for key in keys:
        rank = _RANK.get(key, unknown)
        if rank < last:
            return False
        last = rank
    return True


def export_dep(tid: str, dep: DepRow) -> dict[str, Any]:
    """The Beads dependency object for one stored dependency of task ``tid``."""
    depends_on, typ, created_at, created_by, extra = dep
    cand: dict[str, Any] = {"issue_id": tid, "depends_on_id": depends_on, "type": typ}
    if created_at is not None:
        cand["created_at"] = created_at
    if created_by is not None:
        cand["created_by"] = created_by
    return _apply_extra(cand, _loads_opt(extra), _DEP_RANK)


def export_comment(tid: str, comment: CommentRow) -> dict[str, Any]:
    """The Beads comment object for one stored comment of task ``tid``."""
    cid, author, text, created_at, extra = comment
    cand: dict[str, Any] = {"id": cid, "issue_id": tid, "author": author, "text": text,
                            "created_at": created_at}
    return _apply_extra(cand, _loads_opt(extra), _COMMENT_RANK)


def export_record(row: Row, labels: Sequence[str], deps: Sequence[DepRow],
                  comments: Sequence[CommentRow]) -> dict[str, Any]:
    """The Beads record for one stored task."""
    (tid, title, description, design, acceptance, notes, status, priority, issue_type,
     assignee, created_at, updated_at, closed_at, close_reason, external_ref, metadata,
     checks, agent, hints, extra) = row
    values: dict[str, Any] = {
        "id": tid, "title": title, "description": description, "design": design,
        "acceptance_criteria": acceptance, "notes": notes, "status": status,
        "priority": priority, "issue_type": issue_type, "assignee": assignee,
        "created_at": created_at, "updated_at": updated_at, "closed_at": closed_at,
        "close_reason": close_reason, "external_ref": external_ref, "metadata": metadata,
        "labels": list(labels), "dependencies": [export_dep(tid, d) for d in deps],
        "comments": [export_comment(tid, c) for c in comments], "checks": checks,
        "agent": agent, "hints": hints,
    }
    cand: dict[str, Any] = {}
    for key, value in values.items():
        if key in _JSON_COLUMNS:
            if value is not None:
                cand[key] = json.loads(value)
        elif value or key in _ALWAYS_WRITTEN:
            cand[key] = value
    return _apply_extra(cand, _loads_opt(extra), _RANK)
