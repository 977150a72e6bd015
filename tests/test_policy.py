"""The mill's decisions about one task (taskmill.mill.policy), without a process, git or a
ledger: every limit, breaker and rule the worker applies, one result at a time."""

from __future__ import annotations

from typing import Any

import pytest

from taskmill.kinds import AttemptOutcome, LandOutcome
from taskmill.mill.policy import (
    AcquireWorkspace,
    Action,
    AgentReady,
    AwaitAgent,
    Block,
    BranchRead,
    CheckCommands,
    ChecksDone,
    Close,
    CommandsChecked,
    FindLanding,
    FinishAttempt,
    History,
    Interrupt,
    Land,
    LandDone,
    LandingFound,
    Limits,
    MergeTarget,
    Park,
    PastAttempt,
    PauseAgent,
    Paused,
    ReadBranch,
    Recorded,
    RecordRejection,
    Review,
    Reviewed,
    RunChecks,
    Satisfy,
    TargetMerged,
    TaskPolicy,
    Turn,
    TurnDone,
    WorkspaceAcquired,
    failure_signature,
    limit_reason,
)

LIMITS = Limits()


def policy(history: History | None = None, *, limits: Limits = LIMITS, lap: int = 1,
           resumed: bool = False) -> TaskPolicy:
    return TaskPolicy(limits, lap=lap, resumed=resumed, history=history or History())


def to_turn(p: TaskPolicy, history: History | None = None) -> Turn:
    """From the start (not resumed) to the first turn."""
    assert p.first() == CheckCommands()
    assert isinstance(p.next(CommandsChecked(None)), AcquireWorkspace)
    assert p.next(WorkspaceAcquired("h")) == Review()
    assert p.next(Reviewed(history or History(), stopping=False)) == AwaitAgent()
    turn = p.next(AgentReady(stopping=False))
    assert isinstance(turn, Turn)
    return turn


def record(p: TaskPolicy, action: Action) -> Action:
    """The worker recorded ``action`` (a FinishAttempt or RecordRejection): what follows."""
    assert isinstance(action, FinishAttempt | RecordRejection), action
    return p.next(Recorded())


def failing_turn(p: TaskPolicy, text: str, *, changed: bool = True,
                 iterations: int = 0) -> Action:
    """One turn whose checks fail with ``text``: returns what follows the record."""
    assert p.next(TurnDone(changed=changed)) == RunChecks()
    finish = p.next(ChecksDone(ok=False, failure_text=text))
    assert finish == FinishAttempt(AttemptOutcome.FAILED, ("checks", text))
    return record(p, finish)


def again(p: TaskPolicy, iterations: int) -> Turn:
    assert p.next(Reviewed(History(iterations=iterations), stopping=False)) == AwaitAgent()
    turn = p.next(AgentReady(stopping=False))
    assert isinstance(turn, Turn)
    return turn


# -- the start -------------------------------------------------------------------------------


def test_a_new_task_checks_its_commands_then_gets_a_fresh_branch() -> None:
    p = policy()
    assert p.first() == CheckCommands()
    assert p.next(CommandsChecked(None)) == AcquireWorkspace(fresh=True)


def test_a_later_lap_keeps_its_branch() -> None:
    p = policy(lap=2)
    p.first()
    assert p.next(CommandsChecked(None)) == AcquireWorkspace(fresh=False)


def test_a_check_that_cannot_run_blocks_before_any_turn() -> None:
    p = policy()
    p.first()
    assert p.next(CommandsChecked("no such command")) == Block("no such command")


def test_a_resumed_task_first_looks_for_its_landing() -> None:
    p = policy(resumed=True)
    assert p.first() == FindLanding()
    assert p.next(LandingFound("abc")) == Close("abc", found=True)
    q = policy(resumed=True)
    q.first()
    assert q.next(LandingFound(None)) == CheckCommands()
    assert q.next(CommandsChecked(None)) == AcquireWorkspace(fresh=False, read_head=True)


