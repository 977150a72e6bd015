"""Readiness in PostgreSQL, kept incrementally: the SQLite store's
:mod:`taskmill.ledger.sqlite.readiness` (its text gives the definitions) in PostgreSQL's words.
The property tests hold both to a brute-force version."""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable
from typing import Any

import psycopg

from ...model import (
    BLOCKS,
    CLOSED,
    CONDITIONAL_BLOCKS,
    DONE_STATUSES,
    HOLDING_STATUSES,
    PARENT_CHILD,
    PINNED,
    TOMBSTONE,
)
from ..beads_rules import ANY_CHILDREN, FAILURE_CLOSE_KEYWORDS
from ..graph import closed_path, cyclic_groups, gated_in, gating_scope, shortest_path

_INERT_SQL = "('closed', 'tombstone', 'pinned')"
_BLOCKING_SQL = "('blocks', 'conditional-blocks', 'waits-for')"
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWERED = f"translate(coalesce(b.close_reason, ''), '{_UPPER}', '{_UPPER.lower()}')"
"""The close reason, ASCII letters lower-cased (as SQLite's LIKE compares)."""
_FAILURE_SQL = " OR ".join(
    "strpos({}, '{}') > 0".format(_LOWERED, k.replace("'", "''"))
    for k in FAILURE_CLOSE_KEYWORDS)
_CHILDREN_SQL = ("SELECT 1 FROM deps cd JOIN tasks c ON c.id = cd.issue_id"
                 " WHERE cd.depends_on_id = d.depends_on_id AND cd.type = 'parent-child'")
HOLDS_SQL = (
    f"((d.type = 'blocks' AND b.status NOT IN {_INERT_SQL})"
    " OR (d.type = 'conditional-blocks' AND b.status NOT IN ('tombstone', 'pinned')"
    f"     AND NOT (b.status = 'closed' AND ({_FAILURE_SQL})))"
    f" OR (d.type = 'waits-for' AND EXISTS ({_CHILDREN_SQL} AND c.status NOT IN {_INERT_SQL})"
    f"     AND NOT (coalesce(tm_waits_gate(d.extra), '') = '{ANY_CHILDREN}'"
    f"       AND EXISTS ({_CHILDREN_SQL} AND c.status = 'closed'))))"
)
"""Whether dependency ``d`` (joined ``LEFT JOIN tasks b ON b.id = d.depends_on_id``) holds
its task now."""
_COUNT_SQL = (
    "SELECT count(*) FROM deps d LEFT JOIN tasks b ON b.id = d.depends_on_id"
    f" WHERE d.issue_id = tasks.id AND d.type IN {_BLOCKING_SQL} AND coalesce({HOLDS_SQL}, false)"
)

Conn = psycopg.Connection[Any]


def _blocker_class(status: str) -> str:
    return status if status in (CLOSED, TOMBSTONE, PINNED) else "active"


def _children(conn: Conn, parent: str) -> list[tuple[str, str]]:
    return [(a, b) for a, b in conn.execute(
        "SELECT d.issue_id, t.status FROM deps d JOIN tasks t ON t.id = d.issue_id"
        " WHERE d.depends_on_id = %s AND d.type = 'parent-child'", (parent,))]


def _parents(conn: Conn, child: str) -> list[tuple[str, str, int]]:
    return [(a, b, c) for a, b, c in conn.execute(
        "SELECT t.id, t.status, t.gated FROM deps d JOIN tasks t ON t.id = d.depends_on_id"
        " WHERE d.issue_id = %s AND d.type = 'parent-child'", (child,))]


def refresh(conn: Conn, roots: Iterable[str]) -> int:
    """Recompute ``gated`` for ``roots`` and every descendant their change can reach;
    the number of rows whose ``gated`` changed."""
    def status_of(tid: str) -> str | None:
        row = conn.execute("SELECT status FROM tasks WHERE id = %s", (tid,)).fetchone()
        return None if row is None else str(row[0])

    scope, kids = gating_scope(roots, status_of, lambda node: _children(conn, node))
    if not scope:
        return 0
    state = {tid: (int(n), int(g)) for tid, n, g in conn.execute(
        "SELECT id, open_blockers, gated FROM tasks WHERE id = ANY(%s)", (list(scope),))}
    gated = gated_in(scope, kids, {n: s[0] for n, s in state.items()},
                     lambda node: _parents(conn, node))
    changed = [(1 if n in gated else 0, n) for n in scope if (n in gated) != bool(state[n][1])]
    if changed:
        with conn.cursor() as cur:
            cur.executemany("UPDATE tasks SET gated = %s WHERE id = %s", changed)
    return len(changed)


def recount(conn: Conn, ids: Iterable[str]) -> list[str]:
    """Recount ``open_blockers`` of ``ids``; returns them."""
    wanted = list(dict.fromkeys(ids))
    if wanted:
        conn.execute(f"UPDATE tasks SET open_blockers = ({_COUNT_SQL}) WHERE id = ANY(%s)",
                     (wanted,))
    return wanted


