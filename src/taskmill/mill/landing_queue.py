"""Branches parked to land: a worker hands its passed branch over and is free at once.

:meth:`LandingQueue.submit` returns a :class:`~concurrent.futures.Future` of the branch's
:class:`~taskmill.mill.batch.BatchLandResult`; one thread (:meth:`LandingQueue.run`) takes the
waiting branches, ``[merge] batch_max`` at a time, in the order they were submitted, and
lands them with a :class:`~taskmill.mill.batch.BatchLander`. When fewer than ``batch_max``
wait, it waits up to ``[merge] batch_wait`` seconds for more (0: it lands what there is),
unless one of them is ``urgent`` (other tasks wait for it: the critical path does not wait
for a batch to fill) or no more can come (``more_coming``: no worker is busy).

With ``[merge] speculate`` on, the lander checks the branches waiting behind the batch it is
landing on top of that batch (:mod:`taskmill.mill.speculation`): when a batch starts and
when a branch arrives during its checks. When the batch lands whole, the speculated branches
are the next batch, taken at once (without waiting for it to fill): their checks have run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future

from ..clock import Clock, SystemClock
from .batch import BatchLander, BatchLandResult, LandRequest

_SLICE = 0.1
"""Seconds between looks at the clock while a batch fills."""


class LandingQueue:
    def __init__(self, lander: BatchLander, *, clock: Clock | None = None,
                 more_coming: Callable[[], bool] | None = None) -> None:
        self.lander = lander
        self.clock = clock or SystemClock()
        self.more_coming = more_coming
        """Whether more branches may come soon (a worker is busy): when not, a short batch
        does not wait for ``batch_wait`` (None: they may)."""
        self._cond = threading.Condition()
        self._waiting: list[tuple[LandRequest, Future[BatchLandResult]]] = []
        self._closed = False

    def submit(self, request: LandRequest) -> Future[BatchLandResult]:
        future: Future[BatchLandResult] = Future()
        with self._cond:
            if self._closed:
                future.set_result(_interrupted(request))
                return future
            self._waiting.append((request, future))
            self._cond.notify_all()
        self.lander.speculate()  # on top of the batch being checked, if it speculates
        return future

    def upcoming(self) -> list[LandRequest]:
        """The branches waiting to land, in order (what the lander speculates on)."""
        with self._cond:
            return [request for request, _ in self._waiting]

    def waiting(self) -> list[str]:
        """The ids of the tasks waiting to land, in order (not those landing now)."""
        with self._cond:
            return [request.task.id for request, _ in self._waiting]

    def close(self) -> None:
        """Stop taking batches; what still waits is answered ``interrupted``."""
        with self._cond:
            self._closed = True
            left, self._waiting = self._waiting, []
            self._cond.notify_all()
        for request, future in left:
            future.set_result(_interrupted(request))

    def run(self) -> None:
        """Land batches until :meth:`close` (run it in a thread of its own)."""
        self.lander.upcoming = self.upcoming
        try:
            self._land_batches()
        finally:
            self.lander.close()

    def _land_batches(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            try:
                results = self.lander.land_batch([request for request, _ in batch])
            except BaseException as exc:  # every waiting worker hears of it
                for _, future in batch:
                    future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, future), result in zip(batch, results, strict=True):
                future.set_result(result)

    def _take(self) -> list[tuple[LandRequest, Future[BatchLandResult]]] | None:
        size = self.lander.settings.batch_max
        with self._cond:
            while not self._waiting and not self._closed:
                self._cond.wait()
            speculated = self.lander.speculated()
            ids = [request.task.id for request, _ in self._waiting]
            if speculated and not self._closed and ids[:len(speculated)] == speculated:
                # their checks ran behind the batch that just landed whole: no wait
                batch = self._waiting[:len(speculated)]
                self._waiting = self._waiting[len(speculated):]
                return batch
            wait = self.lander.settings.batch_wait
            deadline = self.clock.monotonic() + wait
            while (0 < len(self._waiting) < size and not self._closed
                   and not any(request.urgent for request, _ in self._waiting)
                   and (self.more_coming is None or self.more_coming())):
                left = deadline - self.clock.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, _SLICE))
            if self._closed:
                return None
            batch, self._waiting = self._waiting[:size], self._waiting[size:]
            return batch


def _interrupted(request: LandRequest) -> BatchLandResult:
    return BatchLandResult("interrupted", detail="the run stopped before the branch landed",
                           task_id=request.task.id)
