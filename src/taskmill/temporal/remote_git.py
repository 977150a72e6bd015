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

import threading
from pathlib import Path

from ..errors import GitError
from ..mill.checks import run_checks
from ..mill.git import Git, commit_tree, merge_tree
from ..mill.land import LandResult, MergeQueue, landing_message
from ..mill.worktrees import Workspace, branch_for
from ..model import Task

REMOTE = "origin"
PUSH_TRIES = 30
"""Times a landing merges again on a target that moved under it before it gives up."""


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


def fetch_branch(git: Git, branch: str) -> bool:
    """The remote's ``branch`` into the local one (False when the remote has none, or a
    worktree here holds it)."""
    return git.run("fetch", "-q", REMOTE, f"+refs/heads/{branch}:refs/heads/{branch}",
                   check=False).returncode == 0


def push_branch(git: Git, branch: str) -> None:
    """A task's branch to the remote (it is the task's alone: forced)."""
    git.run("push", "-q", "--force", REMOTE, f"refs/heads/{branch}:refs/heads/{branch}")


def delete_remote_branch(git: Git, branch: str) -> None:
    git.run("push", "-q", REMOTE, "--delete", f"refs/heads/{branch}", check=False)


class RemoteMergeQueue(MergeQueue):
    """The merge queue of a worker: the target is the remote's; :meth:`tip` fetches it, and a
    landing is pushed with a compare-and-swap (see the module's doc). The user's checkout is
    on another machine: it is never touched (``user_checkout`` is the worker's clone)."""

    tries = PUSH_TRIES
    _fetching = threading.Lock()
    """Fetches of this process one at a time (two at once fail to lock the same ref)."""

    def sync(self) -> str:
        """Fetch the remote's target into the local ref; its tip."""
        with self._fetching:
            self.git.run("fetch", "-q", REMOTE, f"+{self.ref}:{self.ref}")
            return super().tip()

    def tip(self) -> str:
        return self.sync()

    def land(self, task: Task, ws: Workspace, *, lap: int = 1,
             attempt_log: Path | None = None) -> LandResult:
        with self.locked():
            return self._land_remote(task, ws, lap, attempt_log)

    def _land_remote(self, task: Task, ws: Workspace, lap: int,
                     attempt_log: Path | None) -> LandResult:
        wt = ws.git
        on_branch = True
        try:
            for _ in range(self.tries):
                tip = self.sync()
                found = self.git.find_landed(self.ref, task.id, lap=lap)
                if found:  # landed by a worker taken for dead: never twice
                    return LandResult("already_landed", found)
                head, tip_tree = self.git.out("rev-parse", f"refs/heads/{ws.branch}",
                                              f"{tip}^{{tree}}").split()
                tree, conflict = merge_tree(self.git, None, tip, head)
                if tree is None:
                    self._back_to_branch(wt, ws, on_branch)
                    on_branch = True
                    self._leave_conflict(wt, tip)
                    return LandResult("conflict", detail=conflict)
                if tree == tip_tree:
                    return LandResult("satisfied", tip)
                candidate = commit_tree(self.git, tree, [tip], landing_message(task, lap))
                if self.checks:
                    wt.run("checkout", "-q", "--detach", candidate)
                    on_branch = False
                    result = run_checks(self.checks, ws.path, self.check_env,
                                        timeout_s=self.check_timeout, log_path=attempt_log,
                                        cancel=self.cancel, containment=self.containment)
                    if not result.ok:
                        self._back_to_branch(wt, ws, on_branch)
                        on_branch = True
                        wt.run("merge", "-q", "--no-edit", tip, check=False)
                        return LandResult("checks_failed", detail=result.failure_text(),
                                          checks=result)
                if self.push(tip, candidate, drop=ws.branch):
                    return LandResult("landed", candidate)
            return LandResult("conflict", detail="the target branch kept moving while landing")
        finally:
            self._back_to_branch(wt, ws, on_branch)

    def push(self, old: str, new: str, *, drop: str | None = None) -> bool:
        """Move the remote's target from ``old`` to ``new``, only if it is still at ``old``;
        in the same atomic push, delete the landed task's branch ``drop`` there."""
        # (deleting a branch the remote does not have is no error: a warning)
        refs = [f"{new}:{self.ref}", *([f":refs/heads/{drop}"] if drop else [])]
        proc = self.git.run("push", "-q", "--porcelain", "--atomic",
                            f"--force-with-lease={self.ref}:{old}", REMOTE, *refs, check=False)
        if proc.returncode != 0:
            return False
        with self._fetching:
            self.git.update_ref(self.ref, new, old, "taskmill: landed on the remote")
        return True

    def _advance(self, old: str, new: str) -> tuple[bool, str | None]:
        return self.push(old, new), None


__all__ = ["REMOTE", "RemoteMergeQueue", "branch_for", "delete_remote_branch", "fetch_branch",
           "prepare_clone", "push_branch"]
