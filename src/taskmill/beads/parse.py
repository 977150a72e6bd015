"""A Beads record back into stored parts, and a Beads JSONL file checked line by line.

:func:`parse_beads` reads every line and turns each record into the row, labels,
dependencies and comments taskmill stores, with an ``extra`` that keeps whatever the
columns cannot reproduce; each result is checked to export back to the same record.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from .. import validation as check
from ..errors import InvalidInput
from ..lean_rules import LABEL_MAX, TITLE_MAX, is_line, is_text
from ..model import GATING_TYPES
from .record import (
    COLUMN_KEYS,
    COMMENT_COLUMN_KEYS,
    DEP_COLUMN_KEYS,
    DEP_KEY_ORDER,
    MISSING,
    CommentRow,
    DepRow,
    Row,
    dumps,
    export_comment,
    export_dep,
    export_record,
    in_key_order,
)

# A line longer than this, or a record nested deeper, is refused (with its line number)
# before it is parsed further: Beads records are a few KiB, nested a few levels.
LINE_MAX_BYTES = 8 * 1024 * 1024
RECORD_MAX_DEPTH = 64


class _Bad(Exception):
    """A problem with one line (turned into InvalidInput with the file and line)."""


class _Overrides:
    """Collects what the columns cannot reproduce for one object.

    Starts with the keys of ``obj`` that are not in ``columns`` (kept as ``fields``).
    """

    def __init__(self, obj: dict[str, Any], columns: frozenset[str]) -> None:
        self.fields: dict[str, Any] = {k: v for k, v in obj.items() if k not in columns}
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
        return dumps(data) if data else None

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

    def issue_id(self, obj: dict[str, Any], tid: str) -> None:
        """The ``issue_id`` of a dependency or comment, which is the task's id unless noted."""
        if "issue_id" not in obj:
            self.absent.append("issue_id")
        elif obj["issue_id"] != tid:
            self.set["issue_id"] = obj["issue_id"]

    def items(self, obj: dict[str, Any], key: str, bad: str) -> list[Any]:
        """A list-valued key (``[]`` when absent; an empty list given is remembered)."""
        value = obj.get(key, MISSING)
        if value is MISSING:
            return []
        if not isinstance(value, list):
            raise _Bad(bad)
        if not value:
            self.set[key] = []
        return value


def _fix_order(original: dict[str, Any], exported: dict[str, Any]) -> list[str] | None:
    keys = list(original)
    return None if keys == list(exported) else keys


def _part(obj: Any, what: str, columns: frozenset[str]) -> tuple[dict[str, Any], _Overrides]:
    """A dependency or comment object, and the overrides that start with its unknown keys."""
    if not isinstance(obj, dict):
        raise _Bad(f"{what}must be a JSON object")
    return obj, _Overrides(obj, columns)


_PLAIN_DEP_KEYS = frozenset({DEP_KEY_ORDER[:3], DEP_KEY_ORDER[:4], DEP_KEY_ORDER,
                             (*DEP_KEY_ORDER[:3], DEP_KEY_ORDER[4])})
"""The keys of a dependency object as Beads writes one (in its order): stored as it is."""


def _parse_dep(tid: str, value: Any, index: int) -> DepRow:
    if (value.__class__ is dict and tuple(value) in _PLAIN_DEP_KEYS
            and value["issue_id"] == tid
            and all(v.__class__ is str and v for v in value.values())):
        # the usual case, kept as the general case below keeps it (nothing to override)
        return (value["depends_on_id"], value["type"], value.get("created_at"),
                value.get("created_by"), None)
    what = f"dependency {index + 1}: "
    obj, ov = _part(value, what, DEP_COLUMN_KEYS)
    ov.issue_id(obj, tid)
    depends_on = obj.get("depends_on_id")
    if not isinstance(depends_on, str) or not depends_on:
        raise _Bad(f"{what}depends_on_id must be a non-empty string")
    typ = obj.get("type")
    if not isinstance(typ, str) or not typ:
        raise _Bad(f"{what}type must be a non-empty string")
    created_at = ov.optional(obj, "created_at", what)
    created_by = ov.optional(obj, "created_by", what)
    dep: DepRow = (depends_on, typ, created_at, created_by, ov.to_json())
    return (*dep[:4], ov.to_json(_fix_order(obj, export_dep(tid, dep))))


