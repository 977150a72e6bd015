"""Find adapters by name, and read ``[agents.NAME]`` tables into :class:`AgentConfig`.

Built-in adapters: exec, claude, codex, gemini, opencode, qwen, aider, scripted. Others come
from installed packages through the entry-point group ``taskmill.agents``::

    [project.entry-points."taskmill.agents"]
    mycli = "mypkg.adapter:MyAdapter"  # a class or factory (called with no arguments), or an instance

Entry points are only looked at when a name is not built in.
"""

from __future__ import annotations

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


def agent_config_from_toml(name: str, table: Mapping[str, Any]) -> AgentConfig:
    """Check one ``[agents.NAME]`` table against its adapter's schema
    (:mod:`taskmill.config_schema`). ``adapter`` defaults to ``NAME`` when that is a built-in
    adapter; ``command`` and ``args`` may be a list or one shell-quoted string; the adapter's
    own keys go to ``options`` (a third-party adapter gets every key it is given). Raises
    :class:`AgentConfigError` naming the table and the key."""
    from taskmill.config_schema import AgentTableError, agent_table

    try:
        return agent_table(name, table)
    except AgentTableError as exc:
        raise AgentConfigError(str(exc)) from None
