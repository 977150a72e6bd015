"""The JSON the API answers with, as schemas for its OpenAPI document
(:func:`taskmill.web.openapi.openapi_document`).

The records (a task, a dependency, a comment, an attempt, an audit event) are described from
:mod:`taskmill.model` by :mod:`taskmill.schemas`; what the API adds to them (a task in full,
a held-back task, an attempt's running time) and what only the API answers (what the mill is
doing now, the graph, a diff, a log) is declared here, once, as pydantic models.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from ..model import Attempt as AttemptRecord
from ..model import Comment, Dependency, Event, Task
from ..schemas import NewComment, TaskChanges, component_schemas, extended, task_schema


class _Response(BaseModel):
    # every field is in the answer (a field with a default is still always written)
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


class ErrorDetail(BaseModel):
    code: str = Field(description="The ledger's error code (not_found, invalid, conflict...).")
    message: str
    hint: str | SkipJsonSchema[None] = Field(None, description=(
        "What to do about it (only when there is a hint)."))
    fields: dict[str, str] | SkipJsonSchema[None] = Field(None, description=(
        "A template's fields that are wrong, each with what is wrong (only then)."))


class Error(_Response):
    error: ErrorDetail


class _DependencyLink(BaseModel):
    title: str | None = Field(None, description=(
        "In a task's dependencies and dependents: the other task's title."))
    status: str | None = Field(None, description=(
        "In a task's dependencies and dependents: the other task's status (missing: gone)."))


class _AttemptView(_Response):
    duration_s: float | None = Field(description="Seconds it took (so far, while running).")
    running: bool
    has_log: bool
    has_checks_log: bool
    has_review_log: bool = Field(False, description=(
        "The mill's review of it (``[review]``) left a log: ``log?kind=review``."))


class _TaskFull(_Response):
    dependencies: list[Dependency]
    dependents: list[Dependency]
    comments: list[Comment]
    attempts: list[AttemptRecord]
    blocked_by: list[str] = Field(description="Open tasks it waits on (blocks).")
    child_tasks: list[Task]
    status_line: str = Field(description=(
        "The task's status in a plain sentence: \"working, attempt 2 of 5: the check `make "
        "test` failed\", \"landed in abc1234\"."))
    awaiting_approval: bool = Field(description=(
        "Its checks and review passed and it waits for a person's approval to land "
        "([merge] require_approval): approve or send it back (POST .../approve, .../reject)."))


class _Blocked(_Response):
    blocked_by: list[str] = Field(description="Open tasks it waits on (blocks).")
    held_by_parent: list[str] = Field(description=(
        "Parents (not done) that are themselves blocked, deferred or not ready."))
    held_by_ancestor: list[str] = Field(description=(
        "The ancestors at the root of what holds it back through its parents."))
    reasons: list[str] = Field(description="What holds it back through its ancestors, in words.")
    block_reason: str | None = Field(description=(
        "Why a task of status blocked is blocked (null: it only waits on others)."))
    unblock_with: str | None = Field(description="The command that unblocks it.")
    last_comment: Comment | None


class MillEvent(BaseModel):
    model_config = ConfigDict(extra="allow")
    ts: str
    event: str
    task: str | SkipJsonSchema[None] = Field(None, description=(
        "The task it is about (only when it is about one)."))


class Totals(_Response):
    attempts: int
    passed: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    seconds: float


class AttemptTotals(_Response):
    all: Totals
    by_agent: dict[str, Totals]
    by_model: dict[str, Totals]
    by_role: dict[str, Totals] = Field(description="Per role (``(none)``: attempts made as no "
                                                   "role).")


class Stats(_Response):
    total: int = Field(description="Tasks (tombstones left out).")
    by_status: dict[str, int]
    ready: int
    blocked: int = Field(description="Tasks held back (waiting on others, or blocked).")
    dependencies: dict[str, int] = Field(description="Dependencies by type.")
    events: int
    attempts: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


class Worker(_Response):
    task: Task
    phase: str
    attempt: AttemptRecord | None
    last_event: MillEvent | None


class QueuedTask(_Response):
    task: Task
    queued_at: str
    position: int


class BatchChecks(_Response):
    tree: str
    tasks: list[str] = Field(description="The tasks whose combined tree was checked.")
    cached: bool = Field(description="Answered from the check cache (not run).")
    passed: bool
    retry: int = Field(0, description="0 for the first run, 1 for the first retry...")
    speculative: bool = Field(False, description="A speculative run: the next batch's "
                              "tasks checked on top of this batch, while it was checked.")


class BisectStep(_Response):
    tested: list[str] = Field(description="The part of the red batch checked on its own.")
    passed: bool


class MergeBatch(_Response):
    started_at: str
    base: str = Field(description="The target's commit the batch was merged onto.")
    tasks: list[str]
    state: str = Field(description="checking | bisecting | done")
    checks: list[BatchChecks]
    bisect: list[BisectStep]
    landed: list[str] = Field(description="Its tasks landed so far, in order.")
    outcomes: dict[str, str] = Field(description=(
        "Once done: each task's verdict (landed, conflict, checks_failed, ...)."))


class ClusterWorker(_Response):
    worker: str = Field(description="The `taskmill worker` (HOST:PID, or its --name).")
    last_seen: str | None = Field(description="Its last poll of the cluster (its heartbeat).")


class ClusterTask(_Response):
    task: str
    workflow: str
    worker: str | None = Field(description="The worker its current activity runs on.")
    activity: str | None
    last_heartbeat: str | None
    attempt: int | None = Field(description="Temporal's attempt of that activity.")


class Cluster(_Response):
    address: str
    workers: list[ClusterWorker]
    tasks: list[ClusterTask]
    error: str | SkipJsonSchema[None] = Field(None, description=(
        "Why the cluster could not be read (the rest is then empty)."))


class Now(_Response):
    now: str
    paused: bool
    mill_running: bool
    workers: list[Worker]
    merge_queue: list[QueuedTask]
    merge_batches: list[MergeBatch] = Field(description=(
        "The merge queue's latest batches, newest last: what was checked, bisected, landed."))
    totals: AttemptTotals
    blocked: list[_Blocked]
    events: list[MillEvent]
    stats: Stats
    cluster: Cluster | None = Field(description=(
        "Under the Temporal executor ([executor] kind = \"temporal\"): the workers and which "
        "runs which task; null otherwise."))


class Mill(_Response):
    paused: bool
    running: bool
    run: MillEvent | None = Field(description="The event that started the last run.")
    events: list[MillEvent]


class MillService(_Response):
    state: Literal["stopped", "watching", "running", "stopping"] = Field(description=(
        "What `taskmill watch` in this server does: watching (started, waiting for ready "
        "work or the next order), running (working tasks now), stopping (draining after a "
        "stop), stopped."))
    started_by: str | None
    started_at: str | None
    runs: int = Field(description="Mill runs it has finished since the server started.")
    last_exit: int | None = Field(description="The last run's exit status (as taskmill watch).")
    error: str | None
    working: int = Field(description="Tasks being worked now.")
    orders: int = Field(description="The orders it fires (.taskmill/orders).")
    next_order: str | None = Field(description=(
        "When the next order's slot falls (null: no timed order, or stopped)."))


class Project(_Response):
    root: str
    prefix: str
    paused: bool
    mill_running: bool
    statuses: list[str]
    labels: list[str]
    seq: int
    updatable_fields: list[str]
    stats: Stats
    person: str | None = Field(description=(
        "The person the page acts as (taskmill serve --users; null: the dashboard's actor)."))
    mill_service: MillService | None = Field(description=(
        "The mill this dashboard runs (taskmill serve --mill; null: none)."))


class TemplateFieldView(_Response):
    name: str
    label: str
    kind: Literal["text", "textarea", "choice", "number"]
    required: bool
    default: str | int | float | None
    help: str
    choices: list[str]
    min: float | None
    max: float | None


class TemplateTaskView(_Response):
    title: str
    description: str
    acceptance: str
    role: str | None
    agent: str | None
    checks: list[str]
    labels: list[str]
    priority: int
    type: str


class Template(_Response):
    name: str
    description: str
    fields: list[TemplateFieldView]
    task: TemplateTaskView


class FromTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    template: str = Field(description="The template's name.")
    fields: dict[str, str | int | float] = Field(default_factory=dict, description=(
        "Each field's value, by name."))
    after: list[str] = Field(default_factory=list, description="Tasks it waits on.")
    labels: list[str] = Field(default_factory=list, description=(
        "Labels added to the template's."))
    priority: int | None = Field(None, ge=0, le=4, description=(
        "0 (highest) to 4; default: the template's."))


class GraphNode(_Response):
    id: str
    title: str
    status: str
    priority: int
    ready: bool
    labels: list[str]
    issue_type: str
    assignee: str | None
    parent: str | None
    children: int
    children_closed: int
    container: bool
    x: float
    y: float
    layer: int
    order: int
    component: int


class GraphEdge(_Response):
    source: str
    target: str
    type: str
    reversed: bool
    points: list[list[float]]


class Graph(_Response):
    width: float
    height: float
    crossings: int
    node_width: float
    node_height: float
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    total: int


class Diff(_Response):
    commit: str | None = Field(description="The commit the attempt made (null: none).")
    base: str | None = Field(description=(
        "The commit on the task's branch the attempt started from: the diff is from it."))
    diff: str
    no_change: bool = Field(description="The attempt changed nothing (no diff).")
    note: str | None
    truncated: bool


class Log(_Response):
    path: str
    kind: str
    text: str
    size: int
    truncated: bool


class Paused(_Response):
    paused: bool


class Hello(_Response):
    type: Literal["hello"]
    seq: int = Field(description="The ledger's last audit event.")
    paused: bool
    running: bool = Field(description="Whether a mill run is running.")


class LedgerChanged(_Response):
    type: Literal["ledger"]
    seq: int
    tasks: list[str] = Field(description="The tasks that changed.")
    kinds: list[str] = Field(description="The kinds of the audit events since the last one.")


class MillChanged(_Response):
    type: Literal["mill"]
    events: list[MillEvent] = Field(description="The mill's new events (the last 50).")
    running: bool
    tasks: list[str]


class PausedChanged(_Response):
    type: Literal["paused"]
    paused: bool


class ServiceChanged(_Response):
    type: Literal["service"]
    service: MillService


StreamMessage = Annotated[Hello | LedgerChanged | MillChanged | PausedChanged | ServiceChanged,
                          Field(discriminator="type")]
"""The data of an event of ``GET /api/stream``."""


class _StepTask(_Response):
    id: str
    title: str
    status: str
    step: str | None = Field(description="The step's id (id[n]: the n-th item of a for_each).")


class _FormulaInstance(_Response):
    epic: str = Field(description="The epic the pour made (the group).")
    title: str
    formula: str
    status: str
    vars: dict[str, Any]
    key: str | None = Field(description="The pour's --key, if any.")
    order: str | None = Field(description="The order that poured it, if one did.")
    created_at: str
    closed: int
    total: int
    tasks: list[_StepTask]


class _OrderLast(_Response):
    slot: str
    task: str | None
    at: str


class _OrderState(_Response):
    order: str
    trigger: Literal["cron", "interval", "event", "condition", "manual"]
    what: str = Field(description="pour FORMULA, or create 'title'.")
    when: str = Field(description="The trigger in words.")
    skip_if_open: bool
    catch_up: Literal["none", "one", "all"]
    last: _OrderLast | None = Field(description="Its last firing (null: never).")
    next: str | None = Field(description="Its next slot (timed orders).")
    why_not: str | None = Field(description="Why it did not fire (the latest reason).")


class Workflows(_Response):
    formulas: list[_FormulaInstance]
    orders: list[_OrderState]
    orders_error: str | None = Field(description="A bad order file (the orders are not "
                                                 "listed then).")
class FindingView(_Response):
    id: str
    subject: str
    task_id: str | None
    reviewer: str
    repo: str
    file: str
    line_start: int
    line_end: int
    severity: str
    confidence: float
    title: str
    explanation: str
    suggested_fix: str | None
    commit: str | None
    blocking: bool
    quiet: bool
    reported_at: str
    fate: Literal["open", "resolved", "dismissed"]
    reason: str
    decided_by: str
    decided_at: str


class Approval(_Response):
    task: Task
    commit: str | None = Field(description="The commit that waits to land.")
    attempt: int | None
    since: str
    diff: str = Field(description="The branch's change against the target's merge base.")
    truncated: bool
    checks: list[dict[str, Any]] = Field(description="The checks of the attempt that passed.")
    findings: list[FindingView]
    notes: str
    agent_comments: list[str]


class HitRateRow(_Response):
    repo: str
    reviewer: str
    severity: str = Field(description="A severity, or \"all\".")
    reported: int
    open: int
    resolved: int
    dismissed: int
    hit_rate: float | None = Field(description="resolved / (resolved + dismissed); null: none.")


class ReviewPage(_Response):
    approvals: list[Approval]
    hit_rates: list[HitRateRow]
    threshold: float = Field(description="The confidence threshold in force.")
    window_days: float
    target_hit_rate: float | None


class ApprovalDone(_Response):
    task: str
    status: Literal["approved", "rejected"]
    commit: str | None
    comment: str


class Dismissal(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, description="Why the finding is wrong.")


class SendBack(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str = Field(min_length=1, description="What to change.")


def schemas() -> dict[str, Any]:
    """Every component schema of the API, by name."""
    out = component_schemas({
        "Task": Task, "TaskFull": _TaskFull, "BlockedTask": _Blocked,
        "Dependency": Dependency, "Comment": Comment, "Attempt": AttemptRecord,
        "AuditEvent": Event, "Error": Error, "MillEvent": MillEvent, "Stats": Stats,
        "Graph": Graph, "Now": Now, "Mill": Mill, "Project": Project, "Diff": Diff,
        "Log": Log, "Paused": Paused, "TaskChanges": TaskChanges, "NewComment": NewComment,
        "StreamMessage": StreamMessage, "ReviewPage": ReviewPage, "Approval": Approval,
        "FindingView": FindingView, "HitRateRow": HitRateRow, "ApprovalDone": ApprovalDone,
        "SendBack": SendBack, "Dismissal": Dismissal, "_AttemptView": _AttemptView, "_DependencyLink": _DependencyLink,
        "Workflows": Workflows, "Template": Template, "FromTemplate": FromTemplate,
        "MillService": MillService,
    }, renames={"Event": "AuditEvent", "_Blocked": "BlockedTask", "_TaskFull": "TaskFull"})
    # what the API adds to the records
    out["Task"] = task_schema(out["Task"])
    out["TaskFull"] = extended(out["Task"], out["TaskFull"])
    out["BlockedTask"] = extended(out["Task"], out["BlockedTask"])
    out["Attempt"] = extended(out["Attempt"], out.pop("_AttemptView"))
    out["Dependency"] = extended(out["Dependency"], out.pop("_DependencyLink"))
    return dict(sorted(out.items()))
