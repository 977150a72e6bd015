"""The fake model's script: which answer each request gets.

A script is a TOML or JSON file (chosen by extension) holding a list of *turns*. One turn
is one agent conversation; its *replies* are served in order, one per model call of that
conversation. See ``docs/agents.md`` for the format; in short::

    [[turn]]
    when = "Parse the config"        # optional routing substring
    [[turn.reply]]
    tool = "write_file"              # write_file | edit_file | shell | a client tool name
    path = "calc.py"
    content = "def add(a, b):\\n    return a + b\\n"
    [[turn.reply]]
    text = "Done."
    usage = { input_tokens = 1200, output_tokens = 80 }

Failure replies: ``error = 429`` (with ``retry_after`` and ``message``), ``stall = 30``
(seconds) and ``garbage = true``. A failure reply with ``times = N`` is served N times at
its position and then gives way to the entry after it (so "fail once, then succeed" is
two entries); without ``times`` it is served every time its position is asked for.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

ReplyKind = Literal["text", "tool", "error", "stall", "garbage"]
ACTIONS = ("write_file", "edit_file", "shell")
"""Tool actions the server maps onto whatever tools the client offers."""


class ScriptError(ValueError):
    """The script file is malformed."""


@dataclass(frozen=True)
class Usage:
    """Token figures reported for one model call, in each protocol's own fields."""

    input_tokens: int
    output_tokens: int
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_creation_tokens": self.cache_creation_tokens,
        }


@dataclass(frozen=True)
class Reply:
    """One scripted answer."""

    kind: ReplyKind
    text: str | None = None
    """Text of a text reply, or text sent before a tool call."""
    tool: str | None = None
    """An action from :data:`ACTIONS`, or the exact name of a client tool (with ``args``)."""
    path: str | None = None
    content: str | None = None
    old: str | None = None
    new: str | None = None
    command: str | None = None
    args: Mapping[str, Any] | None = None
    """Literal arguments for a client tool named in ``tool``; merged over built ones."""
    status: int | None = None
    retry_after: float | None = None
    message: str | None = None
    stall: float | None = None
    times: int | None = None
    usage: Usage | None = None

    @property
    def is_failure(self) -> bool:
        return self.kind in ("error", "stall", "garbage")


@dataclass(frozen=True)
class Turn:
    """One scripted conversation."""

    replies: tuple[Reply, ...]
    when: str | None = None
    index: int = 0
    """Position of the turn in the script (0-based), for logs."""

    def position(self, index: int) -> tuple[Reply, ...] | None:
        """The entries that answer the ``index``-th model call (see :func:`positions`)."""
        groups = positions(self.replies)
        return groups[index] if index < len(groups) else None


def positions(replies: tuple[Reply, ...]) -> list[tuple[Reply, ...]]:
    """Group replies by the model call they answer.

    A failure reply with ``times`` shares its position with the entries after it, up to
    and including the first entry without ``times``.
    """
    groups: list[tuple[Reply, ...]] = []
    pending: list[Reply] = []
    for reply in replies:
        pending.append(reply)
        if not (reply.is_failure and reply.times is not None):
            groups.append(tuple(pending))
            pending = []
    if pending:
        groups.append(tuple(pending))
    return groups


@dataclass(frozen=True)
class SideConfig:
    """How requests that carry no tools (titles, quota checks, routers) are answered."""

    text: str = "OK."
    usage: Usage = field(default_factory=lambda: Usage(input_tokens=12, output_tokens=3))


@dataclass(frozen=True)
class Script:
    turns: tuple[Turn, ...]
    side: SideConfig = field(default_factory=SideConfig)
    models: tuple[str, ...] = ("fake-model",)
    final_text: str = "Done."
    """Served when a conversation asks for more replies than its turn has."""


_REPLY_KEYS = {
    "text",
    "tool",
    "path",
    "content",
    "old",
    "new",
    "command",
    "args",
    "error",
    "status",
    "retry_after",
    "message",
    "stall",
    "garbage",
    "times",
    "usage",
}
_USAGE_KEYS = {"input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens"}


