"""Shared plumbing of the mill benchmarks (``benchmarks/mill_*.py``).

Every benchmark builds a throw-away git repository with a taskmill ledger in a temporary
directory, imports a TOML plan, runs ``python -m taskmill run`` as a separate process (the
way a user runs it) with ``--json-events``, and reads the timestamps of those events.

Git and taskmill run with an isolated ``HOME`` and git configuration, so nothing of the
user's is read or written.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import tomli_w

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / ".data"
TASKMILL = (sys.executable, "-m", "taskmill")

_LEAKY_ENV = (
    "TASKMILL_DIR", "TASKMILL_TASK_ID", "TASKMILL_ACTOR", "GIT_DIR", "GIT_WORK_TREE",
    "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR", "GIT_CONFIG", "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_COUNT",
)
IDENTITY = {
    "GIT_AUTHOR_NAME": "Taskmill Bench", "GIT_AUTHOR_EMAIL": "bench@taskmill.invalid",
    "GIT_COMMITTER_NAME": "Taskmill Bench", "GIT_COMMITTER_EMAIL": "bench@taskmill.invalid",
}


# -- figures ---------------------------------------------------------------------------------


@dataclass
class Figure:
    """One reported number; ``ok`` is None for figures without a target."""

    name: str
    value: float
    unit: str
    target: str = ""
    ok: bool | None = None

    def line(self) -> str:
        if self.unit == "x":
            value = f"{self.value:.3f}"
        else:
            value = f"{self.value:,.1f}" if abs(self.value) >= 100 else f"{self.value:.3g}"
        verdict = "" if self.ok is None else ("PASS" if self.ok else "FAIL")
        target = f"target {self.target}" if self.target else ""
        return f"  {self.name:<52} {value:>10} {self.unit:<7} {target:<18} {verdict}"


@dataclass
class Report:
    title: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, value: float, unit: str, target: str = "",
            ok: bool | None = None) -> Figure:
        fig = Figure(name, value, unit, target, ok)
        self.figures.append(fig)
        print(fig.line(), flush=True)
        return fig

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  - {text}", flush=True)

    @property
    def passed(self) -> bool:
        return all(f.ok is not False for f in self.figures)

    def verdict(self) -> None:
        judged = [f for f in self.figures if f.ok is not None]
        failed = [f.name for f in judged if not f.ok]
        status = "PASS" if not failed else "FAIL (" + ", ".join(failed) + ")"
        print(f"{self.title}: {status}", flush=True)


def header(title: str, what: str) -> Report:
    print(f"\n== {title} ==", flush=True)
    print(f"   {what}", flush=True)
    return Report(title)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


# -- environment and repositories -------------------------------------------------------------


def bench_env(home: Path) -> dict[str, str]:
    """taskmill's and git's environment: the caller's, with an isolated home and git config."""
    env = {k: v for k, v in os.environ.items() if k not in _LEAKY_ENV}
    home.mkdir(parents=True, exist_ok=True)
    gitconfig = home / ".gitconfig"
    if not gitconfig.exists():
        gitconfig.write_text("[init]\n\tdefaultBranch = main\n[commit]\n\tgpgsign = false\n"
                             "[advice]\n\tdetachedHead = false\n", encoding="utf-8")
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), GIT_CONFIG_NOSYSTEM="1",
               GIT_CONFIG_GLOBAL=str(gitconfig), GIT_TERMINAL_PROMPT="0", **IDENTITY)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def git(repo: Path, *args: str, env: Mapping[str, str], input_text: str | None = None) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], env=dict(env), capture_output=True,
                          text=True, input=input_text, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def taskmill(repo: Path, *args: str, env: Mapping[str, str]) -> str:
    proc = subprocess.run([*TASKMILL, "-C", str(repo), *args], env=dict(env),
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"taskmill {' '.join(args)} failed ({proc.returncode}):\n"
                           f"{proc.stdout}\n{proc.stderr}")
    return proc.stdout


@contextlib.contextmanager
def workdir(name: str, keep: bool = False) -> Iterator[Path]:
    """A temporary directory, removed after (unless ``keep``, or the benchmark failed: its
    repositories, events and logs are then kept to look at)."""
    path = Path(tempfile.mkdtemp(prefix=f"taskmill-bench-{name}-"))
    failed = True
    try:
        yield path
        failed = False
    finally:
        if keep or failed:
            print(f"   (kept {path}{': the benchmark failed' if failed else ''})", flush=True)
        else:
            shutil.rmtree(path, ignore_errors=True)