def test_a_resumed_task_that_passed_at_its_head_lands_without_a_turn() -> None:
    passed = History(iterations=1, last=PastAttempt(7, "passed", at="head1"))
    p = policy(passed, resumed=True)
    p.first()
    p.next(LandingFound(None))
    p.next(CommandsChecked(None))
    assert p.next(WorkspaceAcquired("head1")) == Land(attempt=7)


@pytest.mark.parametrize(("last", "resumed", "head"), [
    (PastAttempt(7, "passed", at="old"), True, "head1"),  # the branch moved on
    (PastAttempt(7, "passed", at=None), True, "head1"),  # no commit known
    (PastAttempt(7, "failed", at="head1"), True, "head1"),  # it did not pass
    (PastAttempt(7, "passed", at="head1"), False, "head1"),  # not resumed: a new lap
])
def test_otherwise_it_reviews_its_history(last: PastAttempt, resumed: bool, head: str) -> None:
    p = policy(History(last=last), resumed=resumed)
    p.first()
    if resumed:
        p.next(LandingFound(None))
    p.next(CommandsChecked(None))
    assert p.next(WorkspaceAcquired(head)) == Review()


def test_the_first_turn_sees_the_failure_of_the_last_counted_attempt() -> None:
    last = PastAttempt(3, "failed", failure=("checks", "boom"))
    assert to_turn(policy(History(iterations=2, last=last)),
                   History(iterations=2, last=last)) == Turn(3, ("checks", "boom"))
    assert to_turn(policy()) == Turn(1, None)


# -- history from the ledger's attempts -------------------------------------------------------


def attempt(i: int, outcome: str | None, *, lap: int = 1, tin: int = 10, tout: int = 5,
            cost: float = 0.5, **detail: Any) -> dict[str, Any]:
    return {"id": i, "outcome": outcome, "lap": lap, "input_tokens": tin,
            "output_tokens": tout, "cost_usd": cost, "commit_sha": detail.pop("commit", None),
            "detail": detail or None}


def test_history_counts_this_laps_finished_attempts_but_not_interrupted_or_rate_limited() -> None:
    rows = [attempt(1, "failed", lap=1), attempt(2, "failed", lap=2),
            attempt(3, "interrupted", lap=2), attempt(4, "rate_limited", lap=2),
            attempt(5, "error", lap=2), attempt(6, "rejected_conflict", lap=2,
                                               rejection="conflict in a.py"),
            attempt(7, None, lap=2)]
    h = History.of(rows, lap=2)
    assert (h.iterations, h.input_tokens, h.output_tokens, h.cost_usd) == (3, 30, 15, 1.5)
    assert h.rejected == 1
    assert h.last == PastAttempt(6, "rejected_conflict", rejection="conflict in a.py")
    assert h.last_rejection == "conflict in a.py"


def test_the_last_counted_attempt_is_of_any_lap_and_says_what_failed() -> None:
    rows = [attempt(1, "timeout", lap=1, failure="slow", failure_kind="turn"),
            attempt(2, "interrupted", lap=2)]
    h = History.of(rows, lap=2)
    assert h.iterations == 0 and h.last == PastAttempt(1, "timeout", failure=("turn", "slow"))
    # the failure kind defaults to checks; a passed attempt's failure is not carried over
    assert History.of([attempt(1, "failed", failure="x")], 1).last.failure == ("checks", "x")  # type: ignore[union-attr]
    assert History.of([attempt(1, "passed", failure="x")], 1).last.failure is None  # type: ignore[union-attr]
    # where it ended: its commit, or the head a turn that changed nothing saw
    assert History.of([attempt(1, "passed", head="h")], 1).last.at == "h"  # type: ignore[union-attr]
    assert History.of([attempt(1, "passed", commit="c", head="h")], 1).last.at == "c"  # type: ignore[union-attr]
    # a rejection without a summary says its outcome
    assert History.of([attempt(1, "rejected_checks")], 1).last_rejection == "rejected_checks"
    assert History.of([], 1) == History()


# -- limits ------------------------------------------------------------------------------------


