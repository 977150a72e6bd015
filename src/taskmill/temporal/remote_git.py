"""Git across machines: a worker's clone of the shared remote, task branches kept there, and
landings on the remote's target by compare-and-swap push.

Why compare-and-swap (and not one lander workflow per target): the remote itself is the one
place every worker agrees on, and ``git push --force-with-lease=REF:EXPECTED`` moves the
target only if it is still where this worker merged onto. A worker that loses the race
fetches the new tip and merges again; before every attempt (the first one included) it looks
for the task's ``Taskmill-Task``/``Taskmill-Lap`` trailer on the target, so that a task whose
landing another worker already pushed (a worker taken for dead that was not) is found there
and never landed twice. No lander process or lock service has to stay alive, and the merge
queue's rules (merge without a working tree, project checks on the candidate, one commit per
task with its trailer) stay the local ones.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ..errors import GitError
from ..mill.check_cache import CheckCache
from ..mill.git import Git
from ..mill.land import LandResult, MergeQueue
from ..mill.worktrees import Workspace, WorktreePool, branch_for
from ..model import Task

REMOTE = "origin"
PUSH_TRIES = 30
"""Times a landing merges again on a target that moved under it before it gives up."""
STALE_LOCK_S = 30.0
"""A lock file in a remote on this machine older than this was left by a push killed half-way
(:meth:`RemoteMergeQueue._clear_stale_locks`)."""
PUSH_AFTER_S = 1.0
"""A task's branch is pushed this long after its turn, unless its landing came first (and
pushed the landing instead): a worker that dies within it loses that turn's work."""


def prepare_clone(origin: str, clone: Path, git: Git) -> Git:
    """``origin`` cloned into ``clone`` (or the clone there brought up to date), its own
    checkout detached so that every branch can be fetched into. Returns git in the clone."""
    here = git.at(clone)
    if not (clone / ".git").exists():
        clone.parent.mkdir(parents=True, exist_ok=True)
        git.at(clone.parent).run("clone", "-q", "--no-checkout", origin, str(clone))
    else:
        url = here.run("remote", "get-url", REMOTE, check=False).stdout.strip()
        if url and url != origin:
            raise GitError(f"{clone} is a clone of {url}, not of {origin}: give another "
                           "--workdir, or remove that one")
    here.run("fetch", "-q", "--prune", REMOTE, f"+refs/heads/*:refs/remotes/{REMOTE}/*")
    head = here.run("symbolic-ref", "-q", f"refs/remotes/{REMOTE}/HEAD", check=False)
    default = head.stdout.strip() or here.out("for-each-ref", "--count=1",
                                              "--format=%(refname)", f"refs/remotes/{REMOTE}/")
    here.run("checkout", "-q", "-f", "--detach", default)
    return here


def fetch(git: Git, ref: str, pool: WorktreePool | None, *, check: bool = True) -> bool:
    """The remote's ``ref`` into the local one; whether it was fetched. Two races with the
    worker's other threads in the same clone are kept out: a worktree of ``pool`` being
    added (see :meth:`WorktreePool.quiet`), and a push updating the remote-tracking ref
    (``--refmap=``: only the ref asked for is written, not ``refs/remotes/origin/...``
    too, whose lock a push of the same branch holds for a moment)."""
    with pool.quiet() if pool is not None else contextlib.nullcontext():
        return git.run("fetch", "-q", "--refmap=", REMOTE, f"+{ref}:{ref}",
                       check=check).returncode == 0


def fetch_branch(git: Git, branch: str, pool: WorktreePool | None = None) -> bool:
    """The remote's ``branch`` into the local one (False when the remote has none, or a
    worktree here holds it)."""
    return fetch(git, f"refs/heads/{branch}", pool, check=False)


def push_branch(git: Git, branch: str) -> None:
    """A task's branch to the remote (it is the task's alone: forced)."""
    git.run("push", "-q", "--force", REMOTE, f"refs/heads/{branch}:refs/heads/{branch}")