def make_project(path: Path, env: Mapping[str, str], *,
                 project_checks: Sequence[str] = ("true",), template: Path | None = None) -> Path:
    """A git repository (branch main, one commit) with ``taskmill init`` done and committed
    (``template``: a clone of that repository instead of an empty one)."""
    if template is not None:
        git(template, "clone", "-q", "--branch", "main", str(template), str(path), env=env)
    else:
        path.mkdir(parents=True, exist_ok=True)
        git(path, "init", "-q", "-b", "main", env=env)
    (path / "README.md").write_text("# benchmark repository\n", encoding="utf-8")
    git(path, "add", "README.md", env=env)
    git(path, "commit", "-q", "-m", "initial commit", env=env)
    taskmill(path, "init", "--prefix", "bm", env=env)
    config = path / ".taskmill" / "config.toml"
    text = config.read_text(encoding="utf-8")
    text = text.replace("commands = []", f"commands = {json.dumps(list(project_checks))}")
    config.write_text(text, encoding="utf-8")
    git(path, "add", ".taskmill", env=env)
    git(path, "commit", "-q", "-m", "taskmill init", env=env)
    return path


def import_plan(repo: Path, tasks: Sequence[Mapping[str, Any]], env: Mapping[str, str], *,
                checks: Sequence[str] = ("true",)) -> dict[str, str]:
    """Import ``tasks`` (plan ``[[task]]`` tables) and return {key: task id}."""
    plan = {"defaults": {"checks": list(checks)}, "task": [dict(t) for t in tasks]}
    path = repo.parent / f"plan-{repo.name}.toml"
    path.write_text(tomli_w.dumps(plan), encoding="utf-8")
    out = taskmill(repo, "import", "--json", str(path), env=env)
    data = json.loads(out)
    return {str(k): str(v) for k, v in data.items()}


def prewarm_pool(repo: Path, env: Mapping[str, str], slots: int) -> None:
    """Create the worktree pool's first ``slots`` slots one after the other, as a previous run
    with that many workers leaves them.

    ``WorktreePool.acquire`` creating several slots at the same time races (one thread's
    ``git worktree prune`` removes the half-made administrative directory of another's
    ``git worktree add``, and that task errors), so the throughput benchmarks start from a
    warm pool unless told otherwise (``--cold-pool``).
    """
    from taskmill.mill.git import Git, git_env
    from taskmill.mill.worktrees import WorktreePool
    from taskmill.paths import find_repository

    g = Git(repo, git_env(env))
    pool = WorktreePool(g, find_repository(repo).worktrees, repo_root=repo,
                        include_file=repo / ".taskmill" / "include")
    tip = git(repo, "rev-parse", "HEAD", env=env)
    held = [pool.acquire(f"warmup-{i}", tip) for i in range(slots)]
    for ws in held:
        pool.release(ws, delete_branch=True)


# -- running the mill ------------------------------------------------------------------------


@dataclass
class MillRun:
    wall_s: float
    """From starting the process to its exit."""
    returncode: int
    events: list[dict[str, Any]]
    summary: dict[str, Any]
    stderr: str
    cpu_s: float = 0.0
    """CPU time (user + system) of taskmill and every process it started."""
    load: tuple[float, float] = (0.0, 0.0)
    """The machine's 1-minute load average before and after the run."""

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]

    def first(self, kind: str) -> dict[str, Any]:
        for e in self.events:
            if e["event"] == kind:
                return e
        raise KeyError(kind)

    @property
    def run_span_s(self) -> float:
        """From the ``run_started`` event to ``run_finished``."""
        return self.first("run_finished")["t"] - self.first("run_started")["t"]

    def by_task(self, kind: str) -> dict[str, dict[str, Any]]:
        """The first event of ``kind`` of each task."""
        out: dict[str, dict[str, Any]] = {}
        for e in self.events:
            if e["event"] == kind and "task" in e:
                out.setdefault(e["task"], e)
        return out


def loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return math.nan


def note_machine(report: Report, run: MillRun, tasks: int) -> None:
    """CPU per task (independent of other load) and the machine's load around the run."""
    report.add("CPU per task (taskmill + git + agents)", run.cpu_s / tasks * 1000, "ms")
    report.note(f"load average {run.load[0]:.1f} before, {run.load[1]:.1f} after the run "
                f"({os.cpu_count()} cores; other work on the machine slows the figures)")


