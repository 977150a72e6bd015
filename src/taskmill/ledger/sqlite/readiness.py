"""Readiness in SQLite: which tasks are held back by their dependencies, kept up to date incrementally.

Definitions (the property tests check these against a brute-force version):

- a task is *done* when its status is ``closed`` or ``tombstone``;
- ``open_blockers(t)`` counts the tasks ``t`` depends on through ``blocks`` that exist and are
  not done;
- ``gated(t)`` holds when ``open_blockers(t) > 0``, or when a parent of ``t`` (through
  ``parent-child``) is not done and is itself gated or ``blocked``/``deferred``; it is the
  least fixed point of that rule, so a parent-child loop with nothing gating it is not gated;
- ``t`` is *ready* when its status is ``open`` and it is not gated.

Each task row stores ``open_blockers`` and ``gated``; a partial index over open, ungated rows
makes ``ready`` an index scan. A change touches only the tasks that depend on the changed
one directly, plus the subtree of children whose gating actually changes.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict, deque
from collections.abc import Iterable

from ...model import BLOCKS, DONE_STATUSES, HOLDING_STATUSES, PARENT_CHILD
from ..graph import closed_path, cyclic_groups

_DONE_SQL = "('closed', 'tombstone')"


def _children(conn: sqlite3.Connection, parent: str) -> list[tuple[str, str]]:
    return conn.execute(
        "SELECT d.issue_id, t.status FROM deps d JOIN tasks t ON t.id = d.issue_id"
        " WHERE d.depends_on_id = ? AND d.type = 'parent-child'",
        (parent,),
    ).fetchall()


def _parents(conn: sqlite3.Connection, child: str) -> list[tuple[str, str, int]]:
    return conn.execute(
        "SELECT t.id, t.status, t.gated FROM deps d JOIN tasks t ON t.id = d.depends_on_id"
        " WHERE d.issue_id = ? AND d.type = 'parent-child'",
        (child,),
    ).fetchall()


def refresh(conn: sqlite3.Connection, roots: Iterable[str]) -> int:
    """Recompute ``gated`` for ``roots`` and every descendant their change can reach.

    Returns the number of rows whose ``gated`` changed.
    """
    scope: dict[str, str] = {}
    kids: dict[str, list[str]] = defaultdict(list)
    queue: deque[tuple[str, bool]] = deque()
    for root in roots:
        if root not in scope:
            row = conn.execute("SELECT status FROM tasks WHERE id = ?", (root,)).fetchone()
            if row is None:
                continue
            scope[root] = row[0]
            queue.append((root, True))
    while queue:
        node, is_root = queue.popleft()
        # a done task does not pass gating on, so its subtree is unaffected (unless it is a
        # root: its own status may just have changed)
        if not is_root and scope[node] in DONE_STATUSES:
            continue
        for child, status in _children(conn, node):
            kids[node].append(child)
            if child not in scope:
                scope[child] = status
                queue.append((child, False))
    if not scope:
        return 0
    state: dict[str, tuple[int, int]] = {}
    for node in scope:
        row = conn.execute("SELECT open_blockers, gated FROM tasks WHERE id = ?", (node,)).fetchone()
        state[node] = (row[0], row[1])
    gated: dict[str, bool] = {}
    work: deque[str] = deque()
    for node in scope:
        seed = state[node][0] > 0
        if not seed:
            for pid, pstatus, pgated in _parents(conn, node):
                if pstatus in DONE_STATUSES:
                    continue
                if pstatus in HOLDING_STATUSES or (pid not in scope and pgated):
                    seed = True
                    break
        if seed:
            gated[node] = True
            work.append(node)
    while work:
        node = work.popleft()
        if scope[node] in DONE_STATUSES:
            continue
        for child in kids.get(node, ()):
            if not gated.get(child):
                gated[child] = True
                work.append(child)
    changed = [(1 if gated.get(n) else 0, n) for n in scope if bool(gated.get(n)) != bool(state[n][1])]
    if changed:
        conn.executemany("UPDATE tasks SET gated = ? WHERE id = ?", changed)
    return len(changed)


def count_open_blockers(conn: sqlite3.Connection, task_id: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM deps d JOIN tasks b ON b.id = d.depends_on_id"
        f" WHERE d.issue_id = ? AND d.type = 'blocks' AND b.status NOT IN {_DONE_SQL}",
        (task_id,),
    ).fetchone()
    return int(row[0])


def on_done_changed(conn: sqlite3.Connection, task_id: str, now_done: bool) -> list[str]:
    """A task became done (or not): adjust the counts of what it blocks; returns those ids."""
    dependents = [
        r[0]
        for r in conn.execute(
            "SELECT issue_id FROM deps WHERE depends_on_id = ? AND type = 'blocks'", (task_id,)
        )
    ]
    if dependents:
        delta = -1 if now_done else 1
        conn.executemany(
            "UPDATE tasks SET open_blockers = max(0, open_blockers + ?) WHERE id = ?",
            [(delta, d) for d in dependents],
        )
    return dependents


def recompute_all(conn: sqlite3.Connection) -> None:
    """Recompute ``open_blockers`` and ``gated`` for the whole ledger (after a bulk import)."""
    conn.execute("UPDATE tasks SET open_blockers = 0")
    conn.execute(
        "UPDATE tasks SET open_blockers = c.n FROM ("
        "  SELECT d.issue_id AS id, count(*) AS n FROM deps d JOIN tasks b ON b.id = d.depends_on_id"
        f"  WHERE d.type = 'blocks' AND b.status NOT IN {_DONE_SQL} GROUP BY d.issue_id"
        ") AS c WHERE tasks.id = c.id"
    )
    status: dict[str, str] = {}
    seeds: list[str] = []
    for tid, st, blockers in conn.execute("SELECT id, status, open_blockers FROM tasks"):
        status[tid] = st
        if blockers > 0:
            seeds.append(tid)
    kids: dict[str, list[str]] = defaultdict(list)
    for child, parent in conn.execute(
        "SELECT issue_id, depends_on_id FROM deps WHERE type = 'parent-child'"
    ):
        if child in status and parent in status:
            kids[parent].append(child)
            if status[parent] in HOLDING_STATUSES:
                seeds.append(child)
    gated: set[str] = set()
    work = deque(seeds)
    gated.update(seeds)
    while work:
        node = work.popleft()
        if status[node] in DONE_STATUSES:
            continue
        for child in kids.get(node, ()):
            if child not in gated:
                gated.add(child)
                work.append(child)
    conn.execute("UPDATE tasks SET gated = 0 WHERE gated != 0")
    conn.executemany("UPDATE tasks SET gated = 1 WHERE id = ?", ((t,) for t in gated))


def find_path(conn: sqlite3.Connection, start: str, goal: str) -> list[str] | None:
    """A path of gating dependencies from ``start`` to ``goal`` (each waits on the next)."""
    if start == goal:
        return [start]
    came: dict[str, str | None] = {start: None}
    queue: deque[str] = deque([start])
    while queue:
        node = queue.popleft()
        for (nxt,) in conn.execute(
            "SELECT depends_on_id FROM deps WHERE issue_id = ? AND type IN (?, ?)",
            (node, BLOCKS, PARENT_CHILD),
        ):
            if nxt in came:
                continue
            came[nxt] = node
            if nxt == goal:
                path = [goal]
                back: str | None = node
                while back is not None:
                    path.append(back)
                    back = came[back]
                return list(reversed(path))
            queue.append(nxt)
    return None


def all_cycles(conn: sqlite3.Connection) -> list[list[str]]:
    """Every strongly connected group of gating dependencies, each as a closed path."""
    graph: dict[str, list[str]] = defaultdict(list)
    for a, b in conn.execute(
        "SELECT issue_id, depends_on_id FROM deps WHERE type IN (?, ?)", (BLOCKS, PARENT_CHILD)
    ):
        graph[a].append(b)
    return [closed_path(graph, group, min(group)) for group in cyclic_groups(graph, list(graph))]


class ReadinessRows:
    """The store's readiness verbs over the functions above."""

    conn: sqlite3.Connection

    def status_changed(self, task_id: str, old: str, new: str) -> None:
        """``task_id``'s status went from ``old`` to ``new``: keep readiness in step."""
        roots = [task_id]
        if (old in DONE_STATUSES) != (new in DONE_STATUSES):
            roots.extend(on_done_changed(self.conn, task_id, new in DONE_STATUSES))
        refresh(self.conn, roots)

    def recompute_readiness(self) -> None:
        recompute_all(self.conn)

    def readiness_state(self) -> dict[str, tuple[int, bool]]:
        """Each task's stored (open blockers, gated)."""
        return {tid: (int(n), bool(g)) for tid, n, g in self.conn.execute(
            "SELECT id, open_blockers, gated FROM tasks")}

    def find_path(self, start: str, goal: str) -> list[str] | None:
        return find_path(self.conn, start, goal)

    def cycles(self) -> list[list[str]]:
        return all_cycles(self.conn)
