"""The lean path's kept answer: ``ready --json`` as last written, kept in the run directory
under the ledger generation it was read at, and written out again while the ledger is
still at that generation.

A big backlog's ``ready --json`` is mostly the ledger's own work: at 100,000 tasks its
2,666 ready tasks (2.2 MB of JSON) cost SQLite ~35 ms to find and write, more than Python's
start-up. Between two writes the answer cannot change (the lean path answers only where it
depends on nothing but the ledger's tasks, labels and dependencies: no ``defer_until``, no
roles, the settings it checks first), and every change to those tables draws a new random
generation (:func:`taskmill.ledger.sqlite.schema.generation_triggers`: whoever writes,
triggers in the database itself). So the lean path reads the generation and the ready
tasks in one transaction, writes its answer, and keeps it in ``.taskmill/run/ready.kept``
under that generation; a later ``ready --json`` that reads the same generation writes the
kept bytes instead of asking SQLite again.

The file: one header line (this format, taskmill's version, the size and time of the two
modules that make the answer, the generation, the answer's length in bytes), then the
answer. It is written to a private temporary file, flushed to disk, and renamed over the
kept one, so a reader sees a whole answer or none; anything unexpected (another version's
file, a different generation, a short file) is a miss, and the answer is made afresh.

This module imports nothing but :mod:`os` (and the package's version).
"""

from __future__ import annotations

import os

KEPT_FILE = "ready.kept"
"""In the run directory (``.taskmill/run``, untracked)."""
FORMAT = 1
MAX_BYTES = 256 * 1024 * 1024
"""A bigger answer is not kept (written again each time)."""
FILE_MODE = 0o600
"""As the ledger file's: it holds the tasks' text."""


def _code_stamp() -> str | None:
    """The size and modification time of the modules whose code makes the answer (the SQL
    that writes each task, the Python that joins them): an upgrade or an edit of either is
    another answer's format. ``None`` when either cannot be found."""
    here = os.path.dirname(os.path.abspath(__file__))
    parts = []
    for path in (os.path.join(here, "lean.py"),
                 os.path.join(os.path.dirname(here), "ledger", "lean.py")):
        try:
            info = os.stat(path)
        except OSError:
            return None
        parts.append(f"{info.st_size}:{info.st_mtime_ns}")
    return ",".join(parts)


def _header(generation: int, length: int) -> bytes | None:
    from .. import __version__

    stamp = _code_stamp()
    if stamp is None:
        return None
    return f"taskmill-kept {FORMAT} {__version__} {stamp} {generation} {length}\n".encode()


def read(run_dir: str, generation: int) -> bytes | None:
    """The answer kept at ``generation`` by this code, or ``None``."""
    try:
        with open(os.path.join(run_dir, KEPT_FILE), "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    end = data.find(b"\n", 0, 512)
    if end < 0:
        return None
    if data[:end + 1] != _header(generation, len(data) - end - 1):
        return None
    return data[end + 1:]


def keep(run_dir: str, generation: int, answer: bytes) -> None:
    """Keep ``answer`` as read at ``generation`` (quietly nothing where it cannot be kept:
    a read-only checkout, a full disk, no run directory)."""
    if len(answer) > MAX_BYTES:
        return
    header = _header(generation, len(answer))
    if header is None:
        return
    target = os.path.join(run_dir, KEPT_FILE)
    temporary = f"{target}.{os.getpid()}.tmp"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    except OSError:
        return
    try:
        try:
            view = memoryview(header + answer)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)  # (the rename may reach the disk first: never a torn answer)
        finally:
            os.close(fd)
        os.replace(temporary, target)
    except OSError:
        _unlink(temporary)
    _sweep(run_dir)


def _sweep(run_dir: str) -> None:
    """Remove the temporary files of writers that died before their rename."""
    prefix = KEPT_FILE + "."
    try:
        names = [n for n in os.listdir(run_dir) if n.startswith(prefix) and n.endswith(".tmp")]
    except OSError:
        return
    for name in names:
        pid = name[len(prefix):-len(".tmp")]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # (alive: its writer's)
        except ProcessLookupError:
            pass
        except OSError:
            continue
        _unlink(os.path.join(run_dir, name))


def _unlink(path: str) -> None:
    try:  # noqa: SIM105  (contextlib imports functools and collections)
        os.unlink(path)
    except OSError:
        pass
