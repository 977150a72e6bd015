"""Merge-queue throughput on real project history: python-humanize's commits as tasks.

Replays 15 consecutive commits of python-humanize (pinned by sha, below) as a backlog: each
task's agent is a scripted exec agent that sleeps ``--agent-seconds`` (an agent's thinking
time) and applies that commit's diff, so the project's real code lands; each task's own
checks are the test files of what its commit touches (an import smoke test when it touches
no code), and the project check -- what the merge queue runs before landing -- is the
project's whole pytest suite, run by the project's own test venv (the real-project cache,
``make real-project-cache``). A task waits for an earlier one (``after``) only where its
commit really needs it: its diff does not apply without it (:data:`DEPS`, checked against
the commits at every run by :func:`check_deps`: each dependency is needed, and every two
tasks not ordered by them land cleanly in either order). 3 workers. Four runs:

- one-at-a-time: ``[merge] batch_max = 1``;
- batching: ``batch_max = 5`` (``batch_wait`` = ``--batch-wait``);
- batching + bisection: the same, with a breaking edit injected into 20% of the tasks (a
  failing test file, which their own checks do not run; their agent removes it once the
  merge queue sends them back);
- batching + speculation: batching, with ``[merge] speculate = true`` (the other runs have
  it off, whatever the machine's cores).

For each: total time, suite runs (the merge queue's, cached ones not counted) per landed
task, mean agent overlap (tasks in an agent turn at once, time-weighted from the first
turn's start to the last one's end, from the ``turn_started`` / ``turn_finished`` events),
and total time against max(critical path, total work / workers): work is every agent turn
(with its own checks) plus every suite run; the critical path is the longest chain of
dependent tasks, each counted with its turns and one suite run. What the task graph allows
at best is said too: the overlap cannot exceed the turns' total time over the time the
longest chain takes (its turns, and a suite run to land each link before the next starts),
and each link of that chain lands on its own, so there are at least as many suite runs as
links.

    python -m benchmarks.merge_queue [--repo PATH] [--agent-seconds 6] [--batch-wait 8]

``--repo``: a clone of https://github.com/python-humanize/humanize (bare or not; default
``.cache/bench-history/humanize``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .mill_common import (
    ROOT,
    MillRun,
    Report,
    base_parser,
    bench_env,
    git,
    header,
    import_plan,
    main_of,
    median,
    run_mill,
    taskmill,
    workdir,
)

BASE = "0a06a3d4a12113cd5f3d0df0cfbb3e27d92499eb"
"""Return an empty string from natural_list for an empty list (#318): the target's start."""
COMMITS = [
    "15eb4cc132ed21d5e0135715fc98df3c104604f4",  # Update github-actions (#322)
    "d07d77e229a0f27745580832e9a7c49915215add",  # Update dependency mypy to v2 (#323)
    "d333afdc5e05941c67c552c9f153eec4d48e64b4",  # release-drafter action v7.3.1 (#324)
    "976484a655df046aa6849f440a4f0cd44fc4918c",  # Fix typo in i18n.activate() docstring
    "c2c410c1521a3b1eb3efef52f3b06c2e42f7b92b",  # two minus signs in fractional (#320)
    "7574e0cc377d80db0d2756fc2c5e0b8799a6f8b4",  # metric() carries to the next prefix
    "823ad6096e1e5ba82ea876ce761fc2efebd76157",  # naturalsize() rounding rollover (#329)
    "8a47cb4a9c8e810c53e21c6ddc2f69ca52b22be2",  # Lazy imports for Python 3.15+ (#335)
    "52609bfec26cb38761a87cfd34c850e10c866051",  # Drop experimental 3.13t (#336)
    "3c577d7650508d52aa2982e930b0e744c343082f",  # test for exact googol in intword()
    "0d0a80b2bce36a0c292140d0f697b13f7f0100c3",  # Update github-actions (#338)
    "b3eec21282d0b6321e906e1a503ecbcbcba2dc00",  # pymdown-extensions v11 (#337)
    "ea0b23172b0a7a3813e4a40a7547ee384a5f8320",  # actions/setup-python v6.3.0 (#340)
    "4c85c352664f6ed33b00b98e52c2232081ca943d",  # CodSpeedHQ/action v4.18.1 (#341)
    "c3a124cdeb272d7f63bc0aa66f79c6fbafd2fc6d",  # pre-commit autoupdate (#347)
]
DEPS = {2: [0], 10: [2], 13: [10]}
"""Task k waits for task j: k's diff does not apply without j's (the same lines of CI files
edited by consecutive dependency bumps: release-drafter.yml by 0 and 2, the workflows by 2
and 10, benchmark.yml by 10 and 13). Every other pair lands cleanly in either order
(:func:`check_deps`). Earlier versions also had 10 wait for 8 and 12 for 10, 13 for 12:
those commits touch the same files, but not the same lines, and merge cleanly."""
BREAKING_EVERY = 5
"""In the bisection run, tasks 1, 6, 11 (every fifth: 20%) get a breaking edit."""
DEFAULT_REPO = ROOT / ".cache" / "bench-history" / "humanize"
GET_REPO = ("git clone --bare https://github.com/python-humanize/humanize "
            ".cache/bench-history/humanize")
WORKERS = 3
VERSION_FILE = ('__version__ = version = "4.15.0"\n'
                '__version_tuple__ = version_tuple = (4, 15, 0)\n')
TARGET_FEWER_RUNS = 3.0
TARGET_OVERLAP = 2.5
TARGET_BOUND = 1.3

AGENT = r'''
"""The scripted agent: think, then apply the commit's diff (and, once, a breaking edit)."""
import json, os, pathlib, subprocess, sys, time
spec = json.loads(pathlib.Path(sys.argv[1]).read_text())
sys.stdin.read()
task = spec["tasks"][os.environ["TASKMILL_TASK_ID"]]
iteration = int(os.environ["TASKMILL_ITERATION"])
time.sleep(spec["agent_seconds"])
def git(*args):
    return subprocess.run(["git", *args], capture_output=True, text=True)
if git("apply", "--reverse", "--check", task["patch"]).returncode != 0:
    done = git("apply", "--3way", task["patch"])
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr)
broken = pathlib.Path(f"tests/test_zz_injected_{task['key']}.py")
if task["break"] and iteration == 1:
    broken.write_text("def test_injected():\n    assert False, 'broken by an injected edit'\n")
elif broken.exists():  # the merge queue sent it back: undo the breaking edit
    broken.unlink()
'''


@dataclass
class Mode:
    name: str
    batch_max: int
    batch_wait: float
    breaking: bool
    speculate: bool = False


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__ or "")
    p.add_argument("--repo", type=Path, default=DEFAULT_REPO,
                   help="a clone of python-humanize (bare or not)")
    p.add_argument("--tasks", type=int, default=len(COMMITS),
                   help=f"how many of the {len(COMMITS)} pinned commits to replay")
    p.add_argument("--agent-seconds", type=float, default=6.0,
                   help="each agent turn's thinking time before it applies its diff")
    p.add_argument("--batch-wait", type=float, default=8.0,
                   help="[merge] batch_wait of the batching runs")
    p.add_argument("--modes", default="one-at-a-time,batching,bisection,speculation",
                   help="which runs (comma-separated)")
    return p


