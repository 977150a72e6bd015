"""A long listing read by a forked child and passed on through a pipe as it is read, while
this process does what it does with each row: a task table's rows cost about as much to lay
out as to read (~10 and ~11 us a row at 1M tasks), so the two are done side by side (a
listing whose rows are only written out is split instead: :mod:`~.split`).

The rows are of one state of the ledger: this process's transaction is begun before the
fork and its ``PRAGMA data_version`` (asked on a connection of its own before that) asked
again once the child has read its first row; when another connection committed meanwhile,
the child is stopped and the rows are read here, none passed on yet. A child that fails
later is passed over: the rows after those passed on are read here, in the same state.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..spill import read_stream, write_batch
from . import split
from .schema import connect
from .split import Rows, T

STREAM_BATCH = 200
"""Rows the child writes to the pipe at a time (the pipe holds ~64 KiB: the child waits while
this process is behind)."""


def streamed_rows(conn: sqlite3.Connection, path: Path, count_sql: str,
                  args: Sequence[Any], rows: Rows[T]) -> Iterator[T]:
    """What ``rows`` reads (with no key's condition), in order, read by a forked child and
    passed on as it comes when the listing has :data:`~.split.SPLIT_MIN` rows or more
    (``count_sql`` with ``args`` counts them)."""
    return split.forked_listing(conn, path, rows, lambda watch, before: _streamed(
        conn, path, watch, before, (count_sql, args), rows))


def _streamed(conn: sqlite3.Connection, path: Path, watch: sqlite3.Connection, before: int,
              count: tuple[str, Sequence[Any]], rows: Rows[T]) -> Iterator[T]:
    if conn.execute(*count).fetchone()[0] < split.SPLIT_MIN:  # (the first read: this
        yield from rows(conn, "", ())  # connection's state of the ledger fixed)
        return
    # the child: its own connection, its rows into the pipe, then gone
    pid, ready = split.forked(lambda told: _child(path, told, rows))
    passed = 0
    status: int | None = None
    same = False
    with os.fdopen(ready, "rb") as pipe:
        try:
            batches = read_stream(pipe)
            first = next(batches, None)  # (once the child has read its first row)
            same = first is not None and \
                watch.execute("PRAGMA data_version").fetchone()[0] == before
            if same:
                for batch in itertools.chain((first,), batches):
                    for row in batch:
                        yield row
                        passed += 1
                status = os.waitpid(pid, 0)[1]
        finally:
            if status is None:  # (stopped: another state, or this listing left early)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
                status = os.waitpid(pid, 0)[1]
    if same and os.waitstatus_to_exitcode(status) == 0:
        return
    # read here: the child read another state (nothing passed on), or failed
    yield from itertools.islice(rows(conn, "", ()), passed, None)


def _child(path: Path, told: int, rows: Rows[Any]) -> int:
    """Write the rows to the pipe ``told``, the first alone (it says that the reading has
    begun: the ledger's state is then fixed), then :data:`STREAM_BATCH` at a time."""
    conn = connect(path)  # (the parent's connection is never used here)
    conn.execute(f"PRAGMA cache_size = -{split.CHILD_CACHE_KIB}")
    conn.execute("BEGIN")
    found = rows(conn, "", ())
    with os.fdopen(told, "wb") as out:
        batch = list(itertools.islice(found, 1))
        while batch:
            write_batch(out, batch)
            out.flush()
            batch = list(itertools.islice(found, STREAM_BATCH))
    return 0
