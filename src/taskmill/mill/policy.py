"""What the mill does next with one task: a pure state machine, no I/O.

A :class:`TaskPolicy` is the workflow of one task in one run: from the task's attempt
history and the result of what it asked for last, it decides the next action. The worker
(:mod:`.worker`) runs that action as an activity (:mod:`.activities`, :mod:`.records`) and
feeds the result back, until the policy answers with a terminal action (:class:`Close`,
:class:`Satisfy`, :class:`Keep`, :class:`Block`, :class:`Wait`, :class:`Interrupt`)::

    action = policy.first()
    while not isinstance(action, Terminal):
        action = policy.next(perform(action))

Everything the loop decides lives here: when to look for a landing left by a run that died,
when a task is not worked at all, the iteration, token and cost limits, the circuit breakers
(no change in N turns, the same failure M times), that a rate-limited turn does not count,
what failure the next turn is shown, when checks run, when the branch goes to the merge
queue, and what a rejection means.

Two ways to land. With a lander the worker calls and waits on (``parks=False``), a branch
that passed goes to the merge queue with :class:`Land`, the worker holding the task's
worktree until the verdict. With a landing queue (``parks=True``, the mill's default) it is
*parked* (:class:`Park`): the worktree is released (the branch stays), the worker is free for
the next task, and the queue's verdict comes back later as :class:`LandDone`. A rejection then
reviews the limits first (no worktree for a task that stops here), takes a worktree again
and merges the target into the branch (:class:`MergeTarget`) before the next turn; a task
resumed from a run that died whose last attempt passed at its branch's head goes straight
back to the queue, without a worktree (:class:`ReadBranch`). Nothing here reads a clock, a file, git or the ledger, so
it is tested exhaustively without processes (tests/test_policy.py), and it maps one-to-one
onto a durable-workflow engine: this class is the workflow, each action an activity.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..kinds import REJECTED, UNCOUNTED, AttemptOutcome, LandOutcome
from ..model import Task
from .checks import strip_terminal_codes, tail
from .settings import RunSettings

Failure = tuple[str, str]
"""What failed last and how: ``(kind, text)``; kind is ``checks``, ``turn``, ``conflict``,
``review``, ``merge_checks`` or ``history``. The next turn's prompt shows it."""

_NOISE = re.compile(r"\d+(\.\d+)?\s*(s|ms|sec|seconds)\b|0x[0-9a-f]+|\b\d{4}-\d\d-\d\d[T ][\d:.]+")


def failure_signature(text: str) -> str:
    """A hash of a failure with timings and addresses removed, to spot repeats."""
    return hashlib.sha256(_NOISE.sub("#", text).encode()).hexdigest()[:16]


# -- what the policy knows -----------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """The limits of ``[run]`` (and ``taskmill run`` flags) that the policy applies."""

    max_iterations: int = 5
    max_tokens: int | None = None
    max_cost: float | None = None
    no_change_limit: int = 2
    same_failure_limit: int = 3
    turn_timeout: float = 1800.0

    @classmethod
    def of(cls, settings: RunSettings) -> Limits:
        return cls(max_iterations=settings.max_iterations, max_tokens=settings.max_tokens,
                   max_cost=settings.max_cost, no_change_limit=settings.no_change_limit,
                   same_failure_limit=settings.same_failure_limit,
                   turn_timeout=settings.turn_timeout)

    def for_task(self, task: Task) -> Limits:
        """These limits with the task's own ``max_iterations`` hint (a formula step's Ralph
        loop), when it has one."""
        own = (task.hints or {}).get("max_iterations")
        if isinstance(own, int) and not isinstance(own, bool) and own >= 1:
            return replace(self, max_iterations=own)
        return self


@dataclass(frozen=True)
class PastAttempt:
    """The last attempt of a task that counted (not interrupted, not rate-limited)."""

    id: int
    outcome: str
    at: str | None = None
    """The commit it ended at: its own, or (a turn that changed nothing) the head it saw."""
    failure: Failure | None = None
    """What failed, for a failed, timed-out or rejected attempt that recorded it."""
    rejection: str | None = None
    """Why the merge queue sent it back (for a rejected attempt)."""

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> PastAttempt:
        """From an attempt as :meth:`taskmill.ledger.Ledger.attempts` returns it."""
        detail = row.get("detail") or {}
        outcome = str(row["outcome"])
        failure = None
        if outcome in (AttemptOutcome.FAILED, AttemptOutcome.TURN_FAILED,
                       AttemptOutcome.TIMEOUT, *REJECTED.values()) and detail.get("failure"):
            failure = (str(detail.get("failure_kind") or "checks"), str(detail["failure"]))
        rejection = None
        if outcome in REJECTED.values():
            rejection = str(detail.get("rejection") or outcome)
        return cls(id=int(row["id"]), outcome=outcome,
                   at=row.get("commit_sha") or detail.get("head"), failure=failure,
                   rejection=rejection)


