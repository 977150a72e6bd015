"""Helpers shared by the adapters: errors, NDJSON reading, numbers, rate-limit detection.

Nothing here reads the process environment or the clock; callers pass ``now`` in.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from taskmill.agents.base import AgentConfig, TurnRequest, Usage
from taskmill.errors import ConfigError

MAX_ARGV_PROMPT = 100_000
"""Prompts longer than this (in bytes) are not put on the command line (Linux caps one
argument at 128 KiB); the agent is told to read ``request.prompt_file`` instead."""

STDERR_SUFFIX = ".stderr"
"""The runner writes the agent's stderr to ``<log_path>.stderr``."""


class AgentConfigError(ConfigError, ValueError):
    """An ``[agents.NAME]`` table or the environment it needs is wrong."""


def stderr_path(log_path: Path) -> Path:
    """Where the runner writes the agent's stderr."""
    return log_path.with_name(log_path.name + STDERR_SUFFIX)


def read_stderr_tail(request: TurnRequest, limit: int = 65_536) -> str:
    """The last ``limit`` bytes of the agent's stderr ("" when there is none)."""
    path = stderr_path(request.log_path)
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def prompt_arg(request: TurnRequest) -> str:
    """The prompt as a command-line argument, or a pointer to the prompt file if too long.

    A prompt starting with ``-`` gets a leading newline so no CLI parses it as an option.
    """
    if len(request.prompt.encode("utf-8")) > MAX_ARGV_PROMPT:
        return (
            f"Your full instructions are in the file {request.prompt_file}. "
            "Read that file first and carry out what it says."
        )
    return "\n" + request.prompt if request.prompt.startswith("-") else request.prompt


def default_mcp_command() -> list[str]:
    """``taskmill mcp`` run by this very Python (an absolute path: agents get a clean PATH)."""
    return [sys.executable, "-m", "taskmill", "mcp"] if sys.executable else ["taskmill", "mcp"]


def mcp_command(config: AgentConfig) -> list[str]:
    """The command that starts taskmill's MCP server (``options.mcp_command`` overrides)."""
    value = config.options.get("mcp_command")
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        return [str(v) for v in value]
    if isinstance(value, str) and value:
        return value.split()
    return default_mcp_command()


def mcp_stdio_server(config: AgentConfig) -> dict[str, Any]:
    """``command`` and ``args`` of taskmill's MCP server, the start of an agent's server entry."""
    command = mcp_command(config)
    return {"command": command[0], "args": command[1:]}


def option_str(config: AgentConfig, key: str) -> str | None:
    value = config.options.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise AgentConfigError(f"agent {config.name!r}: option {key!r} must be a string")
    return value


def option_list(config: AgentConfig, key: str) -> list[str]:
    value = config.options.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return [str(v) for v in value]
    raise AgentConfigError(f"agent {config.name!r}: option {key!r} must be a list of strings")


def executable(config: AgentConfig, default: str) -> list[str]:
    """The CLI to start: ``config.command`` when set (e.g. a path), else ``default``."""
    return list(config.command) if config.command else [default]


def iter_json_lines(output: str) -> Iterator[dict[str, Any]]:
    """The JSON objects of an NDJSON stream; other lines (and a truncated last line) are skipped."""
    for line in output.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            yield value


def non_json_lines(output: str) -> list[str]:
    """The lines of ``output`` that are not JSON objects."""
    lines = []
    for line in output.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("{"):
            try:
                json.loads(stripped)
                continue
            except ValueError:
                pass
        lines.append(stripped)
    return lines


def as_int(value: object) -> int:
    """A token count from JSON: ints and numeric strings, anything else is 0."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else 0
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return 0
        return int(number) if math.isfinite(number) else 0
    return 0


def as_float(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


MAX_REPORTED_TOKENS = 10**10
"""More tokens than this in one turn is not a real figure."""
MAX_REPORTED_COST_USD = 10.0**6
"""Nor is more than this many dollars."""
MAX_RETRY_AFTER_S = 7 * 86400.0


def _reported_number(value: object) -> float | None:
    """``value`` as a finite number (ints, floats, numeric strings), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _reject(usage: Usage, name: str, value: object) -> None:
    text = repr(value) if isinstance(value, str) else str(value)
    usage.invalid.append(f"{name}={short(text, 60)}")


def usage_tokens(usage: Usage, name: str, value: object) -> int:
    """A token count the agent reported: 0 when absent (None). A value that is not a
    number, negative, not finite or above :data:`MAX_REPORTED_TOKENS` counts 0 and is
    recorded in ``usage.invalid``."""
    if value is None:
        return 0
    number = _reported_number(value)
    if number is None or not 0 <= number <= MAX_REPORTED_TOKENS:
        _reject(usage, name, value)
        return 0
    return int(number)


def usage_cost(usage: Usage, name: str, value: object) -> float | None:
    """A cost in USD the agent reported: None when absent; an invalid one (see
    :func:`usage_tokens`, limit :data:`MAX_REPORTED_COST_USD`) is None and recorded."""
    if value is None:
        return None
    number = _reported_number(value)
    if number is None or not 0 <= number <= MAX_REPORTED_COST_USD:
        _reject(usage, name, value)
        return None
    return number


TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def validate_usage(usage: Usage) -> None:
    """Reject what no parser should have let through (totals included): a token field or
    cost that is negative, not finite or absurdly large is not counted (0 / None) and is
    recorded in ``usage.invalid``; a bad ``retry_after_s`` is dropped (the back-off
    applies)."""
    for name in TOKEN_FIELDS:
        value = getattr(usage, name)
        if usage_tokens(usage, name, value) != value:
            setattr(usage, name, 0)
    if usage.cost_usd is not None:
        usage.cost_usd = usage_cost(usage, "cost_usd", usage.cost_usd)
    retry = usage.retry_after_s
    if retry is not None and not (math.isfinite(retry) and 0 <= retry <= MAX_RETRY_AFTER_S):
        _reject(usage, "retry_after_s", retry)
        usage.retry_after_s = None


def invalid_usage_message(usage: Usage) -> str | None:
    """``invalid usage reported by the agent: input_tokens=-5, ...`` (None when all valid)."""
    if not usage.invalid:
        return None
    return "invalid usage reported by the agent: " + ", ".join(dict.fromkeys(usage.invalid))


def as_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def get_dict(obj: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def short(text: str, limit: int = 500) -> str:
    """One line, at most ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error_text(value: object) -> str:
    """An error field that may be a string, or an object with ``message``/``type``/``data``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in ("message", "msg", "error"):
            inner = value.get(key)
            if isinstance(inner, str) and inner:
                return inner
        data = value.get("data")
        if isinstance(data, dict):
            return error_text(data)
        return json.dumps(value, sort_keys=True)
    return "" if value is None else str(value)


_RATE_LIMIT = re.compile(
    r"\b429\b|\b529\b|rate[ _-]?limit|usage[ _-]?limit|quota[ _-]?exceeded|exceeded your"
    r"(?: current)? quota|insufficient_quota|resource[ _-]?exhausted|too many requests|"
    r"overloaded|limit reached|hit your [\w -]{0,40}limit",
    re.IGNORECASE,
)
_EPOCH = re.compile(r"limit reached\|(\d{9,11})", re.IGNORECASE)
_SECONDS = re.compile(
    r"(?:retry[ _-]?after|retry in|retry_delay|retrydelay|try again in|resets? in|wait)"
    r"\"?\s*[:=]?\s*\"?(\d+(?:\.\d+)?)\s*(ms|s|sec|secs|seconds?|m|mins?|minutes?|h|hours?)?\b",
    re.IGNORECASE,
)
_DURATION_AFTER = re.compile(
    r"(?:try again in|retry in|resets? in)\s+((?:\d+(?:\.\d+)?\s*(?:days?|d|hours?|h|minutes?|"
    r"mins?|m|seconds?|secs?|s)\b[\s,and]*)+)",
    re.IGNORECASE,
)
_DURATION_PART = re.compile(
    r"(\d+(?:\.\d+)?)\s*(days?|d|hours?|h|minutes?|mins?|m|seconds?|secs?|s|ms)\b", re.IGNORECASE
)
_UNIT = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def _unit_seconds(unit: str | None) -> float:
    if not unit:
        return 1.0
    unit = unit.lower()
    if unit == "ms":
        return 0.001
    if unit.startswith("min"):
        return 60.0
    return _UNIT.get(unit[0], 1.0)


def is_rate_limit_text(text: str) -> bool:
    return bool(_RATE_LIMIT.search(text))


def retry_after_from_text(text: str, now: float) -> float | None:
    """Seconds until a limit resets, as far as the message says (``now``: Unix time)."""
    epoch = _EPOCH.search(text)
    if epoch:
        return max(0.0, float(epoch.group(1)) - now)
    duration = _DURATION_AFTER.search(text)
    if duration:
        total = sum(
            float(num) * _unit_seconds(unit)
            for num, unit in _DURATION_PART.findall(duration.group(1))
        )
        if total > 0:
            return total
    match = _SECONDS.search(text)
    if match:
        return float(match.group(1)) * _unit_seconds(match.group(2))
    return None


def detect_rate_limit(texts: list[str], now: float) -> tuple[bool, float | None]:
    """Whether any of ``texts`` (error messages) reports a rate or usage limit, and when it resets."""
    limited = False
    retry: float | None = None
    for text in texts:
        if not text or not is_rate_limit_text(text):
            continue
        limited = True
        found = retry_after_from_text(text, now)
        if found is not None:
            retry = found if retry is None else max(retry, found)
    return limited, retry


def settle_errors(
    usage: Usage,
    errors: list[str],
    exit_code: int | None,
    *,
    now: float,
    evidence: Sequence[str] = (),
    shown: Sequence[str] | None = None,
) -> None:
    """Set ``usage.error`` from ``errors`` and, when the turn failed, the rate-limit fields.

    The turn failed when there are errors or the exit code is neither 0 nor None; rate
    limits are then looked for in ``errors`` and ``evidence`` (stderr, retry messages).
    ``usage.error`` joins ``shown`` (default: the non-empty errors).
    """
    failed = bool(errors) or exit_code not in (0, None)
    if errors:
        usage.error = short(" | ".join([e for e in errors if e] if shown is None else shown))
    if failed:
        usage.rate_limited, usage.retry_after_s = detect_rate_limit([*errors, *evidence], now)


def write_json_settings(path: Path, updates: dict[str, Any]) -> None:
    """Deep-merge ``updates`` into the JSON file at ``path`` (created if missing)."""
    try:
        current: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        current = {}
    if not isinstance(current, dict):
        current = {}

    def merge(into: dict[str, Any], new: dict[str, Any]) -> None:
        for key, value in new.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value

    merge(current, updates)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current, indent=2) + "\n", encoding="utf-8")
