"""A pool of git worktrees, reset rather than re-created.

Each slot is a linked worktree under ``.taskmill/worktrees/wN``, held by one process at a
time through a lock file (``flock``; released by the kernel if the process dies, so a
crashed run's slots are taken over). Acquiring a slot checks out ``taskmill/<task id>``,
cut from the target's tip (or the existing branch, when a task's earlier work is resumed),
and copies in the gitignored files listed in ``.taskmill/include``. Releasing a slot cleans
it (detached, no untracked files) so that the next acquire only has to switch commits.
Disk use is bounded by the number of workers.
"""

from __future__ import annotations

import fcntl
import glob
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .git import Git

BRANCH_PREFIX = "taskmill/"


def branch_for(task_id: str) -> str:
    return f"{BRANCH_PREFIX}{task_id}"


@dataclass
class Workspace:
    path: Path
    branch: str
    base: str
    """The commit the branch was cut from (or rebased onto last)."""
    slot: int
    resumed: bool = False
    _lock_fd: int = field(default=-1, repr=False)


class WorktreePool:
    def __init__(self, git: Git, root: Path, *, repo_root: Path, include_file: Path,
                 clean_ignored: bool = False) -> None:
        self.git = git
        self.root = root
        self.repo_root = repo_root
        self.include_file = include_file
        self.clean_ignored = clean_ignored
        self._mutex = threading.Lock()
        self._held: set[int] = set()

    # -- slots -----------------------------------------------------------------------------

    def _lock_slot(self) -> tuple[int, int]:
        self.root.mkdir(parents=True, exist_ok=True)
        with self._mutex:
            slot = 0
            while True:
                if slot not in self._held:
                    fd = os.open(self.root / f"w{slot}.lock", os.O_RDWR | os.O_CREAT, 0o644)
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        os.close(fd)
                    else:
                        self._held.add(slot)
                        return slot, fd
                slot += 1

    def _unlock_slot(self, slot: int, fd: int) -> None:
        with self._mutex:
            self._held.discard(slot)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def prune(self) -> None:
        """Forget worktrees whose directories are gone (after a crash or a manual delete)."""
        self.git.run("worktree", "prune", check=False)

    # -- acquire / release -----------------------------------------------------------------

    def acquire(self, task_id: str, base: str) -> Workspace:
        slot, fd = self._lock_slot()
        try:
            path = self.root / f"w{slot}"
            branch = branch_for(task_id)
            ready_marker = self.root / f"w{slot}.clean"
            registered = (path / ".git").is_file()
            if not registered:
                if path.exists():
                    shutil.rmtree(path)
                self.prune()
                self.git.run("worktree", "add", "--detach", "--force", str(path), base)
            wt = self.git.at(path)
            if not ready_marker.exists():
                self._scrub(wt)
            ready_marker.unlink(missing_ok=True)
            existing = self.git.rev(f"refs/heads/{branch}")
            resumed = existing is not None and existing != base
            if existing is not None:
                wt.run("checkout", "-q", "-f", "--ignore-other-worktrees", branch)
            else:
                wt.run("checkout", "-q", "-f", "--no-track", "-B", branch, base)
            self._copy_includes(path)
            return Workspace(path=path, branch=branch, base=base, slot=slot, resumed=resumed,
                             _lock_fd=fd)
        except BaseException:
            self._unlock_slot(slot, fd)
            raise

    def release(self, ws: Workspace, *, delete_branch: bool = False) -> None:
        """Clean the slot for its next task and give it back."""
        try:
            wt = self.git.at(ws.path)
            self._scrub(wt)
            wt.run("checkout", "-q", "--detach", check=False)
            if delete_branch:
                self.git.run("branch", "-q", "-D", ws.branch, check=False)
            (self.root / f"w{ws.slot}.clean").touch()
        finally:
            self._unlock_slot(ws.slot, ws._lock_fd)

    def _scrub(self, wt: Git) -> None:
        git_dir = wt.git_dir()
        if (git_dir / "MERGE_HEAD").exists():
            wt.run("merge", "--abort", check=False)
        if (git_dir / "rebase-merge").exists() or (git_dir / "rebase-apply").exists():
            wt.run("rebase", "--abort", check=False)
        wt.run("reset", "-q", "--hard")
        wt.run("clean", "-q", "-ffdx" if self.clean_ignored else "-ffd")

    def _copy_includes(self, dest: Path) -> None:
        if not self.include_file.is_file():
            return
        for raw in self.include_file.read_text(encoding="utf-8").splitlines():
            pattern = raw.strip()
            if not pattern or pattern.startswith("#"):
                continue
            for match in glob.glob(pattern, root_dir=self.repo_root, recursive=True,
                                   include_hidden=True):
                src = self.repo_root / match
                target = dest / match
                if src.is_dir():
                    shutil.copytree(src, target, dirs_exist_ok=True, symlinks=True)
                elif src.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, target)
