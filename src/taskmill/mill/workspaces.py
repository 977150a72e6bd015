"""The workspace seam: where an agent works on a task, and what becomes of it after.

A :class:`Workspaces` hands out a :class:`~.worktrees.Workspace` on the task's branch and
takes it back; between the two, the worker asks it to repair what a turn broke. The first
implementation is the pool of git worktree slots (:class:`~.worktrees.WorktreePool`);
another (containers, remote machines) is one more module with these methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .worktrees import Workspace


class Workspaces(Protocol):
    def prune(self) -> None:
        """At a run's start: take apart what runs that died left half-made."""
        ...

    def acquire(self, task_id: str, base: str, *, fresh: bool = False) -> Workspace:
        """A workspace on the task's branch: the existing one (resumed work) or one cut
        from ``base``; ``fresh``: the task was never worked."""
        ...

    def release(self, ws: Workspace, *, delete_branch: bool = False) -> None:
        """Clean the workspace and give it back (and delete its branch: the task landed)."""
        ...

    def settle(self, ws: Workspace) -> None:
        """After a turn or a check: repair what they broke of the workspace itself."""
        ...

    def recover_branch(self, ws: Workspace, fallback: str) -> str | None:
        """Put the workspace back on its branch if a turn moved it; says what was done."""
        ...

    def restart_branch(self, ws: Workspace, tip: str, task_id: str) -> str:
        """Start the task's branch again from ``tip`` (it shares no history with the
        target; its work is kept reachable); returns what was done."""
        ...

    def shares_history(self, commit: str, base: str) -> bool:
        """Whether ``commit`` has history in common with ``base``."""
        ...

    def drop_branch(self, task_id: str) -> None:
        """Delete a landed task's branch."""
        ...