def test_limit_reasons() -> None:
    assert limit_reason(LIMITS, History(iterations=4)) is None
    assert limit_reason(LIMITS, History(iterations=5)) == (
        "reached --max-iterations (5) without passing its checks")
    assert limit_reason(LIMITS, History(iterations=5, rejected=1)) == (
        "reached --max-iterations (5) without passing its checks (the merge queue also "
        "rejected it 1 time)")
    assert limit_reason(LIMITS, History(iterations=5, rejected=2)).endswith(  # type: ignore[union-attr]
        "(the merge queue also rejected it 2 times)")
    rejected = PastAttempt(9, "rejected_conflict", rejection="conflict in a.py")
    assert limit_reason(LIMITS, History(iterations=5, rejected=1, last=rejected)) == (
        "the merge queue rejected it once (--max-iterations 5 reached): conflict in a.py")
    assert limit_reason(LIMITS, History(iterations=5, rejected=3, last=rejected)) == (
        "the merge queue rejected it 3 times (--max-iterations 5 reached): conflict in a.py")
    budget = Limits(max_tokens=100, max_cost=1.0)
    assert limit_reason(budget, History(input_tokens=60, output_tokens=39)) is None
    assert limit_reason(budget, History(input_tokens=60, output_tokens=40)) == (
        "token budget spent: 100 of 100")
    assert limit_reason(budget, History(cost_usd=1.25)) == "cost budget spent: $1.2500 of $1.0000"
    # iterations first, then tokens, then cost
    assert limit_reason(Limits(max_iterations=1, max_tokens=1, max_cost=0.1),
                        History(iterations=1, input_tokens=5, cost_usd=1)).startswith("reached")
    assert limit_reason(Limits(max_tokens=1, max_cost=0.1),
                        History(input_tokens=5, cost_usd=1)).startswith("token")


def test_a_review_blocks_at_a_limit_and_stops_when_the_run_does() -> None:
    p = policy(limits=Limits(max_iterations=2))
    to_turn(p)
    assert p.next(Reviewed(History(iterations=2), stopping=False)) == Block(
        "reached --max-iterations (2) without passing its checks")
    q = policy()
    to_turn(q)
    # stopping wins over a limit
    assert q.next(Reviewed(History(iterations=9), stopping=True)) == Interrupt(
        "the run was stopped before its next turn")


def test_a_stop_while_waiting_for_the_agent_interrupts() -> None:
    p = policy()
    to_turn(p)
    p.next(Reviewed(History(), stopping=False))
    assert p.next(AgentReady(stopping=True)) == Interrupt(
        "the run was stopped before its next turn")


# -- a turn ------------------------------------------------------------------------------------


def test_a_turn_that_passes_its_checks_lands() -> None:
    p = policy()
    to_turn(p)
    assert p.next(TurnDone()) == RunChecks(conflict_markers=False)
    assert p.next(ChecksDone(ok=True)) == FinishAttempt(AttemptOutcome.PASSED)
    assert p.next(Recorded()) == Land()
    assert p.next(LandDone(LandOutcome.LANDED, "c1")) == Close("c1")


def test_no_checks_at_all_passes_unverified() -> None:
    p = policy()
    to_turn(p)
    p.next(TurnDone())
    assert p.next(ChecksDone(ran=False)) == FinishAttempt(AttemptOutcome.PASSED)


def test_already_landed_closes_and_satisfied_closes_without_a_commit() -> None:
    for outcome, want in ((LandOutcome.ALREADY_LANDED, Close("c")),
                          (LandOutcome.SATISFIED, Satisfy("c"))):
        p = policy()
        to_turn(p)
        p.next(TurnDone())
        p.next(ChecksDone())
        p.next(Recorded())
        assert p.next(LandDone(outcome, "c")) == want


def test_a_failed_check_is_recorded_and_the_next_turn_sees_it() -> None:
    p = policy()
    to_turn(p)
    assert failing_turn(p, "assert 1 == 2") == Review()
    assert again(p, 1) == Turn(2, ("checks", "assert 1 == 2"))