def _parse_comment(tid: str, value: Any, index: int) -> tuple[Any, CommentRow]:
    """Returns (the original id, the row with that id if it is an integer, else None)."""
    what = f"comment {index + 1}: "
    obj, ov = _part(value, what, COMMENT_COLUMN_KEYS)
    original_id = obj.get("id", MISSING)
    cid: int | None = None
    if original_id is MISSING:
        ov.absent.append("id")
    elif isinstance(original_id, int) and not isinstance(original_id, bool):
        cid = original_id
    else:
        ov.set["id"] = original_id
    ov.issue_id(obj, tid)
    author = ov.text(obj, "author", always=True, what=what)
    text = ov.text(obj, "text", always=True, what=what)
    created_at = ov.text(obj, "created_at", always=True, what=what)
    row: CommentRow = (cid, author, text, created_at, ov.to_json())
    return original_id, (*row[:4], ov.to_json(_fix_order(obj, export_comment(tid, row))))


@dataclass
class Parsed:
    """One record of the file and the parts it is stored as."""

    line: int
    record: dict[str, Any] | None
    """The record as read (None where the reader had no use for it: an import into an empty
    ledger compares it with nothing)."""
    row: Row
    labels: list[str]
    deps: list[DepRow]
    comments: list[CommentRow]
    comment_ids: list[Any]
    """The comments' ids as the record gives them (:data:`MISSING` when it gives none)."""
    digest: bytes | None = None
    """:func:`taskmill.audit_import.import_digest` of the parts, when made already."""


def _parse_record(record: Any, now: str, line: str | None = None) -> Parsed:
    """``record`` read into its parts; ``line``: the text it was read from by orjson (not
    by :mod:`json`), read again by :mod:`json` for the general reading (the two differ
    on integers past 64 bits, which orjson reads as floats; a record read straight holds
    no float)."""
    plain = record.__class__ is dict and _plain_record(record)
    if plain:
        return plain
    return _any_record(record if line is None else _DECODE(line), now)


_PLAIN_KEYS = frozenset({
    "id", "title", "description", "design", "acceptance_criteria", "notes", "status",
    "priority", "issue_type", "assignee", "created_at", "updated_at", "closed_at",
    "close_reason", "external_ref", "labels", "dependencies",
})
_PLAIN_NEEDED = frozenset({"id", "title", "status", "priority", "issue_type", "created_at",
                           "updated_at"})
_PLAIN_LISTS = frozenset({"labels", "dependencies"})


