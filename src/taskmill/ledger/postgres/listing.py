"""``list --json`` and ``blocked --json``: each task's JSON text made by PostgreSQL (the SQLite
store's :mod:`taskmill.ledger.sqlite.listing`, in PostgreSQL's words). ``to_json(text)``
writes a string as ``json.dumps(ensure_ascii=False)`` does; the object is put together as
text, not with ``jsonb_build_object`` (jsonb orders an object's keys its own way, and the
output keeps ``Task.to_json``'s order and ``json.dumps(indent=2)``'s layout). A JSON field
that is not null comes between two U+0001 characters as its stored text (see
:func:`taskmill.ledger.rows.expand_json_fields`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

import psycopg

from ..rows import expand_json_fields
from ..task_filter import listing_order, task_where
from .deps import HELD_SQL


def _quoted(expr: str) -> str:
    return f"coalesce(to_json(({expr})::text)::text, 'null')"


def _json_field(column: str) -> str:
    return f"CASE WHEN t.{column} IS NULL THEN 'null' ELSE chr(1) || t.{column} || chr(1) END"


_LABELS = (
    "coalesce((SELECT E'[\\n      ' || string_agg(to_json(l.label::text)::text,"
    " E',\\n      ' ORDER BY l.pos, l.label) || E'\\n    ]' FROM labels l"
    " WHERE l.task_id = t.id), '[]')"
)
_PARENT = _quoted(
    "SELECT p.depends_on_id FROM deps p WHERE p.issue_id = t.id AND p.type = 'parent-child'"
    " ORDER BY p.pos, p.depends_on_id LIMIT 1")
_CHILDREN = (
    "(SELECT count(*)::text || E',\\n    \"children_closed\": '"
    " || (count(*) FILTER (WHERE c.status = 'closed'))::text"
    " || E',\\n    \"container\": ' || CASE WHEN count(*) > 0 THEN 'true' ELSE 'false' END"
    " FROM deps cd JOIN tasks c ON c.id = cd.issue_id WHERE cd.depends_on_id = t.id"
    " AND cd.type = 'parent-child' AND c.status <> 'tombstone')"
)
_FIELDS: list[tuple[str, str]] = [
    *((name, _quoted(f"t.{name}")) for name in (
        "id", "title", "description", "design", "acceptance_criteria", "notes", "status")),
    ("priority", "t.priority::text"),
    ("issue_type", _quoted("t.issue_type")),
    ("assignee", _quoted("t.assignee")),
    ("labels", _LABELS),
    *((name, _quoted(f"t.{name}")) for name in (
        "created_at", "updated_at", "closed_at", "close_reason", "external_ref")),
    ("metadata", _json_field("metadata")),
    ("checks", _json_field("checks")),
    ("agent", _quoted("t.agent")),
    ("hints", _json_field("hints")),
    ("role", _quoted("t.role")),
    ("ready", "CASE WHEN t.status = 'open' AND coalesce(t.gated, 0) = 0 THEN 'true'"
              " ELSE 'false' END"),
    ("parent", _PARENT),
    ("children", _CHILDREN),  # children, children_closed and container
]
TASK_JSON_SQL = "concat(" + ", ".join(
    f"E'{'{' if i == 0 else ','}\\n    \"{name}\": ', {expr}"
    for i, (name, expr) in enumerate(_FIELDS)) + ")"
"""The task ``t`` as the text of ``Task.to_json()`` up to ``container``, in an item's
indentation, without its closing brace."""
_MARKS = (
    "CASE WHEN t.id = ANY(%s) THEN E',\\n    \"interrupted\": true' ELSE '' END"
    " || CASE WHEN t.status = 'open' AND t.role IS NOT NULL THEN coalesce((SELECT"
    " E',\\n    \"held\": ' || to_json(h.value)::text FROM jsonb_each_text(%s::jsonb) h"
    " WHERE h.key = t.role AND h.value <> ''), '') ELSE '' END"
)


def _marks_args(interrupted: Collection[str], held: Mapping[str, str] | None) -> list[Any]:
    return [sorted(interrupted), json.dumps(dict(held or {}))]


class ListingRows:
    """The listings' JSON text, a row at a time."""

    conn: psycopg.Connection[Any]
    _dep_gated: Callable[[], set[str]]  # the store's (tasks.py)

    def task_json_rows(self, *, statuses: Sequence[str] | None, include_hidden: bool,
                       label: str | None, issue_type: str | None, assignee: str | None,
                       parent: str | None, limit: int | None,
                       interrupted: Collection[str] = (),
                       held: Mapping[str, str] | None = None) -> Iterator[str]:
        where, filter_args = task_where(
            statuses=statuses, include_hidden=include_hidden, label=label,
            issue_type=issue_type, assignee=assignee, parent=parent, postgres=True,
            alias="t.")
        args: list[Any] = [*_marks_args(interrupted, held), *filter_args]
        sql = (f"SELECT {TASK_JSON_SQL} || {_MARKS} || E'\\n  }}' FROM tasks t{where}"
               f"{listing_order(limit, 't.')}")
        for (text,) in self.conn.execute(sql, args):
            yield expand_json_fields(text) if "\x01" in text else text

    def held_json_rows(self, beads_compat: bool = False, *,
                       interrupted: Collection[str] = (),
                       held: Mapping[str, str] | None = None
                       ) -> Iterator[tuple[str, str, str]]:
        ids = self._dep_gated() if beads_compat else None
        for tid, status, text in self.conn.execute(
                f"SELECT t.id, t.status, {TASK_JSON_SQL} || {_MARKS} FROM tasks t"
                f" WHERE {HELD_SQL.format(t='t.')} ORDER BY t.priority, t.seq",
                _marks_args(interrupted, held)):
            if ids is None or tid in ids:
                yield tid, status, expand_json_fields(text) if "\x01" in text else text
