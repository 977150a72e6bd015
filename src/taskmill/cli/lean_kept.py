"""Kept answers: the JSON of ``ready --json``, ``list ... --json`` and ``blocked --json`` as
last written, kept in the run directory under the ledger generation it was read at, and
written out again while the ledger is still at that generation.

A big backlog's listings are mostly the ledger's own work: at 100,000 tasks the 2,666 ready
tasks (2.2 MB of JSON) cost SQLite ~35 ms to find and write, more than Python's start-up,
and at 1,000,000 tasks ``list --status open --json`` writes 55 MB in ~2 s. Between two
writes the answer cannot change: it is kept only where it depends on nothing but the
ledger's rows and what its key names (no ``defer_until`` read against the clock, the
settings, the interrupted and held tasks of the moment), and every change to the tables the
answers read draws a new random generation
(:func:`taskmill.ledger.sqlite.schema.generation_triggers`: whoever writes, triggers in the
database itself). The generation is read first, the answer after it: an answer is at least
as new as its generation, and a generation once left never comes back.

Each answer is a file ``NAME.kept``: one header line (this format, taskmill's version, a
stamp of the code that makes answers, the generation, the answer's length in bytes, the
key: what else the answer depends on), then the answer. It is written to a private
temporary file as it is printed, flushed to disk, and renamed over the kept one, so a
reader sees a whole answer or none; anything unexpected (another version's file, another
generation or key, a short file) is a miss, and the answer is made afresh. At most
:data:`MAX_FILES` are kept (the oldest go). ``TASKMILL_KEPT=0`` keeps and reads nothing.

This module imports nothing but :mod:`os` and :mod:`errno` (and the package's version).
"""

from __future__ import annotations

import errno
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from typing import BinaryIO

KEPT_ENV = "TASKMILL_KEPT"
"""``0``: every answer is made afresh and nothing is kept."""
SUFFIX = ".kept"
READY = "ready"
"""The name of ``ready --json``'s answer."""
FORMAT = 2
MAX_BYTES = 1 << 30
"""A bigger answer is not kept (made again each time)."""
MAX_FILES = 8
"""Answers kept at most (for as many kinds of listing); the least recently written go."""
HEADER_MAX = 1 << 16
FILE_MODE = 0o600
"""As the ledger file's: it holds the tasks' text."""
CODE_DIRS = ("cli", "ledger", os.path.join("ledger", "sqlite"))
"""The package folders whose modules make the answers (with the package's own)."""


def enabled(env: Mapping[str, str]) -> bool:
    return env.get(KEPT_ENV) != "0"