@dataclass(frozen=True)
class History:
    """What the ledger says about a task's attempts: this lap's counted ones, and the last."""

    iterations: int = 0
    """Attempts of this lap that count (finished, not interrupted, not rate-limited)."""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    rejected: int = 0
    """Attempts of this lap the merge queue sent back."""
    last: PastAttempt | None = None
    """The last attempt that counted, of any lap."""

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @classmethod
    def of(cls, attempts: Sequence[Mapping[str, Any]], lap: int) -> History:
        """From a task's attempts, oldest first (:meth:`taskmill.ledger.Ledger.attempts`)."""
        counted = [a for a in attempts if a.get("lap") == lap and a.get("outcome") is not None
                   and a["outcome"] not in UNCOUNTED]
        last = next((a for a in reversed(attempts)
                     if a.get("outcome") not in (None, *UNCOUNTED)), None)
        return cls(iterations=len(counted),
                   input_tokens=sum(int(a.get("input_tokens") or 0) for a in counted),
                   output_tokens=sum(int(a.get("output_tokens") or 0) for a in counted),
                   cost_usd=float(sum(float(a.get("cost_usd") or 0.0) for a in counted)),
                   rejected=sum(1 for a in counted if a["outcome"] in REJECTED.values()),
                   last=PastAttempt.of(last) if last is not None else None)

    @property
    def last_rejection(self) -> str | None:
        """Why the last counted attempt was rejected (None when it was not)."""
        return self.last.rejection if self.last is not None else None


def limit_reason(limits: Limits, history: History) -> str | None:
    """Why no further turn is started (a limit is reached), or None."""
    if history.iterations >= limits.max_iterations:
        rejected, last = history.rejected, history.last_rejection
        if last is not None:  # its last turn passed its checks: the merge queue said no
            times = "once" if rejected == 1 else f"{rejected} times"
            return (f"the merge queue rejected it {times} (--max-iterations "
                    f"{limits.max_iterations} reached): {last}")
        also = (f" (the merge queue also rejected it {rejected} "
                f"time{'s' if rejected != 1 else ''})" if rejected else "")
        return (f"reached --max-iterations ({limits.max_iterations}) without passing its "
                f"checks{also}")
    tokens, cost = history.tokens, history.cost_usd
    if limits.max_tokens is not None and tokens >= limits.max_tokens:
        return f"token budget spent: {tokens} of {limits.max_tokens}"
    if limits.max_cost is not None and cost >= limits.max_cost:
        return f"cost budget spent: ${cost:.4f} of ${limits.max_cost:.4f}"
    return None


# -- actions (what the policy asks for) ------------------------------------------------------


class Action:
    """Something the policy asks the worker to do."""


class Terminal(Action):
    """The task's stay in this run is over."""


@dataclass(frozen=True)
class FindLanding(Action):
    """Look on the target for this lap's commit of a task taken over from a run that died.
    Result: :class:`LandingFound`."""


@dataclass(frozen=True)
class CheckCommands(Action):
    """Make sure the task's (and the project's) check commands can run at all.
    Result: :class:`CommandsChecked`."""


@dataclass(frozen=True)
class AcquireWorkspace(Action):
    """Get the task's worktree on its branch. Result: :class:`WorkspaceAcquired`."""

    fresh: bool
    """Start the branch over from the target (a first lap, not resumed)."""
    read_head: bool = False
    """Say which commit the branch is on (a resumed task may have passed there)."""
    rejoin: bool = False
    """Taken again in the same run: the task was parked, and the merge queue sent it back."""


@dataclass(frozen=True)
class Review(Action):
    """Read the task's attempt history and whether the run is stopping.
    Result: :class:`Reviewed`."""


@dataclass(frozen=True)
class AwaitAgent(Action):
    """Wait while the agent's usage limit lasts. Result: :class:`AgentReady`."""


@dataclass(frozen=True)
class Turn(Action):
    """Start an attempt and run one agent turn, then commit what it left.
    Result: :class:`TurnDone`."""

    iteration: int
    failure: Failure | None
    """What the turn's prompt says failed last time."""


