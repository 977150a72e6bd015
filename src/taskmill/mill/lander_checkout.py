"""The merge queue's own checkout, where the project checks of a batch run.

One linked worktree at ``<git common dir>/taskmill/lander``, used only under the merge lock
(so by one landing at a time, across the runs of a repository). Like the pool's slots
(:mod:`taskmill.mill.worktrees`) every git command for it is bound to it (``GIT_DIR`` = its
entry under git's ``worktrees/``, ``GIT_WORK_TREE`` = the directory), so nothing a check did
to its ``.git`` can make a command act on the user's checkout. A checkout that is not a
proper worktree any more (a killed ``git worktree add``, a ``.git`` removed or replaced) is
removed and made again: it holds nothing but a commit's files.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from ..errors import GitError
from ..locks import FileLock
from ..paths import git_common_dir
from .git import Git
from .worktrees import slot_problem

Checkout = Callable[[str], AbstractContextManager[Path]]
"""``checkout(commit)``: a context manager giving a directory holding ``commit``'s files."""


class LanderCheckout:
    """The default :data:`Checkout`: a dedicated worktree, reset to each commit.

    ``prepare`` is called with the directory after each reset (e.g. to copy the files
    listed in ``.taskmill/include``). ``admin_lock``: the file that serialises taskmill's
    ``git worktree add`` and ``prune`` (the pool's, so that its prune never takes apart a
    worktree being added here)."""

    def __init__(self, git: Git, *, path: Path | None = None, admin_lock: Path | None = None,
                 prepare: Callable[[Path], None] | None = None,
                 clean_ignored: bool = False) -> None:
        common = git_common_dir(git.cwd)
        self.git = git.at(git.cwd)
        self.path = path or common / "taskmill" / "lander"
        self.entries = common / "worktrees"
        self.admin_lock = admin_lock or common / "taskmill" / "worktrees" / "admin.lock"
        self.prepare = prepare
        self.clean_ignored = clean_ignored

    def __call__(self, commit: str) -> AbstractContextManager[Path]:
        return self._at(commit)

    @contextmanager
    def _at(self, commit: str) -> Iterator[Path]:
        wt = self.ready(commit)
        # a checkout only ever used under the merge lock: git's lock files are a killed run's
        admin = Path(wt.env["GIT_DIR"])
        for name in ("index.lock", "HEAD.lock"):
            (admin / name).unlink(missing_ok=True)
        wt.run("checkout", "-q", "--detach", "-f", commit)
        wt.run("clean", "-q", "-ffdx" if self.clean_ignored else "-ffd")
        if self.prepare is not None:
            self.prepare(self.path)
        yield self.path

    def ready(self, commit: str) -> Git:
        """git bound to the checkout, made (again) when it is not a proper worktree."""
        admin = self._admin_of()
        if admin is not None and self._complete(admin) and slot_problem(self.path, admin) is None:
            return self.git.bound(self.path, admin)
        with self._admin():
            if admin is not None:
                shutil.rmtree(admin, ignore_errors=True)
            if self.path.is_symlink() or self.path.is_file():
                self.path.unlink()
            shutil.rmtree(self.path, ignore_errors=True)
            self.git.run("worktree", "prune", check=False)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.git.run("worktree", "add", "--detach", "--force", str(self.path), commit)
        admin = self._admin_of()
        problem = slot_problem(self.path, admin)
        if admin is None or problem is not None:
            raise GitError(f"could not make the merge queue's checkout {self.path}: {problem}")
        return self.git.bound(self.path, admin)

    @staticmethod
    def _complete(admin: Path) -> bool:
        """Not left half-made by a killed ``git worktree add`` (which locks the entry until
        it is done; taskmill never locks its worktrees)."""
        return not (admin / "locked").exists() and all(
            (admin / name).is_file() and (admin / name).stat().st_size > 0
            for name in ("commondir", "HEAD"))

    def _admin_of(self) -> Path | None:
        """git's entry whose ``gitdir`` names this checkout (read from git's files)."""
        wanted = (self.path / ".git").resolve()
        for admin in sorted(self.entries.iterdir()) if self.entries.is_dir() else []:
            with contextlib.suppress(OSError, UnicodeDecodeError):
                back = Path((admin / "gitdir").read_text(encoding="utf-8").strip())
                if back.resolve() == wanted:
                    return admin
        return None

    @contextmanager
    def _admin(self) -> Iterator[None]:
        with FileLock(self.admin_lock):
            yield
