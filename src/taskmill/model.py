"""The records of the ledger: tasks, dependencies, comments, audit events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_args

# Statuses taskmill sets. Imported records may carry others (``tombstone``, ``hooked``);
# they are kept as they were.
OPEN = "open"
IN_PROGRESS = "in_progress"
BLOCKED = "blocked"
DEFERRED = "deferred"
CLOSED = "closed"
TOMBSTONE = "tombstone"
HOOKED = "hooked"
PINNED = "pinned"
"""Beads' status for a record that stays open as context: it never blocks anything."""
TaskStatus = Literal["open", "in_progress", "blocked", "deferred", "closed"]
"""The statuses a task can be given: the one definition (the web API's and the MCP tools'
schemas come from it)."""
STATUSES: tuple[str, ...] = get_args(TaskStatus)
# A task in one of these no longer blocks anything.
DONE_STATUSES = frozenset({CLOSED, TOMBSTONE})
# A parent in one of these holds back its children.
HOLDING_STATUSES = frozenset({BLOCKED, DEFERRED})
# Hidden from list (unless asked for) and from ready.
HIDDEN_STATUSES = frozenset({TOMBSTONE})

# The start of the comment the mill leaves on a task it marks blocked (the reason follows).
BLOCK_COMMENT_PREFIX = "taskmill blocked this task: "

# Dependency types. The first two gate readiness; the others only link.
BLOCKS = "blocks"
PARENT_CHILD = "parent-child"
RELATED = "related"
DISCOVERED_FROM = "discovered-from"
CONDITIONAL_BLOCKS = "conditional-blocks"
"""Beads: B runs only if A fails (imported; see :mod:`taskmill.ledger.beads_rules`)."""
WAITS_FOR = "waits-for"
"""Beads: a fan-in gate over a spawner's children (imported)."""
BLOCKING_TYPES = frozenset({BLOCKS, CONDITIONAL_BLOCKS, WAITS_FOR})
"""The dependency types that hold a task back (counted in ``open_blockers``)."""
GATING_TYPES = frozenset({BLOCKS, CONDITIONAL_BLOCKS, PARENT_CHILD})
"""The dependency types a cycle is looked for in (Beads: blocks and conditional-blocks)."""
DepType = Literal["blocks", "parent-child", "related", "discovered-from"]
DEP_TYPES: tuple[str, ...] = get_args(DepType)
"""(The one definition of the dependency types, as :data:`TaskStatus` is of the statuses.)"""

ISSUE_TYPES = ("task", "bug", "feature", "epic", "chore")

# Task fields a user may set with ``update``.
TEXT_FIELDS = ("title", "description", "design", "acceptance_criteria", "notes")
UPDATABLE_FIELDS = (
    *TEXT_FIELDS,
    "status",
    "priority",
    "issue_type",
    "assignee",
    "external_ref",
    "metadata",
    "checks",
    "agent",
    "hints",
    "close_reason",
    "role",
)

# How the records below are described as JSON Schema (read by pydantic, see
# :mod:`taskmill.schemas`): every field a ``to_json`` writes is required, and an attribute's
# docstring is its description.
SCHEMA_CONFIG: dict[str, Any] = {"use_attribute_docstrings": True,
                                 "json_schema_serialization_defaults_required": True}


@dataclass
class Dependency:
    __pydantic_config__: ClassVar[dict[str, Any]] = SCHEMA_CONFIG
    issue_id: str
    depends_on_id: str
    type: str
    created_at: str | None = None
    created_by: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "issue_id": self.issue_id,
            "depends_on_id": self.depends_on_id,
            "type": self.type,
            "created_at": self.created_at,
            "created_by": self.created_by,
        }


@dataclass
class Comment:
    __pydantic_config__: ClassVar[dict[str, Any]] = SCHEMA_CONFIG
    id: int
    issue_id: str
    author: str
    text: str
    created_at: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "issue_id": self.issue_id,
            "author": self.author,
            "text": self.text,
            "created_at": self.created_at,
        }


@dataclass
class Attempt:
    """One agent turn on a task and what came of it, as the ledger records it: the mill writes
    attempts, and ``Ledger.attempts`` reads them as JSON objects of these fields."""

    __pydantic_config__: ClassVar[dict[str, Any]] = SCHEMA_CONFIG

    id: int
    task_id: str
    iteration: int
    """Which turn of the lap (from 1)."""
    agent: str | None
    model: str | None
    started_at: str
    ended_at: str | None
    outcome: str | None
    """How the attempt ended (``passed``, ``failed``...); null while it is running."""
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    commit_sha: str | None
    log_path: str | None
    detail: dict[str, Any] | None
    """Checks output, failure text, agent error."""
    run_id: str | None
    lap: int
    """Which dispatch of the task (a reopened task starts a new lap); iterations count from 1
    in each lap."""


