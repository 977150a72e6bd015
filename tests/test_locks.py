"""The one file-lock helper (taskmill.locks): flock, exclusive or shared, try or wait."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from taskmill.errors import Conflict
from taskmill.locks import FileLock, LockTimeout, is_locked, try_lock

SRC = Path(__file__).resolve().parents[1] / "src" / "taskmill"


class FakeTime:
    """monotonic + sleep: sleeping only moves the clock (and runs a hook)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []
        self.on_sleep: list[object] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        for hook in self.on_sleep:
            assert callable(hook)
            hook()


def test_exclusive_lock_excludes_and_is_released(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "x.lock"
    with FileLock(path) as held:
        assert held.held and path.exists()  # created, with its directory
        assert try_lock(path) is None  # another open file: excluded, even in-process
        assert is_locked(path)
    assert not is_locked(path)
    again = try_lock(path)
    assert again is not None
    again.release()
    again.release()  # harmless


def test_shared_locks_coexist_and_block_exclusive(tmp_path: Path) -> None:
    path = tmp_path / "s.lock"
    a, b = try_lock(path, shared=True), try_lock(path, shared=True)
    assert a is not None and b is not None
    assert try_lock(path) is None
    assert not is_locked(path)  # a probe looks for an exclusive holder only
    a.release()
    b.release()
    assert try_lock(path) is not None


def test_is_locked_never_creates_the_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.lock"
    assert not is_locked(path)
    assert not path.exists()


def test_timeout_gives_up_without_real_waiting(tmp_path: Path) -> None:
    path = tmp_path / "t.lock"
    clock = FakeTime()
    with FileLock(path):
        waiter = FileLock(path, timeout=2.0, monotonic=clock.monotonic, sleep=clock.sleep)
        with pytest.raises(LockTimeout, match="still locked after 2 s") as info:
            waiter.__enter__()
        assert isinstance(info.value, Conflict) and info.value.code == "lock_timeout"
        assert not waiter.held
        assert clock.now == pytest.approx(2.0)
        assert max(clock.slept) <= 0.1 and clock.slept[0] < clock.slept[1]  # backs off
        assert not waiter.acquire(blocking=False)
        assert not waiter.acquire(timeout=0)


def test_timeout_takes_the_lock_once_it_is_free(tmp_path: Path) -> None:
    path = tmp_path / "t.lock"
    clock = FakeTime()
    holder = FileLock(path)
    holder.acquire()
    clock.on_sleep.append(lambda: clock.now >= 0.5 and holder.release())
    waiter = FileLock(path, monotonic=clock.monotonic, sleep=clock.sleep)
    assert waiter.acquire(timeout=5.0)
    assert 0.5 <= clock.now < 1.0
    waiter.release()


def test_blocking_wait_wakes_when_released(tmp_path: Path) -> None:
    path = tmp_path / "b.lock"
    holder = FileLock(path)
    holder.acquire()
    got = threading.Event()

    def wait() -> None:
        with FileLock(path):
            got.set()

    thread = threading.Thread(target=wait)
    thread.start()
    assert not got.wait(0.05)
    holder.release()
    thread.join(5)
    assert got.is_set()


def test_a_dead_holders_lock_is_free(tmp_path: Path) -> None:
    path = tmp_path / "d.lock"
    code = ("import sys, time; from pathlib import Path; from taskmill.locks import FileLock; "
            f"lock = FileLock(Path({str(path)!r})); lock.acquire(); print('held', flush=True); "
            "time.sleep(60)")
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                          text=True) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
            assert is_locked(path)
        finally:
            proc.kill()
    assert not is_locked(path)


def test_acquiring_twice_is_a_mistake(tmp_path: Path) -> None:
    lock = FileLock(tmp_path / "twice.lock")
    lock.acquire()
    with pytest.raises(RuntimeError, match="already held"):
        lock.acquire()
    lock.release()
    with pytest.raises(RuntimeError, match="not held"):
        _ = lock.fd


def test_flock_is_written_once() -> None:
    """Every file lock in taskmill goes through taskmill.locks."""
    users = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                   if re.search(r"\bfcntl\.flock\b|^import fcntl|^from fcntl",
                                p.read_text(encoding="utf-8"), re.M))
    assert users == ["locks.py"]