def test_a_turn_cut_by_the_run_stopping() -> None:
    p = policy()
    to_turn(p)
    finish = p.next(TurnDone(ok=False, cancelled=True, exit_code=None))
    assert finish == FinishAttempt(AttemptOutcome.INTERRUPTED, note={
        "interrupted": "the run was stopped during the turn"})
    assert p.next(Recorded()) == Interrupt("its turn was cut by the run stopping")


def test_checks_cut_by_the_run_stopping() -> None:
    p = policy()
    to_turn(p)
    p.next(TurnDone())
    finish = p.next(ChecksDone(ok=False, cancelled=True))
    assert finish == FinishAttempt(AttemptOutcome.INTERRUPTED, note={
        "interrupted": "the run was stopped during the checks"})
    assert p.next(Recorded()) == Interrupt("its checks were cut by the run stopping")


@pytest.mark.parametrize("what", ["turn", "checks"])
def test_a_sandbox_that_never_started_blocks_and_is_no_failed_turn_or_check(what: str) -> None:
    """Not the agent's failure nor the work's: no breaker counts it, the task is blocked
    with why (taskmill.sandbox_start)."""
    p = policy(limits=Limits(no_change_limit=1, same_failure_limit=1))
    to_turn(p)
    why = "the sandbox could not start the command (3 tries): bwrap: Can't find ..."
    if what == "turn":
        finish = p.next(TurnDone(ok=False, exit_code=1, error=why, changed=False,
                                 sandbox_failed=why))
    else:
        assert p.next(TurnDone()) == RunChecks()
        finish = p.next(ChecksDone(ok=False, sandbox_failed=why))
    assert finish == FinishAttempt(AttemptOutcome.ERROR, note={"sandbox_failed": why})
    assert p.next(Recorded()) == Block(f"the {what} did not run: {why}")


def test_a_rate_limited_turn_pauses_the_agent_and_does_not_count() -> None:
    p = policy(limits=Limits(no_change_limit=1))
    to_turn(p)
    limited = TurnDone(ok=False, exit_code=1, rate_limited=True, retry_after_s=30,
                       error="usage limit", changed=False)
    assert p.next(limited) == PauseAgent(30)
    assert p.next(Paused(30.0)) == FinishAttempt(AttemptOutcome.RATE_LIMITED, note={
        "retry_after_s": 30.0, "error": "usage limit"})
    assert p.next(Recorded()) == Review()
    # the same iteration again, and the unchanged worktree did not trip the breaker
    assert again(p, 0) == Turn(1, None)
    assert p.next(TurnDone(changed=True)) == RunChecks()


def test_a_failed_turn_and_a_timeout() -> None:
    p = policy()
    to_turn(p)
    finish = p.next(TurnDone(ok=False, exit_code=2, error="\x1b[31mbad key\x1b[0m"))
    assert finish == FinishAttempt(AttemptOutcome.TURN_FAILED,
                                   ("turn", "the agent exited with 2. bad key"))
    assert p.next(Recorded()) == Review()
    q = policy(limits=Limits(turn_timeout=90))
    to_turn(q)
    finish = q.next(TurnDone(ok=False, timed_out=True, exit_code=None,
                             error="timed out after 90s"))
    assert finish == FinishAttempt(AttemptOutcome.TIMEOUT,
                                   ("turn", "the agent timed out. timed out after 90s"))
    assert q.next(Recorded()) == Block(
        "the agent's turn timed out: it hit the wall-clock limit (--turn-timeout 90s) and "
        "its process group was killed")


def test_a_turn_whose_work_left_the_branch_history_fails() -> None:
    p = policy()
    to_turn(p)
    finish = p.next(TurnDone(restarted="the branch was restarted"))
    assert isinstance(finish, FinishAttempt) and finish.outcome == AttemptOutcome.FAILED
    assert finish.failure == ("history", "the branch was restarted. The work of this turn is "
                              "not on the branch: do the task again on top of the target's "
                              "current code, and do not delete or replace the task's branch.")
    assert p.next(Recorded()) == Review()


def test_a_missing_check_command_blocks_at_once() -> None:
    p = policy()
    to_turn(p)
    p.next(TurnDone())
    finish = p.next(ChecksDone(ok=False, failure_text="127", not_found="no pytest"))
    assert isinstance(finish, FinishAttempt) and finish.outcome == AttemptOutcome.FAILED
    assert p.next(Recorded()) == Block("no pytest")