@dataclass
class Task:
    __pydantic_config__: ClassVar[dict[str, Any]] = SCHEMA_CONFIG
    FULL_FIELDS: ClassVar[tuple[str, ...]] = ("dependencies", "dependents", "comments",
                                              "attempts", "child_tasks")
    """The fields in its JSON only when asked for in full (``to_json(full=True)``)."""
    id: str
    title: str
    description: str = ""
    design: str = ""
    acceptance_criteria: str = ""
    notes: str = ""
    status: str = OPEN
    priority: int = 2
    issue_type: str = "task"
    assignee: str | None = None
    labels: list[str] = field(default_factory=list)
    created_at: str = ""
    updated_at: str = ""
    closed_at: str | None = None
    close_reason: str | None = None
    external_ref: str | None = None
    metadata: dict[str, Any] | None = None
    checks: list[str] | None = None
    agent: str | None = None
    hints: dict[str, Any] | None = None
    role: str | None = None
    """The role (``.taskmill/roles/NAME.toml``) whose agent, prompt, checks and budget the
    mill works this task with; None: no role."""
    ready: bool = False
    """Derived: open and nothing gating it."""
    parent: str | None = None
    """Derived: the task's first ``parent-child`` parent, if it has one."""
    children: int = 0
    """Derived: how many children (``parent-child`` dependents, tombstones left out) it has."""
    children_closed: int = 0
    """Derived: how many of those are closed."""
    interrupted: bool = False
    """Derived (by the CLI, from the run locks): ``in_progress`` for a ``taskmill run`` that
    is no longer running; the next run resumes it. In JSON only when true."""
    dependencies: list[Dependency] = field(default_factory=list)
    """What this task depends on (filled by ``show``)."""
    dependents: list[Dependency] = field(default_factory=list)
    """What depends on this task (filled by ``show``)."""
    comments: list[Comment] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    child_tasks: list[Task] = field(default_factory=list)
    """Its children, tombstones left out, oldest first (filled by ``show``)."""

    @property
    def container(self) -> bool:
        """A task with children is a container: the mill never hands it to an agent, and it
        closes when its last child closes (see :mod:`taskmill.containers`)."""
        return self.children > 0

    def to_json(self, *, full: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "design": self.design,
            "acceptance_criteria": self.acceptance_criteria,
            "notes": self.notes,
            "status": self.status,
            "priority": self.priority,
            "issue_type": self.issue_type,
            "assignee": self.assignee,
            "labels": list(self.labels),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "closed_at": self.closed_at,
            "close_reason": self.close_reason,
            "external_ref": self.external_ref,
            "metadata": self.metadata,
            "checks": self.checks,
            "agent": self.agent,
            "hints": self.hints,
            "role": self.role,
            "ready": self.ready,
            "parent": self.parent,
            "children": self.children,
            "children_closed": self.children_closed,
            "container": self.container,
        }
        if self.interrupted:
            data["interrupted"] = True
        if full:
            data["dependencies"] = [d.to_json() for d in self.dependencies]
            data["dependents"] = [d.to_json() for d in self.dependents]
            data["comments"] = [c.to_json() for c in self.comments]
            data["attempts"] = list(self.attempts)
            data["child_tasks"] = [c.to_json() for c in self.child_tasks]
        return data


@dataclass
class Event:
    __pydantic_config__: ClassVar[dict[str, Any]] = SCHEMA_CONFIG
    seq: int
    ts: str
    actor: str
    task_id: str | None
    kind: str
    data: dict[str, Any]
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "actor": self.actor,
            "task_id": self.task_id,
            "kind": self.kind,
            "data": self.data,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass
class BlockedTask:
    task: Task
    blockers: list[str]
    """Open tasks this one waits on through ``blocks``."""
    held_by_parent: list[str]
    """Parents (not done) that are themselves blocked, deferred or not ready."""
    held_by_ancestor: list[str] = field(default_factory=list)
    """The ancestors (not done) at the root of what holds the task back through its parents:
    each is ``blocked``/``deferred``, or waits on a ``blocks`` dependency."""
    reasons: list[str] = field(default_factory=list)
    """What holds the task back through its ancestors, in words
    ("parent tm-x is deferred until ...")."""
    reason: str | None = None
    """Why a task of status blocked is blocked (the mill's comment saying so, or who marked
    it blocked and when); None for a task that only waits on others."""
    unblock: str | None = None
    """The command that unblocks a task of status blocked."""

    def to_json(self) -> dict[str, Any]:
        data = self.task.to_json()
        data["blocked_by"] = self.blockers
        data["held_by_parent"] = self.held_by_parent
        data["held_by_ancestor"] = self.held_by_ancestor
        data["reasons"] = self.reasons
        data["block_reason"] = self.reason
        data["unblock_with"] = self.unblock
        return data
