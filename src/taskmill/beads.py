"""Beads JSONL in and out.

``import_beads`` reads a Beads export (``.beads/issues.jsonl``: one issue per line, with its
``labels``, ``dependencies`` and ``comments`` embedded) into the ledger, all or nothing, in one
transaction. ``export_beads`` writes the ledger back in the same format. The round trip is
lossless: every record exported after an import parses to the same JSON object as the line it
came from (and, for records in Beads' usual key order, to the same bytes).

How that is kept:

- fields taskmill knows go to their columns (``tasks``, ``labels``, ``deps``, ``comments``);
- everything else -- fields taskmill does not know (``owner``, ``deleted_at``, ...), and the
  cases the columns cannot tell apart (a key present with ``""`` or ``null`` where the column
  would leave it out, a key absent where the column would write it, a key order other than
  Beads' usual one) -- goes to the row's ``extra`` column as JSON::

      {"fields": {...unknown keys, in order...},
       "set": {...known keys whose original value the columns cannot reproduce...},
       "absent": [...known keys the original did not have...],
       "keys": [...the original key order, only when it is not the usual one...]}

Other keys in ``extra`` are taskmill's own and are not exported (a plan import marks the
dependencies it made with ``{"plan": <source>}``).

Statuses and dependency types of any name are stored as they are; only ``blocks`` and
``parent-child`` gate readiness. Dependencies may name ids that are not in the ledger; they
are kept. Cycles in imported data are kept too (``Ledger.cycles()`` reports them).

An import merges: records whose id is already in the ledger are compared with what the ledger
would export for them and updated only when they differ; tasks that are not in the file are
left alone. Each created or updated task gets one ``imported`` audit event; a re-import of an
unchanged file writes nothing.
"""

from __future__ import annotations

import io
import json
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

from . import readiness
from .errors import InvalidInput
from .ledger import Ledger, task_from_row
from .model import Comment, Dependency, Task

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
_COLUMN_KEYS = frozenset({
    "id", "title", "description", "design", "acceptance_criteria", "notes", "status", "priority",
    "issue_type", "assignee", "created_at", "updated_at", "closed_at", "close_reason",
    "external_ref", "metadata", "labels", "dependencies", "comments", "checks", "agent", "hints",
})
_DEP_COLUMN_KEYS = frozenset(DEP_KEY_ORDER)
_COMMENT_COLUMN_KEYS = frozenset(COMMENT_KEY_ORDER)

_ROW_COLUMNS = (
    "id", "title", "description", "design", "acceptance_criteria", "notes", "status", "priority",
    "issue_type", "assignee", "created_at", "updated_at", "closed_at", "close_reason",
    "external_ref", "metadata", "checks", "agent", "hints", "extra",
)
_ROW_SQL = ", ".join(_ROW_COLUMNS)

Row = tuple[Any, ...]
"""A ``tasks`` row in ``_ROW_COLUMNS`` order (JSON columns as text)."""
DepRow = tuple[str, str, str | None, str | None, str | None]
"""(depends_on_id, type, created_at, created_by, extra)"""
CommentRow = tuple[int | None, str, str, str, str | None]
"""(id, author, text, created_at, extra)"""

_MISSING: Any = object()


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    source: str = ""
    dangling_deps: int = 0
    """Dependencies on ids the ledger does not hold (kept as they are)."""
    cycles: list[list[str]] = field(default_factory=list)
    """Cycles of gating dependencies in the ledger after the import (kept as they are)."""
    created_ids: list[str] = field(default_factory=list)
    updated_ids: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.created + self.updated + self.unchanged

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "total": self.total,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "dangling_deps": self.dangling_deps,
            "cycles": self.cycles,
            "created_ids": self.created_ids,
            "updated_ids": self.updated_ids,
        }


# -- JSON helpers ----------------------------------------------------------------------------


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _dumps_opt(value: Any) -> str | None:
    return None if value is None else _dumps(value)


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
    return _go_escape(_dumps(record))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


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


def _export_dep(tid: str, dep: DepRow) -> dict[str, Any]:
    depends_on, typ, created_at, created_by, extra = dep
    cand: dict[str, Any] = {"issue_id": tid, "depends_on_id": depends_on, "type": typ}
    if created_at is not None:
        cand["created_at"] = created_at
    if created_by is not None:
        cand["created_by"] = created_by
    return _apply_extra(cand, _loads_opt(extra), _DEP_RANK)


