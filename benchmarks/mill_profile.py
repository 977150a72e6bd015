"""Where a task's time goes in the mill (a profiling aid, not a benchmark with a target).

Runs the mill in this process (``Mill.run``, as ``taskmill run`` does) on N tasks with a
trivial agent, and counts every git command it runs (calls per task, time), the time the
merge queue holds its lock per landing, the agent turns and checks, and optionally a
cProfile of the whole run (``--cprofile``: top functions by own time).

    python -m benchmarks.mill_profile [--tasks 200] [--workers 8] [--chain] [--cprofile]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .mill_common import (
    Report,
    base_parser,
    bench_env,
    header,
    import_plan,
    main_of,
    make_project,
    prewarm_pool,
    workdir,
)

AGENT = ["sh", "-c", 'mkdir -p out && echo "$TASKMILL_TASK_ID" > "out/$TASKMILL_TASK_ID.txt"']


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: dict[str, list[float]] = defaultdict(list)

    def add(self, name: str, seconds: float) -> None:
        with self.lock:
            self.calls[name].append(seconds)


@contextmanager
def instrumented(tally: Tally) -> Iterator[None]:
    from taskmill.agents import runner
    from taskmill.mill import checks, engine, git, land, worker

    originals: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, attr: str, name_of: Any) -> None:
        fn = getattr(owner, attr)
        originals.append((owner, attr, fn))

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                tally.add(name_of(args, kwargs), time.perf_counter() - start)

        setattr(owner, attr, timed)

    wrap(git.Git, "run", lambda a, k: f"git {a[1]}")
    wrap(land.MergeQueue, "land", lambda a, k: "merge queue: land (waiting + holding the lock)")
    wrap(land.MergeQueue, "_land", lambda a, k: "merge queue: holding the lock")
    wrap(worker, "run_turn", lambda a, k: "agent turn (run_turn)")
    wrap(worker, "run_checks", lambda a, k: "task checks (run_checks)")
    wrap(land, "run_checks", lambda a, k: "merge checks (run_checks)")
    wrap(engine.Mill, "_claim_next", lambda a, k: "scheduler: claim next")
    wrap(engine.Mill, "_chain_lengths", lambda a, k: "scheduler: chain lengths")
    wrap(worker.TaskWorker, "_close", lambda a, k: "ledger: close task")
    wrap(worker.TaskWorker, "_start_attempt", lambda a, k: "ledger: start attempt")
    wrap(worker.TaskWorker, "_finish_attempt", lambda a, k: "ledger: finish attempt")
    wrap(worker.WorktreePool, "acquire", lambda a, k: "pool: acquire")
    wrap(worker.WorktreePool, "release", lambda a, k: "pool: release")
    wrap(git.Git, "commit_all", lambda a, k: "worker: commit_all")
    del checks, runner
    try:
        yield
    finally:
        for owner, attr, fn in reversed(originals):
            setattr(owner, attr, fn)


def run(args: argparse.Namespace) -> Report:
    report = header("mill_profile", f"{args.tasks} tasks, -j {args.workers}, in-process mill"
                    + (", a chain" if args.chain else ""))
    from taskmill.clock import SystemClock
    from taskmill.mill.engine import Mill
    from taskmill.mill.events import EventBus
    from taskmill.mill.settings import RunSettings, agent_cmd_config
    from taskmill.project import open_project

    with workdir("profile", args.keep) as tmp:
        env = bench_env(tmp / "home")
        repo = make_project(tmp / "repo", env)
        keys = [f"t{i:04d}" for i in range(args.tasks)]
        tasks = [{"key": k, "title": f"write {k}",
                  **({"after": [keys[i - 1]]} if args.chain and i else {})}
                 for i, k in enumerate(keys)]
        import_plan(repo, tasks, env)
        if not args.cold_pool:
            prewarm_pool(repo, env, args.workers)
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(env)
        try:
            project = open_project(repo, env)
            settings = RunSettings.from_config(project.config.run, {"workers": args.workers})
            bus = EventBus(SystemClock())
            mill = Mill(project.paths, project.config, settings, env=env, clock=SystemClock(),
                        bus=bus, agent_override=agent_cmd_config(" ".join(
                            __import__("shlex").quote(a) for a in AGENT)))
            tally = Tally()
            profiler = cProfile.Profile() if args.cprofile else None
            with instrumented(tally):
                start = time.perf_counter()
                if profiler:
                    profiler.enable()
                summary = mill.run()
                if profiler:
                    profiler.disable()
                wall = time.perf_counter() - start
            project.close()
        finally:
            os.environ.clear()
            os.environ.update(saved)
    landed = sum(1 for o in summary.outcomes if o.outcome == "landed")
    report.add("tasks landed", landed, "tasks", f"= {args.tasks}", landed == args.tasks)
    report.add("wall time", wall, "s")
    report.add("per task (wall / tasks)", wall / args.tasks * 1000, "ms")
    print(f"\n  {'what':<48} {'calls/task':>10} {'mean ms':>9} {'total s':>9}")
    rows = sorted(tally.calls.items(), key=lambda kv: -sum(kv[1]))
    git_calls = 0
    for name, values in rows:
        if name.startswith("git "):
            git_calls += len(values)
        print(f"  {name:<48} {len(values) / args.tasks:>10.2f} "
              f"{sum(values) / len(values) * 1000:>9.1f} {sum(values):>9.2f}")
    report.add("git commands per task", git_calls / args.tasks, "calls")
    if profiler:
        print()
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(25)
    return report


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__ or "")
    p.add_argument("--tasks", type=int, default=200)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--chain", action="store_true", help="each task after the previous one")
    p.add_argument("--cprofile", action="store_true", help="also print a cProfile")
    return p


if __name__ == "__main__":
    main_of(run, parser())
