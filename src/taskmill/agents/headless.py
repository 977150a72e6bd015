"""What the adapters of headless coding-agent CLIs share.

:class:`HeadlessAdapter` is their common base: it holds the wall clock and implements
``parse`` once (read the tail of the agent's stderr, run the adapter's own output reader,
fall back to the table's model). Subclasses implement ``prepare`` and ``read_output``.
:func:`invocation` builds the :class:`Invocation` every adapter returns from ``prepare``.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence

from taskmill.agents.base import AgentConfig, Invocation, TurnRequest, Usage
from taskmill.agents.common import read_stderr_tail
from taskmill.agents.envs import build_env


def invocation(
    config: AgentConfig,
    request: TurnRequest,
    argv: Sequence[str],
    extra: Mapping[str, str] | None = None,
    *,
    stdin: str | None = None,
) -> Invocation:
    """``argv`` run in the task's worktree with the clean environment plus ``extra``."""
    return Invocation(
        argv=tuple(argv), env=build_env(config, request, extra), cwd=request.worktree, stdin=stdin
    )


class HeadlessAdapter(ABC):
    """Base of the adapters whose ``parse`` reads the CLI's stdout plus its stderr tail."""

    name: str
    install_hint: str

    def __init__(self, wall_clock: Callable[[], float] = time.time) -> None:
        self.wall_clock = wall_clock

    @abstractmethod
    def read_output(
        self, output: str, exit_code: int | None, *, now: float, stderr: str
    ) -> Usage:
        """Usage from the CLI's stdout; ``stderr`` is the tail of its stderr."""

    def parse(
        self, config: AgentConfig, request: TurnRequest, output: str, exit_code: int | None
    ) -> Usage:
        stderr = read_stderr_tail(request)
        usage = self.read_output(output, exit_code, now=self.wall_clock(), stderr=stderr)
        usage.model = usage.model or config.model
        return usage
