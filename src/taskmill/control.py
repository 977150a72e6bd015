"""Steering the mill from outside it: pause and resume, and which runs are still alive.

The dashboard and the CLI use this module instead of the mill's engine, which loads every
agent adapter. All of it works on files in the run directory (:class:`~.paths.RunFiles`):

* pausing: ``run/paused`` exists while the mill is paused; a running ``taskmill run``
  dispatches nothing new (turns already running go on) until it is gone;
* liveness: each ``taskmill run`` holds ``run/run-<id>.lock`` for its lifetime, so a task
  left ``in_progress`` by ``mill:<id>`` whose lock is free was interrupted (the run stopped
  or died) and the next run resumes it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from .clock import iso
from .ledger import Ledger
from .locks import is_locked
from .model import Task
from .paths import RunFiles

MILL_PREFIX = "mill:"
"""The assignee of a task a mill run works is ``mill:<run id>``."""


def is_paused(run: RunFiles) -> bool:
    """Whether the mill is paused."""
    return run.paused.exists()


def pause_signature(run: RunFiles) -> tuple[int, int] | None:
    """The pause file's identity (None: not paused), so that a resume and a new pause
    between two looks are still noticed."""
    try:
        st = run.paused.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def pause(run: RunFiles, *, now: datetime, by: str) -> bool:
    """Pause the mill (``by`` says who, in the file). Returns False when it already was: the
    file, and when it was paused, are left as they are. Written atomically, so a run never
    sees a half-written file."""
    if run.paused.exists():
        return False
    run.dir.mkdir(parents=True, exist_ok=True)
    tmp = run.paused.with_name(f".{run.paused.name}.{os.getpid()}")
    tmp.write_text(f"paused {by} at {iso(now)}\n", encoding="utf-8")
    tmp.replace(run.paused)
    return True


def resume(run: RunFiles) -> bool:
    """Resume the mill. Returns False when it was not paused."""
    try:
        run.paused.unlink()
    except FileNotFoundError:
        return False
    return True


def run_alive(run_dir: Path, run_id: str) -> bool:
    """Whether run ``run_id`` still holds its lock (no side effect: a stale lock file is
    left for the next ``taskmill run`` to remove)."""
    return is_locked(RunFiles(run_dir).run_lock(run_id))


def interrupted_ids(ledger: Ledger, run_dir: Path) -> set[str]:
    """Tasks left ``in_progress`` by a mill run that is no longer running (stopped by a
    signal, an internal error, or killed): the next ``taskmill run`` resumes them."""
    rows = ledger.claims(MILL_PREFIX)
    return {tid for tid, assignee in rows
            if not run_alive(run_dir, assignee[len(MILL_PREFIX):])}


def mark_interrupted(ledger: Ledger, run_dir: Path, tasks: Iterable[Task]) -> None:
    """Set ``interrupted`` on the tasks a stopped (or dead) ``taskmill run`` left in
    progress (for ``show``, ``list`` and the dashboard)."""
    tasks = list(tasks)
    if not any(t.status == "in_progress" and (t.assignee or "").startswith(MILL_PREFIX)
               for t in tasks):
        return
    found = interrupted_ids(ledger, run_dir)
    for task in tasks:
        task.interrupted = task.id in found
