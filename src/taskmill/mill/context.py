"""What every task worker of a run shares: the run's services, built once by the engine."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..agents.base import AgentAdapter, AgentConfig
from ..capability.server import CapabilityServer
from ..clock import Clock
from ..containment import Containment
from ..ledger import Ledger
from ..model import Task
from ..proxy import ModelProxy
from ..review.approval import ApprovalRule
from ..review.gate import ReviewSetup
from ..roles.book import RoleBook
from .check_env import CheckGuard
from .events import EventBus
from .gate import AgentGate
from .git import Git
from .lander import Lander
from .landing_queue import LandingQueue
from .settings import RunSettings
from .turn_runner import TurnRunner
from .workspaces import Workspaces


@dataclass
class WorkerContext:
    """What every task worker shares (built once per run)."""

    run_id: str
    settings: RunSettings
    git: Git
    pool: Workspaces
    queue: Lander
    bus: EventBus
    clock: Clock
    gate: AgentGate
    stop: threading.Event
    ledger_factory: Callable[[], Ledger]
    agents: Callable[[Task], tuple[AgentConfig, AgentAdapter]]
    project_checks: list[str]
    parent_env: Mapping[str, str]
    check_env: Mapping[str, str]
    ledger_dir: Path
    logs_dir: Path
    homes_dir: Path
    turn_runner: TurnRunner
    """Runs one agent turn (the real :func:`~taskmill.agents.runner.run_turn`, or a fake)."""
    agent_git_env: Mapping[str, str] = field(default_factory=dict)
    """Git identity handed to agents (their HOME is isolated, so ~/.gitconfig is not seen)."""
    on_landed: Callable[[str], None] | None = None
    """Called with the task's id as soon as it is closed as landed, before its worktree is
    cleaned, so that the scheduler dispatches what it unblocked at once."""
    check_guard: CheckGuard | None = None
    """Validates check commands before the first turn; warns once per run about the
    checks' Python environment."""
    abort: threading.Event = field(default_factory=threading.Event)
    """Set when the run stops for good: turns and checks still running are cut."""
    kill_now: threading.Event = field(default_factory=threading.Event)
    """Set on a second Ctrl-C: agents are killed without a grace of their own."""
    containment: Containment | None = None
    """How nothing a turn or check starts outlives it (None: the process group only)."""
    capability: CapabilityServer | None = None
    """Serves each turn's ledger socket (None: the agent gets ``TASKMILL_DIR`` instead)."""
    ledger_url: str | None = None
    """The PostgreSQL ledger's URL, handed to agents (``TASKMILL_DATABASE_URL``) with
    ``TASKMILL_DIR`` when there is no capability socket (a context built without
    :meth:`~taskmill.mill.engine.Mill.worker_context`, which always starts one)."""
    sandbox: dict[str, Any] = field(default_factory=dict)
    """What the sandbox allows (or why there is none): recorded in every attempt."""
    proxy: ModelProxy | None = None
    """The model proxy agents with a ``base_url`` go through (None: they go direct)."""
    landing: LandingQueue | None = None
    """Where a passed branch is parked to land, its worker free at once (None: the worker
    lands it through ``queue`` itself, holding its worktree until the verdict)."""
    roles: RoleBook = field(default_factory=lambda: RoleBook({}))
    """The roles (``.taskmill/roles/``): a task's role sets its agent, prompt, checks,
    iterations, landing and budget."""
    review: ReviewSetup | None = None
    """The review step between a branch's checks and the merge queue (None: no ``[review]``)."""
    approval: ApprovalRule | None = None
    """Which tasks wait for a person's approval before they land (``[merge]``)."""