def _plain_record(record: dict[str, Any]) -> Parsed | None:
    """The usual record read straight into its row, or None for any other (read by
    :func:`_any_record`, which says what is wrong with a bad one): keys in Beads' order,
    ``id``, ``title``, ``status``, ``priority``, ``issue_type`` and both times among them;
    every value of a key with a column a non-empty string but the priority (0-4) and the
    labels and dependencies (non-empty lists; the dependencies as Beads writes them); no
    metadata, comments, checks, agent or hints; other keys kept as they are (after the
    known ones). What it makes is checked as every record is, and would export back to the
    same record in the same order (by construction: a property test exports each), or the
    general reading is used. (The workers of a big import parse ~30% faster.)"""
    keys = record.keys()
    if not keys >= _PLAIN_NEEDED:
        return None
    fields: dict[str, Any] | None = None
    for key, value in record.items():
        if key not in _PLAIN_KEYS:
            if key in COLUMN_KEYS:
                return None
            if fields is None:
                fields = {}
            fields[key] = value
        elif key == "priority":
            if value.__class__ is not int or not 0 <= value <= 4:
                return None
        elif key in _PLAIN_LISTS:
            if value.__class__ is not list or not value:
                return None
        elif value.__class__ is not str or not value:
            return None
    if fields is not None and _holds_float(fields):
        return None
    tid, title = record["id"], record["title"]
    labels: list[str] = record.get("labels", [])
    if not tid.strip() or not title.strip() or not all(x.__class__ is str for x in labels) \
            or len(set(labels)) != len(labels):
        return None
    deps: list[DepRow] = []
    for dep in record.get("dependencies", ()):
        if not (dep.__class__ is dict and tuple(dep) in _PLAIN_DEP_KEYS
                and dep["issue_id"] == tid and all(v.__class__ is str and v
                                                   for v in dep.values())):
            return None
        deps.append((dep["depends_on_id"], dep["type"], dep.get("created_at"),
                     dep.get("created_by"), None))
    if len(deps) > 1 and len({d[:2] for d in deps}) != len(deps):
        return None
    get = record.get
    description, design = get("description", ""), get("design", "")
    acceptance, notes = get("acceptance_criteria", ""), get("notes", "")
    assignee, close_reason = get("assignee"), get("close_reason")
    # what _check_fields accepts (a record it refuses is the general reading's to report)
    if not (is_line(title, TITLE_MAX, breaks=True) and is_text(description) and is_text(design)
            and is_text(acceptance) and is_text(notes)
            and (close_reason is None or is_text(close_reason))
            and (assignee is None or is_line(assignee))
            and all(is_line(x, LABEL_MAX, breaks=True) for x in labels)):
        return None
    row = (tid, title, description, design, acceptance, notes, record["status"],
           record["priority"], record["issue_type"], assignee, record["created_at"],
           record["updated_at"], get("closed_at"), close_reason, get("external_ref"),
           None, None, None, None, None if fields is None else dumps({"fields": fields}))
    # exported, it is this record: each value is the record's own, and each key is written
    # (a string or list not empty, a priority); only the order could differ (a test
    # holds export_record(row, ...) equal to the record read straight, key order too)
    if not in_key_order(keys):
        return None
    return Parsed(0, record, row, list(labels), deps, [], [])


def _holds_float(value: Any) -> bool:
    """Whether a float is in ``value`` (a JSON value), at any depth."""
    if value.__class__ is float:
        return True
    if value.__class__ is dict:
        return any(_holds_float(v) for v in value.values())
    if value.__class__ is list:
        return any(_holds_float(v) for v in value)
    return False


def _any_record(record: Any, now: str) -> Parsed:
    if not isinstance(record, dict):
        raise _Bad(f"a record must be a JSON object, not {type(record).__name__}")
    tid = record.get("id")
    if not isinstance(tid, str) or not tid.strip():
        raise _Bad("missing id" if tid is None else "id must be a non-empty string")
    title = record.get("title")
    if not isinstance(title, str) or not title.strip():
        raise _Bad(f"{tid}: missing title" if title is None
                   else f"{tid}: title must be a non-empty string")
    ov = _Overrides(record, COLUMN_KEYS)
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
        priority = record.get("priority", MISSING)
        if priority is MISSING:
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
        metadata = record.get("metadata", MISSING)
        if metadata is not MISSING and not isinstance(metadata, dict):
            ov.set["metadata"] = metadata
        checks = record.get("checks", MISSING)
        if checks is not MISSING and not (
                isinstance(checks, list) and all(isinstance(c, str) and c.strip() for c in checks)):
            ov.set["checks"] = checks
        agent = record.get("agent", MISSING)
        if agent is not MISSING and (not isinstance(agent, str) or not agent):
            ov.set["agent"] = agent
        hints = record.get("hints", MISSING)
        if hints is not MISSING and not isinstance(hints, dict):
            ov.set["hints"] = hints

        labels = ov.items(record, "labels", "labels must be a list of strings")
        if not all(isinstance(x, str) for x in labels):
            raise _Bad("labels must be a list of strings")
        if len(set(labels)) != len(labels):
            raise _Bad("labels must not repeat")
        labels = list(labels)

        deps: list[DepRow] = []
        seen: set[tuple[str, str]] = set()
        for i, obj in enumerate(ov.items(record, "dependencies", "dependencies must be a list")):
            dep = _parse_dep(tid, obj, i)
            if (dep[0], dep[1]) in seen:
                raise _Bad(f"dependency {i + 1}: {tid} -> {dep[0]} ({dep[1]}) is repeated")
            seen.add((dep[0], dep[1]))
            deps.append(dep)

        comments: list[CommentRow] = []
        comment_ids: list[Any] = []
        for i, obj in enumerate(ov.items(record, "comments", "comments must be a list")):
            original_id, crow = _parse_comment(tid, obj, i)
            comment_ids.append(original_id)
            comments.append(crow)
        _check_fields(title, {"description": description, "design": design,
                              "acceptance_criteria": acceptance, "notes": notes,
                              "close_reason": close_reason or ""}, assignee, labels, comments,
                      {"metadata": metadata, "hints": hints})
    except _Bad as exc:
        raise _Bad(f"{tid}: {exc}") from None

    def build(extra: str | None) -> Row:
        return (tid, title, description, design, acceptance, notes, status, priority,
                issue_type, assignee, stamps[0], stamps[1], closed_at, close_reason,
                external_ref, dumps(metadata) if isinstance(metadata, dict) else None,
                dumps(checks) if "checks" not in ov.set and checks is not MISSING else None,
                agent if "agent" not in ov.set and agent is not MISSING else None,
                dumps(hints) if isinstance(hints, dict) else None, extra)

    exported = export_record(build(ov.to_json()), labels, deps, comments)
    if exported != record:
        # a safety net: every case above should keep the record exactly
        raise _Bad(f"{tid}: this record cannot be kept exactly (taskmill bug)")
    row = build(ov.to_json(_fix_order(record, exported)))
    return Parsed(0, record, row, labels, deps, comments, comment_ids)


