"""How a run is configured: ``[run]`` in config.toml, overridden by ``taskmill run`` flags."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ..agents.base import AgentConfig
from ..errors import InvalidInput


@dataclass
class RunSettings:
    target: str | None = None
    """The branch work lands on (default: the branch checked out when the run starts)."""
    workers: int = 4
    """How many tasks are worked at once."""
    max_iterations: int = 5
    """Agent turns per task before it is marked blocked."""
    turn_timeout: float = 1800.0
    """Wall-clock seconds per agent turn; the whole process group is killed after."""
    check_timeout: float = 900.0
    """Wall-clock seconds per check command."""
    max_tokens: int | None = None
    """Per-task budget of input + output tokens."""
    max_cost: float | None = None
    """Per-task budget in USD."""
    no_change_limit: int = 2
    """Consecutive turns without a change to the worktree that trip the breaker."""
    same_failure_limit: int = 3
    """Times the same failing check output may repeat before the breaker trips."""
    agent: str | None = None
    """The default agent (a key of [agents])."""
    rate_limit_backoff: float = 60.0
    """Pause after a rate limit that gives no reset time (doubles, up to 30 min)."""
    clean_ignored: bool = False
    """Also remove gitignored files when a worktree is reset (slower; loses build caches)."""
    only: list[str] = field(default_factory=list)
    """Only these task ids (and nothing else)."""
    max_tasks: int | None = None
    """Stop dispatching after this many tasks."""
    allow_unchecked: bool = False
    """Land tasks that have no checks and no project checks (unverified)."""
    grace: float = 30.0
    """Seconds in-flight turns get to finish after the first Ctrl-C / SIGTERM."""
    contain: str = "auto"
    """How nothing an agent turn or check starts outlives it: ``pidns`` (a PID namespace per
    turn), ``group`` (process group kill plus a sweep), ``auto`` (``pidns`` where it works)."""

    @classmethod
    def from_config(cls, run: Mapping[str, Any], overrides: Mapping[str, Any]) -> RunSettings:
        """``run``: the ``[run]`` table as :class:`taskmill.config.Config` holds it (checked
        by the schema); ``overrides``: the flags given (None: not given)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(run) - known)
        if unknown:  # the schema and this class disagree: a bug, not the user's error
            raise InvalidInput(f"[run] has unknown keys {', '.join(unknown)}",
                               hint=f"known keys: {', '.join(sorted(known))}")
        values: dict[str, Any] = {k: v for k, v in run.items() if v is not None}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def agent_cmd_config(command: str) -> AgentConfig:
    """``--agent-cmd "CMD"``: shorthand for an ``exec`` agent."""
    argv = tuple(shlex.split(command))
    if not argv:
        raise InvalidInput("--agent-cmd needs a command")
    return AgentConfig(name="cmd", adapter="exec", command=argv)
