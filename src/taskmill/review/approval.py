"""Human approval before landing (``[merge] require_approval``).

A task whose checks and review passed, and which needs approval (:class:`ApprovalRule`:
``[merge] require_approval = true``, a label in ``[merge] approval_labels``, or the task's
``metadata.require_approval = true``), is not handed to the merge queue: the mill records an
``approval_requested`` event, gives the task back as ``blocked`` (reason: awaiting approval)
and frees its worker; its branch stays. :func:`approve` (``taskmill approve ID``, the
dashboard) records ``approved`` for that commit and reopens the task: the next run lands the
branch as it is, with no agent turn. :func:`reject` (``taskmill reject ID -m ...``) records
``approval_rejected``, leaves the comment on the task (the next turn's prompt shows it) and
reopens it for another round of work.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import Conflict, InvalidInput
from ..ledger import Ledger
from ..model import BLOCKED, Task

APPROVAL_REQUESTED = "approval_requested"
APPROVED = "approved"
APPROVAL_REJECTED = "approval_rejected"
KINDS = (APPROVAL_REQUESTED, APPROVED, APPROVAL_REJECTED)
AWAITING_REASON = "awaiting a person's approval to land (its checks passed)"


@dataclass(frozen=True)
class ApprovalRule:
    """Which tasks need a person's approval before they land."""

    always: bool = False
    labels: frozenset[str] = frozenset()

    @classmethod
    def of(cls, merge: Mapping[str, Any]) -> ApprovalRule:
        """From the checked ``[merge]`` table."""
        given = {k.replace("-", "_"): v for k, v in merge.items()}
        return cls(always=bool(given.get("require_approval") or False),
                   labels=frozenset(given.get("approval_labels") or ()))

    def needs(self, task: Task) -> bool:
        return (self.always or bool(self.labels & set(task.labels))
                or (task.metadata or {}).get("require_approval") is True)


@dataclass(frozen=True)
class ApprovalState:
    status: Literal["awaiting", "approved", "rejected"]
    commit: str | None
    attempt: int | None
    comment: str = ""
    by: str = ""
    at: str = ""


def approval_state(ledger: Ledger, task_id: str) -> ApprovalState | None:
    """The task's last approval event, read as a state (None: it never asked for one)."""
    events = ledger.events_of_kinds(KINDS, task_id=task_id)
    if not events:
        return None
    last = events[-1]
    status: Literal["awaiting", "approved", "rejected"] = (
        "awaiting" if last.kind == APPROVAL_REQUESTED
        else "approved" if last.kind == APPROVED else "rejected")
    return ApprovalState(status, last.data.get("commit"), last.data.get("attempt"),
                         str(last.data.get("comment", "")), last.actor, last.ts)


def request_approval(ledger: Ledger, task_id: str, *, commit: str | None,
                     attempt: int | None, actor: str) -> None:
    """The mill's side: the task waits for a person (blocked, the branch kept)."""
    with ledger.transaction():
        ledger.record(APPROVAL_REQUESTED, task_id, {"commit": commit, "attempt": attempt},
                      actor=actor)
        ledger.block(task_id, f"{AWAITING_REASON} at {(commit or '?')[:12]}: `taskmill approve "
                              f"{task_id}` lands it, `taskmill reject {task_id} -m WHY` sends "
                              "it back", actor=actor)


def awaiting(ledger: Ledger, task_ids: Iterable[str] | None = None) -> list[tuple[Task, ApprovalState]]:
    """The tasks waiting for approval, oldest request first."""
    found = []
    ids = task_ids if task_ids is not None else [t.id for t in ledger.list_tasks(status=BLOCKED)]
    for tid in ids:
        state = approval_state(ledger, tid)
        task = ledger.get(tid)
        if state is not None and state.status == "awaiting" and task.status == BLOCKED:
            found.append((task, state))
    return sorted(found, key=lambda pair: pair[1].at)


def _waiting(ledger: Ledger, task_id: str) -> tuple[str, ApprovalState]:
    tid = ledger.resolve(task_id)
    state = approval_state(ledger, tid)
    task = ledger.get(tid)
    if state is None or state.status != "awaiting" or task.status != BLOCKED:
        now = "no approval was asked for it" if state is None else (
            f"it was {state.status} already" if state.status != "awaiting"
            else f"it is {task.status}")
        raise Conflict(f"{tid} is not awaiting approval: {now}",
                       hint="`taskmill review approvals` lists the tasks awaiting approval")
    return tid, state


def approve(ledger: Ledger, task_id: str, *, actor: str) -> ApprovalState:
    """Approve the commit the task waits with: it is reopened, and the next run lands it."""
    with ledger.transaction():
        tid, state = _waiting(ledger, task_id)
        ledger.record(APPROVED, tid, {"commit": state.commit, "attempt": state.attempt},
                      actor=actor)
        ledger.update(tid, {"status": "open"}, actor=actor, expect_status=BLOCKED)
    found = approval_state(ledger, tid)
    assert found is not None
    return found


def reject(ledger: Ledger, task_id: str, comment: str, *, actor: str) -> ApprovalState:
    """Send the task back to its agent with ``comment`` (in its next prompt)."""
    if not comment.strip():
        raise InvalidInput("sending a task back needs a comment saying what to change",
                           hint='taskmill reject ID -m "what is wrong"')
    with ledger.transaction():
        tid, state = _waiting(ledger, task_id)
        ledger.record(APPROVAL_REJECTED, tid, {"commit": state.commit, "attempt": state.attempt,
                                               "comment": comment}, actor=actor)
        ledger.comment(tid, f"Sent back before landing: {comment}", author=actor)
        ledger.update(tid, {"status": "open"}, actor=actor, expect_status=BLOCKED)
    found = approval_state(ledger, tid)
    assert found is not None
    return found
