"""``blocked``'s table at scale: laid out by two processes once the links are in.

This process reads the held tasks' rows while another connection reads what holds them (the
links: :func:`taskmill.ledger.listing.holding`); laying the table out once the links are in
was the rest of the listing's time (at 1M tasks, 53,147 held: ~0.9 s of CPU). So once they
are in, this process lays out the listing's first stretch (the columns' widths come from
it) and forks a child that has the links and the widths as they are: the child reads the
rows from a split key on, through a connection of its own in the same state of the ledger,
and lays them out into a temporary file while this process lays out the rows before the
key; then the child's text is passed on, with the commands that unblock its tasks. The key
is a stretch's first row, so the text is the same bytes as one process lays out.

Each process reads only the rows it lays out (where to split is asked first, of the held
tasks' index). The child's text is used only when it read the state this process reads
(``PRAGMA data_version``, :meth:`~.split.PinnedReading.unchanged`, once it has begun) and
ended well; otherwise the rest is read and laid out here, in this process's transaction.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, NamedTuple

from .. import listing
from ..spill import read_rows, write_batch
from ..store import CellRow, Cycles, HeldLaying, LedgerStore
from .deps import HELD_SQL
from .kept_text import CELLS_JOIN_SQL, KEPT_CELLS_SQL
from .schema import connect
from .split import CHILD_CACHE_KIB, SPLIT_MIN, PinnedReading, can_split, forked

HELD_LAID_SHARE = 0.56
"""The share of ``blocked``'s rows this process lays out (the child the rest)."""


def held_cells(conn: sqlite3.Connection, gate: str, span: str, args: Sequence[Any]
               ) -> Iterator[CellRow]:
    """The held tasks' cells (:meth:`~taskmill.ledger.store.LedgerStore.held_cell_rows`),
    ``gate`` and ``span`` added to the condition (``""`` or ``" AND ..."``), in order."""
    return conn.execute(
        f"SELECT {KEPT_CELLS_SQL} FROM tasks t INDEXED BY tasks_held{CELLS_JOIN_SQL}"
        f" WHERE {HELD_SQL.format(t='t.')}{gate}{span} ORDER BY t.priority, t.seq", args)


class Part(NamedTuple):
    """Where ``blocked``'s table is split: the rows before ``key`` (``offset`` of them) laid
    out here, those from it by the child."""

    offset: int
    key: tuple[Any, ...]


_SPAN = " AND (t.priority, t.seq) >= (?, ?)"


def held_cell_texts(store: LedgerStore, conn: sqlite3.Connection, path: Path | None,
                    laying: HeldLaying, gate: str, cycles: Cycles
                    ) -> Iterator[tuple[str, int]]:
    """:meth:`~taskmill.ledger.store.LedgerStore.held_cell_texts` of the SQLite ``store``
    (its connection ``conn``, its file ``path``): see the module's text."""
    reading = store.held_links_reading()
    try:
        pinned = reading if isinstance(reading, PinnedReading) else None
        part = None if path is None or pinned is None else _part(conn, laying, gate)
        rows = listing.read_ahead(listing.id_status_first(
            held_cells(conn, gate, "", ()) if part is None else
            held_cells(conn, gate, " AND (t.priority, t.seq) < (?, ?)", part.key)), reading)
        holder = listing.Holder(store, reading.result(), cycles)
        texts = laying.lay(listing.cells_held(holder.rows(rows)), None)
        if part is None or path is None or pinned is None:
            yield from texts
            return
        got = next(texts, None)  # (the first stretch: the widths worked out)
        if got is None:
            return
        yield got
        yield from _split(conn, path, pinned, laying, holder, part, gate, texts)
    finally:
        reading.close()


def _part(conn: sqlite3.Connection, laying: HeldLaying, gate: str) -> Part | None:
    """Where to split the table (None: not split: a short one, a system that does not
    fork, another thread running)."""
    import threading

    if not can_split() or threading.active_count() > 1:  # (a fork copies no other thread:
        return None  # none may run)
    where = f" WHERE {HELD_SQL.format(t='t.')}{gate}"
    total = conn.execute(f"SELECT count(*) FROM tasks t INDEXED BY tasks_held{where}"
                         ).fetchone()[0]
    if total < SPLIT_MIN:
        return None
    offset = laying.first + laying.step * max(
        0, round((total * HELD_LAID_SHARE - laying.first) / laying.step))
    key = conn.execute(f"SELECT t.priority, t.seq FROM tasks t INDEXED BY tasks_held{where}"
                       " ORDER BY t.priority, t.seq LIMIT 1 OFFSET ?", (offset,)).fetchone()
    return None if key is None else Part(offset, tuple(key))


def _split(conn: sqlite3.Connection, path: Path, reading: PinnedReading, laying: HeldLaying,
           holder: listing.Holder, part: Part, gate: str, texts: Iterator[tuple[str, int]]
           ) -> Iterator[tuple[str, int]]:
    """The rest of the table: this process's stretches (``texts``) then the child's, or,
    where the child's are not used, the rows from the key read and laid out here."""
    with tempfile.TemporaryFile() as out:
        pid, ready = forked(lambda told: _child(path, out, told, laying, holder, part, gate))
        same = False
        try:
            yield from texts
            started = os.read(ready, 1) == b"1"  # (once the child has begun reading)
            same = started and reading.unchanged()
        finally:
            os.close(ready)
            if not same:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
            _, status = os.waitpid(pid, 0)
        if same and os.waitstatus_to_exitcode(status) == 0:
            for text, count, unblock in read_rows(out):
                laying.unblock.extend(unblock)
                yield text, count
            return
    yield from laying.lay(listing.cells_held(holder.rows(listing.id_status_first(
        held_cells(conn, gate, _SPAN, part.key)))), [])  # (in this one's transaction: the
    # child did not read the same ledger, or failed)


def _child(path: Path, out: IO[bytes], told: int, laying: HeldLaying,
           holder: listing.Holder, part: Part, gate: str) -> int:
    """Lay out the rows from the split key into ``out``: a batch a stretch, (its text, its
    rows, the commands that unblock them); say on ``told`` once the reading has begun."""
    from . import SqliteStore  # (the package, long imported: the store over this child's

    conn = connect(path)  # own connection; the parent's is never used here)
    conn.execute(f"PRAGMA cache_size = -{CHILD_CACHE_KIB}")
    conn.execute("BEGIN")
    rows = listing.id_status_first(held_cells(conn, gate, _SPAN, part.key))
    first = list(itertools.islice(rows, 1))
    os.write(told, b"1")
    os.close(told)
    holder.rebind(SqliteStore(conn, path))
    unblock = laying.unblock
    del unblock[:]  # (this process's own, from here)
    for text, count in laying.lay(listing.cells_held(holder.rows(
            itertools.chain(first, rows))), []):
        write_batch(out, [(text, count, list(unblock))])
        del unblock[:]
    out.flush()
    return 0
