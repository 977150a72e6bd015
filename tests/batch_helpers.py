"""Helpers for the tests of the batching merge queue (:mod:`taskmill.mill.batch`).

A scenario is a real git repository whose ``main`` holds ``check.sh``, the project check: it
fails when a ``t*.txt`` file contains ``BAD`` (a branch that breaks the suite alone) or when
two marker files ``mKa`` and ``mKb`` are both there (two branches that break it only
together). Branches are made in one ``git fast-import`` from a map of files each.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from taskmill.mill.batch import BatchLander, LandRequest, MergeSettings
from taskmill.mill.check_cache import CheckCache
from taskmill.mill.git import TRAILER, Git, git_env
from taskmill.mill.land import MergeQueue
from taskmill.model import Task

CHECK = "sh check.sh"
CHECK_SH = """\
for f in t*.txt; do
  [ -e "$f" ] && grep -q BAD "$f" && { echo "BAD in $f"; exit 1; }
done
for f in m*a; do
  [ -e "$f" ] && [ -e "${f%a}b" ] && { echo "$f and ${f%a}b together"; exit 1; }
done
exit 0
"""
SHARED = 3
"""``shared0.txt`` ... : files on main that branches may change (and so conflict on)."""


def git(repo: Path, *args: str, input_text: str | None = None) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          input=input_text, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout.strip()


def make_template(path: Path) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "check.sh").write_text(CHECK_SH, encoding="utf-8")
    for k in range(SHARED):
        (path / f"shared{k}.txt").write_text("base\n", encoding="utf-8")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "base")
    return path


def copy_repo(template: Path, dest: Path) -> Path:
    shutil.copytree(template, dest, symlinks=True)
    return dest


def make_branches(repo: Path, specs: Sequence[Mapping[str, str]]) -> list[str]:
    """Branch ``bI`` off main per spec (path -> content); their head commits, in order."""
    base = git(repo, "rev-parse", "main")
    stream: list[bytes] = []
    for i, files in enumerate(specs):
        message = f"branch {i}\n".encode()
        stream += [f"commit refs/heads/b{i}\n".encode(),
                   b"committer T <t@t.invalid> 1700000000 +0000\n",
                   f"data {len(message)}\n".encode(), message, f"from {base}\n".encode()]
        for name, content in sorted(files.items()):
            data = content.encode()
            stream += [f"M 100644 inline {name}\n".encode(), f"data {len(data)}\n".encode(),
                       data, b"\n"]
    proc = subprocess.run(["git", "-C", str(repo), "fast-import", "--quiet"],
                          input=b"".join(stream), capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    if not specs:
        return []
    return git(repo, "rev-parse", *(f"refs/heads/b{i}" for i in range(len(specs)))).split()


def requests(commits: Sequence[str], *, resumed: bool = False) -> list[LandRequest]:
    return [LandRequest(Task(id=f"tm-{i}", title=f"task {i}"), commit, 1, resumed=resumed)
            for i, commit in enumerate(commits)]


def make_lander(repo: Path, run_dir: Path, *, batch_max: int, flaky_retries: int = 0,
                checks: Sequence[str] = (CHECK,), check_env: Mapping[str, str] | None = None,
                events: list[dict[str, Any]] | None = None,
                cache: CheckCache | None = None, speculate: bool = False) -> BatchLander:
    queue = MergeQueue(Git(repo, git_env(os.environ)), target="main",
                       lock_path=run_dir / "merge.lock", checks=checks,
                       check_env=check_env or {"PATH": os.environ["PATH"]}, check_timeout=60,
                       user_checkout=repo, log_dir=run_dir / "logs")
    emit: Callable[..., None] | None = None
    if events is not None:
        def emit(kind: str, **data: Any) -> None:
            events.append({"event": kind, **data})
    return BatchLander(queue, settings=MergeSettings(batch_max=batch_max,
                                                     flaky_retries=flaky_retries,
                                                     speculate=speculate),
                       emit=emit, cache=cache)


# -- what the target holds -------------------------------------------------------------------


def tree_files(repo: Path, commit: str) -> dict[str, str]:
    names = git(repo, "ls-tree", "-r", "--name-only", commit).split("\n")
    return {n: git(repo, "cat-file", "blob", f"{commit}:{n}") for n in names if n}


def is_green(files: Mapping[str, str]) -> bool:
    """What check.sh says about a tree of these files."""
    if any(n.startswith("t") and n.endswith(".txt") and "BAD" in text
           for n, text in files.items()):
        return False
    return not any(n.startswith("m") and n.endswith("a") and f"{n[:-1]}b" in files
                   for n in files)


def landed_trailers(repo: Path, base: str) -> list[str]:
    """The task ids of the landing commits on main since ``base``, oldest first."""
    out = git(repo, "log", "--reverse", "--format=%(trailers:key=" + TRAILER
              + ",valueonly)%x00", f"{base}..main")
    return [part.strip() for part in out.split("\0") if part.strip()]


def target_commits(repo: Path, base: str) -> list[str]:
    return git(repo, "rev-list", "--reverse", f"{base}..main").split()
