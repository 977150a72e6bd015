"""Where the mill's task workflows run: the :class:`Executor` seam.

The scheduler (:mod:`.engine`) submits one piece of work per claimed task (a
:class:`~.worker.TaskWorker` run) and waits for any of them to finish, so that what a
landing unblocks is dispatched at once. The first implementation runs each on a thread of
this process (:mod:`.executor_threads`); another (processes, a durable-workflow engine) is
one module implementing this protocol.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol, TypeVar

T = TypeVar("T")


class Executor(Protocol[T]):
    """Runs submitted work concurrently and hands back results as they come."""

    def submit(self, key: str, work: Callable[[], T],
               on_error: Callable[[BaseException], T]) -> None:
        """Start ``work`` (``key`` names it, e.g. the task id). Its result is handed back by
        :meth:`wait_any`; should it raise, ``on_error(exc)`` is handed back instead, so that
        every submission gives exactly one result."""
        ...

    def wait_any(self, timeout: float, *, until: Callable[[], bool] | None = None) -> T | None:
        """The result of the next work to finish; None when ``timeout`` passes first, when
        :meth:`notify` is called, or as soon as ``until()`` is true (looked at every 0.1 s)."""
        ...

    def notify(self) -> None:
        """Make :meth:`wait_any` return (None) now: something the scheduler waits for
        happened (a task landed and its worker is still cleaning up)."""
        ...

    def cancel(self) -> None:
        """Ask all work in flight to stop at once (each still hands back its result)."""
        ...


class ExecutorFactory(Protocol[T]):
    """Makes the executor of one run: ``workers`` pieces of work at once; ``cancelled`` is
    the event :meth:`Executor.cancel` sets (the work watches it). Leaving the context waits
    for the work in flight."""

    def __call__(self, workers: int,
                 cancelled: threading.Event) -> AbstractContextManager[Executor[T]]:
        ...