# -- circuit breakers ---------------------------------------------------------------------------


def test_no_change_in_two_consecutive_turns_trips_the_breaker() -> None:
    p = policy()
    to_turn(p)
    assert failing_turn(p, "a", changed=False) == Review()
    again(p, 1)
    assert failing_turn(p, "b", changed=False) == Block(
        "circuit breaker: no change to the worktree in 2 consecutive turns")


def test_a_change_resets_the_no_change_count() -> None:
    p = policy()
    to_turn(p)
    for i, changed in enumerate((False, True, False)):
        assert failing_turn(p, f"f{i}", changed=changed) == Review()
        again(p, i + 1)


def test_the_same_failure_three_times_trips_the_breaker() -> None:
    p = policy(limits=Limits(max_iterations=9))
    to_turn(p)
    # timings and addresses do not make a failure different
    assert failing_turn(p, "boom after 1.5s at 0xdead") == Review()
    again(p, 1)
    assert failing_turn(p, "other") == Review()
    again(p, 2)
    assert failing_turn(p, "boom after 2s at 0xbeef") == Review()
    again(p, 3)
    assert failing_turn(p, "boom after 30 ms at 0x1") == Block(
        "circuit breaker: the same failure 3 times:\nboom after 30 ms at 0x1")


def test_the_limits_are_configurable() -> None:
    p = policy(limits=Limits(no_change_limit=1))
    to_turn(p)
    assert failing_turn(p, "a", changed=False) == Block(
        "circuit breaker: no change to the worktree in 1 consecutive turns")
    q = policy(limits=Limits(same_failure_limit=1))
    to_turn(q)
    assert failing_turn(q, "a").reason.startswith(  # type: ignore[attr-defined]
        "circuit breaker: the same failure 1 times")


def test_failure_signature_ignores_timings_addresses_and_timestamps() -> None:
    assert failure_signature("took 1.25s at 0xff on 2026-01-01T10:00:00") == failure_signature(
        "took 3 seconds at 0xab on 2025-12-31 09:59:59.5")
    assert failure_signature("a") != failure_signature("b")


# -- the merge queue ------------------------------------------------------------------------------


def passed_to_land(p: TaskPolicy) -> None:
    p.next(TurnDone())
    p.next(ChecksDone())
    assert p.next(Recorded()) == Land()


def test_a_conflict_is_recorded_and_the_next_turn_resolves_it() -> None:
    p = policy()
    to_turn(p)
    passed_to_land(p)
    rejected = p.next(LandDone(LandOutcome.CONFLICT, detail="CONFLICT (content): a.py"))
    assert rejected == RecordRejection("conflict")
    assert p.next(Recorded()) == Review()
    assert again(p, 1) == Turn(2, ("conflict", "CONFLICT (content): a.py"))
    # the next turn's checks also look for conflict markers left behind
    assert p.next(TurnDone()) == RunChecks(conflict_markers=True)
    finish = p.next(ChecksDone(ok=True, conflict_markers="a.py, b.py"))
    assert finish == FinishAttempt(AttemptOutcome.FAILED,
                                   ("conflict", "conflict markers remain in: a.py, b.py"))


def test_red_project_checks_on_the_merge_are_a_rejection_too() -> None:
    p = policy()
    to_turn(p)
    passed_to_land(p)
    assert p.next(LandDone(LandOutcome.CHECKS_FAILED, detail="red")) == RecordRejection(
        "merge_checks")
    assert p.next(Recorded()) == Review()
    assert again(p, 1) == Turn(2, ("merge_checks", "red"))
    assert p.next(TurnDone()) == RunChecks(conflict_markers=False)


def test_a_missing_project_check_command_on_the_merge_blocks() -> None:
    p = policy()
    to_turn(p)
    passed_to_land(p)
    assert p.next(LandDone(LandOutcome.CHECKS_FAILED, detail="x",
                           not_found="no make")) == RecordRejection("merge_checks")
    assert p.next(Recorded()) == Block("no make")


