"""The agent-adapter seam.

An adapter knows how to drive one coding-agent CLI headless: it builds the command line,
the environment and the files the CLI needs (``prepare``), and it reads tokens, cost,
session id and rate-limit signals from what the CLI printed (``parse``). Running the
process, enforcing the wall-clock limit and killing the process group is shared code in
:mod:`taskmill.agents.runner`, so every adapter gets it the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class AgentConfig:
    """One ``[agents.NAME]`` table of ``.taskmill/config.toml``."""

    name: str
    """The key under ``[agents]``."""
    adapter: str
    """exec | claude | codex | gemini | opencode | qwen | aider | scripted."""
    model: str | None = None
    """Model name handed to the CLI, if any."""
    args: tuple[str, ...] = ()
    """Extra CLI arguments appended to the adapter's own."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Variables set for the agent."""
    pass_env: tuple[str, ...] = ()
    """Variables copied from taskmill's own environment."""
    base_url: str | None = None
    """The model endpoint, translated into the CLI's own mechanism."""
    api_key_env: str | None = None
    """The variable in taskmill's environment that holds the key for ``base_url``."""
    command: tuple[str, ...] = ()
    """The command for the ``exec`` adapter."""
    mcp: bool = False
    """Register taskmill's MCP server with the agent (where the adapter supports it)."""
    proxy: bool | None = None
    """Reach ``base_url`` through taskmill's model proxy (:mod:`taskmill.proxy`), which adds
    the key and counts the tokens. None: yes when ``base_url`` is set."""
    proxy_api: str | None = None
    """The API family the proxy authenticates for (anthropic | openai | gemini); None: the
    adapter's (``openai`` for exec and third-party adapters)."""
    options: Mapping[str, object] = field(default_factory=dict)
    """Any other keys of the table, for adapters that want more."""


@dataclass(frozen=True)
class TurnRequest:
    """Everything one agent turn needs. Built by the mill, read by the adapter."""

    task_id: str
    title: str
    iteration: int
    """1-based."""
    prompt: str
    worktree: Path
    """cwd of the agent."""
    home: Path
    """An isolated HOME for the agent (created by the caller, reused across turns)."""
    state_dir: Path
    """A per-turn scratch directory the adapter may write config files into."""
    prompt_file: Path
    usage_file: Path
    log_path: Path
    """Where the runner writes the agent's combined output."""
    parent_env: Mapping[str, str]
    """taskmill's own environment (passed in, never read from os.environ by adapters)."""
    taskmill_env: Mapping[str, str] = field(default_factory=dict)
    """TASKMILL_* variables the mill hands every agent."""
    timeout_s: float = 1800.0
    proxy_port: int | None = None
    """The model proxy's TCP port on 127.0.0.1 (None: no proxy)."""
    proxy_socket: Path | None = None
    """The same proxy on a unix socket on the host."""
    capability_socket: Path | None = None
    """The mill's ledger socket scoped to this turn (``$TASKMILL_SOCKET`` in the agent's
    environment; see :mod:`taskmill.capability`)."""


@dataclass(frozen=True)
class Invocation:
    """A prepared process: what the runner starts."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: Path
    stdin: str | None = None
    """Text fed on stdin (None: stdin is /dev/null)."""


@dataclass
class Usage:
    """What the adapter read from the CLI's output."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = None
    session_id: str | None = None
    model: str | None = None
    rate_limited: bool = False
    """The agent hit a usage or rate limit; the turn does not count."""
    retry_after_s: float | None = None
    """Seconds until the limit resets, when the CLI said so."""
    error: str | None = None
    """A short description of a failure the CLI reported."""
    invalid: list[str] = field(default_factory=list)
    """Figures the agent reported that were rejected (``"input_tokens=-5"``): negative, not
    a finite number, or absurdly large. They are not counted."""


@dataclass
class TurnResult:
    """The outcome of one turn, as the runner saw it."""

    exit_code: int | None
    timed_out: bool
    duration_s: float
    usage: Usage
    log_path: Path
    cancelled: bool = False
    limit_hit: dict[str, int] | None = None
    """The ``[sandbox]`` limits the turn hit (:meth:`taskmill.cgroups.CommandGroup.close`),
    e.g. ``{"memory_mb": 512, "oom_kills": 1}``."""
    sandbox_failed: str | None = None
    """The sandbox never started the agent, however often it was started
    (:mod:`taskmill.sandbox_start`): why. Not the agent's failure."""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.cancelled


class AgentAdapter(Protocol):
    """Drives one agent CLI. Implementations are stateless."""

    name: str

    def prepare(self, config: AgentConfig, request: TurnRequest) -> Invocation:
        """Build argv, env and any config files (under ``request.home`` / ``state_dir``)."""
        ...

    def parse(self, config: AgentConfig, request: TurnRequest, output: str, exit_code: int | None) -> Usage:
        """Read usage, cost, session id, errors and rate limits from the CLI's output.

        ``output`` is the CLI's stdout (stderr is in the log file, and also passed to
        adapters that print usage there via ``request.log_path``).
        """
        ...
