"""Roles in the mill (issue 13): a task's role sets its agent and model, prompt, default
checks, iterations, parallelism, landing and daily budget. The mill runs in this process with
scripted turns (:class:`~taskmill.testing.turns.ScriptedTurns`) and a fake clock, so a day
passes in no time."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from mill_helpers import MillRepo
from taskmill.agents.base import AgentConfig
from taskmill.clock import FixedClock
from taskmill.mill.engine import Mill, RunSummary
from taskmill.mill.events import EventBus
from taskmill.mill.settings import RunSettings
from taskmill.project import open_project
from taskmill.testing.turns import FakeTurn, ScriptedTurns, Step, write

FAKE_AGENT = AgentConfig(name="fake", adapter="exec", command=("not-run",))
DAY1 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def add_role(repo: MillRepo, name: str, text: str) -> None:
    path = repo.root / ".taskmill" / "roles" / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


class Harness:
    """The mill of ``repo`` in this process, on a clock the test moves."""

    def __init__(self, repo: MillRepo, turns: ScriptedTurns, *, start: datetime = DAY1,
                 **settings: Any) -> None:
        self.repo = repo
        self.turns = turns
        self.clock = FixedClock(start, step=0.001)
        self.events: list[dict[str, Any]] = []
        self.settings = settings

    def run(self) -> RunSummary:
        env = dict(os.environ)
        with open_project(self.repo.root, env) as project:
            settings = RunSettings.from_config(project.config.run, {
                "contain": "group", "allow_unchecked": True, **self.settings})
            bus = EventBus(self.clock)
            bus.subscribe(self.events.append)
            return Mill(project.paths, project.config, settings, env=env, clock=self.clock,
                        bus=bus, agent_override=FAKE_AGENT, turn_runner=self.turns).run()

    def of(self, kind: str, task: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.events
                if e["event"] == kind and (task is None or e.get("task") == task)]

    def cli(self, *args: str) -> Any:
        """``taskmill ARGS --json`` in this process, on the harness's clock."""
        import json

        from taskmill.cli import cli
        from taskmill.cli.common import Ctx

        result = CliRunner().invoke(cli, [*args, "--json"], obj=Ctx(
            cwd=self.repo.root, env=dict(os.environ), clock=self.clock), prog_name="taskmill")
        assert result.exit_code == 0, (args, result.output, result.exception)
        text = result.stdout.strip()
        if text.startswith("[") or text.startswith("{"):
            return json.loads(text)
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def role_task(repo: MillRepo, task_id: str, role: str | None, *,
              checks: list[str] | None = None, priority: int = 2,
              metadata: dict[str, Any] | None = None) -> str:
    repo.ledger.create(f"task {task_id}", task_id=task_id, role=role, checks=checks,
                       priority=priority, metadata=metadata)
    return task_id


# -- the daily budget -----------------------------------------------------------------------


