"""The API's reading handlers: the project, tasks, their audit trail, an attempt's diff and
logs, and the task graph laid out.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..control import mark_interrupted
from ..errors import InvalidInput, NotFound
from ..mill.git import Git
from ..model import STATUSES, UPDATABLE_FIELDS, Task
from ..review.approval import approval_state
from ..review.log_names import MILL_REVIEW_SUFFIX, mill_review_log
from ..status_line import DEFAULT_MAX_ITERATIONS, status_line
from ..validation import SQLITE_INT_MAX
from . import graph_layout
from .base import Forbidden, HandlerBase, json_response
from .mill_state import MillLog

DIFF_LIMIT = 400_000
LOG_LIMIT = 400_000


class LayoutCache:
    """The last few graph layouts, by the nodes and edges laid out (laying out takes a while)."""

    SIZE = 16

    def __init__(self) -> None:
        self._layouts: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def layout(self, node_ids: list[str], edges: list[tuple[str, str, str]]) -> dict[str, Any]:
        """:func:`graph_layout.layered_layout` of the graph, as JSON."""
        key = (tuple(node_ids), tuple(edges))
        with self._lock:
            layout = self._layouts.get(key)
            if layout is not None:
                self._layouts.move_to_end(key)
        if layout is None:
            layout = graph_layout.layered_layout(node_ids, edges).to_json()
            with self._lock:
                self._layouts[key] = layout
                while len(self._layouts) > self.SIZE:
                    self._layouts.popitem(last=False)
        return layout


class ReadHandlers(HandlerBase):
    """The ``GET`` routes over the ledger (and, for diffs and logs, the repository)."""

    git: Git
    layouts: LayoutCache
    mill_log: MillLog

    def project(self, request: Request) -> Response:
        with self.pool.ledger() as led:
            labels = led.labels_in_use()
            present = led.statuses_in_use()
            seq = led.last_seq()
            stats = led.stats()
        statuses = list(STATUSES) + sorted(s for s in present if s not in STATUSES)
        self.mill_log.refresh()
        return json_response({
            "root": str(self.paths.root), "prefix": self.config.prefix, "paused": self._paused(),
            "mill_running": self.mill_log.snapshot(limit=1)["running"],
            "statuses": statuses, "labels": labels, "seq": seq,
            "updatable_fields": list(UPDATABLE_FIELDS), "stats": stats,
            "person": self.person(request),
            "mill_service": None if self.service is None else self.service.status().to_json()})

    def stats(self, request: Request) -> Response:
        with self.pool.ledger() as led:
            return json_response(led.stats())

    def list_tasks(self, request: Request) -> Response:
        q = request.query_params
        with self.pool.ledger() as led:
            tasks = led.list_tasks(status=self._statuses(request), label=q.get("label") or None,
                                   issue_type=q.get("type") or None,
                                   assignee=q.get("assignee") or None,
                                   parent=q.get("parent") or None,
                                   include_hidden=self._flag(request, "all"),
                                   limit=self._int(request, "limit"))
            mark_interrupted(led, self.paths.run_dir, tasks)
            self._mark_held(led, tasks)
        return json_response([t.to_json() for t in tasks])

    def ready(self, request: Request) -> Response:
        limit = self._int(request, "limit")
        with self.pool.ledger() as led:
            holds = self._holds(led)
            tasks = led.ready(limit=None if holds else limit)
        if holds:  # the mill hands none of these out today (``blocked`` lists them)
            tasks = [t for t in tasks if t.role not in holds][:limit]
        return json_response([t.to_json() for t in tasks])

    def blocked(self, request: Request) -> Response:
        with self.pool.ledger() as led:
            return json_response(self._blocked(led))

    def show(self, request: Request) -> Response:
        now = self._now()
        with self.pool.ledger() as led:
            task = led.show(request.path_params["task_id"])
            mark_interrupted(led, self.paths.run_dir, [task])
            self._mark_held(led, [task])
            approval = approval_state(led, task.id)
            data = task.to_json(full=True)
            linked = {d.depends_on_id for d in task.dependencies} | {
                d.issue_id for d in task.dependents}
            info: dict[str, tuple[str, str]] = {}
            for tid in linked:
                linked_task = led.find(tid)
                if linked_task is not None:
                    info[tid] = (linked_task.title, linked_task.status)
        for dep in data["dependencies"]:
            dep["title"], dep["status"] = info.get(dep["depends_on_id"], (None, "missing"))
        for dep in data["dependents"]:
            dep["title"], dep["status"] = info.get(dep["issue_id"], (None, "missing"))
        data["attempts"] = [self._attempt_json(a, now) for a in data["attempts"]]
        data["blocked_by"] = [d["depends_on_id"] for d in data["dependencies"]
                              if d["type"] == "blocks"
                              and d["status"] not in ("closed", "tombstone", "missing")]
        awaiting = (approval is not None and approval.status == "awaiting"
                    and task.status == "blocked")
        data["awaiting_approval"] = awaiting
        data["status_line"] = self._status_line(task, awaiting_approval=awaiting)
        return json_response(data)

    def _status_line(self, task: Task, awaiting_approval: bool = False) -> str:
        self.mill_log.refresh()
        snap = self.mill_log.snapshot(limit=1)
        limit = self.config.run.get("max_iterations") or DEFAULT_MAX_ITERATIONS
        return status_line(task, max_iterations=int(limit), queued=task.id in snap["queued_at"],
                           awaiting_approval=awaiting_approval)

    def task_events(self, request: Request) -> Response:
        with self.pool.ledger() as led:
            events = led.events(request.path_params["task_id"])
        return json_response([e.to_json() for e in events])

    def events(self, request: Request) -> Response:
        since = self._int(request, "since", low=0, high=SQLITE_INT_MAX)
        limit = self._int(request, "limit", 200) or 200
        with self.pool.ledger() as led:
            if since is None:
                events = led.events(limit=limit)
            else:
                events = led.events_since(since, limit=limit)
        return json_response([e.to_json() for e in events])

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
        """What the attempt changed on the task's branch: the diff from the commit it started
        from to the commit it made. An attempt that changed nothing has no diff (it is never
        shown the commit it started from, which is the target's or another task's)."""
        tid, attempt = self._attempt(request)
        sha = attempt.get("commit_sha")
        raw = attempt.get("detail")
        detail: dict[str, Any] = raw if isinstance(raw, dict) else {}
        start = detail.get("start")
        if not sha and attempt.get("outcome") is None:
            raise NotFound(f"attempt {attempt['id']} of {tid} is still running: no commit yet")
        if not sha or detail.get("changed") is False:
            # (attempts recorded before this was fixed name the commit they started from)
            return json_response({"commit": None, "base": start, "diff": "", "no_change": True,
                                  "truncated": False, "note": None})
        for rev in (sha, start):
            if rev is not None and not re.fullmatch(r"[0-9a-fA-F]{4,64}", str(rev)):
                raise InvalidInput(f"{rev!r} is not a commit id")
        if self.git.rev(sha) is None:
            raise NotFound(f"commit {sha} is not in the repository any more",
                           hint="its branch may have been deleted and garbage-collected")
        note = None
        if start and self.git.rev(start) is not None:
            # the task's own line of commits (first parents): never the target's commits a
            # merge brought in, though the diff does include what such a merge changed
            log = self.git.run("log", "--no-color", "--first-parent", "--format=fuller",
                               "--no-patch", f"{start}..{sha}", timeout=30.0).stdout
            if self.git.run("rev-list", "--first-parent", "--min-parents=2", "--count",
                            f"{start}..{sha}", timeout=30.0).stdout.strip() not in ("", "0"):
                note = ("this attempt finished a merge of the target branch into the task's "
                        "branch (after a conflict): the diff includes what that merge brought in")
            patch = self.git.run("diff", "--no-color", "--no-ext-diff", "--stat", "--patch",
                                 start, sha, timeout=30.0).stdout
            text = log + "\n" + patch
        else:  # recorded without the commit it started from: the commit's own change
            start = None
            text = self.git.run("show", "--no-color", "--no-ext-diff", "--stat", "--patch",
                                "--format=fuller", sha, timeout=30.0).stdout
        truncated = len(text) > DIFF_LIMIT
        return json_response({"commit": sha, "base": start, "diff": text[:DIFF_LIMIT],
                              "no_change": False, "truncated": truncated, "note": note})

    def log(self, request: Request) -> Response:
        kind = request.query_params.get("kind", "agent")
        if kind not in ("agent", "checks", "review"):
            raise InvalidInput(f"kind must be agent, checks or review, not {kind!r}")
        tid, attempt = self._attempt(request)
        path = self._log_file(attempt.get("log_path"))
        if path is None:
            raise NotFound(f"attempt {attempt['id']} of {tid} has no log")
        if kind == "checks":
            path = path.with_suffix(".checks.log")
        elif kind == "review":
            path = mill_review_log(path) or path.with_suffix(MILL_REVIEW_SUFFIX)
        real = self._allowed(path)
        if not real.is_file():
            raise NotFound(f"the {kind} log {path} does not exist")
        size = real.stat().st_size
        with real.open("rb") as fh:
            if size > LOG_LIMIT:
                fh.seek(size - LOG_LIMIT)
            text = fh.read().decode("utf-8", errors="replace")
        return json_response({"path": str(path), "kind": kind, "text": text, "size": size,
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
            edges = [(b, a, typ) for a, b, typ in led.dep_edges() if a in ids and b in ids]
        node_ids = [t.id for t in tasks]  # priority order: important work near the top
        layout = self.layouts.layout(node_ids, edges)
        by_id = {t.id: t for t in tasks}
        nodes = []
        for node in layout["nodes"]:
            t = by_id[node["id"]]
            nodes.append({**node, "title": t.title, "status": t.status, "priority": t.priority,
                          "ready": t.ready, "labels": t.labels, "issue_type": t.issue_type,
                          "assignee": t.assignee, "parent": t.parent, "children": t.children,
                          "children_closed": t.children_closed, "container": t.container})
        spacing = graph_layout.Spacing()
        return json_response({**layout, "nodes": nodes, "total": len(nodes),
                              "node_width": spacing.node_width,
                              "node_height": spacing.node_height})

    def _allowed(self, path: Path) -> Path:
        """``path`` resolved, if it is under ``.taskmill/``; refused otherwise."""
        base = self.paths.dir.resolve()
        real = path.resolve()
        if not real.is_relative_to(base):
            raise Forbidden(f"{path} is not under {base}: only files under .taskmill/ are served")
        return real