def _code_stamp() -> str | None:
    """The number of modules and the newest modification time among those that make the
    answers (the SQL that writes each task, the Python that joins them): an upgrade or an
    edit is another answer's format. ``None`` when they cannot be looked at."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    newest = count = 0
    try:
        for folder in ("", *CODE_DIRS):
            with os.scandir(os.path.join(package, folder)) as entries:
                for entry in entries:
                    if entry.name.endswith(".py"):
                        count += 1
                        newest = max(newest, entry.stat().st_mtime_ns)
    except OSError:
        return None
    return f"{count}:{newest}"


def _header(generation: int, length: int, key: str) -> bytes | None:
    from .. import __version__

    stamp = _code_stamp()
    if stamp is None or "\n" in key or not key or key != key.strip():
        return None
    return (f"taskmill-kept {FORMAT} {__version__} {stamp} {generation} {length} {key}\n"
            .encode())


def _path(run_dir: str, name: str) -> str:
    return os.path.join(run_dir, name + SUFFIX)


def _opened(run_dir: str, name: str, generation: int, key: str) -> tuple[BinaryIO, int] | None:
    """The kept answer's file, read up to its answer, and the answer's length; ``None``
    unless it was kept at ``generation`` under ``key`` by this code."""
    try:
        handle = open(_path(run_dir, name), "rb")  # noqa: SIM115  (returned open)
    except OSError:
        return None
    try:
        first = handle.readline(HEADER_MAX)
        line = first[:-1].rstrip(b" ") + b"\n"  # (the header is padded to its room)
        fields = line.split(b" ", 6)
        if first.endswith(b"\n") and len(fields) == 7 and fields[5].isdigit():
            length = int(fields[5])
            if line == _header(generation, length, key) and \
                    os.fstat(handle.fileno()).st_size == len(first) + length:
                return handle, length
    except (OSError, ValueError):
        pass
    handle.close()
    return None


def kept_answer(run_dir: str, name: str, generation: int, key: str = "-") -> Kept | None:
    """The answer kept as ``name`` at ``generation`` under ``key`` by this code
    (:class:`Kept`), or ``None``."""
    found = _opened(run_dir, name, generation, key)
    return None if found is None else Kept(name, *found)


class Kept:
    """A kept answer in its file: its groups of pieces (a block each, read as they are
    asked for: each written and dropped before the next is read; at 100K tasks reading the
    2.2 MB whole into new memory cost ~1 ms more), or :meth:`send_to` a file by the system
    without passing through this process (1M: 21 MB, `ready --json` 28 -> 24 ms)."""

    def __init__(self, name: str, handle: BinaryIO, length: int) -> None:
        self.name, self.handle, self.length = name, handle, length

    def __iter__(self) -> Iterator[list[bytes]]:
        return ([block] for block in _blocks(self.name, self.handle, self.length, BLOCK))

    def send_to(self, fd: int) -> None:
        """Write the answer to the file ``fd`` (``sendfile``; read and written in blocks
        where the system cannot send to it: a file opened to append, a system that sends
        only to sockets)."""
        with self.handle:
            at = self.handle.tell()
            end = at + self.length
            sender = getattr(os, "sendfile", None)
            while at < end and sender is not None:
                try:
                    sent = sender(fd, self.handle.fileno(), at, end - at)
                except OSError as exc:
                    if exc.errno not in CANNOT_SEND:
                        raise
                    break
                if not sent:
                    raise OSError(f"the kept answer {self.name!r} ended early")
                at += sent
            if at < end:
                self.handle.seek(at)
                for block in _blocks(self.name, self.handle, end - at, BLOCK):
                    view = memoryview(block)
                    while view:
                        view = view[os.write(fd, view):]


CANNOT_SEND = frozenset(filter(None, (getattr(errno, name, None) for name in (
    "EINVAL", "ENOSYS", "ENOTSOCK", "EOPNOTSUPP", "ENOTSUP", "EBADF"))))
"""``sendfile``'s errors where it cannot send to that file (written in blocks instead)."""


def _blocks(name: str, handle: BinaryIO, length: int, size: int) -> Iterator[bytes]:
    with handle:
        left = length
        while left:
            block = handle.read(min(left, size))
            if not block:  # (cut short meanwhile: a new answer replaces a file, never cuts it)
                raise OSError(f"the kept answer {name!r} ended early")
            left -= len(block)
            yield block


BLOCK = 1 << 16
"""What a :class:`Kept` reads at a time (a pipe's room)."""


def copy(run_dir: str, name: str, generation: int, key: str, out: BinaryIO) -> bool:
    """Write the answer kept as ``name`` (as :func:`kept_answer` finds it) into ``out``; False,
    having written nothing, when there is none."""
    found = _opened(run_dir, name, generation, key)
    if found is None:
        return False
    for block in _blocks(name, *found, 1 << 20):
        view = memoryview(block)
        while view:
            view = view[out.write(view) or 0:]
    return True


