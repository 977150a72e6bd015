"""``blocked`` at scale (its table, its JSON): made by two processes once the links are in.

This process reads the held tasks' rows while what holds them (the links) is read meanwhile
(:func:`taskmill.ledger.listing.holding`); making the listing's text of the rows once the
links are in was the rest of its time (at 1M tasks, 53,147 held: the table ~0.9 s of CPU,
the JSON ~0.3 s). So where to split the held tasks is asked first (their index gives the
key at once), this process reads only the rows before it, and once the links are in and its
first output made (a table's first stretch: the columns' widths come from it) it forks a
child that has the links and the widths as they are: the child reads the rows from the key
on, through a connection of its own in the same state of the ledger, and makes their text
into a temporary file while this process makes its own; then the child's text is passed on
(and, for the table, the commands that unblock its tasks). A table's key is a stretch's
first row, so the text is the same bytes as one process makes.

The child's text is used only when it read the state this process reads (``PRAGMA
data_version``, :meth:`~.split.PinnedReading.unchanged`, once it has begun) and ended well;
otherwise the rest is read and made here, in this process's transaction.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, NamedTuple, TypeVar

from .. import listing
from ..rows import expand_json_fields
from ..spill import read_batches, write_batch
from ..store import CellRow, Cycles, HeldLaying, LedgerStore, LinksReading
from .deps import HELD_SQL
from .kept_text import CELLS_JOIN_SQL, JOIN_SQL, KEPT_CELLS_SQL, KEPT_JSON_SQL
from .schema import connect
from .split import CHILD_CACHE_KIB, SPLIT_MIN, PinnedReading, can_split, forked, settled

HELD_LAID_SHARE = 0.58
"""The share of ``blocked``'s table this process lays out (the child the rest: it reads its
rows itself, on a connection with nothing cached)."""
HELD_JSON_SHARE = 0.6
"""The share of ``blocked --json``'s rows this process writes (the child the rest)."""
JSON_BATCH = 256
"""Rows' text the child writes at a time."""

R = TypeVar("R", bound=tuple[Any, ...])
Reads = Callable[[sqlite3.Connection, str, Sequence[Any]], Iterator[R]]
"""The held tasks' rows (id and status first), with a condition added (``""`` or ``" AND
..."``) and its arguments."""


def held_cells(conn: sqlite3.Connection, gate: str, span: str, args: Sequence[Any]
               ) -> Iterator[CellRow]:
    """The held tasks' cells (:meth:`~taskmill.ledger.store.LedgerStore.held_cell_rows`),
    ``gate`` and ``span`` added to the condition (``""`` or ``" AND ..."``), in order."""
    return conn.execute(
        f"SELECT {KEPT_CELLS_SQL} FROM tasks t INDEXED BY tasks_held{CELLS_JOIN_SQL}"
        f" WHERE {HELD_SQL.format(t='t.')}{gate}{span} ORDER BY t.priority, t.seq", args)


def held_json(conn: sqlite3.Connection, gate: str, span: str, args: Sequence[Any],
              marks: str = "", marks_args: Sequence[Any] = ()
              ) -> Iterator[tuple[str, str, str]]:
    """The held tasks' (id, status, JSON text less its closing line)
    (:meth:`~taskmill.ledger.store.LedgerStore.held_json_rows`; ``marks``: what to add to
    the text, with its arguments before ``args``), ``gate`` and ``span`` as
    :func:`held_cells`'s."""
    for tid, status, text in conn.execute(
            f"SELECT t.id, t.status, {KEPT_JSON_SQL}{marks} FROM tasks t"
            f" INDEXED BY tasks_held{JOIN_SQL} WHERE {HELD_SQL.format(t='t.')}{gate}{span}"
            " ORDER BY t.priority, t.seq", [*marks_args, *args]):
        yield tid, status, expand_json_fields(text) if "\x01" in text else text


class Part(NamedTuple):
    """Where a listing is split: the rows before ``key`` (``offset`` of them) made here,
    those from it by the child."""

    offset: int
    key: tuple[Any, ...]


_BEFORE = " AND (t.priority, t.seq) < (?, ?)"
_FROM = " AND (t.priority, t.seq) >= (?, ?)"


class Making(NamedTuple):
    """What a split listing makes of its rows, and how the child's output comes back."""

    share: float
    align: tuple[int, int] | None
    """``(first, step)``: the key is a row ``first + k * step`` (None: anywhere)."""
    make: Callable[[listing.Holder, Iterator[Any], bool], Iterator[Any]]
    """The output of rows (the second argument: the child's, or the rest made here)."""
    batch: int
    tail: Callable[[], Any]
    """What the child sends after its output (in the child)."""
    take_tail: Callable[[Any], None]
    """What this process does with it."""


