"""What travels through the Temporal cluster is JSON of a closed set of types (never pickle):
every type round-trips, a policy read back acts as the one packed, and anything else (an
unknown type or field, a pickle, another payload format) is refused without being run."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import enum
import inspect
import json
import pickle
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskmill import __version__
from taskmill.agents.base import AgentConfig
from taskmill.mill import policy as p
from taskmill.mill.settings import RunSettings
from taskmill.temporal.payloads import (
    ACTIONS,
    FORMAT,
    RESULTS,
    TYPES,
    PayloadRefused,
    pack,
    unpack,
)
from taskmill.temporal.spec import WORKFLOW_TYPE, Payload, RunSpec, TaskSpec
from temporal_helpers import Cluster

# -- values of the travelling types --------------------------------------------------------

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=8)


def values(hint: Any) -> st.SearchStrategy[Any]:
    """Any value of the type ``hint`` (a field's annotation) that JSON can carry."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        return JSONISH
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(values(a) for a in args))
    if hint is type(None):
        return st.none()
    if hint is bool:
        return st.booleans()
    if hint is int:
        return st.integers(-2**40, 2**40)
    if hint is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    if hint is str:
        return st.text(max_size=12)
    if inspect.isclass(hint) and issubclass(hint, enum.Enum):
        return st.sampled_from(list(hint))
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(values(args[0]), max_size=3).map(tuple)
        return st.tuples(*(values(a) for a in args))
    if origin is list:
        return st.lists(values(args[0]), max_size=3)
    if origin in (dict, Mapping):
        return st.dictionaries(values(args[0]), values(args[1]), max_size=3)
    if dataclasses.is_dataclass(hint):
        return instances(hint)
    raise AssertionError(f"no strategy for {hint!r}")


def instances(cls: type[Any]) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls, vars(inspect.getmodule(cls)))
    return st.builds(cls, **{f.name: values(hints[f.name]) for f in dataclasses.fields(cls)
                             if f.init})


def wire(payload: Any) -> Any:
    """As the cluster carries it (temporalio's JSON converter)."""
    return json.loads(json.dumps(payload))


DATACLASSES = [cls for cls in TYPES.values() if dataclasses.is_dataclass(cls)]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(DATACLASSES).flatmap(instances))
def test_every_travelling_type_round_trips(value: Any) -> None:
    kind = RunSpec if isinstance(value, RunSpec) else (
        p.Action if isinstance(value, p.Action) else p.Result)
    payload = pack(value)
    assert payload["type"] == type(value).__name__
    back = unpack(wire(payload), kind)
    assert type(back) is type(value)
    assert back == value
    assert pack(back) == payload


def test_the_types_are_every_action_and_result_of_the_policy_and_use_no_reserved_key() -> None:
    def concrete(base: type) -> set[type]:
        return {c for c in vars(p).values() if inspect.isclass(c) and issubclass(c, base)
                and dataclasses.is_dataclass(c)}
    assert set(ACTIONS) == concrete(p.Action)
    assert set(RESULTS) == concrete(p.Result)
    for cls in DATACLASSES:
        assert not {f.name for f in dataclasses.fields(cls)} & {"type", "format", "taskmill"}


# -- the policy, as the policy makes it ------------------------------------------------------

ANSWERS: dict[type[p.Action], type[p.Result]] = {
    p.FindLanding: p.LandingFound, p.CheckCommands: p.CommandsChecked,
    p.AcquireWorkspace: p.WorkspaceAcquired, p.ReadBranch: p.BranchRead,
    p.Review: p.Reviewed, p.AwaitAgent: p.AgentReady, p.Turn: p.TurnDone,
    p.RunChecks: p.ChecksDone, p.ReviewChange: p.ChangeReviewed, p.PauseAgent: p.Paused,
    p.FinishAttempt: p.Recorded, p.RecordRejection: p.Recorded, p.Land: p.LandDone,
    p.Park: p.LandDone, p.MergeTarget: p.TargetMerged}
"""What the worker answers to each action that is not terminal."""

TEXTS = st.sampled_from(["", "boom", "1 failed in 0.3s", "1 failed in 0.5s", "abc"])
"""Few distinct failures: the breakers see repeats."""
RARELY = st.sampled_from([False] * 6 + [True])
"""Flags that end the walk (the run stopping, a cut turn): seldom set."""


