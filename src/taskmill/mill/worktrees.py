"""A pool of git worktrees, reset rather than re-created.

Each slot is a linked worktree under ``<git common dir>/taskmill/worktrees/wN`` (for a plain
repository ``.git/taskmill/worktrees/wN``), held by one process at a time through a lock file
(:mod:`taskmill.locks`; released by the kernel if the process dies, so a crashed run's slots
are taken over). Acquiring a slot checks out ``taskmill/<task id>``, cut from the target's tip (or the
existing branch, when a task's earlier work is resumed), and copies in the gitignored files
listed in ``.taskmill/include``. Releasing a slot cleans it (detached, no untracked files) so
that the next acquire only has to switch commits. Disk use is bounded by the number of
workers.

Never the user's checkout: every git command for a slot runs bound to it
(:meth:`Git.bound`: ``GIT_DIR`` is the slot's entry under git's ``worktrees/``,
``GIT_WORK_TREE`` the slot), and the pool lives inside git's directory, where git's own walk
up from a slot whose ``.git`` is gone finds no work tree. Before anything destructive
(``reset --hard``, ``clean``, ``checkout -f``) the slot is verified to be a proper worktree;
one that is not (its ``.git`` removed, replaced by ``git init``, pointing elsewhere) is moved
aside under ``quarantine/`` -- never deleted -- and rebuilt. During a task, a broken ``.git``
is repaired in place (:meth:`WorktreePool.settle`): the work tree is the task's work. A
process left behind in a slot by an agent (``setsid``) is killed before the slot is reused.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..clock import Clock, SystemClock
from ..locks import FileLock, try_lock
from ..paths import git_common_dir
from .git import Git
from .procs import kill_processes_in

BRANCH_PREFIX = "taskmill/"


def branch_for(task_id: str) -> str:
    return f"{BRANCH_PREFIX}{task_id}"


def task_of(ws: Workspace) -> str:
    return ws.branch[len(BRANCH_PREFIX):]


QUARANTINE = "quarantine"
QUARANTINE_REFS = "refs/taskmill/quarantine/"
"""Where commits set aside (a task branch that lost its history) stay reachable."""


@dataclass
class Workspace:
    path: Path
    branch: str
    base: str
    """The commit the branch was cut from (or rebased onto last)."""
    slot: int
    git: Git
    """git bound to this slot (``GIT_DIR`` = its entry under git's ``worktrees/``,
    ``GIT_WORK_TREE`` = the slot): every git command taskmill runs for the slot uses it."""
    admin: Path
    """The slot's entry in git's ``worktrees/`` directory."""
    resumed: bool = False
    _lock: FileLock | None = field(default=None, repr=False)


def slot_problem(path: Path, admin: Path | None) -> str | None:
    """Why ``path`` is not a proper worktree whose entry is ``admin`` (None when it is),
    from git's files alone."""
    if path.is_symlink() or not path.is_dir():
        return f"the slot {path} is missing or not a directory"
    if admin is None:
        return f"the slot {path} is not registered with git (no entry under worktrees/)"
    dotgit = path / ".git"
    if dotgit.is_symlink():
        return f"{dotgit} is a symbolic link"
    if dotgit.is_dir():
        return f"{dotgit} is a directory (a repository of its own, e.g. from `git init`)"
    if not dotgit.is_file():
        return f"{dotgit} is missing"
    try:
        text = dotgit.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return f"{dotgit} cannot be read"
    linked = _gitfile_target(path, text)
    if linked is None:
        return f"{dotgit} is not a git link file"
    if linked != admin.resolve():
        return f"{dotgit} points at {linked}, not at {admin}"
    try:
        back = Path((admin / "gitdir").read_text(encoding="utf-8").strip())
    except (OSError, UnicodeDecodeError):
        return f"git's entry {admin} for the slot is missing or unreadable"
    if back.resolve() != dotgit.resolve():
        return f"git's entry {admin} belongs to {back.parent}, not to the slot"
    for name in ("HEAD", "commondir"):
        if not (admin / name).is_file():
            return f"git's entry {admin} has no {name}"
    return None


def _gitfile_target(path: Path, text: str) -> Path | None:
    if not text.startswith("gitdir:"):
        return None
    linked = Path(text[len("gitdir:"):].strip())
    return (linked if linked.is_absolute() else path / linked).resolve()