def _export_comment(tid: str, comment: CommentRow) -> dict[str, Any]:
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
    cand: dict[str, Any] = {"id": tid, "title": title}
    if description:
        cand["description"] = description
    if design:
        cand["design"] = design
    if acceptance:
        cand["acceptance_criteria"] = acceptance
    if notes:
        cand["notes"] = notes
    cand["status"] = status
    cand["priority"] = priority
    cand["issue_type"] = issue_type
    if assignee:
        cand["assignee"] = assignee
    cand["created_at"] = created_at
    cand["updated_at"] = updated_at
    if closed_at:
        cand["closed_at"] = closed_at
    if close_reason:
        cand["close_reason"] = close_reason
    if external_ref:
        cand["external_ref"] = external_ref
    if metadata is not None:
        cand["metadata"] = json.loads(metadata)
    if labels:
        cand["labels"] = list(labels)
    if deps:
        cand["dependencies"] = [_export_dep(tid, d) for d in deps]
    if comments:
        cand["comments"] = [_export_comment(tid, c) for c in comments]
    if checks is not None:
        cand["checks"] = json.loads(checks)
    if agent:
        cand["agent"] = agent
    if hints is not None:
        cand["hints"] = json.loads(hints)
    return _apply_extra(cand, _loads_opt(extra), _RANK)


# -- from a Beads record to stored parts -----------------------------------------------------


class _Bad(Exception):
    """A problem with one line (turned into InvalidInput with the file and line)."""


class _Overrides:
    """Collects what the columns cannot reproduce for one object."""

    def __init__(self) -> None:
        self.fields: dict[str, Any] = {}
        self.set: dict[str, Any] = {}
        self.absent: list[str] = []

    def to_json(self, keys: list[str] | None = None) -> str | None:
        data: dict[str, Any] = {}
        if self.fields:
            data["fields"] = self.fields
        if self.set:
            data["set"] = self.set
        if self.absent:
            data["absent"] = self.absent
        if keys is not None:
            data["keys"] = keys
        return _dumps(data) if data else None

    def text(self, obj: dict[str, Any], key: str, *, always: bool, what: str = "") -> str:
        """A NOT NULL text column; ``always``: Beads always writes the key."""
        if key not in obj:
            if always:
                self.absent.append(key)
            return ""
        value = obj[key]
        if value is None:
            self.set[key] = None
            return ""
        if not isinstance(value, str):
            raise _Bad(f"{what}{key} must be a string, not {type(value).__name__}")
        if value == "" and not always:
            self.set[key] = ""
        return value

    def optional(self, obj: dict[str, Any], key: str, what: str = "") -> str | None:
        """A nullable text column that is left out when empty."""
        if key not in obj:
            return None
        value = obj[key]
        if value is None or value == "":
            self.set[key] = value
            return None
        if not isinstance(value, str):
            raise _Bad(f"{what}{key} must be a string, not {type(value).__name__}")
        return value


def _fix_order(original: dict[str, Any], exported: dict[str, Any]) -> list[str] | None:
    keys = list(original)
    return None if keys == list(exported) else keys


def _parse_dep(tid: str, obj: Any, index: int) -> DepRow:
    what = f"dependency {index + 1}: "
    if not isinstance(obj, dict):
        raise _Bad(f"{what}must be a JSON object")
    ov = _Overrides()
    for key, value in obj.items():
        if key not in _DEP_COLUMN_KEYS:
            ov.fields[key] = value
    if "issue_id" not in obj:
        ov.absent.append("issue_id")
    elif obj["issue_id"] != tid:
        ov.set["issue_id"] = obj["issue_id"]
    depends_on = obj.get("depends_on_id")
    if not isinstance(depends_on, str) or not depends_on:
        raise _Bad(f"{what}depends_on_id must be a non-empty string")
    typ = obj.get("type")
    if not isinstance(typ, str) or not typ:
        raise _Bad(f"{what}type must be a non-empty string")
    created_at = ov.optional(obj, "created_at", what)
    created_by = ov.optional(obj, "created_by", what)
    dep: DepRow = (depends_on, typ, created_at, created_by, ov.to_json())
    keys = _fix_order(obj, _export_dep(tid, dep))
    if keys is not None:
        dep = (*dep[:4], ov.to_json(keys))
    return dep