@dataclass(frozen=True)
class RunChecks(Action):
    """Run the task's checks in its worktree. Result: :class:`ChecksDone`."""

    conflict_markers: bool = False
    """Also look for conflict markers left in the worktree (the last failure was a conflict)."""


@dataclass(frozen=True)
class ReviewChange(Action):
    """Have the reviewer review the branch, whose checks passed (``[review]``).
    Result: :class:`ChangeReviewed`."""


@dataclass(frozen=True)
class PauseAgent(Action):
    """Pause all work of the agent for its usage limit. Result: :class:`Paused`."""

    retry_after_s: float | None


@dataclass(frozen=True)
class FinishAttempt(Action):
    """Record how the attempt in flight ended. Result: :class:`Recorded`."""

    outcome: AttemptOutcome
    failure: Failure | None = None
    note: dict[str, Any] = field(default_factory=dict)
    """Added to the attempt's detail."""


@dataclass(frozen=True)
class Land(Action):
    """Hand the branch to the merge queue. Result: :class:`LandDone`."""

    attempt: int | None = None
    """The attempt whose work it is, when not the one just recorded (a resumed run)."""


class Suspend(Action):
    """The task waits, holding no worker, for a result that comes later."""


@dataclass(frozen=True)
class Park(Suspend):
    """Release the worktree (the branch stays) and hand the branch to the landing queue; its
    verdict comes back later, as :class:`LandDone`."""

    attempt: int | None = None
    """The attempt whose work it is, when not the one just recorded (a resumed run)."""


@dataclass(frozen=True)
class ReadBranch(Action):
    """Say which commit the task's branch is on, without a worktree.
    Result: :class:`BranchRead`."""


@dataclass(frozen=True)
class MergeTarget(Action):
    """Merge the target into the branch in the worktree (the merge queue sent it back), so
    that the next turn works on the integrated code. Result: :class:`TargetMerged`."""

    conflict: bool
    """Leave the merge uncommitted, its conflict markers in the files, for the agent."""


@dataclass(frozen=True)
class RecordRejection(Action):
    """Record that the merge queue sent the branch back. Result: :class:`Recorded`."""

    kind: str
    """``conflict`` or ``merge_checks``."""


@dataclass(frozen=True)
class Close(Terminal):
    """The task landed at ``commit``: close it."""

    commit: str
    found: bool = False
    """Landed by a run that died before closing it (its branch is dropped)."""


@dataclass(frozen=True)
class Satisfy(Terminal):
    """The target already has everything the branch has: close it without a commit."""

    commit: str


@dataclass(frozen=True)
class AwaitApproval(Terminal):
    """Checks and review passed, and the task needs a person's approval to land: it waits
    (holding no worker, its branch kept) until ``taskmill approve`` / ``reject``."""

    attempt: int | None = None
    """The attempt whose work waits, when not the one just recorded (a resumed run)."""


@dataclass(frozen=True)
class Block(Terminal):
    reason: str


@dataclass(frozen=True)
class Keep(Terminal):
    """The task's work passed its checks and its role does not land (``land = false``):
    close it without merging, keeping its branch."""

    commit: str | None = None


@dataclass(frozen=True)
class Wait(Terminal):
    """The task's role spent its daily budget: give the task back (open, unclaimed) to be
    worked again once the budget allows."""

    reason: str


@dataclass(frozen=True)
class Interrupt(Terminal):
    """The run stopped: the task stays in progress for the next run to resume."""

    why: str


# -- results (what the activities answer) ----------------------------------------------------


class Result:
    """What an activity reports back to the policy."""


@dataclass(frozen=True)
class LandingFound(Result):
    commit: str | None


@dataclass(frozen=True)
class CommandsChecked(Result):
    problem: str | None


@dataclass(frozen=True)
class WorkspaceAcquired(Result):
    head: str = ""
    """The commit the branch is on (when asked)."""


@dataclass(frozen=True)
class BranchRead(Result):
    head: str = ""
    """The commit the task's branch is on ("" when it has none)."""


@dataclass(frozen=True)
class TargetMerged(Result):
    pass


@dataclass(frozen=True)
class Reviewed(Result):
    history: History
    stopping: bool
    held: str | None = None
    """Why no further turn may start now: the task's role spent its daily budget."""


@dataclass(frozen=True)
class AgentReady(Result):
    stopping: bool


