"""The mill's side of the capability: one unix socket per agent turn, served from one thread.

:class:`CapabilityServer` is started with the run (:mod:`taskmill.mill.engine`) and stopped
with it. A worker registers each turn (:meth:`CapabilityServer.register`: a fresh socket,
mode 0600, in a 0700 directory under the run directory, named by random bytes) and
unregisters it when the turn ends: the socket file is removed and the turn's connections
are cut, so nothing the turn left behind keeps the capability.

One socket per turn (rather than one per run with a token per turn): the socket *is* the
capability, so nothing secret sits in the agent's environment, the sandbox binds exactly
that one path, and a socket of another turn is a path the sandbox does not show.

What a turn may do (everything as ``agent:<agent>/<task>``):

- ``show``, ``list``, ``ready``, ``blocked``: read tasks;
- ``create``: a task linked ``discovered-from`` the turn's task (its checks, agent, assignee,
  status, id and role are a person's to set: refused);
- ``comment``: on any task, signed as the agent (another author is refused);
- ``update``: its own task's notes (``notes``, ``append_notes``), nothing else;
- ``dep_add``: a dependency *from* its own task or a task it created in this turn (a
  ``parent-child`` edge to a closed task, which would reopen it, is refused).

Everything else (close, reopen, claim, other fields, other tasks, any other command) is
refused with a ``forbidden`` error and recorded: audit event ``capability_refused``
``{"op", "what", "args"}`` on the turn's task, and ``on_refused`` (the mill's event bus).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import selectors
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Forbidden, InvalidInput, TaskmillError
from ..ledger import Ledger
from ..model import CLOSED, DEP_TYPES, PARENT_CHILD
from .protocol import LineReader, bind_unix, encode, error_json, refusal_message

READ_OPS = ("show", "list", "ready", "blocked")
WRITE_OPS = ("create", "comment", "update", "dep_add", "dismiss_finding")
CREATE_FIELDS = frozenset({"title", "description", "design", "acceptance_criteria", "notes",
                           "priority", "issue_type", "labels", "external_ref", "metadata",
                           "hints", "after", "parent", "discovered_from"})
CREATE_REFUSED = ("checks", "agent", "assignee", "status", "task_id", "role")
LIST_FIELDS = frozenset({"status", "label", "issue_type", "assignee", "parent",
                         "include_hidden", "limit"})


class Refused(Exception):
    """An operation outside the capability; ``what`` says what it would have done."""

    def __init__(self, what: str, hint: str | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.hint = hint


@dataclass
class TurnScope:
    """One turn's capability: its task, its agent, the tasks it created."""

    task_id: str
    agent: str
    socket: Path
    created: set[str] = field(default_factory=set)
    active: bool = True

    @property
    def author(self) -> str:
        return f"agent:{self.agent}/{self.task_id}"


RefusalSink = Callable[[TurnScope, str, str], None]