def test_a_landing_cut_by_the_run_stopping_is_not_a_rejection() -> None:
    p = policy()
    to_turn(p)
    passed_to_land(p)
    assert p.next(LandDone(LandOutcome.CHECKS_FAILED, detail="x", cut=True)) == Interrupt(
        "its landing was cut by the run stopping")


def test_a_rejection_starts_the_breakers_afresh() -> None:
    p = policy()
    to_turn(p)
    assert failing_turn(p, "a", changed=False) == Review()
    again(p, 1)
    passed_to_land(p)
    p.next(LandDone(LandOutcome.CONFLICT, detail="c"))
    p.next(Recorded())
    again(p, 2)
    # one unchanged turn after the rejection: not two in a row
    assert p.next(TurnDone(changed=False)) == RunChecks(conflict_markers=True)
    assert record(p, p.next(ChecksDone(ok=False, failure_text="z"))) == Review()


def test_a_recorded_result_with_nothing_recorded_is_a_bug() -> None:
    with pytest.raises(ValueError, match="nothing was being recorded"):
        policy().next(Recorded())


# -- parked in the landing queue ---------------------------------------------------------------


def parked_policy(history: History | None = None, *, resumed: bool = False) -> TaskPolicy:
    return TaskPolicy(LIMITS, lap=1, resumed=resumed, history=history or History(), parks=True)


def passed_to_park(p: TaskPolicy) -> None:
    p.next(TurnDone())
    assert p.next(ChecksDone()) == FinishAttempt(AttemptOutcome.PASSED)
    assert p.next(Recorded()) == Park()


def test_a_passed_branch_is_parked_and_its_landing_closes_the_task() -> None:
    for outcome, want in ((LandOutcome.LANDED, Close("c1")),
                          (LandOutcome.ALREADY_LANDED, Close("c1")),
                          (LandOutcome.SATISFIED, Satisfy("c1"))):
        p = parked_policy()
        to_turn(p)
        passed_to_park(p)
        assert p.next(LandDone(outcome, "c1")) == want


def test_a_parked_branch_sent_back_reviews_then_takes_its_worktree_and_merges_the_target(
        ) -> None:
    for outcome, kind in ((LandOutcome.CONFLICT, "conflict"),
                          (LandOutcome.CHECKS_FAILED, "merge_checks")):
        p = parked_policy()
        to_turn(p)
        passed_to_park(p)
        assert p.next(LandDone(outcome, detail="why")) == RecordRejection(kind)
        # the limits first: a task that stops here needs no worktree
        assert p.next(Recorded()) == Review()
        assert p.next(Reviewed(History(iterations=1), stopping=False)) == AcquireWorkspace(
            fresh=False, rejoin=True)
        assert p.next(WorkspaceAcquired()) == MergeTarget(conflict=kind == "conflict")
        assert p.next(TargetMerged()) == AwaitAgent()
        assert p.next(AgentReady(stopping=False)) == Turn(2, (kind, "why"))
        # the next turn's checks look for conflict markers after a conflict
        assert p.next(TurnDone()) == RunChecks(conflict_markers=kind == "conflict")
        # and a later pass parks again (no second merge of the target)
        assert p.next(ChecksDone()) == FinishAttempt(AttemptOutcome.PASSED)
        assert p.next(Recorded()) == Park()


def test_a_parked_branch_sent_back_at_a_limit_or_a_stop_takes_no_worktree() -> None:
    p = parked_policy()
    to_turn(p)
    passed_to_park(p)
    p.next(LandDone(LandOutcome.CHECKS_FAILED, detail="red"))
    p.next(Recorded())
    last = PastAttempt(3, "rejected_checks", rejection="red checks")
    blocked = p.next(Reviewed(History(iterations=5, rejected=1, last=last), stopping=False))
    assert isinstance(blocked, Block) and "rejected it once" in blocked.reason
    q = parked_policy()
    to_turn(q)
    passed_to_park(q)
    q.next(LandDone(LandOutcome.CONFLICT, detail="c"))
    q.next(Recorded())
    assert q.next(Reviewed(History(iterations=1), stopping=True)) == Interrupt(
        "the run was stopped before its next turn")


