"""What a task workflow is given, and the names shared by the client and the workers."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..agents.base import AgentConfig
from ..mill.settings import RunSettings

TASK_QUEUE = "taskmill"
"""The shared task queue: task workflows, and the activity that binds a task to a worker."""
WORKFLOW_TYPE = "taskmill.task"
DEFAULT_HEARTBEAT_S = 30.0
"""A worker that has not heartbeated for this long is taken for dead: the task's activity
goes to another worker (``[executor] heartbeat_timeout``)."""


def workflow_id(task_queue: str, task_id: str, lap: int) -> str:
    """One workflow per task and lap (``<queue>/<task>/lap<n>``): a client that died and
    comes back finds it again. The queue is in it because the namespace is shared: another
    project's queue (or a test's) holds tasks of the same ids, and a run must never wait on
    a workflow of theirs (no worker of its own would ever take it up)."""
    return f"{task_queue}/{task_id}/lap{lap}"


def task_of(workflow: str, task_queue: str) -> str:
    """The task of a workflow of ``task_queue`` (:func:`workflow_id`)."""
    return workflow.removeprefix(f"{task_queue}/").rpartition("/lap")[0] or workflow


def parse_address(address: str) -> str:
    """``HOST:PORT`` as given to ``--temporal`` (checked: a clear error, not a hang)."""
    if not re.fullmatch(r"[A-Za-z0-9_.\-\[\]:]+:\d{1,5}", address or ""):
        from ..errors import InvalidInput

        raise InvalidInput(f"--temporal {address!r} is not HOST:PORT",
                           hint="give the Temporal frontend, e.g. --temporal 127.0.0.1:7233")
    return address


Payload = dict[str, Any] | str
"""An object of the mill as it travels: its JSON form (:mod:`.payloads`). A string is what a
taskmill from before JSON payloads sent (a pickle): refused, never unpickled."""


@dataclass
class RunSpec:
    """What every task of one ``taskmill run`` shares, for the workers to rebuild its
    context: the run, its settings and its agent override."""

    run_id: str
    target: str
    settings: RunSettings
    agent_override: AgentConfig | None = None


@dataclass
class TaskSpec:
    """A task workflow's input (plain data: JSON through Temporal)."""

    task_id: str
    lap: int
    resumed: bool
    run: Payload
    """The :class:`RunSpec`, packed."""
    heartbeat_timeout: float = DEFAULT_HEARTBEAT_S
    turn_timeout: float = 1800.0
    check_timeout: float = 900.0


@dataclass
class Step:
    """What an activity hands back: the results of the actions it performed (packed, in
    order: the policy's next inputs) and, when the task's stay ended there, how."""

    results: list[Payload] = field(default_factory=list)
    outcome: dict[str, Any] = field(default_factory=dict)
    error: bool = False
    """The stay ended on a taskmill error (the worker recorded it)."""


@dataclass
class Bound:
    """A task bound to a worker: where its next activities go, its policy, and what the
    worker did from the policy's first action up to its first turn (the workspace)."""

    queue: str
    worker: str
    key: str
    policy: Payload
    """The :class:`~taskmill.mill.policy.TaskPolicy`, packed (before its first action)."""
    step: Step = field(default_factory=Step)
