"""``.taskmill/config.toml``: the committed, shared settings of a repository's ledger."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, InvalidInput

if TYPE_CHECKING:  # imported where needed: read commands of a config without agents skip it
    from .agents.base import AgentConfig
    from .config_schema import ExecutorTable

DEFAULT_CONFIG = """\
# taskmill settings for this repository (commit this file).
prefix = "{prefix}"            # task ids look like {prefix}-a1b2

[checks]
# Project checks the merge queue runs before landing a branch, e.g.
# commands = ["python -m pytest -q"]
commands = []
# Checks get a clean environment (not taskmill's): PATH, HOME, locale, plus these.
# env = {{ PYTHONPATH = "src" }}
# pass_env = ["JAVA_HOME"]

[run]
# agent = "claude"             # the default agent; `taskmill run --agent NAME` overrides
# max_iterations = 5
# workers = 4

# [merge]                      # the merge queue
# batch_max = 5                # branches landed together, the project checks run once on them
# batch_wait = 0               # seconds to wait for a batch to fill when fewer are waiting
# flaky_retries = 1            # a red batch is checked again this often, then bisected
# speculate = "auto"           # check the next batch on top of the one ahead ("auto": >2 cores)

# [sandbox]                    # every agent turn and check runs in a sandbox (bubblewrap)
# enabled = "auto"             # true: refuse to run without one; false: off
# read_only = ["~/.cargo"]     # more paths a turn may read (writable = [...] to write)
# network = ["pypi.org:443"]   # HTTPS (CONNECT) to these only, through taskmill's proxy
# memory_mb = 4096             # per turn / check, all its processes (a cgroup)
# max_processes = 512          # per turn / check (a cgroup's pids.max)

# [agents.claude]
# adapter = "claude"
# model = "sonnet"
# pass_env = ["ANTHROPIC_API_KEY"]
"""


BUILTIN_AGENTS = ("claude", "codex", "gemini", "opencode", "qwen", "aider")
"""Agent names usable without an ``[agents.NAME]`` table (the adapter of that name)."""


@dataclass
class Config:
    prefix: str
    checks: list[str] = field(default_factory=list)
    """``[checks] commands``."""
    run: dict[str, Any] = field(default_factory=dict)
    """The ``[run]`` keys the file gives (checked; ``-`` in names replaced by ``_``)."""
    agents: dict[str, AgentConfig] = field(default_factory=dict)
    """The ``[agents.NAME]`` tables (checked)."""
    raw: dict[str, Any] = field(default_factory=dict)
    check_env: dict[str, str] = field(default_factory=dict)
    """``[checks] env``: variables set for the check commands."""
    check_pass_env: list[str] = field(default_factory=list)
    """``[checks] pass_env``: variables copied from taskmill's environment for the checks."""
    sandbox: dict[str, Any] = field(default_factory=dict)
    """The ``[sandbox]`` keys the file gives (checked; ``-`` in names replaced by ``_``)."""
    merge: dict[str, Any] = field(default_factory=dict)
    """The ``[merge]`` keys the file gives (checked; ``-`` in names replaced by ``_``)."""
    path: Path | None = None
    source: bytes | None = None
    """The file's bytes as read and checked by :func:`load_config`, when the check may be
    remembered (None: the file is checked at every start, e.g. it names a third-party
    agent adapter)."""

    @property
    def beads_compat(self) -> bool:
        """``[ledger] beads_compat`` (checked)."""
        table = self.raw.get("ledger", {})
        return bool(table.get("beads_compat", table.get("beads-compat", False)))

    @property
    def executor(self) -> ExecutorTable:
        """``[executor]`` (checked): where ``taskmill run`` runs the tasks' workflows."""
        from .config_schema import ExecutorTable

        return ExecutorTable.model_validate(self.raw.get("executor", {}))

    @property
    def ledger_url(self) -> str | None:
        """``[ledger] url`` (checked): the shared PostgreSQL ledger, or None (SQLite)."""
        url = self.raw.get("ledger", {}).get("url")
        return url if isinstance(url, str) and url else None

    def agent_names(self) -> list[str]:
        """The configured agents, then the built-in ones without a table."""
        return [*self.agents, *(name for name in BUILTIN_AGENTS if name not in self.agents)]

    def agent(self, name: str) -> AgentConfig | None:
        """The agent called ``name``: its table, or a built-in adapter used as it is."""
        if name in self.agents:
            return self.agents[name]
        return agent_config(name, {}) if name in BUILTIN_AGENTS else None

    def agent_problem(self, name: str) -> str | None:
        """Why ``name`` cannot be a task's agent (None when it can)."""
        if self.agent(name) is not None:
            return None
        import difflib

        names = self.agent_names()
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
        guess = f" (did you mean {close[0]!r}?)" if close else ""
        return (f"agent {name!r} is neither an [agents.{name}] table in "
                f"{self.path or '.taskmill/config.toml'} nor a built-in agent{guess}; "
                f"agents: {', '.join(names)}")

    def check_agent(self, name: str, *, what: str = "--agent") -> None:
        """Refuse an agent name that names no agent (:class:`InvalidInput`)."""
        problem = self.agent_problem(name)
        if problem is not None:
            raise InvalidInput(f"{what}: {problem}",
                               hint=f"add [agents.{name}] with an adapter to "
                                    ".taskmill/config.toml, or use one of the agents listed")


