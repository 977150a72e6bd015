"""``list --json`` and ``blocked --json`` at scale: each task's JSON text made by SQLite.

One query per listing builds every task's object as text (``json_quote`` writes strings and
numbers as ``json.dumps(ensure_ascii=False)`` does), labels, parent and children read by
correlated subqueries over their indexes; Python passes each row on as an opaque string. The
text is the object as an item of a top-level array printed by ``json.dumps(indent=2)``
(see :data:`taskmill.ledger.rows.ITEM_INDENT`). A JSON field (metadata, checks, hints) that
is not null comes between two U+0001 characters as its stored compact text and is indented by
:func:`taskmill.ledger.rows.expand_json_fields` (JSON text never holds a raw control character).
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from .. import held_links as held_links_module
from .. import links_begun
from ..held_links import links_sql, read_links
from ..rows import expand_json_fields
from ..store import CellRow, Cycles, HeldLaying, HeldLinks, Laying, LedgerStore, LinksReading
from ..task_filter import listing_order, task_where
from . import held_listing, kept_text, split
from .deps import HELD_SQL
from .held_listing import held_cells, held_json
from .kept_text import CELLS_JOIN_SQL, JOIN_SQL, KEPT_CELLS_SQL, KEPT_JSON_SQL, KEPT_LISTING_SQL
from .readiness import HOLDS_SQL
from .schema import NEW_GENERATION_SQL, connect
from .split import ForkedReading, PinnedReading, Rows, Split, T, can_split, split_rows
from .streamed import streamed_rows

CELLS_SQL = KEPT_CELLS_SQL
"""What the task tables show of the task ``t`` (:data:`taskmill.ledger.store.CellRow`), its
kept row ``k`` (``LEFT JOIN`` :data:`~.kept_text.CELLS_JOIN_SQL`) read where there is one."""

_MARKS = (
    "CASE WHEN t.id IN (SELECT value FROM json_each(?1))"
    " THEN ',\n    \"interrupted\": true' ELSE '' END"
    " || CASE WHEN t.status = 'open' AND t.role IS NOT NULL THEN coalesce((SELECT"
    " ',\n    \"held\": ' || json_quote(h.value) FROM json_each(?2) h"
    " WHERE h.key = t.role AND h.value != ''), '') ELSE '' END"
)
"""``interrupted`` and ``held``, when set (``Task.to_json``'s last keys): ``?1`` the JSON
array of the interrupted ids, ``?2`` the JSON object of role -> why its tasks are held."""
_END = "'\n  }'"
LAID_SHARE = 0.5
"""The share of a task table's rows this process reads and lays out (the child the rest)."""
READER_CACHE_KIB = 8192
"""The page cache of the connection ``blocked`` reads the links through meanwhile."""
HELD_CACHE_KIB = 16384
"""The store connection's page cache while it reads the held tasks' rows: with the links'
connection and the rows read ahead (:data:`taskmill.ledger.listing.AHEAD_CHARS`), ``blocked``
at 1M tasks stays well under 150 MiB (a child forked to make the later rows' text has this
process's memory as it was, and its own besides); the pages are read about once, so a
bigger cache saves no time."""


def _marks(interrupted: Collection[str], held: Mapping[str, str]) -> tuple[str, list[str]]:
    """What to add to a row's text for :data:`_MARKS`, and its arguments: nothing when no
    task is interrupted or held (the usual case: no test per row)."""
    if not interrupted and not any(held.values()):
        return "", []
    return f" || {_MARKS}", [json.dumps(sorted(interrupted)), json.dumps(dict(held))]


LINKS_SQL = links_sql(HOLDS_SQL)
"""The held tasks' dependencies that hold them (:func:`held_links`), by task id."""


def held_links(conn: sqlite3.Connection, span: str = "", args: Sequence[Any] = ()
               ) -> HeldLinks:
    """What holds the held tasks (:meth:`LedgerStore.held_links`), read through ``conn``;
    ``span`` (``" AND t.id ..."``, with ``args``): those of a range of ids alone."""
    return HeldLinks(*read_links(conn, LINKS_SQL + span, args))


LINKS_SHARE = 0.3
"""The share of the held tasks whose links this process reads itself, once it has read its
rows, while a forked child reads the others' (:meth:`ListingRows.held_links_reading`)."""
_FROM, _BEFORE = held_links_module.FROM, held_links_module.BEFORE


def links_from(conn: sqlite3.Connection, share: float = LINKS_SHARE) -> str | None:
    """The id from which a forked child reads the held tasks' links (None: it reads them
    all): this process reads ``share`` of them, those before it."""
    return held_links_module.links_from(conn, share)


def joined_links(before: HeldLinks, after: HeldLinks) -> HeldLinks:
    """The links of two ranges of ids, ``before``'s first."""
    return HeldLinks({**before.waits, **after.waits}, {**before.parents, **after.parents},
                     {**before.states, **after.states}, before.forward or after.forward)


class ListingRows:
    """The listings' JSON text, a row at a time."""

    conn: sqlite3.Connection
    path: Path | None

    def task_json_rows(self, *, statuses: Sequence[str] | None, include_hidden: bool,
                       label: str | None, issue_type: str | None, assignee: str | None,
                       parent: str | None, limit: int | None,
                       interrupted: Collection[str] = (),
                       held: Mapping[str, str] | None = None) -> Iterator[str]:
        where, filter_args = task_where(
            statuses=statuses, include_hidden=include_hidden, label=label,
            issue_type=issue_type, assignee=assignee, parent=parent, postgres=False,
            alias="t.")
        marks, marks_args = _marks(interrupted, held or {})
        order = listing_order(limit, "t.")

        def rows(conn: sqlite3.Connection, span: str, span_args: Sequence[Any]
                 ) -> Iterator[str]:
            sql = (f"SELECT {KEPT_JSON_SQL}{marks} || {_END} FROM tasks t{JOIN_SQL}{where}"
                   f"{span}{order}")
            for (text,) in conn.execute(sql, [*marks_args, *filter_args, *span_args]):
                yield expand_json_fields(text) if "\x01" in text else text

        return self._listing(rows, where, filter_args, statuses, limit)

    def _listing(self, rows: Rows[T], where: str, args: list[Any],
                 statuses: Sequence[str] | None, limit: int | None,
                 streamed: bool = False, how: Split | None = None) -> Iterator[T]:
        """``rows`` of a listing (its ``WHERE`` and arguments): a single status's whole
        listing read by two processes (its index counts the rows and gives the split key at
        once), any other at once. Split (:func:`~.split.split_rows`, ``how``), or with
        ``streamed`` read by the child alone and passed on as it comes
        (:func:`~.streamed.streamed_rows`: for rows this process then lays out)."""
        if self.path is None or limit or not statuses or len(statuses) != 1 or \
                where != " WHERE t.status IN (?)":
            return rows(self.conn, "", ())
        count = f"SELECT count(*) FROM tasks t{where}"
        if streamed:
            return streamed_rows(self.conn, self.path, count, args, rows)
        return split_rows(self.conn, self.path, count,
                          f"SELECT t.priority, t.seq FROM tasks t{where}"
                          f"{listing_order(None, 't.')} LIMIT 1 OFFSET ?", args,
                          "(t.priority, t.seq)", rows, how or Split())

    def task_cell_rows(self, *, statuses: Sequence[str] | None, include_hidden: bool,
                       label: str | None, issue_type: str | None, assignee: str | None,
                       parent: str | None, limit: int | None) -> Iterator[CellRow]:
        where, args = task_where(
            statuses=statuses, include_hidden=include_hidden, label=label,
            issue_type=issue_type, assignee=assignee, parent=parent, postgres=False,
            alias="t.")
        order = listing_order(limit, "t.")

        def rows(conn: sqlite3.Connection, span: str, span_args: Sequence[Any]
                 ) -> Iterator[CellRow]:
            return conn.execute(
                f"SELECT {CELLS_SQL} FROM tasks t{CELLS_JOIN_SQL}{where}{span}{order}",
                [*args, *span_args])

        return self._listing(rows, where, args, statuses, limit, streamed=True)

    def task_cell_texts(self, laying: Laying, *, statuses: Sequence[str] | None,
                        include_hidden: bool, label: str | None, issue_type: str | None,
                        assignee: str | None, parent: str | None, limit: int | None
                        ) -> Iterator[tuple[str, int]]:
        # split: each process lays out the rows it reads (laying them out costs about as
        # much as reading them), the child's part beginning at a stretch's start
        where, args = task_where(
            statuses=statuses, include_hidden=include_hidden, label=label,
            issue_type=issue_type, assignee=assignee, parent=parent, postgres=False,
            alias="t.")
        sql = f"SELECT {CELLS_SQL} FROM tasks t{CELLS_JOIN_SQL}{where}"
        order = listing_order(limit, "t.")
        kept = self.path is not None and not limit and statuses is not None and \
            len(statuses) == 1 and statuses[0] not in kept_text.DONE and \
            where == " WHERE t.status IN (?)" and \
            kept_text.kept_cells_complete(self.conn, statuses[0])
        if kept:  # (one status, every task of it with its cells kept: read in order from
            sql, order = KEPT_LISTING_SQL, " ORDER BY priority, seq"  # their table alone)

        def cells(conn: sqlite3.Connection, span: str, span_args: Sequence[Any]
                  ) -> Iterator[CellRow]:
            return conn.execute(f"{sql}{span}{order}", [*args, *span_args])

        def texts(conn: sqlite3.Connection, span: str, span_args: Sequence[Any]
                  ) -> Iterator[tuple[str, int]]:
            return laying.lay(cells(conn, span, span_args), None)

        def later(conn: sqlite3.Connection, span: str, span_args: Sequence[Any]
                  ) -> Iterator[tuple[str, int]]:
            head = list(itertools.islice(cells(conn, "", ()), laying.first))
            return laying.lay(cells(conn, span, span_args), head)

        how = Split(share=LAID_SHARE, after=later, align=(laying.first, laying.step), batch=1)
        if not kept:
            return self._listing(texts, where, args, statuses, limit, how=how)
        assert self.path is not None
        return split_rows(
            self.conn, self.path, "SELECT count(*) FROM task_cells WHERE status = ?",
            "SELECT priority, seq FROM task_cells WHERE status = ? ORDER BY priority, seq"
            " LIMIT 1 OFFSET ?", args, "(priority, seq)", texts, how)

    def held_cell_rows(self, beads_compat: bool = False) -> Iterator[CellRow]:
        return held_cells(self.conn, _gate(beads_compat), "", ())  # (not split: with the
        # links' child besides, three processes on two cores took more time than two, at 1M
        # tasks on a busy machine; held_cell_texts lays the rows out by two once they are in)

    def held_cell_texts(self, laying: HeldLaying, beads_compat: bool, cycles: Cycles
                        ) -> Iterator[tuple[str, int]]:
        return _small_cache(self.conn, held_listing.held_cell_texts(
            cast(LedgerStore, self), self.conn, self.path, laying, _gate(beads_compat),
            cycles, lambda: self.held_links_reading(shared=not beads_compat)))

    def held_json_rows(self, beads_compat: bool = False, *,
                       interrupted: Collection[str] = (),
                       held: Mapping[str, str] | None = None
                       ) -> Iterator[tuple[str, str, str]]:
        marks, marks_args = _marks(interrupted, held or {})
        return _small_cache(self.conn, held_json(self.conn, _gate(beads_compat), "", (),
                                                 marks, marks_args))  # (not split: see
        # held_cell_rows)

    def held_json_texts(self, beads_compat: bool, cycles: Cycles) -> Iterator[str]:
        return _small_cache(self.conn, held_listing.held_json_texts(
            cast(LedgerStore, self), self.conn, self.path, _gate(beads_compat), cycles,
            lambda: self.held_links_reading(shared=not beads_compat)))

    def held_links(self) -> HeldLinks:
        return held_links(self.conn)

    def kept_text_differences(self) -> list[str] | None:
        return kept_text.kept_text_differences(self.conn)

    def remake_kept_text(self) -> None:
        kept_text.drop_triggers(self.conn)
        kept_text.refill(self.conn)
        kept_text.make_triggers(self.conn)
        self.conn.execute(NEW_GENERATION_SQL)  # (an answer kept from the text as it was is
        # not served again: :mod:`taskmill.cli.lean_kept`)

    def held_links_reading(self, shared: bool = True) -> LinksReading:
        """(``shared``: this process reads its share of the links once it has read its
        rows (:data:`LINKS_SHARE`); not when its rows take long: ``--beads-compat``'s.)"""
        import threading

        path = self.path
        if path is None or self.conn.in_transaction or threading.active_count() > 1:
            # (another connection would not see what this one wrote; another thread may
            # use this connection meanwhile: no transaction of the listing's own on it)
            return LinksReading(self.held_links, meanwhile=False)
        # (read by another connection meanwhile: of the state this one's rows are read in)
        return PinnedReading(self.conn, path, lambda tasks: self._links_reading(tasks, shared),
                             self.held_links)

    def _links_reading(self, tasks: int, shared: bool) -> LinksReading:
        path = self.path
        assert path is not None
        if can_split() and tasks >= split.LINKS_FORK_MIN:  # (a fork copies no other
            # thread; a small ledger's links come as soon from a thread)
            begun = links_begun.take(str(path)) if shared else None
            if begun is not None:  # (forked before the modules were imported: the CLI's)
                at = links_from(self.conn, links_begun.SHARE)
                mine = None if at is None else (
                    lambda: held_links(self.conn, _BEFORE, (at,)))
                return ForkedReading(path, held_links, self.held_links, mine=mine,
                                     join=joined_links, begun=(begun, at))
            at = links_from(self.conn) if shared else None
            if at is None:
                return ForkedReading(path, lambda conn: held_links(conn), self.held_links)
            span = (at,)  # the links of the ids from ``at`` on read by the child, those
            # before it here once the rows are read (the child's not used: all read here)
            return ForkedReading(
                path, lambda conn: held_links(conn, _FROM, span), self.held_links,
                mine=lambda: held_links(self.conn, _BEFORE, span), join=joined_links)

        def read() -> HeldLinks:
            conn = connect(path)
            try:
                conn.execute(f"PRAGMA cache_size = -{READER_CACHE_KIB}")
                return held_links(conn)
            finally:
                conn.close()

        return LinksReading(read, meanwhile=True)

    def block_marks(self, prefix: str, kinds: Sequence[str], limit: int
                    ) -> dict[str, tuple[str | None, str | None, str | None]]:
        marks = ",".join("?" * len(kinds))
        out: dict[str, tuple[str | None, str | None, str | None]] = {}
        for tid, text, event in self.conn.execute(
                "SELECT t.id, (SELECT c.text FROM comments c WHERE c.task_id = t.id"
                " AND substr(c.text, 1, ?) = ? ORDER BY c.id DESC LIMIT 1),"
                " (SELECT json_array(e.actor, e.ts) FROM (SELECT e.actor, e.ts, e.data"
                f" FROM events e WHERE e.task_id = t.id AND e.kind IN ({marks})"
                " ORDER BY e.seq DESC LIMIT ?) e"
                " WHERE json_type(e.data, '$.changes.status') = 'array'"
                " AND json_extract(e.data, '$.changes.status[#-1]') = 'blocked' LIMIT 1)"
                " FROM tasks t WHERE t.status = 'blocked'",
                (len(prefix), prefix, *kinds, limit)):
            actor, ts = json.loads(event) if event is not None else (None, None)
            out[tid] = (text, actor, ts)
        return out

DEP_GATED_SQL = (
    "WITH RECURSIVE g(id) AS ("
    f" SELECT id FROM tasks INDEXED BY tasks_held WHERE {HELD_SQL.format(t='')}"
    " AND gated = 1 AND open_blockers > 0"
    " UNION SELECT d.issue_id FROM g JOIN tasks p ON p.id = g.id"
    " JOIN deps d ON d.depends_on_id = g.id AND d.type = 'parent-child'"
    " WHERE p.status NOT IN ('closed', 'tombstone')) SELECT id FROM g"
)
"""Beads' ``is_blocked``, set-based: the tasks not done that a blocking dependency holds, and
the tasks under them reached through parents that are not done (parent statuses do not
count). Done tasks are left out (no listing shows them)."""


def _gate(beads_compat: bool) -> str:
    """What ``blocked`` adds to the held tasks' condition (``--beads-compat``: Beads')."""
    return f" AND t.id IN ({DEP_GATED_SQL})" if beads_compat else ""


def _small_cache(conn: sqlite3.Connection, rows: Iterator[T]) -> Iterator[T]:
    """``rows`` read with a smaller page cache on ``conn`` meanwhile: the held tasks' pages
    are read about once (the links' connection, reading at the same time, has its own)."""
    cache = int(conn.execute("PRAGMA cache_size").fetchone()[0])
    conn.execute(f"PRAGMA cache_size = -{HELD_CACHE_KIB}")
    try:
        yield from rows
    finally:
        split.end_quietly(conn, f"PRAGMA cache_size = {cache}")
