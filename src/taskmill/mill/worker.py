"""One task's life in the mill: iterations of agent turn + checks, then the merge queue.

Each iteration starts a fresh agent (a fresh context) whose prompt holds the task, the tail
of what failed last time and the progress notes. After the turn taskmill commits what the
agent left, runs the task's checks itself, and records the attempt. The loop stops, and the
task is marked ``blocked`` with the reason in a comment, when a limit is hit: iterations,
the per-task token or cost budget, or a circuit breaker (no change in N turns, the same
failure M times). Usage-limit answers pause the agent and do not count as iterations.

:class:`TaskWorker` is only the loop "ask the policy, run the activity, feed the result
back": the decisions are :class:`~.policy.TaskPolicy`'s, the effects are the activities of
:mod:`.activities` and the records of :mod:`.records`. A durable-workflow engine runs the
same shape: the policy loop as the workflow, each activity as an activity.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any

from ..kinds import REJECTED, AttemptOutcome, MillEvent, TaskOutcome
from ..model import Task
from ..review.approval import AWAITING_REASON, approval_state, request_approval
from .activities import TaskActivities
from .batch import BatchLandResult
from .context import WorkerContext
from .gate import AgentGate
from .policy import (
    AcquireWorkspace,
    Action,
    AwaitAgent,
    AwaitApproval,
    Block,
    CheckCommands,
    Close,
    FindLanding,
    FinishAttempt,
    Interrupt,
    Keep,
    Land,
    Limits,
    MergeTarget,
    Park,
    PauseAgent,
    ReadBranch,
    Recorded,
    RecordRejection,
    Result,
    Review,
    ReviewChange,
    Reviewed,
    RunChecks,
    Satisfy,
    TaskPolicy,
    Terminal,
    Turn,
    Wait,
    failure_signature,
)
from .records import TaskRecords, rejection_summary, unchecked_reason

__all__ = ["REJECTED", "AgentGate", "Outcome", "TaskWorker", "WorkerContext",
           "failure_signature", "rejection_summary", "unchecked_reason"]


_QUICK = (RecordRejection, Review)
"""What :meth:`TaskWorker.landing_decided` does itself: records, no worktree, no agent."""


@dataclass
class Outcome:
    task_id: str
    title: str
    outcome: str
    """landed | satisfied | checked | blocked | held | interrupted | error (``satisfied``:
    the task's branch had nothing the target lacks, so it was closed without a commit;
    ``checked``: its role does not land, so it was closed with its work on its branch;
    ``held``: its role spent its daily budget, so it was given back to wait)"""
    iterations: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0
    commit: str | None = None
    reason: str = ""


class TaskWorker:
    def __init__(self, ctx: WorkerContext, task: Task, lap: int, *, resumed: bool = False) -> None:
        self.ctx = ctx
        self.resumed = resumed
        self.task = task
        self.lap = lap
        self.ledger = ctx.ledger_factory()
        self.out = Outcome(task.id, task.title, TaskOutcome.ERROR)
        self.records = TaskRecords(self.ledger, ctx.bus, ctx.clock, task_id=task.id, lap=lap,
                                   run_id=ctx.run_id)
        self.acts = TaskActivities(ctx, task, lap, self.ledger, self.records)
        self.base_commit = ""
        """The target's tip when the worker started (the branch of a fresh lap starts there)."""
        self._passed_attempt: int | None = None
        """The attempt whose work is in the merge queue (its outcome says if it is rejected)."""
        self.started_at_mono = ctx.clock.monotonic()
        self.policy: TaskPolicy
        self.parked: Future[BatchLandResult] | None = None
        """The landing queue's verdict to come, while the task's branch is parked there."""
        self._pending: Action | None = None
        """What the task does next once a worker takes it again (after a rejection)."""

    # -- the whole life ------------------------------------------------------------------

    def run(self) -> Outcome:
        """Work the task until its stay in this run ends, or until its branch is parked in
        the landing queue (:attr:`parked` is then the verdict to come: see
        :meth:`landing_decided` and :meth:`resume`)."""
        self.started_at_mono = self.ctx.clock.monotonic()

        def first() -> Action:
            self.base_commit = self.ctx.queue.tip()
            self.policy = self.make_policy()
            return self.policy.first()

        return self._drive(first)

    def make_policy(self) -> TaskPolicy:
        """The task's policy under the run's rules: its limits (its role's iterations, its
        own step's), whether it parks, lands (its role), is reviewed (``[review]``) and waits
        for a person's approval (``[merge]``). The local mill and a Temporal worker both
        start a task with it."""
        limits = Limits.of(self.ctx.settings)
        limits = replace(limits, max_iterations=self.ctx.roles.max_iterations(
            self.task, limits.max_iterations)).for_task(self.task)  # a step's own wins
        return TaskPolicy(limits, lap=self.lap,
                          resumed=self.resumed, history=self.records.history(),
                          parks=self.ctx.landing is not None,
                          land=self.ctx.roles.lands(self.task),
                          reviews=self.ctx.review is not None,
                          **self._approval())

    def _approval(self) -> dict[str, Any]:
        """Whether the task needs a person's approval to land, and the commit one approved."""
        rule = self.ctx.approval
        if rule is None or not rule.needs(self.task):
            return {}
        state = approval_state(self.ledger, self.task.id)
        approved = state.commit if state is not None and state.status == "approved" else None
        return {"approval": True, "approved": approved}

    def landing_decided(self, verdict: BatchLandResult | BaseException) -> bool:
        """The landing queue's verdict on the parked branch (a quick step, run by the
        scheduler: no worktree, no agent). Records what follows it that needs neither (the
        rejection, the review of the limits) and, when the task's stay ends here (landed,
        satisfied, blocked, interrupted), how it ended. Returns whether it ended; if not,
        :meth:`resume` carries on (it needs a worker)."""
        self.parked = None

        def decided() -> Action:
            if isinstance(verdict, BaseException):
                raise verdict
            return self.policy.next(self.acts.landing_done(verdict))

        self._drive(decided, quick=True)
        return self._pending is None

    def resume(self) -> Outcome:
        """Carry on after a rejection from the landing queue (on a worker)."""
        pending, self._pending = self._pending, None
        assert pending is not None, "nothing to resume"
        self.base_commit = self.ctx.queue.tip()
        return self._drive(lambda: pending)

    def _drive(self, start: Callable[[], Action], *, quick: bool = False) -> Outcome:
        """Run the policy's actions from ``start()`` on. ``quick``: stop (keeping it in
        :attr:`_pending`) at the first action that needs a worker."""
        over = True
        landed = False
        try:
            action = start()
            while not isinstance(action, Terminal):
                if isinstance(action, Park):
                    if action.attempt is not None:
                        self._passed_attempt = action.attempt
                    self.parked = self.acts.park(resumed=self.resumed)
                    over = False
                    return self.out
                if quick and not isinstance(action, _QUICK):
                    self._pending = action
                    over = False
                    return self.out
                action = self.policy.next(self.perform(action))
            landed = self.finish(action)
            return self.out
        except Exception as exc:  # a bug or a git failure: never the task's fault
            self.internal_error(exc)
            return self.out
        finally:
            if over:
                self.end(landed)

    def end(self, landed: bool) -> None:
        """The task's stay in this run is over: count it, give back its worktree."""
        self.out.seconds = self.ctx.clock.monotonic() - self.started_at_mono
        with contextlib.suppress(Exception):
            self.count_usage(*self.records.usage())
        self.acts.release(landed=landed)
        self.ledger.close_db()

    def perform(self, action: Action) -> Result:
        """Run the activity ``action`` asks for; its result goes back to the policy."""
        acts = self.acts
        match action:
            case FindLanding():
                return acts.find_landing()
            case CheckCommands():
                return acts.check_commands()
            case AcquireWorkspace(fresh=fresh, read_head=read_head, rejoin=rejoin):
                return acts.acquire_workspace(self.base_commit, fresh=fresh, read_head=read_head,
                                              rejoin=rejoin)
            case Review():
                reviewed = acts.review()
                self._count_history(reviewed)
                return reviewed
            case AwaitAgent():
                return acts.await_agent()
            case Turn(iteration=iteration, failure=failure):
                return acts.run_turn(iteration, failure)
            case RunChecks(conflict_markers=markers):
                return acts.run_checks(conflict_markers=markers)
            case ReviewChange():
                return acts.review_change()
            case PauseAgent(retry_after_s=retry_after):
                return acts.pause_agent(retry_after)
            case FinishAttempt(outcome=outcome, failure=failure, note=note):
                assert acts.attempt is not None
                self.records.finish_attempt(acts.attempt, outcome, failure, note,
                                            unverified=acts.unverified)
                if outcome == AttemptOutcome.PASSED:
                    self._passed_attempt = acts.attempt.id
                return Recorded()
            case Land(attempt=attempt):
                if attempt is not None:
                    self._passed_attempt = attempt
                return acts.land()
            case ReadBranch():
                return acts.read_branch()
            case MergeTarget(conflict=conflict):
                return acts.merge_target(conflict=conflict)
            case RecordRejection(kind=kind):
                assert acts.landing is not None
                self.records.rejected(kind, acts.landing, self._passed_attempt)
                self._passed_attempt = None
                return Recorded()
        raise TypeError(f"not an activity: {action!r}")

    def finish(self, action: Terminal) -> bool:
        """Record how the task's stay ends. Returns whether it landed (or was satisfied)."""
        match action:
            case Close(commit=commit, found=found):
                self.records.close(commit, unverified=self.acts.unverified and not found)
                self.out.outcome, self.out.commit = TaskOutcome.LANDED, commit
                if self.ctx.on_landed is not None:
                    self.ctx.on_landed(self.task.id)
                # landed by an earlier run that died before closing the task, or parked:
                # no worktree holds the branch, whose release would delete it
                if found or self.acts.ws is None:
                    self.ctx.pool.drop_branch(self.task.id)
                return True
            case Satisfy(commit=commit):
                self.records.satisfied(commit, self._passed_attempt)
                self.out.outcome, self.out.commit = TaskOutcome.SATISFIED, commit
                if self.ctx.on_landed is not None:
                    self.ctx.on_landed(self.task.id)
                if self.acts.ws is None:
                    self.ctx.pool.drop_branch(self.task.id)
                return True
            case Keep(commit=commit):
                head = commit or (self.acts.ws.git.out("rev-parse", "HEAD")
                                  if self.acts.ws is not None else self.acts.read_branch().head)
                role = self.task.role or ""
                self.records.keep(head, role, unverified=self.acts.unverified)
                self.out.outcome, self.out.commit = TaskOutcome.CHECKED, head
                return False  # its branch is kept: the work is there, not on the target
            case Wait(reason=reason):
                self.records.wait(reason)
                self.out.outcome, self.out.reason = TaskOutcome.HELD, reason
            case AwaitApproval(attempt=attempt):
                passed = attempt if attempt is not None else self._passed_attempt
                head = self.acts.ws.git.out("rev-parse", "HEAD") if self.acts.ws is not None \
                    else self.acts.read_branch().head
                request_approval(self.ledger, self.task.id, commit=head, attempt=passed,
                                 actor=self.records.actor)
                self.ctx.bus.emit("awaiting_approval", task=self.task.id, commit=head)
                self.out.outcome, self.out.reason = TaskOutcome.BLOCKED, AWAITING_REASON
            case Block(reason=reason):
                self.records.block(reason)
                self.out.outcome, self.out.reason = TaskOutcome.BLOCKED, reason
            case Interrupt(why=why):
                self.out.outcome = TaskOutcome.INTERRUPTED
                self.out.reason = (f"interrupted: {why}; it stays in progress and the next "
                                   "`taskmill run` resumes it")
                self.records.interrupted(self.out.reason)
        return False

    def _count_history(self, reviewed: Reviewed) -> None:
        h = reviewed.history
        self.count_usage(h.iterations, h.input_tokens, h.output_tokens, h.cost_usd)

    def count_usage(self, done: int, tin: int, tout: int, cost: float) -> None:
        self.out.iterations, self.out.input_tokens = done, tin
        self.out.output_tokens, self.out.cost_usd = tout, cost

    def internal_error(self, exc: Exception) -> None:
        message = f"{type(exc).__name__}: {exc}"
        if self.out.outcome == TaskOutcome.LANDED:  # closed already: only the clean-up failed
            self.ctx.bus.emit(MillEvent.WARNING, task=self.task.id,
                              message=f"taskmill error after landing: {message}")
            return
        self.out.outcome = TaskOutcome.ERROR
        self.out.reason = (f"taskmill error (not the task's fault): {message}; the next "
                           "`taskmill run` retries it")
        self.records.internal_error(exc, message)