def test_a_role_whose_daily_tokens_run_out_stops_getting_work_that_day_and_resumes_the_next(
        tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    add_role(repo, "writer", 'description = "writes"\n[budget]\ntokens_per_day = 100\n')
    role_task(repo, "tm-a", "writer", checks=["test -f a.txt"], priority=1)
    role_task(repo, "tm-b", "writer", checks=["test -f b.txt"], priority=2)
    role_task(repo, "tm-c", None, checks=["test -f c.txt"], priority=3)
    turns = ScriptedTurns({
        "tm-a": [write({"a.txt": "a\n"}, input_tokens=120, output_tokens=30)],
        "tm-b": [write({"b.txt": "b\n"}, input_tokens=10, output_tokens=5)],
        "tm-c": [write({"c.txt": "c\n"}, input_tokens=1000)],
    })
    mill = Harness(repo, turns, workers=1)

    first = mill.run()

    assert first.exit_code == 0, first.to_json()  # waiting for the budget is not a failure
    assert {o.task_id: o.outcome for o in first.outcomes} == {"tm-a": "landed",
                                                             "tm-c": "landed"}
    assert turns.calls("tm-b") == []
    held = first.to_json()["held"]
    assert [(h["task"], h["role"], h["until"]) for h in held] == [
        ("tm-b", "writer", "2026-03-03T00:00:00.000000Z")]
    assert "150 of 100 tokens" in held[0]["reason"]
    assert [e["task"] for e in mill.of("held")] == ["tm-b"]
    # visible, with the reason: show, list, ready, blocked
    shown = mill.cli("show", "tm-b")
    assert shown["status"] == "open" and "daily token budget" in shown["held"]
    assert "2026-03-03 00:00 UTC" in shown["held"]
    assert [t["id"] for t in mill.cli("ready")] == []
    assert {t["id"]: t.get("held") is not None for t in mill.cli("list")} == {
        "tm-a": False, "tm-b": True, "tm-c": False}
    blocked = mill.cli("blocked")
    assert [b["id"] for b in blocked] == ["tm-b"] and "writer" in blocked[0]["reasons"][0]
    by_role = mill.cli("stats", "--by", "role")
    assert by_role["writer"]["today"] == {"tokens": 150, "cost_usd": 0.0,
                                          "tokens_per_day": 100, "cost_per_day": None}
    assert by_role["(none)"]["input_tokens"] == 1000  # tm-c: no role, no budget

    # the same day, another run: still nothing for the writer
    mill.clock.advance(3600)
    again = mill.run()
    assert again.outcomes == [] and [h["task"] for h in again.to_json()["held"]] == ["tm-b"]
    assert turns.calls("tm-b") == []

    # the next day the budget starts again from zero
    mill.clock.advance((datetime(2026, 3, 3, 0, 0, 1, tzinfo=UTC) - mill.clock.now())
                       .total_seconds())
    assert mill.cli("show", "tm-b").get("held") is None
    assert [t["id"] for t in mill.cli("ready")] == ["tm-b"]
    second = mill.run()
    assert {o.task_id: o.outcome for o in second.outcomes} == {"tm-b": "landed"}
    assert second.to_json()["held"] == []
    assert [a["role"] for a in repo.attempts("tm-b")] == ["writer"]


def test_a_task_whose_role_runs_out_between_turns_is_given_back_not_blocked(
        tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    add_role(repo, "writer", "[budget]\ncost_per_day = 1.0\n")
    role_task(repo, "tm-a", "writer", checks=["test -f done.txt"])
    turns = ScriptedTurns({"tm-a": [write({"x.txt": "1\n"}, cost_usd=0.6),
                                    write({"y.txt": "2\n"}, cost_usd=0.6),
                                    write({"done.txt": "ok\n"})]})
    mill = Harness(repo, turns)

    first = mill.run()

    # two turns (the second one spent the budget), then the task waits: open, unclaimed
    assert [o.outcome for o in first.outcomes] == ["held"] and first.exit_code == 0
    assert len(turns.calls("tm-a")) == 2
    task = repo.task("tm-a")
    assert (task["status"], task["assignee"]) == ("open", None)
    assert "daily cost budget ($1.20 of $1.00" in task["comments"][-1]["text"]
    assert "held" in [e.kind for e in repo.ledger.events("tm-a")]
    mill.clock.advance(24 * 3600)
    second = mill.run()
    assert [o.outcome for o in second.outcomes] == ["landed"]
    assert len(turns.calls("tm-a")) == 3


# -- agent, model, prompt, checks, iterations ---------------------------------------------


def test_a_role_sets_agent_model_prompt_checks_and_iterations(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    prompts = repo.root / ".taskmill" / "prompts"
    prompts.mkdir(parents=True)
    (prompts / "notes.md").write_text(
        "Write the notes for {{ task.title }} in area {{ vars.area }}.\n"
        "You are the {{ role.name }} ({{ role.description }}); turn {{ run.iteration }} of"
        " {{ run.max_iterations }}.\n", encoding="utf-8")
    add_role(repo, "writer", 'description = "writes notes"\nagent = "claude"\n'
                             'model = "opus-test"\nprompt = "prompts/notes.md"\n'
                             'checks = ["test -f notes.txt"]\nmax_iterations = 2\n')
    role_task(repo, "tm-good", "writer", metadata={"vars": {"area": "core"}})
    role_task(repo, "tm-bad", "writer", metadata={"vars": {"area": "web"}})
    role_task(repo, "tm-own", "writer", checks=["test -f own.txt"],
              metadata={"vars": {"area": "x"}})
    turns = ScriptedTurns({
        "tm-good": [write({"notes.txt": "notes\n"})],
        "tm-bad": [write({"one.txt": "1\n"}), write({"two.txt": "2\n"}),
                   write({"notes.txt": "too late\n"})],
        "tm-own": [write({"own.txt": "mine\n"})],  # its own checks win over the role's
    })

    summary = Harness(repo, turns).run()

    outcomes = {o.task_id: o.outcome for o in summary.outcomes}
    assert outcomes == {"tm-good": "landed", "tm-bad": "blocked", "tm-own": "landed"}
    prompt = turns.calls("tm-good")[0].prompt
    assert "## Your role: writer" in prompt
    assert ("Write the notes for task tm-good in area core.\nYou are the writer (writes "
            "notes); turn 1 of 2.") in prompt
    assert "test -f notes.txt" in prompt  # the role's checks are the task's
    assert "iteration 1 of at most 2" in prompt
    assert len(turns.calls("tm-bad")) == 2  # max_iterations = 2, not [run]'s 5
    assert "reached --max-iterations (2)" in repo.task("tm-bad")["comments"][-1]["text"]
    attempts = repo.attempts("tm-good")
    assert [(a["agent"], a["model"], a["role"]) for a in attempts] == [
        ("claude", "opus-test", "writer")]
    started = [e for e in repo.ledger.events("tm-good") if e.kind == "attempt_started"]
    assert started[0].data["role"] == "writer"


def test_an_undefined_template_variable_blocks_the_task_naming_the_template(
        tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    prompts = repo.root / ".taskmill" / "prompts"
    prompts.mkdir(parents=True)
    (prompts / "p.md").write_text("Hello\n{{ task.title }} for {{ vars.branch }}\n",
                                  encoding="utf-8")
    add_role(repo, "r", 'prompt = "prompts/p.md"\n')
    role_task(repo, "tm-a", "r", checks=["true"])
    turns = ScriptedTurns({})

    summary = Harness(repo, turns).run()

    assert [o.outcome for o in summary.outcomes] == ["blocked"]
    assert turns.turns == []  # no agent turn is spent on a prompt that cannot be made
    reason = repo.task("tm-a")["comments"][-1]["text"]
    assert f"prompt template {prompts / 'p.md'}, line 2" in reason
    assert "'dict object' has no attribute 'branch'" in reason


def test_a_task_naming_a_role_with_no_file_is_skipped_naming_the_roles(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    add_role(repo, "writer", "")
    role_task(repo, "tm-a", "ghost", checks=["true"])  # written past the CLI's check

    summary = Harness(repo, ScriptedTurns({})).run()

    assert summary.outcomes == []
    assert "role 'ghost' has no file .taskmill/roles/ghost.toml; roles: writer" in (
        summary.skipped[0]["reason"])


# -- land = false, max_parallel -----------------------------------------------------------


def test_a_role_that_does_not_land_closes_the_task_and_keeps_the_branch(
        tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    add_role(repo, "reviewer", 'land = false\nchecks = ["test -f review.md"]\n')
    role_task(repo, "tm-r", "reviewer")
    tip = repo.tip()
    turns = ScriptedTurns({"tm-r": [write({"review.md": "looks good\n"})]})

    summary = Harness(repo, turns).run()

    assert [o.outcome for o in summary.outcomes] == ["checked"] and summary.exit_code == 0
    assert repo.tip() == tip  # nothing merged
    task = repo.task("tm-r")
    assert task["status"] == "closed"
    assert task["close_reason"].startswith("checked, not landed (role 'reviewer' does not land)")
    assert repo.git("show", "taskmill/tm-r:review.md") == "looks good\n"  # the branch stays
    assert "kept" in [e.kind for e in repo.ledger.events("tm-r")]


def test_max_parallel_limits_how_many_of_a_role_s_tasks_run_at_once(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    add_role(repo, "solo", "max_parallel = 1\n")
    lock = threading.Lock()
    running: dict[str, int] = {"solo": 0, "all": 0}
    most: dict[str, int] = {"solo": 0, "all": 0}

    def step(turn: FakeTurn) -> None:
        kinds = ("solo", "all") if turn.task_id.startswith("tm-s") else ("all",)
        with lock:
            for kind in kinds:
                running[kind] += 1
                most[kind] = max(most[kind], running[kind])
        time.sleep(0.15)  # long enough for the other workers to start theirs
        (turn.worktree / f"{turn.task_id}.txt").write_text("x\n", encoding="utf-8")
        with lock:
            for kind in kinds:
                running[kind] -= 1

    for name in ("tm-s1", "tm-s2", "tm-s3"):
        role_task(repo, name, "solo", checks=[f"test -f {name}.txt"])
    role_task(repo, "tm-free", None, checks=["test -f tm-free.txt"])
    steps: dict[str, list[Step]] = {t: [step] for t in ("tm-s1", "tm-s2", "tm-s3", "tm-free")}

    summary = Harness(repo, ScriptedTurns(steps), workers=3).run()

    assert sorted(o.outcome for o in summary.outcomes) == ["landed"] * 4
    assert most["solo"] == 1  # three workers, but the role allows one at a time
    assert most["all"] >= 2  # while another task ran beside it
