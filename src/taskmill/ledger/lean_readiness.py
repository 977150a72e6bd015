"""Readiness kept in step with a status change in SQLite: the statements and the walks that
recount the blockers of a task's dependents and recompute the gating of the subtrees they
reach (the definitions are :mod:`taskmill.ledger.sqlite.readiness`'s), importing nothing
(not even :mod:`collections`: the lean path imports :mod:`_sqlite3` without it).

The SQLite store (:mod:`.sqlite.readiness`, :mod:`.graph`) runs these for every change, and
the CLI's lean write path (:mod:`taskmill.cli.lean_write`) loads this file on its own to
close a task exactly as the store does: nothing here may import anything else (a test holds
it so).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Iterable, Mapping, Sequence

DONE_STATUSES = frozenset({"closed", "tombstone"})
""":data:`taskmill.model.DONE_STATUSES` (a test holds them equal)."""
HOLDING_STATUSES = frozenset({"blocked", "deferred"})
""":data:`taskmill.model.HOLDING_STATUSES` (a test holds them equal)."""
FAILURE_CLOSE_KEYWORDS = (
    "failed", "rejected", "wontfix", "won't fix", "canceled", "cancelled", "abandoned",
    "blocked", "error", "timeout", "aborted",
)
"""Beads' ``FailureCloseKeywords``: a close reason holding one (any case) is a failure."""
ANY_CHILDREN = "any-children"
"""A ``waits-for`` gate that opens when any of the spawner's children closed."""

DONE_SQL = "('closed', 'tombstone')"
_INERT_SQL = "('closed', 'tombstone', 'pinned')"
BLOCKING_SQL = "('blocks', 'conditional-blocks', 'waits-for')"
_FAILURE_SQL = " OR ".join(
    "coalesce(b.close_reason, '') LIKE '%{}%'".format(k.replace("'", "''"))
    for k in FAILURE_CLOSE_KEYWORDS)
_META_SQL = "json_extract(d.extra, '$.fields.metadata')"
_CHILDREN_SQL = ("SELECT 1 FROM deps cd JOIN tasks c ON c.id = cd.issue_id"
                 " WHERE cd.depends_on_id = d.depends_on_id AND cd.type = 'parent-child'")
HOLDS_SQL = (
    f"((d.type = 'blocks' AND b.status NOT IN {_INERT_SQL})"
    " OR (d.type = 'conditional-blocks' AND b.status NOT IN ('tombstone', 'pinned')"
    f"     AND NOT (b.status = 'closed' AND ({_FAILURE_SQL})))"
    f" OR (d.type = 'waits-for' AND EXISTS ({_CHILDREN_SQL} AND c.status NOT IN {_INERT_SQL})"
    f"     AND NOT (coalesce(CASE WHEN json_valid({_META_SQL})"
    f"       THEN json_extract({_META_SQL}, '$.gate') END, '') = '{ANY_CHILDREN}'"
    f"       AND EXISTS ({_CHILDREN_SQL} AND c.status = 'closed'))))"
)
"""Whether dependency ``d`` (joined ``LEFT JOIN tasks b ON b.id = d.depends_on_id``) holds
its task now (see the definitions above)."""
_COUNT_SQL = (
    "SELECT count(*) FROM deps d LEFT JOIN tasks b ON b.id = d.depends_on_id"
    f" WHERE d.issue_id = tasks.id AND d.type IN {BLOCKING_SQL} AND {HOLDS_SQL}"
)


def _blocker_class(status: str) -> str:
    """What of a task's status its dependents' and waiters' counts can see."""
    return status if status in ("closed", "tombstone", "pinned") else "active"


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
    def status_of(tid: str) -> str | None:
        row = conn.execute("SELECT status FROM tasks WHERE id = ?", (tid,)).fetchone()
        return None if row is None else str(row[0])

    scope, kids = gating_scope(roots, status_of, lambda node: _children(conn, node))
    if not scope:
        return 0
    state: dict[str, tuple[int, int]] = {}
    for node in scope:
        row = conn.execute("SELECT open_blockers, gated FROM tasks WHERE id = ?", (node,)).fetchone()
        state[node] = (row[0], row[1])
    gated = gated_in(scope, kids, {n: s[0] for n, s in state.items()},
                     lambda node: _parents(conn, node))
    changed = [(1 if n in gated else 0, n) for n in scope if (n in gated) != bool(state[n][1])]
    if changed:
        conn.executemany("UPDATE tasks SET gated = ? WHERE id = ?", changed)
    return len(changed)