@dataclass(frozen=True)
class TurnDone(Result):
    ok: bool = True
    """The agent exited 0 in time."""
    cancelled: bool = False
    timed_out: bool = False
    exit_code: int | None = 0
    rate_limited: bool = False
    retry_after_s: float | None = None
    error: str | None = None
    """What the agent (or the runner) said went wrong."""
    changed: bool = True
    """The turn changed the worktree's tree."""
    restarted: str | None = None
    """The branch had to be restarted from the target (the turn's work is lost): why."""
    sandbox_failed: str | None = None
    """The sandbox never started the agent (:mod:`taskmill.sandbox_start`): why."""


@dataclass(frozen=True)
class ChecksDone(Result):
    ran: bool = True
    """False: there are no checks (allowed by allow_unchecked): the work is not verified."""
    ok: bool = True
    cancelled: bool = False
    failure_text: str = ""
    not_found: str | None = None
    """The block reason when a check exited 127 because its command does not exist."""
    conflict_markers: str = ""
    """Files still holding conflict markers (looked for only when asked)."""
    sandbox_failed: str | None = None
    """The sandbox never started a check (:mod:`taskmill.sandbox_start`): why."""


@dataclass(frozen=True)
class ChangeReviewed(Result):
    blocking: str = ""
    """The findings at or above ``block_at``, as the next turn's prompt shows them ("":
    none; the branch goes on to the merge queue)."""
    failed: str | None = None
    """Why the review failed (no valid answer after a retry)."""
    wait: bool = False
    """The review failed and ``[review] on_failure = "wait"``: the landing waits."""


@dataclass(frozen=True)
class Paused(Result):
    seconds: float
    """How long the agent is paused."""


@dataclass(frozen=True)
class Recorded(Result):
    pass


@dataclass(frozen=True)
class LandDone(Result):
    outcome: LandOutcome
    commit: str | None = None
    detail: str = ""
    not_found: str | None = None
    """The block reason when a project check exited 127 because its command does not exist."""
    cut: bool = False
    """The run is stopping and the landing's checks were cut (not a verdict)."""


# -- the policy ----------------------------------------------------------------------------

STOPPED = "the run was stopped before its next turn"