class Keeper:
    """Keeps an answer as it is written (:meth:`write` each part, then :meth:`done`); an
    answer not done (an error, a closed pipe) is dropped (:meth:`drop`)."""

    def __init__(self, run_dir: str, name: str, generation: int, key: str) -> None:
        self.run_dir, self.name, self.generation, self.key = run_dir, name, generation, key
        self.temporary = f"{_path(run_dir, name)}.{os.getpid()}.tmp"
        self.fd: int | None = None
        self.length = 0
        try:
            self.fd = os.open(self.temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            # the header's place: written last, when the length is known
            self._write(b" " * self._header_room())
        except OSError:
            self.drop()

    def _header_room(self) -> int:
        header = _header(self.generation, 0, self.key)
        if header is None:
            raise OSError("no stamp")
        return len(header) + len(str(MAX_BYTES))

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        assert self.fd is not None
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def write(self, data: bytes | bytearray) -> None:
        if self.fd is None:
            return
        self.length += len(data)
        try:
            if self.length > MAX_BYTES:
                raise OSError("too big to keep")
            self._write(data)
        except OSError:
            self.drop()

    def write_pieces(self, pieces: list[bytes]) -> None:
        """:meth:`write` of each of ``pieces``, a system call for many
        (:func:`taskmill.cli.lean.write_pieces`)."""
        if self.fd is None:
            return
        self.length += sum(map(len, pieces))
        try:
            if self.length > MAX_BYTES:
                raise OSError("too big to keep")
            if hasattr(os, "writev"):
                from .lean import write_pieces

                write_pieces(self.fd, pieces)
            else:
                self._write(b"".join(pieces))
        except OSError:
            self.drop()

    def done(self) -> None:
        """The answer is whole: keep it (quietly nothing where it cannot be kept: a
        read-only checkout, a full disk)."""
        if self.fd is None:
            return
        header = _header(self.generation, self.length, self.key)
        try:
            if header is None:
                raise OSError("no stamp")
            room = self._header_room()
            # the header in the room left for it at the start, padded with spaces
            os.lseek(self.fd, 0, os.SEEK_SET)
            self._write(header[:-1] + b" " * (room - len(header)) + b"\n")
            os.fsync(self.fd)  # (the rename may reach the disk first: never a torn answer)
            os.close(self.fd)
            self.fd = None
            os.replace(self.temporary, _path(self.run_dir, self.name))
        except OSError:
            self.drop()
            return
        _tidy(self.run_dir)

    def drop(self) -> None:
        if self.fd is not None:
            try:  # noqa: SIM105  (contextlib imports functools and collections)
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None
        _unlink(self.temporary)


def keep(run_dir: str, name: str, generation: int, answer: bytes | list[bytes],
         key: str = "-") -> None:
    """Keep ``answer`` (whole, or its pieces in order) as ``name``, read at ``generation``,
    under ``key``."""
    keeper = Keeper(run_dir, name, generation, key)
    if isinstance(answer, list):
        keeper.write_pieces(answer)
    else:
        keeper.write(answer)
    keeper.done()


def _tidy(run_dir: str) -> None:
    """Remove the temporary files of writers that died before their rename, and the least
    recently written answers past :data:`MAX_FILES`."""
    try:
        names = os.listdir(run_dir)
    except OSError:
        return
    kept: list[tuple[int, str]] = []
    for name in names:
        if name.endswith(".tmp") and SUFFIX + "." in name:  # NAME.kept.PID.tmp
            pid = name.rsplit(".", 2)[-2]
            if pid.isdigit() and not _alive(int(pid)):
                _unlink(os.path.join(run_dir, name))
        elif name.endswith(SUFFIX):
            try:  # noqa: SIM105  (contextlib imports functools and collections)
                kept.append((os.stat(os.path.join(run_dir, name)).st_mtime_ns, name))
            except OSError:
                pass
    for _when, name in sorted(kept, reverse=True)[MAX_FILES:]:
        _unlink(os.path.join(run_dir, name))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _unlink(path: str) -> None:
    try:  # noqa: SIM105  (contextlib imports functools and collections)
        os.unlink(path)
    except OSError:
        pass
