"""Memory with 50 agents at once (target: taskmill under 200 MB resident).

``taskmill run -j 50`` works 50 independent tasks whose agents each sleep a few seconds, so
that all 50 run at the same time. While it runs, the resident set (``VmRSS`` in
``/proc/<pid>/status``) of the ``taskmill run`` process itself is sampled every 50 ms; the
peak is judged against the target. The agents' processes (and anything else taskmill
started: git, checks) are descendants of that process; their total RSS is reported
separately, at the moment the most agents were running at once.

    python -m benchmarks.mill_memory [--agents 50] [--sleep 5]
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

from .mill_common import (
    Report,
    base_parser,
    bench_env,
    header,
    import_plan,
    main_of,
    make_project,
    note_machine,
    prewarm_pool,
    report_landed,
    run_mill,
    workdir,
)

TARGET_MB = 200.0
MARK = "taskmill-bench-agent"


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def pss_kb(pid: int) -> int:
    """Proportional set size: shared pages divided among the processes sharing them."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def process_tree() -> dict[int, list[int]]:
    """pid -> its children's pids, for every process."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def descendants(pid: int, children: dict[int, list[int]]) -> list[int]:
    out: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


def is_agent(pid: int) -> bool:
    try:
        return MARK in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


class Sampler:
    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak_kb = 0
        self.samples = 0
        self.max_agents = 0
        self.agents_kb_at_max = 0
        self.agent_procs_at_max = 0
        self.agents_pss_kb_at_max = 0
        self.others_kb_at_max = 0
        self.main_kb_at_max = 0
        self.stop = threading.Event()

    def __call__(self, pid: int) -> None:
        while not self.stop.is_set() and Path(f"/proc/{pid}").exists():
            main = rss_kb(pid)
            if main == 0:
                break
            self.samples += 1
            self.peak_kb = max(self.peak_kb, main)
            tree = process_tree()
            kids = descendants(pid, tree)
            # the agents are taskmill's direct children (a forked child of an agent shell
            # carries the same command line until it execs)
            agents = [k for k in tree.get(pid, []) if is_agent(k)]
            # an agent is its marked shell and everything it started (its `sleep`)
            agent_procs = set(agents)
            for a in agents:
                agent_procs.update(descendants(a, tree))
            if len(agents) >= self.max_agents:
                self.max_agents = len(agents)
                self.agents_kb_at_max = sum(rss_kb(k) for k in agent_procs)
                self.agents_pss_kb_at_max = sum(pss_kb(k) for k in agent_procs)
                self.agent_procs_at_max = len(agent_procs)
                self.others_kb_at_max = sum(rss_kb(k) for k in kids if k not in agent_procs)
                self.main_kb_at_max = main
            time.sleep(self.interval)


def run(args: argparse.Namespace) -> Report:
    report = header("mill_memory", f"{args.agents} tasks, -j {args.agents}, agents sleep "
                    f"{args.sleep} s; RSS of the `taskmill run` process")
    with workdir("memory", args.keep) as tmp:
        env = bench_env(tmp / "home")
        repo = make_project(tmp / "repo", env)
        tasks = [{"key": f"m{i:02d}", "title": f"sleep {i}"} for i in range(args.agents)]
        import_plan(repo, tasks, env)
        if not args.cold_pool:
            prewarm_pool(repo, env, args.agents)
        # the agent: a shell (marked, so it can be told from git and checks) that sleeps,
        # then writes a file
        agent = ["sh", "-c", f'sleep {args.sleep}; echo done > "$TASKMILL_TASK_ID.txt"', MARK]
        sampler = Sampler()
        mill = run_mill(repo, env, agent=agent, workers=args.agents, sampler=sampler)
        report_landed(report, mill, args.agents)
        peak_mb = sampler.peak_kb / 1024
        report.add("taskmill run process, peak RSS", peak_mb, "MB", f"< {TARGET_MB:.0f} MB",
                   peak_mb < TARGET_MB and sampler.max_agents == args.agents)
        report.add("agents running at once (most seen)", sampler.max_agents, "agents",
                   f"= {args.agents}", sampler.max_agents == args.agents)
        report.add("  taskmill run RSS at that moment", sampler.main_kb_at_max / 1024, "MB")
        report.add(f"  the agents' processes ({sampler.agent_procs_at_max}), total RSS",
                   sampler.agents_kb_at_max / 1024, "MB")
        report.add("  the agents' processes, total PSS (shared pages split)",
                   sampler.agents_pss_kb_at_max / 1024, "MB")
        report.add("  other descendants (git, checks), total RSS",
                   sampler.others_kb_at_max / 1024, "MB")
        report.note(f"{sampler.samples} samples, every {sampler.interval * 1000:.0f} ms; "
                    f"run took {mill.wall_s:.1f} s")
        note_machine(report, mill, args.agents)
    return report


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__ or "")
    p.add_argument("--agents", type=int, default=50)
    p.add_argument("--sleep", type=float, default=5.0)
    return p


if __name__ == "__main__":
    main_of(run, parser())
