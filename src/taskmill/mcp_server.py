"""``taskmill mcp``: the ledger served to agents over the Model Context Protocol (stdio).

Built on the official ``mcp`` SDK (2.x, :class:`mcp.server.mcpserver.MCPServer`). Every tool
is one call into :class:`taskmill.ledger.Ledger`, the same calls the CLI makes, and returns
the same JSON as the CLI's ``--json``. Each call opens the ledger afresh (the SDK runs
synchronous tools on worker threads; a connection per call keeps SQLite single-threaded)
and closes it before returning, so the server holds no lock between calls.

Tools:

- ``ready`` -- open tasks with nothing blocking them (``limit``);
- ``list`` -- tasks filtered by status, label, type, assignee, parent (``limit``);
- ``show`` -- one task with dependencies both ways, comments and attempts;
- ``create`` -- a new task (title, description, priority, labels, checks, after, parent,
  issue_type). Inside a mill worktree (``TASKMILL_TASK_ID`` set in the server's
  environment) the new task is linked ``discovered-from`` the task being worked;
- ``update_notes`` -- append to or replace a task's notes;
- ``comment`` -- add a comment;
- ``add_dependency`` -- ``task_id`` depends on ``depends_on`` (blocks, parent-child,
  related, discovered-from; a gating edge that would close a cycle is refused);
- ``dismiss_finding`` -- reject a finding of the reviewer (``[review]``) with a reason;
  inside a turn, only a finding of the task being worked;
- ``close`` -- only when *not* working a task: inside a mill worktree the mill closes the
  task once its checks pass and the work has merged, so an agent cannot close anything
  (inside a turn, a call of it anyway is refused by the mill and recorded).

``update_notes`` and ``comment`` default ``task_id`` to the task being worked, when there is
one. Ledger errors (:class:`taskmill.errors.TaskmillError`) become MCP tool errors
(``isError``) whose text is ``<code>: <message>`` plus the hint.

The environment and working directory are passed in (:func:`build_server`); nothing here
reads ``os.environ``. ``$TASKMILL_DIR`` selects the ledger, otherwise the repository
containing ``cwd`` does; ``$TASKMILL_ACTOR`` names who makes the changes.

Inside an agent turn (``$TASKMILL_SOCKET`` set by the mill) the server never opens the
ledger: every tool goes through the turn's capability socket
(:mod:`taskmill.capability`), which signs changes as the agent and refuses what is not the
agent's to do; a call of a tool the server does not offer (``close``) is refused there too,
so the mill records the attempt.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

from .capability import SOCKET_ENV
from .capability.client import CapabilityClient, RemoteTasks
from .errors import InvalidInput, TaskmillError
from .model import DEP_TYPES, ISSUE_TYPES, DepType, TaskStatus
from .project import open_project
from .schemas import Checks, Priority, Title

SERVER_NAME = "taskmill"
TASK_ENV = "TASKMILL_TASK_ID"

TaskId = Annotated[str, Field(description="A task id (or a unique prefix of one), e.g. tm-a1b2.")]
Limit = Annotated[int, Field(ge=1, le=1000, description="At most this many tasks.")]

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                            open_world_hint=False)
ADDITIVE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
CHANGES = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)


def tool_error(exc: TaskmillError) -> ToolError:
    """The MCP tool error for a ledger error: ``<code>: <message>`` and the hint."""
    text = f"{exc.code}: {exc.message}"
    if exc.hint:
        text += f" (hint: {exc.hint})"
    return ToolError(text)


def dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2, default=str)


class TurnServer(MCPServer):
    """The server inside a turn: a call of a tool it does not offer is refused by the mill
    (which records it), not only answered "unknown tool"."""

    refuse: Callable[[str, dict[str, Any]], TaskmillError] | None = None

    async def call_tool(self, name: str, arguments: dict[str, Any],
                        context: Any = None) -> Any:
        refuse = self.refuse
        if refuse is not None and name not in {t.name for t in await self.list_tools()}:
            exc = await anyio.to_thread.run_sync(refuse, name, arguments)
            raise tool_error(exc)
        return await super().call_tool(name, arguments, context)


def build_server(cwd: Path, env: Mapping[str, str]) -> MCPServer:
    """The taskmill MCP server for the ledger found from ``cwd`` / ``env`` (or, inside a
    turn, for the turn's capability socket).

    Raises :class:`TaskmillError` (e.g. ``NotInitialized``) when there is no ledger, so
    the command fails at once instead of on the first tool call.
    """
    env = dict(env)
    current = env.get(TASK_ENV) or None
    socket_path = env.get(SOCKET_ENV) or None
    client: CapabilityClient | None = None
    client_lock = threading.Lock()
    if socket_path:  # inside a turn: the mill's socket, never the database
        client = CapabilityClient(socket_path)
        current = str(client.call("hello")["task"])  # fail fast: the mill must answer
    else:
        open_project(cwd, env).close()  # fail fast: there must be a ledger

    @contextmanager
    def ledger() -> Iterator[Any]:
        """The ledger (or, inside a turn, the calls the capability allows)."""
        if client is not None:
            with client_lock:
                try:
                    yield RemoteTasks(client)
                except TaskmillError as exc:
                    raise tool_error(exc) from exc
            return
        try:
            project = open_project(cwd, env)
        except TaskmillError as exc:
            raise tool_error(exc) from exc
        try:
            yield project.ledger
        except TaskmillError as exc:
            raise tool_error(exc) from exc
        finally:
            project.close()

    def task_or_current(task_id: str | None) -> str:
        if task_id:
            return task_id
        if current:
            return current
        raise tool_error(InvalidInput("task_id is required (no task is being worked here)"))

    if current:
        instructions = (
            f"taskmill's work ledger. You are working task {current}; `show` it for details. "
            "Record follow-up work you find with `create` (it is linked discovered-from "
            f"{current} automatically) instead of doing it now. Notes and comments default to "
            f"{current}. The mill closes {current} itself once its checks pass."
        )
    else:
        instructions = ("taskmill's work ledger: see `ready` work, `show` tasks, `create` them, "
                        "link dependencies, comment and close.")
    server = TurnServer(SERVER_NAME, instructions=instructions, log_level="WARNING",
                        warn_on_duplicate_tools=False)
    if client is not None:
        turn_client = client

        def refuse(name: str, arguments: dict[str, Any]) -> TaskmillError:
            with client_lock:
                shown = json.dumps(arguments, ensure_ascii=False, default=str)[:300]
                return turn_client.refuse(name, f"the MCP tool {name}({shown})")

        server.refuse = refuse

    def ready(limit: Limit = 20) -> str:
        """Open tasks with nothing blocking them, highest priority (0) first, then oldest."""
        with ledger() as led:
            return dumps([t.to_json() for t in led.ready(limit=limit)])

    def list_tasks(
        status: Annotated[list[TaskStatus] | None, Field(
            description="Only these statuses.")] = None,
        label: Annotated[str | None, Field(description="Only tasks with this label.")] = None,
        issue_type: Annotated[str | None, Field(description="Only this type.")] = None,
        assignee: Annotated[str | None, Field(description="Only this assignee.")] = None,
        parent: Annotated[str | None, Field(description="Only children of this task.")] = None,
        limit: Limit = 100,
    ) -> str:
        """List tasks, optionally filtered (tombstoned records are left out)."""
        with ledger() as led:
            tasks = led.list_tasks(status=list(status) if status else None, label=label,
                                   issue_type=issue_type, assignee=assignee, parent=parent,
                                   limit=limit)
            return dumps([t.to_json() for t in tasks])

    def show(task_id: TaskId) -> str:
        """A task with its dependencies (both ways), comments and attempts."""
        with ledger() as led:
            return dumps(led.show(task_id).to_json(full=True))

    def create(
        title: Annotated[Title, Field(description="A short imperative title.")],
        description: Annotated[str, Field(description="What the task is about.")] = "",
        priority: Priority = 2,
        labels: Annotated[list[str] | None, Field(description="Labels.")] = None,
        checks: Annotated[Checks | None, Field(
            description="Shell commands that decide whether the task is done.")] = None,
        after: Annotated[list[str] | None, Field(
            description="Ids of tasks this one waits on (blocks).")] = None,
        parent: Annotated[str | None, Field(description="The parent task (an epic).")] = None,
        issue_type: Annotated[str, Field(
            description=", ".join(ISSUE_TYPES) + "...")] = "task",
    ) -> str:
        """Create a task. Returns it as JSON (with its new id)."""
        with ledger() as led:
            task = led.create(title, description=description, priority=priority,
                              issue_type=issue_type, labels=labels or (),
                              checks=list(checks) if checks else None, after=after or (),
                              parent=parent, discovered_from=current)
            return dumps(led.show(task.id).to_json(full=True))

    def update_notes(
        text: Annotated[str, Field(description="The text to add, or the new notes.")],
        task_id: Annotated[str | None, Field(
            description="The task (default: the task being worked).")] = None,
        mode: Annotated[Literal["append", "replace"], Field(
            description="append (a new line) or replace the notes.")] = "append",
    ) -> str:
        """Append to (default) or replace a task's notes."""
        tid = task_or_current(task_id)
        with ledger() as led:
            if mode == "append" and client is not None:
                return dumps(led.update(tid, {}, append_notes=text).to_json())
            if mode == "append":  # one transaction: concurrent appends are all kept
                return dumps(led.append_notes(tid, text).to_json())
            return dumps(led.update(tid, {"notes": text}).to_json())

    def comment(
        text: Annotated[str, Field(min_length=1, description="The comment.")],
        task_id: Annotated[str | None, Field(
            description="The task (default: the task being worked).")] = None,
    ) -> str:
        """Add a comment to a task (the next agent turn on it sees the comment)."""
        tid = task_or_current(task_id)
        with ledger() as led:
            return dumps(led.comment(tid, text).to_json())

    def add_dependency(
        task_id: TaskId,
        depends_on: Annotated[str, Field(description="The task that task_id depends on.")],
        type: Annotated[DepType, Field(
            description=f"{DEP_TYPES[0]} (task_id waits for depends_on), "
                        f"{', '.join(DEP_TYPES[1:-1])} or {DEP_TYPES[-1]}.")] = "blocks",
    ) -> str:
        """Record that task_id depends on depends_on. A blocking edge closing a cycle is refused."""
        with ledger() as led:
            return dumps(led.add_dep(task_id, depends_on, type).to_json())

    def dismiss_finding(
        finding_id: Annotated[str, Field(description="The finding's id, e.g. F-1a2b3c4d.")],
        reason: Annotated[str, Field(min_length=1, description="Why the finding is wrong.")],
    ) -> str:
        """Dismiss a finding of the reviewer that is wrong, giving your reason (it is
        recorded, and counts against the reviewer's hit rate)."""
        with ledger() as led:
            if client is not None:
                return dumps(led.dismiss_finding(finding_id, reason))
            from .review.book import dismiss

            return dumps(dismiss(led, finding_id, reason=reason, actor=led.actor).to_json())

    def close(
        task_id: TaskId,
        reason: Annotated[str | None, Field(description="Why it is closed.")] = None,
    ) -> str:
        """Close a task; what it blocked may become ready."""
        with ledger() as led:
            return dumps(led.close(task_id, reason).to_json())

    server.add_tool(ready, annotations=READ_ONLY, structured_output=False)
    server.add_tool(list_tasks, name="list", annotations=READ_ONLY, structured_output=False)
    server.add_tool(show, annotations=READ_ONLY, structured_output=False)
    server.add_tool(create, annotations=ADDITIVE, structured_output=False)
    server.add_tool(update_notes, annotations=CHANGES, structured_output=False)
    server.add_tool(comment, annotations=ADDITIVE, structured_output=False)
    server.add_tool(add_dependency, annotations=ADDITIVE, structured_output=False)
    server.add_tool(dismiss_finding, annotations=CHANGES, structured_output=False)
    if not current:
        server.add_tool(close, annotations=CHANGES, structured_output=False)
    return server


def main(cwd: Path, env: Mapping[str, str]) -> None:
    """Serve the ledger on stdin/stdout until the client closes stdin."""
    build_server(cwd, env).run("stdio")