def answer(action: p.Action, data: st.DataObject) -> p.Result:
    cls = ANSWERS[type(action)]
    overrides: dict[str, st.SearchStrategy[Any]] = {
        "failure_text": TEXTS, "detail": TEXTS, "head": st.sampled_from(["", "h1", "h2"]),
        "commit": st.sampled_from([None, None, None, "c1"]),
        "blocking": st.sampled_from(["", "nit"]),
        "not_found": st.sampled_from([None, None, None, "sh: x: not found"]),
        "problem": st.sampled_from([None] * 6 + ["no such command"]),
        "held": st.sampled_from([None, None, None, "budget"]),
        "restarted": st.sampled_from([None, None, None, "its branch was replaced"]),
        "history": HISTORY, "ok": st.sampled_from([True, True, False]),
        "conflict_markers": st.sampled_from(["", "", "", "a.txt"]),
        "failed": st.sampled_from([None, None, "no answer"]),
        **{flag: RARELY for flag in ("stopping", "cancelled", "rate_limited", "cut",
                                     "timed_out", "wait")}}
    hints = typing.get_type_hints(cls, vars(p))
    fields = {f.name: overrides[f.name] if f.name in overrides else values(hints[f.name])
              for f in dataclasses.fields(cls)}
    result: p.Result = data.draw(st.builds(cls, **fields))
    if isinstance(result, p.LandDone) and result.outcome in (
            p.LandOutcome.LANDED, p.LandOutcome.ALREADY_LANDED, p.LandOutcome.SATISFIED):
        result = dataclasses.replace(result, commit="c1")
    return result


LIMITS = st.builds(p.Limits, max_iterations=st.integers(1, 6),
                   max_tokens=st.none() | st.integers(10**3, 10**6),
                   max_cost=st.none() | st.floats(1, 10), no_change_limit=st.integers(1, 3),
                   same_failure_limit=st.integers(1, 4), turn_timeout=st.floats(1, 3600))
PAST = st.builds(p.PastAttempt, id=st.integers(1, 9),
                 outcome=st.sampled_from([o.value for o in p.AttemptOutcome]),
                 at=st.sampled_from([None, "h1", "h2"]),
                 failure=st.none() | st.tuples(st.sampled_from(["checks", "conflict"]), TEXTS),
                 rejection=st.sampled_from([None, "conflict"]))
HISTORY = st.builds(p.History, iterations=st.integers(0, 2), last=st.none() | PAST)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(limits=LIMITS, history=HISTORY, lap=st.integers(1, 3),
       resumed=st.booleans(), parks=st.booleans(), land=st.sampled_from([True] * 6 + [False]),
       reviews=st.booleans(), approval=RARELY, approved=st.sampled_from([None, None, "h1"]),
       data=st.data())
def test_a_policy_read_back_acts_as_the_one_packed_at_every_step(
        limits: p.Limits, history: p.History, lap: int, resumed: bool, parks: bool,
        land: bool, reviews: bool, approval: bool, approved: str | None,
        data: st.DataObject) -> None:
    policy = p.TaskPolicy(limits, lap=lap, resumed=resumed, history=history, parks=parks,
                          land=land, reviews=reviews, approval=approval, approved=approved)
    action = policy.first()
    for _ in range(40):
        copy = unpack(wire(pack(policy)), p.TaskPolicy)
        assert vars(copy) == vars(policy)
        assert unpack(wire(pack(action)), p.Action) == action
        if isinstance(action, p.Terminal):
            return
        result = answer(action, data)
        back = unpack(wire(pack(result)), p.Result)
        assert back == result
        action = policy.next(result)
        assert copy.next(back) == action
        assert vars(copy) == vars(policy)


def test_a_policy_with_state_its_payload_does_not_carry_is_not_packed() -> None:
    policy = p.TaskPolicy(p.Limits(), lap=1, resumed=False, history=p.History())
    policy._queued = 1  # type: ignore[attr-defined]  # what a new attribute would be
    with pytest.raises(TypeError, match="TaskPolicy holds queued"):
        pack(policy)


def test_only_the_travelling_types_are_packed() -> None:
    with pytest.raises(TypeError, match="does not travel"):
        pack(p.History())  # type: ignore[arg-type]


# -- what is refused ----------------------------------------------------------------------