def waiters_on(conn: Conn, spawners: Iterable[str]) -> list[str]:
    """The tasks that wait (``waits-for``) on the children of any of ``spawners``."""
    wanted = list(spawners)
    if not wanted:
        return []
    return [r[0] for r in conn.execute(
        "SELECT issue_id FROM deps WHERE depends_on_id = ANY(%s) AND type = 'waits-for'",
        (wanted,))]


def on_done_changed(conn: Conn, task_id: str) -> list[str]:
    """Recount what ``task_id`` blocks and what waits on its parents' children."""
    dependents = [r[0] for r in conn.execute(
        "SELECT issue_id FROM deps WHERE depends_on_id = %s AND type IN (%s, %s)",
        (task_id, BLOCKS, CONDITIONAL_BLOCKS))]
    parents = [r[0] for r in conn.execute(
        "SELECT depends_on_id FROM deps WHERE issue_id = %s AND type = 'parent-child'",
        (task_id,))]
    return recount(conn, [*dependents, *waiters_on(conn, parents)])


def recompute_all(conn: Conn, *, fresh: bool = False) -> None:
    """Recompute ``open_blockers`` and ``gated`` for the whole ledger (after a bulk import;
    ``fresh``: each is at its default, nothing to reset)."""
    if not fresh:
        conn.execute("UPDATE tasks SET open_blockers = 0 WHERE open_blockers != 0")
    conn.execute(
        "UPDATE tasks SET open_blockers = c.n FROM ("
        "  SELECT d.issue_id AS id, count(*) AS n FROM deps d"
        "  LEFT JOIN tasks b ON b.id = d.depends_on_id"
        f"  WHERE d.type IN {_BLOCKING_SQL} AND coalesce({HOLDS_SQL}, false)"
        "  GROUP BY d.issue_id"
        ") AS c WHERE tasks.id = c.id")
    status: dict[str, str] = {}
    seeds: list[str] = []
    for tid, st, blockers in conn.execute("SELECT id, status, open_blockers FROM tasks"):
        status[tid] = st
        if blockers > 0:
            seeds.append(tid)
    kids: dict[str, list[str]] = defaultdict(list)
    for child, parent in conn.execute(
            "SELECT issue_id, depends_on_id FROM deps WHERE type = 'parent-child'"):
        if child in status and parent in status:
            kids[parent].append(child)
            if status[parent] in HOLDING_STATUSES:
                seeds.append(child)
    gated: set[str] = set(seeds)
    work = deque(seeds)
    while work:
        node = work.popleft()
        if status[node] in DONE_STATUSES:
            continue
        for child in kids.get(node, ()):
            if child not in gated:
                gated.add(child)
                work.append(child)
    if not fresh:
        conn.execute("UPDATE tasks SET gated = 0 WHERE gated != 0")
    if gated:
        conn.execute("UPDATE tasks SET gated = 1 WHERE id = ANY(%s)", (list(gated),))


def find_path(conn: Conn, start: str, goal: str) -> list[str] | None:
    """A path of gating dependencies from ``start`` to ``goal`` (each waits on the next)."""
    def edges(node: str) -> list[str]:
        return [str(r[0]) for r in conn.execute(
            "SELECT depends_on_id FROM deps WHERE issue_id = %s AND type IN (%s, %s, %s)",
            (node, BLOCKS, CONDITIONAL_BLOCKS, PARENT_CHILD))]

    return shortest_path(start, goal, edges)


def all_cycles(conn: Conn) -> list[list[str]]:
    """Every strongly connected group of gating dependencies, each as a closed path."""
    graph: dict[str, list[str]] = defaultdict(list)
    for a, b in conn.execute(
            "SELECT issue_id, depends_on_id FROM deps WHERE type IN (%s, %s, %s)",
            (BLOCKS, CONDITIONAL_BLOCKS, PARENT_CHILD)):
        graph[a].append(b)
    return sorted((closed_path(graph, group, min(group))
                   for group in cyclic_groups(graph, list(graph))), key=lambda path: path[0])


class ReadinessRows:
    """The store's readiness verbs over the functions above."""

    conn: Conn

    def status_changed(self, task_id: str, old: str, new: str) -> None:
        roots = [task_id]
        if _blocker_class(old) != _blocker_class(new) or old == new == CLOSED:
            roots.extend(on_done_changed(self.conn, task_id))
        refresh(self.conn, roots)

    def recompute_readiness(self, *, fresh: bool = False) -> None:
        recompute_all(self.conn, fresh=fresh)

    def readiness_state(self) -> dict[str, tuple[int, bool]]:
        return {tid: (int(n), bool(g)) for tid, n, g in self.conn.execute(
            "SELECT id, open_blockers, gated FROM tasks")}

    def find_path(self, start: str, goal: str) -> list[str] | None:
        return find_path(self.conn, start, goal)

    def cycles(self) -> list[list[str]]:
        return all_cycles(self.conn)
