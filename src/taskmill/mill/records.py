"""The ``record`` activities of a task's workflow: what the mill writes to the ledger and says
on the event bus about one task (attempts, rejections, closing, blocking, interruptions).

Each function here is one effect, with no decision in it: :class:`~.policy.TaskPolicy`
decides, the worker (:mod:`.worker`) calls these to record what was decided.
"""

from __future__ import annotations

import contextlib
import re
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..agents.base import TurnResult
from ..agents.common import invalid_usage_message
from ..clock import Clock, iso
from ..errors import Conflict
from ..kinds import REJECTED, AttemptOutcome, LedgerEvent, MillEvent
from ..ledger import Ledger
from .checks import tail
from .events import EventBus
from .land import LandResult
from .policy import Failure, History

# "CONFLICT (content): Merge conflict in a.py", "CONFLICT (modify/delete): a.py deleted in..."
_CONFLICT_PATH = re.compile(r"^CONFLICT \([^)]*\): (?:Merge conflict in )?(\S+)", re.MULTILINE)


def rejection_summary(kind: str, detail: str) -> str:
    """One line (a few for red checks) saying why the merge queue rejected a branch."""
    if kind == "conflict":
        paths = list(dict.fromkeys(_CONFLICT_PATH.findall(detail)))
        if paths:
            more = f" and {len(paths) - 5} more" if len(paths) > 5 else ""
            return "conflict in " + ", ".join(paths[:5]) + more
        first = detail.strip().splitlines()[0] if detail.strip() else "a conflict"
        return f"conflict: {first[:200]}"
    return "the project checks failed on the merged result:\n" + tail(detail.strip(), 1500)


def unchecked_reason(task_id: str) -> str:
    """Why a task without checks, in a project without checks, is not worked."""
    return (f"{task_id} has no checks and the project has none ([checks] commands), so "
            "nothing would verify its work: it is not run. Give it checks (taskmill update "
            f"{task_id} --check 'COMMAND'), set [checks] commands in .taskmill/config.toml, "
            "or opt in to landing it unverified with `taskmill run --allow-unchecked` or "
            "[run] allow_unchecked = true")


@dataclass
class Attempt:
    """The attempt in flight: started before its turn, finished by :meth:`TaskRecords.finish`."""

    id: int
    iteration: int
    agent: str
    log_path: Path
    result: TurnResult | None = None
    commit: str | None = None
    """The commit it made on the task's branch (None: none)."""
    head: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    """What it records besides its outcome (what the turn did, the checks' results)."""
    usage_detail: dict[str, Any] = field(default_factory=dict)
    """The proxy's count of the turn's usage and the agent's own figures."""


