"""A long listing read by two processes: the rows after a split key by a forked child (its
own connection, opened after the fork) meanwhile, into a temporary file; this process reads
the rows before it and then passes the child's on, in order. (SQLite serialises much of
the work of two threads in one process, on its memory allocator's lock: two processes
share nothing.) ``blocked``'s links are read by a forked child the same way
(:class:`ForkedReading`).

Both read the same state of the ledger or the child's rows are not used: this process reads
in a transaction begun before the fork, and ``PRAGMA data_version`` on a connection of its
own, asked before that transaction began and again once the child has begun reading, tells
whether another connection committed meanwhile (then the rest is read here, in the same
transaction, as without a child). A child that fails is passed over the same way.
"""

from __future__ import annotations

import contextlib
import itertools
import marshal
import os
import sqlite3
import tempfile
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from .. import links_begun
from ..spill import read_batches, read_rows, write_batch
from ..store import HeldLinks, LinksReading
from .schema import connect

SPLIT_MIN = 20_000
"""Rows from which a listing is split (fewer: the fork costs more than it saves)."""
LINKS_FORK_MIN = links_begun.FORK_MIN
"""Tasks from which ``blocked`` reads its links in a forked child rather than a thread."""
TEXT_SHARE = 0.45
"""The share of the rows this process reads when it then only writes them out (JSON text):
the child's rows take this process a little time more once read back."""
CHILD_CACHE_KIB = 8192
"""The child's page cache: the rows' pages are read about once (a bigger cache saves no
time, and each process has its own)."""
BATCH = 1000
"""Rows the child writes at a time."""

T = TypeVar("T")
Rows = Callable[[sqlite3.Connection, str, Sequence[Any]], Iterator[T]]
"""The rows (text, or tuples of values: what :mod:`marshal` writes) read through a
connection, with the condition on the key to add to the statement's ``WHERE`` (``""`` or
``" AND ..."``) and its arguments."""


def can_split() -> bool:
    """Whether this system forks (not Windows)."""
    return hasattr(os, "fork")


class Split(NamedTuple):
    """How a listing is split: ``share``, of the rows, what this process reads (the first);
    ``after``, what reads the rows after the split key (``None``: the same ``rows``);
    ``align``, ``(first, step)``: the split key is a row ``first + k * step`` of the
    listing (``None``: anywhere); ``batch``: what the child writes at a time."""

    share: float = TEXT_SHARE
    after: Rows[Any] | None = None
    align: tuple[int, int] | None = None
    batch: int = BATCH


def split_rows(conn: sqlite3.Connection, path: Path, count_sql: str, key_sql: str,
               args: Sequence[Any], key: str, rows: Rows[T], how: Split | None = None
               ) -> Iterator[T]:
    """What ``rows`` reads, in order, the second part read by a child meanwhile when the
    listing has :data:`SPLIT_MIN` rows or more. ``count_sql`` counts the rows, ``key_sql``
    (``LIMIT 1 OFFSET ?`` last) gives the split key's values, both with ``args``; ``key``:
    the key's columns, as the statement writes them (``"(t.priority, t.seq)"``); ``how``:
    :class:`Split` (``None``: its defaults)."""
    return forked_listing(conn, path, rows, lambda watch, before: _split(
        conn, path, watch, before, (count_sql, key_sql, args, key), rows, how or Split()))


def forked_listing(conn: sqlite3.Connection, path: Path, rows: Rows[T],
                   by_child: Callable[[sqlite3.Connection, int], Iterator[T]]
                   ) -> Iterator[T]:
    """``rows`` read at once where no child may read (a small ledger, a system that does not
    fork, a transaction or another thread running), else ``by_child(watch, before)``: read in
    a transaction begun here, ``watch`` a connection of its own and ``before`` its ``PRAGMA
    data_version`` asked before that transaction began (see the module's text)."""
    import threading

    tasks = conn.execute("SELECT max(seq) FROM tasks").fetchone()[0] or 0
    try:
        if tasks < SPLIT_MIN or not can_split() or conn.in_transaction or \
                threading.active_count() > 1:
            yield from rows(conn, "", ())  # (a small ledger's listing is short: read at
            return  # once; a fork copies no other thread: none may run)
        watch = connect(path)
        watch.execute("PRAGMA cache_size = 0")
        try:
            before = watch.execute("PRAGMA data_version").fetchone()[0]
            conn.execute("BEGIN")
            try:
                yield from by_child(watch, before)
            finally:
                end_quietly(conn, "COMMIT")
        finally:
            watch.close()
    except sqlite3.ProgrammingError:
        if not closed(conn):  # (closed: a cursor's close at this listing's own close)
            raise


