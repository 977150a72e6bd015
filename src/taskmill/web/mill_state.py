"""What the mill is doing: its events file read incrementally, and ``/api/now`` and ``/api/mill``.

What is not in the ledger comes from two files the mill writes: ``.taskmill/run/events.ndjson``
(every mill event, read by :class:`MillLog`) and ``.taskmill/run/paused`` (the mill
dispatches nothing new while it exists).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..clock import iso
from .base import HandlerBase, json_response

RECENT_EVENTS = 500
RECENT_BATCHES = 10

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
    "satisfied": "already satisfied",
    "blocked": "blocked",
    "task_finished": "finished",
}
_QUEUED = frozenset({"checks_passed", "merge_queued"})
_BATCH_EVENTS = frozenset({"batch_started", "batch_checks", "bisect_step", "batch_landed",
                           "batch_finished"})


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


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
        self.batches: deque[dict[str, Any]] = deque(maxlen=RECENT_BATCHES)
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
            self._batch_over()
        if isinstance(kind, str) and kind in _BATCH_EVENTS:
            self._batch_event(kind, event)
        if isinstance(task, str) and kind in _PHASES:
            self.last_by_task[task] = event
            if kind in _QUEUED:
                self.queued_at.setdefault(task, str(event.get("ts", "")))
            else:
                self.queued_at.pop(task, None)

    def _batch_over(self) -> None:
        if self.batches and self.batches[-1]["state"] != "done":
            self.batches[-1]["state"] = "done"

    def _batch_event(self, kind: str, event: dict[str, Any]) -> None:
        """The merge queue's batches: each ``batch_started`` opens one, the checks, bisection
        steps and landings that follow are its own (one batch lands at a time)."""
        if kind == "batch_started":
            self._batch_over()
            self.batches.append({
                "started_at": str(event.get("ts", "")), "base": str(event.get("base", "")),
                "tasks": _strings(event.get("tasks")), "state": "checking", "checks": [],
                "bisect": [], "landed": [], "outcomes": {}})
            return
        if not self.batches:
            return  # its start is older than what was read
        batch = self.batches[-1]
        if kind == "batch_checks":
            batch["checks"].append({
                "tree": str(event.get("tree", "")), "tasks": _strings(event.get("tasks")),
                "cached": bool(event.get("cached")), "passed": bool(event.get("passed")),
                "retry": int(event.get("retry") or 0),
                "speculative": bool(event.get("speculative"))})
        elif kind == "bisect_step":
            batch["state"] = "bisecting"
            batch["bisect"].append({"tested": _strings(event.get("tested")),
                                    "passed": bool(event.get("passed"))})
        elif kind == "batch_landed":
            batch["landed"] += _strings(event.get("tasks"))
        elif kind == "batch_finished":
            outcomes = event.get("outcomes")
            batch["outcomes"] = ({str(k): str(v) for k, v in outcomes.items()}
                                 if isinstance(outcomes, dict) else {})
            batch["state"] = "done"

    def snapshot(self, limit: int = 50) -> dict[str, Any]:
        with self._lock:
            return {"running": self.running, "run": self.run,
                    "recent": list(self.recent)[-limit:],
                    "last_by_task": dict(self.last_by_task),
                    "queued_at": dict(self.queued_at),
                    "batches": [{**b, "checks": list(b["checks"]), "bisect": list(b["bisect"]),
                                 "landed": list(b["landed"]), "outcomes": dict(b["outcomes"])}
                                for b in self.batches]}


class MillStateHandlers(HandlerBase):
    """``/api/now`` (workers, merge queue, totals, blocked tasks) and ``/api/mill``."""

    mill_log: MillLog

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
            totals = led.attempt_totals(now)
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
        return json_response({
            "now": iso(now), "paused": self._paused(), "mill_running": mill["running"],
            "workers": workers, "merge_queue": queue_, "merge_batches": mill["batches"],
            "totals": totals, "blocked": blocked,
            "events": mill["recent"], "stats": stats, "cluster": self._cluster()})

    CLUSTER_TTL_S = 2.0

    def _cluster(self) -> dict[str, Any] | None:
        """The Temporal executor's workers and placements (read at most every 2 s), or
        None when the project runs tasks on local threads."""
        executor = self.config.executor
        if executor.kind != "temporal" or not executor.address:
            return None
        cached: tuple[float, dict[str, Any]] | None = getattr(self, "_cluster_cache", None)
        mono = self.clock.monotonic()
        if cached is not None and mono - cached[0] < self.CLUSTER_TTL_S:
            return cached[1]
        from ..temporal.cluster import cluster_view

        view = cluster_view(executor.address, namespace=executor.namespace,
                            task_queue=executor.task_queue)
        self._cluster_cache = (mono, view)
        return view

    def mill(self, request: Request) -> Response:
        limit = self._int(request, "limit", 100) or 100
        self.mill_log.refresh()
        snap = self.mill_log.snapshot(limit=limit)
        return json_response({"paused": self._paused(), "running": snap["running"],
                              "run": snap["run"], "events": snap["recent"]})