def held_cell_texts(store: LedgerStore, conn: sqlite3.Connection, path: Path | None,
                    laying: HeldLaying, gate: str, cycles: Cycles,
                    links: Callable[[], LinksReading]) -> Iterator[tuple[str, int]]:
    """:meth:`~taskmill.ledger.store.LedgerStore.held_cell_texts` of the SQLite ``store``
    (its connection ``conn``, its file ``path``; ``links``: its links' reading begun): see
    the module's text."""
    def make(holder: listing.Holder, rows: Iterator[Any], later: bool
             ) -> Iterator[tuple[str, int]]:
        return laying.lay(listing.cells_held(holder.rows(rows)), [] if later else None)

    def tail() -> list[str]:
        return laying.unblock

    def reads(conn: sqlite3.Connection, span: str, args: Sequence[Any]
              ) -> Iterator[tuple[str, str, CellRow]]:
        return listing.id_status_first(held_cells(conn, gate, span, args))

    def fresh() -> None:  # (in the child: the commands of its own rows alone)
        del laying.unblock[:]

    return _held(store, conn, path, (gate, cycles, links), reads, Making(
        HELD_LAID_SHARE, (laying.first, laying.step), make, 1, tail, laying.unblock.extend),
        fresh)


def held_json_texts(store: LedgerStore, conn: sqlite3.Connection, path: Path | None,
                    gate: str, cycles: Cycles, links: Callable[[], LinksReading]
                    ) -> Iterator[str]:
    """:meth:`~taskmill.ledger.store.LedgerStore.held_json_texts` of the SQLite ``store``:
    see the module's text."""
    def make(holder: listing.Holder, rows: Iterator[Any], later: bool) -> Iterator[str]:
        return listing.json_items(holder.rows(rows))

    def reads(conn: sqlite3.Connection, span: str, args: Sequence[Any]
              ) -> Iterator[tuple[str, str, str]]:
        return held_json(conn, gate, span, args)

    return _held(store, conn, path, (gate, cycles, links), reads, Making(
        HELD_JSON_SHARE, None, make, JSON_BATCH, lambda: None, lambda _: None), lambda: None)


def _held(store: LedgerStore, conn: sqlite3.Connection, path: Path | None,
          held: tuple[str, Cycles, Callable[[], LinksReading]], reads: Reads[Any],
          making: Making, fresh: Callable[[], None]) -> Iterator[Any]:
    gate, cycles, links = held
    reading = links()
    try:
        pinned = reading if isinstance(reading, PinnedReading) else None
        part = None if path is None or pinned is None or not pinned.forked else \
            _part(conn, making, gate)  # (split where the links come from a child: no thread
        # runs meanwhile, and the ledger is big)
        rows = listing.read_ahead(
            reads(conn, "", ()) if part is None else reads(conn, _BEFORE, part.key), reading)
        holder = listing.Holder(store, reading.result(), cycles)
        made = making.make(holder, rows, False)
        if part is None or path is None or pinned is None:
            yield from made
            return
        got = next(made, None)  # (a table's first stretch: the widths worked out)
        if got is None:
            return
        yield got
        with tempfile.TemporaryFile() as out:
            pid, ready = forked(lambda told: _child(
                path, out, told, holder, part, (reads, making, fresh)))
            if (yield from settled(pid, ready, made, pinned.unchanged)):
                for batch in read_batches(out):
                    if batch and batch[0] == _TAIL:
                        making.take_tail(batch[1])
                        break
                    yield from batch
                return
        yield from making.make(holder, reads(conn, _FROM, part.key), True)  # (in this one's
        # transaction: the child did not read the same ledger, or failed)
    finally:
        reading.close()


_TAIL = "\x00tail"
"""The first item of the child's last batch (its tail after)."""


def _part(conn: sqlite3.Connection, making: Making, gate: str) -> Part | None:
    """Where to split the listing (None: not split: a short one, Beads' (its ``gate``, a
    recursive query, would be asked again by each statement), a system that does not fork,
    another thread running)."""
    import threading

    if gate or not can_split() or threading.active_count() > 1:  # (a fork copies no other
        return None  # thread: none may run)
    where = f" WHERE {HELD_SQL.format(t='t.')}{gate}"
    total = conn.execute(f"SELECT count(*) FROM tasks t INDEXED BY tasks_held{where}"
                         ).fetchone()[0]
    if total < SPLIT_MIN:
        return None
    offset = int(total * making.share)
    if making.align is not None:
        first, step = making.align
        offset = first + step * max(0, round((offset - first) / step))
    key = conn.execute(f"SELECT t.priority, t.seq FROM tasks t INDEXED BY tasks_held{where}"
                       " ORDER BY t.priority, t.seq LIMIT 1 OFFSET ?", (offset,)).fetchone()
    return None if key is None else Part(offset, tuple(key))


def _child(path: Path, out: IO[bytes], told: int, holder: listing.Holder, part: Part,
           how: tuple[Reads[Any], Making, Callable[[], None]]) -> int:
    """Make the output of the rows from the split key into ``out``, a batch at a time, then
    a batch of :data:`_TAIL` and the tail; say on ``told`` once the reading has begun."""
    from . import SqliteStore  # (the package, long imported: the store over this child's

    reads, making, fresh = how
    conn = connect(path)  # own connection; the parent's is never used here)
    conn.execute(f"PRAGMA cache_size = -{CHILD_CACHE_KIB}")
    conn.execute("BEGIN")
    rows = reads(conn, _FROM, part.key)
    first = list(itertools.islice(rows, 1))
    os.write(told, b"1")
    os.close(told)
    holder.rebind(SqliteStore(conn, path))
    fresh()
    made = making.make(holder, itertools.chain(first, rows), True)
    while batch := list(itertools.islice(made, making.batch)):
        write_batch(out, batch)
    write_batch(out, [_TAIL, making.tail()])
    out.flush()
    return 0
