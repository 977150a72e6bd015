"""What holds the tasks ``blocked`` lists, read in SQLite: the statement, its reading, where
to share it, importing nothing (not even :mod:`collections`).

The SQLite store reads the links through these (:mod:`taskmill.ledger.sqlite.listing`), and
a child the CLI forks before it imports the ledger's modules (:mod:`taskmill.cli.lean_links`)
loads this file on its own, as the lean path loads :mod:`taskmill.ledger.lean`: nothing
here may import anything else (a test holds it so).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Sequence
    from typing import Any

HELD_SQL = ("({t}gated = 1 OR {t}status = 'blocked')"
            " AND {t}status NOT IN ('closed', 'tombstone')")
"""A task ``blocked`` lists (not done; gated or marked blocked): the condition of the
partial index ``tasks_held`` (schema 0008), which a query must repeat to use it."""
FROM = " AND t.id >= ?"
"""The held tasks' links from an id on (with the id)."""
BEFORE = " AND t.id < ?"
"""Those before it."""

Links = tuple[dict[str, list[str]], dict[str, list[str]], dict[str, tuple[str, int, bool]], bool]
"""(waits, holding parents, the parents' states, whether a wait points forward): the fields of
:class:`taskmill.ledger.store.HeldLinks`."""


def links_sql(holds_sql: str) -> str:
    """The held tasks' dependencies that hold them (:func:`read_links`), by task id;
    ``holds_sql``: :data:`taskmill.ledger.lean_readiness.HOLDS_SQL`."""
    return (
        "SELECT d.issue_id, d.depends_on_id, d.type = 'parent-child', b.seq >= t.seq,"
        " b.status, b.open_blockers, b.gated, d.pos"
        " FROM tasks t INDEXED BY tasks_held_ids JOIN deps d ON d.issue_id = t.id"
        f" LEFT JOIN tasks b ON b.id = d.depends_on_id WHERE {HELD_SQL.format(t='t.')}"
        " AND ((t.open_blockers > 0 AND d.type IN ('blocks', 'conditional-blocks',"
        f" 'waits-for') AND {holds_sql}) OR (d.type = 'parent-child'"
        " AND b.status NOT IN ('closed', 'tombstone')"
        " AND (b.gated = 1 OR b.status IN ('blocked', 'deferred'))))")


def read_links(conn: sqlite3.Connection, sql: str, args: Sequence[Any] = ()) -> Links:
    """What holds the held tasks, read by ``sql`` (:func:`links_sql`, a span added: a range
    of ids alone) through ``conn``."""
    # one pass over the held tasks' dependencies, by task id (the index tasks_held_ids and
    # the dependencies' table in the same order: one sweep); a holding parent's state comes
    # with it (the ancestors' reasons need it), and whether a wait points at a task as new
    # or newer (else the waits hold no cycle). Each task's are put in their order (by
    # position) after, where it has more than one.
    waits: dict[str, list[str]] = {}
    parents: dict[str, list[str]] = {}
    states: dict[str, tuple[str, int, bool]] = {}
    forward = False
    first: dict[tuple[str, bool], int] = {}  # the position of each task's first of each
    several: dict[tuple[str, bool], list[int]] = {}  # (the positions of those with more)
    for tid, other, is_parent, newer, status, blockers, gated, pos in conn.execute(sql, args):
        if is_parent:
            states[other] = (status, blockers, gated == 1)
            into = parents
        else:
            if newer:
                forward = True
            into = waits
        got = into.get(tid)
        if got is None:
            into[tid] = [other]
            first[(tid, is_parent)] = pos
        else:
            got.append(other)
            more = several.get((tid, is_parent))
            if more is None:
                several[(tid, is_parent)] = [first[(tid, is_parent)], pos]
            else:
                more.append(pos)
    for (tid, is_parent), positions in several.items():  # (by position, then id: as one
        into = parents if is_parent else waits  # task's are read alone)
        into[tid] = [other for _, other in sorted(zip(positions, into[tid], strict=True))]
    return waits, parents, states, forward


def links_from(conn: sqlite3.Connection, share: float) -> str | None:
    """The id from which a forked child reads the held tasks' links (None: it reads them
    all): the reading process reads ``share`` of them, those before it."""
    held = HELD_SQL.format(t="t.")
    count = conn.execute(f"SELECT count(*) FROM tasks t INDEXED BY tasks_held WHERE {held}"
                         ).fetchone()[0]
    if count * share < 1:
        return None
    at = conn.execute(f"SELECT t.id FROM tasks t INDEXED BY tasks_held_ids WHERE {held}"
                      " ORDER BY t.id LIMIT 1 OFFSET ?", (int(count * share),)).fetchone()
    return None if at is None else str(at[0])


def read_begun(conn: sqlite3.Connection, share: float, holds_sql: str, cache_kib: int
               ) -> tuple[Any, ...]:
    """What a child begun before the listing reads (:mod:`taskmill.ledger.links_begun`):
    the links of the held tasks from :func:`links_from` (``share``) on, then that id; in one
    read transaction, with a page cache of ``cache_kib``."""
    conn.execute(f"PRAGMA cache_size = -{cache_kib}")
    conn.execute("BEGIN")  # (one state of the ledger for both statements)
    at = links_from(conn, share)
    sql = links_sql(holds_sql) + ("" if at is None else FROM)
    return (*read_links(conn, sql, () if at is None else (at,)), at)
