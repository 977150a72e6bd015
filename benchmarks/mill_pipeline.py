"""Throughput of the whole pipeline (target: 1,000 tasks in under 3 minutes, 8 workers).

1,000 tasks -- most independent, every tenth one ``after`` a random task among the 50 before
it -- are worked by one ``taskmill run -j 8``: claim, worktree from the pool, an agent turn,
commit of what it left, the task's check, the merge queue (merge, the project check on the
merged commit, advance the target and the user's checkout), close. Each agent writes one
small file (``out/<task id>.txt``), so every task lands a real change; checks are ``true``.

    python -m benchmarks.mill_pipeline [--tasks 1000] [--workers 8]
"""

from __future__ import annotations

import argparse
import random

from .mill_common import (
    Report,
    base_parser,
    bench_env,
    git,
    header,
    import_plan,
    main_of,
    make_project,
    note_machine,
    prewarm_pool,
    print_breakdown,
    report_landed,
    run_mill,
    stage_breakdown,
    workdir,
)

TARGET_S = 180.0
AGENT = ["sh", "-c", 'mkdir -p out && echo "$TASKMILL_TASK_ID" > "out/$TASKMILL_TASK_ID.txt"']


def run(args: argparse.Namespace) -> Report:
    report = header("mill_pipeline",
                    f"{args.tasks} tasks, -j {args.workers}, agent writes one file, checks `true`")
    rng = random.Random(args.seed)
    with workdir("pipeline", args.keep) as tmp:
        env = bench_env(tmp / "home")
        repo = make_project(tmp / "repo", env)
        keys = [f"t{i:04d}" for i in range(args.tasks)]
        tasks = []
        for i, key in enumerate(keys):
            task: dict[str, object] = {"key": key, "title": f"write file {key}"}
            if i >= 10 and i % 10 == 0:
                task["after"] = [keys[rng.randrange(max(0, i - 50), i)]]
            tasks.append(task)
        import_plan(repo, tasks, env)
        if not args.cold_pool:
            prewarm_pool(repo, env, args.workers)
        mill = run_mill(repo, env, agent=AGENT, workers=args.workers)
        landed = report_landed(report, mill, args.tasks)
        files = git(repo, "ls-tree", "--name-only", "HEAD", "out/", env=env).splitlines()
        if len(files) != landed:
            raise RuntimeError(f"{len(files)} files in out/ on main, but {landed} tasks landed")
        report.add(f"{args.tasks} tasks, wall time (process)", mill.wall_s, "s",
                   f"< {TARGET_S:.0f} s", mill.wall_s < TARGET_S)
        report.add("throughput (landed tasks)", landed / mill.wall_s, "tasks/s",
                   f"> {args.tasks / TARGET_S:.2f}")
        report.add("run_started -> run_finished", mill.run_span_s, "s")
        lands = sorted(e["t"] for e in mill.of("landed"))
        report.add("mean time between landings", (lands[-1] - lands[0]) / (len(lands) - 1) * 1000,
                   "ms")
        note_machine(report, mill, args.tasks)
        print_breakdown(report, stage_breakdown(mill))
    return report


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__ or "")
    p.add_argument("--tasks", type=int, default=1000)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--seed", type=int, default=1)
    return p


if __name__ == "__main__":
    main_of(run, parser())