def end_quietly(conn: sqlite3.Connection, sql: str) -> None:
    """``sql`` (ending what a listing began on ``conn``), unless ``conn`` was closed first:
    a listing left half read (a closed pipe) is closed when it is collected, which may be
    after its ledger (a closed connection ended its transaction and settings with it)."""
    if not closed(conn):
        conn.execute(sql)


def closed(conn: sqlite3.Connection) -> bool:
    """Whether ``conn`` was closed."""
    try:
        conn.total_changes  # noqa: B018  (raises on a closed connection)
    except sqlite3.ProgrammingError:
        return True
    return False


def _split(conn: sqlite3.Connection, path: Path, watch: sqlite3.Connection, before: int,
           query: tuple[str, str, Sequence[Any], str], rows: Rows[T], how: Split
           ) -> Iterator[T]:
    count_sql, key_sql, args, key = query
    total = conn.execute(count_sql, args).fetchone()[0]
    offset = int(total * how.share)
    if how.align is not None:
        first, step = how.align
        offset = first + step * max(0, round((offset - first) / step))
    at = conn.execute(key_sql, [*args, offset]).fetchone() \
        if total >= SPLIT_MIN else None
    if at is None:
        yield from rows(conn, "", ())
        return
    marks = ", ".join("?" * len(at))
    after = (f" AND {key} >= ({marks})", tuple(at))
    later: Rows[T] = how.after or rows
    with tempfile.TemporaryFile() as out:
        # the child: its own connection, its rows into the file, then gone
        pid, ready = forked(lambda told: _child(path, out, told, after, later, how.batch))
        if (yield from settled(
                pid, ready, rows(conn, f" AND {key} < ({marks})", after[1]),
                lambda: bool(watch.execute("PRAGMA data_version").fetchone()[0] == before))):
            yield from read_rows(out)
            return
    yield from later(conn, *after)  # (read here: the child did not read the same ledger)


def settled(pid: int, ready: int, mine: Iterator[T], unchanged: Callable[[], bool]
            ) -> Generator[T, None, bool]:
    """``mine`` passed on (this process's part, made while the child ``pid`` makes its
    own), then whether the child's output may be used: it began reading (said on ``ready``)
    in the state this process reads (``unchanged``, asked once it has) and ended well. A
    child whose output is not used is stopped; either way it is waited for."""
    same = False
    try:
        yield from mine
        started = os.read(ready, 1) == b"1"  # (once the child has begun reading)
        same = started and unchanged()
    finally:
        os.close(ready)
        if not same:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        _, status = os.waitpid(pid, 0)
    return same and os.waitstatus_to_exitcode(status) == 0


def forked(work: Callable[[int], int]) -> tuple[int, int]:
    """A forked child that runs ``work(told)`` (``told``: the write end of a pipe) and is
    gone with the code it returns (1 if it raised); this process's ``(pid, read end)``."""
    ready, told = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(ready)
            code = work(told)
        finally:
            os._exit(code)
    os.close(told)
    return pid, ready


def _child(path: Path, out: Any, told: int, after: tuple[str, tuple[Any, ...]],
           rows: Rows[Any], batch_size: int) -> int:
    """Write the rows after the split key to ``out``, ``batch_size`` at a time (each batch
    a list, :func:`~taskmill.ledger.spill.write_batch`); say on ``told`` once the reading
    has begun (the ledger's state is then fixed)."""
    conn = connect(path)  # (the parent's connection is never used here)
    conn.execute(f"PRAGMA cache_size = -{CHILD_CACHE_KIB}")
    conn.execute("BEGIN")
    found = rows(conn, *after)
    batch = list(itertools.islice(found, 1))
    os.write(told, b"1")
    os.close(told)
    while batch:
        batch.extend(itertools.islice(found, batch_size - len(batch)))
        write_batch(out, batch)
        batch = list(itertools.islice(found, batch_size))
    out.flush()
    return 0


