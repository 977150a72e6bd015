"""The executor seam (taskmill.mill.executor_threads), the clock's sleep and the agent gate's
back-off on a fake clock: no real waiting."""

from __future__ import annotations

import threading

import pytest

from taskmill.clock import FixedClock, SystemClock
from taskmill.mill.executor_threads import ThreadExecutor
from taskmill.mill.gate import AgentGate


def test_results_come_back_as_work_finishes_and_errors_become_results() -> None:
    release = threading.Event()
    with ThreadExecutor[str](2) as executor:
        executor.submit("slow", lambda: "slow" if release.wait(10) else "timeout",
                        lambda exc: "error")

        def boom() -> str:
            raise RuntimeError("boom")

        executor.submit("boom", boom, lambda exc: f"error: {exc}")
        assert executor.wait_any(5) == "error: boom"
        release.set()
        assert executor.wait_any(5) == "slow"


def test_wait_any_returns_none_on_notify_and_when_until_says_so() -> None:
    with ThreadExecutor[str](1) as executor:
        executor.notify()
        assert executor.wait_any(30) is None  # at once, not after 30 s
        asked: list[int] = []

        def until() -> bool:
            asked.append(1)
            return True

        assert executor.wait_any(30, until=until) is None and asked == [1]


def test_cancel_sets_the_event_the_work_watches() -> None:
    cancelled = threading.Event()
    with ThreadExecutor[bool](1, cancelled) as executor:
        executor.submit("w", lambda: cancelled.wait(10), lambda exc: False)
        executor.cancel()
        assert executor.wait_any(10) is True


def test_a_fixed_clock_sleeps_in_no_time() -> None:
    clock = FixedClock()
    start = clock.now()
    clock.sleep(3600)
    assert clock.monotonic() == 3600 and (clock.now() - start).total_seconds() == 3600
    stop = threading.Event()
    stop.set()
    clock.sleep(10, until=stop)  # already woken: no time passes
    assert clock.monotonic() == 3600 and clock.slept == [3600]


def test_the_system_clock_sleep_wakes_on_its_event() -> None:
    stop = threading.Event()
    stop.set()
    clock = SystemClock()
    before = clock.monotonic()
    clock.sleep(30, until=stop)
    assert clock.monotonic() - before < 5


def test_the_gate_backs_off_exponentially_up_to_30_minutes_on_the_clock() -> None:
    clock = FixedClock()
    gate = AgentGate(clock)
    assert [gate.pause("a", None, 60) for _ in range(7)] == [
        60, 120, 240, 480, 960, 1800, 1800]
    stop = threading.Event()
    gate.wait("a", stop)  # waits out the pause on the fake clock
    assert clock.monotonic() >= 1800 and sum(clock.slept) == pytest.approx(1800)
    gate.succeeded("a")
    assert gate.pause("a", None, 60) == 60  # the back-off starts over
    assert gate.pause("b", 0.2, 60) == 1.0  # a reset time, at least a second


def test_the_gate_stops_waiting_when_the_run_stops() -> None:
    clock = FixedClock()
    gate = AgentGate(clock)
    gate.pause("a", 600, 60)
    stop = threading.Event()
    stop.set()
    gate.wait("a", stop)
    assert clock.monotonic() == 0
