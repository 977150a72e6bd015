"""``.taskmill/config.toml``: the committed, shared settings of a repository's ledger."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InvalidInput

DEFAULT_CONFIG = """\
# taskmill settings for this repository (commit this file).
prefix = "{prefix}"            # task ids look like {prefix}-a1b2

[checks]
# Project checks the merge queue runs before landing a branch, e.g.
# commands = ["python -m pytest -q"]
commands = []

[run]
# agent = "claude"             # the default agent; `taskmill run --agent NAME` overrides
# max_iterations = 5
# workers = 4

# [agents.claude]
# adapter = "claude"
# model = "sonnet"
# pass_env = ["ANTHROPIC_API_KEY"]
"""


@dataclass
class Config:
    prefix: str
    checks: list[str] = field(default_factory=list)
    run: dict[str, Any] = field(default_factory=dict)
    agents: dict[str, dict[str, Any]] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)


def load_config(path: Path) -> Config:
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{path}: {exc}", hint="fix the TOML syntax of the config file") from exc
    prefix = raw.get("prefix")
    if not isinstance(prefix, str) or not prefix:
        raise InvalidInput(f"{path}: `prefix` must be a non-empty string")
    checks_table = raw.get("checks", {})
    commands: Any = checks_table.get("commands", []) if isinstance(checks_table, dict) else checks_table
    if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
        raise InvalidInput(f"{path}: [checks] commands must be a list of strings")
    run = raw.get("run", {})
    if not isinstance(run, dict):
        raise InvalidInput(f"{path}: [run] must be a table")
    agents = raw.get("agents", {})
    if not isinstance(agents, dict) or not all(isinstance(v, dict) for v in agents.values()):
        raise InvalidInput(f"{path}: [agents.NAME] entries must be tables")
    return Config(prefix=prefix, checks=list(commands), run=run, agents=agents, raw=raw)
