"""The plain-language status line of a task (taskmill.status_line)."""

from __future__ import annotations

from typing import Any

import pytest

from taskmill.model import Task
from taskmill.status_line import status_line


def attempt(outcome: str | None, *, lap: int = 1, checks: list[dict[str, Any]] | None = None,
            **detail: Any) -> dict[str, Any]:
    det: dict[str, Any] = dict(detail)
    if checks is not None:
        det["checks"] = checks
    return {"outcome": outcome, "lap": lap, "detail": det or None}


FAILED_TESTS = attempt("failed", checks=[
    {"command": "pytest tests/test_strings.py", "ok": False, "timed_out": False},
    {"command": "ruff check", "ok": True}])


@pytest.mark.parametrize(("task", "attempts", "kwargs", "line"), [
    (Task("t", "x", status="open", ready=True), [], {}, "waiting for the mill to start it"),
    (Task("t", "x", status="open", ready=False), [], {}, "waiting for other tasks to finish"),
    (Task("t", "x", status="in_progress"), [attempt(None)], {}, "working, attempt 1 of 5"),
    (Task("t", "x", status="in_progress"), [FAILED_TESTS, attempt(None)], {},
     "working, attempt 2 of 5: the check `pytest tests/test_strings.py` failed"),
    # between turns: the next attempt is the one coming
    (Task("t", "x", status="in_progress"), [FAILED_TESTS], {"max_iterations": 3},
     "working, attempt 2 of 3: the check `pytest tests/test_strings.py` failed"),
    # a rate-limited turn does not count
    (Task("t", "x", status="in_progress"), [FAILED_TESTS, attempt("rate_limited"),
                                            attempt(None)], {},
     "working, attempt 2 of 5: the check `pytest tests/test_strings.py` failed"),
    # a new lap counts from 1 again
    (Task("t", "x", status="in_progress"), [FAILED_TESTS, attempt(None, lap=2)], {},
     "working, attempt 1 of 5"),
    (Task("t", "x", status="in_progress"), [attempt("timeout"), attempt(None)], {},
     "working, attempt 2 of 5: the agent ran out of time"),
    (Task("t", "x", status="in_progress"), [attempt("passed")], {},
     "working, attempt 2 of 5: checks passed, landing"),
    (Task("t", "x", status="in_progress"), [attempt("passed")], {"queued": True},
     "passed its checks, landing"),
    (Task("t", "x", status="in_progress"), [attempt("passed")], {"awaiting_approval": True},
     "waiting for approval"),
    (Task("t", "x", status="in_progress"), [attempt(None)], {"running_mill": False},
     "interrupted: the mill stopped; it resumes when the mill runs again"),
    (Task("t", "x", status="blocked"), [FAILED_TESTS], {},
     "stopped, needs a person: the check `pytest tests/test_strings.py` failed"),
    (Task("t", "x", status="closed", close_reason="landed abc1234def5678"), [], {},
     "landed in abc1234"),
    (Task("t", "x", status="closed", close_reason="already satisfied at 0123456789ab"), [], {},
     "done: nothing to change (already in 0123456)"),
    (Task("t", "x", status="closed", close_reason="not needed"), [], {}, "closed: not needed"),
    (Task("t", "x", status="in_progress"), [attempt("failed", checks=[
        {"command": "a", "ok": False}, {"command": "b", "ok": False, "timed_out": True}]),
        attempt(None)], {}, "working, attempt 2 of 5: the check `a` (and 1 more) ran out of time"),
])
def test_status_line(task: Task, attempts: list[dict[str, Any]], kwargs: dict[str, Any],
                     line: str) -> None:
    assert status_line(task, attempts=attempts, **kwargs) == line


def test_the_task_s_own_attempts_are_used_by_default() -> None:
    task = Task("t", "x", status="in_progress", attempts=[FAILED_TESTS, attempt(None)])
    assert status_line(task).startswith("working, attempt 2 of 5")


def test_the_default_limit_is_the_mill_s() -> None:
    from taskmill.mill.settings import RunSettings
    from taskmill.status_line import DEFAULT_MAX_ITERATIONS

    assert RunSettings.max_iterations == DEFAULT_MAX_ITERATIONS