def _check_fields(title: str, texts: dict[str, str], assignee: str | None, labels: list[str],
                  comments: list[CommentRow], tables: dict[str, Any]) -> None:
    """The ledger's limits (:mod:`taskmill.validation`). Line breaks in titles and labels,
    which Beads records may hold, are let through; other control characters are not."""
    try:
        check.one_line("title", title, max_chars=check.TITLE_MAX, allow_breaks=True)
        for key, value in texts.items():
            check.text(key, value)
        if assignee is not None:
            check.one_line("assignee", assignee)
        check.labels(labels, allow_breaks=True)
        for i, row in enumerate(comments):
            check.text(f"comment {i + 1}", row[2], max_bytes=check.COMMENT_MAX_BYTES)
        for key, value in tables.items():
            if isinstance(value, dict):
                check.table(key, value)
    except InvalidInput as exc:
        raise _Bad(exc.message) from None


# -- reading input ---------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODE = json.JSONDecoder(parse_constant=_reject_constant).decode
"""``json.loads(line, parse_constant=_reject_constant)`` without a new decoder each line."""
_fast_decode: Any = orjson.loads
"""A line's JSON read by orjson: what it reads, :data:`_DECODE` reads the same (JSON's
grammar; no NaN or Infinity; a key given twice keeps its first place and last value), but
for an integer past 64 bits (a float here; :func:`_parse_record` leaves a record with a
float to the general reading, which reads the line again with :mod:`json`). What it
refuses (a lone surrogate's escape, nesting past 1,024 levels, ...) is read by json."""


