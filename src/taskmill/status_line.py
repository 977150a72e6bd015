"""A task's status in one plain sentence, for a person who does not read the audit trail:
"working, attempt 2 of 5: the tests for X failed", "waiting for approval", "landed in
abc123".

:func:`status_line` computes it from the task (with its attempts, as ``Ledger.show`` gives
them) and a few facts from outside the ledger (the run's iteration limit, whether the task
is in the merge queue or waits for a person's approval).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from .kinds import UNCOUNTED, AttemptOutcome
from .model import Task

_LANDED = re.compile(r"^landed (?:in |at )?([0-9a-f]{7,40})\b")
_SATISFIED = re.compile(r"^already satisfied at ([0-9a-f]{7,40})\b")
SHORT_SHA = 7
DEFAULT_MAX_ITERATIONS = 5
"""``[run] max_iterations`` when not set (as :class:`taskmill.mill.settings.RunSettings`)."""


def _checks_failed(attempt: Mapping[str, Any]) -> str:
    """What went wrong in an attempt, in a few words."""
    detail = attempt.get("detail") or {}
    outcome = attempt.get("outcome")
    if outcome == AttemptOutcome.TIMEOUT:
        return "the agent ran out of time"
    if outcome == AttemptOutcome.TURN_FAILED:
        return "the agent's turn failed"
    if outcome == AttemptOutcome.ERROR:
        return "taskmill hit an error (not the task's fault)"
    if outcome == AttemptOutcome.REJECTED_CONFLICT:
        return "it conflicted with newer work on the branch"
    if outcome == AttemptOutcome.REJECTED_CHECKS:
        return "the project's checks failed once merged"
    checks = detail.get("checks")
    if isinstance(checks, list):
        failed = [c.get("command") for c in checks
                  if isinstance(c, dict) and not c.get("ok", True)]
        if failed:
            first = str(failed[0])
            if len(first) > 60:
                first = first[:57] + "..."
            more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            timed_out = any(isinstance(c, dict) and c.get("timed_out") for c in checks
                            if not c.get("ok", True))
            verb = "ran out of time" if timed_out else "failed"
            return f"the check `{first}`{more} {verb}"
    kind = detail.get("failure_kind")
    if kind:
        return f"it failed ({str(kind).replace('_', ' ')})"
    return "its checks failed"


def status_line(task: Task, *, max_iterations: int = DEFAULT_MAX_ITERATIONS, queued: bool = False,
                awaiting_approval: bool = False, running_mill: bool = True,
                attempts: Sequence[Mapping[str, Any]] | None = None) -> str:
    """The sentence for ``task`` (``attempts``: its attempts, oldest first; default the
    task's own). ``queued``: its branch is in the merge queue; ``awaiting_approval``: a
    person has to approve it before it lands; ``running_mill``: some mill is running (an
    in-progress task of a stopped mill is "interrupted")."""
    tries = list(task.attempts if attempts is None else attempts)
    status = task.status
    if status == "tombstone":
        return "deleted"
    if status == "closed":
        reason = (task.close_reason or "").strip()
        match = _LANDED.match(reason)
        if match:
            return f"landed in {match.group(1)[:SHORT_SHA]}"
        match = _SATISFIED.match(reason)
        if match:
            return f"done: nothing to change (already in {match.group(1)[:SHORT_SHA]})"
        return f"closed: {reason}" if reason else "closed"
    if awaiting_approval:
        return "waiting for approval"
    if status == "blocked":
        last = _last_finished(tries)
        why = f": {_checks_failed(last)}" if last and last.get("outcome") != "passed" else ""
        return f"stopped, needs a person{why}"
    if status == "deferred":
        return "deferred"
    if queued:
        return "passed its checks, landing"
    lap = max((int(a.get("lap") or 1) for a in tries), default=1)
    in_lap = [a for a in tries if int(a.get("lap") or 1) == lap]
    counted = [a for a in in_lap if a.get("outcome") not in UNCOUNTED]
    if status == "in_progress":
        if task.interrupted or not running_mill:
            return "interrupted: the mill stopped; it resumes when the mill runs again"
        running = next((a for a in reversed(in_lap) if a.get("outcome") is None), None)
        number = len(counted) if running is not None else len(counted) + 1
        number = max(number, 1)
        head = f"working, attempt {number} of {max_iterations}"
        previous = [a for a in counted if a.get("outcome") is not None]
        if previous and previous[-1].get("outcome") == AttemptOutcome.PASSED:
            return f"{head}: checks passed, landing"
        if previous:
            return f"{head}: {_checks_failed(previous[-1])}"
        return head
    # open
    if not task.ready:
        return "waiting for other tasks to finish"
    if tries:
        return "waiting for the mill (worked before, reopened)"
    return "waiting for the mill to start it"


def _last_finished(tries: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    return next((a for a in reversed(tries) if a.get("outcome") is not None), None)
