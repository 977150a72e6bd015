"""File locks between processes: ``flock(2)`` on a lock file, in one place.

A lock is held on an open file description, so the kernel releases it when the process
that holds it dies: a crashed run's locks are free at once, with no stale lock to clean.
Locks are exclusive (one holder) or shared (many holders, no exclusive one); a shared
try-lock is how a lock is probed without ever getting in the way of another probe
(:func:`is_locked`).

Within one process, two :class:`FileLock` objects on the same file exclude each other too
(each opens the file), so threads that must not share a lock may each take their own; a
caller that hands one lock to several threads guards it with a thread lock of its own.

    with FileLock(path):                        # blocking
        ...
    with FileLock(path, timeout=5.0):           # blocking, LockTimeout after 5 s
        ...
    lock = try_lock(path)                       # None when someone holds it
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from .errors import Conflict

POLL_S = 0.01
"""How often a lock with a timeout is tried again (flock itself has no timeout); the wait
doubles up to :data:`POLL_MAX_S`."""
POLL_MAX_S = 0.1


class LockTimeout(Conflict):
    """The lock was still held by someone else when the timeout ran out."""

    code = "lock_timeout"


class FileLock:
    """An ``flock`` on ``path`` (created, with its directory, when missing)."""

    def __init__(self, path: Path, *, shared: bool = False, timeout: float | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.path = path
        self.shared = shared
        self.timeout = timeout
        """For ``with``: None waits for as long as it takes, a number raises
        :class:`LockTimeout` after that many seconds."""
        self._monotonic = monotonic
        self._sleep = sleep
        self._fd = -1

    @property
    def held(self) -> bool:
        return self._fd >= 0

    @property
    def fd(self) -> int:
        """The lock file's descriptor while held (to write who holds it)."""
        if self._fd < 0:
            raise RuntimeError(f"the lock {self.path} is not held")
        return self._fd

    def acquire(self, *, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take the lock. ``blocking=False``: once, at once; otherwise wait (for at most
        ``timeout`` seconds when given). Returns whether it was taken."""
        if self._fd >= 0:
            raise RuntimeError(f"the lock {self.path} is already held by this object")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        kind = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        try:
            if blocking and timeout is None:
                fcntl.flock(fd, kind)  # the kernel wakes us when it is free: no polling
            elif not _try(fd, kind) and (not blocking or not self._wait(fd, kind, timeout)):
                os.close(fd)
                return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def _wait(self, fd: int, kind: int, timeout: float | None) -> bool:
        deadline = self._monotonic() + (timeout or 0.0)
        pause = POLL_S
        while True:
            left = deadline - self._monotonic()
            if left <= 0:
                return False
            self._sleep(min(pause, left))
            if _try(fd, kind):
                return True
            pause = min(pause * 2, POLL_MAX_S)

    def release(self) -> None:
        """Let the lock go (nothing when it is not held)."""
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> FileLock:
        if not self.acquire(timeout=self.timeout):
            raise LockTimeout(f"{self.path} is still locked after {self.timeout:g} s",
                              hint="another taskmill process holds it; try again when it "
                                   "is done")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def _try(fd: int, kind: int) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def try_lock(path: Path, *, shared: bool = False) -> FileLock | None:
    """The lock on ``path`` when nobody holds it (taken, to release), else None."""
    lock = FileLock(path, shared=shared)
    return lock if lock.acquire(blocking=False) else None


def is_locked(path: Path) -> bool:
    """Whether someone holds an exclusive lock on ``path``. A probe with no side effect: a
    missing file is not created (and is not locked), and the probe's own shared lock, held
    for an instant, never makes another probe see the file as locked."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        return not _try(fd, fcntl.LOCK_SH)
    finally:
        os.close(fd)