def _parse_comment(tid: str, obj: Any, index: int) -> tuple[Any, CommentRow]:
    """Returns (the original id, the row with that id if it is an integer, else None)."""
    what = f"comment {index + 1}: "
    if not isinstance(obj, dict):
        raise _Bad(f"{what}must be a JSON object")
    ov = _Overrides()
    for key, value in obj.items():
        if key not in _COMMENT_COLUMN_KEYS:
            ov.fields[key] = value
    original_id = obj.get("id", _MISSING)
    cid: int | None = None
    if original_id is _MISSING:
        ov.absent.append("id")
    elif isinstance(original_id, int) and not isinstance(original_id, bool):
        cid = original_id
    else:
        ov.set["id"] = original_id
    if "issue_id" not in obj:
        ov.absent.append("issue_id")
    elif obj["issue_id"] != tid:
        ov.set["issue_id"] = obj["issue_id"]
    author = ov.text(obj, "author", always=True, what=what)
    text = ov.text(obj, "text", always=True, what=what)
    created_at = ov.text(obj, "created_at", always=True, what=what)
    row: CommentRow = (cid, author, text, created_at, ov.to_json())
    keys = _fix_order(obj, _export_comment(tid, row))
    if keys is not None:
        row = (*row[:4], ov.to_json(keys))
    return original_id, row


@dataclass
class _Parsed:
    line: int
    record: dict[str, Any]
    row: Row
    labels: list[str]
    deps: list[DepRow]
    comments: list[CommentRow]
    comment_ids: list[Any]


def _parse_record(record: Any, now: str) -> _Parsed:
    if not isinstance(record, dict):
        raise _Bad(f"a record must be a JSON object, not {type(record).__name__}")
    tid = record.get("id")
    if not isinstance(tid, str) or not tid.strip():
        raise _Bad("missing id" if tid is None else "id must be a non-empty string")
    title = record.get("title")
    if not isinstance(title, str) or not title.strip():
        raise _Bad(f"{tid}: missing title" if title is None
                   else f"{tid}: title must be a non-empty string")
    ov = _Overrides()
    for key, value in record.items():
        if key not in _COLUMN_KEYS:
            ov.fields[key] = value
    try:
        description = ov.text(record, "description", always=False)
        design = ov.text(record, "design", always=False)
        acceptance = ov.text(record, "acceptance_criteria", always=False)
        notes = ov.text(record, "notes", always=False)
        if "status" in record:
            status = ov.text(record, "status", always=True)
        else:
            status = "open"
            ov.absent.append("status")
        if "issue_type" in record:
            issue_type = ov.text(record, "issue_type", always=True)
        else:
            issue_type = "task"
            ov.absent.append("issue_type")
        priority = record.get("priority", _MISSING)
        if priority is _MISSING:
            priority = 2
            ov.absent.append("priority")
        elif isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 4:
            raise _Bad(f"priority must be an integer from 0 to 4, not {priority!r}")
        assignee = ov.optional(record, "assignee")
        stamps: list[str] = []
        for key in ("created_at", "updated_at"):
            if key in record and isinstance(record[key], str):
                stamps.append(record[key])
            else:
                stamps.append(now)
                ov.text(record, key, always=True)
        closed_at = ov.optional(record, "closed_at")
        close_reason = ov.optional(record, "close_reason")
        external_ref = ov.optional(record, "external_ref")
        metadata = record.get("metadata", _MISSING)
        if metadata is not _MISSING and not isinstance(metadata, dict):
            ov.set["metadata"] = metadata
        checks = record.get("checks", _MISSING)
        if checks is not _MISSING and not (
                isinstance(checks, list) and all(isinstance(c, str) and c.strip() for c in checks)):
            ov.set["checks"] = checks
        agent = record.get("agent", _MISSING)
        if agent is not _MISSING and (not isinstance(agent, str) or not agent):
            ov.set["agent"] = agent
        hints = record.get("hints", _MISSING)
        if hints is not _MISSING and not isinstance(hints, dict):
            ov.set["hints"] = hints

        labels_value = record.get("labels", _MISSING)
        labels: list[str] = []
        if labels_value is not _MISSING:
            if not isinstance(labels_value, list) or not all(isinstance(x, str) for x in labels_value):
                raise _Bad("labels must be a list of strings")
            if len(set(labels_value)) != len(labels_value):
                raise _Bad("labels must not repeat")
            if not labels_value:
                ov.set["labels"] = []
            labels = list(labels_value)

        deps_value = record.get("dependencies", _MISSING)
        deps: list[DepRow] = []
        if deps_value is not _MISSING:
            if not isinstance(deps_value, list):
                raise _Bad("dependencies must be a list")
            if not deps_value:
                ov.set["dependencies"] = []
            seen: set[tuple[str, str]] = set()
            for i, obj in enumerate(deps_value):
                dep = _parse_dep(tid, obj, i)
                if (dep[0], dep[1]) in seen:
                    raise _Bad(f"dependency {i + 1}: {tid} -> {dep[0]} ({dep[1]}) is repeated")
                seen.add((dep[0], dep[1]))
                deps.append(dep)

        comments_value = record.get("comments", _MISSING)
        comments: list[CommentRow] = []
        comment_ids: list[Any] = []
        if comments_value is not _MISSING:
            if not isinstance(comments_value, list):
                raise _Bad("comments must be a list")
            if not comments_value:
                ov.set["comments"] = []
            for i, obj in enumerate(comments_value):
                original_id, crow = _parse_comment(tid, obj, i)
                comment_ids.append(original_id)
                comments.append(crow)
    except _Bad as exc:
        raise _Bad(f"{tid}: {exc}") from None

    def build(extra: str | None) -> Row:
        return (tid, title, description, design, acceptance, notes, status, priority,
                issue_type, assignee, stamps[0], stamps[1], closed_at, close_reason,
                external_ref, _dumps(metadata) if isinstance(metadata, dict) else None,
                _dumps(checks) if "checks" not in ov.set and checks is not _MISSING else None,
                agent if "agent" not in ov.set and agent is not _MISSING else None,
                _dumps(hints) if isinstance(hints, dict) else None, extra)

    row = build(ov.to_json())
    exported = export_record(row, labels, deps, comments)
    if exported != record:
        # a safety net: every case above should keep the record exactly
        raise _Bad(f"{tid}: this record cannot be kept exactly (taskmill bug)")
    keys = _fix_order(record, exported)
    if keys is not None:
        row = build(ov.to_json(keys))
    return _Parsed(0, record, row, labels, deps, comments, comment_ids)