class Source:
    """The lines of a Beads JSONL file (read as they are needed, not all at once) or of an
    iterable of lines, and the SHA-256 of their bytes once they have all been read."""

    def __init__(self, path_or_lines: Path | str | os.PathLike[str] | Iterable[str]) -> None:
        self._hash = hashlib.sha256()
        self.bytes_read = 0
        """Of the file, so far (for lines given: their characters)."""
        if isinstance(path_or_lines, (str, os.PathLike)):
            self.path: Path | None = Path(path_or_lines)
            self.name = str(self.path)
            self._lines: Iterable[str] | None = None
        else:
            self.path = None
            self.name = "<input>"
            self._lines = path_or_lines

    def size(self) -> int | None:
        """The file's size in bytes (None for lines given, or a file that cannot say)."""
        try:
            return self.path.stat().st_size if self.path is not None else None
        except OSError:
            return None

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def __iter__(self) -> Iterator[str]:
        if self._lines is not None:
            for line in self._lines:
                self._hash.update(line.encode("utf-8", errors="surrogatepass"))
                self.bytes_read += len(line)
                yield line
            return
        for number, raw in self.raw_lines():
            yield text_of(self.name, number, raw)

    def _open(self) -> BinaryIO:
        assert self.path is not None
        try:
            return self.path.open("rb")
        except FileNotFoundError:
            raise InvalidInput(f"no such file: {self.name}") from None
        except OSError as exc:
            raise InvalidInput(f"cannot read {self.name}: {exc.strerror or exc}") from None

    def raw_chunks(self, size: int) -> Iterator[tuple[int, bytes]]:
        """The file in pieces of whole lines (what ``size`` bytes read at a time end with a
        line), each with the number of its first line: the lines :meth:`raw_lines` gives,
        a leading byte order mark left out, hashed as they are read. Only for a file."""
        with self._open() as handle:
            number = 1
            carry = b""
            block = handle.read(max(size, 3))
            if block.startswith(b"\xef\xbb\xbf"):
                self._hash.update(block[:3])
                self.bytes_read += 3
                block = block[3:] or handle.read(size)
            while block:
                self._hash.update(block)
                self.bytes_read += len(block)
                data = carry + block if carry else block
                cut = data.rfind(b"\n") + 1
                if cut:
                    chunk, carry = data[:cut], data[cut:]
                    yield number, chunk
                    number += chunk.count(b"\n")
                else:  # (a line longer than what was read)
                    carry = data
                block = handle.read(size)
            if carry:
                yield number, carry

    def raw_lines(self) -> Iterator[tuple[int, bytes]]:
        """The file's lines as bytes, numbered from 1 (a leading byte order mark left out);
        each hashed as it is read. Only for a file."""
        with self._open() as handle:
            for number, raw in enumerate(handle, start=1):
                self._hash.update(raw)
                self.bytes_read += len(raw)
                if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                yield number, raw


def text_of(name: str, number: int, raw: bytes) -> str:
    """A line of the file ``name`` as text; raises InvalidInput when it is not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{name}, line {number}: not UTF-8 text"
                           f" ({exc.reason} at byte {exc.start} of the line)",
                           hint="nothing was imported") from None


def iter_beads(source: Source, *, now: str = "", seen: Seen | None = None
               ) -> Iterator[Parsed]:
    """Parse and check each line as it is read; raises InvalidInput naming the first bad
    line (the caller undoes what it did with the lines before). ``seen``: takes each
    record's id (a new one made when not given)."""
    name = source.name
    if seen is None:
        seen = Seen(name)
    for number, line in enumerate(source, start=1):
        item = parse_line(name, number, line, now)
        if item is not None:
            seen.add(item)
            yield item


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
"""A JSON escape of half a surrogate pair (an emoji's pair is two of them, together)."""


def _lone_surrogate(record: Any) -> str | None:
    """The first half of a surrogate pair standing alone in ``record``'s strings, if any."""
    try:
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        return str(exc.object[exc.start])
    return None


class Seen:
    """The ids of a file's records as they are read, with the line of each (an id given
    twice is refused), and the dependencies on ids not read yet: for an import into an
    empty ledger, how many dependencies name no task and whether one can close a cycle
    are known from these, without reading the whole ledger again (a 1M import: ~2.7 s)."""

    AHEAD_MAX = 200_000
    """Dependencies on ids not read yet kept at most (a file ordered the other way round
    holds one for each of its dependencies); past it, nothing is known of them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: dict[str, int] = {}
        self.ahead: list[tuple[str, bool]] | None = []
        """(the id named, whether the dependency gates) of each dependency on an id not
        read before its record, or None past :data:`AHEAD_MAX`."""

    def add(self, item: Parsed) -> None:
        """Note the line of ``item``'s id; raises InvalidInput when an earlier line had it."""
        self.take(item.row[0], item.line, item.deps)

    def take(self, tid: str, line: int, deps: Sequence[Sequence[Any]]) -> None:
        """:meth:`add` of the record of id ``tid`` on ``line``, with these dependencies
        ((depends on, type, ...) each)."""
        lines = self.lines
        if tid in lines:
            raise InvalidInput(f"{self.name}, line {line}: id {tid} already appeared on"
                               f" line {lines[tid]}", hint="nothing was imported")
        ahead = self.ahead
        if ahead is not None and deps:
            for dep in deps:
                if dep[0] not in lines:  # (its own id too: not noted yet)
                    ahead.append((dep[0], dep[1] in GATING_TYPES))
            if len(ahead) > self.AHEAD_MAX:
                self.ahead = None
        lines[tid] = line

    def close(self) -> Read:
        """What was read, once the file is: the ids it leaves kept in one string, not a
        dict of a million of them (a 1M import's peak memory is in what follows)."""
        lines, ahead = self.lines, self.ahead
        self.lines, self.ahead = {}, []
        joined = "\0".join(lines)
        return Read(
            count=len(lines),
            dangling=None if ahead is None else sum(1 for t, _ in ahead if t not in lines),
            may_cycle=ahead is None or any(gates and t in lines for t, gates in ahead),
            _ids=joined if joined.count("\0") == max(len(lines) - 1, 0) else None)


