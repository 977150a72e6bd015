"""The ledger as the files of a synced commit, and back.

One file per task, ``tasks/<id>.json``: the task's Beads record (the format ``taskmill
export`` writes, with its labels, dependencies and comments), indented, one field a line,
so git's own diffs and merges of it read well. Its audit trail is ``events/<id>.jsonl``, one
event a line (sorted by time), and the events of no task are in ``ledger-events.jsonl``.
``ledger.json`` says the format and the id prefix. Each event keeps the hash it had in the
ledger that wrote it: that names it across clones, so the trails of two clones merge as a
union.

Events a sync writes are not exported as new events: an event brought in from another clone
is recorded here as a ``synced`` event wrapping the original (exported as that original),
and the ``imported`` events of a sync's own import (signed ``sync:<remote>``) say only that
this ledger took the merge in. Conflicts a sync reports (``sync_conflict``) are exported.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from ..errors import InvalidInput
from ..json_text import dumps_indented, dumps_sorted_compact
from ..ledger import Ledger
from ..model import Event
from .gitstore import blob_sha

FORMAT = 1
META = "ledger.json"
LEDGER_EVENTS = "ledger-events.jsonl"
SYNC_ACTOR_PREFIX = "sync:"
SYNCED = "synced"
SYNC_CONFLICT = "sync_conflict"
SYNC_DONE = "sync"


def _safe(tid: str) -> str:
    """A task id as a file name (ids are normally safe as they are)."""
    name = quote(tid, safe="-_.~@+")
    return "%2E" + name[1:] if name.startswith(".") else name


def task_path(tid: str) -> str:
    return f"tasks/{_safe(tid)}.json"


def events_path(tid: str | None) -> str:
    return LEDGER_EVENTS if tid is None else f"events/{_safe(tid)}.jsonl"


def task_id_of(path: str) -> str | None:
    """The task id of a ``tasks/`` or ``events/`` path (None for other files)."""
    for folder, suffix in (("tasks/", ".json"), ("events/", ".jsonl")):
        if path.startswith(folder) and path.endswith(suffix):
            return unquote(path[len(folder):-len(suffix)])
    return None


def encode_record(record: Mapping[str, Any]) -> bytes:
    """The record indented, one field a line (``json.dumps(indent=2)``'s bytes)."""
    return dumps_indented(record) + b"\n"


def encode_events(events: list[dict[str, Any]]) -> bytes:
    """One event a line, keys sorted, compact."""
    return b"".join(dumps_sorted_compact(e) + b"\n" for e in sort_events(events))


def sort_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    unique = {e["hash"]: e for e in events}
    return sorted(unique.values(), key=lambda e: (str(e.get("ts")), str(e["hash"])))


def exported_event(event: Event) -> dict[str, Any] | None:
    """How a ledger event appears in a synced commit (None: it is this ledger's own
    bookkeeping of a sync)."""
    inner = event.data.get("event")
    if event.kind == SYNCED and isinstance(inner, dict) and "hash" in inner:
        return inner
    if event.actor.startswith(SYNC_ACTOR_PREFIX) and event.kind != SYNC_CONFLICT:
        return None
    return {"hash": event.hash, "ts": event.ts, "actor": event.actor, "task": event.task_id,
            "kind": event.kind, "data": event.data}


@dataclass
class Snapshot:
    """A ledger's tasks (as Beads records) and audit events, by task id: the files of a
    synced commit read back (:func:`parse_files`)."""

    prefix: str
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: dict[str | None, list[dict[str, Any]]] = field(default_factory=dict)


def encode_meta(prefix: str) -> bytes:
    return (json.dumps({"format": FORMAT, "prefix": prefix}, indent=2) + "\n").encode()


@dataclass
class Taken:
    """The ledger's state as the files of a synced commit, made a file at a time and not
    held: each file's blob id, the bytes of only those git does not have yet (a sync that
    changed a few tasks holds a few files, not the ledger), and every event's hash."""

    prefix: str
    shas: dict[str, str] = field(default_factory=dict)
    """path -> blob id, for every file."""
    new: dict[str, bytes] = field(default_factory=dict)
    """blob id -> content, for the files whose blob is not in the ``existing`` given."""
    event_hashes: set[str] = field(default_factory=set)
    sink: Callable[[bytes], None] | None = None
    """Where the new files' bytes go instead of :attr:`new` (written into git as they are
    made: :meth:`taskmill.sync.gitstore.Git.blob_sink`)."""

    def add(self, path: str, content: bytes, existing: Container[str]) -> None:
        sha = blob_sha(content)
        self.shas[path] = sha
        if sha not in existing:
            if self.sink is not None:
                self.sink(content)
            else:
                self.new[sha] = content


def take(ledger: Ledger, existing: Container[str] = frozenset(),
         sink: Callable[[bytes], None] | None = None) -> Taken:
    """The ledger's state now (every task, tombstones too, and every event). ``existing``:
    blob ids git has (whose bytes are not kept); ``sink``: where the bytes of the others
    go (else kept in :attr:`Taken.new`)."""
    from ..beads.exporter import iter_beads_records

    taken = Taken(prefix=ledger.prefix, sink=sink)
    taken.add(META, encode_meta(ledger.prefix), existing)
    for record in iter_beads_records(ledger, include_tombstones=True, order="id"):
        taken.add(task_path(str(record["id"])), encode_record(record), existing)
    grouped: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for event in ledger.events():
        out = exported_event(event)
        if out is not None:
            grouped[out.get("task")].append(out)
    for owner, events in grouped.items():
        taken.add(events_path(owner), encode_events(events), existing)
        taken.event_hashes.update(e["hash"] for e in events)
    return taken


def event_lines(raw: bytes) -> list[dict[str, Any]]:
    """The events of an ``events/`` file (ValueError: not one event a line)."""
    events = [json.loads(line) for line in raw.decode().splitlines() if line]
    if not all(isinstance(e, dict) and "hash" in e for e in events):
        raise ValueError("an event without a hash")
    return events


def parse_files(files: Mapping[str, bytes], *, where: str) -> Snapshot:
    """A snapshot from a synced commit's files (``where`` names the commit in errors)."""
    meta_raw = files.get(META)
    if meta_raw is None:
        raise InvalidInput(f"{where} is not a synced ledger (it has no {META})")
    try:
        meta = json.loads(meta_raw)
    except ValueError as exc:
        raise InvalidInput(f"{where}: {META} is not JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InvalidInput(f"{where}: synced ledger format {meta.get('format')!r} is not"
                           f" {FORMAT}", hint="update taskmill on this machine")
    snap = Snapshot(prefix=str(meta.get("prefix", "")))
    for path, raw in files.items():
        try:
            if path.startswith("tasks/"):
                record = json.loads(raw)
                if not isinstance(record, dict) or not isinstance(record.get("id"), str):
                    raise ValueError("not a task record with an id")
                snap.records[record["id"]] = record
            elif path.startswith("events/") or path == LEDGER_EVENTS:
                snap.events[None if path == LEDGER_EVENTS else task_id_of(path)] = (
                    event_lines(raw))
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"{where}: {path} is damaged: {exc}",
                               hint="nothing was imported") from None
    return snap
