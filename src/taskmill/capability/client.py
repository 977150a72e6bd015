"""The turn's side of the capability: what the ``taskmill`` CLI and ``taskmill mcp`` use
inside an agent turn (``$TASKMILL_SOCKET`` set) instead of opening the ledger.

:class:`CapabilityClient` sends requests and turns error answers back into taskmill's
exceptions; :class:`RemoteTasks` offers the few ledger calls an agent has (the same names
and arguments as :class:`taskmill.ledger.Ledger`'s), returning the model's records, so the
CLI renders them as it renders the ledger's.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..errors import Forbidden, TaskmillError
from ..model import BlockedTask, Comment, Dependency, Task
from .protocol import LineReader, connect_unix, encode, error_from_json, refusal_message


class CapabilityClient:
    """A connection to the turn's capability socket (opened on first use)."""

    def __init__(self, path: str | Path, *, timeout: float = 120.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._reader: LineReader | None = None

    def _connect(self) -> tuple[socket.socket, LineReader]:
        if self._sock is None or self._reader is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                connect_unix(sock, self.path)
            except OSError as exc:
                sock.close()
                raise TaskmillError(
                    f"cannot reach the mill's capability socket {self.path}: "
                    f"{exc.strerror or exc}",
                    hint="inside a taskmill turn the ledger is reached only through the mill; "
                         "the turn may be over") from None
            self._sock, self._reader = sock, LineReader(sock)
        return self._sock, self._reader

    def call(self, op: str, **args: Any) -> Any:
        """The result of ``op``; raises the error the mill answered with."""
        sock, reader = self._connect()
        try:
            sock.sendall(encode({"op": op, "args": args}))
            line = reader.read()
        except OSError as exc:
            self.close()
            raise TaskmillError(f"the mill's capability socket failed: {exc}") from None
        if line is None:
            self.close()
            raise TaskmillError("the mill closed the capability socket (the turn is over?)")
        import json

        try:
            answer = json.loads(line)
        except ValueError:
            raise TaskmillError("the mill answered with something that is not JSON") from None
        if not isinstance(answer, dict):
            raise TaskmillError("the mill answered with something that is not an object")
        if not answer.get("ok"):
            raise error_from_json(answer.get("error"))
        return answer.get("result")

    def refuse(self, op: str, what: str, **args: Any) -> TaskmillError:
        """Ask for something the capability never allows (so the mill records the attempt);
        the error to raise."""
        try:
            self.call(op, what=what, **args)
        except TaskmillError as exc:
            return exc
        return Forbidden(refusal_message(what))  # pragma: no cover - the mill refuses

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = self._reader = None


_TASK_FIELDS = {f.name for f in dataclasses.fields(Task)}


def task_from_json(data: dict[str, Any]) -> Task:
    """A :class:`Task` from its JSON (``to_json``, full or not)."""
    plain = {k: v for k, v in data.items() if k in _TASK_FIELDS and k not in (
        "dependencies", "dependents", "comments", "child_tasks")}
    task = Task(**plain)
    task.dependencies = [Dependency(**d) for d in data.get("dependencies") or []]
    task.dependents = [Dependency(**d) for d in data.get("dependents") or []]
    task.comments = [comment_from_json(c) for c in data.get("comments") or []]
    task.child_tasks = [task_from_json(c) for c in data.get("child_tasks") or []]
    return task


def comment_from_json(data: dict[str, Any]) -> Comment:
    return Comment(data["id"], data["issue_id"], data["author"], data["text"],
                   data["created_at"])


def blocked_from_json(data: dict[str, Any]) -> BlockedTask:
    return BlockedTask(task_from_json(data), list(data.get("blocked_by") or []),
                       list(data.get("held_by_parent") or []),
                       list(data.get("held_by_ancestor") or []),
                       list(data.get("reasons") or []), data.get("block_reason"),
                       data.get("unblock_with"))


class RemoteTasks:
    """The ledger calls an agent may make, through the capability."""

    def __init__(self, client: CapabilityClient) -> None:
        self.client = client

    def show(self, task_id: str) -> Task:
        return task_from_json(self.client.call("show", task_id=task_id))

    def list_tasks(self, *, status: str | Sequence[str] | None = None,
                   label: str | None = None, issue_type: str | None = None,
                   assignee: str | None = None, parent: str | None = None,
                   include_hidden: bool = False, limit: int | None = None) -> list[Task]:
        args = {"status": [status] if isinstance(status, str) else
                (list(status) if status else None), "label": label, "issue_type": issue_type,
                "assignee": assignee, "parent": parent, "include_hidden": include_hidden,
                "limit": limit}
        return [task_from_json(t) for t in self.client.call("list", **args)]

    def ready(self, *, limit: int | None = None) -> list[Task]:
        return [task_from_json(t) for t in self.client.call("ready", limit=limit)]

    def blocked(self) -> list[BlockedTask]:
        return [blocked_from_json(b) for b in self.client.call("blocked")]

    def create(self, title: str, *, after: Iterable[str] = (),
               labels: Iterable[str] = (), **fields: Any) -> Task:
        return task_from_json(self.client.call("create", title=title, after=list(after),
                                               labels=list(labels), **fields))

    def comment(self, task_id: str | None, text: str, *, author: str | None = None) -> Comment:
        return comment_from_json(self.client.call("comment", task_id=task_id, text=text,
                                                  author=author))

    def update(self, task_id: str, changes: dict[str, Any], *,
               append_notes: str | None = None, claim: bool = False) -> Task:
        return task_from_json(self.client.call("update", task_id=task_id, changes=changes,
                                               append_notes=append_notes, claim=claim))

    def dismiss_finding(self, finding_id: str, reason: str) -> dict[str, Any]:
        result: dict[str, Any] = self.client.call("dismiss_finding", finding_id=finding_id,
                                                  reason=reason)
        return result

    def add_dep(self, task_id: str, depends_on: str, dep_type: str = "blocks") -> Dependency:
        return Dependency(**self.client.call("dep_add", task_id=task_id,
                                             depends_on=depends_on, type=dep_type))
