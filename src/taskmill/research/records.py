"""Experiments as ledger records: one task of type ``experiment`` per experiment.

No new table: an experiment is a task (``issue_type = "experiment"``) whose figures are in
its ``metadata["research"]``; it is ``in_progress`` while it runs and closed with its verdict
as the close reason when it is decided, so it is never ``ready`` work and every step of it is
an event of the audit trail (created, updated, closed). Its id is derived from the research
branch and the experiment's number (``<prefix>-x<hash>-<n>``), so an experiment is recorded
once: a run killed mid-experiment leaves it in progress, and the next run resumes it under
the same id.

Record 0 of a research is its baseline (the starting point measured ``baseline_runs``
times: the noise).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..errors import NotFound
from ..ledger import Ledger
from ..model import CLOSED, IN_PROGRESS, Task

EXPERIMENT = "experiment"
"""The issue type of an experiment record."""
KEY = "research"
"""The key of ``metadata`` that holds an experiment's figures."""

KEEP = "keep"
DISCARD = "discard"
CRASH = "crash"
BASELINE = "baseline"
VERDICTS = (KEEP, DISCARD, CRASH, BASELINE)


def research_key(branch: str) -> str:
    return hashlib.sha256(branch.encode()).hexdigest()[:6]


@dataclass
class Experiment:
    """An experiment record, read back."""

    id: str
    status: str
    data: dict[str, Any]

    @property
    def n(self) -> int:
        return int(self.data["n"])

    @property
    def verdict(self) -> str | None:
        value = self.data.get("verdict")
        return str(value) if value else None

    @property
    def done(self) -> bool:
        return self.status == CLOSED

    @property
    def metric(self) -> float | None:
        value = self.data.get("metric")
        return float(value) if isinstance(value, int | float) else None

    @property
    def cost(self) -> float:
        value = self.data.get("cost_usd")
        return float(value) if isinstance(value, int | float) else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, **self.data}


class ExperimentLog:
    """The experiments of one research (its branch), through the ledger (thread-safe: one
    lock around every ledger call)."""

    def __init__(self, ledger: Ledger, branch: str, *, actor: str) -> None:
        self.ledger = ledger
        self.branch = branch
        self.actor = actor
        self.key = research_key(branch)
        self._lock = threading.RLock()

    @contextmanager
    def locked(self) -> Iterator[None]:
        with self._lock:
            yield

    def id_of(self, n: int) -> str:
        return f"{self.ledger.prefix}-x{self.key}-{n}"

    def all(self) -> list[Experiment]:
        """Every experiment of this research, by number."""
        with self._lock:
            tasks = self.ledger.list_tasks(issue_type=EXPERIMENT, include_hidden=True)
        found = [e for e in (self._read(t) for t in tasks) if e is not None]
        return sorted(found, key=lambda e: e.n)

    def get(self, n: int) -> Experiment | None:
        with self._lock:
            try:
                task = self.ledger.get(self.id_of(n))
            except NotFound:
                return None
        return self._read(task)

    def _read(self, task: Task) -> Experiment | None:
        data = (task.metadata or {}).get(KEY)
        if not isinstance(data, dict) or data.get("branch") != self.branch:
            return None
        return Experiment(task.id, task.status, dict(data))

    def start(self, n: int, title: str, data: Mapping[str, Any]) -> Experiment:
        """Record experiment ``n`` as started (in progress); the one already recorded under
        that number, when there is one (a resumed run)."""
        with self._lock:
            found = self.get(n)
            if found is not None:
                return found
            record = {"branch": self.branch, "n": n, **data}
            self.ledger.create(title, task_id=self.id_of(n), issue_type=EXPERIMENT,
                               status=IN_PROGRESS, assignee=self.actor,
                               metadata={KEY: record}, actor=self.actor)
            return Experiment(self.id_of(n), IN_PROGRESS, record)

    def update(self, exp: Experiment, **changes: Any) -> Experiment:
        """Record what the experiment got to (one audit event)."""
        with self._lock:
            data = {**exp.data, **changes}
            self.ledger.update(exp.id, {"metadata": {KEY: data}}, actor=self.actor)
            exp.data = data
            return exp

    def finish(self, exp: Experiment, verdict: str, reason: str, **changes: Any) -> Experiment:
        """Decide the experiment: its figures and verdict, then closed (once: a closed one
        is left as it is)."""
        with self._lock:
            current = self.get(exp.n)
            if current is not None and current.done:
                return current
            data = {**exp.data, **changes, "verdict": verdict, "reason": reason,
                    "ended_at": self.ledger.now()}
            about = " ".join(str(data.get("description") or reason).split())
            title = f"experiment {exp.n} ({verdict}): {about}"
            self.ledger.update(exp.id, {"metadata": {KEY: data}, "title": title[:200]},
                               actor=self.actor)
            self.ledger.close(exp.id, f"{verdict}: {reason}"[:1000], actor=self.actor)
            exp.data, exp.status = data, CLOSED
            return exp