def _cache() -> Any:
    from taskmill.testing.real_project_cache import Cache, default_cache_dir

    return Cache(default_cache_dir())


def missing(repo: Path) -> str | None:
    """Why the benchmark cannot run (None: it can)."""
    if not repo.exists():
        return f"no clone of python-humanize at {repo}: get it with `{GET_REPO}` (or --repo)"
    env = bench_env(repo.parent / ".bench-home")
    for sha in [BASE, *COMMITS]:
        proc = subprocess.run(["git", "-C", str(repo), "cat-file", "-e", f"{sha}^{{commit}}"],
                              env=env, capture_output=True, check=False)
        if proc.returncode != 0:
            return f"{repo} lacks commit {sha}: fetch it (git -C {repo} fetch)"
    reason = _cache().missing_reason()
    return f"the project's test venv: {reason}" if reason else None


def own_checks(files: Sequence[str], python: str) -> list[str]:
    """The test files of what a commit touches (an import smoke test when no code)."""
    tests: list[str] = []
    for name in files:
        path = Path(name)
        if name.startswith("tests/test_") and name.endswith(".py"):
            tests.append(name)
        elif name.startswith("src/humanize/") and path.suffix == ".py":
            tests.append(f"tests/test_{path.stem}.py")
    pytest = f'PYTHONPATH=src "{python}" -m pytest -q -p no:cacheprovider --benchmark-disable'
    found = sorted({t for t in tests if t not in ("tests/test___init__.py",)})
    return [f"{pytest} {' '.join(found)}" if found
            else f'PYTHONPATH=src "{python}" -c "import humanize"']


