"""``research.toml``: what a research run optimises, how it measures, when it stops.

Exactly the keys issue 14 names; an unknown key is an error that names it (and the keys
that exist). ``taskmill research init`` writes :data:`INIT_TOML` (every key, commented) and
:data:`INIT_PROGRAM` (the instructions every experiment's prompt starts from).
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import ConfigError

CONFIG_FILE = "research.toml"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIGMA = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*sigma\s*$")


def parse_duration(value: object) -> float:
    """Seconds from ``"5m"``, ``"90s"``, ``"1.5h"``, ``"250ms"`` or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"must be a duration like \"5m\" or \"90s\", got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(f"must be a duration like \"5m\", \"90s\" or \"1h\", got {value!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"must be a positive duration, got {value!r}")
    return seconds


class Stop(BaseModel):
    """``stop = {...}``: the run ends at the first of these that is reached."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    experiments: Annotated[int, Field(ge=1)] | None = None
    """Experiments recorded (all verdicts) in this research, over every run."""
    hours: Annotated[float, Field(gt=0)] | None = None
    """Wall-clock hours of this run."""
    cost: Annotated[float, Field(ge=0)] | None = None
    """USD spent by the agents in this research, over every run."""
    no_improvement: Annotated[int, Field(ge=1)] | None = None
    """Experiments in a row (the latest ones) without a kept improvement."""


class ResearchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    branch: Annotated[str, Field(min_length=1)] = "research/main"
    """Where kept improvements accumulate (never the user's branch)."""
    metric: Annotated[str, Field(min_length=1)]
    """The command that prints ``metric: <float>`` (or a JSON object with ``metric``)."""
    direction: Literal["minimize", "maximize"] = "minimize"
    editable: Annotated[list[str], Field(min_length=1)] = ["**"]
    """Glob patterns (``**`` crosses directories) of the paths an experiment may change."""
    experiment_timeout: float = 300.0
    """Seconds one metric run may take (``"5m"`` in the file)."""
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    agent: str | None = None
    """A key of ``[agents]`` in ``.taskmill/config.toml``."""
    program: str = "program.md"
    baseline_runs: Annotated[int, Field(ge=1, le=100)] = 3
    accept: str | float = "2sigma"
    """``"Nsigma"`` (N standard deviations of the baseline's runs) or an absolute delta."""
    verify_runs: Annotated[int, Field(ge=0, le=100)] = 2
    stop: Stop = Stop()

    @field_validator("experiment_timeout", mode="before")
    @classmethod
    def _timeout(cls, value: object) -> float:
        return parse_duration(value)

    @field_validator("accept", mode="before")
    @classmethod
    def _accept(cls, value: object) -> str | float:
        if isinstance(value, bool):
            raise ValueError(f'must be "2sigma" (any N) or a number, got {value!r}')
        if isinstance(value, int | float):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"must be a non-negative delta, got {value!r}")
            return float(value)
        if isinstance(value, str) and _SIGMA.match(value):
            return value.strip()
        raise ValueError(f'must be "Nsigma" (e.g. "2sigma") or an absolute delta (e.g. '
                         f"0.001), got {value!r}")

    @field_validator("branch")
    @classmethod
    def _branch(cls, value: str) -> str:
        if (value.startswith(("-", "/", "refs/")) or value.endswith(("/", ".lock"))
                or ".." in value or re.search(r"[\s~^:?*\[\\]", value)):
            raise ValueError(f"is not a usable branch name: {value!r}")
        return value

    def threshold(self, sigma: float) -> float:
        """The improvement a candidate needs over the best (the noise band's half-width)."""
        if isinstance(self.accept, float):
            return self.accept
        match = _SIGMA.match(self.accept)
        assert match is not None
        return float(match.group(1)) * sigma

    def better(self, value: float, than: float, sigma: float) -> bool:
        """``value`` beats ``than`` by more than the acceptance threshold."""
        gain = than - value if self.direction == "minimize" else value - than
        return gain > self.threshold(sigma)

    def at_least_as_good(self, value: float, than: float) -> bool:
        return value <= than if self.direction == "minimize" else value >= than


def load_research_config(path: Path) -> ResearchConfig:
    """The config in ``path``; a missing file, bad TOML or a bad key is a :class:`ConfigError`
    that says what is wrong and how to fix it."""
    if not path.is_file():
        raise ConfigError(f"{path} does not exist",
                          hint="`taskmill research init` writes one (commented)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    try:
        return ResearchConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: " + "; ".join(_problem(e) for e in exc.errors()),
                          hint=f"the keys are: {', '.join(ResearchConfig.model_fields)}; "
                               f"stop takes {', '.join(Stop.model_fields)}") from None


def _problem(error: object) -> str:
    assert isinstance(error, dict)
    loc = ".".join(str(p) for p in error.get("loc", ()))
    if error.get("type") == "extra_forbidden":
        known = list(Stop.model_fields if loc.startswith("stop.") else ResearchConfig.model_fields)
        near = difflib.get_close_matches(loc.split(".")[-1], known, n=1)
        return f"unknown key {loc!r}" + (f" (did you mean {near[0]!r}?)" if near else "")
    message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
    return f"{loc}: {message}"


INIT_TOML = '''\
# research.toml: taskmill research mode (`taskmill research run`).
# Agents edit the code, taskmill measures; a change is kept only when it beats the best so
# far by more than the metric's noise, re-measured in a clean worktree.

# Where kept improvements accumulate (never the branch you work on).
branch = "research/main"
# Prints `metric: <float>` (or a JSON object {{"metric": x, ...}}); other `name: value`
# lines are recorded too.
metric = {metric}
direction = "minimize"             # or "maximize"
# A change outside these globs is discarded before measuring.
editable = ["**/*.py"]
# A metric run over this is killed and recorded as a crash.
experiment_timeout = "5m"
# Agents exploring at once, each in its own worktree.
workers = 1
# An [agents.NAME] table of .taskmill/config.toml.
agent = "claude"
# The instructions every experiment's prompt starts from.
program = "program.md"
# The metric's noise is measured on the starting point this many times.
baseline_runs = 3
# A candidate must beat the best by more than this: "Nsigma" of the baseline runs, or an
# absolute delta, e.g. accept = 0.001
accept = "2sigma"
# A candidate is re-measured this many times in a clean worktree before it is kept.
verify_runs = 2
# The run stops at the first of these (leave a key out for no limit).
stop = {{ experiments = 200, hours = 8, cost = 50.0, no_improvement = 40 }}
'''

INIT_PROGRAM = """\
# Research program

You are improving this project against a measured metric. Each experiment is one focused
change: make it, and say in one line what you tried (write it to the file named by
$TASKMILL_DESCRIPTION_FILE, or as your commit's subject).

- Change only the files research.toml lists as `editable`; anything else is discarded.
- Do not change how the metric is measured.
- Prefer ideas that were not tried yet (the prompt lists what was).
"""