def _text(args: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = args.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{name} must be a non-empty string")
    return value


def _short(args: dict[str, Any]) -> str:
    text = json.dumps(args, ensure_ascii=False, default=str)
    return text if len(text) <= 2000 else text[:2000] + "..."


class CapabilityServer:
    """Serves the capability sockets of a run's turns (see the module's description)."""

    def __init__(self, directory: Path, ledger_factory: Callable[[], Ledger], *,
                 run_dir: Path | None = None, on_refused: RefusalSink | None = None) -> None:
        self.directory = directory
        self.ledger_factory = ledger_factory
        self.run_dir = run_dir
        self.on_refused = on_refused
        self._lock = threading.Lock()
        self._scopes: dict[Path, TurnScope] = {}
        self._listeners: dict[Path, socket.socket] = {}
        self._conns: dict[Path, set[socket.socket]] = {}
        self._pending: list[tuple[str, socket.socket, TurnScope | None]] = []
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: threading.Thread | None = None
        self._stopping = False

    # -- life ------------------------------------------------------------------------------

    def start(self) -> None:
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        self.directory.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.directory, 0o700)
        self._thread = threading.Thread(target=self._serve, name="taskmill-capability",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        for path in list(self._scopes):
            self.unregister(path)
        self._stopping = True
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._wake_r.close()
        self._wake_w.close()
        with contextlib.suppress(OSError):
            self.directory.rmdir()  # empty once every turn is unregistered

    def register(self, task_id: str, agent: str) -> Path:
        """A new socket for one turn of ``agent`` on ``task_id``; its path."""
        path = self.directory / f"{secrets.token_hex(6)}.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            bind_unix(sock, path)
            os.chmod(path, 0o600)
            sock.listen(16)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            path.unlink(missing_ok=True)
            raise
        scope = TurnScope(task_id, agent, path)
        with self._lock:
            self._scopes[path] = scope
            self._listeners[path] = sock
            self._conns[path] = set()
            self._pending.append(("add", sock, scope))
        self._wake()
        return path

    def unregister(self, path: Path) -> None:
        """End a turn's capability: its socket is removed and its connections are cut."""
        with self._lock:
            scope = self._scopes.pop(path, None)
            sock = self._listeners.pop(path, None)
            conns = self._conns.pop(path, set())
            if sock is not None:
                self._pending.append(("remove", sock, None))
        if scope is not None:
            scope.active = False
        path.unlink(missing_ok=True)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ, None)
        try:
            while True:
                for key, _ in sel.select():
                    if key.data is None:
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(4096)
                        with self._lock:
                            pending, self._pending = self._pending, []
                        for action, sock, scope in pending:
                            if action == "add":
                                sel.register(sock, selectors.EVENT_READ, scope)
                            else:
                                with contextlib.suppress(KeyError, ValueError):
                                    sel.unregister(sock)
                                sock.close()
                        if self._stopping:
                            return
                        continue
                    self._accept(key.fileobj, key.data)  # type: ignore[arg-type]
        finally:
            sel.close()

    def _accept(self, listener: socket.socket, scope: TurnScope) -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        conn.setblocking(True)
        with self._lock:
            conns = self._conns.get(scope.socket)
            if conns is None or not scope.active:
                conn.close()
                return
            conns.add(conn)
        threading.Thread(target=self._handle, args=(conn, scope),
                         name=f"taskmill-capability-{scope.task_id}", daemon=True).start()

    # -- one connection --------------------------------------------------------------------

    def _handle(self, conn: socket.socket, scope: TurnScope) -> None:
        reader = LineReader(conn)
        ledger: Ledger | None = None

        def led() -> Ledger:
            nonlocal ledger
            if ledger is None:
                ledger = self.ledger_factory()
                ledger.actor = scope.author
            return ledger

        try:
            while scope.active:
                try:
                    line = reader.read()
                except TaskmillError as exc:
                    conn.sendall(encode({"ok": False, "error": error_json(exc)}))
                    return
                if line is None:
                    return
                conn.sendall(encode(self.answer(scope, line, led)))
        except OSError:
            return
        finally:
            if ledger is not None:
                with contextlib.suppress(Exception):
                    ledger.close_db()
            with self._lock:
                self._conns.get(scope.socket, set()).discard(conn)
            conn.close()

    def answer(self, scope: TurnScope, line: bytes, led: Callable[[], Ledger]) -> dict[str, Any]:
        """The answer to one request line."""
        op = "?"
        args: dict[str, Any] = {}
        try:
            try:
                request = json.loads(line)
            except ValueError as exc:
                raise InvalidInput(f"a request must be one JSON object per line: {exc}") from None
            if not isinstance(request, dict) or not isinstance(request.get("op"), str):
                raise InvalidInput('a request is {"op": NAME, "args": {...}}')
            op = request["op"][:100]
            raw_args = request.get("args") or {}
            if not isinstance(raw_args, dict):
                raise InvalidInput("args must be a JSON object")
            args = raw_args
            return {"ok": True, "result": self.dispatch(scope, op, args, led)}
        except Refused as refused:
            message = refusal_message(refused.what)
            self._record_refusal(scope, op, refused.what, args, led)
            return {"ok": False, "error": error_json(Forbidden(message, hint=refused.hint))}
        except TaskmillError as exc:
            return {"ok": False, "error": error_json(exc)}
        except Exception as exc:  # a bug: said, never a dead socket
            return {"ok": False, "error": {"code": "error",
                                           "message": f"taskmill error: {exc!r}"}}

    def _record_refusal(self, scope: TurnScope, op: str, what: str, args: dict[str, Any],
                        led: Callable[[], Ledger]) -> None:
        data = {"op": op, "what": what, "args": _short(args)}
        with contextlib.suppress(Exception):
            ledger = led()
            with ledger.transaction():
                ledger.record("capability_refused", scope.task_id, data, actor=scope.author)
        if self.on_refused is not None:
            with contextlib.suppress(Exception):
                self.on_refused(scope, op, refusal_message(what))

    # -- the operations --------------------------------------------------------------------

    def dispatch(self, scope: TurnScope, op: str, args: dict[str, Any],
                 led: Callable[[], Ledger]) -> Any:
        if not scope.active:
            raise Forbidden("this turn is over: its capability has ended")
        handler = getattr(self, f"_op_{op}", None) if op in (
            "hello", *READ_OPS, *WRITE_OPS) else None
        if handler is None:
            what = args.get("what")
            raise Refused(what[:500] if isinstance(what, str) and what else op)
        return handler(scope, args, led())

    def _op_hello(self, scope: TurnScope, args: dict[str, Any], led: Ledger) -> Any:
        return {"task": scope.task_id, "agent": scope.agent, "author": scope.author,
                "ops": [*READ_OPS, *WRITE_OPS]}

    def _op_show(self, scope: TurnScope, args: dict[str, Any], led: Ledger) -> Any:
        task = led.show(_text(args, "task_id") or "")
        self._mark_interrupted(led, [task])
        return task.to_json(full=True)

    def _op_list(self, scope: TurnScope, args: dict[str, Any], led: Ledger) -> Any:
        unknown = set(args) - LIST_FIELDS
        if unknown:
            raise InvalidInput(f"list takes no {', '.join(sorted(unknown))}")
        tasks = led.list_tasks(**args)
        self._mark_interrupted(led, tasks)
        return [t.to_json() for t in tasks]

    def _op_ready(self, scope: TurnScope, args: dict[str, Any], led: Ledger) -> Any:
        return [t.to_json() for t in led.ready(limit=args.get("limit"))]

    def _op_blocked(self, scope: TurnScope, args: dict[str, Any], led: Ledger) -> Any:
        return [b.to_json() for b in led.blocked()]

    def _mark_interrupted(self, led: Ledger, tasks: list[Any]) -> None:
        if self.run_dir is not None:
            from ..control import mark_interrupted

            mark_interrupted(led, self.run_dir, tasks)

    def _op_create(self, scope: TurnScope, args: dict[str, Any], led: Ledger) -> Any:
        refused = [k for k in CREATE_REFUSED if args.get(k) not in (None, "", [], ())]
        if refused:
            raise Refused(f"create a task with its {', '.join(refused)} set",
                          hint="a person sets a task's checks, agent and assignee; describe "
                               "the checks you propose in its description")
        unknown = set(args) - CREATE_FIELDS - set(CREATE_REFUSED) - {"what"}
        if unknown:
            raise InvalidInput(f"create takes no {', '.join(sorted(unknown))}")
        origin = args.get("discovered_from")
        if origin and led.resolve(str(origin)) != scope.task_id:
            raise Refused(f"create a task discovered from {origin} (a task created in this "
                          f"turn is linked discovered-from {scope.task_id})")
        parent = args.get("parent")
        if parent:
            self._refuse_reopening(led, str(parent))
        fields = {k: v for k, v in args.items() if k in CREATE_FIELDS - {"title", "discovered_from"}
                  and v is not None}
        for name in ("labels", "after"):
            if name in fields:
                fields[name] = tuple(fields[name]) if isinstance(fields[name], list) \
                    else fields[name]
        task = led.create(args.get("title"), **fields,  # type: ignore[arg-type]
                          discovered_from=scope.task_id, actor=scope.author)
        scope.created.add(task.id)
        return task.to_json()

    def _refuse_reopening(self, led: Ledger, parent: str) -> None:
        tid = led.resolve(parent)
        if led.get(tid).status == CLOSED:
            raise Refused(f"make a task a child of {tid}, which is closed (that would "
                          f"reopen {tid})")

    def _op_comment(self, scope: TurnScope, args: dict[str, Any], led: Ledger) -> Any:
        author = args.get("author")
        if author not in (None, "", scope.author):
            raise Refused(f"comment as {str(author)[:100]!r} (comments from a turn are "
                          f"signed {scope.author})")
        tid = _text(args, "task_id", required=False) or scope.task_id
        text = args.get("text")
        if not isinstance(text, str):
            raise InvalidInput("a comment needs a text (a string)")
        return led.comment(tid, text, author=scope.author).to_json()

    def _op_dismiss_finding(self, scope: TurnScope, args: dict[str, Any], led: Ledger) -> Any:
        """The working agent rejects a finding of the reviewer on its own task, saying why."""
        from ..review.book import dismiss, findings

        finding = _text(args, "finding_id") or ""
        reason = (_text(args, "reason", required=False) or "").strip()
        if not reason:
            raise InvalidInput("dismissing a finding needs a reason (why the reviewer is wrong)")
        mine = {r.id for r in findings(led, task_id=scope.task_id)}
        if finding not in mine:
            raise Refused(f"dismiss finding {finding[:100]!r}, which is not one of "
                          f"{scope.task_id}'s")
        return dismiss(led, finding, reason=reason, actor=scope.author).to_json()

    def _op_update(self, scope: TurnScope, args: dict[str, Any], led: Ledger) -> Any:
        tid = led.resolve(_text(args, "task_id") or "")
        changes = args.get("changes") or {}
        if not isinstance(changes, dict):
            raise InvalidInput("changes must be a JSON object")
        append = args.get("append_notes")
        others = sorted(set(changes) - {"notes"})
        if args.get("claim"):
            raise Refused(f"claim {tid}")
        if others:
            raise Refused(f"change the {', '.join(others)} of {tid} (a turn changes only "
                          f"its own task's notes)")
        if tid != scope.task_id and (changes or append):
            raise Refused(f"change the notes of {tid} (a turn changes only its own task's "
                          f"notes: {scope.task_id})")
        if not changes and not append:
            raise InvalidInput("nothing to change: give notes or append_notes")
        task = None
        if "notes" in changes:
            task = led.update(tid, {"notes": changes["notes"]}, actor=scope.author)
        if append:
            if not isinstance(append, str):
                raise InvalidInput("append_notes must be a string")
            task = led.append_notes(tid, append, actor=scope.author)
        assert task is not None
        return task.to_json()

    def _op_dep_add(self, scope: TurnScope, args: dict[str, Any], led: Ledger) -> Any:
        dep_type = args.get("type") or "blocks"
        if dep_type not in DEP_TYPES:
            raise InvalidInput(f"dependency type must be one of {', '.join(DEP_TYPES)}")
        issue = led.resolve(_text(args, "task_id") or "")
        if issue != scope.task_id and issue not in scope.created:
            raise Refused(f"add a dependency from {issue} (a turn adds dependencies only "
                          f"from its own task {scope.task_id} or tasks it created)")
        depends_on = _text(args, "depends_on") or ""
        if dep_type == PARENT_CHILD:
            self._refuse_reopening(led, depends_on)
        return led.add_dep(issue, depends_on, str(dep_type), actor=scope.author).to_json()