def set_up(tmp: Path, source: Path, mode: Mode, args: argparse.Namespace,
           env: Mapping[str, str]) -> tuple[Path, dict[str, str], dict[str, int]]:
    """The repository at BASE with taskmill and its plan; returns it, {key: id} and the
    index of each task id."""
    from taskmill.testing.real_project_setup import pytest_command

    cache = _cache()
    repo = tmp / "repo"
    git(tmp, "clone", "-q", "--no-checkout", str(source), str(repo), env=env)
    git(repo, "remote", "remove", "origin", env=env)
    git(repo, "checkout", "-q", "-B", "main", BASE, env=env)
    # what a developer's checkout has after its dev install and translation build (ignored
    # by the project's .gitignore): committed, so that every worktree has it
    (repo / "src" / "humanize" / "_version.py").write_text(VERSION_FILE, encoding="utf-8")
    for po in sorted((repo / "src" / "humanize" / "locale").glob("*/LC_MESSAGES/*.po")):
        subprocess.run(["msgfmt", "-o", str(po.with_suffix(".mo")), str(po)], check=True)
    git(repo, "add", "-f", "src/humanize/_version.py", "src/humanize/locale", env=env)
    git(repo, "commit", "-q", "-m", "generated files (version, translations)", env=env)
    taskmill(repo, "init", "--prefix", "hz", env=env)
    suite = pytest_command(cache)
    (repo / ".taskmill" / "config.toml").write_text("\n".join([
        'prefix = "hz"', "", "[checks]", f"commands = [{json.dumps(suite)}]", "",
        "[run]", "max_iterations = 4", "",
        "[merge]", f"batch_max = {mode.batch_max}", f"batch_wait = {mode.batch_wait}",
        f"speculate = {str(mode.speculate).lower()}", "",
        "[sandbox]", "enabled = false", ""]), encoding="utf-8")
    git(repo, "add", ".taskmill", env=env)
    git(repo, "commit", "-q", "-m", "taskmill init", env=env)

    patches = tmp / "patches"
    patches.mkdir()
    count = min(args.tasks, len(COMMITS))
    plan: list[dict[str, object]] = []
    agent_tasks: dict[str, dict[str, object]] = {}
    for k, sha in enumerate(COMMITS[:count]):
        patch = patches / f"{k:02d}.patch"
        # not through git(): its output is stripped, and a diff may end in a blank line
        patch.write_bytes(subprocess.run(["git", "-C", str(repo), "diff", "--binary",
                                          f"{sha}^", sha], env=dict(env), check=True,
                                         capture_output=True).stdout)
        files = git(repo, "diff", "--name-only", f"{sha}^", sha, env=env).split()
        subject = git(repo, "log", "-1", "--format=%s", sha, env=env)
        task: dict[str, object] = {"key": f"c{k:02d}", "title": subject[:200],
                                   "description": f"Replay commit {sha} of python-humanize.",
                                   "checks": own_checks(files, str(cache.python))}
        after = [f"c{j:02d}" for j in DEPS.get(k, []) if j < count]
        if after:
            task["after"] = after
        plan.append(task)
        agent_tasks[f"c{k:02d}"] = {"patch": str(patch), "key": f"c{k:02d}",
                                    "break": mode.breaking and k % BREAKING_EVERY == 1}
    ids = import_plan(repo, plan, env, checks=[suite])
    spec = {"agent_seconds": args.agent_seconds,
            "tasks": {ids[key]: value for key, value in agent_tasks.items()}}
    (tmp / "agent.json").write_text(json.dumps(spec), encoding="utf-8")
    (tmp / "agent.py").write_text(AGENT, encoding="utf-8")
    return repo, ids, {ids[t["key"]]: i for i, t in enumerate(plan)}  # type: ignore[index]


# -- the task graph --------------------------------------------------------------------------


def closure(k: int) -> set[int]:
    """Every task ``k`` waits for, directly or not."""
    found: set[int] = set()
    todo = list(DEPS.get(k, []))
    while todo:
        j = todo.pop()
        if j not in found:
            found.add(j)
            todo += DEPS.get(j, [])
    return found


