"""The audit trail: an append-only, hash-chained log of every change.

Each event's hash is ``sha256(prev_hash + canonical JSON of the event)``; the store keeps the
head of the chain (its hash and length) in the same transaction (the SQLite store's appender
is :class:`taskmill.ledger.sqlite.events.AuditLog`). ``verify``
recomputes the chain and names the first event that was altered or removed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .lean_rules import GENESIS as GENESIS
from .lean_rules import canonical as canonical
from .lean_rules import chain_hash as chain_hash
from .model import Event


@dataclass
class VerifyReport:
    ok: bool
    events: int
    head: str
    problems: list[str] = field(default_factory=list)
    first_bad_seq: int | None = None
    warnings: list[str] = field(default_factory=list)
    """Not tampering, but not proven either (events not anchored yet)."""
    proven: list[str] = field(default_factory=list)
    """What the checks could prove, in words."""
    unproven: list[str] = field(default_factory=list)
    """What they could not prove, and why."""
    replay: list[dict[str, Any]] = field(default_factory=list)
    """Each task field whose table value differs from its events' (see audit_replay)."""
    anchors: dict[str, Any] | None = None
    """The anchors checked (see audit_verify); None when none could be read."""

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events": self.events,
            "head": self.head,
            "first_bad_seq": self.first_bad_seq,
            "problems": self.problems,
            "warnings": self.warnings,
            "proven": self.proven,
            "unproven": self.unproven,
            "replay": self.replay,
            "anchors": self.anchors,
        }


EventHook = Callable[[str, str, str | None, str, str], None]
"""Called with (ts, actor, task_id, kind, data) of every event, in order."""


def verify(rows: Iterable[Sequence[Any]], head: tuple[int, str], *,
           on_event: EventHook | None = None,
           hashes_at: dict[int, str | None] | None = None) -> VerifyReport:
    """Recompute the chain of ``rows`` (events as stored, by seq) against the recorded
    ``head`` (seq, hash); the report names the first event altered or removed.

    ``on_event`` sees every event, also after a break; ``hashes_at`` (seq -> None) is filled
    with the stored hash of each of its events that exists."""
    head_seq, head_hash = head
    prev = GENESIS
    expected_seq = 1
    count = 0
    failure: tuple[list[str], int] | None = None
    for seq, ts, actor, task_id, kind, data, prev_hash, digest in rows:
        count += 1
        if on_event is not None:
            on_event(ts, actor, task_id, kind, data)
        if hashes_at is not None and seq in hashes_at:
            hashes_at[seq] = digest
        if failure is not None:
            continue
        if seq != expected_seq:
            missing = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq}..{seq - 1}"
            failure = [f"event {missing} was removed (the chain jumps to {seq})"], expected_seq
        elif prev_hash != prev:
            failure = [f"event {seq}: its link to event {seq - 1} does not match"
                       " (an earlier event was altered or removed)"], seq
        elif chain_hash(prev, canonical(seq, ts, actor, task_id, kind, data)) != digest:
            failure = [f"event {seq} ({kind} {task_id or ''}) was altered:"
                       " its content does not match its hash"], seq
        else:
            prev = digest
            expected_seq += 1
    if failure is not None:
        return VerifyReport(False, count, head_hash, failure[0], failure[1])
    last = expected_seq - 1
    if last != head_seq or prev != head_hash:
        if last < head_seq:
            problem = f"event {last + 1}..{head_seq} was removed from the end of the log"
            return VerifyReport(False, count, head_hash, [problem], last + 1)
        problem = f"the log's head does not match the recorded head (seq {head_seq})"
        return VerifyReport(False, count, head_hash, [problem], head_seq + 1)
    return VerifyReport(True, count, head_hash)


def event_from_row(row: Sequence[Any]) -> Event:
    seq, ts, actor, task_id, kind, data, prev_hash, digest = row
    return Event(seq, ts, actor, task_id, kind, json.loads(data), prev_hash, digest)
