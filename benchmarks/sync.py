"""``taskmill sync`` at 10K and 100K tasks (``--sizes``): a whole process each, its wall time,
CPU time (with git's) and peak resident memory, on a copy of the benchmark ledger
(:mod:`.ledger_data`) with a bare remote beside it:

- the first sync (every task a file, the commit written and pushed);
- a sync with nothing changed;
- a sync after 10 tasks changed;
- a fresh clone's first sync (the synced ledger loaded into an empty database).

    python -m benchmarks.sync [--sizes 10000,100000]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from taskmill.clock import SystemClock
from taskmill.ledger import Ledger

from .cli_startup import measure_peak
from .ledger_data import PREFIX, Shape, ensure
from .mill_common import Report, git, header, main_of
from .support import DATA, home_env, taskmill_argv

CHANGED = 10


def _label(size: int) -> str:
    return f"{size // 1_000_000}M" if size >= 1_000_000 else f"{size // 1000}K"


def _change(repo: Path, count: int) -> None:
    ledger = Ledger.open(repo / ".taskmill" / "taskmill.db", prefix=PREFIX,
                         clock=SystemClock(), actor="bench")
    with ledger:
        for task in ledger.ready(limit=count):
            ledger.update(task.id, {"notes": "changed for the sync benchmark"})


def run(args: argparse.Namespace) -> Report:
    report = header("sync", "`taskmill sync` as a whole process, with a bare remote")
    env = home_env()
    script = taskmill_argv()
    for size in [int(s) for s in args.sizes.split(",") if s.strip()]:
        label = _label(size)
        built = ensure(f"n{size}" if size < 1_000_000 else "big", Shape(size))
        scratch = DATA / "scratch" / f"sync-{size}"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        repo, remote, clone = scratch / "repo", scratch / "remote.git", scratch / "clone"
        shutil.copytree(built.repo, repo, symlinks=True,
                        ignore=shutil.ignore_patterns("taskmill.db-wal", "taskmill.db-shm"))
        git(repo, "add", "-f", ".taskmill/config.toml", env=env)
        git(repo, "commit", "-q", "--allow-empty", "-m", "the ledger's config", env=env)
        git(scratch, "init", "-q", "--bare", str(remote), env=env)
        git(repo, "remote", "add", "origin", str(remote), env=env)
        git(repo, "push", "-q", "origin", "HEAD:refs/heads/main", env=env)
        git(remote, "symbolic-ref", "HEAD", "refs/heads/main", env=env)

        def sync(what: str, where: Path, label: str = label) -> None:
            took, peak, cpu = measure_peak([*script, "sync"], where, env)
            report.add(f"{label}: {what}", took, "s")
            report.add(f"{label}: {what}, CPU (user+sys, git's too)", cpu, "s")
            report.add(f"{label}: {what}, peak memory", peak, "MiB")

        sync("first sync (export, commit, push)", repo)
        sync("sync, nothing changed", repo)
        _change(repo, CHANGED)
        sync(f"sync, {CHANGED} tasks changed", repo)
        git(scratch, "clone", "-q", str(remote), str(clone), env=env)
        sync("a fresh clone's first sync (load)", clone)
        shutil.rmtree(scratch, ignore_errors=True)
    return report


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000", help="comma-separated backlog sizes")
    return ap


if __name__ == "__main__":
    main_of(run, parser())
