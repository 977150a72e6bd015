"""Readiness in SQLite: which tasks are held back by their dependencies, kept up to date incrementally.

Definitions (the property tests check these against a brute-force version):

- a task is *done* when its status is ``closed`` or ``tombstone``;
- ``open_blockers(t)`` counts the dependencies of ``t`` that hold it now (Beads' rules, see
  :mod:`taskmill.ledger.beads_rules`): ``blocks`` on a task that exists and is neither done
  nor ``pinned``; ``conditional-blocks`` on a task that exists and is not ``tombstone``,
  ``pinned`` nor closed with a failure close reason; ``waits-for`` on a spawner whose
  children's gate (all or any) is shut;
- ``gated(t)`` holds when ``open_blockers(t) > 0``, or when a parent of ``t`` (through
  ``parent-child``) is not done and is itself gated or ``blocked``/``deferred``; it is the
  least fixed point of that rule, so a parent-child loop with nothing gating it is not gated;
- ``t`` is *ready* when its status is ``open``, it is not gated, it is work (not of a type
  in Beads' ``readyWorkExcludeTypes``, not ``pinned``/``ephemeral``: the ``nonwork`` column)
  and neither it nor an ancestor is deferred to a later time (``defer_until``, read when
  ``ready`` is asked, as it depends on the time).

Each task row stores ``open_blockers`` and ``gated``; a partial index over open, ungated rows
makes ``ready`` an index scan. A change touches only the tasks that depend on the changed
one directly, plus the subtree of children whose gating actually changes.
"""

from __future__ import annotations

import sqlite3
from array import array
from collections import defaultdict

from ...model import BLOCKS, CONDITIONAL_BLOCKS, PARENT_CHILD
from ..graph import closed_path, shortest_path
from ..lean_readiness import (  # (shared with the lean write path)
    BLOCKING_SQL,
    DONE_SQL,
    status_changed,
)
from ..lean_readiness import HOLDS_SQL as HOLDS_SQL
from ..lean_readiness import count_open_blockers as count_open_blockers
from ..lean_readiness import on_done_changed as on_done_changed
from ..lean_readiness import recount as recount
from ..lean_readiness import refresh as refresh
from ..lean_readiness import waiters_on as waiters_on


def recompute_all(conn: sqlite3.Connection, *, fresh: bool = False) -> None:
    """Recompute ``open_blockers`` and ``gated`` for the whole ledger (after a bulk import;
    ``fresh``: each is at its default, nothing to reset: the resets read every row)."""
    if not fresh:
        conn.execute("UPDATE tasks SET open_blockers = 0 WHERE open_blockers != 0")
    conn.execute(
        "UPDATE tasks SET open_blockers = c.n FROM ("
        "  SELECT d.issue_id AS id, count(*) AS n FROM deps d"
        "  LEFT JOIN tasks b ON b.id = d.depends_on_id"
        f"  WHERE d.type IN {BLOCKING_SQL} AND {HOLDS_SQL} GROUP BY d.issue_id"
        ") AS c WHERE tasks.id = c.id"
    )
    # gated: the least fixed point, as a recursive query (nothing of the ledger held in
    # Python): what a blocker holds, the children of a blocked/deferred parent, and the
    # children of a gated parent that is not done
    if not fresh:
        conn.execute("UPDATE tasks SET gated = 0 WHERE gated != 0")
    conn.execute(
        "WITH RECURSIVE g(id) AS ("
        "  SELECT id FROM tasks WHERE open_blockers > 0"
        "  UNION SELECT c.id FROM tasks p"
        "    JOIN deps d ON d.depends_on_id = p.id AND d.type = 'parent-child'"
        "    JOIN tasks c ON c.id = d.issue_id"
        "    WHERE p.status IN ('blocked', 'deferred')"
        "  UNION SELECT c.id FROM g JOIN tasks p ON p.id = g.id"
        "    JOIN deps d ON d.depends_on_id = g.id AND d.type = 'parent-child'"
        f"    JOIN tasks c ON c.id = d.issue_id WHERE p.status NOT IN {DONE_SQL}"
        ") UPDATE tasks SET gated = 1 WHERE id IN (SELECT id FROM g)")


def find_path(conn: sqlite3.Connection, start: str, goal: str) -> list[str] | None:
    """A path of gating dependencies from ``start`` to ``goal`` (each waits on the next)."""
    def edges(node: str) -> list[str]:
        return [str(r[0]) for r in conn.execute(
            "SELECT depends_on_id FROM deps WHERE issue_id = ? AND type IN (?, ?, ?)",
            (node, BLOCKS, CONDITIONAL_BLOCKS, PARENT_CHILD))]

    return shortest_path(start, goal, edges)


