"""Dispatch latency: from a task landing to its dependent's agent starting (target < 100 ms).

A chain of tasks (each ``after`` the previous one) is worked by ``taskmill run`` with the
agent that writes one file (a turn that changes nothing lands nothing) and the trivial check ``true`` (as the task's check and as the project
check of the merge queue). For each link k -> k+1 the latency is the time between the
``landed`` event of task k and the ``turn_started`` event of task k+1 in ``--json-events``.
The same timestamps break that latency down into its stages.

    python -m benchmarks.mill_dispatch_latency [--tasks 20] [--runs 2]
"""

from __future__ import annotations

import argparse
import itertools

from .mill_common import (
    DATA,
    Report,
    base_parser,
    bench_env,
    check_all_landed,
    header,
    import_plan,
    main_of,
    make_project,
    median,
    percentile,
    prewarm_pool,
    run_mill,
    workdir,
)
from .mill_pipeline import AGENT

TARGET_MS = 100.0


def run(args: argparse.Namespace) -> Report:
    report = header("mill_dispatch_latency",
                    f"landed(k) -> turn_started(k+1), chain of {args.tasks} tasks, agent writing one file, "
                    f"{args.runs} run(s)"
                    + (f", repository of {args.files} files" if args.files else ""))
    latencies: list[float] = []
    loads: list[float] = []
    parts: dict[str, list[float]] = {"landed -> dispatched (wake-up, claim)": [],
                                     "dispatched -> workspace (tip, acquire)": [],
                                     "workspace -> turn_started (ledger, prompt)": [],
                                     "landed -> task_finished (blocker's clean-up)": []}
    with workdir("dispatch", args.keep) as tmp:
        env = bench_env(tmp / "home")
        for r in range(args.runs):
            template = None
            if args.files:
                from .mill_workspace import generate

                template = DATA / f"repo{args.files}"
                generate(template, args.files, bench_env(DATA / "home"))
            repo = make_project(tmp / f"repo{r}", env, template=template)
            keys = [f"t{i:03d}" for i in range(args.tasks)]
            tasks = [{"key": k, "title": f"chain link {k}", **({"after": [keys[i - 1]]} if i else {})}
                     for i, k in enumerate(keys)]
            ids = import_plan(repo, tasks, env)
            if not args.cold_pool:
                prewarm_pool(repo, env, 2)
            mill = run_mill(repo, env, agent=AGENT, workers=args.workers)
            loads.extend(mill.load)
            check_all_landed(mill, len(keys))
            landed = mill.by_task("landed")
            started = mill.by_task("turn_started")
            finished = mill.by_task("task_finished")
            dispatched = mill.by_task("dispatched")
            workspace = mill.by_task("workspace")
            for a, b in itertools.pairwise(keys):
                ta, tb = ids[a], ids[b]
                latencies.append(started[tb]["t"] - landed[ta]["t"])
                parts["landed -> dispatched (wake-up, claim)"].append(
                    dispatched[tb]["t"] - landed[ta]["t"])
                parts["dispatched -> workspace (tip, acquire)"].append(
                    workspace[tb]["t"] - dispatched[tb]["t"])
                parts["workspace -> turn_started (ledger, prompt)"].append(
                    started[tb]["t"] - workspace[tb]["t"])
                parts["landed -> task_finished (blocker's clean-up)"].append(
                    finished[ta]["t"] - landed[ta]["t"])
    ms = [x * 1000 for x in latencies]
    report.add("dispatch latency, median", median(ms), "ms", f"< {TARGET_MS:.0f} ms",
               median(ms) < TARGET_MS)
    report.add("dispatch latency, p95", percentile(ms, 95), "ms", f"< {TARGET_MS:.0f} ms",
               percentile(ms, 95) < TARGET_MS)
    report.add("dispatch latency, max", max(ms), "ms")
    report.note(f"{len(ms)} links measured; load average {min(loads):.1f}-{max(loads):.1f} "
                "around the runs")
    report.note("the stages of that latency (the blocker's clean-up runs meanwhile, "
                "since dependents are dispatched as soon as it lands):")
    for name, values in parts.items():
        report.note(f"{name:<46} median {median(values) * 1000:6.1f} ms, "
                    f"p95 {percentile(values, 95) * 1000:6.1f} ms")
    return report


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__ or "")
    p.add_argument("--tasks", type=int, default=20, help="length of the chain (default 20)")
    p.add_argument("--runs", type=int, default=2, help="chains run one after the other")
    p.add_argument("--workers", type=int, default=4, help="taskmill run -j (default 4)")
    p.add_argument("--files", type=int, default=0,
                   help="work in a clone of the generated N-file repository of mill_workspace "
                        "(default: a repository of one file)")
    return p


if __name__ == "__main__":
    main_of(run, parser())