class BranchPush:
    """A task branch's push to the remote after a turn, begun ``after`` seconds later (or
    at :meth:`settle`) unless :meth:`cancel` comes first: a landing that comes soon pushes
    itself instead (and deletes the branch there), one push and not two. It runs on a
    thread of ``submit``."""

    def __init__(self, push: Callable[[], None], after: float,
                 submit: Callable[[Callable[[], None]], Future[None]]) -> None:
        self._push = push
        self.after = after
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self.state = "waiting"
        """``waiting``, ``pushing`` (begun: it will end) or ``cancelled`` (never pushed)."""
        self.error: Exception | None = None
        """Why the push failed (None: it did not)."""
        self.future = submit(self._run)

    def _run(self) -> None:
        self._wake.wait(self.after)
        with self._lock:
            if self.state == "cancelled":
                return
            self.state = "pushing"
        try:
            self._push()
        except Exception as exc:  # a network blip: tried again at settle()
            self.error = exc

    def cancel(self) -> bool:
        """Whether it was cancelled before it began (else it is waited for)."""
        with self._lock:
            if self.state == "waiting":
                self.state = "cancelled"
                self._wake.set()
                return True
        self.future.result()
        return False

    def settle(self) -> None:
        """Push now (unless cancelled), and wait for it. A push that failed is tried once
        more, now; when that fails too, it raises."""
        self._wake.set()
        self.future.result()
        if self.error is not None:
            self._push()
            self.error = None


def delete_remote_branch(git: Git, branch: str) -> None:
    git.run("push", "-q", REMOTE, "--delete", f"refs/heads/{branch}", check=False)


