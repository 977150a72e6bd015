"""The mill's objects as they travel through the Temporal cluster: plain JSON, never pickle.

What a workflow is given and what its activities hand back carries objects of the mill: the
run (:class:`~.spec.RunSpec`, its settings and agent override), the task's
:class:`~taskmill.mill.policy.TaskPolicy`, and the policy's actions and results. Each travels
as a JSON object tagged with its type, ``{"type": "Turn", "iteration": 2, "failure": null}``,
read back with pydantic (``TypeAdapter`` over the dataclasses). The set of types is closed
(:data:`TYPES`): a payload of another type, with a field its type does not have, or with a
value of the wrong kind is refused (:class:`PayloadRefused`, naming the type and what is
wrong), and nothing in a payload is ever executed. Anyone who can start or signal a
workflow in the namespace can hand a worker any payload; with pickle that was code
execution on every worker.

The run's payload carries the format (:data:`FORMAT`) and the client's taskmill version: a
worker that does not read that format fails the task's activity at once, not retried,
saying which side to upgrade (the other payloads travel within one run's workflow and its
workers, all of which read the run's).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from temporalio.exceptions import ApplicationError

from .. import __version__
from ..mill import policy as p
from .spec import RunSpec

FORMAT = 1
"""The payloads' format. Bump it when a travelling type changes in a way an older worker
would misread (a field removed or retyped; an added field with a default is read by newer
workers, and refused by older ones as unknown)."""

REFUSED = "PayloadRefused"
"""The error type of a refused payload (a non-retryable activity failure)."""

ACTIONS: tuple[type[p.Action], ...] = (
    p.FindLanding, p.CheckCommands, p.AcquireWorkspace, p.Review, p.AwaitAgent, p.Turn,
    p.RunChecks, p.ReviewChange, p.PauseAgent, p.FinishAttempt, p.Land, p.Park, p.ReadBranch,
    p.MergeTarget, p.RecordRejection, p.Close, p.Satisfy, p.AwaitApproval, p.Block, p.Keep,
    p.Wait, p.Interrupt)
RESULTS: tuple[type[p.Result], ...] = (
    p.LandingFound, p.CommandsChecked, p.WorkspaceAcquired, p.BranchRead, p.TargetMerged,
    p.Reviewed, p.AgentReady, p.TurnDone, p.ChecksDone, p.ChangeReviewed, p.Paused,
    p.Recorded, p.LandDone)


class PayloadRefused(ApplicationError):
    """A payload that is not one of the mill's objects as this taskmill writes them. Raised
    in an activity, it fails it without retrying (the same payload would be refused again)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, type=REFUSED, non_retryable=True)


class PolicyState(BaseModel):
    """A :class:`~taskmill.mill.policy.TaskPolicy` as data: its settings and its state (the
    attributes it holds, without their leading underscore)."""

    model_config = ConfigDict(extra="forbid")

    limits: p.Limits
    lap: int
    resumed: bool
    history: p.History
    parks: bool
    land: bool
    reviews: bool
    approval: bool
    approved: str | None
    rejoin: str | None
    failure: tuple[str, str] | None
    no_change: int
    signatures: dict[str, int]
    turn_timed_out: bool
    then: dict[str, Any] | None
    """The action that follows the record in flight (packed)."""
    paused_error: str | None


TYPES: dict[str, type[Any]] = {
    cls.__name__: cls for cls in (RunSpec, p.TaskPolicy, *ACTIONS, *RESULTS)}
"""Every type that travels, by the tag its payloads carry."""

_TAG, _FORMAT, _VERSION = "type", "format", "taskmill"
_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {
    cls: TypeAdapter(PolicyState if cls is p.TaskPolicy else cls) for cls in TYPES.values()}
_STATE = frozenset(PolicyState.model_fields)

T = TypeVar("T")


def pack(value: RunSpec | p.TaskPolicy | p.Action | p.Result) -> dict[str, Any]:
    """``value`` as a JSON object: its fields, and its type under ``"type"``."""
    cls = type(value)
    if TYPES.get(cls.__name__) is not cls:
        raise TypeError(f"{cls.__name__} does not travel through Temporal (the types that "
                        f"do: {', '.join(TYPES)})")
    head: dict[str, Any] = {_TAG: cls.__name__}
    if isinstance(value, RunSpec):
        head |= {_FORMAT: FORMAT, _VERSION: __version__}
    body: Any = _policy_state(value) if isinstance(value, p.TaskPolicy) else value
    fields: dict[str, Any] = _ADAPTERS[cls].dump_python(body, mode="json")
    return head | fields