# -- reading input ---------------------------------------------------------------------------


def _read_lines(path_or_lines: Path | str | os.PathLike[str] | Iterable[str]
                ) -> tuple[str, Iterable[str]]:
    if isinstance(path_or_lines, (str, os.PathLike)):
        path = Path(path_or_lines)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise InvalidInput(f"no such file: {path}") from None
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except OSError as exc:
            raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from None
        return str(path), io.StringIO(text)
    return "<input>", path_or_lines


def parse_beads(path_or_lines: Path | str | os.PathLike[str] | Iterable[str],
                *, now: str = "") -> tuple[str, list[_Parsed]]:
    """Parse and check every line; raises InvalidInput naming the first bad line."""
    name, lines = _read_lines(path_or_lines)
    parsed: list[_Parsed] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line, parse_constant=_reject_constant)
        except (json.JSONDecodeError, ValueError) as exc:
            msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            col = f", column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
            raise InvalidInput(f"{name}, line {number}{col}: bad JSON: {msg}",
                               hint="nothing was imported") from None
        try:
            item = _parse_record(record, now)
        except _Bad as exc:
            raise InvalidInput(f"{name}, line {number}: {exc}",
                               hint="nothing was imported") from None
        tid = item.row[0]
        if tid in first_line:
            raise InvalidInput(f"{name}, line {number}: id {tid} already appeared on line"
                               f" {first_line[tid]}", hint="nothing was imported")
        first_line[tid] = number
        item.line = number
        parsed.append(item)
    return name, parsed


# -- reading the ledger ----------------------------------------------------------------------


@dataclass
class _Stored:
    rows: dict[str, Row]
    labels: dict[str, list[str]]
    deps: dict[str, list[DepRow]]
    comments: dict[str, list[CommentRow]]
    order: list[str]

    def record(self, tid: str) -> dict[str, Any]:
        return export_record(self.rows[tid], self.labels.get(tid, ()), self.deps.get(tid, ()),
                             self.comments.get(tid, ()))