def parse_ts(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def agent_cmd(argv: Sequence[str]) -> str:
    """The ``--agent-cmd`` string for ``argv`` (it is split with shlex)."""
    import shlex

    return shlex.join(argv)


def run_mill(repo: Path, env: Mapping[str, str], *, agent: Sequence[str], workers: int,
             extra: Sequence[str] = (), sampler: Callable[[int], None] | None = None,
             timeout: float = 1800.0) -> MillRun:
    """Run ``taskmill run`` to the end; ``sampler(pid)`` runs in a thread meanwhile."""
    import threading

    events_path = repo.parent / f"events-{repo.name}-{time.time_ns()}.ndjson"
    argv = [*TASKMILL, "-C", str(repo), "run", "--json", "--quiet", "-j", str(workers),
            "--agent-cmd", agent_cmd(agent), "--json-events", str(events_path), *extra]
    load_before = loadavg()
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.Popen(argv, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    thread = None
    if sampler is not None:
        thread = threading.Thread(target=sampler, args=(proc.pid,), daemon=True)
        thread.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        out, err = proc.communicate()
        raise RuntimeError(f"taskmill run did not finish in {timeout:.0f}s:\n{err[-3000:]}") from exc
    wall = time.monotonic() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (usage.ru_utime - usage_before.ru_utime) + (usage.ru_stime - usage_before.ru_stime)
    if thread is not None:
        thread.join(timeout=5)
    events = []
    for line in events_path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            event = json.loads(line)
            event["t"] = parse_ts(event["ts"])
            events.append(event)
    try:
        summary = json.loads(out)
    except ValueError:
        summary = {}
    run = MillRun(wall, proc.returncode, events, summary, err, cpu, (load_before, loadavg()))
    if proc.returncode not in (0, 1) or not summary:
        raise RuntimeError(f"taskmill run failed ({proc.returncode}):\n{out[-2000:]}\n"
                           f"{err[-3000:]}")
    return run


def check_all_landed(run: MillRun, expected: int) -> None:
    landed = run.summary.get("landed", 0)
    if landed != expected:
        raise RuntimeError(f"{landed} of {expected} tasks landed; not landed: "
                           f"{not_landed(run)[:5]}")


def not_landed(run: MillRun) -> list[dict[str, Any]]:
    return [t for t in run.summary.get("tasks", []) if t.get("outcome") != "landed"]


def report_landed(report: Report, run: MillRun, expected: int) -> int:
    """A PASS/FAIL figure for "every task landed", with the reasons of those that did not."""
    landed = int(run.summary.get("landed", 0))
    report.add("tasks landed", landed, "tasks", f"= {expected}", landed == expected)
    reasons: dict[str, int] = {}
    for task in not_landed(run):
        reason = " ".join(str(task.get("reason") or task.get("outcome")).split())
        reason = reason.split(" failed in ")[-1][:200]
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason, count in reasons.items():
        report.note(f"not landed ({count}x): {reason}")
    missing = expected - landed - len(not_landed(run))
    if missing > 0:
        report.note(f"{missing} task(s) never dispatched (waiting on tasks that did not land)")
    return landed


def stage_breakdown(run: MillRun, tasks: Sequence[str] | None = None) -> dict[str, list[float]]:
    """Per task, seconds between successive pipeline events (a profile from timestamps)."""
    stages = [("dispatched", "workspace"), ("workspace", "turn_started"),
              ("turn_started", "turn_finished"), ("turn_finished", "merge_queued"),
              ("merge_queued", "landed"), ("landed", "task_finished")]
    maps = {kind: run.by_task(kind) for kind in
            ("dispatched", "workspace", "turn_started", "turn_finished", "merge_queued",
             "landed", "task_finished")}
    ids = list(tasks) if tasks is not None else list(maps["dispatched"])
    out: dict[str, list[float]] = {f"{a} -> {b}": [] for a, b in stages}
    for tid in ids:
        for a, b in stages:
            ea, eb = maps[a].get(tid), maps[b].get(tid)
            if ea and eb:
                out[f"{a} -> {b}"].append(eb["t"] - ea["t"])
    return out


def print_breakdown(report: Report, breakdown: Mapping[str, Sequence[float]]) -> None:
    for name, values in breakdown.items():
        if values:
            report.note(f"{name:<30} median {median(values) * 1000:7.1f} ms, "
                        f"p95 {percentile(values, 95) * 1000:7.1f} ms, "
                        f"total {sum(values):7.2f} s")


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary repositories (their paths are printed)")
    parser.add_argument("--cold-pool", action="store_true",
                        help="do not create the worktree pool's slots before the run")
    return parser


def main_of(run: Callable[[argparse.Namespace], Report],
            parser: argparse.ArgumentParser) -> None:
    args = parser.parse_args()
    report = run(args)
    report.verdict()
    sys.exit(0 if report.passed else 1)
