"""Find adapters by name, and read ``[agents.NAME]`` tables into :class:`AgentConfig`.

Adapters come from plugins (:mod:`taskmill.plugins`, hook ``register_agents``): the
built-ins (exec, claude, codex, gemini, opencode, qwen, aider, scripted) are registered by
taskmill's own plugin, others by installed packages in the entry-point group ``taskmill``::

    [project.entry-points.taskmill]
    hello = "taskmill_hello"  # a module with a @hookimpl register_agents(register)

An installed package may also name one adapter directly in the group ``taskmill.agents``::

    [project.entry-points."taskmill.agents"]
    mycli = "mypkg.adapter:MyAdapter"  # a class or factory (called with no arguments), or an instance

Installed packages are only looked at when a name is not built in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Any

from taskmill.agents.base import AgentAdapter, AgentConfig
from taskmill.agents.common import AgentConfigError
from taskmill.agents.exec import ExecAdapter as ExecAdapter  # re-exported
from taskmill.errors import NotFound
from taskmill.plugins import plugins

ENTRY_POINT_GROUP = "taskmill.agents"
WHERE_FROM = ("third-party adapters come from plugins (entry-point group 'taskmill', hook "
              f"register_agents) or the entry-point group {ENTRY_POINT_GROUP!r}")

BUILTIN: dict[str, Callable[[], AgentAdapter]] = {
    name: reg.create for name, reg in plugins().registered("agents", installed=False).items()
    if reg.builtin}
"""The built-in adapters' factories (each imports its adapter's module when called)."""

class UnknownAdapterError(NotFound, LookupError):
    """No built-in or installed adapter has this name."""


def _entry_points() -> list[metadata.EntryPoint]:
    return list(metadata.entry_points(group=ENTRY_POINT_GROUP))


def third_party_names() -> list[str]:
    """The adapters installed packages add (plugins and ``taskmill.agents`` entry points)."""
    names = {ep.name for ep in _entry_points()} | set(plugins().registered("agents"))
    return sorted(names - set(BUILTIN))


def adapter_sources() -> tuple[list[tuple[str, str]], list[str]]:
    """Every adapter with where it comes from (``built-in``, ``plugin NAME (DIST)``, ``entry
    point ...``), built-ins first; and the installed plugins that could not be loaded."""
    manager = plugins()
    rows = [(name, "built-in") for name in BUILTIN]
    for name, reg in manager.registered("agents").items():
        if name not in BUILTIN:
            rows.append((name, f"plugin {reg.plugin}" + (f" ({reg.dist})" if reg.dist else "")))
    seen = {name for name, _ in rows}
    for ep in sorted(_entry_points(), key=lambda ep: ep.name):
        if ep.name not in seen:
            seen.add(ep.name)
            rows.append((ep.name, f"entry point {ENTRY_POINT_GROUP} ({ep.value})"))
    return rows, list(manager.problems)


def known_adapter_names() -> list[str]:
    """Built-in names first, then installed third-party ones."""
    return [*BUILTIN, *third_party_names()]


def _looks_like_adapter(obj: object) -> bool:
    return callable(getattr(obj, "prepare", None)) and callable(getattr(obj, "parse", None))


def get_adapter(name: str) -> AgentAdapter:
    """The adapter called ``name``; raises :class:`UnknownAdapterError` listing known names."""
    factory = BUILTIN.get(name)
    if factory is not None:
        return factory()
    found = plugins().registered("agents").get(name)
    if found is not None:
        where = f"plugin {found.plugin!r} ({found.dist or 'registered by hand'})"
        return _make(name, lambda: found.load(), where)
    for ep in _entry_points():
        if ep.name == name:
            return _make(name, ep.load, f"entry point {ep.value!r} (group {ENTRY_POINT_GROUP!r})")
    raise UnknownAdapterError(
        f"unknown agent adapter {name!r}; known adapters: {', '.join(known_adapter_names())} "
        f"({WHERE_FROM})"
    )


def _make(name: str, load: Callable[[], Any], where: str) -> AgentAdapter:
    """The adapter ``load`` gives: an instance, or a class or factory to call."""
    try:
        loaded: Any = load()
        adapter = loaded
        if isinstance(loaded, type) or (callable(loaded) and not _looks_like_adapter(loaded)):
            adapter = loaded()  # a class or a factory function
    except Exception as exc:
        raise UnknownAdapterError(
            f"cannot load agent adapter {name!r} from {where}: {exc!r}") from exc
    if not _looks_like_adapter(adapter):
        raise UnknownAdapterError(
            f"{where} for agent adapter {name!r} is not an adapter: it needs prepare() and "
            "parse()")
    if not isinstance(getattr(adapter, "name", None), str):
        adapter.name = name
    result: AgentAdapter = adapter
    return result


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