class TaskRecords:
    """Ledger records and events about one task in one run."""

    def __init__(self, ledger: Ledger, bus: EventBus, clock: Clock, *, task_id: str,
                 lap: int, run_id: str) -> None:
        self.ledger = ledger
        self.bus = bus
        self.clock = clock
        self.task_id = task_id
        self.lap = lap
        self.run_id = run_id
        self.actor = f"mill:{run_id}"

    # -- reading -------------------------------------------------------------------------

    def history(self) -> History:
        return History.of(self.ledger.attempts(self.task_id), self.lap)

    def usage(self) -> tuple[int, int, int, float]:
        """Counted attempts, input and output tokens and cost of this lap."""
        return self.ledger.lap_usage(self.task_id, self.lap)

    # -- attempts ------------------------------------------------------------------------

    def start_attempt(self, iteration: int, agent: str, model: str | None,
                      log_dir: Path, role: str | None = None) -> Attempt:
        now = iso(self.clock.now())
        log_path = log_dir / f"lap{self.lap}-iter{iteration}-{now.replace(':', '')}.log"
        attempt_id = self.ledger.start_attempt(
            self.task_id, iteration=iteration, agent=agent, model=model,
            log_path=str(log_path), run_id=self.run_id, lap=self.lap, actor=self.actor,
            now=now, role=role)
        return Attempt(attempt_id, iteration, agent, log_path)

    def finish_attempt(self, attempt: Attempt, outcome: AttemptOutcome,
                       failure: Failure | None, note: dict[str, Any], *,
                       unverified: bool = False) -> None:
        """Record how ``attempt`` ended, then say so (``turn_finished`` and, for a pass or a
        failure, ``checks_passed`` / ``checks_failed``; ``agent_paused`` for a rate limit)."""
        result = attempt.result
        assert result is not None
        usage = result.usage
        now = iso(self.clock.now())
        detail = dict(attempt.detail)
        detail.update(note)
        if failure is not None:
            detail["failure"] = failure[1]
            detail["failure_kind"] = failure[0]
        detail.update(attempt.usage_detail)
        if usage.session_id:
            detail["session_id"] = usage.session_id
        if usage.cache_read_tokens or usage.cache_write_tokens:
            detail["cache_read_tokens"] = usage.cache_read_tokens
            detail["cache_write_tokens"] = usage.cache_write_tokens
        usage_error = invalid_usage_message(usage)
        if usage_error:
            detail["usage_error"] = usage_error
        commit = attempt.commit
        self.ledger.finish_attempt(
            self.task_id, attempt.id, outcome=outcome, input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens, cost_usd=usage.cost_usd, commit=commit,
            model=usage.model, detail=detail, seconds=round(result.duration_s, 3),
            usage_error=usage_error, actor=self.actor, now=now)
        if usage_error:
            self.bus.emit(MillEvent.USAGE_INVALID, task=self.task_id, attempt=attempt.id,
                          message=usage_error)
        self.bus.emit(MillEvent.TURN_FINISHED, task=self.task_id, attempt=attempt.id,
                      outcome=outcome, input_tokens=usage.input_tokens,
                      output_tokens=usage.output_tokens, cost_usd=usage.cost_usd,
                      seconds=round(result.duration_s, 3))
        if outcome == AttemptOutcome.RATE_LIMITED:
            self.bus.emit(MillEvent.AGENT_PAUSED, agent=attempt.agent, task=self.task_id,
                          seconds=round(float(note["retry_after_s"]), 1),
                          reason=usage.error or "rate limit")
        elif outcome == AttemptOutcome.PASSED:
            self.bus.emit(MillEvent.CHECKS_PASSED, task=self.task_id,
                          iteration=attempt.iteration, commit=attempt.head,
                          tokens=usage.input_tokens + usage.output_tokens,
                          **({"unverified": True} if unverified else {}))
        elif failure is not None:
            self.bus.emit(MillEvent.CHECKS_FAILED, task=self.task_id,
                          iteration=attempt.iteration, outcome=outcome,
                          detail=tail(failure[1], 500))

    def rejected(self, kind: str, result: LandResult, attempt_id: int | None) -> None:
        """The merge queue sent the branch back: the attempt that passed says so, and so does
        the audit trail."""
        summary = rejection_summary(kind, result.detail)
        now = iso(self.clock.now())
        with self.ledger.transaction():
            if attempt_id is not None:
                detail: dict[str, Any] = {"failure": result.detail, "failure_kind": kind,
                                          "rejection": summary}
                if result.checks is not None:
                    detail["merge_checks"] = result.checks.to_json()
                self.ledger.amend_attempt(attempt_id, outcome=REJECTED[kind], detail=detail)
            self.ledger.record(LedgerEvent.MERGE_REJECTED, self.task_id, {
                "attempt": attempt_id, "reason": kind, "summary": summary,
                "detail": tail(result.detail, 1000)}, actor=self.actor, ts=now)
        self.bus.emit(MillEvent.MERGE_REJECTED, task=self.task_id, reason=kind,
                      attempt=attempt_id, summary=summary, detail=tail(result.detail, 1000))

    def recovered(self, message: str, kind: LedgerEvent) -> None:
        """Say (event and audit record) what taskmill did to the task's branch."""
        self.bus.emit(MillEvent.WARNING, task=self.task_id, message=message)
        with self.ledger.transaction():
            self.ledger.record(kind, self.task_id, {"message": message}, actor=self.actor)

    # -- how the task's stay ends ----------------------------------------------------------

    def close(self, commit: str, *, unverified: bool) -> None:
        reason = f"landed {commit}"
        try:
            self.ledger.close(self.task_id, reason, actor=self.actor, system=True)
        except Conflict:
            # closed for this very landing already: by the task's other binding (Temporal
            # executor: a worker taken for dead that was not landed it, and closed it
            # before the worker that took its place found the landing): not an error
            if self.ledger.get(self.task_id).close_reason != reason:
                raise
        if unverified:
            self.bus.emit(MillEvent.LANDED, task=self.task_id, commit=commit, unverified=True,
                          message="landed unverified: the task and the project have no "
                                  "checks (allowed by allow_unchecked)")
        else:
            self.bus.emit(MillEvent.LANDED, task=self.task_id, commit=commit)

    def satisfied(self, commit: str, attempt_id: int | None) -> None:
        """Closed without a commit: the target already has everything the branch has."""
        with self.ledger.transaction():
            self.ledger.close(self.task_id, f"already satisfied at {commit}", actor=self.actor,
                              system=True)
            self.ledger.record(LedgerEvent.ALREADY_SATISFIED, self.task_id,
                               {"commit": commit, "lap": self.lap, "attempt": attempt_id},
                               actor=self.actor)
        self.bus.emit(MillEvent.SATISFIED, task=self.task_id, commit=commit)

    def keep(self, commit: str, role: str, *, unverified: bool) -> None:
        """Closed without landing (its role's ``land = false``): the work passed its checks
        and stays on the task's branch."""
        branch = f"taskmill/{self.task_id}"
        reason = (f"checked, not landed (role {role!r} does not land): the work is on branch "
                  f"{branch} at {commit[:12]}")
        with self.ledger.transaction():
            self.ledger.close(self.task_id, reason, actor=self.actor, system=True)
            self.ledger.record(LedgerEvent.KEPT, self.task_id,
                               {"commit": commit, "branch": branch, "role": role,
                                "lap": self.lap, "unverified": unverified}, actor=self.actor)
        self.bus.emit(MillEvent.CHECKED, task=self.task_id, commit=commit, branch=branch,
                      role=role, unverified=unverified)

    def wait(self, reason: str) -> None:
        """Give the task back (open, unclaimed): its role spent its daily budget."""
        self.ledger.hold(self.task_id, reason, actor=self.actor)
        self.bus.emit(MillEvent.HELD, task=self.task_id, reason=reason)

    def block(self, reason: str) -> None:
        self.ledger.block(self.task_id, reason, actor=self.actor)
        self.bus.emit(MillEvent.BLOCKED, task=self.task_id, reason=reason)

    def interrupted(self, reason: str) -> None:
        """The audit trail says the task was interrupted; it stays ``in_progress`` under
        this run, so the next run takes it over (resuming its branch)."""
        with contextlib.suppress(Exception), self.ledger.transaction():
            self.ledger.record(LedgerEvent.INTERRUPTED, self.task_id,
                               {"run": self.run_id, "reason": reason}, actor=self.actor)
        self.bus.emit(MillEvent.INTERRUPTED, task=self.task_id, reason=reason)

    def internal_error(self, exc: Exception, message: str) -> None:
        """A taskmill bug or a git failure is not the task's fault: the attempt in flight is
        marked ``error`` (the message in its detail), an audit event says what happened,
        and the task is left for the next run to retry (in progress under this run, which
        the next run takes over). Never blocked, never a comment."""
        detail = {"error": message,
                  "traceback": "".join(traceback.format_exception(exc))[-4000:]}
        try:
            now = iso(self.clock.now())
            with self.ledger.transaction():
                self.ledger.end_open_attempts(self.task_id, outcome=AttemptOutcome.ERROR,
                                              ended_at=now, detail=detail, run_id=self.run_id)
                self.ledger.record(LedgerEvent.INTERNAL_ERROR, self.task_id,
                                   {"run": self.run_id, "error": message},
                                   actor=self.actor, ts=now)
        except Exception as again:  # the ledger itself failed: say so, nothing more to do
            detail["ledger_error"] = repr(again)
        self.bus.emit(MillEvent.INTERNAL_ERROR, task=self.task_id, error=message)