def _load(ledger: Ledger, *, order_by: str = "id", where: str = "") -> _Stored:
    conn = ledger.conn
    rows: dict[str, Row] = {}
    for r in conn.execute(f"SELECT {_ROW_SQL} FROM tasks {where} ORDER BY {order_by}"):
        rows[r[0]] = tuple(r)
    labels: dict[str, list[str]] = defaultdict(list)
    for tid, label in conn.execute("SELECT task_id, label FROM labels ORDER BY task_id, pos, label"):
        if tid in rows:
            labels[tid].append(label)
    deps: dict[str, list[DepRow]] = defaultdict(list)
    for tid, *rest in conn.execute(
            "SELECT issue_id, depends_on_id, type, created_at, created_by, extra FROM deps"
            " ORDER BY issue_id, pos, depends_on_id, type"):
        if tid in rows:
            deps[tid].append(tuple(rest))
    comments: dict[str, list[CommentRow]] = defaultdict(list)
    for tid, *rest in conn.execute(
            "SELECT task_id, id, author, text, created_at, extra FROM comments ORDER BY id"):
        if tid in rows:
            comments[tid].append(tuple(rest))
    return _Stored(rows, labels, deps, comments, list(rows))


# -- import ----------------------------------------------------------------------------------


def _diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[Any]]:
    changes: dict[str, list[Any]] = {}
    for key in (*old, *(k for k in new if k not in old)):
        a, b = old.get(key, _MISSING), new.get(key, _MISSING)
        if a != b:
            changes[key] = [None if a is _MISSING else a, None if b is _MISSING else b]
    if not changes and list(old) != list(new):
        changes["key_order"] = [list(old), list(new)]
    return changes


def import_beads(ledger: Ledger, path_or_lines: Path | str | os.PathLike[str] | Iterable[str],
                 *, actor: str | None = None) -> ImportReport:
    """Import a Beads JSONL export (a path, or an iterable of lines), all or nothing.

    Records already in the ledger (same id) are updated when they differ; an unchanged
    record writes nothing. Raises :class:`InvalidInput` naming the file and line of the
    first malformed record, and then imports nothing.
    """
    now = ledger.now()
    name, parsed = parse_beads(path_or_lines, now=now)
    report = ImportReport(source=name)
    source = Path(name).name if name != "<input>" else name
    conn = ledger.conn
    with ledger.transaction():
        ids = {p.row[0] for p in parsed}
        have = {r[0] for r in conn.execute("SELECT id FROM tasks")}
        stored = _load(ledger) if ids & have else None
        creates: list[_Parsed] = []
        updates: list[tuple[_Parsed, dict[str, list[Any]]]] = []
        for item in parsed:
            tid = item.row[0]
            if stored is None or tid not in stored.rows:
                creates.append(item)
                continue
            old = stored.record(tid)
            if old == item.record and list(old) == list(item.record):
                report.unchanged += 1
                continue
            updates.append((item, _diff(old, item.record)))
        if creates or updates:
            _write(ledger, creates, [u[0] for u in updates], stored)
            who = actor or ledger.actor
            for item in creates:
                ledger.record("imported", item.row[0],
                              {"action": "created", "source": source, "line": item.line,
                               "new": item.record}, actor=who, ts=now)
            for item, changes in updates:
                ledger.record("imported", item.row[0],
                              {"action": "updated", "source": source, "line": item.line,
                               "changes": changes}, actor=who, ts=now)
            readiness.recompute_all(conn)
        report.created = len(creates)
        report.updated = len(updates)
        report.created_ids = [p.row[0] for p in creates]
        report.updated_ids = [u[0].row[0] for u in updates]
    report.dangling_deps = conn.execute(
        "SELECT count(*) FROM deps WHERE depends_on_id NOT IN (SELECT id FROM tasks)").fetchone()[0]
    report.cycles = ledger.cycles()
    return report


