"""Findings in the ledger: every review, every finding and its fate, as audit events.

Nothing here needs a table of its own: a review is a ``review_finished`` event (on the
task, or on no task for an ambient review) listing its findings, each with a stable id;
a fate is a ``finding_resolved`` or ``finding_dismissed`` event; non-blocking findings are
also left on the task as review comments (author ``review:<reviewer>``). :func:`findings`
folds those events into :class:`FindingRecord` s.

Fates:

* **open**: reported and neither resolved nor dismissed;
* **resolved**: a later review of the same change no longer reports it, and the lines it
  pointed at changed since it was reported (:func:`record_review` decides this);
* **dismissed**: a person (CLI, dashboard) or the working agent (MCP, with a reason)
  rejected it (:func:`dismiss`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import InvalidInput, NotFound
from ..ledger import Ledger
from ..model import Event
from .findings import BlockAt, Finding

REVIEW_FINISHED = "review_finished"
FINDING_RESOLVED = "finding_resolved"
FINDING_DISMISSED = "finding_dismissed"
THRESHOLD_CHANGED = "review_threshold_changed"
KINDS = (REVIEW_FINISHED, FINDING_RESOLVED, FINDING_DISMISSED)
REVIEW_AUTHOR = "review:"
"""Comment authors of review comments: ``review:<reviewer>``."""

Fate = Literal["open", "resolved", "dismissed"]
Hunks = Mapping[str, Sequence[tuple[int, int]]]
"""Per file, the line ranges (inclusive, in the older version) a change touched; a file
deleted or rewritten is ``[(1, 10**9)]``."""


@dataclass
class FindingRecord:
    id: str
    subject: str
    """The task's id, or the revision range of an ambient review."""
    task_id: str | None
    reviewer: str
    repo: str
    finding: Finding
    commit: str | None
    """The commit it was last reported at (its lines are that version's)."""
    blocking: bool
    quiet: bool
    """Below the confidence threshold: recorded, not shown, not counted in the hit rate."""
    reported_at: str
    fate: Fate = "open"
    reason: str = ""
    decided_by: str = ""
    decided_at: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "subject": self.subject, "task_id": self.task_id,
                "reviewer": self.reviewer, "repo": self.repo, **self.finding.model_dump(),
                "commit": self.commit, "blocking": self.blocking, "quiet": self.quiet,
                "reported_at": self.reported_at, "fate": self.fate, "reason": self.reason,
                "decided_by": self.decided_by, "decided_at": self.decided_at}

    def line(self) -> str:
        f = self.finding
        return (f"[{self.id}] {f.severity} ({f.confidence:.2f}) {f.where()}: {f.title}: "
                f"{f.explanation}" + (f" Suggested fix: {f.suggested_fix}"
                                      if f.suggested_fix else ""))


def _fold(events: Iterable[Event]) -> dict[str, FindingRecord]:
    found: dict[str, FindingRecord] = {}
    for event in events:
        data = event.data
        if event.kind == REVIEW_FINISHED:
            for item in data.get("findings", []):
                finding = Finding.model_validate(
                    {k: item[k] for k in Finding.model_fields if k in item})
                known = found.get(item["id"])
                if known is not None:  # reported again: its lines are this commit's
                    known.finding, known.commit = finding, data.get("commit")
                    known.blocking, known.quiet = bool(item.get("blocking")), bool(item.get("quiet"))
                    continue
                found[item["id"]] = FindingRecord(
                    id=item["id"], subject=str(data.get("subject") or event.task_id or ""),
                    task_id=event.task_id, reviewer=str(data.get("reviewer", "")),
                    repo=str(data.get("repo", "")), finding=finding,
                    commit=data.get("commit"), blocking=bool(item.get("blocking")),
                    quiet=bool(item.get("quiet")), reported_at=event.ts)
        else:
            record = found.get(str(data.get("finding")))
            if record is not None and record.fate == "open":
                record.fate = "resolved" if event.kind == FINDING_RESOLVED else "dismissed"
                record.reason = str(data.get("reason", ""))
                record.decided_by, record.decided_at = event.actor, event.ts
    return found


def findings(ledger: Ledger, *, task_id: str | None = None,
             since: str | None = None) -> list[FindingRecord]:
    """The findings (of ``task_id``; reported at or after ``since``), oldest first."""
    records = _fold(ledger.events_of_kinds(KINDS, task_id=task_id))
    return [r for r in records.values() if since is None or r.reported_at >= since]


def _same(old: FindingRecord, new: Finding) -> bool:
    """Whether ``new`` is ``old`` reported again."""
    if old.finding.file != new.file:
        return False
    if old.finding.title.strip().casefold() == new.title.strip().casefold():
        return True
    return (old.finding.severity == new.severity
            and new.line_start <= old.finding.line_end + 3
            and old.finding.line_start <= new.line_end + 3)


def _touched(record: FindingRecord, hunks: Hunks) -> bool:
    f = record.finding
    return any(start <= f.line_end and f.line_start <= end
               for start, end in hunks.get(f.file, ()))


