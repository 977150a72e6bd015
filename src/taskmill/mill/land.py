"""The merge queue: land one branch at a time on the target (the first :class:`~.lander.Lander`).

Landing a task's branch:

1. merge it with the target's tip without touching any working tree (``git merge-tree``);
   a conflict goes back to the agent loop, with the target merged into the branch and the
   conflict markers left in the files;
2. make one commit on top of the target's tip with the merged tree, whose message carries a
   ``Taskmill-Task: <id>`` trailer and a ``Taskmill-Lap: <n>`` one (so a task is found on
   the target after a crash and is never landed twice, and a reopened task's new landing is
   told from its old one). When the merged tree is the target's tree (the branch changes
   nothing the target does not already have), no commit is made: the task is "already
   satisfied" at the target's tip;
3. run the project checks (``[checks] commands``) on that commit, in the task's worktree; a
   red check goes back to the agent loop;
4. advance the target ref with a compare-and-swap. If the user's own checkout has the
   target branch checked out, its files are moved forward too when that is safe (``git
   read-tree -m -u``, which refuses to overwrite uncommitted changes). When it is not safe,
   the checkout is left exactly as it is, detached at the commit it was on, so the user's
   uncommitted changes are untouched and consistent, and taskmill says how to catch up.

One lock (a thread lock plus a file lock on ``.taskmill/run/merge.lock``, see
:mod:`taskmill.locks`) serialises landings across the workers of one run and across
concurrent runs.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from ..containment import Containment
from ..locks import FileLock
from ..model import Task
from ..paths import ADVANCE_JOURNAL
from .check_cache import CheckCache, Verdict, cache_key
from .checks import ChecksResult, run_checks
from .git import LAP_TRAILER, TRAILER, Git, commit_tree, merge_tree
from .lander import LandResult
from .worktrees import Workspace

# ADVANCE_JOURNAL (next to the merge lock while the target, and the user's checkout, is
# being moved) and LandResult are defined elsewhere, and stay importable from here
__all__ = ["ADVANCE_JOURNAL", "LandResult", "MergeQueue", "landing_message", "recover_advance",
           "recover_interrupted_advance"]


def recover_interrupted_advance(git: Git, lock_path: Path, user_checkout: Path) -> None:
    """Take the merge lock and undo what a run killed in :meth:`MergeQueue.advance` left."""
    if not lock_path.with_name(ADVANCE_JOURNAL).exists():
        return
    with FileLock(lock_path):
        recover_advance(git, lock_path.with_name(ADVANCE_JOURNAL), git.at(user_checkout))


def recover_advance(git: Git, journal: Path, user: Git) -> None:
    """A run died moving ``ref`` from ``old`` to ``new`` (the journal says so; we hold the
    merge lock, so nobody else is moving it). Its git lock files are stale; if the ref did
    not move, the user's checkout goes back to ``old`` and on the branch, as it was."""
    try:
        data = json.loads(journal.read_text(encoding="utf-8"))
        ref, old, new, checkout = data["ref"], data["old"], data["new"], data["checkout"]
    except (OSError, ValueError, KeyError, TypeError):
        journal.unlink(missing_ok=True)
        return
    for lock in (git.git_dir() / f"{ref}.lock", user.git_dir() / "index.lock",
                 user.git_dir() / "HEAD.lock"):
        lock.unlink(missing_ok=True)
    if checkout and git.rev(ref) == old:
        head = user.run("symbolic-ref", "-q", "HEAD", check=False).stdout.strip()
        if not head and user.rev("HEAD") == old:  # detached by the unsafe path
            user.run("symbolic-ref", "HEAD", ref)
        elif head == ref:
            _move_back(user, old, new)
    journal.unlink(missing_ok=True)


def _move_back(user: Git, old: str, new: str) -> None:
    """Put the files ``read-tree -m -u old new`` changed (all or some) back to ``old``."""
    out = user.run("diff", "--no-renames", "--name-only", "-z", old, new).stdout
    paths = [p for p in out.split("\0") if p]
    if not paths:
        return
    if user.ok("diff-index", "--cached", "--quiet", new, "--", *paths):
        user.run("read-tree", "-m", "-u", new, old, check=False)  # it had finished
        return
    # killed while writing files: the index is still at old. read-tree checks every path
    # is clean before it writes any, so a file holding new's content, or the start of it
    # (a write cut short), is one it wrote: put it back
    for path in paths:
        file = user.cwd / path
        disk = file.read_bytes() if file.is_file() and not file.is_symlink() else None
        old_data, new_data = _blob(user, old, path), _blob(user, new, path)
        if disk is None:
            written = new_data is None and old_data is not None  # deleted by it
        else:
            written = new_data is not None and new_data.startswith(disk) and disk != old_data
        if written and old_data is None:
            file.unlink()
        elif written:
            user.run("checkout-index", "-f", "-u", "--", path, check=False)
    # files the killed read-tree rewrote with what they held: same content, new stat data
    user.run("update-index", "-q", "--refresh", check=False)