class TaskPolicy:
    """The workflow of one task in one run (see the module docstring)."""

    def __init__(self, limits: Limits, *, lap: int, resumed: bool, history: History,
                 parks: bool = False, land: bool = True, reviews: bool = False,
                 approval: bool = False, approved: str | None = None) -> None:
        self.limits = limits
        self.land = land
        """False: work that passed its checks is kept on its branch, not merged (a role's
        ``land = false``): the task ends with :class:`Keep`."""
        self.lap = lap
        self.resumed = resumed
        self.history = history
        self.parks = parks
        """A passed branch is parked in a landing queue (:class:`Park`), not landed by the
        worker (:class:`Land`)."""
        self.reviews = reviews
        """A branch whose checks passed is reviewed (:class:`ReviewChange`) before it lands."""
        self.approval = approval
        """A branch that passed waits for a person's approval (:class:`AwaitApproval`)."""
        self.approved = approved
        """The commit a person approved: the branch lands when it is still there."""
        self._rejoin: str | None = None
        """Parked and sent back (``conflict`` or ``merge_checks``): the worktree is taken
        again and the target merged into the branch before the next turn."""
        self.failure: Failure | None = history.last.failure if history.last else None
        """What the next turn is told failed (a resumed turn sees what the one it replaces
        saw)."""
        self._no_change = 0
        self._signatures: dict[str, int] = {}
        self._turn_timed_out = False
        self._then: Action | None = None
        """What follows the record in flight."""
        self._paused_error: str | None = None

    def restore(self, *, rejoin: str | None, no_change: int, signatures: dict[str, int],
                turn_timed_out: bool, then: Action | None, paused_error: str | None) -> None:
        """Take the private state a copy of this policy had elsewhere (a Temporal payload:
        :mod:`taskmill.temporal.payloads`)."""
        self._rejoin = rejoin
        self._no_change = no_change
        self._signatures = dict(signatures)
        self._turn_timed_out = turn_timed_out
        self._then = then
        self._paused_error = paused_error

    def first(self) -> Action:
        return FindLanding() if self.resumed else CheckCommands()

    def _land(self, attempt: int | None = None, head: str | None = None) -> Action:
        """What a branch that passed (and was reviewed) does next: land, wait for a
        person's approval, or (a role's ``land = false``) be kept on its branch."""
        if not self.land:
            return Keep(head)
        if self.approval:
            return AwaitApproval(attempt)
        return Park(attempt=attempt) if self.parks else Land(attempt=attempt)

    def next(self, result: Result) -> Action:
        if isinstance(result, LandingFound):
            return Close(result.commit, found=True) if result.commit else CheckCommands()
        if isinstance(result, CommandsChecked):
            if result.problem:  # a check that cannot run would only burn agent turns
                return Block(result.problem)
            if self.parks and (self.resumed or self.approved):
                return ReadBranch()
            return AcquireWorkspace(fresh=not self.resumed and not self.approved
                                    and self.lap == 1,
                                    read_head=self.resumed or self.approved is not None)
        if isinstance(result, BranchRead):
            passed = self._passed_at(result.head)
            return (self._land(passed, result.head) if passed is not None
                    else AcquireWorkspace(fresh=False))
        if isinstance(result, TargetMerged):
            return AwaitAgent()
        if isinstance(result, WorkspaceAcquired):
            return self._acquired(result)
        if isinstance(result, Reviewed):
            return self._reviewed(result)
        if isinstance(result, AgentReady):
            if result.stopping:
                return Interrupt(STOPPED)
            return Turn(self.history.iterations + 1, self.failure)
        if isinstance(result, TurnDone):
            return self._turn_done(result)
        if isinstance(result, ChecksDone):
            return self._checks_done(result)
        if isinstance(result, ChangeReviewed):
            return self._change_reviewed(result)
        if isinstance(result, Paused):
            return self._finish(FinishAttempt(AttemptOutcome.RATE_LIMITED, note={
                "retry_after_s": result.seconds, "error": self._paused_error}), Review())
        if isinstance(result, Recorded):
            then, self._then = self._then, None
            if then is None:
                raise ValueError("nothing was being recorded")
            return then
        if isinstance(result, LandDone):
            return self._landed(result)
        raise TypeError(f"not a result the policy knows: {result!r}")

    # -- steps ---------------------------------------------------------------------------

    def _passed_at(self, head: str) -> int | None:
        """The attempt of a resumed task that passed at ``head`` (its branch's commit): a run
        killed after the checks passed. Its work lands with no new agent turn."""
        last = self.history.last
        if last is None or last.outcome != AttemptOutcome.PASSED or not last.at \
                or last.at != head:
            return None
        if self.approved is not None and self.approved == head:
            self.approval = False  # a person approved this very commit
            return last.id
        return last.id if self.resumed else None

    def _acquired(self, result: WorkspaceAcquired) -> Action:
        if self._rejoin is not None:  # sent back by the landing queue: integrate first
            kind, self._rejoin = self._rejoin, None
            return MergeTarget(conflict=kind == "conflict")
        passed = self._passed_at(result.head)
        if passed is not None:
            return self._land(passed, result.head)
        return Review()

    def _reviewed(self, result: Reviewed) -> Action:
        self.history = result.history
        if result.stopping:
            return Interrupt(STOPPED)
        reason = limit_reason(self.limits, result.history)
        if reason:
            return Block(reason)
        if result.held:
            return Wait(result.held)
        if self._rejoin is not None:  # parked, then sent back: it needs its worktree again
            return AcquireWorkspace(fresh=False, rejoin=True)
        return AwaitAgent()

    def _turn_done(self, turn: TurnDone) -> Action:
        if turn.cancelled:
            return self._finish(FinishAttempt(AttemptOutcome.INTERRUPTED, note={
                "interrupted": "the run was stopped during the turn"}),
                Interrupt("its turn was cut by the run stopping"))
        if turn.sandbox_failed:
            return self._sandbox_failed("turn", turn.sandbox_failed)
        if turn.rate_limited:  # not an iteration: the same turn again once the limit lifts
            self._paused_error = turn.error
            return PauseAgent(turn.retry_after_s)
        self._turn_timed_out = turn.timed_out
        self._no_change = 0 if turn.changed else self._no_change + 1
        if turn.restarted is not None:
            self.failure = ("history", f"{turn.restarted}. The work of this turn is not on the "
                            "branch: do the task again on top of the target's current code, "
                            "and do not delete or replace the task's branch.")
            return self._failed(AttemptOutcome.FAILED)
        if not turn.ok:
            what = "timed out" if turn.timed_out else f"exited with {turn.exit_code}"
            self.failure = ("turn", strip_terminal_codes(
                f"the agent {what}. {turn.error or ''}".strip()))
            return self._failed(AttemptOutcome.TIMEOUT if turn.timed_out
                                else AttemptOutcome.TURN_FAILED)
        return RunChecks(conflict_markers=self.failure is not None
                         and self.failure[0] == "conflict")

    def _checks_done(self, checks: ChecksDone) -> Action:
        if checks.cancelled:
            return self._finish(FinishAttempt(AttemptOutcome.INTERRUPTED, note={
                "interrupted": "the run was stopped during the checks"}),
                Interrupt("its checks were cut by the run stopping"))
        if checks.sandbox_failed:
            return self._sandbox_failed("checks", checks.sandbox_failed)
        if checks.conflict_markers:
            self.failure = ("conflict", "conflict markers remain in: " + checks.conflict_markers)
            return self._failed(AttemptOutcome.FAILED)
        if not checks.ran or checks.ok:
            if self.reviews and self.land:
                return ReviewChange()
            return self._passed()
        self.failure = ("checks", checks.failure_text)
        return self._failed(AttemptOutcome.FAILED, missing=checks.not_found)

    def _sandbox_failed(self, what: str, why: str) -> Action:
        """The sandbox could not start the agent or a check, however often it was started:
        not the agent's failure nor the work's (no circuit breaker counts it), an error of
        the attempt; the task is blocked with why, for a person to look at the sandbox."""
        return self._finish(FinishAttempt(AttemptOutcome.ERROR, note={"sandbox_failed": why}),
                            Block(f"the {what} did not run: {why}"))

    def _passed(self, note: dict[str, Any] | None = None) -> Action:
        self.failure = None
        return self._finish(FinishAttempt(AttemptOutcome.PASSED, note=note or {}),
                            self._land())

    def _change_reviewed(self, review: ChangeReviewed) -> Action:
        """Blocking findings send the task back to its agent, with them in the prompt; a
        failed review lands anyway (said in the attempt) or waits, as configured."""
        if review.blocking:
            self.failure = ("review", review.blocking)
            return self._failed(AttemptOutcome.FAILED)
        if review.failed is not None and review.wait:
            self.failure = None
            return self._finish(
                FinishAttempt(AttemptOutcome.PASSED, note={"review_failed": review.failed}),
                Block(f"the review failed ({review.failed}); [review] on_failure = \"wait\" "
                      "holds the landing: fix the reviewer, then reopen the task"))
        return self._passed({"review_failed": review.failed} if review.failed else None)

    def _failed(self, outcome: AttemptOutcome, *, missing: str | None = None) -> Action:
        """The attempt failed: record it with the failure, then stop or go round again."""
        assert self.failure is not None
        return self._finish(FinishAttempt(outcome, self.failure), self._after_failure(missing))

    def _after_failure(self, missing: str | None) -> Action:
        assert self.failure is not None
        if missing:
            return Block(missing)  # exit 127: no turn of the agent's makes it exist
        if self._turn_timed_out:  # a limit like the others: the loop stops here
            return Block(f"the agent's turn timed out: it hit the wall-clock limit "
                         f"(--turn-timeout {self.limits.turn_timeout:g}s) and its process "
                         "group was killed")
        sig = failure_signature(self.failure[1])
        self._signatures[sig] = self._signatures.get(sig, 0) + 1
        if self._no_change >= self.limits.no_change_limit:
            return Block(f"circuit breaker: no change to the worktree in {self._no_change} "
                         "consecutive turns")
        if self._signatures[sig] >= self.limits.same_failure_limit:
            return Block(f"circuit breaker: the same failure {self._signatures[sig]} times:\n"
                         + tail(self.failure[1], 1500))
        return Review()

    def _landed(self, land: LandDone) -> Action:
        if land.outcome in (LandOutcome.LANDED, LandOutcome.ALREADY_LANDED):
            assert land.commit
            return Close(land.commit)
        if land.outcome == LandOutcome.SATISFIED:
            assert land.commit
            return Satisfy(land.commit)  # nothing of the branch is missing from the target
        if land.cut or land.outcome == LandOutcome.INTERRUPTED:  # not a verdict
            return Interrupt("its landing was cut by the run stopping")
        kind = "conflict" if land.outcome == LandOutcome.CONFLICT else "merge_checks"
        self.failure = (kind, land.detail)
        # a new round of turns: the breakers count afresh
        self._no_change = 0
        self._signatures = {}
        self._turn_timed_out = False
        if self.parks and not land.not_found:
            self._rejoin = kind
        return self._finish(RecordRejection(kind),
                            Block(land.not_found) if land.not_found else Review())

    def _finish(self, record: Action, then: Action) -> Action:
        self._then = then
        return record
