"""The client side of the Temporal executor: task workflows started (or found again) on the
cluster, and their outcomes handed back as they come, like :class:`~taskmill.mill.
executor_threads.ThreadExecutor` hands back its threads' (the same ``wait_any``, ``notify``
and ``cancel`` as the :class:`~taskmill.mill.executor.Executor` seam). What it is given
differs: not a callable of this process (which cannot travel to another machine) but a
:class:`~.spec.TaskSpec`, from which a worker rebuilds the task's work (:meth:`start`).
The Temporal client lives on an event loop of its own thread."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from types import TracebackType
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError

from ..errors import InvalidInput
from ..mill.executor_threads import POLL_S
from ..mill.worker import Outcome
from .spec import TASK_QUEUE, WORKFLOW_TYPE, TaskSpec, workflow_id

CONNECT_TIMEOUT_S = 15.0
RESULT_RETRIES_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
"""Pauses before a workflow's result is asked for again, after a call to the cluster failed
while the workflow ran on (then a last time: its error is the task's)."""


async def _runs(handle: WorkflowHandle[Any, Any]) -> bool:
    """Whether the workflow runs (False when the cluster cannot say)."""
    try:
        return (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    except RPCError:
        return False


class _Wake:
    """A wake-up in the queue (not a result)."""


_WAKE = _Wake()


class TemporalExecutor:
    """Task workflows on the cluster at ``address``; :meth:`start` one per task."""

    def __init__(self, address: str, *, namespace: str = "default",
                 task_queue: str = TASK_QUEUE) -> None:
        self.address = address
        self.task_queue = task_queue
        self.cancelled = threading.Event()
        self._done: queue.Queue[Outcome | _Wake] = queue.Queue()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name="taskmill-temporal", daemon=True)
        self._thread.start()
        try:
            self.client: Client = self._call(
                Client.connect(address, namespace=namespace), CONNECT_TIMEOUT_S)
        except Exception as exc:
            self.close()
            raise InvalidInput(f"cannot reach the Temporal cluster at {address}: {exc}",
                               hint="start it (temporal server start-dev) or fix --temporal "
                                    "/ [executor] address") from exc

    def _call(self, coro: Any, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def running(self, task_id: str, lap: int) -> bool:
        """Whether the workflow of ``task_id``'s ``lap`` is still running (a client that
        died left it to the workers)."""
        handle = self.client.get_workflow_handle(workflow_id(self.task_queue, task_id, lap))
        return bool(self._call(_runs(handle), CONNECT_TIMEOUT_S))

    def start(self, spec: TaskSpec, on_error: Callable[[BaseException], Outcome]) -> None:
        """Start the task's workflow (or find it running) and, when it ends, hand its
        outcome to :meth:`wait_any`."""
        async def run() -> None:
            try:
                handle = await self.client.start_workflow(
                    WORKFLOW_TYPE, spec, id=workflow_id(self.task_queue, spec.task_id, spec.lap),
                    task_queue=self.task_queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
                outcome = Outcome(**await self._result(handle))
            except BaseException as exc:  # never leave the scheduler waiting
                outcome = on_error(exc)
            self._done.put(outcome)

        future: Future[None] = asyncio.run_coroutine_threadsafe(run(), self._loop)
        del future

    async def _result(self, handle: WorkflowHandle[Any, Any]) -> dict[str, Any]:
        """The workflow's result, waited for again after a failed call to the cluster (a
        loaded or restarting server) while the workflow still runs: taken for the task's
        error, it would leave the workflow running with nobody waiting on it (and the next
        run would start the task again beside it)."""
        for wait in RESULT_RETRIES_S:
            try:
                result: dict[str, Any] = await handle.result()
                return result
            except RPCError:
                if not await _runs(handle):
                    raise
            await asyncio.sleep(wait)
        result = await handle.result()
        return result

    def wait_any(self, timeout: float, *, until: Callable[[], bool] | None = None
                 ) -> Outcome | None:
        for _ in range(max(1, round(timeout / POLL_S))):
            try:
                item = self._done.get(timeout=POLL_S)
            except queue.Empty:
                pass
            else:
                return None if isinstance(item, _Wake) else item
            if until is not None and until():
                break
        return None

    def notify(self) -> None:
        self._done.put(_WAKE)

    def cancel(self) -> None:
        """Stop waiting: the workflows go on on the workers (the next run finds them)."""
        self.cancelled.set()

    def close(self) -> None:
        """Stop the client's event loop (the workflows go on on the cluster)."""
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> TemporalExecutor:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