def test_a_parked_branch_whose_landing_was_cut_stays_resumable() -> None:
    for done in (LandDone(LandOutcome.INTERRUPTED, cut=True),
                 LandDone(LandOutcome.INTERRUPTED)):
        p = parked_policy()
        to_turn(p)
        passed_to_park(p)
        assert p.next(done) == Interrupt("its landing was cut by the run stopping")


def test_a_missing_project_check_command_on_a_parked_merge_blocks() -> None:
    p = parked_policy()
    to_turn(p)
    passed_to_park(p)
    p.next(LandDone(LandOutcome.CHECKS_FAILED, detail="x", not_found="no make"))
    assert p.next(Recorded()) == Block("no make")


def test_a_resumed_task_that_passed_at_its_branch_goes_straight_to_the_queue() -> None:
    passed = History(iterations=1, last=PastAttempt(7, "passed", at="head1"))
    p = parked_policy(passed, resumed=True)
    assert p.first() == FindLanding()
    assert p.next(LandingFound(None)) == CheckCommands()
    assert p.next(CommandsChecked(None)) == ReadBranch()  # no worktree for that
    assert p.next(BranchRead("head1")) == Park(attempt=7)
    # its branch moved on since (or has no commit): worked again, with its worktree
    for head in ("other", ""):
        q = parked_policy(passed, resumed=True)
        q.first()
        q.next(LandingFound(None))
        q.next(CommandsChecked(None))
        assert q.next(BranchRead(head)) == AcquireWorkspace(fresh=False)
        assert q.next(WorkspaceAcquired()) == Review()


def test_without_a_landing_queue_the_worker_lands_the_branch_itself() -> None:
    p = policy()
    assert not p.parks
    to_turn(p)
    passed_to_land(p)
    p.next(LandDone(LandOutcome.CONFLICT, detail="c"))
    assert p.next(Recorded()) == Review()
    assert p.next(Reviewed(History(iterations=1), stopping=False)) == AwaitAgent()


# -- roles (issue 13): land = false, a spent daily budget --------------------------------


def test_a_role_that_does_not_land_keeps_passed_work_instead_of_landing() -> None:
    from taskmill.mill.policy import Keep

    for parks in (False, True):
        p = TaskPolicy(LIMITS, lap=1, resumed=False, history=History(), parks=parks,
                       land=False)
        to_turn(p)
        assert p.next(TurnDone(changed=True)) == RunChecks()
        finish = p.next(ChecksDone(ok=True))
        assert finish == FinishAttempt(AttemptOutcome.PASSED)
        assert record(p, finish) == Keep()
    # resumed after its last attempt passed at the branch's head: kept, no new turn
    passed = History(iterations=1, last=PastAttempt(7, AttemptOutcome.PASSED, at="h"))
    p = TaskPolicy(LIMITS, lap=1, resumed=True, history=passed, parks=True, land=False)
    assert p.first() == FindLanding()
    assert p.next(LandingFound(None)) == CheckCommands()
    assert p.next(CommandsChecked(None)) == ReadBranch()
    assert p.next(BranchRead("h")) == Keep("h")


def test_a_spent_role_budget_gives_the_task_back_before_the_next_turn() -> None:
    from taskmill.mill.policy import Wait

    p = policy()
    assert p.first() == CheckCommands()
    assert isinstance(p.next(CommandsChecked(None)), AcquireWorkspace)
    assert p.next(WorkspaceAcquired("h")) == Review()
    assert p.next(Reviewed(History(), stopping=False, held="role 'w' spent it")) == Wait(
        "role 'w' spent it")
    # a limit of the task's own still blocks it (the budget would only delay it)
    p = policy(limits=Limits(max_iterations=1))
    p.first()
    p.next(CommandsChecked(None))
    p.next(WorkspaceAcquired("h"))
    assert isinstance(p.next(Reviewed(History(iterations=1), stopping=False, held="x")), Block)
