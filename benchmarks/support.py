"""Timing helpers shared by the ledger, CLI and import benchmarks."""

from __future__ import annotations

import gc
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .mill_common import DATA, bench_env, median

__all__ = ["DATA", "ProcessTimes", "bench_env", "home_env", "load_average", "median",
           "ms_median", "taskmill_argv", "time_call", "time_calls", "time_process"]


def home_env() -> dict[str, str]:
    """The environment for git and taskmill processes: an isolated HOME under .data."""
    return bench_env(DATA / "home")


def taskmill_argv() -> list[str]:
    """The installed ``taskmill`` console script next to this Python, as a user runs it."""
    script = Path(sys.executable).with_name("taskmill")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "taskmill"]


def time_call(fn: Callable[[], Any]) -> float:
    """Seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def time_calls(fn: Callable[[], Any], *, runs: int, warmup: int = 3) -> list[float]:
    """Seconds each of ``runs`` calls of ``fn`` takes (after ``warmup`` untimed calls)."""
    for _ in range(warmup):
        fn()
    gc.collect()
    return [time_call(fn) for _ in range(runs)]


@dataclass
class ProcessTimes:
    wall: list[float]
    """Seconds from starting each process to its exit."""
    cpu: list[float]
    """User + system CPU seconds each process used (steadier than wall time on a busy
    machine)."""


def time_process(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], runs: int,
                 warmup: int = 2, check: Callable[[str], None] | None = None) -> ProcessTimes:
    """Wall and CPU seconds of each of ``runs`` runs of a whole process."""

    def once() -> str:
        proc = subprocess.run(list(argv), cwd=cwd, env=dict(env), capture_output=True,
                              text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr}")
        return proc.stdout

    for _ in range(warmup):
        out = once()
        if check is not None:
            check(out)
    times = ProcessTimes([], [])
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        once()
        times.wall.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        times.cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return times


def load_average() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.1f} (1 min), {five:.1f} (5 min)"


def ms_median(seconds: Sequence[float]) -> float:
    return median([s * 1000 for s in seconds])
