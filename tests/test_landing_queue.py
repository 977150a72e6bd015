"""The landing queue's batching rule: it waits up to ``batch_wait`` for a batch to fill,
except while a branch other tasks wait on is waiting (the critical path goes first)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future

from taskmill.mill.batch import BatchLandResult, LandRequest, MergeSettings
from taskmill.mill.landing_queue import LandingQueue
from taskmill.model import Task


class _Lander:
    """Records the batches it is given and lands them all."""

    def __init__(self, settings: MergeSettings) -> None:
        self.settings = settings
        self.batches: list[list[str]] = []

    upcoming = None

    def speculate(self) -> None:
        pass

    def speculated(self) -> list[str]:
        return []

    def close(self) -> None:
        pass

    def land_batch(self, requests: Sequence[LandRequest]) -> list[BatchLandResult]:
        self.batches.append([r.task.id for r in requests])
        return [BatchLandResult("landed", "c", task_id=r.task.id) for r in requests]


def _request(task_id: str, *, urgent: bool = False) -> LandRequest:
    return LandRequest(Task(id=task_id, title=task_id), "c0ffee", resumed=False, urgent=urgent)


def _start(lander: _Lander) -> tuple[LandingQueue, threading.Thread]:
    queue = LandingQueue(lander)  # type: ignore[arg-type]
    thread = threading.Thread(target=queue.run, daemon=True)
    thread.start()
    return queue, thread


def test_a_short_queue_waits_for_its_batch_to_fill() -> None:
    lander = _Lander(MergeSettings(batch_max=3, batch_wait=60))
    queue, thread = _start(lander)
    try:
        first = queue.submit(_request("tm-a"))
        assert not _done_soon(first)  # waiting for two more
        rest = [queue.submit(_request(t)) for t in ("tm-b", "tm-c")]
        assert all(f.result(timeout=10).outcome == "landed" for f in [first, *rest])
    finally:
        queue.close()
        thread.join(timeout=10)
    assert lander.batches == [["tm-a", "tm-b", "tm-c"]]


def test_a_branch_others_wait_on_lands_without_waiting_for_a_batch() -> None:
    lander = _Lander(MergeSettings(batch_max=3, batch_wait=60))
    queue, thread = _start(lander)
    try:
        assert queue.submit(_request("tm-a", urgent=True)).result(timeout=10).outcome == "landed"
        plain = queue.submit(_request("tm-b"))
        assert not _done_soon(plain)
        # an urgent one joining a waiting batch takes it along at once
        urgent = queue.submit(_request("tm-c", urgent=True))
        assert urgent.result(timeout=10).outcome == plain.result(timeout=10).outcome == "landed"
    finally:
        queue.close()
        thread.join(timeout=10)
    assert lander.batches == [["tm-a"], ["tm-b", "tm-c"]]


def _done_soon(future: Future[BatchLandResult]) -> bool:
    try:
        future.result(timeout=0.3)
    except TimeoutError:
        return False
    return True


def test_a_short_batch_does_not_wait_when_no_more_can_come() -> None:
    lander = _Lander(MergeSettings(batch_max=3, batch_wait=60))
    busy = threading.Event()
    busy.set()
    queue = LandingQueue(lander, more_coming=busy.is_set)  # type: ignore[arg-type]
    thread = threading.Thread(target=queue.run, daemon=True)
    thread.start()
    try:
        first = queue.submit(_request("tm-a"))
        assert not _done_soon(first)  # a worker is busy: its branch may come
        busy.clear()  # nobody is working: nothing else will come
        assert first.result(timeout=10).outcome == "landed"
    finally:
        queue.close()
        thread.join(timeout=10)
    assert lander.batches == [["tm-a"]]