class WorktreePool:
    def __init__(self, git: Git, root: Path, *, repo_root: Path, include_file: Path,
                 clean_ignored: bool = False, legacy_root: Path | None = None,
                 warn: Callable[[str, str | None], None] | None = None, clock: Clock | None = None,
                 kill_escaped: bool = True) -> None:
        self.git = git
        self.root = root
        self.repo_root = repo_root
        self.include_file = include_file
        self.clean_ignored = clean_ignored
        self.legacy_root = legacy_root
        """An older version's pool (``.taskmill/worktrees``), taken apart by :meth:`prune`."""
        self.warn = warn or (lambda _message, _task: None)
        """Called with a warning and the id of the task it concerns (None: no task)."""
        self.clock = clock or SystemClock()
        self.kill_escaped = kill_escaped
        self._mutex = threading.Lock()
        self._peeked = threading.Condition(self._mutex)
        self._peeking: set[int] = set()
        """Slots this process holds only for a moment (to repair them): wait, do not skip."""
        self._admin_mutex = threading.Lock()
        self._held: set[int] = set()
        self._entries: Path | None = None
        """git's worktrees/ directory (found once: it does not move while the pool lives)"""

    @property
    def entries(self) -> Path:
        if self._entries is None:
            self._entries = git_common_dir(self.git.cwd) / "worktrees"
        return self._entries

    # -- slots -----------------------------------------------------------------------------

    def _lock_slot(self) -> tuple[int, FileLock]:
        self.root.mkdir(parents=True, exist_ok=True)
        slot = 0
        while True:
            lock = self._try_lock(slot, wait_peek=True)
            if lock is not None:
                return slot, lock
            slot += 1

    def _try_lock(self, slot: int, *, wait_peek: bool = False,
                  peek: bool = False) -> FileLock | None:
        """The slot's lock when no thread or process holds it, else None."""
        with self._mutex:
            while wait_peek and slot in self._peeking:
                self._peeked.wait()
            if slot in self._held:
                return None
            lock = try_lock(self.root / f"w{slot}.lock")
            if lock is None:
                return None
            self._held.add(slot)
            if peek:
                self._peeking.add(slot)
            return lock

    def _unlock_slot(self, slot: int, lock: FileLock | None) -> None:
        with self._mutex:
            if lock is not None:
                lock.release()
            self._held.discard(slot)
            if slot in self._peeking:
                self._peeking.discard(slot)
                self._peeked.notify_all()

    @contextmanager
    def _admin(self) -> Iterator[None]:
        """Serialise taskmill's `git worktree add` and `prune` (threads and processes): a
        prune that runs while an add is between creating its entry and locking it deletes
        the entry, and the add fails."""
        with self._admin_mutex, FileLock(self.root / "admin.lock"):
            yield

    @contextmanager
    def quiet(self) -> Iterator[None]:
        """No worktree is added meanwhile. ``git worktree add`` writes a placeholder HEAD
        (the null id) into its new entry for a moment, and any ``git fetch`` into the
        repository then fails (``fatal: bad object worktrees/wN/HEAD``: its connectivity
        check walks every worktree's HEAD): fetches into a repository holding a pool are
        made inside this."""
        with self._admin():
            yield

    def prune(self) -> None:
        """Forget worktrees whose directories are gone (after a crash or a manual delete),
        take apart the half-made worktrees of free slots (see :meth:`_half_made`), and an
        older version's pool inside the user's checkout."""
        with self._admin():
            self._migrate_legacy()
            for slot, admin, path in self._half_made():
                lock = self._try_lock(slot, peek=True)
                if lock is not None:
                    try:
                        self._discard(slot, admin, path)
                    finally:
                        self._unlock_slot(slot, lock)
            self.git.run("worktree", "prune", check=False)

    def _half_made(self) -> list[tuple[int, Path, Path]]:
        """(slot, git's entry, directory) of slots whose `git worktree add` was killed.

        git locks a new worktree entry ("initializing") until the add is complete, so
        `git worktree prune` keeps it, and an entry whose files are missing or empty makes
        every later `git worktree` command fail. Taskmill never locks its worktrees."""
        found = []
        for slot, admin, path in self._slot_entries(self.root):
            complete = not (admin / "locked").exists() and all(
                (admin / name).is_file() and (admin / name).stat().st_size > 0
                for name in ("commondir", "HEAD"))
            if not complete:
                found.append((slot, admin, path))
        return found

    def _slot_entries(self, pool_root: Path) -> list[tuple[int, Path, Path]]:
        """(slot, git's entry, directory) of every worktree git has registered in
        ``pool_root`` (read from the entries' ``gitdir`` files)."""
        entries = self.entries
        found = []
        root = pool_root.resolve()
        for admin in sorted(entries.iterdir()) if entries.is_dir() else []:
            try:
                path = Path((admin / "gitdir").read_text(encoding="utf-8").strip()).parent
            except (OSError, UnicodeDecodeError):
                continue  # git itself ignores an entry without gitdir
            match = re.fullmatch(r"w(\d+)", path.name)
            if match is None or path.parent.resolve() != root:
                continue
            found.append((int(match.group(1)), admin, path))
        return found

    def _admin_of(self, path: Path) -> Path | None:
        """git's entry for the slot at ``path``: the one its ``.git`` names when that entry
        names the slot back, else the one whose ``gitdir`` names the slot."""
        dotgit = path / ".git"
        try:
            linked = _gitfile_target(path, dotgit.read_text(encoding="utf-8").strip())
        except (OSError, UnicodeDecodeError):
            linked = None
        if linked is not None and linked.parent == self.entries.resolve():
            try:
                back = Path((linked / "gitdir").read_text(encoding="utf-8").strip())
                if back.resolve() == dotgit.resolve():
                    return linked
            except (OSError, UnicodeDecodeError):
                pass
        wanted = dotgit.resolve()
        for admin in sorted(self.entries.iterdir()) if self.entries.is_dir() else []:
            try:
                back = Path((admin / "gitdir").read_text(encoding="utf-8").strip())
            except (OSError, UnicodeDecodeError):
                continue
            if back.resolve() == wanted:
                return admin
        return None

    def _discard(self, slot: int, admin: Path, path: Path) -> None:
        shutil.rmtree(admin, ignore_errors=True)
        shutil.rmtree(path, ignore_errors=True)
        (self.root / f"w{slot}.clean").unlink(missing_ok=True)

    # -- verifying, quarantining -------------------------------------------------------

    def verify(self, path: Path, admin: Path | None) -> str | None:
        """Why the slot is not a proper worktree (None when it is): git's files, then what
        git itself finds from inside the slot (its top level and git directory)."""
        problem = slot_problem(path, admin)
        if problem is not None or admin is None:
            return problem
        proc = self.git.at(path).run("rev-parse", "--show-toplevel", "--absolute-git-dir",
                                     check=False)
        lines = proc.stdout.split("\n")
        if proc.returncode != 0 or len(lines) < 2:
            return f"git does not see {path} as a worktree: {proc.stderr.strip()[:500]}"
        top, gitdir = Path(lines[0]).resolve(), Path(lines[1]).resolve()
        if top != path.resolve() or gitdir != admin.resolve():
            return (f"git sees the slot {path} as the worktree {top} of {gitdir}, not as a "
                    f"worktree of {admin}")
        return None

    def _set_aside(self, what: Path, name: str) -> Path:
        """Move ``what`` under ``quarantine/`` with a timestamp (nothing is deleted)."""
        folder = self.root / QUARANTINE
        folder.mkdir(parents=True, exist_ok=True)
        stamp = self.clock.now().strftime("%Y%m%dT%H%M%S.%f")
        dest = folder / f"{name}-{stamp}"
        n = 1
        while dest.exists() or dest.is_symlink():
            dest = folder / f"{name}-{stamp}-{n}"
            n += 1
        os.replace(what, dest)
        return dest

    def _quarantine_slot(self, slot: int, path: Path, reason: str,
                         task_id: str | None = None) -> None:
        """Move a slot that is no longer a proper worktree aside (rebuilt at its next
        acquire); git's entry for it goes with the next ``git worktree prune``."""
        (self.root / f"w{slot}.clean").unlink(missing_ok=True)
        if not (path.exists() or path.is_symlink()):
            return
        dest = self._set_aside(path, f"w{slot}")
        self.warn(f"worktree slot {path} was not a proper git worktree ({reason}): moved "
                  f"aside to {dest} and rebuilt", task_id)

    def _repair_dotgit(self, ws: Workspace, reason: str) -> None:
        """Give a held slot back its ``.git`` link (the work tree is the task's work and
        stays): a bad ``.git`` is set aside, the link rewritten both ways."""
        dotgit = ws.path / ".git"
        note = ""
        if dotgit.exists() or dotgit.is_symlink():
            note = f"; the slot's .git was moved aside to {self._set_aside(dotgit, f'w{ws.slot}.git')}"
        dotgit.write_text(f"gitdir: {ws.admin}\n", encoding="utf-8")
        (ws.admin / "gitdir").write_text(f"{dotgit}\n", encoding="utf-8")
        self.warn(f"the .git of worktree {ws.path} was broken during the task ({reason}): "
                  f"repaired{note}", task_of(ws))

    def settle(self, ws: Workspace) -> None:
        """Make a held slot a proper worktree again after an agent (or a check) had it: its
        ``.git`` repaired in place, or -- the slot itself gone -- the slot rebuilt on the
        task's branch. What the task committed is on its branch either way; uncommitted
        files in a slot that was removed are lost with it."""
        problem = slot_problem(ws.path, ws.admin)
        if problem is None:
            return
        if ws.path.is_dir() and not ws.path.is_symlink() and ws.admin.is_dir():
            self._repair_dotgit(ws, problem)
            problem = self.verify(ws.path, ws.admin)
            if problem is None:
                return
        # the slot itself is gone (or no longer a directory): rebuilt on what the task
        # committed (recover_branch then finds the branch if it went too)
        head = self.git.rev(f"refs/heads/{ws.branch}") or ws.base
        with self._admin():
            if ws.path.exists() or ws.path.is_symlink():
                self._quarantine_slot(ws.slot, ws.path, problem, task_of(ws))
            else:
                self.warn(f"worktree slot {ws.path} disappeared during the task ({problem}): "
                          f"rebuilt at {head[:10]}", task_of(ws))
            self.git.run("worktree", "prune", check=False)
            self.git.run("worktree", "add", "--detach", "--force", str(ws.path), head)
        admin = self._admin_of(ws.path)
        if admin is None or (problem := self.verify(ws.path, admin)) is not None:
            from ..errors import GitError

            raise GitError(f"could not rebuild the worktree slot {ws.path}: {problem}")
        ws.admin, ws.git = admin, self.git.bound(ws.path, admin)
        ws.git.run("checkout", "-q", "-f", "--ignore-other-worktrees", "--no-track", "-B",
                   ws.branch, head)
        self._copy_includes(ws.path)

    def _kill_escaped(self, path: Path, task_id: str | None = None) -> None:
        """Kill what an agent left running in the slot (it escaped its turn)."""
        if not self.kill_escaped:
            return
        for held in kill_processes_in(path):
            self.warn(f"killed process {held.pid} ({held.command}) still running in worktree "
                      f"{path} after its task's turn ({held.how} in the slot)", task_id)

    # -- an older version's pool -----------------------------------------------------------

    def _migrate_legacy(self) -> None:
        """Take apart a pool an older version kept in the user's checkout
        (``.taskmill/worktrees``): only taskmill's own slots (``wN`` registered with git,
        not held by a run); a slot that is no longer a proper worktree is moved into the
        quarantine, not deleted. Called under the admin lock."""
        legacy = self.legacy_root
        if legacy is None or not legacy.is_dir() or legacy.resolve() == self.root.resolve():
            return
        for slot, admin, path in self._slot_entries(legacy):
            lock = try_lock(legacy / f"w{slot}.lock")
            if lock is None:
                continue  # a run of the older version works in it
            try:
                problem = slot_problem(path, admin)
                if problem is None:
                    self._kill_escaped(path)
                    proc = self.git.run("worktree", "remove", "--force", str(path), check=False)
                    if proc.returncode != 0:
                        problem = proc.stderr.strip()[:500]
                if problem is not None:
                    if path.exists() or path.is_symlink():
                        dest = self._set_aside(path, f"legacy-w{slot}")
                        self.warn(f"the old worktree slot {path} was not a proper git "
                                  f"worktree ({problem}): moved aside to {dest}", None)
                    # taskmill never locks its worktrees: a lock is a killed `worktree add`'s
                    (admin / "locked").unlink(missing_ok=True)
                for name in (f"w{slot}.clean", f"w{slot}.lock"):
                    (legacy / name).unlink(missing_ok=True)
            finally:
                lock.release()
        self.git.run("worktree", "prune", check=False)
        leftovers = {p.name for p in legacy.iterdir()}
        if leftovers <= {"admin.lock"}:
            (legacy / "admin.lock").unlink(missing_ok=True)
            legacy.rmdir()

    # -- branches --------------------------------------------------------------------------

    def drop_branch(self, task_id: str) -> None:
        """Delete a landed task's branch (detaching it in free slots a killed run left it in)."""
        branch = branch_for(task_id)
        self._free_branch(branch, None)
        # the task is closed: nobody works its branch; a lock on it is a killed git's
        git_dir = self.git.git_dir()
        (git_dir / "refs" / "heads" / f"{branch}.lock").unlink(missing_ok=True)
        # the file git writes packed-refs to under packed-refs.lock, without that lock: a
        # killed git's (deleting a loose ref does not trip on it, but gc and pack-refs do)
        if (git_dir / "packed-refs.new").exists() and not (git_dir / "packed-refs.lock").exists():
            (git_dir / "packed-refs.new").unlink(missing_ok=True)
        if not self._delete_branch(branch):
            # git waited (core.packedRefsTimeout) for a lock held for milliseconds when
            # alive, or found the file it writes under that lock: a git killed while
            # deleting a ref left them
            for name in ("packed-refs.lock", "packed-refs.new"):
                (git_dir / name).unlink(missing_ok=True)
            self._delete_branch(branch)

    def _delete_branch(self, branch: str) -> bool:
        """Delete ``branch`` (and its reflog) as ``git branch -D`` would: not while a
        worktree -- the user's checkout, a slot -- has it checked out or is rebasing it.
        Returns False when git failed on the packed refs' lock (see :meth:`drop_branch`).

        Not with ``git branch -D`` itself: that also rewrites ``.git/config`` to drop the
        branch's ``[branch "..."]`` section -- every time, section or not, as a new file
        renamed over the old one -- and each sandboxed turn and check binds the scrubbed
        copy of git's config over that very file (:mod:`taskmill.sandbox`). A sandbox
        starting while the file is replaced fails to start (``bwrap: Can't bind mount ...
        on .../.git/config``: the turn or the check fails with nothing of the agent's or
        the check's done), and one that runs sees the real file again. Task branches are
        made with ``--no-track``: they have no section to drop."""
        if self._checked_out(branch):
            return True  # git branch -D refuses too; the branch stays
        proc = self.git.run("update-ref", "-d", f"refs/heads/{branch}", check=False)
        return proc.returncode == 0 or "packed-refs." not in proc.stderr

    def _checked_out(self, branch: str) -> bool:
        """Whether a worktree of the repository (the main one, or a linked one) has
        ``branch`` checked out, or is rebasing it (read from git's files)."""
        ref = f"refs/heads/{branch}"
        entries = self.entries
        admins = [entries.parent, *(sorted(entries.iterdir()) if entries.is_dir() else [])]
        for admin in admins:
            for name in ("HEAD", "rebase-merge/head-name", "rebase-apply/head-name"):
                try:
                    text = (admin / name).read_text(encoding="utf-8").strip()
                except (OSError, UnicodeDecodeError):
                    continue
                if text in (f"ref: {ref}", ref):
                    return True
        return False

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
                lock = self._try_lock(int(match.group(1)), peek=True)
                if lock is None:
                    continue
                try:
                    admin = self._admin_of(current)
                    if admin is None:
                        continue
                    other = self.git.bound(current, admin)
                    # nobody holds the slot: a lock on its HEAD is a killed git's
                    (admin / "HEAD.lock").unlink(missing_ok=True)
                    other.run("update-ref", "--no-deref", "-m", "taskmill: free the branch of "
                              "a killed run", "HEAD", f"refs/heads/{branch}", check=False)
                finally:
                    self._unlock_slot(int(match.group(1)), lock)

    def shares_history(self, commit: str, base: str) -> bool:
        """Whether ``commit`` shares history with ``base`` (the target): contains it, or
        has a merge base with it."""
        if commit == base or self.git.is_ancestor(base, commit):
            return True
        return self.git.ok("merge-base", commit, base)

    def set_aside_ref(self, task_id: str, commit: str) -> str:
        """Keep ``commit`` reachable under ``refs/taskmill/quarantine/`` (not a branch)."""
        stamp = self.clock.now().strftime("%Y%m%dT%H%M%S%f")
        ref = f"{QUARANTINE_REFS}{task_id}-{stamp}"
        self.git.run("update-ref", "-m", "taskmill: set aside", ref, commit)
        return ref

    def recover_branch(self, ws: Workspace, fallback: str) -> str | None:
        """Put a held slot back on its task's branch when an agent deleted the branch
        (``git branch -D``, ``update-ref -d``) or moved HEAD off it (``checkout --detach``,
        another branch, ``checkout --orphan``); the work tree -- the task's work -- is kept
        for the next commit. The branch is recreated at the slot's HEAD commit, or (HEAD
        unborn) at ``fallback``, the commit the slot was on before the turn. Whether that
        commit shares history with the target is checked after the commit (the worker's
        :meth:`restart_branch`). Returns what was done, None when all was in order."""
        ref = f"refs/heads/{ws.branch}"
        try:
            head = (ws.admin / "HEAD").read_text(encoding="utf-8").strip()
        except OSError:
            head = ""
        on_branch = head == f"ref: {ref}"
        if on_branch and (self.entries.parent / ref).is_file():
            return None  # the usual case, read from files: no git process
        existing = ws.git.rev(ref)
        if on_branch and existing is not None:
            return None  # a packed ref
        current = ws.git.rev("HEAD")  # None when HEAD is unborn (or names a missing branch)
        commit = current or existing or fallback
        ws.git.run("update-ref", "-m", "taskmill: recover the task branch", ref, commit)
        if not on_branch:
            ws.git.run("symbolic-ref", "-m", "taskmill: back on the task branch", "HEAD", ref)
        if on_branch:
            return (f"the branch {ws.branch} was deleted during the turn: recreated at "
                    f"{commit[:10]}, the commit the worktree was on")
        where = head[len("ref: "):] if head.startswith("ref: ") else f"detached at {head[:10]}"
        return (f"the worktree was moved off the branch {ws.branch} during the turn (HEAD: "
                f"{where}): {ws.branch} now points at {commit[:10]} and is checked out again")

    def restart_branch(self, ws: Workspace, tip: str, task_id: str) -> str:
        """The slot's HEAD shares no history with the target (an orphan commit): it could
        never land. It is kept reachable under ``refs/taskmill/quarantine/``, and the task's
        branch starts again from ``tip``. Returns what was done."""
        head = ws.git.rev("HEAD")
        kept = f": its commit {head[:10]} was set aside as {self.set_aside_ref(task_id, head)}" \
            if head else ""
        problem = self.verify(ws.path, ws.admin)
        if problem is not None:
            self.settle(ws)
        ws.git.run("checkout", "-q", "-f", "--ignore-other-worktrees", "--no-track", "-B",
                   ws.branch, tip)
        ws.git.run("clean", "-q", "-ffdx" if self.clean_ignored else "-ffd")
        ws.base = tip
        self._copy_includes(ws.path)
        return (f"the branch {ws.branch} no longer shares history with the target{kept}; the "
                f"task starts again from the target's tip {tip[:10]}")

    # -- acquire / release -----------------------------------------------------------------

    def _ready_slot(self, slot: int, path: Path, base: str, task_id: str) -> Path:
        """Make the locked slot a proper worktree (quarantining and rebuilding it when it is
        not one); returns git's entry for it. Called under the admin lock."""
        for own, entry, half_made in self._half_made():
            if own == slot:
                self._discard(slot, entry, half_made)
        found = self._admin_of(path) if path.is_dir() else None
        problem = slot_problem(path, found)
        if found is not None and problem is None:
            return found
        if path.exists() or path.is_symlink():
            self._quarantine_slot(slot, path, problem or "not registered", task_id)
        self.git.run("worktree", "prune", check=False)
        self.git.run("worktree", "add", "--detach", "--force", str(path), base)
        (self.root / f"w{slot}.clean").touch()  # a new worktree: nothing to scrub
        admin = self._admin_of(path)
        if admin is None or (problem := slot_problem(path, admin)) is not None:
            from ..errors import GitError

            raise GitError(f"could not make the worktree slot {path}: {problem}")
        return admin

    def acquire(self, task_id: str, base: str, *, fresh: bool = False) -> Workspace:
        """A slot on branch ``taskmill/<task_id>``: the existing branch (resumed work), or
        one cut from ``base``. ``fresh``: the task was never worked, so it has no branch to
        look for (one git process less; the full path is taken if that turns out wrong)."""
        slot, lock = self._lock_slot()
        try:
            path = self.root / f"w{slot}"
            branch = branch_for(task_id)
            ready_marker = self.root / f"w{slot}.clean"
            with self._admin():
                admin = self._ready_slot(slot, path, base, task_id)
            if not ready_marker.exists():
                # not released (a killed run's): what it left running there dies first, and
                # git is asked what it sees there before the reset (a released slot was
                # asked at its release, and its files were checked again just now)
                self._kill_escaped(path, task_id)
                problem = self.verify(path, admin)
                if problem is not None:  # git disagrees with its files: rebuild the slot
                    with self._admin():
                        self._quarantine_slot(slot, path, problem, task_id)
                        admin = self._ready_slot(slot, path, base, task_id)
            wt = self.git.bound(path, admin)
            # git's lock files in a slot nobody holds were left by a killed run
            for name in ("index.lock", "HEAD.lock"):
                (admin / name).unlink(missing_ok=True)
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
                return Workspace(path=path, branch=branch, base=base, slot=slot, git=wt,
                                 admin=admin, resumed=False, _lock=lock)
            existing = self.git.rev(f"refs/heads/{branch}")
            if existing is not None and not self.shares_history(existing, base):
                # no history in common with the target (an orphan commit): it could never
                # land; kept reachable, and the task starts again from the target's tip
                ref = self.set_aside_ref(task_id, existing)
                self.warn(f"the branch {branch} shares no history with the target: its "
                          f"commit {existing[:10]} was set aside as {ref} and the task "
                          "starts again from the target's tip", task_id)
                existing = None
            resumed = existing is not None and existing != base
            if existing is not None:
                self._free_branch(branch, path)
                wt.run("checkout", "-q", "-f", "--ignore-other-worktrees", branch)
            else:
                wt.run("checkout", "-q", "-f", "--no-track", "-B", branch, base)
            self._copy_includes(path)
            return Workspace(path=path, branch=branch, base=base, slot=slot, git=wt,
                             admin=admin, resumed=resumed, _lock=lock)
        except BaseException:
            self._unlock_slot(slot, lock)
            raise

    def release(self, ws: Workspace, *, delete_branch: bool = False) -> None:
        """Clean the slot for its next task and give it back."""
        try:
            self._kill_escaped(ws.path, task_of(ws))
            problem = self.verify(ws.path, ws.admin)
            if problem is not None:
                with self._admin():
                    self._quarantine_slot(ws.slot, ws.path, problem, task_of(ws))
                    # its entry goes too, so that its branch is no longer checked out
                    self.git.run("worktree", "prune", check=False)
            else:
                wt = ws.git
                self._scrub(wt)
                # detach HEAD at the commit it is on (as `git checkout --detach` would,
                # without refreshing the whole index again: the scrub just did)
                wt.run("update-ref", "--no-deref", "-m", "taskmill: release the slot", "HEAD",
                       "HEAD", check=False)
            if delete_branch:
                self._delete_branch(ws.branch)
            if problem is None:
                (self.root / f"w{ws.slot}.clean").touch()
        finally:
            self._unlock_slot(ws.slot, ws._lock)

    def _scrub(self, wt: Git) -> None:
        """Reset and clean a slot: ``wt`` must be bound to it (:meth:`Git.bound`)."""
        git_dir = wt.git_dir()
        if (git_dir / "MERGE_HEAD").exists():
            wt.run("merge", "--abort", check=False)
        if (git_dir / "rebase-merge").exists() or (git_dir / "rebase-apply").exists():
            wt.run("rebase", "--abort", check=False)
        wt.run("reset", "-q", "--hard")
        wt.run("clean", "-q", "-ffdx" if self.clean_ignored else "-ffd")

    def copy_includes(self, dest: Path) -> None:
        """Copy the gitignored files ``.taskmill/include`` lists into ``dest`` (a checkout
        of the repository, e.g. the merge queue's)."""
        self._copy_includes(dest)

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
