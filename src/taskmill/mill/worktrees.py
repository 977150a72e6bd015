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
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
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
        self._peeked = threading.Condition(self._mutex)
        self._peeking: set[int] = set()
        """Slots this process holds only for a moment (to repair them): wait, do not skip."""
        self._admin_mutex = threading.Lock()
        self._held: set[int] = set()
        self._entries: Path | None = None
        """git's worktrees/ directory (found once: it does not move while the pool lives)"""

    # -- slots -----------------------------------------------------------------------------

    def _lock_slot(self) -> tuple[int, int]:
        self.root.mkdir(parents=True, exist_ok=True)
        slot = 0
        while True:
            fd = self._try_lock(slot, wait_peek=True)
            if fd is not None:
                return slot, fd
            slot += 1

    def _try_lock(self, slot: int, *, wait_peek: bool = False, peek: bool = False) -> int | None:
        """The slot's lock when no thread or process holds it, else None."""
        with self._mutex:
            while wait_peek and slot in self._peeking:
                self._peeked.wait()
            if slot in self._held:
                return None
            fd = os.open(self.root / f"w{slot}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            self._held.add(slot)
            if peek:
                self._peeking.add(slot)
            return fd

    def _unlock_slot(self, slot: int, fd: int) -> None:
        with self._mutex:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            self._held.discard(slot)
            if slot in self._peeking:
                self._peeking.discard(slot)
                self._peeked.notify_all()

    @contextmanager
    def _admin(self) -> Iterator[None]:
        """Serialise taskmill's `git worktree add` and `prune` (threads and processes): a
        prune that runs while an add is between creating its entry and locking it deletes
        the entry, and the add fails."""
        with self._admin_mutex:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root / "admin.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def prune(self) -> None:
        """Forget worktrees whose directories are gone (after a crash or a manual delete),
        and take apart the half-made worktrees of free slots (see :meth:`_half_made`)."""
        with self._admin():
            for slot, admin, path in self._half_made():
                fd = self._try_lock(slot, peek=True)
                if fd is not None:
                    try:
                        self._discard(slot, admin, path)
                    finally:
                        self._unlock_slot(slot, fd)
            self.git.run("worktree", "prune", check=False)

    def _half_made(self) -> list[tuple[int, Path, Path]]:
        """(slot, git's entry, directory) of slots whose `git worktree add` was killed.

        git locks a new worktree entry ("initializing") until the add is complete, so
        `git worktree prune` keeps it, and an entry whose files are missing or empty makes
        every later `git worktree` command fail. Taskmill never locks its worktrees."""
        if self._entries is None:
            common = Path(self.git.out("rev-parse", "--git-common-dir"))
            common = common if common.is_absolute() else self.git.cwd / common
            self._entries = common / "worktrees"
        entries = self._entries
        found = []
        root = self.root.resolve()
        for admin in sorted(entries.iterdir()) if entries.is_dir() else []:
            try:
                path = Path((admin / "gitdir").read_text(encoding="utf-8").strip()).parent
            except OSError:
                continue  # git itself ignores an entry without gitdir
            match = re.fullmatch(r"w(\d+)", path.name)
            if match is None or path.parent.resolve() != root:
                continue
            complete = not (admin / "locked").exists() and all(
                (admin / name).is_file() and (admin / name).stat().st_size > 0
                for name in ("commondir", "HEAD"))
            if not complete:
                found.append((int(match.group(1)), admin, path))
        return found

    def _discard(self, slot: int, admin: Path, path: Path) -> None:
        shutil.rmtree(admin, ignore_errors=True)
        shutil.rmtree(path, ignore_errors=True)
        (self.root / f"w{slot}.clean").unlink(missing_ok=True)

    def drop_branch(self, task_id: str) -> None:
        """Delete a landed task's branch (detaching it in free slots a killed run left it in)."""
        branch = branch_for(task_id)
        self._free_branch(branch, None)
        # the task is closed: nobody works its branch; a lock on it is a killed git's
        (self.git.git_dir() / "refs" / "heads" / f"{branch}.lock").unlink(missing_ok=True)
        proc = self.git.run("branch", "-q", "-D", branch, check=False)
        if proc.returncode != 0 and "packed-refs." in proc.stderr:
            # git waited (core.packedRefsTimeout) for a lock held for milliseconds when
            # alive, or found the file it writes under that lock: a git killed while
            # deleting a ref left them
            for name in ("packed-refs.lock", "packed-refs.new"):
                (self.git.git_dir() / name).unlink(missing_ok=True)
            self.git.run("branch", "-q", "-D", branch, check=False)

    def _free_branch(self, branch: str, path: Path | None) -> None:
        """Detach ``branch`` in the free slots a killed run left it checked out in (git
        refuses to check out, or delete, a branch checked out in another worktree)."""
        out = self.git.run("worktree", "list", "--porcelain", check=False).stdout
        current: Path | None = None
        root, own = self.root.resolve(), path.resolve() if path is not None else None
        for line in out.splitlines():
            if line.startswith("worktree "):
                current = Path(line[len("worktree "):]).resolve()
            elif (line == f"branch refs/heads/{branch}" and current is not None
                  and current != own and current.parent == root
                  and (match := re.fullmatch(r"w(\d+)", current.name))):
                fd = self._try_lock(int(match.group(1)), peek=True)
                if fd is None:
                    continue
                try:
                    other = self.git.at(current)
                    # nobody holds the slot: a lock on its HEAD is a killed git's
                    (other.git_dir() / "HEAD.lock").unlink(missing_ok=True)
                    other.run("update-ref", "--no-deref", "-m", "taskmill: free the branch of "
                              "a killed run", "HEAD", f"refs/heads/{branch}", check=False)
                finally:
                    self._unlock_slot(int(match.group(1)), fd)

    # -- acquire / release -----------------------------------------------------------------

    def acquire(self, task_id: str, base: str, *, fresh: bool = False) -> Workspace:
        """A slot on branch ``taskmill/<task_id>``: the existing branch (resumed work), or
        one cut from ``base``. ``fresh``: the task was never worked, so it has no branch to
        look for (one git process less; the full path is taken if that turns out wrong)."""
        slot, fd = self._lock_slot()
        try:
            path = self.root / f"w{slot}"
            branch = branch_for(task_id)
            ready_marker = self.root / f"w{slot}.clean"
            with self._admin():
                for own, admin, half_made in self._half_made():
                    if own == slot:
                        self._discard(slot, admin, half_made)
                registered = (path / ".git").is_file()
                if not registered:
                    if path.exists():
                        shutil.rmtree(path)
                    self.git.run("worktree", "prune", check=False)
                    self.git.run("worktree", "add", "--detach", "--force", str(path), base)
            wt = self.git.at(path)
            # git's lock files in a slot nobody holds were left by a killed run
            for name in ("index.lock", "HEAD.lock"):
                (wt.git_dir() / name).unlink(missing_ok=True)
            if not ready_marker.exists():
                # not released: leave the branch a killed run had here without touching it
                # (its ref may still be locked by that run's killed git)
                wt.run("update-ref", "--no-deref", "-m", "taskmill: take over the slot",
                       "HEAD", "HEAD", check=False)
                self._scrub(wt)
            ready_marker.unlink(missing_ok=True)
            # this task is ours (claimed): a lock on its branch is a killed git's
            (self.git.git_dir() / "refs" / "heads" / f"{branch}.lock").unlink(missing_ok=True)
            if fresh and wt.ok("checkout", "-q", "-f", "--no-track", "-B", branch, base):
                self._copy_includes(path)
                return Workspace(path=path, branch=branch, base=base, slot=slot,
                                 resumed=False, _lock_fd=fd)
            existing = self.git.rev(f"refs/heads/{branch}")
            resumed = existing is not None and existing != base
            if existing is not None:
                self._free_branch(branch, path)
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
            # detach HEAD at the commit it is on (as `git checkout --detach` would, without
            # refreshing the whole index again: the scrub just did)
            wt.run("update-ref", "--no-deref", "-m", "taskmill: release the slot", "HEAD",
                   "HEAD", check=False)
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
