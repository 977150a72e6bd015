"""The lander seam: how a task's finished branch reaches the target branch.

The worker hands a branch that passed its checks to a :class:`Lander` and acts on the
:class:`LandResult`: landed or satisfied (done), conflict or checks_failed (back to the
agent), already_landed (a resumed task found on the target). The first lander is the git
merge queue (:class:`~.land.MergeQueue`: one branch at a time, merged with the target's tip,
the project checks run on the result, the target moved with a compare-and-swap); a lander
that opens pull requests, or one that lands branches in batches, is one more module that
satisfies this protocol, registered through the ``register_landers`` plugin hook
(:mod:`taskmill.plugins`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..containment import Containment
    from ..model import Task
    from .checks import ChecksResult
    from .worktrees import Workspace


@dataclass
class LandResult:
    outcome: str
    """landed | satisfied | conflict | checks_failed | already_landed"""
    commit: str | None = None
    detail: str = ""
    checks: ChecksResult | None = None
    checkout_note: str | None = None


class Lander(Protocol):
    """Lands task branches on one target branch; safe to call from several workers."""

    target: str
    """The branch work lands on."""
    ref: str
    """Its full ref (``refs/heads/<target>``): where a landed task's trailer is looked for."""
    cancel: threading.Event | None
    """Set when the run stops: a landing still verifying is cut (nothing lands)."""
    containment: Containment | None
    """How the checks a lander runs are contained (None: as the run's own processes)."""

    def tip(self) -> str:
        """The target's commit now (new branches are cut from it)."""
        ...

    def land(self, task: Task, ws: Workspace, *, lap: int = 1,
             attempt_log: Path | None = None) -> LandResult:
        """Land ``ws``'s branch for ``task`` (its ``lap``-th time: a reopened task lands
        again); what checks the lander runs write to ``attempt_log``."""
        ...
