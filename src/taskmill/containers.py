"""Containers: a task with children is a group of work, not work itself.

A task is a *container* while it has at least one child, i.e. a ``parent-child`` dependency
points at it from a task that is not a tombstone (whatever its ``issue_type``; epics are the
usual case). The ledger keeps containers in step with their children, inside the same
transaction as the change that triggers it and with an audit event each (actor: whoever made
that change, ``cause`` naming the child):

- when a child becomes done (closed or tombstoned) and every child of its parent is then
  done, the parent is closed with the reason :data:`AUTO_CLOSE_REASON`; that may close the
  parent's own parent in turn (nested epics);
- when a child stops being done (it is reopened), or an open child is added, a closed parent
  is reopened, and so on up;
- when the dependency on the last open child is removed and the parent still has children,
  all done, the parent is closed too.

These rules follow changes; they are not an invariant: a container reopened by hand whose
children are all closed stays open until it is closed or gets a new child. An import (Beads
JSONL) keeps the records as they are in the file and triggers none of them.

The mill never hands a container to an agent (``Ledger.ready(work_only=True)``, ``claim(...,
work_only=True)``); ``taskmill ready`` still lists containers, as Beads does, marked as such.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .model import CLOSED, DONE_STATUSES, HOLDING_STATUSES, OPEN, Task

if TYPE_CHECKING:
    from .ledger import Ledger

AUTO_CLOSE_REASON = "all children closed"

_DONE_SQL = "('closed', 'tombstone')"
HAS_CHILDREN_SQL = (
    "EXISTS (SELECT 1 FROM deps cd JOIN tasks ct ON ct.id = cd.issue_id"
    " WHERE cd.depends_on_id = tasks.id AND cd.type = 'parent-child'"
    " AND ct.status != 'tombstone')"
)
"""True for a row of ``tasks`` that is a container (use in a query over ``tasks``)."""


# -- reading -------------------------------------------------------------------------------


def _chunks(ids: Sequence[str], size: int = 500) -> Iterable[list[str]]:
    for start in range(0, len(ids), size):
        yield list(ids[start:start + size])


def annotate(conn: sqlite3.Connection, tasks: list[Task]) -> None:
    """Fill each task's ``parent``, ``children`` and ``children_closed``."""
    by_id = {t.id: t for t in tasks}
    for chunk in _chunks(list(by_id)):
        marks = ",".join("?" * len(chunk))
        for pid, total, closed in conn.execute(
                "SELECT d.depends_on_id, count(*), sum(c.status = 'closed') FROM deps d"
                " JOIN tasks c ON c.id = d.issue_id WHERE d.type = 'parent-child'"
                f" AND c.status != 'tombstone' AND d.depends_on_id IN ({marks})"
                " GROUP BY d.depends_on_id", chunk):
            by_id[pid].children = int(total)
            by_id[pid].children_closed = int(closed or 0)
        for cid, pid in conn.execute(
                "SELECT issue_id, depends_on_id FROM deps WHERE type = 'parent-child'"
                f" AND issue_id IN ({marks}) ORDER BY pos DESC, depends_on_id DESC", chunk):
            by_id[cid].parent = pid  # the last written is the first by position


def children(conn: sqlite3.Connection, parent: str) -> list[tuple[str, str, str]]:
    """(id, title, status) of each child of ``parent``, tombstones left out, oldest first."""
    return conn.execute(
        "SELECT c.id, c.title, c.status FROM deps d JOIN tasks c ON c.id = d.issue_id"
        " WHERE d.depends_on_id = ? AND d.type = 'parent-child' AND c.status != 'tombstone'"
        " ORDER BY c.seq", (parent,)).fetchall()


def held_back(conn: sqlite3.Connection, task_id: str) -> list[str]:
    """The tasks under ``task_id`` (children, their children, ...) that are not done, reached
    through tasks that are not done: what a ``deferred``/``blocked`` ``task_id`` holds back."""
    found: list[str] = []
    seen = {task_id}
    queue: deque[str] = deque([task_id])
    while queue:
        node = queue.popleft()
        for (child,) in conn.execute(
                "SELECT c.id FROM deps d JOIN tasks c ON c.id = d.issue_id"
                " WHERE d.depends_on_id = ? AND d.type = 'parent-child'"
                f" AND c.status NOT IN {_DONE_SQL} ORDER BY c.seq", (node,)):
            if child not in seen:
                seen.add(child)
                found.append(child)
                queue.append(child)
    return found


def _defer_until(conn: sqlite3.Connection, task_id: str) -> str | None:
    """A Beads ``defer_until`` kept from an import, if the task has one."""
    row = conn.execute("SELECT extra FROM tasks WHERE id = ?", (task_id,)).fetchone()
    if not row or not row[0]:
        return None
    import json

    try:
        value = json.loads(row[0]).get("fields", {}).get("defer_until")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


