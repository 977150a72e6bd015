"""Find adapters by name, and read ``[agents.NAME]`` tables into :class:`AgentConfig`.

Built-in adapters: exec, claude, codex, gemini, opencode, qwen, aider, scripted. Others come
from installed packages through the entry-point group ``taskmill.agents``::

    [project.entry-points."taskmill.agents"]
    mycli = "mypkg.adapter:MyAdapter"  # a class or factory (called with no arguments), or an instance

Entry points are only looked at when a name is not built in.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Any

from taskmill.agents.aider import AiderAdapter
from taskmill.agents.base import AgentAdapter, AgentConfig
from taskmill.agents.claude import ClaudeAdapter
from taskmill.agents.codex import CodexAdapter
from taskmill.agents.common import AgentConfigError
from taskmill.agents.exec import ExecAdapter
from taskmill.agents.gemini import GeminiAdapter
from taskmill.agents.opencode import OpencodeAdapter
from taskmill.agents.qwen import QwenAdapter
from taskmill.agents.scripted import ScriptedAgent

ENTRY_POINT_GROUP = "taskmill.agents"

BUILTIN: dict[str, Callable[[], AgentAdapter]] = {
    "exec": ExecAdapter,
    "claude": ClaudeAdapter,
    "codex": CodexAdapter,
    "gemini": GeminiAdapter,
    "opencode": OpencodeAdapter,
    "qwen": QwenAdapter,
    "aider": AiderAdapter,
    "scripted": ScriptedAgent,
}

KNOWN_KEYS = (
    "adapter", "model", "args", "env", "pass_env", "base_url", "api_key_env", "command", "mcp",
)


class UnknownAdapterError(LookupError):
    """No built-in or installed adapter has this name."""


def _entry_points() -> list[metadata.EntryPoint]:
    return list(metadata.entry_points(group=ENTRY_POINT_GROUP))


def known_adapter_names() -> list[str]:
    """Built-in names first, then installed third-party ones."""
    names = list(BUILTIN)
    names += sorted({ep.name for ep in _entry_points()} - set(names))
    return names


def _looks_like_adapter(obj: object) -> bool:
    return callable(getattr(obj, "prepare", None)) and callable(getattr(obj, "parse", None))


def get_adapter(name: str) -> AgentAdapter:
    """The adapter called ``name``; raises :class:`UnknownAdapterError` listing known names."""
    factory = BUILTIN.get(name)
    if factory is not None:
        return factory()
    for ep in _entry_points():
        if ep.name != name:
            continue
        try:
            loaded: Any = ep.load()
            adapter = loaded
            if isinstance(loaded, type) or (callable(loaded) and not _looks_like_adapter(loaded)):
                adapter = loaded()  # a class or a factory function
        except Exception as exc:
            raise UnknownAdapterError(
                f"cannot load agent adapter {name!r} from entry point {ep.value!r}: {exc!r}"
            ) from exc
        if not _looks_like_adapter(adapter):
            raise UnknownAdapterError(
                f"entry point {ep.value!r} for agent adapter {name!r} (group "
                f"{ENTRY_POINT_GROUP!r}) is not an adapter: it needs prepare() and parse()"
            )
        if not isinstance(getattr(adapter, "name", None), str):
            adapter.name = name
        result: AgentAdapter = adapter
        return result
    raise UnknownAdapterError(
        f"unknown agent adapter {name!r}; known adapters: {', '.join(known_adapter_names())} "
        f"(third-party adapters register in the entry-point group {ENTRY_POINT_GROUP!r})"
    )


def _where(name: str, key: str) -> str:
    return f"[agents.{name}] {key}"


def _str(name: str, key: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise AgentConfigError(f"{_where(name, key)} must be a non-empty string, got {value!r}")
    return value


def _str_list(name: str, key: str, value: object, *, split: bool) -> tuple[str, ...]:
    if split and isinstance(value, str):
        return tuple(shlex.split(value))
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    kind = "a list of strings" + (" or a command line string" if split else "")
    raise AgentConfigError(f"{_where(name, key)} must be {kind}, got {value!r}")


def _str_map(name: str, key: str, value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise AgentConfigError(f"{_where(name, key)} must be a table of strings, got {value!r}")
    result: dict[str, str] = {}
    for k, v in value.items():
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise AgentConfigError(
                f"{_where(name, key)}.{k} must be a string (or number), got {v!r}"
            )
        result[str(k)] = str(v)
    return result


def agent_config_from_toml(name: str, table: Mapping[str, Any]) -> AgentConfig:
    """Validate one ``[agents.NAME]`` table. ``adapter`` defaults to ``NAME`` when that is a
    built-in adapter; ``command`` and ``args`` may be a list or one shell-quoted string; keys
    other than the known ones go to ``options``."""
    if not isinstance(table, Mapping):
        raise AgentConfigError(f"[agents.{name}] must be a table, got {table!r}")
    if "adapter" in table:
        adapter = _str(name, "adapter", table["adapter"])
    elif name in BUILTIN:
        adapter = name
    else:
        raise AgentConfigError(
            f"[agents.{name}] needs adapter = one of {', '.join(BUILTIN)} (or an installed "
            f"third-party adapter)"
        )
    model = _str(name, "model", table["model"]) if "model" in table else None
    base_url = _str(name, "base_url", table["base_url"]) if "base_url" in table else None
    if base_url is not None and not base_url.startswith(("http://", "https://")):
        raise AgentConfigError(f"{_where(name, 'base_url')} must be an http(s) URL, got {base_url!r}")
    api_key_env = _str(name, "api_key_env", table["api_key_env"]) if "api_key_env" in table else None
    mcp = table.get("mcp", False)
    if not isinstance(mcp, bool):
        raise AgentConfigError(f"{_where(name, 'mcp')} must be true or false, got {mcp!r}")
    command = _str_list(name, "command", table.get("command", ()), split=True)
    if adapter == "exec" and not command:
        raise AgentConfigError(
            f'[agents.{name}] uses adapter "exec" and needs command = ["prog", "arg", ...]'
        )
    return AgentConfig(
        name=name,
        adapter=adapter,
        model=model,
        args=_str_list(name, "args", table.get("args", ()), split=True),
        env=_str_map(name, "env", table.get("env", {})),
        pass_env=_str_list(name, "pass_env", table.get("pass_env", ()), split=False),
        base_url=base_url,
        api_key_env=api_key_env,
        command=command,
        mcp=mcp,
        options={k: v for k, v in table.items() if k not in KNOWN_KEYS},
    )
