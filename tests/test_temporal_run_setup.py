"""A ``taskmill worker``'s setup for its runs: what does not change between runs is probed
once, from the worker's start (not on a run's first task); what depends on a run's settings
is made once per distinct settings; a run with other settings, or after the config changed,
gets its own."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from conftest import run_git
from mill_helpers import MillRepo, agent_script
from taskmill.clock import FixedClock
from taskmill.config import load_config
from taskmill.mill.engine import Mill
from taskmill.mill.events import EventBus
from taskmill.mill.settings import RunSettings

pytest.importorskip("temporalio")

from taskmill.temporal.spec import RunSpec
from taskmill.temporal.worker import WorkerServices, build_id, serve
from temporal_helpers import Cluster


@pytest.fixture
def services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A worker's services on a clone of a bare remote, the ledger on this machine;
    ``services.chosen`` counts the sandbox choices made (each probes and writes)."""
    repo = MillRepo(tmp_path)
    origin = tmp_path / "origin.git"
    run_git(tmp_path, "clone", "-q", "--bare", str(repo.root), str(origin))
    chosen: list[str] = []
    choose = Mill.choose_sandbox

    def counting(self: Mill) -> tuple[dict[str, Any], str]:
        chosen.append(self.settings.contain)
        return choose(self)

    monkeypatch.setattr(Mill, "choose_sandbox", counting)
    events: list[dict[str, Any]] = []
    bus = EventBus(FixedClock())
    bus.subscribe(lambda e: events.append(e))
    env = {**os.environ, "TASKMILL_DIR": str(repo.root / ".taskmill")}
    svc = WorkerServices(str(origin), tmp_path / "worker", env=env, clock=FixedClock(),
                         bus=bus)
    svc.warm()  # as serve() does once the worker polls
    svc.chosen = chosen  # type: ignore[attr-defined]
    svc.events = events  # type: ignore[attr-defined]
    assert svc.setups.warmed.wait(30)
    yield svc


def run(run_id: str, **settings: Any) -> RunSpec:
    return RunSpec(run_id, "main", RunSettings(**settings))


def test_the_worker_makes_the_default_runs_setup_before_its_first_task(services) -> None:
    # warmed at start: the sandbox choice of a plain `taskmill run` ([run] as committed)
    assert services.chosen == ["auto"]
    first = services.context(run("r1"))
    second = services.context(run("r2"))
    assert services.chosen == ["auto"]  # neither run made it again
    assert first.containment == second.containment
    assert first.sandbox == second.sandbox == {"enabled": False,
                                               "why": "[sandbox] enabled = false"}
    assert first.agent_git_env == second.agent_git_env
    assert first.agent_git_env["GIT_AUTHOR_NAME"]
    joined = [e for e in services.events if e["event"] == "run_joined"]
    assert [e["run"] for e in joined] == ["r1", "r2"]
    assert all(isinstance(e["setup_ms"], float) for e in joined)


def test_a_run_with_other_settings_gets_its_own_setup(services) -> None:
    auto = services.context(run("r1"))
    group = services.context(run("r2", contain="group"))
    again = services.context(run("r3", contain="group"))
    assert services.chosen == ["auto", "group"]
    assert group.containment.mode == "group"
    assert group.containment.note == "as configured"
    assert auto.containment.note != "as configured"
    assert again.containment == group.containment
    assert group.settings.contain == "group" and auto.settings.contain == "auto"


def test_a_config_change_between_runs_is_honoured(services) -> None:
    before = services.context(run("r1"))
    assert before.sandbox["enabled"] is False
    # the worker's config changes (sandbox on, a checks' variable): the next run sees it
    services.config = replace(load_config(services.paths.config),
                              sandbox={"enabled": "auto"}, check_env={"MARK": "changed"})
    after = services.context(run("r2"))
    assert services.chosen == ["auto", "auto"]
    assert after.sandbox != before.sandbox
    assert after.check_env["MARK"] == "changed"
    assert "MARK" not in before.check_env


def test_the_worker_names_its_build_so_the_sdk_does_not_hash_every_module(
        services, temporal_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import temporalio.worker._worker as sdk

    def hashing(**_: Any) -> str:
        raise AssertionError("the SDK hashed every loaded module for a build id")

    monkeypatch.setattr(sdk, "load_default_build_id", hashing)

    async def start_and_stop() -> None:
        stop = asyncio.Event()
        await serve(temporal_server, services, slots=1, identity="t", stop=stop,
                    task_queue=f"taskmill-build-{time.monotonic_ns()}", ready=stop.set)

    asyncio.run(start_and_stop())
    assert [e for e in services.events if e["event"] == "worker_started"]
    assert build_id() == build_id() and build_id().startswith("taskmill-")


WRITE_WHO = """
import sys
(WT / f"{TASK}.txt").write_text(f"{sys.argv[1]} did {TASK}\\n")
"""


def test_a_live_worker_works_each_run_with_that_runs_agent(tmp_path: Path,
                                                           temporal_server: str) -> None:
    cluster = Cluster(tmp_path, temporal_server, checks=["test -f README.md"])
    try:
        agent = agent_script(tmp_path / "agent.py", WRITE_WHO, spy=cluster.repo.spy)
        cluster.repo.create("tm-a")
        cluster.start_worker(1)
        first = cluster.run("--agent-cmd", f"{agent} first")
        assert first.returncode == 0, first.describe() + cluster.log(1)
        cluster.repo.create("tm-b")
        second = cluster.run("--agent-cmd", f"{agent} second")
        assert second.returncode == 0, second.describe() + cluster.log(1)
        landings = cluster.remote_landings()
        shown = {tid: cluster.repo.git("show", f"{landings[tid][0]}:{tid}.txt").strip()
                 for tid in ("tm-a", "tm-b")}
        assert shown == {"tm-a": "first did tm-a", "tm-b": "second did tm-b"}
        joined = [line for line in cluster.log(1).splitlines() if '"run_joined"' in line]
        assert len(joined) == 2, cluster.log(1)
        started = [line for line in cluster.log(1).splitlines() if '"worker_started"' in line]
        assert '"start_ms"' in started[0]
    finally:
        cluster.stop()