def finding_id(subject: str, commit: str | None, index: int, finding: Finding) -> str:
    key = f"{subject}\0{commit}\0{index}\0{finding.file}\0{finding.title}"
    return "F-" + hashlib.sha256(key.encode()).hexdigest()[:8]


@dataclass
class Verdict:
    """What one review decided."""

    blocking: list[FindingRecord] = field(default_factory=list)
    """At or above ``block_at``: the task goes back to its agent with these."""
    comments: list[FindingRecord] = field(default_factory=list)
    """Shown, not blocking: left on the task as review comments (new ones only)."""
    quiet: list[FindingRecord] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    failed: str | None = None

    def prompt_text(self) -> str:
        """The findings as the next turn's prompt shows them."""
        lines = ["The reviewer found these problems; fix them (or, if one is wrong, dismiss "
                 "it with the taskmill MCP tool dismiss_finding, giving your reason):"]
        return "\n".join([*lines, *(f"- {r.line()}" for r in self.blocking)])


def record_review(ledger: Ledger, *, subject: str, task_id: str | None, reviewer: str,
                  repo: str, commit: str | None, found: Sequence[Finding], block_at: BlockAt,
                  min_confidence: float, changed_since: Callable[[str], Hunks],
                  actor: str, round: int = 1, failed: str | None = None,
                  extra: Mapping[str, Any] | None = None) -> Verdict:
    """Record one review of ``subject`` at ``commit``: its findings (matched to the ones
    still open, which keep their ids), the open ones it resolves (no longer reported and
    their lines changed: ``changed_since(old_commit)`` gives the hunks from there to
    ``commit``), the review comments. All in one transaction."""
    verdict = Verdict(failed=failed)
    now = ledger.now()
    earlier = [r for r in _fold(ledger.events_of_kinds(KINDS, task_id=task_id)).values()
               if r.subject == subject and r.fate != "resolved"]
    previous = {r.id: r for r in earlier if r.fate == "open"}
    dismissed = [r for r in earlier if r.fate == "dismissed"]
    items: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, finding in enumerate(found):
        again = next((r for r in previous.values() if r.id not in seen and _same(r, finding)),
                     None)
        rejected = None if again is not None else next(
            (r for r in dismissed if r.id not in seen and _same(r, finding)), None)
        again = again or rejected
        fid = again.id if again is not None else finding_id(subject, commit, index, finding)
        seen.add(fid)
        # one a person or the agent dismissed stays dismissed: reported again, it is quiet
        quiet = finding.confidence < min_confidence or rejected is not None
        blocking = not quiet and block_at.blocks(finding, min_confidence=min_confidence)
        record = FindingRecord(id=fid, subject=subject, task_id=task_id, reviewer=reviewer,
                               repo=repo, finding=finding, commit=commit, blocking=blocking,
                               quiet=quiet, reported_at=now)
        items.append({"id": fid, **finding.model_dump(), "blocking": blocking, "quiet": quiet,
                      "again": again is not None})
        if blocking:
            verdict.blocking.append(record)
        elif quiet:
            verdict.quiet.append(record)
        elif again is None:
            verdict.comments.append(record)
    hunks: dict[str | None, Hunks] = {}
    if failed is None:
        for record in previous.values():
            if record.id in seen or record.commit is None or commit is None:
                continue
            if record.commit not in hunks:
                hunks[record.commit] = changed_since(record.commit)
            if _touched(record, hunks[record.commit]):
                verdict.resolved.append(record.id)
    with ledger.transaction():
        ledger.record(REVIEW_FINISHED, task_id, {
            "subject": subject, "reviewer": reviewer, "repo": repo, "commit": commit,
            "round": round, "failed": failed, "findings": items,
            "resolved": verdict.resolved, **(extra or {})}, actor=actor, ts=now)
        for fid in verdict.resolved:
            ledger.record(FINDING_RESOLVED, task_id, {
                "finding": fid, "commit": commit, "reason": "its lines changed and the "
                "re-review no longer reports it"}, actor=actor, ts=now)
        if task_id is not None:
            for record in verdict.comments:
                ledger.comment(task_id, record.line(), author=f"{REVIEW_AUTHOR}{reviewer}")
    return verdict


def dismiss(ledger: Ledger, finding: str, *, reason: str, actor: str) -> FindingRecord:
    """Dismiss an open finding (a person or the working agent rejects it)."""
    records = _fold(ledger.events_of_kinds(KINDS))
    record = records.get(finding)
    if record is None:
        raise NotFound(f"no finding {finding!r}",
                       hint="`taskmill review list` shows the findings and their ids")
    if record.fate != "open":
        raise InvalidInput(f"finding {finding} is already {record.fate}"
                           + (f" ({record.reason})" if record.reason else ""),
                           hint="only open findings can be dismissed")
    with ledger.transaction():
        ledger.record(FINDING_DISMISSED, record.task_id, {
            "finding": finding, "reason": reason, "reviewer": record.reviewer,
            "severity": record.finding.severity}, actor=actor)
    record.fate, record.reason, record.decided_by = "dismissed", reason, actor
    return record
