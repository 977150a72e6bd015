"""How the mill runs one agent turn: the :class:`TurnRunner` seam.

The default is :func:`taskmill.agents.runner.run_turn`, the only place that starts agent
processes. Tests hand the mill an in-process one instead
(:class:`taskmill.testing.turns.ScriptedTurns`), which edits the worktree in Python, so
a whole run is exercised without spawning a single agent.
"""

from __future__ import annotations

import threading
from typing import Protocol

from ..agents.base import AgentAdapter, AgentConfig, TurnRequest, TurnResult
from ..containment import Containment
from ..sandbox import Mounts


class TurnRunner(Protocol):
    """Runs one turn of ``adapter`` for ``request`` (see :func:`~taskmill.agents.runner.run_turn`
    for the contract: it never raises because the agent failed; ``cancel`` cuts the turn,
    ``kill_now`` without a grace)."""

    def __call__(self, adapter: AgentAdapter, config: AgentConfig, request: TurnRequest, *,
                 cancel: threading.Event | None = None,
                 kill_now: threading.Event | None = None,
                 containment: Containment | None = None,
                 mounts: Mounts | None = None) -> TurnResult:
        ...


def default_turn_runner() -> TurnRunner:
    """The real one (imported when first needed: it pulls in subprocess supervision)."""
    from ..agents.runner import run_turn

    return run_turn