def unpack(data: object, kind: type[T]) -> T:
    """The object ``data`` is the payload of, which must be a ``kind`` (:class:`RunSpec`,
    :class:`~taskmill.mill.policy.TaskPolicy`, ``Action`` or ``Result``); refused
    (:class:`PayloadRefused`) when it is not exactly what :func:`pack` writes."""
    if isinstance(data, str | bytes):
        raise PayloadRefused(
            f"payload refused (where a {kind.__name__} was expected): a string, not a JSON "
            "object; never unpickled (taskmill before JSON payloads sent pickles: run "
            f"taskmill {__version__} or later on the client and every worker)")
    if not isinstance(data, Mapping):
        raise PayloadRefused(f"payload refused (where a {kind.__name__} was expected): "
                             f"{type(data).__name__}, not a JSON object")
    tag = data.get(_TAG)
    cls = TYPES.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise PayloadRefused(f"payload refused (where a {kind.__name__} was expected): "
                             f"unknown type {tag!r} (taskmill {__version__} knows "
                             f"{', '.join(TYPES)})")
    if not issubclass(cls, kind):
        raise PayloadRefused(f"payload refused: a {tag} where a {kind.__name__} was "
                             "expected")
    body = {k: v for k, v in data.items() if k != _TAG}
    if cls is RunSpec:
        _check_format(body.pop(_FORMAT, None), body.pop(_VERSION, None))
    adapter = _ADAPTERS[cls]
    try:
        value = adapter.validate_json(json.dumps(body), strict=True)
    except (TypeError, ValueError) as exc:  # not JSON data (ValidationError is a ValueError)
        raise PayloadRefused(f"{tag} payload refused: {_errors(exc)}") from None
    unknown = _unknown_fields(body, adapter.dump_python(value, mode="json"))
    if unknown:
        raise PayloadRefused(f"{tag} payload refused: unknown fields {', '.join(unknown)} "
                             "(a newer taskmill's? run the same version on the client and "
                             "every worker)")
    if cls is p.TaskPolicy:
        value = _policy(value)
    assert isinstance(value, kind)
    return value


def _check_format(format_: object, version: object) -> None:
    if format_ == FORMAT:
        return
    theirs = version if isinstance(version, str) else "an unknown version"
    newer = isinstance(format_, int) and not isinstance(format_, bool) and format_ > FORMAT
    raise PayloadRefused(
        f"worker runs taskmill {__version__}, the client {theirs}: upgrade "
        f"{'this worker' if newer else 'the client'} (the run's payloads are in format "
        f"{format_!r}; this worker reads format {FORMAT})")


def _policy_state(policy: p.TaskPolicy) -> PolicyState:
    state = {name.lstrip("_"): value for name, value in vars(policy).items()}
    missing = sorted(set(state) - _STATE)
    if missing:  # a new attribute of TaskPolicy: it must travel too
        raise TypeError(f"TaskPolicy holds {', '.join(missing)}, which its payload does not "
                        "carry: add it to taskmill.temporal.payloads.PolicyState")
    then = state["then"]
    return PolicyState(**{**state, "then": pack(then) if then is not None else None})


def _policy(state: PolicyState) -> p.TaskPolicy:
    policy = p.TaskPolicy(state.limits, lap=state.lap, resumed=state.resumed,
                          history=state.history, parks=state.parks, land=state.land,
                          reviews=state.reviews, approval=state.approval,
                          approved=state.approved)
    policy.failure = state.failure
    policy.restore(rejoin=state.rejoin, no_change=state.no_change,
                   signatures=dict(state.signatures), turn_timed_out=state.turn_timed_out,
                   then=unpack(state.then, p.Action) if state.then is not None else None,
                   paused_error=state.paused_error)
    return policy


def _unknown_fields(given: object, read: object, at: str = "") -> list[str]:
    """The keys of ``given`` (a payload's body) that reading it dropped (fields of nested
    dataclasses that pydantic ignores), as dotted paths."""
    found: list[str] = []
    if isinstance(given, Mapping) and isinstance(read, Mapping):
        for key, value in given.items():
            path = f"{at}.{key}" if at else str(key)
            if key not in read:
                found.append(path)
            else:
                found += _unknown_fields(value, read[key], path)
    elif isinstance(given, list) and isinstance(read, list):
        for i, (value, back) in enumerate(zip(given, read, strict=False)):
            found += _unknown_fields(value, back, f"{at}[{i}]")
    return found


def _errors(exc: Exception) -> str:
    if not isinstance(exc, ValidationError):
        return f"not JSON data ({exc})"
    return "; ".join(f"{'.'.join(str(x) for x in e['loc']) or 'the payload'}: {e['msg']}"
                     for e in exc.errors()[:5])