def _write(ledger: Ledger, creates: list[_Parsed], updates: list[_Parsed],
           stored: _Stored | None) -> None:
    conn = ledger.conn
    if updates:
        upd_ids = [(p.row[0],) for p in updates]
        conn.executemany("DELETE FROM labels WHERE task_id = ?", upd_ids)
        conn.executemany("DELETE FROM deps WHERE issue_id = ?", upd_ids)
        conn.executemany("DELETE FROM comments WHERE task_id = ?", upd_ids)
        assignments = ", ".join(f"{c} = ?" for c in _ROW_COLUMNS[1:])
        conn.executemany(f"UPDATE tasks SET {assignments} WHERE id = ?",
                         [(*p.row[1:], p.row[0]) for p in updates])
    if creates:
        marks = ", ".join("?" * len(_ROW_COLUMNS))
        conn.executemany(f"INSERT INTO tasks ({_ROW_SQL}) VALUES ({marks})",
                         [p.row for p in creates])
    items = [*updates, *creates]
    conn.executemany(
        "INSERT INTO labels (task_id, label, pos) VALUES (?, ?, ?)",
        [(p.row[0], lb, i) for p in items for i, lb in enumerate(p.labels)])
    conn.executemany(
        "INSERT INTO deps (issue_id, depends_on_id, type, created_at, created_by, extra, pos)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(p.row[0], *d, i) for p in items for i, d in enumerate(p.deps)])
    _write_comments(conn, items)


def _write_comments(conn: Any, items: list[_Parsed]) -> None:
    """Insert comments keeping their ids where free and in order, else with new ids."""
    if not any(p.comments for p in items):
        return
    used = {r[0] for r in conn.execute("SELECT id FROM comments")}
    plan: list[tuple[_Parsed, list[int | None]]] = []
    top = max(used, default=0)
    for p in items:
        chosen: list[int | None] = []
        last = None
        fresh = False
        for crow in p.comments:
            cid = crow[0]
            if not fresh and cid is not None and cid > 0 and cid not in used and (
                    last is None or cid > last):
                used.add(cid)
                chosen.append(cid)
                last = cid
                top = max(top, cid)
            else:
                fresh = True
                chosen.append(None)
        plan.append((p, chosen))
    rows = []
    for p, chosen in plan:
        for crow, cid, original in zip(p.comments, chosen, p.comment_ids, strict=True):
            extra = crow[4]
            if cid is None:
                top += 1
                cid = top
                if original is not _MISSING and original != cid:
                    data = json.loads(extra) if extra else {}
                    data.setdefault("set", {})["id"] = original
                    extra = _dumps(data)
            rows.append((cid, p.row[0], crow[1], crow[2], crow[3], extra))
    conn.executemany(
        "INSERT INTO comments (id, task_id, author, text, created_at, extra)"
        " VALUES (?, ?, ?, ?, ?, ?)", rows)


# -- export ----------------------------------------------------------------------------------


def beads_records(ledger: Ledger, *, include_tombstones: bool = True,
                  order: Literal["id", "ledger"] = "id") -> list[dict[str, Any]]:
    """Every task as a Beads record. ``order``: by id (as Beads writes), or ``ledger`` (the
    order the tasks entered the ledger, which for an import is the order of the file)."""
    where = "" if include_tombstones else "WHERE status != 'tombstone'"
    stored = _load(ledger, order_by="id" if order == "id" else "seq", where=where)
    return [stored.record(tid) for tid in stored.order]


def export_beads(ledger: Ledger, out: TextIO, *, include_tombstones: bool = True,
                 order: Literal["id", "ledger"] = "id") -> int:
    """Write the ledger as Beads JSONL; returns the number of records written."""
    count = 0
    for record in beads_records(ledger, include_tombstones=include_tombstones, order=order):
        out.write(encode_record(record))
        out.write("\n")
        count += 1
    return count


def export_json(ledger: Ledger, *, include_tombstones: bool = True) -> list[dict[str, Any]]:
    """taskmill's own full format: ``Task.to_json(full=True)`` for every task, by id."""
    conn = ledger.conn
    from .ledger import TASK_COLUMNS

    where = "" if include_tombstones else " WHERE status != 'tombstone'"
    rows = conn.execute(f"SELECT {TASK_COLUMNS} FROM tasks{where} ORDER BY id").fetchall()
    labels: dict[str, list[str]] = defaultdict(list)
    for tid, label in conn.execute("SELECT task_id, label FROM labels ORDER BY task_id, pos, label"):
        labels[tid].append(label)
    tasks: list[Task] = [task_from_row(r, labels.get(r[0])) for r in rows]
    by_id = {t.id: t for t in tasks}
    for r in conn.execute("SELECT issue_id, depends_on_id, type, created_at, created_by FROM deps"
                          " ORDER BY issue_id, pos, depends_on_id"):
        if r[0] in by_id:
            by_id[r[0]].dependencies.append(Dependency(*r))
    for r in conn.execute("SELECT issue_id, depends_on_id, type, created_at, created_by FROM deps"
                          " ORDER BY depends_on_id, issue_id"):
        if r[1] in by_id:
            by_id[r[1]].dependents.append(Dependency(*r))
    for r in conn.execute("SELECT id, task_id, author, text, created_at FROM comments ORDER BY id"):
        if r[1] in by_id:
            by_id[r[1]].comments.append(Comment(*r))
    attempt_ids = {r[0] for r in conn.execute("SELECT DISTINCT task_id FROM attempts")}
    for task in tasks:
        if task.id in attempt_ids:
            task.attempts = ledger.attempts(task.id)
    return [t.to_json(full=True) for t in tasks]
