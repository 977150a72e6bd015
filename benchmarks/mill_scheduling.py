"""Scheduling quality: DAGs of 200 tasks of known, uneven durations on 4 workers.

Target: the run takes at most 10% more than the lower bound
``max(critical path, total work / workers)``.

Each task's agent sleeps its own duration, read from a file named by ``$TASKMILL_TASK_ID``
(``sh -c 'read d < dir/$TASKMILL_TASK_ID; exec sleep $d'``); the same duration is given to
the scheduler as ``hints = {estimate = seconds}``. Several seeded DAG shapes are run:

- ``layered``: 25 layers of 8 tasks, each waiting on 1-3 tasks of the two layers before;
- ``chains``:  96 independent tasks, then 2 chains of 40 tasks, then 24 tasks each waiting
  on a chain task (in creation order; for 200 tasks): first-come-first-served starts the
  chains late;
- ``random``:  each task waits on each of the 30 tasks before it with probability 0.08.

The shapes are chosen so that the critical path is close to total work / workers, where the
order of dispatch matters (first-come-first-served is reported for comparison).

Every task also costs the mill some time besides its agent (git worktree switch, commits,
checks, merge queue, ledger writes, process spawns). That overhead is measured from the
events (task span minus the agent's sleep) and reported per task; the *raw* ratio is judged
against the target, and an *adjusted* ratio (the bound recomputed with each task's duration
plus the mean overhead) shows how well the scheduler orders work, separately from the
overhead. A simulation of the mill's own policy (ready tasks by longest chain, given the
same durations + overhead) shows what list scheduling can reach on that DAG.

    python -m benchmarks.mill_scheduling [--dags layered,chains,random] [--min 0.2 --max 2.0]
"""

from __future__ import annotations

import argparse
import heapq
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .mill_common import (
    Report,
    base_parser,
    bench_env,
    header,
    import_plan,
    main_of,
    make_project,
    median,
    note_machine,
    prewarm_pool,
    report_landed,
    run_mill,
    stage_breakdown,
    workdir,
)

TARGET_RATIO = 1.10


@dataclass
class Dag:
    name: str
    durations: dict[str, float]
    after: dict[str, list[str]]
    """task -> the tasks it waits on"""

    @property
    def keys(self) -> list[str]:
        return list(self.durations)


def _durations(rng: random.Random, n: int, lo: float, hi: float) -> list[float]:
    return [round(rng.uniform(lo, hi), 2) for _ in range(n)]


def make_dag(shape: str, n: int, seed: int, lo: float, hi: float) -> Dag:
    rng = random.Random(f"{shape}-{seed}")
    keys = [f"{shape[0]}{i:03d}" for i in range(n)]
    after: dict[str, list[str]] = {k: [] for k in keys}
    if shape == "layered":
        # 25 layers of 8: each task waits on 1-3 tasks of the two layers before it
        per = 8
        for i, key in enumerate(keys):
            layer = i // per
            if layer == 0:
                continue
            pool = keys[max(0, (layer - 2) * per): layer * per]
            after[key] = sorted(rng.sample(pool, rng.randint(1, 3)))
    elif shape == "chains":
        # 96 independent tasks first (in creation order), then 2 chains of 40 tasks, then 24
        # tasks each waiting on a random chain task: first-come-first-served would start the
        # chains late; the longest-chain-first policy starts them at once
        free, chain_len, chains = n * 12 // 25, n // 5, 2
        idx = free
        for _ in range(chains):
            for j in range(chain_len):
                if j:
                    after[keys[idx]] = [keys[idx - 1]]
                idx += 1
        for i in range(idx, n):
            after[keys[i]] = [keys[rng.randrange(free, free + chains * chain_len)]]
    elif shape == "random":
        # each task waits on each of the 30 tasks before it with probability 0.08
        for i, key in enumerate(keys):
            after[key] = [keys[j] for j in range(max(0, i - 30), i) if rng.random() < 0.08]
    else:
        raise ValueError(shape)
    durations = dict(zip(keys, _durations(rng, n, lo, hi), strict=True))
    return Dag(shape, durations, after)


def critical_path(durations: Mapping[str, float], after: Mapping[str, Sequence[str]]) -> float:
    finish: dict[str, float] = {}
    for key in durations:  # keys are in a topological order (deps point backwards)
        finish[key] = durations[key] + max((finish[d] for d in after[key]), default=0.0)
    return max(finish.values())


def lower_bound(durations: Mapping[str, float], after: Mapping[str, Sequence[str]],
                workers: int) -> tuple[float, float, float]:
    cp = critical_path(durations, after)
    work = sum(durations.values()) / workers
    return max(cp, work), cp, work


