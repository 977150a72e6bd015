"""Start-up cost of the sandbox of a turn: ``true`` run bare, contained (a PID namespace,
``[run] contain``) and sandboxed (bubblewrap, :mod:`taskmill.sandbox`), then both again with
``[sandbox] memory_mb`` / ``max_processes`` held by a cgroup of the command's own
(:mod:`taskmill.cgroups`: made, joined, read and removed each time), median of 30 runs
each (target: the sandbox, limits included, adds < 50 ms per turn).

    python -m benchmarks.sandbox_startup [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from taskmill.cgroups import ROOT as CGROUP_ROOT
from taskmill.cgroups import SYSTEMD, Limiter, Limits, detect
from taskmill.containment import containment
from taskmill.sandbox import Layout, Mounts, SandboxSettings, choose

from .mill_common import Report, header, main_of, workdir
from .support import home_env, load_average, median

OVERHEAD_TARGET_MS = 50.0


def _times(argv: Sequence[str] | Callable[[str], list[str]], cwd: Path, env: dict[str, str],
           runs: int, limiter: Limiter | None = None) -> list[float]:
    """``argv``, or ``argv(prelude)`` in a cgroup of its own per run from ``limiter``."""
    def once() -> float:
        start = time.perf_counter()
        group = limiter.open() if limiter is not None else None
        command = argv(group.prelude if group else "") if callable(argv) else list(argv)
        try:
            subprocess.run(group.wrap(command) if group else command, cwd=cwd, env=env,
                           check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        finally:
            if group is not None:
                group.close()
        return (time.perf_counter() - start) * 1000

    for _ in range(3):
        once()
    return [once() for _ in range(runs)]


def run(args: argparse.Namespace) -> Report:
    report = header("sandbox_startup", "cost of starting `true` bare, contained, sandboxed")
    env = home_env()
    true = shutil.which("true") or "/bin/true"
    with workdir("sandbox") as work:
        root = work / "repo"
        root.mkdir()
        for cmd in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "x"],
                    ["worktree", "add", "-q", ".git/taskmill/worktrees/w0", "-b", "t"]):
            subprocess.run(["git", *cmd], cwd=root, env=env, check=True, capture_output=True)
        slot = root / ".git" / "taskmill" / "worktrees" / "w0"
        layout = Layout(repo_root=root, ledger_dir=root / ".taskmill",
                        pool_root=slot.parent, git_common_dir=root / ".git",
                        home=Path(env["HOME"]), check_home=work / "check-home")
        bare = median(_times([true], slot, env, args.runs))
        report.add("`true`, bare", bare, "ms")
        contain = containment("auto", env)
        contained = median(_times(contain.command([true]), slot, env, args.runs))
        report.add(f"`true`, contained ({contain.mode})", contained, "ms")
        sandbox, why = choose(SandboxSettings(), layout, os.environ)
        if sandbox is None:
            report.note(f"no sandbox here: {why}")
            return report
        argv = sandbox.command([true], Mounts.for_worktree(slot), cwd=slot, env=env)
        sandboxed = median(_times(argv, slot, env, args.runs))
        report.add("`true`, sandboxed (bubblewrap + init)", sandboxed, "ms")
        overhead = sandboxed - bare
        report.add("sandbox start-up cost per turn", overhead, "ms",
                   f"< {OVERHEAD_TARGET_MS:.0f} ms", overhead < OVERHEAD_TARGET_MS)
        limits = Limits(memory_mb=4096, max_processes=512)
        limiter = detect(limits, root=CGROUP_ROOT,
                         proc_cgroup=Path("/proc/self/cgroup").read_text(encoding="utf-8"),
                         env=env)
        if not limiter.cgroup or limiter.via == SYSTEMD:
            report.note(f"no cgroup here for the limits: {limiter.note}")
            return report
        limited_sandbox = replace(sandbox, limits_via=limiter.describe(),
                                  settings=replace(sandbox.settings, memory_mb=4096,
                                                   max_processes=512))
        contained_limited = median(_times(
            lambda prelude: contain.command([true], prelude), slot, env, args.runs, limiter))
        report.add(f"`true`, contained with limits ({limiter.via})", contained_limited, "ms")
        limited = median(_times(
            lambda prelude: limited_sandbox.command([true], Mounts.for_worktree(slot), cwd=slot,
                                                    env=env, prelude=prelude),
            slot, env, args.runs, limiter))
        report.add(f"`true`, sandboxed with limits ({limiter.via})", limited, "ms")
        report.add("the limits' cgroup, cost per turn", limited - sandboxed, "ms")
        overhead = limited - bare
        report.add("sandbox start-up cost per turn, limits included", overhead, "ms",
                   f"< {OVERHEAD_TARGET_MS:.0f} ms", overhead < OVERHEAD_TARGET_MS)
    report.note(f"load average while measuring: {load_average()}")
    return report


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=30, help="timed runs of each (after 3 warm-ups)")
    return p


if __name__ == "__main__":
    main_of(run, parser())