def with_ledger_url(text: str, url: str) -> str:
    """The config file's ``text`` with ``[ledger] url`` set to ``url`` (every other line,
    comments included, as it was)."""
    import re

    import tomli_w

    line = tomli_w.dumps({"url": url})
    lines = text.splitlines(keepends=True)
    header = next((i for i, ln in enumerate(lines) if re.match(r"\s*\[ledger\]\s*(#.*)?$", ln)),
                  None)
    if header is None:
        return text + ("" if text.endswith("\n") or not text else "\n") + "\n[ledger]\n" + line
    end = next((i for i in range(header + 1, len(lines))
                if re.match(r"\s*\[", lines[i])), len(lines))
    for i in range(header + 1, end):
        if re.match(r"\s*url\s*=", lines[i]):
            lines[i] = line
            return "".join(lines)
    lines.insert(header + 1, line)
    return "".join(lines)


def set_ledger_url(path: Path, url: str) -> None:
    """Write ``[ledger] url`` into the config file at ``path`` (checked before it replaces
    the file: a file that would not load is not written)."""
    text = with_ledger_url(path.read_text(encoding="utf-8"), url)
    from .config_schema import check_config

    problems = check_config(tomllib.loads(text))
    if problems:
        raise ConfigError(f"{path}: {'; '.join(problems)}", hint="nothing was changed")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def load_config(path: Path, *, stamp: Path | None = None) -> Config:
    """Read and check ``path``; every problem of the file is reported at once, each naming
    the table and key (:class:`ConfigError`).

    ``stamp``: a file (in the ledger's untracked run directory) remembering the last file
    that passed the check. When the file is byte for byte that one, and the schema is the
    same, the check (and the import of pydantic, ~100 ms or more) is skipped; a config naming a
    third-party adapter is always checked (installed packages may have changed)."""
    try:
        data = path.read_bytes()
        raw = tomllib.loads(data.decode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}", hint="fix the TOML syntax of the config file") from exc
    key = _stamp_key(data, raw) if stamp is not None else None
    if stamp is None or key is None or not _stamped(stamp, key):
        from .config_schema import check_config

        problems = check_config(raw)
        if problems:
            raise ConfigError(f"{path}: {'; '.join(problems)}",
                              hint="fix the config file; nothing was done")
        if stamp is not None and key is not None:
            _write_stamp(stamp, key)
    config = config_from_toml(raw, path)
    config.source = data if key is not None else None
    return config


def config_from_toml(raw: Mapping[str, Any], path: Path | None = None) -> Config:
    """The :class:`Config` of a config file that passed the check."""
    checks = raw.get("checks", {})
    if isinstance(checks, list):
        checks = {"commands": checks}
    return Config(
        prefix=raw["prefix"], checks=list(checks.get("commands", [])),
        run={k.replace("-", "_"): v for k, v in raw.get("run", {}).items()},
        agents={name: agent_config(name, table)
                for name, table in raw.get("agents", {}).items()},
        raw=dict(raw), check_env={k: str(v) for k, v in checks.get("env", {}).items()},
        check_pass_env=list(checks.get("pass_env", [])), path=path,
        sandbox={k.replace("-", "_"): v for k, v in raw.get("sandbox", {}).items()},
        merge={k.replace("-", "_"): v for k, v in raw.get("merge", {}).items()})


def agent_config(name: str, table: Mapping[str, Any]) -> AgentConfig:
    """The :class:`AgentConfig` of an ``[agents.NAME]`` table that passed the check."""
    import shlex

    from .agents.base import AgentConfig

    def line(value: Any) -> tuple[str, ...]:
        return tuple(shlex.split(value)) if isinstance(value, str) else tuple(value)

    return AgentConfig(
        name=name, adapter=table.get("adapter", name), model=table.get("model"),
        args=line(table.get("args", ())),
        env={k: str(v) for k, v in table.get("env", {}).items()},
        pass_env=tuple(table.get("pass_env", ())), base_url=table.get("base_url"),
        api_key_env=table.get("api_key_env"), command=line(table.get("command", ())),
        mcp=table.get("mcp", False), proxy=table.get("proxy"),
        proxy_api=table.get("proxy_api"),
        options={k: v for k, v in table.items() if k not in AGENT_KEYS})


AGENT_KEYS = ("adapter", "model", "args", "env", "pass_env", "base_url", "api_key_env",
              "command", "mcp", "proxy", "proxy_api")
"""The keys of an ``[agents.NAME]`` table every adapter takes; the others are ``options``."""
_BUILTIN_ADAPTERS = ("exec", *BUILTIN_AGENTS, "scripted")


def _stamp_key(data: bytes, raw: Mapping[str, Any]) -> str | None:
    """What the check of this file depends on; None when it cannot be remembered."""
    agents = raw.get("agents", {})
    if not isinstance(agents, Mapping) or not all(
            isinstance(t, Mapping) and t.get("adapter", name) in _BUILTIN_ADAPTERS
            for name, t in agents.items()):
        return None
    import hashlib

    try:
        schema = Path(__file__).with_name("config_schema.py").stat()
    except OSError:
        return None
    return f"{hashlib.sha256(data).hexdigest()} {schema.st_size} {schema.st_mtime_ns}\n"


def _stamped(stamp: Path, key: str) -> bool:
    try:
        return stamp.read_text(encoding="utf-8") == key
    except (OSError, UnicodeDecodeError):
        return False


def _write_stamp(stamp: Path, key: str) -> None:
    """Best effort: a read-only ledger directory just means the check is not skipped."""
    import os

    tmp = stamp.with_name(f"{stamp.name}.{os.getpid()}.tmp")
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(key, encoding="utf-8")
        tmp.replace(stamp)
    except OSError:
        tmp.unlink(missing_ok=True)