def _blob(git: Git, rev: str, path: str) -> bytes | None:
    proc = subprocess.run(["git", "cat-file", "blob", f"{rev}:{path}"], cwd=git.cwd,
                          env=dict(git.env), capture_output=True, check=False)
    return proc.stdout if proc.returncode == 0 else None


def landing_message(task: Task, lap: int = 1) -> str:
    body = task.description.strip()
    if len(body) > 2000:
        body = body[:2000] + "\n[...]"
    parts = [f"{task.title} ({task.id})"]
    if body:
        parts += ["", body]
    parts += ["", f"{TRAILER}: {task.id}", f"{LAP_TRAILER}: {lap}"]
    return "\n".join(parts) + "\n"


class MergeQueue:
    def __init__(self, git: Git, *, target: str, lock_path: Path, checks: Sequence[str],
                 check_env: Mapping[str, str], check_timeout: float, user_checkout: Path,
                 log_dir: Path) -> None:
        self.git = git
        self.target = target
        self.ref = f"refs/heads/{target}"
        self.lock_path = lock_path
        self.checks = list(checks)
        self.check_env = check_env
        self.check_timeout = check_timeout
        self.user_git = git.at(user_checkout)
        self.log_dir = log_dir
        self.cancel: threading.Event | None = None
        """Set when the run stops: project checks still running are cut (no landing)."""
        self.containment: Containment | None = None
        self.check_cache: CheckCache | None = None
        """Project checks' results remembered by tree (:meth:`remember`); none: always run."""
        self._mutex = threading.Lock()

    @contextmanager
    def locked(self) -> Iterator[None]:
        with self._mutex, FileLock(self.lock_path):
            yield

    def tip(self) -> str:
        tip = self.git.rev(self.ref)
        if tip is None:
            from ..errors import GitError

            raise GitError(f"the target branch {self.target!r} does not exist")
        return tip

    def land(self, task: Task, ws: Workspace, *, lap: int = 1,
             attempt_log: Path | None = None) -> LandResult:
        with self.locked():
            return self._land(task, ws, lap, attempt_log)

    # -- the landing loop, and the steps another target (a remote's) changes ---------------

    tries = 5
    """Times a landing merges again on a target that moved under it before it gives up."""

    def _before_landing(self) -> None:
        """Undo what a run killed while advancing the target left (inside the lock)."""
        journal = self.lock_path.with_name(ADVANCE_JOURNAL)
        if journal.exists():
            recover_advance(self.git, journal, self.user_git)

    def _view(self, ws: Workspace, attempt: int) -> tuple[str, str, str]:
        """The target's tip, the branch's head and the tip's tree, for landing ``attempt``."""
        # one git process for both ends (this runs inside the merge lock)
        tip, head, tip_tree = self.git.out("rev-parse", self.ref, f"refs/heads/{ws.branch}",
                                           f"{self.ref}^{{tree}}").split()
        return tip, head, tip_tree

    def _landed_already(self, task: Task, ws: Workspace, lap: int, tip: str,
                        attempt: int) -> str | None:
        """The task's landing (this lap) on ``tip``'s history, when it may be there: only a
        task taken over from a run that died can have landed already (claims are exclusive),
        so only then, and once, is the target's history searched for its trailer."""
        if attempt or not ws.resumed:
            return None
        return self.git.find_landed(tip, task.id, lap=lap, since=ws.base)

    def _known_green(self, tree: str) -> bool:
        """Whether the project checks already passed on ``tree`` (:meth:`remember`)."""
        if self.check_cache is None or not self.checks:
            return False
        known = self.check_cache.get(cache_key(tree, self.checks, self.check_env))
        return known is not None and known.ok

    def remember(self, tree: str, commands: Sequence[str], result: ChecksResult) -> None:
        """A check result found elsewhere (a worker's own checks on its branch): when
        ``commands`` are the project checks and they passed, a candidate with that tree is
        not checked again (only with a :attr:`check_cache`)."""
        if (self.check_cache is None or list(commands) != self.checks or not commands
                or result.cancelled or not result.ok):
            return
        self.check_cache.put(cache_key(tree, self.checks, self.check_env), Verdict(True))

    def _move_target(self, old: str, new: str, branch: str) -> tuple[bool, str | None]:
        """Advance the target from ``old`` to ``new`` if it is still at ``old`` (the landed
        ``branch`` is given for a target that drops it too); (moved, note for the user)."""
        return self.advance(old, new)

    def _land(self, task: Task, ws: Workspace, lap: int, attempt_log: Path | None) -> LandResult:
        """The landing loop (one for every target: the steps above differ)."""
        self._before_landing()
        wt = ws.git  # bound to the slot: never the user's checkout
        on_branch = True
        try:
            for attempt in range(self.tries):
                tip, head, tip_tree = self._view(ws, attempt)
                found = self._landed_already(task, ws, lap, tip, attempt)
                if found:  # never twice
                    return LandResult("already_landed", found)
                # git merge-tree --write-tree finds the merge base itself
                tree, conflict = merge_tree(self.git, None, tip, head)
                if tree is None:
                    self._back_to_branch(wt, ws, on_branch)
                    on_branch = True
                    self._leave_conflict(wt, tip)
                    return LandResult("conflict", detail=conflict)
                if tree == tip_tree:  # nothing to land: never an empty commit
                    return LandResult("satisfied", tip)
                candidate = commit_tree(self.git, tree, [tip], landing_message(task, lap))
                if self.checks and not self._known_green(tree):
                    # the checks run on the candidate; after a landing the slot is released
                    # (and reset) anyway, so only a failure needs the branch back
                    wt.run("checkout", "-q", "--detach", candidate)
                    on_branch = False
                    result = run_checks(self.checks, ws.path, self.check_env,
                                        timeout_s=self.check_timeout, log_path=attempt_log,
                                        cancel=self.cancel, containment=self.containment)
                    if not result.ok:
                        self._back_to_branch(wt, ws, on_branch)
                        on_branch = True
                        # bring the target into the branch so the agent fixes the integrated code
                        wt.run("merge", "-q", "--no-edit", tip, check=False)
                        return LandResult("checks_failed", detail=result.failure_text(),
                                          checks=result)
                moved, note = self._move_target(tip, candidate, ws.branch)
                if moved:
                    on_branch = True  # landed: the worktree is released, not worked on
                    return LandResult("landed", candidate, checkout_note=note)
            return LandResult("conflict", detail="the target branch kept moving while landing")
        finally:
            self._back_to_branch(wt, ws, on_branch)

    @staticmethod
    def _back_to_branch(wt: Git, ws: Workspace, on_branch: bool) -> None:
        if not on_branch:
            wt.run("checkout", "-q", "-f", ws.branch)

    def _leave_conflict(self, wt: Git, tip: str) -> None:
        wt.run("merge", "--no-ff", "--no-commit", tip, check=False)

    def advance(self, old: str, new: str) -> tuple[bool, str | None]:
        """Move the target from ``old`` to ``new``; the user's checkout only when safe.

        A journal says what is being done until it is done, so that a run killed half-way
        is recovered (:func:`recover_interrupted_advance`)."""
        checked_out = self.user_git.current_branch() == self.target
        journal = self.lock_path.with_name(ADVANCE_JOURNAL)
        journal.write_text(json.dumps({"ref": self.ref, "old": old, "new": new,
                                       "checkout": checked_out}), encoding="utf-8")
        try:
            return self._advance_journaled(old, new, checked_out)
        finally:
            journal.unlink(missing_ok=True)

    def _advance_journaled(self, old: str, new: str, checked_out: bool) -> tuple[bool, str | None]:
        if not checked_out:
            return self.git.update_ref(self.ref, new, old, "taskmill: land"), None
        moved = self.user_git.run("read-tree", "-m", "-u", old, new, check=False)
        if moved.returncode != 0:
            # the index's stat data may just be stale (a file rewritten with the same
            # content): refresh it, as git status would, and try again
            self.user_git.run("update-index", "-q", "--refresh", check=False)
            moved = self.user_git.run("read-tree", "-m", "-u", old, new, check=False)
        if moved.returncode == 0:
            if self.git.update_ref(self.ref, new, old, "taskmill: land"):
                return True, None
            # the branch moved under us: put the files back where they were
            self.user_git.run("read-tree", "-m", "-u", new, old, check=False)
            return False, None
        # unsafe: leave the user's files alone, detached at the commit they match
        self.user_git.run("update-ref", "--no-deref", "-m", "taskmill: detach before landing",
                          "HEAD", old)
        if not self.git.update_ref(self.ref, new, old, "taskmill: land"):
            self.user_git.run("symbolic-ref", "HEAD", self.ref)
            return False, None
        note = (f"your checkout of {self.target} has uncommitted changes that overlap landed "
                f"work, so it was left as it was, detached at {old[:10]}; {self.target} is now "
                f"{new[:10]}. To catch up: git stash && git checkout {self.target} && "
                "git stash pop")
        return True, note
