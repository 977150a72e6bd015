"""The whole mill in one process: claims, worktrees, checks and the merge queue are real,
the agent turns are Python (taskmill.testing.turns.ScriptedTurns), so no agent is spawned;
and the clock is a FixedClock, so rate-limit back-offs take no real time."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mill_helpers import MillRepo
from taskmill.agents.base import AgentConfig
from taskmill.clock import FixedClock
from taskmill.mill.engine import Mill, RunSummary
from taskmill.mill.events import EventBus
from taskmill.mill.executor_threads import ThreadExecutor
from taskmill.mill.settings import RunSettings
from taskmill.mill.worker import Outcome
from taskmill.project import open_project
from taskmill.testing.turns import FakeTurn, Reply, ScriptedTurns, Step, rate_limited, write

FAKE_AGENT = AgentConfig(name="fake", adapter="exec", command=("not-run",))


class InProcess:
    """Runs the mill of ``repo`` in this process with scripted turns."""

    def __init__(self, repo: MillRepo, turns: ScriptedTurns, **settings: Any) -> None:
        self.repo = repo
        self.turns = turns
        self.executor: Any = None
        self.clock = FixedClock(step=0.001)
        self.events: list[dict[str, Any]] = []
        self.settings = settings

    def run(self) -> RunSummary:
        env = dict(os.environ)
        with open_project(self.repo.root, env) as project:
            settings = RunSettings.from_config(project.config.run, {
                "contain": "group", "allow_unchecked": True, **self.settings})
            bus = EventBus(self.clock)
            bus.subscribe(self.events.append)
            mill = Mill(project.paths, project.config, settings, env=env, clock=self.clock,
                        bus=bus, agent_override=FAKE_AGENT, turn_runner=self.turns,
                        executor=self.executor)
            return mill.run()

    def of(self, kind: str, task: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.events
                if e["event"] == kind and (task is None or e.get("task") == task)]


def mill(tmp_path: Path, script: Mapping[str, Sequence[Step]] | Step, *,
         run: Mapping[str, Any] | None = None, **settings: Any) -> tuple[MillRepo, InProcess]:
    repo = MillRepo(tmp_path, run=run)
    return repo, InProcess(repo, ScriptedTurns(script), **settings)


def test_tasks_with_dependencies_and_a_failing_check_then_a_fix(tmp_path: Path) -> None:
    def b_sees_a(turn: FakeTurn) -> None:
        # the dependent starts from a target that has its blocker's work
        assert (turn.worktree / "a.txt").read_text() == "good\n"
        (turn.worktree / "b.txt").write_text("b\n")

    repo, inproc = mill(tmp_path, {
        "tm-a": [write({"a.txt": "bad\n"}, input_tokens=10, output_tokens=2),
                 write({"a.txt": "good\n"}, input_tokens=20, output_tokens=3)],
        "tm-b": [b_sees_a],
        "tm-c": [write({"c.txt": "c\n"})],
    }, workers=2)
    repo.create("tm-a", checks=['test "$(cat a.txt)" = good || { echo "a.txt is $(cat a.txt)"; exit 1; }'])
    repo.create("tm-b", checks=["test -f b.txt"], after=["tm-a"])
    repo.create("tm-c", checks=["test -f c.txt"])

    summary = inproc.run()

    assert summary.exit_code == 0, summary.to_json()
    assert sorted(o.outcome for o in summary.outcomes) == ["landed"] * 3
    repo.assert_all_landed_once(["tm-a", "tm-b", "tm-c"])
    assert [a["outcome"] for a in repo.attempts("tm-a")] == ["failed", "passed"]
    assert "a.txt is bad" in repo.attempts("tm-a")[0]["detail"]["failure"]
    # the second turn was told what failed
    second = inproc.turns.calls("tm-a")[1]
    assert second.iteration == 2 and "a.txt is bad" in second.prompt
    (a,) = [o for o in summary.outcomes if o.task_id == "tm-a"]
    assert (a.iterations, a.input_tokens, a.output_tokens) == (2, 30, 5)
    # tm-b was dispatched only once tm-a had landed
    order = [(e["event"], e.get("task")) for e in inproc.events]
    assert order.index(("landed", "tm-a")) < order.index(("dispatched", "tm-b"))
    assert not repo.mill_branches()
    assert repo.git("show", "main:b.txt") == "b\n"


def test_a_task_is_blocked_after_its_iterations_and_by_the_no_change_breaker(
        tmp_path: Path) -> None:
    def never_right(turn: FakeTurn) -> Reply:
        (turn.worktree / "n.txt").write_text(f"{turn.iteration}\n")
        return Reply()

    repo, inproc = mill(tmp_path, {"tm-n": [never_right] * 5, "tm-idle": []},
                        max_iterations=2)
    repo.create("tm-n", checks=['echo "not yet $(cat n.txt)"; exit 1'])
    repo.create("tm-idle", checks=["test -f never.txt"])
    submitted: list[str] = []

    class Recording(ThreadExecutor[Outcome]):  # a second executor is one class
        def submit(self, key: str, work: Callable[[], Outcome],
                   on_error: Callable[[BaseException], Outcome]) -> None:
            submitted.append(key)
            super().submit(key, work, on_error)

    inproc.executor = Recording

    summary = inproc.run()

    assert sorted(submitted) == ["tm-idle", "tm-n"]

    assert summary.exit_code == 1
    assert {o.task_id: o.outcome for o in summary.outcomes} == {"tm-n": "blocked",
                                                                "tm-idle": "blocked"}
    assert [a["iteration"] for a in repo.attempts("tm-n")] == [1, 2]
    n = repo.task("tm-n")
    assert n["status"] == "blocked"
    assert any("taskmill blocked this task: reached --max-iterations (2) without passing "
               "its checks" in c["text"] for c in n["comments"]), n["comments"]
    idle = repo.task("tm-idle")
    assert any("circuit breaker: no change to the worktree in 2 consecutive turns" in c["text"]
               for c in idle["comments"]), idle["comments"]
    assert len(repo.attempts("tm-idle")) == 2
    assert repo.landings() == {}
    assert [e["task"] for e in inproc.of("blocked")] != []


# -- rate limits: backing off through the injected clock (no real waiting) ---------------------


def test_rate_limit_pauses_and_does_not_burn_iterations(tmp_path: Path) -> None:
    started: list[float] = []

    def done(turn: FakeTurn) -> Reply:
        (turn.worktree / "done.txt").write_text("ok")
        return Reply(usage=write({}, input_tokens=5, output_tokens=5)(turn).usage)

    def timed(step: Step) -> Step:
        def run(turn: FakeTurn) -> Reply | None:
            started.append(inproc.clock.monotonic())
            return step(turn)
        return run

    limited = rate_limited(retry_after_s=1, error="usage limit reached")
    repo, inproc = mill(tmp_path, {"tm-rl": [timed(limited), timed(limited), timed(done)]},
                        max_iterations=1)
    repo.create("tm-rl", checks=["test -f done.txt"])

    wall = time.monotonic()
    summary = inproc.run()

    assert summary.exit_code == 0, summary.to_json()
    repo.assert_all_landed_once(["tm-rl"])
    attempts = repo.attempts("tm-rl")
    assert [a["outcome"] for a in attempts] == ["rate_limited", "rate_limited", "passed"]
    assert [a["iteration"] for a in attempts] == [1, 1, 1]
    paused = inproc.of("agent_paused")
    assert len(paused) == 2 and all(0.9 <= e["seconds"] <= 2 for e in paused), paused
    assert all(e["agent"] == "fake" and e["reason"] == "usage limit reached" for e in paused)
    # each retry waited for the reset, on the run's clock; nothing was counted
    assert started[1] - started[0] >= 0.9 and started[2] - started[1] >= 0.9, started
    assert sum(inproc.clock.slept) >= 1.9
    (finished,) = inproc.of("task_finished")
    assert finished["iterations"] == 1
    assert time.monotonic() - wall < 60


def test_rate_limit_without_reset_time_backs_off_exponentially(tmp_path: Path) -> None:
    limited = rate_limited()
    repo, inproc = mill(tmp_path, {"tm-b": [limited, limited, limited,
                                            write({"done.txt": "ok"})]},
                        run={"rate_limit_backoff": 0.4}, max_iterations=1)
    repo.create("tm-b", checks=["test -f done.txt"])

    summary = inproc.run()

    assert summary.exit_code == 0, summary.to_json()
    assert [e["seconds"] for e in inproc.of("agent_paused")] == [0.4, 0.8, 1.6]
    assert [a["outcome"] for a in repo.attempts("tm-b")] == [
        "rate_limited", "rate_limited", "rate_limited", "passed"]
    assert [round(a["detail"]["retry_after_s"], 3) for a in repo.attempts("tm-b")[:3]] == [
        0.4, 0.8, 1.6]
    repo.assert_all_landed_once(["tm-b"])
    # the back-off went through the injected clock: 2.8 s slept on it, none really
    assert sum(inproc.clock.slept) >= 2.7


def test_a_long_back_off_takes_no_real_time(tmp_path: Path) -> None:
    repo, inproc = mill(tmp_path, {"tm-l": [rate_limited(retry_after_s=3600),
                                            write({"done.txt": "ok"})]}, max_iterations=1)
    repo.create("tm-l", checks=["test -f done.txt"])
    wall = time.monotonic()
    summary = inproc.run()
    assert summary.exit_code == 0, summary.to_json()
    assert [e["seconds"] for e in inproc.of("agent_paused")] == [3600.0]
    assert sum(inproc.clock.slept) >= 3599
    assert time.monotonic() - wall < 120  # an hour's pause, in no time
