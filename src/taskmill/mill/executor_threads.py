"""The local :class:`~.executor.Executor`: each piece of work on a thread of this process.

Finished results (and wake-ups) go through one queue, so the scheduler waiting in
:meth:`ThreadExecutor.wait_any` wakes the moment a worker finishes or a task lands.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")

POLL_S = 0.1
"""How often :meth:`ThreadExecutor.wait_any` looks at its ``until``."""


class _Wake:
    """A wake-up in the queue (not a result)."""


_WAKE = _Wake()


class ThreadExecutor(Generic[T]):
    """At most ``workers`` pieces of work at once, on threads named ``taskmill-worker``.
    :meth:`cancel` sets ``cancelled`` (the event the work watches)."""

    def __init__(self, workers: int, cancelled: threading.Event | None = None, *,
                 name: str = "taskmill-worker") -> None:
        self.cancelled = cancelled if cancelled is not None else threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._done: queue.Queue[T | _Wake] = queue.Queue()

    def __enter__(self) -> ThreadExecutor[T]:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Wait for the work in flight to finish, and stop the threads."""
        self._pool.shutdown(wait=True)

    def submit(self, key: str, work: Callable[[], T],
               on_error: Callable[[BaseException], T]) -> None:
        def run() -> None:
            try:
                result = work()
            except BaseException as exc:  # never leave the scheduler waiting
                result = on_error(exc)
            self._done.put(result)

        self._pool.submit(run)

    def wait_any(self, timeout: float, *, until: Callable[[], bool] | None = None) -> T | None:
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
        self.cancelled.set()