class ForkedReading(LinksReading):
    """:class:`~taskmill.ledger.store.LinksReading` by a forked child (its own connection):
    no lock or interpreter shared with this process, which reads the rows meanwhile. A
    child that fails is passed over: the links are then read here."""

    def __init__(self, path: Path, read: Callable[[sqlite3.Connection], HeldLinks],
                 fallback: Callable[[], HeldLinks], *,
                 mine: Callable[[], HeldLinks] | None = None,
                 join: Callable[[HeldLinks, HeldLinks], HeldLinks] | None = None,
                 begun: tuple[links_begun.Begun, str | None] | None = None) -> None:
        """``read``: what the child reads; ``mine``, what this process reads itself when
        the links are asked for (before the child's are waited for), ``join`` putting the
        two together (``mine``'s first). ``begun``: the child forked already (it read the
        links from an id on, and wrote that id after them), with the id this process
        reads up to: its links are used if it read from there, in the state this process
        reads (:meth:`~taskmill.ledger.links_begun.Begun.unchanged`)."""
        self._links: HeldLinks | None = None
        self._mine, self._join = mine, join
        self._fallback = fallback
        self._asked = 0
        self._status: int | None = None
        self._begun = begun
        if begun is not None:
            self._pid, self._out = begun[0].pid, begun[0].out
            return
        self._out = tempfile.TemporaryFile()  # noqa: SIM115  (closed by close())
        self._pid = os.fork()
        if self._pid == 0:
            code = 1
            try:
                conn = connect(path)  # (the parent's connection is never used here)
                conn.execute(f"PRAGMA cache_size = -{CHILD_CACHE_KIB}")
                write_batch(self._out, tuple(read(conn)))
                self._out.flush()
                code = 0
            finally:
                os._exit(code)

    def done(self) -> bool:
        if self._status is None:
            self._asked += 1
            if self._asked % 64:  # (a system call: asked every so many rows)
                return False
            pid, status = os.waitpid(self._pid, os.WNOHANG)
            if pid == 0:
                return False
            self._status = status
        return True

    def result(self) -> HeldLinks:
        if self._links is not None:
            return self._links
        mine = self._mine() if self._mine is not None else None  # (meanwhile)
        if self._status is None:
            self._status = os.waitpid(self._pid, 0)[1]
        with self._out:
            got = None if os.waitstatus_to_exitcode(self._status) != 0 else \
                next(read_batches(self._out), None) if self._begun is None else \
                self._begun_links(self._begun)
            if got is None:
                self._links = self._fallback()
                return self._links
            links = HeldLinks(*got)
            if mine is not None and self._join is not None:
                links = self._join(mine, links)
            self._links = links
        return self._links

    def _begun_links(self, begun: tuple[links_begun.Begun, str | None]) -> Any:
        """The begun child's links (:func:`taskmill.cli.lean_links._read` wrote them), or
        None unless it read from the id this process reads up to, in its state."""
        self._out.seek(0)
        *links, upto = marshal.loads(self._out.read())
        return tuple(links) if upto == begun[1] and begun[0].unchanged() else None

    def close(self) -> None:
        if self._status is None:  # (the listing was left before the links were asked for)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, 9)
            self._status = os.waitpid(self._pid, 0)[1]
        self._out.close()
        if self._begun is not None:
            self._begun[0].status = self._status
            self._begun[0].end()


class PinnedReading(LinksReading):
    """The links read by another connection (``start``: a forked child's, a thread's) in the
    state of the ledger this connection reads the rows in: this connection's transaction
    is begun first and kept until :meth:`close`, and ``PRAGMA data_version`` on a
    connection of its own, asked before it began and once the links are in, tells whether
    another connection committed meanwhile; then the links are read here (``fallback``),
    in this connection's transaction, and the other reading's are not used."""

    def __init__(self, conn: sqlite3.Connection, path: Path,
                 start: Callable[[int], LinksReading],
                 fallback: Callable[[], HeldLinks]) -> None:
        self._conn = conn
        self._fallback = fallback
        self._links: HeldLinks | None = None
        self._watch = connect(path)
        try:
            self._watch.execute("PRAGMA cache_size = 0")
            self._before = self._watch.execute("PRAGMA data_version").fetchone()[0]
            conn.execute("BEGIN")
            try:  # (the first read fixes this connection's state of the ledger)
                tasks = conn.execute("SELECT max(seq) FROM tasks").fetchone()[0] or 0
                self._inner = start(tasks)
            except BaseException:
                end_quietly(conn, "ROLLBACK")
                raise
        except BaseException:
            self._watch.close()
            raise

    def done(self) -> bool:
        return self._inner.done()

    @property
    def forked(self) -> bool:
        """Whether a forked child reads the links (:class:`ForkedReading`: a big ledger's;
        else a thread, running meanwhile)."""
        return isinstance(self._inner, ForkedReading)

    def unchanged(self) -> bool:
        """Whether no other connection has committed since this one's transaction began
        (another connection that began reading since then reads the same state)."""
        return bool(self._watch.execute("PRAGMA data_version").fetchone()[0] == self._before)

    def result(self) -> HeldLinks:
        if self._links is None:
            links = self._inner.result()
            if not self.unchanged():
                links = self._fallback()  # (another state: read again in this one's)
            self._links = links
        return self._links

    def close(self) -> None:
        try:
            self._inner.close()
            if not closed(self._conn) and self._conn.in_transaction:
                self._conn.execute("COMMIT")
        finally:
            self._watch.close()

