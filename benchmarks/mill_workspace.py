"""Workspace readiness on a 10,000-file repository (target: < 100 ms from a warm pool).

A repository of 10,000 files (100 directories of 100 files, ~1 KB each) is generated once
under ``benchmarks/.data/`` (git-ignored) and reused. Each round plays a task's life in the
pool: a small change lands on ``main`` (one file edited, so successive tasks' base commits
differ a little), then ``WorktreePool.acquire(task, tip)`` is timed -- the slot was
released by the previous task (warm pool) -- the "agent" writes a file, and the slot is
released (timed too: the mill releases a slot before it reports the task finished). For
comparison, a fresh ``git worktree add`` of the same commit is timed as well.

    python -m benchmarks.mill_workspace [--rounds 20] [--files 10000]
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import time
from pathlib import Path

from taskmill.mill.git import Git, git_env
from taskmill.mill.worktrees import WorktreePool
from taskmill.paths import git_common_dir

from .mill_common import (
    DATA,
    Report,
    base_parser,
    bench_env,
    git,
    header,
    main_of,
    median,
    percentile,
)

TARGET_MS = 100.0
FORMAT = 1


def generate(repo: Path, files: int, env: dict[str, str]) -> None:
    """A repository of ``files`` text files, committed on ``main`` (done once)."""
    marker = repo / ".git" / f"taskmill-bench-v{FORMAT}-{files}"
    if marker.exists():
        return
    if repo.exists():
        shutil.rmtree(repo)
    print(f"   generating a {files}-file repository in {repo} (once)...", flush=True)
    start = time.monotonic()
    rng = random.Random(files)
    words = ["alpha", "beta", "gamma", "delta", "return", "value", "self", "def", "import",
             "class", "for", "while", "if", "else", "data", "index", "result", "count"]
    per_dir = 100
    repo.mkdir(parents=True)
    for i in range(files):
        d = repo / "src" / f"pkg{i // per_dir:03d}"
        if i % per_dir == 0:
            d.mkdir(parents=True, exist_ok=True)
        lines = [" ".join(rng.choice(words) for _ in range(8)) for _ in range(20)]
        (d / f"mod{i % per_dir:03d}.py").write_text(f"# file {i}\n" + "\n".join(lines) + "\n",
                                                    encoding="utf-8")
    git(repo, "init", "-q", "-b", "main", env=env)
    git(repo, "add", "-A", env=env)
    git(repo, "-c", "gc.auto=0", "commit", "-q", "-m", f"{files} files", env=env)
    git(repo, "repack", "-adq", env=env)
    git(repo, "prune", env=env)
    marker.touch()
    print(f"   generated in {time.monotonic() - start:.1f} s", flush=True)


def small_change(repo: Path, n: int, env: dict[str, str]) -> str:
    """Edit one file on main and commit; returns the new tip."""
    path = repo / "src" / f"pkg{n % 100:03d}" / "mod000.py"
    with path.open("a", encoding="utf-8") as fh:
        fh.write(f"# change {n} {time.time_ns()}\n")
    git(repo, "commit", "-q", "-a", "-m", f"small change {n}", env=env)
    return git(repo, "rev-parse", "HEAD", env=env)


def run(args: argparse.Namespace) -> Report:
    report = header("mill_workspace",
                    f"WorktreePool.acquire after a release, {args.files} files, "
                    f"{args.rounds} tasks")
    env = bench_env(DATA / "home")
    repo = DATA / f"repo{args.files}"
    generate(repo, args.files, env)
    count = int(git(repo, "ls-files", "--", "src", env=env).count("\n")) + 1
    report.note(f"repository: {repo} ({count} tracked files)")
    git(repo, "worktree", "prune", env=env)
    g = Git(repo, git_env(env))
    pool_root = git_common_dir(repo) / "taskmill" / "worktrees"  # where the mill keeps it
    pool = WorktreePool(g, pool_root, repo_root=repo, include_file=repo / ".taskmill-include",
                        clean_ignored=False)

    # warm-up: the first acquire creates the slot if it does not exist yet (cold)
    tip = small_change(repo, 0, env)
    cold = not (pool_root / "w0" / ".git").exists()
    start = time.perf_counter()
    ws = pool.acquire("bench-warmup", tip)
    first = time.perf_counter() - start
    pool.release(ws, delete_branch=True)
    acquires: list[float] = []
    releases: list[float] = []
    for n in range(1, args.rounds + 1):
        tip = small_change(repo, n, env)
        start = time.perf_counter()
        ws = pool.acquire(f"bench-{n}", tip)
        acquires.append(time.perf_counter() - start)
        assert ws.slot == 0
        head = git(ws.path, "rev-parse", "HEAD", env=env)
        assert head == tip, (head, tip)
        (ws.path / "src" / "agent_output.txt").write_text(f"task {n}\n", encoding="utf-8")
        (ws.path / "src" / "pkg000" / "mod001.py").write_text("edited by the agent\n",
                                                             encoding="utf-8")
        start = time.perf_counter()
        pool.release(ws, delete_branch=True)
        releases.append(time.perf_counter() - start)

    # a fresh `git worktree add` of the same commit, for comparison
    fresh: list[float] = []
    for n in range(args.fresh):
        path = DATA / f"fresh{args.files}-{n}"
        shutil.rmtree(path, ignore_errors=True)
        start = time.perf_counter()
        subprocess.run(["git", "-C", str(repo), "worktree", "add", "-q", "--detach", str(path),
                        tip], env=env, check=True, capture_output=True)
        fresh.append(time.perf_counter() - start)
        git(repo, "worktree", "remove", "--force", str(path), env=env)

    ms = [x * 1000 for x in acquires]
    report.add("acquire (warm pool), median", median(ms), "ms", f"< {TARGET_MS:.0f} ms",
               median(ms) < TARGET_MS)
    report.add("acquire (warm pool), p95", percentile(ms, 95), "ms")
    report.add("release (reset, clean, detach), median", median(releases) * 1000, "ms")
    report.add("fresh `git worktree add`, median", median(fresh) * 1000, "ms")
    report.add(f"first acquire ({'cold: creates the slot' if cold else 'slot existed'})",
               first * 1000, "ms")
    report.note(f"acquire is {median(fresh) / median(acquires):.1f}x faster than a fresh "
                "worktree add")
    return report


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__ or "")
    p.add_argument("--rounds", type=int, default=20, help="timed acquires (default 20)")
    p.add_argument("--files", type=int, default=10_000, help="files in the repository")
    p.add_argument("--fresh", type=int, default=3, help="fresh worktree adds to time")
    return p


if __name__ == "__main__":
    main_of(run, parser())