class Touch:
    """Unpickled, it creates ``path``: what an attacker's payload would do (run anything)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def test_a_pickle_is_refused_and_never_unpickled(tmp_path: Path) -> None:
    made = tmp_path / "pwned"
    blob = pickle.dumps(Touch(made))
    for data in (base64.b64encode(blob).decode(), blob):
        for kind in (RunSpec, p.TaskPolicy, p.Action, p.Result):
            with pytest.raises(PayloadRefused, match="never unpickled") as err:
                unpack(data, kind)
            assert err.value.non_retryable
    assert not made.exists()
    pickle.loads(blob).close()  # what pickle would have done with it
    assert made.exists()


@pytest.mark.parametrize(("data", "kind", "said"), [
    ({"type": "Popen", "args": ["touch", "x"]}, p.Action, "unknown type 'Popen'"),
    ({"type": "os.system"}, p.Result, "unknown type 'os.system'"),
    ({"iteration": 1, "failure": None}, p.Action, "unknown type None"),
    ({"type": "TaskSpec"}, RunSpec, "unknown type 'TaskSpec'"),
    (["Turn", 1], p.Action, "list, not a JSON object"),
    (pack(p.Turn(1, None)), p.Result, "a Turn where a Result was expected"),
    (pack(p.Recorded()), RunSpec, "a Recorded where a RunSpec was expected"),
    ({**pack(p.Turn(1, None)), "run": "rm -rf /"}, p.Action, "Turn payload refused: unknown "
                                                              "fields run"),
    ({"type": "Turn", "iteration": "1", "failure": None}, p.Action,
     "Turn payload refused: iteration: Input should be a valid integer"),
    ({"type": "Turn", "failure": None}, p.Action, "Turn payload refused: iteration: Field "
                                                  "required"),
    ({"type": "Turn", "iteration": 1, "failure": {1, 2}}, p.Action,
     "Turn payload refused: not JSON data"),
    ({**pack(p.Reviewed(p.History(last=p.PastAttempt(1, "failed")), False)),
      "history": {"last": {"id": 1, "outcome": "failed", "code": "x"}}}, p.Result,
     "Reviewed payload refused: unknown fields history.last.code"),
    ({**pack(p.FinishAttempt(p.AttemptOutcome.PASSED)), "outcome": "exploded"}, p.Action,
     "FinishAttempt payload refused: outcome: Input should be"),
    ({**pack(p.TaskPolicy(p.Limits(), lap=1, resumed=False, history=p.History())),
      "hook": "x"}, p.TaskPolicy, "TaskPolicy payload refused: hook: Extra inputs"),
    ({**pack(p.TaskPolicy(p.Limits(), lap=1, resumed=False, history=p.History())),
      "then": {"type": "Eval"}}, p.TaskPolicy, "unknown type 'Eval'"),
])
def test_anything_else_is_refused_saying_what_and_where(data: Any, kind: type, said: str
                                                        ) -> None:
    with pytest.raises(PayloadRefused) as err:
        unpack(data, kind)
    assert said in err.value.message
    assert err.value.non_retryable and err.value.type == "PayloadRefused"


RUN = RunSpec("r1", "main", RunSettings(only=["tm-a"], max_cost=1.5),
              AgentConfig("cmd", "exec", command=("sh", "-c", "true"), options={"k": [1]}))


def test_the_run_carries_its_format_and_taskmill_version() -> None:
    payload = pack(RUN)
    assert payload["format"] == FORMAT and payload["taskmill"] == __version__
    assert unpack(wire(payload), RunSpec) == RUN


@pytest.mark.parametrize(("format_", "version", "upgrade"), [
    (FORMAT + 1, "9.0.0", "this worker"), (FORMAT - 1, "0.0.1", "the client"),
    (None, None, "the client"), ("1", "0.1.0", "the client")])
def test_a_run_in_another_format_is_refused_saying_which_side_to_upgrade(
        format_: Any, version: Any, upgrade: str) -> None:
    payload = {k: v for k, v in pack(RUN).items() if k not in ("format", "taskmill")}
    if format_ is not None:
        payload |= {"format": format_, "taskmill": version}
    with pytest.raises(PayloadRefused) as err:
        unpack(payload, RunSpec)
    theirs = version or "an unknown version"
    assert err.value.message.startswith(
        f"worker runs taskmill {__version__}, the client {theirs}: upgrade {upgrade}")
    assert err.value.non_retryable


# -- a worker, given such payloads ----------------------------------------------------------


async def outcomes_of(cluster: Cluster, task_id: str, runs: list[Payload]
                      ) -> list[dict[str, Any]]:
    """Task workflows started as a client would, each with ``run`` as the run's payload."""
    from temporalio.client import Client

    client = await Client.connect(cluster.address)
    handles = [await client.start_workflow(
        WORKFLOW_TYPE, TaskSpec(task_id, 1, False, run), id=f"{cluster.queue}-{i}",
        task_queue=cluster.queue) for i, run in enumerate(runs)]
    return [await asyncio.wait_for(h.result(), 90) for h in handles]


def test_a_worker_refuses_a_pickle_and_another_format_at_once_running_nothing(
        tmp_path: Path, temporal_server: str) -> None:
    cluster = Cluster(tmp_path, temporal_server)
    try:
        task = cluster.repo.create("tm-a")
        cluster.start_worker(1)
        made = tmp_path / "pwned"
        pickled = base64.b64encode(pickle.dumps(Touch(made))).decode()
        newer = {**pack(RUN), "format": FORMAT + 1, "taskmill": "9.0.0"}
        pickle_out, newer_out = asyncio.run(outcomes_of(cluster, task, [pickled, newer]))
    finally:
        cluster.stop()
    assert not made.exists()  # never unpickled
    for out in (pickle_out, newer_out):  # refused once, not retried nor bound again
        assert out["task_id"] == task and out["outcome"] == "error", out
        assert out["reason"].startswith("taskmill error (not the task's fault): a payload "
                                        "was refused: "), out
    assert "never unpickled" in pickle_out["reason"]
    assert (f"worker runs taskmill {__version__}, the client 9.0.0: upgrade this worker"
            in newer_out["reason"])
    assert cluster.repo.task(task)["status"] == "open"
    assert cluster.repo.attempts(task) == []
    assert '"bound"' not in cluster.log(1)
