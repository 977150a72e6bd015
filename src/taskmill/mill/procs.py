"""Live processes that hold a directory: found through ``/proc`` and stopped.

An agent can leave a process behind that outlives its turn (``setsid cmd &``: it leaves the
turn's process group). Before a worktree slot is reused, whatever still works in it is
found -- a process whose working directory, root or an open file is inside the slot, or
whose environment names the slot as its ``TASKMILL_WORKTREE`` -- and killed, so that it
cannot write into the next task's work. Linux only (``/proc``); elsewhere nothing is found.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class HeldBy:
    pid: int
    command: str
    """The process's command line (arguments joined by spaces), or its name."""
    how: str
    """What ties it to the directory: cwd, root, fd N, or environment."""


def _under(link: str, root: str) -> bool:
    return link == root or link.startswith(root + os.sep)


def _command(entry: Path) -> str:
    try:
        raw = (entry / "cmdline").read_bytes()
    except OSError:
        raw = b""
    words = [w.decode(errors="replace") for w in raw.split(b"\0") if w]
    if words:
        return " ".join(words)[:300]
    try:
        return f"[{(entry / 'comm').read_text(encoding='utf-8').strip()}]"
    except OSError:
        return "?"


def _holds(entry: Path, root: str) -> str | None:
    """What ties the process to ``root``: its cwd, its root, or an open file (None)."""
    for name in ("cwd", "root"):
        with contextlib.suppress(OSError):
            if _under(os.readlink(entry / name), root):
                return name
    with contextlib.suppress(OSError), os.scandir(entry / "fd") as fds:
        for fd in fds:
            with contextlib.suppress(OSError):
                if _under(os.readlink(fd.path), root):
                    return f"fd {fd.name}"
    return None


def processes_in(directory: Path, *, env_var: str | None = "TASKMILL_WORKTREE",
                 proc: Path = PROC) -> list[HeldBy]:
    """The live processes (other than this one) with their cwd, root or an open file under
    ``directory``, or (``env_var``) whose environment sets that variable to it."""
    if not proc.is_dir():
        return []
    root = os.path.realpath(directory)
    # the root of a process is "/" for nearly all of them: a slot is never "/" itself
    marker = f"{env_var}={directory}".encode() if env_var else None
    marker_real = f"{env_var}={root}".encode() if env_var else None
    own = os.getpid()
    found: list[HeldBy] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == own:
            continue
        how = _holds(entry, root)
        if how is None and marker is not None:
            with contextlib.suppress(OSError):
                environ = (entry / "environ").read_bytes().split(b"\0")
                if marker in environ or marker_real in environ:
                    how = "environment"
        if how is not None and _alive(entry):
            found.append(HeldBy(int(entry.name), _command(entry), how))
    return found


def _alive(entry: Path) -> bool:
    """Not a zombie (a zombie holds nothing and cannot be killed)."""
    try:
        stat = (entry / "stat").read_text(encoding="utf-8")
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[:1] not in (["Z"], ["X"])


def kill_processes_in(directory: Path, *, env_var: str | None = "TASKMILL_WORKTREE",
                      proc: Path = PROC, rounds: int = 5) -> list[HeldBy]:
    """Kill (SIGKILL) every process :func:`processes_in` finds, again until none is left
    (a process may fork while it is being killed). Returns what was killed."""
    killed: list[HeldBy] = []
    for _ in range(rounds):
        found = processes_in(directory, env_var=env_var, proc=proc)
        if not found:
            break
        for held in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(held.pid, signal.SIGKILL)
            killed.append(held)
        _wait_gone([h.pid for h in found], proc)
    return killed


def _wait_gone(pids: list[int], proc: Path, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_alive(proc / str(pid)) for pid in pids):
            return
        time.sleep(0.01)