@dataclass(frozen=True)
class Read:
    """What :meth:`Seen.close` says of a file read."""

    count: int
    """Records."""
    dangling: int | None
    """How many dependencies name an id no record of the file has (None: not known)."""
    may_cycle: bool
    """Whether a gating dependency names its own record or one after it (True when not
    known): without one, the file's dependencies make no cycle (each names an earlier
    record)."""
    _ids: str | None

    def ids(self) -> list[str] | None:
        """The records' ids in the file's order (None: an id held the NUL they are kept
        apart by)."""
        if self._ids is None:
            return None
        return self._ids.split("\0") if self.count else []


def parse_line(name: str, number: int, line: str, now: str) -> Parsed | None:
    """Line ``number`` of the file ``name`` parsed and checked (None for a blank line);
    raises InvalidInput naming the line."""
    if not line.strip():
        return None
    # a character is at most 4 bytes of UTF-8: most lines need no counting
    size = (len(line.encode("utf-8", errors="surrogatepass"))
            if len(line) * 4 > LINE_MAX_BYTES else 0)
    if size > LINE_MAX_BYTES:
        raise InvalidInput(f"{name}, line {number}: the line is {size / 2**20:.1f} MiB; a"
                           f" record may be at most {LINE_MAX_BYTES // 2**20} MiB",
                           hint="nothing was imported")
    fast = False
    try:
        if line.startswith("\ufeff"):
            record = json.loads(line, parse_constant=_reject_constant)
        else:
            try:  # (several times faster; what it refuses, json reads or refuses)
                record = _fast_decode(line)
                fast = True
            except ValueError:
                record = _DECODE(line)
    except RecursionError:
        record = None
        deep = True
    except (json.JSONDecodeError, ValueError) as exc:
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        col = f", column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise InvalidInput(f"{name}, line {number}{col}: bad JSON: {msg}",
                           hint="nothing was imported") from None
    else:  # no deeper than the brackets it holds
        deep = (line.count("{") + line.count("[") > RECORD_MAX_DEPTH
                and check.json_depth_exceeds(record, RECORD_MAX_DEPTH))
    if deep:
        raise InvalidInput(f"{name}, line {number}: the record nests more than"
                           f" {RECORD_MAX_DEPTH} levels deep", hint="nothing was imported")
    if "\\u" in line and _SURROGATE_ESCAPE.search(line):
        lone = _lone_surrogate(record)
        if lone is not None:
            raise InvalidInput(f"{name}, line {number}: a string holds \\u{ord(lone):04x}, half"
                               " of a UTF-16 surrogate pair without its other half: not text"
                               " the ledger can store", hint="nothing was imported")
    try:
        item = _parse_record(record, now, line if fast else None)
    except _Bad as exc:
        raise InvalidInput(f"{name}, line {number}: {exc}",
                           hint="nothing was imported") from None
    item.line = number
    return item


def parse_beads(path_or_lines: Path | str | os.PathLike[str] | Iterable[str],
                *, now: str = "") -> tuple[str, list[Parsed]]:
    """Parse and check every line; raises InvalidInput naming the first bad line."""
    source = Source(path_or_lines)
    return source.name, list(iter_beads(source, now=now))