class RemoteMergeQueue(MergeQueue):
    """The merge queue of a worker: the target is the remote's. The landing loop is the
    local queue's (:meth:`MergeQueue._land`) with three of its steps changed: the target's
    tip is the remote's (:meth:`sync`), the task's trailer is looked for on every attempt,
    and the target advances by a compare-and-swap push (see the module's doc). The user's
    checkout is on another machine: it is never touched (``user_checkout`` is the worker's
    clone)."""

    tries = PUSH_TRIES
    _fetching = threading.Lock()
    """Fetches of this process one at a time (two at once fail to lock the same ref)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.check_cache = CheckCache()
        self.pushing: dict[str, BranchPush] = {}
        """Task branches to push after a turn, by branch: the landing's push, which deletes
        the branch on the remote, cancels it, or waits for it when it has begun."""
        self.unpushed: set[str] = set()
        """Branches whose push a landing cancelled: pushed when it does not land after all."""
        self.worktrees: WorktreePool | None = None
        """The worker's pool of worktrees of this clone: no fetch while it adds one."""

    def land(self, task: Task, ws: Workspace, *, lap: int = 1,
             attempt_log: Path | None = None) -> LandResult:
        result: LandResult | None = None
        try:
            result = super().land(task, ws, lap=lap, attempt_log=attempt_log)
            return result
        finally:  # not landed: the branch goes to the remote all the same (the next turn,
            # or the next worker, starts from it)
            pushing = self.pushing.pop(ws.branch, None)
            if pushing is not None:
                try:
                    pushing.settle()
                except GitError:  # not the landing's fault: its branch stays here
                    self.unpushed.add(ws.branch)
            if ws.branch in self.unpushed:
                self.unpushed.discard(ws.branch)
                if result is None or result.outcome != "landed":
                    with contextlib.suppress(GitError):
                        push_branch(self.git, ws.branch)

    def remote_tip(self) -> str | None:
        """The remote's target, asked with ``ls-remote`` (no pack is negotiated)."""
        out = self.git.run("ls-remote", REMOTE, self.ref, check=False).stdout.split()
        return out[0] if out else None

    def sync(self, *, moved: bool = False) -> str:
        """The remote's target in the local ref (fetched only when it moved: ``moved`` when
        that is known); its tip."""
        with self._fetching:
            remote = None if moved else self.remote_tip()
            if remote is None or remote != self.git.rev(self.ref):
                fetch(self.git, self.ref, self.worktrees)
            return super().tip()

    def tip(self) -> str:
        return self.sync()

    def _before_landing(self) -> None:
        pass  # no journal: the target is moved by one push

    def _view(self, ws: Workspace, attempt: int) -> tuple[str, str, str]:
        self.sync(moved=attempt > 0)  # a landing tries again when its push lost the race
        return super()._view(ws, attempt)

    def _landed_already(self, task: Task, ws: Workspace, lap: int, tip: str,
                        attempt: int) -> str | None:
        # before every attempt: a worker taken for dead that was not may have landed it.
        # A first binding's base was the remote's tip when it began, and the target only
        # moves forward: any other landing of this lap came later, above that base
        since = None if ws.resumed else ws.base
        return self.git.find_landed(tip, task.id, lap=lap, since=since)

    def _move_target(self, old: str, new: str, branch: str) -> tuple[bool, str | None]:
        pushing = self.pushing.pop(branch, None)
        if pushing is not None and pushing.cancel():  # this push takes the branch's place
            self.unpushed.add(branch)
        return self.push(old, new, drop=branch), None

    def push(self, old: str, new: str, *, drop: str | None = None) -> bool:
        """Move the remote's target from ``old`` to ``new``, only if it is still at ``old``;
        in the same atomic push, delete the landed task's branch ``drop`` there."""
        # (deleting a branch the remote does not have is no error: a warning)
        refs = [f"{new}:{self.ref}", *([f":refs/heads/{drop}"] if drop else [])]
        args = ("push", "-q", "--porcelain", "--atomic", f"--force-with-lease={self.ref}:{old}",
                REMOTE, *refs)
        proc = self.git.run(*args, check=False)
        if proc.returncode != 0 and self._clear_stale_locks(drop):
            proc = self.git.run(*args, check=False)
        if proc.returncode != 0:
            return False
        with self._fetching:
            self.git.update_ref(self.ref, new, old, "taskmill: landed on the remote")
        return True

    def advance(self, old: str, new: str) -> tuple[bool, str | None]:
        return self.push(old, new), None

    def _clear_stale_locks(self, drop: str | None) -> bool:
        """Whether lock files a push killed half-way left in a remote on this machine (the
        worker killed with it: its ``receive-pack`` too) were removed: every later push
        failed on them ("Unable to create '.../packed-refs.lock': File exists"), so no task
        landed again. Only locks older than :data:`STALE_LOCK_S`, of the refs a landing
        takes: git holds one for the moment a ref update takes, and an update a lock was
        left by never happened (its ref keeps its old value)."""
        url = self.git.run("remote", "get-url", REMOTE, check=False).stdout.strip()
        if url.startswith("file://"):
            url = url.removeprefix("file://")
        elif not url or "://" in url or ":" in url.split("/")[0]:  # (host:path: not here)
            return False
        root = self.git.cwd / url  # (a relative path is the clone's)
        if not root.is_dir():
            return False
        gitdir = root if (root / "objects").is_dir() else root / ".git"
        locks = [gitdir / "HEAD.lock", gitdir / "packed-refs.lock", gitdir / f"{self.ref}.lock",
                 *([gitdir / "refs" / "heads" / f"{drop}.lock"] if drop else [])]
        now = time.time()
        cleared = False
        for lock in locks:
            with contextlib.suppress(OSError):
                if now - lock.stat().st_mtime > STALE_LOCK_S:
                    lock.unlink()
                    cleared = True
        return cleared


__all__ = ["REMOTE", "BranchPush", "RemoteMergeQueue", "branch_for", "delete_remote_branch", "fetch_branch",
           "prepare_clone", "push_branch"]
