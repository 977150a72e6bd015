"""``blocked``'s links, begun by a forked child before the ledger's modules are imported.

At a million tasks ``blocked`` spends its first ~100 ms importing the ledger's modules and
rich, the other core idle, before the child that reads the held tasks' links is forked
(:class:`taskmill.ledger.sqlite.split.ForkedReading`). For the plain ``blocked`` and
``blocked --json`` of a big ledger the CLI forks that child first
(:mod:`taskmill.cli.lean_links`, :func:`begin`); the SQLite store takes it over when it
comes to the links
(:func:`take`) and uses what it read only if no other connection committed since before the
fork (``PRAGMA data_version`` on the connection that looked first, :meth:`Begun.unchanged`):
then every connection read the same state of the ledger. Otherwise, or when the child
failed, the links are read as without it. A child not taken over (the answer came from
what was kept, say) is stopped as the process ends.

This module imports nothing but :mod:`os` and :mod:`atexit`: the CLI loads it on its own,
before the package (:func:`taskmill.cli.lean.load_ledger_module`), and the store's import
finds it loaded.
"""

from __future__ import annotations

import atexit
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable
    from typing import BinaryIO

FORK_MIN = 200_000
"""Tasks from which ``blocked`` reads its links in a forked child rather than a thread (in a
smaller ledger the thread costs less: at 100K tasks the fork took ~40 ms more CPU)."""
CACHE_KIB = 8192
"""The child's page cache (the pages are read about once)."""
SHARE = 0.2
"""The share of the held tasks whose links the listing's process reads itself once its rows
are read, when a begun child reads the others' (begun ~90 ms sooner, it takes more of them
than an ordinary links' child: :data:`taskmill.ledger.sqlite.listing.LINKS_SHARE`)."""


def looked(watch: sqlite3.Connection) -> tuple[int, int]:
    """The data version of the ledger ``watch`` looks at (its page cache emptied: it only
    watches) and its number of tasks."""
    watch.execute("PRAGMA cache_size = 0")
    return (int(watch.execute("PRAGMA data_version").fetchone()[0]),
            watch.execute("SELECT max(seq) FROM tasks").fetchone()[0] or 0)


class Begun:
    """A forked child reading the links into ``out`` (an unnamed file), begun after
    ``watch`` (a connection of this process's, kept open) saw the ledger at data version
    ``before``."""

    def __init__(self, pid: int, out: BinaryIO, watch: sqlite3.Connection,
                 before: int) -> None:
        self.pid, self.out, self.watch, self.before = pid, out, watch, before
        self.status: int | None = None

    def unchanged(self) -> bool:
        """Whether no other connection has committed since before the child was forked."""
        return bool(self.watch.execute("PRAGMA data_version").fetchone()[0] == self.before)

    def end(self) -> None:
        """Stop the child if it still runs, wait for it; close the connection and the file."""
        if self.status is None:
            try:  # noqa: SIM105  (contextlib: an import the CLI's start need not make)
                os.kill(self.pid, 9)
            except ProcessLookupError:
                pass
            self.status = os.waitpid(self.pid, 0)[1]
        self.watch.close()
        self.out.close()


_BEGUN: dict[str, Begun] = {}


def begin(db: str, watch: sqlite3.Connection, before: int, run_dir: str,
          read: Callable[[str, BinaryIO], None]) -> bool:
    """Fork a child that runs ``read(db, out)`` (``out``: an unnamed file in ``run_dir``)
    and ends; kept for :func:`take`. False (nothing forked) where the system makes no
    unnamed file or does not fork."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None or not hasattr(os, "fork"):
        return False
    try:
        fd = os.open(run_dir, flag | os.O_RDWR, 0o600)
    except OSError:
        return False
    out = os.fdopen(fd, "w+b")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child (its coverage is not gathered)
        code = 1
        try:
            read(db, out)
            out.flush()
            code = 0
        finally:
            os._exit(code)
    if not _BEGUN:
        atexit.register(_end_all)
    earlier = _BEGUN.pop(os.path.realpath(db), None)  # (one not taken: a command called
    if earlier is not None:  # in-process that ended before its listing)
        earlier.end()
    _BEGUN[os.path.realpath(db)] = Begun(pid, out, watch, before)
    return True


def take(db: str) -> Begun | None:
    """The child begun for the ledger file ``db``, now the caller's to end."""
    return _BEGUN.pop(os.path.realpath(db), None) if _BEGUN else None


def _end_all() -> None:
    while _BEGUN:
        _BEGUN.popitem()[1].end()