def simulate(durations: Mapping[str, float], after: Mapping[str, Sequence[str]],
             workers: int, *, fifo: bool = False) -> float:
    """Makespan of the mill's policy: a free worker takes the ready task of longest chain
    (``fifo``: the oldest ready task instead)."""
    keys = list(durations)
    order = {k: i for i, k in enumerate(keys)}
    waiting: dict[str, list[str]] = {k: [] for k in keys}
    for k, deps in after.items():
        for d in deps:
            waiting[d].append(k)
    chain: dict[str, float] = {}
    for k in reversed(keys):
        chain[k] = 0.0 if fifo else durations[k] + max((chain[w] for w in waiting[k]),
                                                       default=0.0)
    blockers = {k: len(after[k]) for k in keys}
    ready = [(-chain[k], order[k], k) for k in keys if blockers[k] == 0]
    heapq.heapify(ready)
    running: list[tuple[float, str]] = []
    now = 0.0
    while ready or running:
        while ready and len(running) < workers:
            _, _, k = heapq.heappop(ready)
            heapq.heappush(running, (now + durations[k], k))
        now, k = heapq.heappop(running)
        for w in waiting[k]:
            blockers[w] -= 1
            if blockers[w] == 0:
                heapq.heappush(ready, (-chain[w], order[w], w))
    return now


def run(args: argparse.Namespace) -> Report:
    shapes = args.dags.split(",")
    report = header("mill_scheduling",
                    f"{len(shapes)} DAGs of {args.tasks} tasks, agents sleep "
                    f"{args.min}-{args.max} s, -j {args.workers}")
    with workdir("scheduling", args.keep) as tmp:
        env = bench_env(tmp / "home")
        for shape in shapes:
            dag = make_dag(shape, args.tasks, args.seed, args.min, args.max)
            repo = make_project(tmp / f"repo-{shape}", env)
            tasks = [{"key": k, "title": f"sleep {dag.durations[k]} s",
                      "hints": {"estimate": dag.durations[k]},
                      **({"after": dag.after[k]} if dag.after[k] else {})} for k in dag.keys]
            ids = import_plan(repo, tasks, env)
            folder = tmp / f"durations-{shape}"
            folder.mkdir()
            for key, tid in ids.items():
                (folder / tid).write_text(f"{dag.durations[key]}\n", encoding="utf-8")
            if not args.cold_pool:
                prewarm_pool(repo, env, args.workers)
            # the agent works for the task's duration, then leaves a change (a turn that changes
            # nothing lands nothing: the task is closed "already satisfied")
            agent = ["sh", "-c", f'read d < "{folder}/$TASKMILL_TASK_ID"; sleep "$d"; '
                     'echo "$TASKMILL_TASK_ID" > "$TASKMILL_TASK_ID.txt"']
            mill = run_mill(repo, env, agent=agent, workers=args.workers)
            landed = report_landed(report, mill, args.tasks)
            bound, cp, work = lower_bound(dag.durations, dag.after, args.workers)
            wall = mill.run_span_s
            ok = landed == args.tasks and wall / bound <= TARGET_RATIO
            # overhead per task: its span in the mill minus its agent's sleep
            dispatched, finished = mill.by_task("dispatched"), mill.by_task("task_finished")
            turns = mill.by_task("turn_finished")
            key_of = {tid: key for key, tid in ids.items()}
            spans, turn_extra = [], []
            for tid, ev in finished.items():
                if tid in dispatched and tid in turns:
                    spans.append(ev["t"] - dispatched[tid]["t"] - dag.durations[key_of[tid]])
                    turn_extra.append(turns[tid]["seconds"] - dag.durations[key_of[tid]])
            overhead = sum(spans) / len(spans)
            padded = {k: d + overhead for k, d in dag.durations.items()}
            adj_bound, _, _ = lower_bound(padded, dag.after, args.workers)
            sim = simulate(padded, dag.after, args.workers)
            fifo = simulate(dag.durations, dag.after, args.workers, fifo=True)
            report.add(f"{shape}: wall / lower bound (raw)", wall / bound, "x",
                       f"<= {TARGET_RATIO:.2f}", ok)
            report.note(f"{shape}: wall {wall:.1f} s; bound {bound:.1f} s = max(critical path "
                        f"{cp:.1f} s, work/{args.workers} {work:.1f} s)")
            report.add(f"{shape}: overhead per task (mean)", overhead * 1000, "ms")
            report.note(f"{shape}: of which in the agent turn (spawn, exit polling) "
                        f"{median(turn_extra) * 1000:.0f} ms median, the rest in the mill "
                        f"(worktree, commit, checks, merge queue, ledger)")
            report.add(f"{shape}: wall / bound with overhead (adjusted)", wall / adj_bound, "x")
            note_machine(report, mill, args.tasks)
            stages = stage_breakdown(mill)
            report.note(f"{shape}: per task, median: " + ", ".join(
                f"{name} {median(values) * 1000:.0f} ms" for name, values in stages.items()
                if values and not name.startswith("turn_started")))
            report.note(f"{shape}: the mill's policy simulated with the same durations + "
                        f"overhead: {sim:.1f} s ({sim / adj_bound:.3f}x the adjusted bound); "
                        f"first-come-first-served without overhead would take "
                        f"{fifo / bound:.3f}x the bound")
    return report


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__ or "")
    p.add_argument("--dags", default="layered,chains,random",
                   help="comma-separated shapes: layered, chains, random")
    p.add_argument("--tasks", type=int, default=200)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--min", type=float, default=0.2, help="shortest agent sleep (s)")
    p.add_argument("--max", type=float, default=2.0, help="longest agent sleep (s)")
    p.add_argument("--seed", type=int, default=7)
    return p


if __name__ == "__main__":
    main_of(run, parser())
