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


def _command(entry: str) -> str:
    try:
        with open(f"{entry}/cmdline", "rb") as fh:
            raw = fh.read()
    except OSError:
        raw = b""
    words = [w.decode(errors="replace") for w in raw.split(b"\0") if w]
    if words:
        return " ".join(words)[:300]
    try:
        with open(f"{entry}/comm", encoding="utf-8") as fh:
            return f"[{fh.read().strip()}]"
    except OSError:
        return "?"


def _holds(entry: str, root: str) -> str | None:
    """What ties the process to ``root``: its cwd, its root, or an open file (None)."""
    prefix = root + os.sep
    for name in ("cwd", "root"):
        try:
            link = os.readlink(f"{entry}/{name}")
        except OSError:
            continue
        if link == root or link.startswith(prefix):
            return name
    try:
        fds = os.listdir(f"{entry}/fd")
    except OSError:
        return None
    for fd in fds:  # the hot loop of the scan: no context managers in it
        try:
            link = os.readlink(f"{entry}/fd/{fd}")
        except OSError:
            continue
        if link == root or link.startswith(prefix):
            return f"fd {fd}"
    return None


def processes_in(directory: Path, *, env_var: str | None = "TASKMILL_WORKTREE",
                 proc: Path = PROC) -> list[HeldBy]:
    """The live processes (other than this one) with their cwd, root or an open file under
    ``directory``, or (``env_var``) whose environment sets that variable to it."""
    if not proc.is_dir():
        return []
    root = os.path.realpath(directory)
    markers = {f"{env_var}={directory}".encode(), f"{env_var}={root}".encode()} \
        if env_var else set()
    own = str(os.getpid())
    found: list[HeldBy] = []
    for name in os.listdir(proc):
        if not name.isdigit() or name == own:
            continue
        entry = f"{proc}/{name}"
        how = _holds(entry, root)
        if how is None and markers:
            with contextlib.suppress(OSError), open(f"{entry}/environ", "rb") as fh:
                if markers.intersection(fh.read().split(b"\0")):
                    how = "environment"
        if how is not None and _alive(entry):
            found.append(HeldBy(int(name), _command(entry), how))
    return found


def _alive(entry: str) -> bool:
    """Not a zombie (a zombie holds nothing and cannot be killed)."""
    try:
        with open(f"{entry}/stat", encoding="utf-8") as fh:
            stat = fh.read()
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
        if not any(_alive(f"{proc}/{pid}") for pid in pids):
            return
        time.sleep(0.01)