def count_open_blockers(conn: sqlite3.Connection, task_id: str) -> int:
    row = conn.execute(f"SELECT ({_COUNT_SQL}) FROM tasks WHERE id = ?", (task_id,)).fetchone()
    return int(row[0]) if row else 0


def recount(conn: sqlite3.Connection, ids: Iterable[str]) -> list[str]:
    """Recount ``open_blockers`` of ``ids``; returns them."""
    wanted = list(dict.fromkeys(ids))
    if wanted:
        conn.executemany(f"UPDATE tasks SET open_blockers = ({_COUNT_SQL}) WHERE id = ?",
                         [(i,) for i in wanted])
    return wanted


def waiters_on(conn: sqlite3.Connection, spawners: Iterable[str]) -> list[str]:
    """The tasks that wait (``waits-for``) on the children of any of ``spawners``."""
    out: list[str] = []
    for spawner in spawners:
        out.extend(r[0] for r in conn.execute(
            "SELECT issue_id FROM deps WHERE depends_on_id = ? AND type = 'waits-for'",
            (spawner,)))
    return out


def on_done_changed(conn: sqlite3.Connection, task_id: str, now_done: bool) -> list[str]:
    """``task_id``'s status changed in a way its dependents can see: recount what it blocks
    and what waits on its parents' children; returns those ids. (``now_done`` is not
    needed any more: the counts are recounted.)"""
    dependents = [r[0] for r in conn.execute(
        "SELECT issue_id FROM deps WHERE depends_on_id = ? AND type IN (?, ?)",
        (task_id, "blocks", "conditional-blocks"))]
    parents = [r[0] for r in conn.execute(
        "SELECT depends_on_id FROM deps WHERE issue_id = ? AND type = 'parent-child'",
        (task_id,))]
    return recount(conn, [*dependents, *waiters_on(conn, parents)])


def gating_scope(roots: Iterable[str], status_of: Callable[[str], str | None],
                 children: Callable[[str], Iterable[tuple[str, str]]]
                 ) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The tasks whose ``gated`` a change to ``roots`` can reach, with their statuses, and
    the children of each: ``roots`` (those that exist: ``status_of`` None) and the
    descendants through ``children(node)`` (``(child, status)`` pairs) below tasks that are
    not done (a done task passes no gating on, so its subtree is unaffected, unless it is a
    root: its own status may just have changed)."""
    scope: dict[str, str] = {}
    kids: dict[str, list[str]] = {}
    queue: list[tuple[str, bool]] = []  # (first in, first out: read from ``at`` on)
    for root in roots:
        if root not in scope:
            status = status_of(root)
            if status is None:
                continue
            scope[root] = status
            queue.append((root, True))
    at = 0
    while at < len(queue):
        node, is_root = queue[at]
        at += 1
        if not is_root and scope[node] in DONE_STATUSES:
            continue
        for child, status in children(node):
            kids.setdefault(node, []).append(child)
            if child not in scope:
                scope[child] = status
                queue.append((child, False))
    return scope, kids


def gated_in(scope: Mapping[str, str], kids: Mapping[str, Sequence[str]],
             blockers: Mapping[str, int],
             parents: Callable[[str], Iterable[tuple[str, str, int]]]) -> set[str]:
    """Which tasks of ``scope`` (from :func:`gating_scope`) are gated: those with open
    blockers (``blockers``) or a parent (``parents(node)``: ``(id, status, gated)``) that is
    not done and holds them (``blocked``/``deferred``, or gated itself outside the scope),
    and, as the least fixed point, the children of a gated task that is not done."""
    gated: set[str] = set()
    work: list[str] = []  # (first in, first out: read from ``at`` on)
    for node in scope:
        seed = blockers[node] > 0
        if not seed:
            for pid, pstatus, pgated in parents(node):
                if pstatus in DONE_STATUSES:
                    continue
                if pstatus in HOLDING_STATUSES or (pid not in scope and pgated):
                    seed = True
                    break
        if seed:
            gated.add(node)
            work.append(node)
    at = 0
    while at < len(work):
        node = work[at]
        at += 1
        if scope[node] in DONE_STATUSES:
            continue
        for child in kids.get(node, ()):
            if child not in gated:
                gated.add(child)
                work.append(child)
    return gated


def status_changed(conn: sqlite3.Connection, task_id: str, old: str, new: str) -> None:
    """``task_id``'s status went from ``old`` to ``new`` (or, ``old == new == closed``,
    its close reason changed): keep readiness in step."""
    roots = [task_id]
    if _blocker_class(old) != _blocker_class(new) or old == new == "closed":
        roots.extend(on_done_changed(conn, task_id, new in DONE_STATUSES))
    refresh(conn, roots)