def check_deps(source: Path, tmp: Path, env: Mapping[str, str], count: int) -> str | None:
    """Check :data:`DEPS` against the commits (None: right; else what is wrong): each
    commit cherry-picks onto the base with what it waits for; without one of those (and
    what waits for it) it does not, or it conflicts with it; and any two tasks neither of
    which waits for the other merge cleanly (``git merge-tree``)."""
    scratch = tmp / "deps"
    git(tmp, "clone", "-q", "--no-checkout", str(source), str(scratch), env=env)

    def line(ks: Sequence[int]) -> str | None:
        git(scratch, "checkout", "-q", "-f", "--detach", BASE, env=env)
        for k in sorted(ks):
            picked = subprocess.run(["git", "-C", str(scratch), "cherry-pick", "--no-commit",
                                     COMMITS[k]], env=dict(env), capture_output=True,
                                    check=False)
            if picked.returncode != 0:
                git(scratch, "reset", "-q", "--hard", env=env)
                return None
            git(scratch, "commit", "-q", "--allow-empty", "-m", f"c{k:02d}", env=env)
        return git(scratch, "rev-parse", "HEAD", env=env)

    def merges(a: str, b: str) -> bool:
        return subprocess.run(["git", "-C", str(scratch), "merge-tree", "--write-tree", a, b],
                              env=dict(env), capture_output=True, check=False).returncode == 0

    lines: dict[int, str] = {}
    for k in range(count):
        made = line([*closure(k), k])
        if made is None:
            return f"c{k:02d} does not apply after {sorted(closure(k))}"
        lines[k] = made
    for k in range(count):
        for j in DEPS.get(k, []):
            rest = {m for m in closure(k) if m != j and j not in closure(m)}
            alone = line([*rest, k])
            if alone is not None and merges(alone, lines[j]):
                return f"c{k:02d} does not need c{j:02d}: it applies and merges without it"
    for k in range(count):
        for j in range(k):
            if j not in closure(k) and not merges(lines[j], lines[k]):
                return f"c{j:02d} and c{k:02d} conflict, and neither waits for the other"
    return None


# -- figures ---------------------------------------------------------------------------------


def turns(run: MillRun) -> list[tuple[str, float, float]]:
    """(task, start, end) of each agent turn (its own checks included)."""
    started = {e["attempt"]: e for e in run.of("turn_started")}
    out = []
    for e in run.of("turn_finished"):
        s = started.get(e["attempt"])
        if s is not None:
            out.append((str(e["task"]), s["t"], e["t"]))
    return out


def mean_overlap(intervals: Sequence[tuple[float, float]]) -> float:
    """Time-weighted mean of how many intervals are open, from the first start to the last
    end."""
    if not intervals:
        return math.nan
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    area, open_, last = 0.0, 0, points[0][0]
    for t, step in points:
        area += open_ * (t - last)
        open_, last = open_ + step, t
    span = max(e for _, e in intervals) - min(s for s, _ in intervals)
    return area / span if span > 0 else math.nan


def measure(report: Report, mode: Mode, run: MillRun, index: Mapping[str, int],
            count: int) -> dict[str, float]:
    total = run.run_span_s
    landed = int(run.summary.get("landed", 0)) + int(run.summary.get("satisfied", 0))
    suite = [e for e in run.of("batch_checks") if not e.get("cached")]
    suite_s = [float(e.get("seconds") or 0.0) for e in suite]
    per_task = len(suite) / landed if landed else math.nan
    spans = turns(run)
    overlap = mean_overlap([(s, e) for _, s, e in spans])
    work_of: dict[str, float] = {}
    for task, s, e in spans:
        work_of[task] = work_of.get(task, 0.0) + (e - s)
    work = sum(work_of.values()) + sum(suite_s)
    one_suite = median(suite_s) if suite_s else 0.0
    finish: dict[int, float] = {}
    by_index = {i: t for t, i in index.items()}
    for k in range(count):
        ahead = max((finish[j] for j in DEPS.get(k, []) if j in finish), default=0.0)
        finish[k] = ahead + work_of.get(by_index.get(k, ""), 0.0) + one_suite
    critical = max(finish.values(), default=0.0)
    bound = max(critical, work / WORKERS)
    # what the graph allows at best: the longest chain's turns, and a suite run to land
    # each link before the next one starts (the last one's is after the last turn)
    turn_s = median(list(work_of.values())) if work_of else 0.0
    links = max((len(closure(k)) + 1 for k in range(count)), default=1)
    chain_s = links * turn_s + (links - 1) * one_suite
    ceiling = min(float(WORKERS), sum(work_of.values()) / chain_s) if chain_s else math.nan
    name = mode.name
    report.add(f"{name}: tasks landed", landed, "tasks", f"= {count}", landed == count)
    report.add(f"{name}: total time", total, "s")
    report.add(f"{name}: suite runs per landed task", per_task, "runs")
    report.add(f"{name}: mean agent overlap ({WORKERS} workers)", overlap, "tasks",
               f">= {TARGET_OVERLAP}", overlap >= TARGET_OVERLAP)
    report.add(f"{name}: the task graph's ceiling on agent overlap", ceiling, "tasks")
    if not mode.breaking:
        report.add(f"{name}: the task graph's floor on suite runs per landed task",
                   links / count, "runs")
    report.add(f"{name}: total time / max(critical path, work / workers)", total / bound,
               "x", f"<= {TARGET_BOUND}", total / bound <= TARGET_BOUND)
    batches = [len(e["tasks"]) for e in run.of("batch_started")]
    report.note(f"{name}: {len(suite)} suite runs (median {one_suite:.1f} s), "
                f"{len(run.of('bisect_step'))} bisection steps, batches of {batches}, "
                f"{len(run.of('merge_rejected'))} rejections; critical path {critical:.1f} s, "
                f"work {work:.1f} s ({work / WORKERS:.1f} s per worker)")
    return {"per_task": per_task, "total": total}


