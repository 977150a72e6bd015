"""Research mode (issue 14): taskmill's overhead per experiment, and 1 vs 4 workers.

- overhead per experiment on a 10,000-file repository: everything ``taskmill research``
  does for an experiment (a worktree at the best, the prompt and digest, the commit, the
  editable check, the records in the ledger, a fresh worktree for the verification, the
  compare-and-swap) except the agent turn and the metric runs, which are timed and taken
  out; every experiment is kept, so the whole path is measured (target < 2 s);
- throughput with 1 and 4 workers on a metric that takes 10 s (it sleeps: this machine may
  have 2 cores), experiments per minute and their ratio (target >= 3x).

The agent is the in-process scripted one (:mod:`taskmill.testing.research_agent`).

    python -m benchmarks.research [--files 10000] [--experiments 10]
                                  [--metric-seconds 10] [--throughput-experiments 8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from taskmill.clock import SystemClock
from taskmill.project import init, open_project
from taskmill.research import loop
from taskmill.research.session import open_research
from taskmill.testing.research_agent import research_step
from taskmill.testing.turns import ScriptedTurns

from .mill_common import IDENTITY, Report, header, main_of, workdir
from .support import home_env

OVERHEAD_TARGET_S = 2.0
THROUGHPUT_TARGET = 3.0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=10_000, help="files in the big repository")
    p.add_argument("--experiments", type=int, default=10, help="experiments timed for overhead")
    p.add_argument("--metric-seconds", type=float, default=10.0, help="the slow metric's time")
    p.add_argument("--throughput-experiments", type=int, default=8,
                   help="experiments per throughput run")
    return p


def _repo(root: Path, env: dict[str, str], files: int, research: dict[str, Any]) -> None:
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, env=env, check=True)
    for i in range(files):
        path = root / "src" / f"d{i // 100:03d}" / f"f{i:05d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"file {i}\n", encoding="utf-8")
    (root / "score.txt").write_text("metric: 1000\n", encoding="utf-8")
    init(root, env, prefix="rb").close()
    config = root / ".taskmill" / "config.toml"
    config.write_text(config.read_text(encoding="utf-8")
                      + '\n[agents.scripted]\nadapter = "exec"\ncommand = ["true"]\n',
                      encoding="utf-8")
    lines = [f"{k} = {json.dumps(v)}" for k, v in research.items() if k != "stop"]
    lines.append(f"stop = {{ experiments = {research['stop']} }}")
    (root / "research.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "program.md").write_text("Lower the score.\n", encoding="utf-8")
    subprocess.run(["git", "add", "-A"], cwd=root, env=env, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "start"], cwd=root, env=env, check=True)


class Timed:
    """Seconds spent in the agent turns and in the metric runs (taken out of the overhead)."""

    def __init__(self) -> None:
        self.turns = 0.0
        self.metric = 0.0
        self.metric_runs = 0


def _run(root: Path, env: dict[str, str], script: dict[str, Any], *,
         workers: int | None = None, timed: Timed | None = None) -> tuple[float, int, int]:
    """(wall seconds of `run` after the baseline, experiments, kept)."""
    turns = ScriptedTurns(research_step(script))
    real_measure = loop.measure

    def runner(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return turns(*args, **kwargs)
        finally:
            if timed is not None:
                timed.turns += time.perf_counter() - start

    def measure(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return real_measure(*args, **kwargs)
        finally:
            if timed is not None:
                timed.metric += time.perf_counter() - start
                timed.metric_runs += 1

    with open_project(root, env, clock=SystemClock()) as project:
        res = open_research(project, env, turn_runner=runner, workers=workers)
        res.hold()
        try:
            res.baseline()
        finally:
            res.release()
        loop.measure = measure  # type: ignore[assignment]
        try:
            start = time.perf_counter()
            report = res.run()
            wall = time.perf_counter() - start
        finally:
            loop.measure = real_measure
    return wall, report.started, report.kept


def overhead(report: Report, args: argparse.Namespace, env: dict[str, str]) -> None:
    with workdir("research-overhead") as tmp:
        root = tmp / "repo"
        research = {"branch": "research/bench", "metric": "cat score.txt", "editable": ["**"],
                    "agent": "scripted", "baseline_runs": 2, "accept": 0.5, "verify_runs": 1,
                    "workers": 1, "stop": args.experiments}
        t0 = time.perf_counter()
        _repo(root, env, args.files, research)
        report.note(f"repository of {args.files:,} files made in "
                    f"{time.perf_counter() - t0:.1f}s")
        edits = {str(n): {"files": {"score.txt": f"metric: {1000 - n}\n"},
                          "description": f"score {1000 - n}"}
                 for n in range(1, args.experiments + 1)}
        timed = Timed()
        wall, done, kept = _run(root, env, {"edits": edits}, timed=timed)
        per = (wall - timed.turns - timed.metric) / max(done, 1)
        report.add(f"overhead per experiment ({args.files:,} files, kept path)", per, "s",
                   f"< {OVERHEAD_TARGET_S:g} s", per < OVERHEAD_TARGET_S)
        report.note(f"{done} experiments ({kept} kept) in {wall:.2f}s: agent turns "
                    f"{timed.turns:.2f}s, {timed.metric_runs} metric runs {timed.metric:.2f}s")


def throughput(report: Report, args: argparse.Namespace, env: dict[str, str]) -> None:
    rates = {}
    for workers in (1, 4):
        with workdir(f"research-throughput-{workers}") as tmp:
            root = tmp / "repo"
            metric = f"sleep {args.metric_seconds:g}; cat score.txt"
            research = {"branch": "research/bench", "metric": metric, "editable": ["**"],
                        "agent": "scripted", "baseline_runs": 1, "accept": 0.5,
                        "verify_runs": 1, "workers": workers,
                        "stop": args.throughput_experiments}
            _repo(root, env, 10, research)
            # every idea is measured once and discarded (as most are): one metric run each
            edits = {"default": {"append": {"notes/$n.txt": "idea $n\n"},
                                 "description": "idea $n"}}
            wall, done, _kept = _run(root, env, edits, workers=workers)
            rates[workers] = done / wall * 60
            report.add(f"throughput, {workers} worker(s), {args.metric_seconds:g}s metric",
                       rates[workers], "exp/min")
    ratio = rates[4] / rates[1]
    report.add("throughput 4 workers / 1 worker", ratio, "x", f">= {THROUGHPUT_TARGET:g}x",
               ratio >= THROUGHPUT_TARGET)


def run(args: argparse.Namespace) -> Report:
    report = header("research mode", "overhead per experiment; 1 vs 4 workers")
    env = {**home_env(), **IDENTITY}
    env.setdefault("PATH", os.environ.get("PATH", "/usr/bin:/bin"))
    overhead(report, args, env)
    throughput(report, args, env)
    return report


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    main_of(run, parser())
