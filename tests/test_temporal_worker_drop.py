"""A task whose workflow went on without this worker's stay (a refused payload, a step out of
step, the task bound again here) frees its slot and gives its worktree back at once: a
worker otherwise kept both until it restarted, and polled for fewer tasks."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("temporalio")

from temporalio.exceptions import ApplicationError

from conftest import run_git
from mill_helpers import MillRepo, wait_for
from taskmill.clock import FixedClock
from taskmill.mill.events import EventBus
from taskmill.mill.policy import Interrupt
from taskmill.mill.settings import RunSettings
from taskmill.temporal.payloads import PayloadRefused, pack
from taskmill.temporal.spec import RunSpec, TaskSpec
from taskmill.temporal.worker import TaskSlots, WorkerActivities, WorkerServices


@pytest.fixture
def acts(tmp_path: Path) -> Iterator[tuple[WorkerActivities, MillRepo]]:
    repo = MillRepo(tmp_path, checks=["true"],
                    agents={"noop": {"adapter": "exec", "command": ["true"]}})
    repo.create("tm-a")
    origin = tmp_path / "origin.git"
    run_git(tmp_path, "clone", "-q", "--bare", str(repo.root), str(origin))
    env = {"TASKMILL_DIR": str(repo.root / ".taskmill"), "HOME": str(tmp_path),
           "PATH": "/usr/bin:/bin"}
    services = WorkerServices(str(origin), tmp_path / "worker", env=env, clock=FixedClock(),
                              bus=EventBus(FixedClock()))
    activities = WorkerActivities(services, queue="own", identity="w1", slots=1)
    yield activities, repo
    activities.close()
    services.close()


def spec(lap: int = 1) -> TaskSpec:
    return TaskSpec("tm-a", lap, False, pack(RunSpec("r1", "main", RunSettings(agent="noop"))))


def clean_slots(acts: WorkerActivities) -> list[str]:
    return sorted(p.name for p in acts.services.pool.root.glob("w*.clean"))


def test_binding_the_task_again_here_ends_its_old_stay(acts) -> None:
    activities, _ = acts
    slots = TaskSlots(1, activities.live)
    activities._bind(spec(), False, 0, "wf/0")
    assert list(activities.live) == ["wf/0"] and not slots._free()
    assert clean_slots(activities) == []  # its worktree is held
    # the workflow lost its step (a timeout, an error) and binds again: here, as it happens
    activities._bind(spec(), True, 1, "wf/1")
    assert list(activities.live) == ["wf/1"]  # one slot, not two
    activities.drop("wf/1")
    assert activities.live == {} and slots._free()
    assert clean_slots(activities) == ["w0.clean"]  # the worktree was given back


def test_a_step_out_of_step_frees_the_slot_and_the_worktree(acts) -> None:
    activities, _ = acts
    activities._bind(spec(), False, 0, "wf/0")
    worker = activities.live["wf/0"]
    with pytest.raises(ApplicationError) as raised:
        activities._step("wf/0", worker, Interrupt("not what it asked for"))
    assert raised.value.type == "OutOfStep"
    assert activities.live == {} and clean_slots(activities) == ["w0.clean"]


def test_a_refused_step_payload_frees_the_slot_and_the_worktree(acts) -> None:
    activities, repo = acts
    activities._bind(spec(), False, 0, "wf/0")
    with pytest.raises(PayloadRefused):
        asyncio.run(activities.step("wf/0", "gASVAAAAAAAAAAA="))  # a pickle: refused
    assert activities.live == {} and clean_slots(activities) == ["w0.clean"]
    # and the task's audit trail says why its stay ended
    errors = [e for e in repo.ledger.events("tm-a") if e.kind == "internal_error"]
    assert len(errors) == 1 and "PayloadRefused" in json.dumps(errors[0].data), errors


def test_a_step_the_cluster_gave_up_on_frees_the_slot_once_its_thread_is_done(
        acts, monkeypatch: pytest.MonkeyPatch) -> None:
    """A heartbeat that came too late (a loaded machine): the cluster cancels the step and
    binds the task again, elsewhere. Its stay here ended: kept, it held its slot for good."""
    from temporalio.activity import ActivityCancellationDetails
    from temporalio.testing import ActivityEnvironment

    activities, repo = acts
    repo.create("tm-b", checks=["false"])  # its step ends at its next turn: it stays bound
    activities._bind(TaskSpec("tm-b", 1, False, spec().run), False, 0, "wf/0")
    worker = activities.live["wf/0"]
    entered, release = threading.Event(), threading.Event()
    real = activities._step

    def held(key: str, task_worker: object, action: object) -> object:
        entered.set()
        release.wait(30)
        return real(key, task_worker, action)  # type: ignore[arg-type]

    monkeypatch.setattr(activities, "_step", held)
    env = ActivityEnvironment()

    async def cancelled_mid_step() -> None:
        step = asyncio.ensure_future(
            env.run(activities.step, "wf/0", pack(activities._next["wf/0"])))
        while not entered.is_set():
            await asyncio.sleep(0.01)
        env.cancel(ActivityCancellationDetails(timed_out=True))
        with pytest.raises(asyncio.CancelledError):
            await step

    asyncio.run(cancelled_mid_step())
    assert "wf/0" in activities.live  # its thread still runs the step: nothing given back
    assert clean_slots(activities) == []
    release.set()
    assert wait_for(lambda: not activities.live and clean_slots(activities) == ["w0.clean"],
                    timeout=30), activities.live
    assert worker.out.task_id == "tm-b"