def _opt_str(data: Mapping[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ScriptError(f"{where}: {key!r} must be a string")
    return value


def _opt_num(data: Mapping[str, Any], key: str, where: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ScriptError(f"{where}: {key!r} must be a non-negative number")
    return float(value)


def parse_usage(data: Any, where: str) -> Usage:
    if not isinstance(data, Mapping):
        raise ScriptError(f"{where}: 'usage' must be a table")
    unknown = set(data) - _USAGE_KEYS
    if unknown:
        raise ScriptError(f"{where}: unknown usage keys {sorted(unknown)}")
    values: dict[str, int] = {}
    for key in _USAGE_KEYS:
        value = data.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ScriptError(f"{where}: usage.{key} must be a non-negative integer")
        values[key] = value
    return Usage(**values)


def parse_reply(data: Any, where: str) -> Reply:
    if not isinstance(data, Mapping):
        raise ScriptError(f"{where}: a reply must be a table")
    unknown = set(data) - _REPLY_KEYS
    if unknown:
        raise ScriptError(f"{where}: unknown keys {sorted(unknown)}")
    usage = parse_usage(data["usage"], where) if "usage" in data else None
    times = data.get("times")
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
        raise ScriptError(f"{where}: 'times' must be a positive integer")
    common: dict[str, Any] = {"usage": usage, "times": times}
    failures = [k for k in ("error", "stall", "garbage") if data.get(k) not in (None, False)]
    if len(failures) > 1:
        raise ScriptError(f"{where}: only one of error/stall/garbage per reply")
    if failures == ["error"]:
        status = data["error"]
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ScriptError(f"{where}: 'error' must be an HTTP status code 400..599")
        return Reply(
            kind="error",
            status=status,
            retry_after=_opt_num(data, "retry_after", where),
            message=_opt_str(data, "message", where),
            **common,
        )
    if failures == ["stall"]:
        return Reply(kind="stall", stall=_opt_num(data, "stall", where), **common)
    if failures == ["garbage"]:
        if data["garbage"] is not True:
            raise ScriptError(f"{where}: 'garbage' must be true")
        return Reply(kind="garbage", **common)
    if times is not None:
        raise ScriptError(f"{where}: 'times' only applies to error/stall/garbage replies")
    fields: dict[str, Any] = {
        k: _opt_str(data, k, where) for k in ("text", "path", "content", "old", "new")
    }
    command = _opt_str(data, "command", where)
    tool = _opt_str(data, "tool", where)
    args = data.get("args")
    if args is not None and not isinstance(args, Mapping):
        raise ScriptError(f"{where}: 'args' must be a table")
    if tool is None:
        if fields["text"] is None:
            raise ScriptError(
                f"{where}: a reply needs 'text', 'tool', 'error', 'stall' or 'garbage'"
            )
        return Reply(kind="text", text=fields["text"], usage=usage)
    if tool == "write_file" and (fields["path"] is None or fields["content"] is None):
        raise ScriptError(f"{where}: write_file needs 'path' and 'content'")
    if tool == "edit_file" and None in (fields["path"], fields["old"], fields["new"]):
        raise ScriptError(f"{where}: edit_file needs 'path', 'old' and 'new'")
    if tool == "shell" and command is None:
        raise ScriptError(f"{where}: shell needs 'command'")
    if tool not in ACTIONS and args is None:
        raise ScriptError(f"{where}: tool {tool!r} is not one of {ACTIONS}; give its 'args'")
    return Reply(
        kind="tool",
        tool=tool,
        command=command,
        args=dict(args) if args else None,
        usage=usage,
        **fields,
    )


def parse_script(data: Any) -> Script:
    """Build a :class:`Script` from the decoded TOML/JSON document."""
    if not isinstance(data, Mapping):
        raise ScriptError("the script must be a table/object")
    unknown = set(data) - {"turn", "turns", "side", "models", "final_text"}
    if unknown:
        raise ScriptError(f"unknown top-level keys {sorted(unknown)}")
    raw_turns = data.get("turn", data.get("turns", []))
    if not isinstance(raw_turns, list):
        raise ScriptError("'turn' must be an array of tables")
    turns: list[Turn] = []
    for i, raw in enumerate(raw_turns):
        where = f"turn {i + 1}"
        if not isinstance(raw, Mapping):
            raise ScriptError(f"{where}: must be a table")
        extra = set(raw) - {"when", "reply", "replies"}
        if extra:
            raise ScriptError(f"{where}: unknown keys {sorted(extra)}")
        raw_replies = raw.get("reply", raw.get("replies", []))
        if not isinstance(raw_replies, list) or not raw_replies:
            raise ScriptError(f"{where}: needs at least one reply")
        replies = tuple(
            parse_reply(r, f"{where}, reply {j + 1}") for j, r in enumerate(raw_replies)
        )
        turns.append(Turn(replies=replies, when=_opt_str(raw, "when", where), index=i))
    side = SideConfig()
    raw_side = data.get("side")
    if raw_side is not None:
        if not isinstance(raw_side, Mapping) or set(raw_side) - {"text", "usage"}:
            raise ScriptError("'side' must be a table with 'text' and/or 'usage'")
        side = SideConfig(
            text=_opt_str(raw_side, "text", "side") or side.text,
            usage=parse_usage(raw_side["usage"], "side") if "usage" in raw_side else side.usage,
        )
    models = data.get("models", ["fake-model"])
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models) or not models:
        raise ScriptError("'models' must be a non-empty list of strings")
    final_text = _opt_str(data, "final_text", "script") or "Done."
    return Script(turns=tuple(turns), side=side, models=tuple(models), final_text=final_text)


def load_script(path: Path | str) -> Script:
    """Read a ``.toml`` or ``.json`` script file."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".toml":
            data: Any = tomllib.loads(text)
        elif path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            raise ScriptError(f"{path}: the script must be a .toml or .json file")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ScriptError(f"{path}: {exc}") from exc
    return parse_script(data)


def coerce_script(script: Script | Mapping[str, Any] | Path | str) -> Script:
    """Accept a :class:`Script`, a decoded document, or a path to a script file."""
    if isinstance(script, Script):
        return script
    if isinstance(script, Mapping):
        return parse_script(script)
    return load_script(script)
