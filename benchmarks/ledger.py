"""The ledger on a big ledger (1,000,000 tasks, ~1.5M dependencies) and on a small one.

- ``ledger.ready(limit=100)`` in-process, median (target < 20 ms);
- ``taskmill ready --json --limit 100`` as a whole process in the big ledger's repository,
  median of 10 runs (target < 250 ms);
- ``create`` and ``close`` in-process, median, on the big and the small ledger
  (target < 2 ms each);
- ``close`` of a task with k direct dependents (k = 1, 10, 100), big and small: the time
  depends on k, not on the size of the ledger.

The ledgers are built once and cached under ``benchmarks/.data`` (see ``ledger_data``);
benchmarks that change a ledger work on a copy.

    python -m benchmarks.ledger [--tasks 1000000] [--small 1000] [--rebuild]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from taskmill.clock import SystemClock
from taskmill.ledger import Ledger

from .ledger_data import PREFIX, BuiltLedger, Shape, ensure
from .mill_common import Report, header, main_of
from .support import (
    ProcessTimes,
    home_env,
    load_average,
    ms_median,
    taskmill_argv,
    time_call,
    time_calls,
    time_process,
)

READY_TARGET_MS = 20.0
READY_CLI_TARGET_MS = 250.0
WRITE_TARGET_MS = 2.0
GROWTH_LIMIT = 2.0  # close with k dependents on the big ledger vs the small one


def _open(db: Path) -> Ledger:
    return Ledger.open(db, prefix=PREFIX, clock=SystemClock(), actor="bench")


def bench_ready(built: BuiltLedger, runs: int) -> float:
    with _open(built.db) as ledger:
        got = ledger.ready(limit=100)
        if len(got) != min(100, built.counts["ready"]):
            raise RuntimeError(f"ready returned {len(got)} tasks")
        return ms_median(time_calls(lambda: ledger.ready(limit=100), runs=runs))


def bench_ready_cli(built: BuiltLedger, runs: int) -> ProcessTimes:
    def check(out: str) -> None:
        items = json.loads(out)
        if not isinstance(items, list) or len(items) != min(100, built.counts["ready"]):
            raise RuntimeError("taskmill ready --json did not list the ready tasks")

    return time_process([*taskmill_argv(), "ready", "--json", "--limit", "100"],
                        cwd=built.repo, env=home_env(), runs=runs, check=check)


def bench_create_close(built: BuiltLedger, runs: int, seed: int) -> tuple[float, float]:
    """Median ms of ``create`` (runs new tasks) and of ``close`` (runs random open tasks)."""
    db = built.scratch_copy("writes")
    rng = random.Random(seed)
    with _open(db) as ledger:
        created = time_calls(lambda: ledger.create("benchmark task", description="made by a"
                                                   " benchmark", priority=2, labels=["bench"]),
                             runs=runs)
        candidates = [r[0] for r in ledger.store.conn.execute(
            "SELECT id FROM tasks WHERE status IN ('open', 'in_progress', 'blocked', 'deferred')"
            " AND title != 'benchmark task' AND NOT EXISTS (SELECT 1 FROM deps d WHERE"
            " d.depends_on_id = tasks.id AND d.type = 'parent-child') ORDER BY seq")]
        # leaves only: an epic closes by itself with its last child (so it may be closed by
        # the time its turn comes)
        victims = rng.sample(candidates, min(runs + 3, len(candidates)))
        for tid in victims[:3]:  # warm up
            ledger.close(tid, "benchmark")
        closed = [time_call(lambda t=tid: ledger.close(t, "benchmark"))  # type: ignore[misc]
                  for tid in victims[3:]]
        if not ledger.verify().ok:
            raise RuntimeError("the audit chain does not verify after the benchmark")
    return ms_median(created), ms_median(closed)


def bench_close_dependents(built: BuiltLedger, ks: tuple[int, ...], reps: int) -> dict[int, float]:
    """Median ms to close a task that ``k`` open tasks wait on (blocks)."""
    db = built.scratch_copy("dependents")
    out: dict[int, float] = {}
    with _open(db) as ledger:
        for k in ks:
            times = []
            for rep in range(reps + 2):
                root = ledger.create(f"hub k={k} #{rep}")
                waiting = [ledger.create(f"waits on hub {j}", after=[root.id]).id
                           for j in range(k)]
                if ledger.get(waiting[-1]).ready:
                    raise RuntimeError("a dependent is ready before its blocker closed")
                dt = time_call(lambda r=root.id: ledger.close(r))  # type: ignore[misc]
                if not ledger.get(waiting[-1]).ready:
                    raise RuntimeError("closing the blocker did not make its dependent ready")
                if rep >= 2:  # the first two warm up
                    times.append(dt)
            out[k] = ms_median(times)
    return out


def run(args: argparse.Namespace) -> Report:
    report = header("ledger", f"ready / create / close on a {args.tasks:,}-task ledger and a "
                              f"{args.small:,}-task one (in-process unless noted)")
    big = ensure("big" if args.tasks == 1_000_000 else f"n{args.tasks}", Shape(args.tasks),
                 rebuild=args.rebuild)
    small = ensure("small" if args.small == 1_000 else f"n{args.small}", Shape(args.small),
                   rebuild=args.rebuild)
    c = big.counts
    report.note(f"big ledger: {c['tasks']:,} tasks, {c['dependencies']:,} dependencies "
                f"({c['blocks']:,} blocks, {c['parent_child']:,} parent-child), "
                f"{c['labels']:,} labels; status {c['by_status']}; {c['ready']:,} ready")

    ready_ms = bench_ready(big, args.runs)
    report.add("ready(limit=100), big, in-process", ready_ms, "ms",
               f"< {READY_TARGET_MS:.0f} ms", ready_ms < READY_TARGET_MS)
    small_ready = bench_ready(small, args.runs)
    report.add("ready(limit=100), small, in-process", small_ready, "ms")
    cli_times = bench_ready_cli(big, args.process_runs)
    cli_ms = ms_median(cli_times.wall)
    report.add("`taskmill ready --json --limit 100`, big", cli_ms, "ms",
               f"< {READY_CLI_TARGET_MS:.0f} ms", cli_ms < READY_CLI_TARGET_MS)
    report.add("`taskmill ready --json --limit 100`, big, CPU (user+sys)",
               ms_median(cli_times.cpu), "ms")
    report.note(f"load average while measuring: {load_average()}")

    for label, built in (("big", big), ("small", small)):
        create_ms, close_ms = bench_create_close(built, args.writes, args.seed)
        report.add(f"create, {label}", create_ms, "ms", f"< {WRITE_TARGET_MS:.0f} ms",
                   create_ms < WRITE_TARGET_MS)
        report.add(f"close (random open task), {label}", close_ms, "ms",
                   f"< {WRITE_TARGET_MS:.0f} ms", close_ms < WRITE_TARGET_MS)

    ks = (1, 10, 100)
    on_big = bench_close_dependents(big, ks, args.reps)
    on_small = bench_close_dependents(small, ks, args.reps)
    for k in ks:
        ratio = on_big[k] / on_small[k] if on_small[k] else float("nan")
        if k <= 10:
            report.add(f"close with k={k} dependents, big", on_big[k], "ms",
                       f"< {WRITE_TARGET_MS:.0f} ms", on_big[k] < WRITE_TARGET_MS)
        else:
            report.add(f"close with k={k} dependents, big", on_big[k], "ms")
        report.add(f"close with k={k} dependents, small", on_small[k], "ms")
        report.add(f"close with k={k} dependents, big / small", ratio, "x",
                   f"<= {GROWTH_LIMIT:.0f}x", ratio <= GROWTH_LIMIT)
    return report


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=1_000_000, help="tasks in the big ledger")
    p.add_argument("--small", type=int, default=1_000, help="tasks in the small ledger")
    p.add_argument("--runs", type=int, default=50, help="in-process ready calls")
    p.add_argument("--process-runs", type=int, default=10, help="whole-process runs")
    p.add_argument("--writes", type=int, default=200, help="creates and closes timed")
    p.add_argument("--reps", type=int, default=25, help="closes timed per k")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--rebuild", action="store_true", help="rebuild the cached ledgers")
    return p


if __name__ == "__main__":
    main_of(run, parser())