def all_cycles(conn: sqlite3.Connection) -> list[list[str]]:
    """Every strongly connected group of gating dependencies, each as a closed path.

    The graph is read as task numbers (``seq``) into flat arrays (a few bytes an edge, not
    a dict of lists of ids): only the groups found are turned back into ids."""
    gating = (BLOCKS, CONDITIONAL_BLOCKS, PARENT_CHILD)
    # A cycle cannot go from newer to older tasks all the way round: it holds an edge to a
    # task as new or newer (b >= a), and a search from those edges' tasks finds every one.
    # Without such an edge (the usual case: each task waits on older ones) there is none.
    if conn.execute(
            "SELECT 1 FROM deps d JOIN tasks a ON a.id = d.issue_id"
            " JOIN tasks b ON b.id = d.depends_on_id WHERE d.type IN (?, ?, ?)"
            " AND b.seq >= a.seq LIMIT 1", gating).fetchone() is None:
        return []
    top = int(conn.execute("SELECT coalesce(max(seq), 0) FROM tasks").fetchone()[0])
    starts = array("q", bytes(8 * (top + 2)))
    targets = array("q")
    edges = conn.execute(
        "SELECT a.seq, b.seq FROM deps d JOIN tasks a ON a.id = d.issue_id"
        " JOIN tasks b ON b.id = d.depends_on_id WHERE d.type IN (?, ?, ?)"
        " ORDER BY a.seq, d.pos", gating)
    roots: list[int] = []
    for a, b in edges:  # counts first, then offsets: starts[n]..starts[n+1] are n's edges
        starts[a + 1] += 1
        targets.append(b)
        if b >= a:
            roots.append(a)
    for n in range(1, top + 2):
        starts[n] += starts[n - 1]
    out: list[list[str]] = []
    for group in _cyclic_seq_groups(starts, targets, sorted(set(roots))):
        names: dict[int, str] = {}
        for start in range(0, len(group), 500):
            part = group[start:start + 500]
            names.update(conn.execute(
                f"SELECT seq, id FROM tasks WHERE seq IN ({','.join('?' * len(part))})", part))
        graph: dict[str, list[str]] = defaultdict(list)
        for n in group:
            for i in range(starts[n], starts[n + 1]):
                if targets[i] in names:
                    graph[names[n]].append(names[targets[i]])
        ids = set(names.values())
        out.append(closed_path(graph, ids, min(ids)))
    return sorted(out, key=lambda path: path[0])


def _cyclic_seq_groups(starts: array[int], targets: array[int], roots: list[int]
                       ) -> list[list[int]]:
    """The strongly connected groups with a cycle (iterative Tarjan) reachable from
    ``roots`` in the graph whose node n has the edges ``targets[starts[n]:starts[n + 1]]``
    (nodes 1 to ``len(starts) - 2``)."""
    top = len(starts) - 2
    index = array("q", [-1]) * (top + 1)
    low = array("q", bytes(8 * (top + 1)))
    on_stack = bytearray(top + 1)
    stack: list[int] = []
    groups: list[list[int]] = []
    counter = 0
    for root in roots:
        if index[root] >= 0 or starts[root] == starts[root + 1]:
            continue
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack[root] = 1
        frames = [root]
        cursor = [starts[root]]
        while frames:
            node = frames[-1]
            i = cursor[-1]
            if i < starts[node + 1]:
                cursor[-1] = i + 1
                nxt = targets[i]
                if index[nxt] < 0:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack[nxt] = 1
                    frames.append(nxt)
                    cursor.append(starts[nxt])
                elif on_stack[nxt] and index[nxt] < low[node]:
                    low[node] = index[nxt]
                continue
            frames.pop()
            cursor.pop()
            if frames and low[node] < low[frames[-1]]:
                low[frames[-1]] = low[node]
            if low[node] == index[node]:
                member = stack.pop()
                on_stack[member] = 0
                if member == node:  # alone: a cycle only if it depends on itself
                    if node in targets[starts[node]:starts[node + 1]]:
                        groups.append([node])
                    continue
                group = [member]
                while member != node:
                    member = stack.pop()
                    on_stack[member] = 0
                    group.append(member)
                groups.append(group)
    return groups


class ReadinessRows:
    """The store's readiness verbs over the functions above."""

    conn: sqlite3.Connection

    def status_changed(self, task_id: str, old: str, new: str) -> None:
        """``task_id``'s status went from ``old`` to ``new`` (or, ``old == new == closed``,
        its close reason changed): keep readiness in step."""
        status_changed(self.conn, task_id, old, new)

    def recompute_readiness(self, *, fresh: bool = False) -> None:
        recompute_all(self.conn, fresh=fresh)

    def readiness_state(self) -> dict[str, tuple[int, bool]]:
        """Each task's stored (open blockers, gated)."""
        return {tid: (int(n), bool(g)) for tid, n, g in self.conn.execute(
            "SELECT id, open_blockers, gated FROM tasks")}

    def find_path(self, start: str, goal: str) -> list[str] | None:
        return find_path(self.conn, start, goal)

    def cycles(self) -> list[list[str]]:
        return all_cycles(self.conn)