def run(args: argparse.Namespace) -> Report:
    report = header("merge_queue", f"{min(args.tasks, len(COMMITS))} commits of python-humanize "
                    f"as tasks, its pytest suite as the project check, -j {WORKERS}, "
                    f"agent turns of {args.agent_seconds:g} s")
    why = missing(args.repo)
    if why is not None:
        report.note(f"skipped: {why}")
        print(f"merge_queue: {why}", file=sys.stderr)
        return report
    if shutil.which("msgfmt") is None:
        report.note("skipped: msgfmt (gettext) is needed to build humanize's translations")
        return report
    modes = {m.name: m for m in (
        Mode("one-at-a-time", 1, 0.0, False),
        Mode("batching", 5, args.batch_wait, False),
        Mode("bisection", 5, args.batch_wait, True),
        Mode("speculation", 5, args.batch_wait, False, speculate=True))}
    wanted = [m.strip() for m in args.modes.split(",") if m.strip()]
    count = min(args.tasks, len(COMMITS))
    with workdir("mq-deps", args.keep) as tmp:
        wrong = check_deps(args.repo, tmp, bench_env(tmp / "home"), count)
    if wrong is not None:
        report.note(f"skipped: the task graph (DEPS) is wrong: {wrong}")
        print(f"merge_queue: DEPS is wrong: {wrong}", file=sys.stderr)
        return report
    report.note(f"task graph checked against the commits: waits {DEPS}; the longest chain "
                f"has {max(len(closure(k)) + 1 for k in range(count))} tasks")
    results: dict[str, dict[str, float]] = {}
    for name in wanted:
        mode = modes[name]
        with workdir(f"mq-{name}", args.keep) as tmp:
            env = bench_env(tmp / "home")
            repo, _ids, index = set_up(tmp, args.repo, mode, args, env)
            agent = [sys.executable, str(tmp / "agent.py"), str(tmp / "agent.json")]
            mill = run_mill(repo, env, agent=agent, workers=WORKERS, timeout=3600)
            results[name] = measure(report, mode, mill, index, count)
            final = git(repo, "rev-parse", "main^{tree}", env=env)
            upstream = git(repo, "rev-parse", f"{COMMITS[count - 1]}^{{tree}}", env=env)
            same = subprocess.run(["git", "-C", str(repo), "diff", "--quiet", final, upstream,
                                   "--", ".", ":!.taskmill", ":!src/humanize/_version.py",
                                   ":!src/humanize/locale/*/LC_MESSAGES/*.mo"],
                                  env=env, check=False).returncode == 0
            report.note(f"{name}: the target's code equals upstream's at "
                        f"{COMMITS[count - 1][:10]}: {same}")
    one, batching = results.get("one-at-a-time"), results.get("batching")
    if one and batching and batching["per_task"]:
        fewer = one["per_task"] / batching["per_task"]
        report.add("fewer suite runs per landed task, batching vs one-at-a-time", fewer, "x",
                   f">= {TARGET_FEWER_RUNS}", fewer >= TARGET_FEWER_RUNS)
    report.note(f"load average {os.getloadavg()[0]:.1f} at the end ({os.cpu_count()} cores)")
    return report


if __name__ == "__main__":
    main_of(run, parser())
