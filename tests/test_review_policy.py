"""The review step in the policy (``[review]``): pure, no processes."""

from __future__ import annotations

from taskmill.kinds import AttemptOutcome
from taskmill.mill.policy import (
    AcquireWorkspace,
    AwaitApproval,
    Block,
    BranchRead,
    ChangeReviewed,
    CheckCommands,
    ChecksDone,
    CommandsChecked,
    FindLanding,
    FinishAttempt,
    History,
    Land,
    LandingFound,
    Limits,
    Park,
    PastAttempt,
    ReadBranch,
    Recorded,
    Review,
    ReviewChange,
    RunChecks,
    TaskPolicy,
    Turn,
    TurnDone,
    WorkspaceAcquired,
)
from test_policy import again, to_turn


def reviewing(*, parks: bool = False) -> TaskPolicy:
    p = TaskPolicy(Limits(), lap=1, resumed=False, history=History(), parks=parks,
                   reviews=True)
    to_turn(p)
    assert p.next(TurnDone()) == RunChecks()
    return p


def test_passed_checks_are_reviewed_before_the_branch_lands() -> None:
    for parks, then in ((False, Land()), (True, Park())):
        p = reviewing(parks=parks)
        assert p.next(ChecksDone(ok=True)) == ReviewChange()
        assert p.next(ChangeReviewed()) == FinishAttempt(AttemptOutcome.PASSED)
        assert p.next(Recorded()) == then


def test_failed_checks_are_not_reviewed() -> None:
    p = reviewing()
    finish = p.next(ChecksDone(ok=False, failure_text="boom"))
    assert finish == FinishAttempt(AttemptOutcome.FAILED, ("checks", "boom"))


def test_blocking_findings_send_the_task_back_with_them_in_the_next_prompt() -> None:
    p = reviewing()
    p.next(ChecksDone(ok=True))
    finish = p.next(ChangeReviewed(blocking="- [F-1] blocker calc.py:2: add subtracts"))
    assert finish == FinishAttempt(AttemptOutcome.FAILED,
                                   ("review", "- [F-1] blocker calc.py:2: add subtracts"))
    assert p.next(Recorded()) == Review()
    assert again(p, 1) == Turn(2, ("review", "- [F-1] blocker calc.py:2: add subtracts"))


def test_the_same_blocker_three_times_trips_the_breaker() -> None:
    p = reviewing()
    for n in range(1, 4):
        assert p.next(ChecksDone(ok=True)) == ReviewChange()
        assert isinstance(p.next(ChangeReviewed(blocking="same")), FinishAttempt)
        then = p.next(Recorded())
        if n < 3:
            assert then == Review()
            again(p, n)
            assert p.next(TurnDone()) == RunChecks()
        else:
            assert isinstance(then, Block) and "the same failure 3 times" in then.reason


def test_a_failed_review_proceeds_saying_so_or_waits() -> None:
    p = reviewing()
    p.next(ChecksDone(ok=True))
    assert p.next(ChangeReviewed(failed="bad JSON twice")) == FinishAttempt(
        AttemptOutcome.PASSED, note={"review_failed": "bad JSON twice"})
    assert p.next(Recorded()) == Land()
    p = reviewing()
    p.next(ChecksDone(ok=True))
    assert p.next(ChangeReviewed(failed="bad JSON twice", wait=True)) == FinishAttempt(
        AttemptOutcome.PASSED, note={"review_failed": "bad JSON twice"})
    then = p.next(Recorded())
    assert isinstance(then, Block) and "on_failure" in then.reason


def test_a_task_needing_approval_waits_instead_of_landing() -> None:
    for parks in (False, True):
        p = TaskPolicy(Limits(), lap=1, resumed=False, history=History(), parks=parks,
                       approval=True)
        to_turn(p)
        p.next(TurnDone())
        assert p.next(ChecksDone(ok=True)) == FinishAttempt(AttemptOutcome.PASSED)
        assert p.next(Recorded()) == AwaitApproval()


def test_an_approved_commit_lands_without_a_turn_and_a_changed_branch_does_not() -> None:
    history = History(iterations=1, last=PastAttempt(7, AttemptOutcome.PASSED, at="c1"))
    p = TaskPolicy(Limits(), lap=2, resumed=False, history=history, parks=True,
                   approval=True, approved="c1")
    assert p.first() == CheckCommands()
    assert p.next(CommandsChecked(None)) == ReadBranch()
    assert p.next(BranchRead("c1")) == Park(attempt=7)
    p = TaskPolicy(Limits(), lap=2, resumed=False, history=history, parks=False,
                   approval=True, approved="c1")
    p.first()
    assert p.next(CommandsChecked(None)) == AcquireWorkspace(fresh=False, read_head=True)
    assert p.next(WorkspaceAcquired("c1")) == Land(attempt=7)
    # the branch moved since the approval: worked again, and it waits again
    p = TaskPolicy(Limits(), lap=2, resumed=False, history=history, parks=True,
                   approval=True, approved="c1")
    p.first()
    p.next(CommandsChecked(None))
    assert p.next(BranchRead("c2")) == AcquireWorkspace(fresh=False)


def test_a_resumed_task_that_passed_still_needs_its_approval() -> None:
    history = History(iterations=1, last=PastAttempt(7, AttemptOutcome.PASSED, at="c1"))
    p = TaskPolicy(Limits(), lap=1, resumed=True, history=history, parks=True, approval=True)
    assert p.first() == FindLanding()
    p.next(LandingFound(None))
    assert p.next(CommandsChecked(None)) == ReadBranch()
    assert p.next(BranchRead("c1")) == AwaitApproval(7)
