"""The dashboard's JSON API under ``/api/``: thin handlers over :class:`~taskmill.ledger.Ledger`.

Every route is declared once in :data:`ROUTES` with the metadata its OpenAPI description is
generated from (``GET /api/openapi.json``). Errors are ``{"error": {"code", "message",
"hint"?}}`` with the ledger's error ``code`` and an HTTP status derived from it.

What is not in the ledger comes from two files the mill writes: ``.taskmill/run/events.ndjson``
(every mill event, read incrementally by :class:`MillLog`) and ``.taskmill/run/paused`` (the
mill dispatches nothing new while it exists).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import re
import sqlite3
import threading
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ..audit import event_from_row
from ..clock import Clock, iso
from ..config import Config
from ..db import connect
from ..errors import InvalidInput, NotFound, TaskmillError
from ..ledger import Ledger
from ..mill.engine import EVENTS_FILE, PAUSE_FILE
from ..mill.git import Git, git_env
from ..model import STATUSES, UPDATABLE_FIELDS
from ..paths import LedgerPaths
from . import graph_layout

POLL_SECONDS = 0.2
"""How often the watcher looks at the ledger and the events file."""
HEARTBEAT_SECONDS = 10.0
DIFF_LIMIT = 400_000
LOG_LIMIT = 400_000
RECENT_EVENTS = 500


class Forbidden(TaskmillError):
    code = "forbidden"
    exit_code = 1


HTTP_STATUS = {
    "invalid": 400, "not_initialized": 400, "not_a_repository": 400, "plan_invalid": 400,
    "cycle": 400, "unauthorized": 401, "forbidden": 403, "not_found": 404, "conflict": 409,
    "claim_conflict": 409, "git": 502, "integrity": 500, "database": 503, "error": 500,
}


def error_response(exc: TaskmillError) -> JSONResponse:
    return JSONResponse(exc.to_json(), status_code=HTTP_STATUS.get(exc.code, 500))


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)


def _parse_ts(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _seconds(start: str | None, end: str | None, now: datetime) -> float | None:
    began = _parse_ts(start)
    if began is None:
        return None
    ended = _parse_ts(end) or now
    return round(max(0.0, (ended - began).total_seconds()), 3)


# -- ledger connections ------------------------------------------------------------------------


class LedgerPool:
    """A few ledger connections shared by the request threads (one per request at a time)."""

    def __init__(self, paths: LedgerPaths, config: Config, clock: Clock, actor: str) -> None:
        self.paths = paths
        self.config = config
        self.clock = clock
        self.actor = actor
        self._idle: queue.LifoQueue[Ledger] = queue.LifoQueue()
        self._all: list[Ledger] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def ledger(self) -> Iterator[Ledger]:
        try:
            led = self._idle.get_nowait()
        except queue.Empty:
            led = Ledger.open(self.paths.db, prefix=self.config.prefix, clock=self.clock,
                              actor=self.actor)
            with self._lock:
                self._all.append(led)
        try:
            yield led
        finally:
            if led.conn.in_transaction:  # never hand on a connection inside a transaction
                led.conn.execute("ROLLBACK")
            self._idle.put(led)

    def close(self) -> None:
        with self._lock:
            while True:
                try:
                    self._idle.get_nowait()
                except queue.Empty:
                    break
            for led in self._all:
                with contextlib.suppress(Exception):
                    led.close_db()
            self._all.clear()


# -- the mill's events file ----------------------------------------------------------------------

# what a worker is doing, from the last mill event about its task
_PHASES = {
    "dispatched": "starting",
    "workspace": "preparing its worktree",
    "recovered": "resuming after a crash",
    "turn_started": "agent turn",
    "turn_finished": "running checks",
    "checks_failed": "checks failed; next turn",
    "checks_passed": "in the merge queue",
    "merge_queued": "in the merge queue",
    "merge_rejected": "merge rejected; back to the agent",
    "agent_paused": "waiting for the agent's rate limit",
    "landed": "landed",
    "blocked": "blocked",
    "task_finished": "finished",
}
_QUEUED = frozenset({"checks_passed", "merge_queued"})


class MillLog:
    """``.taskmill/run/events.ndjson``, read incrementally (it is appended to, and rotated)."""

    TAIL_ON_OPEN = 2_000_000

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._offset = 0
        self._inode: int | None = None
        self._partial = b""
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)
        self.last_by_task: dict[str, dict[str, Any]] = {}
        self.queued_at: dict[str, str] = {}
        self.running = False
        self.run: dict[str, Any] | None = None
        self.count = 0

    def refresh(self) -> list[dict[str, Any]]:
        """Read what was appended since the last call; returns the new events."""
        with self._lock:
            try:
                st = self.path.stat()
            except FileNotFoundError:
                if self._inode is not None:
                    self._reset()
                return []
            if self._inode is not None and (st.st_ino != self._inode or st.st_size < self._offset):
                self._reset()
            first = self._inode is None
            self._inode = st.st_ino
            if st.st_size == self._offset:
                return []
            with self.path.open("rb") as fh:
                start = self._offset
                skip_first = False
                if first and st.st_size > self.TAIL_ON_OPEN:
                    start = st.st_size - self.TAIL_ON_OPEN
                    skip_first = True
                fh.seek(start)
                data = self._partial + fh.read(st.st_size - start)
            self._offset = st.st_size
            lines = data.split(b"\n")
            self._partial = lines.pop()
            if skip_first and lines:
                lines.pop(0)
            new: list[dict[str, Any]] = []
            for raw in lines:
                if not raw.strip():
                    continue
                try:
                    event = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(event, dict) and "event" in event:
                    self._apply(event)
                    new.append(event)
            return new

    def _apply(self, event: dict[str, Any]) -> None:
        self.count += 1
        self.recent.append(event)
        kind = event.get("event")
        task = event.get("task")
        if kind == "run_started":
            self.running = True
            self.run = event
        elif kind == "run_finished":
            self.running = False
        if isinstance(task, str) and kind in _PHASES:
            self.last_by_task[task] = event
            if kind in _QUEUED:
                self.queued_at.setdefault(task, str(event.get("ts", "")))
            else:
                self.queued_at.pop(task, None)

    def snapshot(self, limit: int = 50) -> dict[str, Any]:
        with self._lock:
            return {"running": self.running, "run": self.run,
                    "recent": list(self.recent)[-limit:],
                    "last_by_task": dict(self.last_by_task),
                    "queued_at": dict(self.queued_at)}


# -- live updates --------------------------------------------------------------------------------


class Broadcaster:
    """Watches the ledger, the events file and the pause file; pushes changes to subscribers.

    The ledger is polled with ``PRAGMA data_version`` (it changes when any other connection
    commits) on a connection of its own, every :data:`POLL_SECONDS`; the audit events since
    the last look name the tasks that changed.
    """

    def __init__(self, paths: LedgerPaths, mill: MillLog) -> None:
        self.paths = paths
        self.mill = mill
        self._subscribers: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: sqlite3.Connection | None = None
        self._data_version = -1
        self.seq = 0
        self.paused = False
        self._pause_seen: tuple[int, int] | None = None
        self.closed = False

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = connect(self.paths.db)
            self._data_version = int(self._conn.execute("PRAGMA data_version").fetchone()[0])
            self.seq = int(self._conn.execute("SELECT coalesce(max(seq), 0) FROM events")
                           .fetchone()[0])
            self._pause_seen = self._pause_signature()
            self.paused = self._pause_seen is not None
            self.mill.refresh()
        return self._conn

    def check(self) -> list[dict[str, Any]]:
        """One look at everything watched; returns the messages to send."""
        conn = self._connection()
        messages: list[dict[str, Any]] = []
        version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        if version != self._data_version:
            self._data_version = version
            rows = conn.execute("SELECT seq, task_id, kind FROM events WHERE seq > ? ORDER BY seq",
                                (self.seq,)).fetchall()
            if rows:
                self.seq = int(rows[-1][0])
            messages.append({
                "type": "ledger", "seq": self.seq,
                "tasks": sorted({r[1] for r in rows if r[1]}),
                "kinds": sorted({r[2] for r in rows}),
            })
        events = self.mill.refresh()
        if events:
            messages.append({"type": "mill", "events": events[-50:],
                             "tasks": sorted({e["task"] for e in events
                                              if isinstance(e.get("task"), str)})})
        # the file's identity, not only its existence: a resume and a new pause between two
        # looks must still be noticed
        signature = self._pause_signature()
        if signature != self._pause_seen:
            self._pause_seen = signature
            self.paused = signature is not None
            messages.append({"type": "paused", "paused": self.paused})
        return messages

    def _pause_signature(self) -> tuple[int, int] | None:
        try:
            st = (self.paths.run_dir / PAUSE_FILE).stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns

    def publish(self, message: dict[str, Any]) -> None:
        for q in list(self._subscribers):
            q.put_nowait(message)

    async def _run(self) -> None:
        while not self.closed:
            try:
                for message in self.check():
                    self.publish(message)
            except sqlite3.Error:  # a locked or replaced database: try again next time
                self._conn = None
            await asyncio.sleep(POLL_SECONDS)

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._subscribers.add(q)
        self.closed = False
        if self._task is None or self._task.done():
            self._loop = asyncio.get_running_loop()
            self._connection()
            self._task = self._loop.create_task(self._run())
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._subscribers.discard(q)

    def _close(self) -> None:
        self.closed = True
        for q in list(self._subscribers):
            q.put_nowait(None)
        if self._task is not None:
            self._task.cancel()

    def close_threadsafe(self) -> None:
        """End every stream (before a server shuts down: open streams would hold it up)."""
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(self._close)
        else:
            self.closed = True

    async def aclose(self) -> None:
        self._close()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# -- routes and their descriptions ---------------------------------------------------------------


@dataclass
class Param:
    name: str
    where: str  # "path" or "query"
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False


@dataclass
class RouteSpec:
    method: str
    path: str
    handler: str
    summary: str
    params: list[Param] = field(default_factory=list)
    body: dict[str, Any] | None = None
    response: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    media_type: str = "application/json"
    errors: tuple[int, ...] = ()


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _array(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": item}


TASK_ID = Param("task_id", "path", "A task id, or a unique prefix of one.", required=True)
ATTEMPT_ID = Param("attempt_id", "path", "The attempt's id (see the task's attempts).",
                   {"type": "integer"}, required=True)
_STATUS_FILTER = Param("status", "query", "Comma-separated statuses to keep.")
_LABEL_FILTER = Param("label", "query", "Keep tasks with this label.")
_ALL = Param("all", "query", "Include tombstones.", {"type": "boolean"})
_NULLABLE_STR = {"type": "string", "nullable": True}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                           "hint": {"type": "string"}}}},
    },
    "Dependency": {
        "type": "object",
        "properties": {"issue_id": {"type": "string"}, "depends_on_id": {"type": "string"},
                       "type": {"type": "string"}, "created_at": _NULLABLE_STR,
                       "created_by": _NULLABLE_STR,
                       "title": _NULLABLE_STR, "status": _NULLABLE_STR},
    },
    "Comment": {
        "type": "object",
        "properties": {"id": {"type": "integer"}, "issue_id": {"type": "string"},
                       "author": {"type": "string"}, "text": {"type": "string"},
                       "created_at": {"type": "string"}},
    },
    "Task": {
        "type": "object", "required": ["id", "title", "status", "priority"],
        "properties": {
            "id": {"type": "string"}, "title": {"type": "string"},
            "description": {"type": "string"}, "design": {"type": "string"},
            "acceptance_criteria": {"type": "string"}, "notes": {"type": "string"},
            "status": {"type": "string"}, "priority": {"type": "integer", "minimum": 0, "maximum": 4},
            "issue_type": {"type": "string"}, "assignee": _NULLABLE_STR,
            "labels": _array({"type": "string"}), "created_at": {"type": "string"},
            "updated_at": {"type": "string"}, "closed_at": _NULLABLE_STR,
            "close_reason": _NULLABLE_STR, "external_ref": _NULLABLE_STR,
            "metadata": {"type": "object", "nullable": True},
            "checks": {"type": "array", "items": {"type": "string"}, "nullable": True},
            "agent": _NULLABLE_STR, "hints": {"type": "object", "nullable": True},
            "ready": {"type": "boolean"},
        },
    },
    "Attempt": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"}, "task_id": {"type": "string"},
            "iteration": {"type": "integer"}, "agent": _NULLABLE_STR, "model": _NULLABLE_STR,
            "started_at": {"type": "string"}, "ended_at": _NULLABLE_STR,
            "outcome": {"type": "string", "nullable": True,
                        "description": "null while the attempt is running"},
            "input_tokens": {"type": "integer"}, "output_tokens": {"type": "integer"},
            "cost_usd": {"type": "number", "nullable": True}, "commit_sha": _NULLABLE_STR,
            "log_path": _NULLABLE_STR,
            "detail": {"type": "object", "nullable": True,
                       "description": "checks output, failure text, agent error"},
            "run_id": _NULLABLE_STR,
            "duration_s": {"type": "number", "nullable": True},
            "running": {"type": "boolean"}, "has_log": {"type": "boolean"},
            "has_checks_log": {"type": "boolean"},
        },
    },
    "TaskFull": {
        "allOf": [_ref("Task"), {
            "type": "object",
            "properties": {
                "dependencies": _array(_ref("Dependency")),
                "dependents": _array(_ref("Dependency")),
                "comments": _array(_ref("Comment")),
                "attempts": _array(_ref("Attempt")),
                "blocked_by": _array({"type": "string"}),
            }}],
    },
    "BlockedTask": {
        "allOf": [_ref("Task"), {
            "type": "object",
            "properties": {"blocked_by": _array({"type": "string"}),
                           "held_by_parent": _array({"type": "string"}),
                           "last_comment": {"allOf": [_ref("Comment")], "nullable": True}}}],
    },
    "AuditEvent": {
        "type": "object",
        "properties": {"seq": {"type": "integer"}, "ts": {"type": "string"},
                       "actor": {"type": "string"}, "task_id": _NULLABLE_STR,
                       "kind": {"type": "string"}, "data": {"type": "object"},
                       "prev_hash": {"type": "string"}, "hash": {"type": "string"}},
    },
    "MillEvent": {
        "type": "object", "required": ["ts", "event"],
        "properties": {"ts": {"type": "string"}, "event": {"type": "string"},
                       "task": {"type": "string"}},
        "additionalProperties": True,
    },
    "GraphNode": {
        "type": "object",
        "properties": {"id": {"type": "string"}, "title": {"type": "string"},
                       "status": {"type": "string"}, "priority": {"type": "integer"},
                       "ready": {"type": "boolean"}, "labels": _array({"type": "string"}),
                       "issue_type": {"type": "string"}, "assignee": _NULLABLE_STR,
                       "x": {"type": "number"}, "y": {"type": "number"},
                       "layer": {"type": "integer"}, "order": {"type": "integer"},
                       "component": {"type": "integer"}},
    },
    "GraphEdge": {
        "type": "object",
        "properties": {"source": {"type": "string"}, "target": {"type": "string"},
                       "type": {"type": "string"}, "reversed": {"type": "boolean"},
                       "points": _array(_array({"type": "number"}))},
    },
    "Graph": {
        "type": "object",
        "properties": {"width": {"type": "number"}, "height": {"type": "number"},
                       "crossings": {"type": "integer"},
                       "node_width": {"type": "number"}, "node_height": {"type": "number"},
                       "nodes": _array(_ref("GraphNode")), "edges": _array(_ref("GraphEdge")),
                       "total": {"type": "integer"}},
    },
    "Totals": {
        "type": "object",
        "properties": {"attempts": {"type": "integer"}, "passed": {"type": "integer"},
                       "input_tokens": {"type": "integer"}, "output_tokens": {"type": "integer"},
                       "cost_usd": {"type": "number"}, "seconds": {"type": "number"}},
    },
    "Worker": {
        "type": "object",
        "properties": {"task": _ref("Task"), "phase": {"type": "string"},
                       "attempt": {"allOf": [_ref("Attempt")], "nullable": True},
                       "last_event": {"allOf": [_ref("MillEvent")], "nullable": True}},
    },
    "Now": {
        "type": "object",
        "properties": {
            "now": {"type": "string"}, "paused": {"type": "boolean"},
            "mill_running": {"type": "boolean"},
            "workers": _array(_ref("Worker")),
            "merge_queue": _array({"type": "object", "properties": {
                "task": _ref("Task"), "queued_at": {"type": "string"},
                "position": {"type": "integer"}}}),
            "totals": {"type": "object", "properties": {
                "all": _ref("Totals"),
                "by_agent": {"type": "object", "additionalProperties": _ref("Totals")},
                "by_model": {"type": "object", "additionalProperties": _ref("Totals")}}},
            "blocked": _array(_ref("BlockedTask")),
            "events": _array(_ref("MillEvent")),
            "stats": {"type": "object"},
        },
    },
    "Project": {
        "type": "object",
        "properties": {"root": {"type": "string"}, "prefix": {"type": "string"},
                       "paused": {"type": "boolean"}, "statuses": _array({"type": "string"}),
                       "labels": _array({"type": "string"}), "seq": {"type": "integer"},
                       "updatable_fields": _array({"type": "string"}),
                       "stats": {"type": "object"}},
    },
    "Diff": {
        "type": "object",
        "properties": {"commit": {"type": "string"}, "diff": {"type": "string"},
                       "truncated": {"type": "boolean"}},
    },
    "Log": {
        "type": "object",
        "properties": {"path": {"type": "string"}, "kind": {"type": "string"},
                       "text": {"type": "string"}, "size": {"type": "integer"},
                       "truncated": {"type": "boolean"}},
    },
    "Paused": {"type": "object", "properties": {"paused": {"type": "boolean"}}},
    "TaskChanges": {
        "type": "object", "additionalProperties": False,
        "description": "Fields to change (any of the ledger's updatable fields).",
        "properties": {
            "title": {"type": "string"}, "description": {"type": "string"},
            "design": {"type": "string"}, "acceptance_criteria": {"type": "string"},
            "notes": {"type": "string"}, "status": {"type": "string", "enum": list(STATUSES)},
            "priority": {"type": "integer", "minimum": 0, "maximum": 4},
            "issue_type": {"type": "string"}, "assignee": _NULLABLE_STR,
            "external_ref": _NULLABLE_STR, "metadata": {"type": "object", "nullable": True},
            "checks": {"type": "array", "items": {"type": "string"}, "nullable": True},
            "agent": _NULLABLE_STR, "hints": {"type": "object", "nullable": True},
            "close_reason": _NULLABLE_STR,
        },
    },
    "NewComment": {
        "type": "object", "required": ["text"], "additionalProperties": False,
        "properties": {"text": {"type": "string", "minLength": 1},
                       "author": {"type": "string"}},
    },
}

ROUTES: list[RouteSpec] = [
    RouteSpec("GET", "/api/project", "project", "The project: root, id prefix, labels, counts.",
              response=_ref("Project")),
    RouteSpec("GET", "/api/stats", "stats", "Counts, readiness, attempts, tokens and cost."),
    RouteSpec("GET", "/api/tasks", "list_tasks", "List tasks (Ledger.list_tasks).",
              [_STATUS_FILTER, _LABEL_FILTER,
               Param("type", "query", "Keep tasks of this issue type."),
               Param("assignee", "query", "Keep tasks assigned to this actor."),
               Param("parent", "query", "Keep children of this task."), _ALL,
               Param("limit", "query", "At most this many.", {"type": "integer"})],
              response=_array(_ref("Task"))),
    RouteSpec("GET", "/api/ready", "ready", "Open tasks with nothing blocking them.",
              [Param("limit", "query", "At most this many.", {"type": "integer"})],
              response=_array(_ref("Task"))),
    RouteSpec("GET", "/api/blocked", "blocked",
              "Tasks held back, with what holds each and the last comment (the reason).",
              response=_array(_ref("BlockedTask"))),
    RouteSpec("GET", "/api/tasks/{task_id}", "show",
              "A task with its dependencies both ways, comments and every attempt.",
              [TASK_ID], response=_ref("TaskFull"), errors=(404,)),
    RouteSpec("PATCH", "/api/tasks/{task_id}", "update",
              "Change fields of a task, e.g. reprioritise with {\"priority\": 0}.",
              [TASK_ID], body=_ref("TaskChanges"), response=_ref("Task"), errors=(400, 404, 409)),
    RouteSpec("POST", "/api/tasks/{task_id}/reopen", "reopen", "Reopen a task (status -> open).",
              [TASK_ID], response=_ref("Task"), errors=(404, 409)),
    RouteSpec("POST", "/api/tasks/{task_id}/unblock", "unblock",
              "Unblock a task the mill marked blocked (status blocked -> open).",
              [TASK_ID], response=_ref("Task"), errors=(404, 409)),
    RouteSpec("POST", "/api/tasks/{task_id}/comments", "comment",
              "Add a comment; the next iteration's prompt includes it.",
              [TASK_ID], body=_ref("NewComment"), response=_ref("Comment"),
              errors=(400, 404)),
    RouteSpec("GET", "/api/tasks/{task_id}/events", "task_events", "A task's audit trail.",
              [TASK_ID], response=_array(_ref("AuditEvent")), errors=(404,)),
    RouteSpec("GET", "/api/tasks/{task_id}/attempts/{attempt_id}/diff", "diff",
              "The diff an attempt produced (git show of its commit).",
              [TASK_ID, ATTEMPT_ID], response=_ref("Diff"), errors=(404, 502)),
    RouteSpec("GET", "/api/tasks/{task_id}/attempts/{attempt_id}/log", "log",
              "An attempt's agent log (or its checks log); only files under .taskmill/.",
              [TASK_ID, ATTEMPT_ID,
               Param("kind", "query", "agent (default) or checks",
                     {"type": "string", "enum": ["agent", "checks"]})],
              response=_ref("Log"), errors=(403, 404)),
    RouteSpec("GET", "/api/events", "events", "The audit trail (newest last).",
              [Param("since", "query", "Only events after this seq.", {"type": "integer"}),
               Param("limit", "query", "At most this many (default 200).", {"type": "integer"})],
              response=_array(_ref("AuditEvent"))),
    RouteSpec("GET", "/api/graph", "graph",
              "The task graph laid out (layered DAG): nodes with positions, edges with points.",
              [_STATUS_FILTER, _LABEL_FILTER, _ALL], response=_ref("Graph")),
    RouteSpec("GET", "/api/now", "now",
              "Workers and what each is doing, the merge queue, totals per agent and model, "
              "blocked tasks and why, recent mill events.", response=_ref("Now")),
    RouteSpec("GET", "/api/mill", "mill", "The mill: paused or not, and its recent events.",
              [Param("limit", "query", "At most this many events (default 100).",
                     {"type": "integer"})]),
    RouteSpec("POST", "/api/mill/pause", "pause",
              "Pause the mill: it dispatches nothing new (work in flight goes on).",
              response=_ref("Paused")),
    RouteSpec("POST", "/api/mill/resume", "resume", "Resume the mill.", response=_ref("Paused")),
    RouteSpec("GET", "/api/stream", "stream",
              "Server-sent events: {type: ledger|mill|paused|hello, ...} on every change.",
              media_type="text/event-stream", response={"type": "string"}),
    RouteSpec("GET", "/api/openapi.json", "openapi", "This description (OpenAPI 3).",
              response={"type": "object"}),
]


def openapi_document(routes: list[RouteSpec]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for spec in routes:
        op: dict[str, Any] = {
            "operationId": spec.handler,
            "summary": spec.summary,
            "responses": {
                "200": {"description": "OK",
                        "content": {spec.media_type: {"schema": spec.response}}},
                "default": {"description": "An error",
                            "content": {"application/json": {"schema": _ref("Error")}}},
            },
        }
        for status in spec.errors:
            op["responses"][str(status)] = {
                "description": {400: "Bad input", 403: "Refused", 404: "Not found",
                                409: "Conflict", 502: "git failed"}.get(status, "Error"),
                "content": {"application/json": {"schema": _ref("Error")}}}
        if spec.params:
            op["parameters"] = [
                {"name": p.name, "in": p.where, "description": p.description,
                 "required": p.required or p.where == "path", "schema": p.schema}
                for p in spec.params]
        if spec.body is not None:
            op["requestBody"] = {"required": True,
                                 "content": {"application/json": {"schema": spec.body}}}
        paths.setdefault(spec.path, {})[spec.method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {"title": "taskmill dashboard API", "version": "1",
                 "description": "The JSON API the taskmill dashboard page itself uses. Errors "
                                "carry the ledger's error code."},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "Required when the server is bound to a "
                                          "non-loopback address (the token it printed)."},
            },
        },
    }


# -- the handlers --------------------------------------------------------------------------------


class Api:
    def __init__(self, paths: LedgerPaths, config: Config, env: Mapping[str, str], clock: Clock,
                 actor: str) -> None:
        self.paths = paths
        self.config = config
        self.clock = clock
        self.pool = LedgerPool(paths, config, clock, actor)
        self.mill_log = MillLog(paths.run_dir / EVENTS_FILE)
        self.broadcaster = Broadcaster(paths, self.mill_log)
        self.git = Git(paths.root, git_env(env))
        self._layouts: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
        self._layout_lock = threading.Lock()

    def close(self) -> None:
        self.pool.close()

    # -- helpers --------------------------------------------------------------------------

    @staticmethod
    async def _body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise InvalidInput(f"the request body is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidInput("the request body must be a JSON object")
        return data

    @staticmethod
    def _int(request: Request, name: str, default: int | None = None) -> int | None:
        value = request.query_params.get(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError as exc:
            raise InvalidInput(f"{name} must be an integer, not {value!r}") from exc

    @staticmethod
    def _flag(request: Request, name: str) -> bool:
        return request.query_params.get(name, "").lower() in ("1", "true", "yes", "on")

    @staticmethod
    def _statuses(request: Request) -> list[str] | None:
        raw = request.query_params.get("status")
        if not raw:
            return None
        return [s for s in (p.strip() for p in raw.split(",")) if s]

    def _paused(self) -> bool:
        return (self.paths.run_dir / PAUSE_FILE).exists()

    def _now(self) -> datetime:
        return self.clock.now()

    def _attempt_json(self, attempt: dict[str, Any], now: datetime) -> dict[str, Any]:
        item = dict(attempt)
        item["running"] = item.get("outcome") is None
        item["duration_s"] = _seconds(item.get("started_at"), item.get("ended_at"), now)
        log = self._log_file(item.get("log_path"))
        item["has_log"] = bool(log and log.is_file())
        item["has_checks_log"] = bool(log and log.with_suffix(".checks.log").is_file())
        return item

    def _log_file(self, log_path: str | None) -> Path | None:
        if not log_path:
            return None
        path = Path(log_path)
        if not path.is_absolute():
            path = self.paths.root / path
        return path

    def _allowed(self, path: Path) -> Path:
        """``path`` resolved, if it is under ``.taskmill/``; refused otherwise."""
        base = self.paths.dir.resolve()
        real = path.resolve()
        if not real.is_relative_to(base):
            raise Forbidden(f"{path} is not under {base}: only files under .taskmill/ are served")
        return real

    def _last_comments(self, led: Ledger, ids: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for cid, tid, author, text, created in led.conn.execute(
                    "SELECT id, task_id, author, text, created_at FROM comments WHERE id IN"
                    f" (SELECT max(id) FROM comments WHERE task_id IN ({marks}) GROUP BY task_id)",
                    chunk):
                out[tid] = {"id": cid, "issue_id": tid, "author": author, "text": text,
                            "created_at": created}
        return out

    def _blocked(self, led: Ledger) -> list[dict[str, Any]]:
        held = led.blocked()
        last = self._last_comments(led, [b.task.id for b in held])
        out = []
        for b in held:
            item = b.to_json()
            item["last_comment"] = last.get(b.task.id)
            out.append(item)
        return out

    # -- reading --------------------------------------------------------------------------

    def project(self, request: Request) -> Response:
        with self.pool.ledger() as led:
            labels = [r[0] for r in led.conn.execute(
                "SELECT DISTINCT l.label FROM labels l JOIN tasks t ON t.id = l.task_id"
                " WHERE t.status != 'tombstone' ORDER BY l.label")]
            present = [r[0] for r in led.conn.execute("SELECT DISTINCT status FROM tasks")]
            seq = led.conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
            stats = led.stats()
        statuses = list(STATUSES) + sorted(s for s in present if s not in STATUSES)
        return _json({"root": str(self.paths.root), "prefix": self.config.prefix,
                      "paused": self._paused(), "statuses": statuses, "labels": labels,
                      "seq": seq, "updatable_fields": list(UPDATABLE_FIELDS), "stats": stats})

    def stats(self, request: Request) -> Response:
        with self.pool.ledger() as led:
            return _json(led.stats())

    def list_tasks(self, request: Request) -> Response:
        q = request.query_params
        with self.pool.ledger() as led:
            tasks = led.list_tasks(status=self._statuses(request), label=q.get("label") or None,
                                   issue_type=q.get("type") or None,
                                   assignee=q.get("assignee") or None,
                                   parent=q.get("parent") or None,
                                   include_hidden=self._flag(request, "all"),
                                   limit=self._int(request, "limit"))
        return _json([t.to_json() for t in tasks])

    def ready(self, request: Request) -> Response:
        with self.pool.ledger() as led:
            tasks = led.ready(limit=self._int(request, "limit"))
        return _json([t.to_json() for t in tasks])

    def blocked(self, request: Request) -> Response:
        with self.pool.ledger() as led:
            return _json(self._blocked(led))

    def show(self, request: Request) -> Response:
        now = self._now()
        with self.pool.ledger() as led:
            task = led.show(request.path_params["task_id"])
            data = task.to_json(full=True)
            linked = {d.depends_on_id for d in task.dependencies} | {
                d.issue_id for d in task.dependents}
            info: dict[str, tuple[str, str]] = {}
            for tid in linked:
                row = led.conn.execute("SELECT title, status FROM tasks WHERE id = ?",
                                       (tid,)).fetchone()
                if row:
                    info[tid] = (row[0], row[1])
        for dep in data["dependencies"]:
            dep["title"], dep["status"] = info.get(dep["depends_on_id"], (None, "missing"))
        for dep in data["dependents"]:
            dep["title"], dep["status"] = info.get(dep["issue_id"], (None, "missing"))
        data["attempts"] = [self._attempt_json(a, now) for a in data["attempts"]]
        data["blocked_by"] = [d["depends_on_id"] for d in data["dependencies"]
                              if d["type"] == "blocks"
                              and d["status"] not in ("closed", "tombstone", "missing")]
        return _json(data)

    def task_events(self, request: Request) -> Response:
        with self.pool.ledger() as led:
            events = led.events(request.path_params["task_id"])
        return _json([e.to_json() for e in events])

    def events(self, request: Request) -> Response:
        since = self._int(request, "since")
        limit = self._int(request, "limit", 200) or 200
        with self.pool.ledger() as led:
            if since is None:
                events = led.events(limit=limit)
            else:
                events = [event_from_row(r) for r in led.conn.execute(
                    "SELECT seq, ts, actor, task_id, kind, data, prev_hash, hash FROM events"
                    " WHERE seq > ? ORDER BY seq LIMIT ?", (since, limit))]
        return _json([e.to_json() for e in events])

    def _attempt(self, request: Request) -> tuple[str, dict[str, Any]]:
        raw = request.path_params["attempt_id"]
        with self.pool.ledger() as led:
            tid = led.resolve(request.path_params["task_id"])
            attempts = led.attempts(tid)
        for attempt in attempts:
            if str(attempt["id"]) == str(raw):
                return tid, attempt
        raise NotFound(f"{tid} has no attempt {raw}")

    def diff(self, request: Request) -> Response:
        tid, attempt = self._attempt(request)
        sha = attempt.get("commit_sha")
        if not sha:
            raise NotFound(f"attempt {attempt['id']} of {tid} made no commit")
        if not re.fullmatch(r"[0-9a-fA-F]{4,64}", sha):
            raise InvalidInput(f"{sha!r} is not a commit id")
        if self.git.rev(sha) is None:
            raise NotFound(f"commit {sha} is not in the repository any more",
                           hint="its branch may have been deleted and garbage-collected")
        proc = self.git.run("show", "--no-color", "--no-ext-diff", "--stat", "--patch",
                            "--format=fuller", sha, timeout=30.0)
        text = proc.stdout
        truncated = len(text) > DIFF_LIMIT
        return _json({"commit": sha, "diff": text[:DIFF_LIMIT], "truncated": truncated})

    def log(self, request: Request) -> Response:
        kind = request.query_params.get("kind", "agent")
        if kind not in ("agent", "checks"):
            raise InvalidInput(f"kind must be agent or checks, not {kind!r}")
        tid, attempt = self._attempt(request)
        path = self._log_file(attempt.get("log_path"))
        if path is None:
            raise NotFound(f"attempt {attempt['id']} of {tid} has no log")
        if kind == "checks":
            path = path.with_suffix(".checks.log")
        real = self._allowed(path)
        if not real.is_file():
            raise NotFound(f"the {kind} log {path} does not exist")
        size = real.stat().st_size
        with real.open("rb") as fh:
            if size > LOG_LIMIT:
                fh.seek(size - LOG_LIMIT)
            text = fh.read().decode("utf-8", errors="replace")
        return _json({"path": str(path), "kind": kind, "text": text, "size": size,
                      "truncated": size > LOG_LIMIT})

    def graph(self, request: Request) -> Response:
        statuses = self._statuses(request)
        label = request.query_params.get("label") or None
        include_all = self._flag(request, "all")
        with self.pool.ledger() as led:
            tasks = led.list_tasks(status=statuses, label=label, include_hidden=include_all)
            if not include_all:
                tasks = [t for t in tasks if t.status != "tombstone"]
            ids = {t.id for t in tasks}
            edges = [(b, a, typ) for a, b, typ in led.conn.execute(
                "SELECT issue_id, depends_on_id, type FROM deps ORDER BY issue_id, pos")
                if a in ids and b in ids]
        node_ids = [t.id for t in tasks]  # priority order: important work near the top
        key = (tuple(node_ids), tuple(edges))
        with self._layout_lock:
            layout = self._layouts.get(key)
            if layout is not None:
                self._layouts.move_to_end(key)
        if layout is None:
            layout = graph_layout.layered_layout(node_ids, edges).to_json()
            with self._layout_lock:
                self._layouts[key] = layout
                while len(self._layouts) > 16:
                    self._layouts.popitem(last=False)
        by_id = {t.id: t for t in tasks}
        nodes = []
        for node in layout["nodes"]:
            t = by_id[node["id"]]
            nodes.append({**node, "title": t.title, "status": t.status, "priority": t.priority,
                          "ready": t.ready, "labels": t.labels, "issue_type": t.issue_type,
                          "assignee": t.assignee})
        spacing = graph_layout.Spacing()
        return _json({**layout, "nodes": nodes, "total": len(nodes),
                      "node_width": spacing.node_width, "node_height": spacing.node_height})

    def _totals(self, led: Ledger, now: datetime) -> dict[str, Any]:
        def zero() -> dict[str, Any]:
            return {"attempts": 0, "passed": 0, "input_tokens": 0, "output_tokens": 0,
                    "cost_usd": 0.0, "seconds": 0.0}

        total = zero()
        by_agent: dict[str, dict[str, Any]] = {}
        by_model: dict[str, dict[str, Any]] = {}
        for agent, model, started, ended, outcome, tin, tout, cost in led.conn.execute(
                "SELECT agent, model, started_at, ended_at, outcome, input_tokens,"
                " output_tokens, cost_usd FROM attempts"):
            seconds = _seconds(started, ended, now) or 0.0
            for bucket in (total, by_agent.setdefault(agent or "(none)", zero()),
                           by_model.setdefault(model or "(default)", zero())):
                bucket["attempts"] += 1
                bucket["passed"] += outcome == "passed"
                bucket["input_tokens"] += int(tin or 0)
                bucket["output_tokens"] += int(tout or 0)
                bucket["cost_usd"] += float(cost or 0.0)
                bucket["seconds"] += seconds
        for bucket in (total, *by_agent.values(), *by_model.values()):
            bucket["cost_usd"] = round(bucket["cost_usd"], 6)
            bucket["seconds"] = round(bucket["seconds"], 3)
        return {"all": total, "by_agent": by_agent, "by_model": by_model}

    def now(self, request: Request) -> Response:
        now = self._now()
        self.mill_log.refresh()
        mill = self.mill_log.snapshot(limit=40)
        with self.pool.ledger() as led:
            in_progress = led.list_tasks(status="in_progress")
            running: dict[str, dict[str, Any]] = {}
            for task in in_progress:
                attempts = led.attempts(task.id)
                live = [a for a in attempts if a.get("outcome") is None]
                if live:
                    running[task.id] = live[-1]
            blocked = self._blocked(led)
            totals = self._totals(led, now)
            stats = led.stats()
        workers = []
        queue_: list[dict[str, Any]] = []
        for task in in_progress:
            last = mill["last_by_task"].get(task.id)
            attempt = running.get(task.id)
            kind = last.get("event") if last else None
            if attempt is not None and kind not in ("turn_started", "agent_paused"):
                phase = f"agent turn {attempt['iteration']}"
            elif kind == "turn_started" and last is not None:
                phase = f"agent turn {last.get('iteration', '?')} ({last.get('agent', '?')})"
            else:
                phase = _PHASES.get(str(kind), "in progress") if kind else "in progress"
            workers.append({"task": task.to_json(), "phase": phase,
                            "attempt": self._attempt_json(attempt, now) if attempt else None,
                            "last_event": last})
            if task.id in mill["queued_at"]:
                queue_.append({"task": task.to_json(), "queued_at": mill["queued_at"][task.id]})
        queue_.sort(key=lambda q: q["queued_at"])
        for pos, item in enumerate(queue_):
            item["position"] = pos
        return _json({"now": iso(now), "paused": self._paused(), "mill_running": mill["running"],
                      "workers": workers, "merge_queue": queue_, "totals": totals,
                      "blocked": blocked, "events": mill["recent"], "stats": stats})

    def mill(self, request: Request) -> Response:
        limit = self._int(request, "limit", 100) or 100
        self.mill_log.refresh()
        snap = self.mill_log.snapshot(limit=limit)
        return _json({"paused": self._paused(), "running": snap["running"], "run": snap["run"],
                      "events": snap["recent"]})

    # -- actions --------------------------------------------------------------------------

    async def update(self, request: Request) -> Response:
        body = await self._body(request)
        if not body:
            raise InvalidInput("nothing to change", hint="send a JSON object of fields")
        tid = request.path_params["task_id"]
        return await self._in_thread(lambda led: led.update(tid, body).to_json())

    async def reopen(self, request: Request) -> Response:
        tid = request.path_params["task_id"]
        return await self._in_thread(lambda led: led.reopen(tid).to_json())

    async def unblock(self, request: Request) -> Response:
        tid = request.path_params["task_id"]

        def do(led: Ledger) -> Any:
            task = led.get(tid)
            if task.status != "blocked":
                from ..errors import Conflict

                raise Conflict(f"{task.id} is {task.status}, not blocked",
                               hint="reopen a closed task instead" if task.status == "closed"
                               else None)
            return led.update(task.id, {"status": "open"}, expect_status="blocked").to_json()

        return await self._in_thread(do)

    async def comment(self, request: Request) -> Response:
        body = await self._body(request)
        text = body.get("text")
        if not isinstance(text, str):
            raise InvalidInput("a comment needs a text (a string)")
        author = body.get("author")
        if author is not None and not isinstance(author, str):
            raise InvalidInput("author must be a string")
        tid = request.path_params["task_id"]
        return await self._in_thread(
            lambda led: led.comment(tid, text, author=author or None).to_json(), status=201)

    async def _in_thread(self, fn: Callable[[Ledger], Any], status: int = 200) -> Response:
        from starlette.concurrency import run_in_threadpool

        def work() -> Any:
            with self.pool.ledger() as led:
                return fn(led)

        return _json(await run_in_threadpool(work), status)

    def pause(self, request: Request) -> Response:
        self.paths.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.paths.run_dir / PAUSE_FILE
        if not path.exists():
            tmp = path.with_name(f".{PAUSE_FILE}.{os.getpid()}")
            tmp.write_text(f"paused from the dashboard at {iso(self._now())}\n", encoding="utf-8")
            tmp.replace(path)
        return _json({"paused": True})

    def resume(self, request: Request) -> Response:
        (self.paths.run_dir / PAUSE_FILE).unlink(missing_ok=True)
        return _json({"paused": False})

    # -- live -----------------------------------------------------------------------------

    async def stream(self, request: Request) -> Response:
        q = self.broadcaster.subscribe()
        hello = {"type": "hello", "seq": self.broadcaster.seq, "paused": self.broadcaster.paused}

        async def events() -> AsyncIterator[str]:
            try:
                yield "retry: 1000\n\n"
                yield f"data: {json.dumps(hello)}\n\n"
                while True:
                    try:
                        message = await asyncio.wait_for(q.get(), timeout=HEARTBEAT_SECONDS)
                    except TimeoutError:
                        if await request.is_disconnected():
                            return
                        yield ": ping\n\n"
                        continue
                    if message is None:
                        return
                    yield f"data: {json.dumps(message, ensure_ascii=False, default=str)}\n\n"
            finally:
                self.broadcaster.unsubscribe(q)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store",
                                          "X-Accel-Buffering": "no"})

    def openapi(self, request: Request) -> Response:
        return _json(openapi_document(ROUTES))