def ancestor_reasons(conn: sqlite3.Connection, task_id: str) -> tuple[list[str], list[str]]:
    """What holds ``task_id`` back through its parents: the ancestors at the root of it (each
    ``blocked``/``deferred``, or waiting on a ``blocks`` dependency) and a sentence for each.
    """
    roots: list[str] = []
    reasons: list[str] = []
    seen = {task_id}
    # (ancestor, the child of it on the way down to task_id, or None for a direct parent)
    queue: deque[tuple[str, str | None]] = deque()

    def parents(child: str, via: str | None) -> None:
        for pid, in conn.execute(
                "SELECT p.id FROM deps d JOIN tasks p ON p.id = d.depends_on_id"
                " WHERE d.issue_id = ? AND d.type = 'parent-child'"
                f" AND p.status NOT IN {_DONE_SQL} AND (p.gated = 1 OR p.status IN"
                " ('blocked', 'deferred')) ORDER BY d.pos", (child,)):
            if pid not in seen:
                seen.add(pid)
                queue.append((pid, via))

    parents(task_id, None)
    while queue:
        node, via = queue.popleft()
        status, blockers, gated = conn.execute(
            "SELECT status, open_blockers, gated FROM tasks WHERE id = ?", (node,)).fetchone()
        who = f"parent {node}" if via is None else f"ancestor {node} (through {via})"
        if status in HOLDING_STATUSES:
            until = _defer_until(conn, node) if status == "deferred" else None
            roots.append(node)
            reasons.append(f"{who} is {status}" + (f" until {until}" if until else ""))
        if blockers:
            waits = [r[0] for r in conn.execute(
                "SELECT b.id FROM deps d JOIN tasks b ON b.id = d.depends_on_id"
                " WHERE d.issue_id = ? AND d.type = 'blocks'"
                f" AND b.status NOT IN {_DONE_SQL} ORDER BY d.pos", (node,))]
            if node not in roots:
                roots.append(node)
            reasons.append(f"{who} waits on {', '.join(waits)}")
        if gated:
            parents(node, via or node)
    return roots, reasons


# -- keeping containers in step --------------------------------------------------------------


def _parents(conn: sqlite3.Connection, child: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT p.id FROM deps d JOIN tasks p ON p.id = d.depends_on_id"
        " WHERE d.issue_id = ? AND d.type = 'parent-child' ORDER BY d.pos", (child,))]


def _all_children_done(conn: sqlite3.Connection, parent: str) -> bool:
    total, open_ = conn.execute(
        "SELECT count(*), coalesce(sum(c.status NOT IN ('closed', 'tombstone')), 0)"
        " FROM deps d JOIN tasks c ON c.id = d.issue_id"
        " WHERE d.depends_on_id = ? AND d.type = 'parent-child'", (parent,)).fetchone()
    return int(total) > 0 and int(open_) == 0


def _close(ledger: Ledger, parent: str, cause: dict[str, Any], actor: str | None) -> None:
    ledger._update(parent, {"status": CLOSED, "close_reason": AUTO_CLOSE_REASON},
                   actor=actor, cause=cause)


def _reopen(ledger: Ledger, parent: str, cause: dict[str, Any], actor: str | None) -> None:
    ledger._update(parent, {"status": OPEN, "close_reason": None}, actor=actor, cause=cause)


def status_changed(ledger: Ledger, task_id: str, old: str, new: str,
                   actor: str | None) -> None:
    """``task_id`` went from ``old`` to ``new`` status: close or reopen its parents."""
    was_done, is_done = old in DONE_STATUSES, new in DONE_STATUSES
    if was_done == is_done:
        return
    for pid in _parents(ledger.conn, task_id):
        # read now: closing or reopening an earlier parent may have changed this one
        pstatus = ledger.conn.execute("SELECT status FROM tasks WHERE id = ?",
                                      (pid,)).fetchone()[0]
        if is_done and pstatus not in DONE_STATUSES and _all_children_done(ledger.conn, pid):
            _close(ledger, pid, {"child": task_id, "rule": "all children closed"}, actor)
        elif not is_done and pstatus == CLOSED:
            _reopen(ledger, pid, {"child": task_id, "rule": "a child was reopened"}, actor)


def child_added(ledger: Ledger, child: str, parent: str, actor: str | None) -> None:
    """``child`` was made a child of ``parent``: an open child reopens a closed parent."""
    rows = dict(ledger.conn.execute("SELECT id, status FROM tasks WHERE id IN (?, ?)",
                                    (child, parent)).fetchall())
    if child in rows and parent in rows and rows[child] not in DONE_STATUSES \
            and rows[parent] == CLOSED:
        _reopen(ledger, parent, {"child": child, "rule": "an open child was added"}, actor)


def child_removed(ledger: Ledger, child: str, parent: str, actor: str | None) -> None:
    """``child`` is no longer a child of ``parent``: if it was the last open one, and
    ``parent`` still has children, all done, ``parent`` closes."""
    rows = dict(ledger.conn.execute("SELECT id, status FROM tasks WHERE id IN (?, ?)",
                                    (child, parent)).fetchall())
    if child in rows and parent in rows and rows[child] not in DONE_STATUSES \
            and rows[parent] not in DONE_STATUSES and _all_children_done(ledger.conn, parent):
        _close(ledger, parent, {"child": child, "rule": "the last open child was removed"},
               actor)
