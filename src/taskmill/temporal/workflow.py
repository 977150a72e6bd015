"""One workflow per task: the mill's :class:`~taskmill.mill.policy.TaskPolicy`, run by
Temporal, its actions activities on a ``taskmill worker``: one for the workspace (``bind``),
and one per turn, which goes on with what the policy asks for after the turn up to the next
one: the checks, the landing, the quick bookkeeping (recording the attempt, reviewing the
limits). The worker's copy of the policy follows this one, result by result, and this one
must ask for the same actions. A task that lands after one turn costs two activities (each
a round trip to the cluster, some 20 ms), not ten.

The policy is pure (no clock, no I/O), so it runs in the workflow as it runs in the local
:class:`~taskmill.mill.worker.TaskWorker` loop: ``action = policy.next(perform(action))``.
A task's activities need its worktree, which lives on one machine, so the first activity
(``bind``, on the shared queue: any worker with a free slot takes it) binds the task to a
worker, and the others go to that worker's own queue. When that worker dies (its heartbeat
stops, or it never picks the next activity up) the activity fails here, and the task is bound
again, to another worker, as a task resumed from a run that died: the policy looks for its
landing, and takes its branch (pushed to the shared remote after every turn) where it was.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from ..mill.policy import Result, TaskPolicy, Terminal
    from .payloads import REFUSED, PayloadRefused, pack, unpack
    from .spec import WORKFLOW_TYPE, Bound, Step, TaskSpec

MAX_BINDINGS = 20
"""Workers a task may lose before the workflow gives up on it (the next run retries it)."""

BIND = "taskmill.bind"
STEP = "taskmill.step"


@workflow.defn(name=WORKFLOW_TYPE, sandboxed=False)
class TaskWorkflow:
    def __init__(self) -> None:
        self.worker = ""
        self.action = ""

    @workflow.query(name="where")
    def where(self) -> dict[str, str]:
        """The worker the task is bound to, and what it does there."""
        return {"worker": self.worker, "action": self.action}

    @workflow.run
    async def run(self, spec: TaskSpec) -> dict[str, Any]:
        resumed = spec.resumed
        heartbeat = timedelta(seconds=spec.heartbeat_timeout)
        longest = timedelta(seconds=4 * max(spec.turn_timeout, spec.check_timeout) + 600)
        lost = ""
        for binding in range(MAX_BINDINGS):
            self.worker, self.action = "", "bind"
            try:
                bound: Bound = await workflow.execute_activity(
                    BIND, args=[spec, resumed, binding], result_type=Bound,
                    task_queue=workflow.info().task_queue, heartbeat_timeout=heartbeat,
                    start_to_close_timeout=longest,
                    retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=50),
                                             backoff_coefficient=1.5,
                                             maximum_interval=timedelta(seconds=1)))
            except ActivityError as exc:
                if isinstance(exc.cause, ApplicationError) and exc.cause.type == REFUSED:
                    return refused(spec, exc.cause)  # the run's payload: no worker reads it
                raise
            self.worker = bound.worker
            once = RetryPolicy(maximum_attempts=1)
            try:
                policy = unpack(bound.policy, TaskPolicy)
                action = policy.first()
                step = bound.step  # the worker went on to the workspace, up to the turn
                while True:
                    for result in step.results:  # the actions the worker ran, in order
                        action = policy.next(unpack(result, Result))
                    if step.error:
                        return step.outcome
                    if step.outcome:  # the worker ended it where this policy does
                        return step.outcome if isinstance(action, Terminal) else {
                            **step.outcome, "outcome": "error",
                            "reason": f"taskmill error: the worker ended the task at {action!r}"}
                    self.action = type(action).__name__
                    step = await workflow.execute_activity(
                        STEP, args=[bound.key, pack(action)], result_type=Step,
                        task_queue=bound.queue, heartbeat_timeout=heartbeat,
                        schedule_to_start_timeout=heartbeat, start_to_close_timeout=longest,
                        retry_policy=once)
            except PayloadRefused as exc:  # a worker's answer this taskmill does not read
                return refused(spec, exc)
            except ActivityError as exc:  # the worker died (or lost the task): bind again
                if isinstance(exc.cause, ApplicationError) and exc.cause.type == REFUSED:
                    return refused(spec, exc.cause)  # the same payload is refused anywhere
                lost = f"{bound.worker}: {exc.cause or exc}"
                workflow.logger.warning("task %s lost its worker %s", spec.task_id, lost)
                resumed = True
        return {"task_id": spec.task_id, "title": "", "outcome": "error",
                "reason": (f"taskmill error (not the task's fault): lost {MAX_BINDINGS} "
                           f"workers (last: {lost}); the next `taskmill run` retries it")}


def refused(spec: TaskSpec, exc: ApplicationError) -> dict[str, Any]:
    """The task's outcome when a payload of its workflow was refused (:mod:`.payloads`):
    nothing of it was run; binding it again would only be refused again."""
    return {"task_id": spec.task_id, "title": "", "outcome": "error",
            "reason": f"taskmill error (not the task's fault): a payload was refused: "
                      f"{exc.message}"}
