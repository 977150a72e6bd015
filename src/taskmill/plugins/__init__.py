"""Plugins: what adds agents, stores, executors and landers to taskmill, built-ins included.

A plugin is a module implementing the hooks of :mod:`.hookspecs`. taskmill's own things are
registered by :mod:`.builtin`; an installed package adds its own by naming its module in the
entry-point group ``taskmill``::

    [project.entry-points.taskmill]
    hello = "taskmill_hello"

Installed plugins are looked at only when something is asked for that no built-in provides
(or when everything is listed), so a run that uses built-ins pays nothing for them. A plugin
that fails to import is reported (:attr:`Plugins.problems`), never fatal.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Literal

import pluggy

from . import builtin, hookspecs
from .hookspecs import PROJECT, hookimpl

__all__ = ["BUILTIN", "PROJECT", "Kind", "Plugins", "Registration", "hookimpl", "plugins"]

Kind = Literal["agents", "stores", "executors", "landers"]
KINDS: tuple[Kind, ...] = ("agents", "stores", "executors", "landers")
BUILTIN = "taskmill"
"""The name the built-ins are registered under (their ``plugin``)."""


@dataclass(frozen=True)
class Registration:
    """One thing a plugin registered."""

    name: str
    target: Callable[[], Any] | str
    """A factory, or the import path (``module:attribute``) of one."""
    plugin: str
    """The plugin that registered it (``taskmill`` for the built-ins)."""
    dist: str | None = None
    """The installed package the plugin came from (None: built in, or registered by hand)."""

    @property
    def builtin(self) -> bool:
        return self.plugin == BUILTIN

    def load(self) -> Callable[[], Any]:
        """The factory (its module imported, for an import path)."""
        if not isinstance(self.target, str):
            return self.target
        module, _, attr = self.target.partition(":")
        found: Any = importlib.import_module(module)
        for part in attr.split(".") if attr else ():
            found = getattr(found, part)
        factory: Callable[[], Any] = found
        return factory

    def create(self) -> Any:
        """A new one: the factory called with no arguments."""
        return self.load()()


def _installed_entry_points() -> list[metadata.EntryPoint]:
    return list(metadata.entry_points(group=PROJECT))


class Plugins:
    """A plugin manager with the built-ins registered; installed plugins loaded on demand."""

    def __init__(self, *, entry_points: Callable[[], Iterable[metadata.EntryPoint]]
                 = _installed_entry_points) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.pm.register(builtin, name=BUILTIN)
        self._entry_points = entry_points
        self._installed: bool = False
        self._dists: dict[str, str] = {}
        self.problems: list[str] = []
        """Installed plugins that could not be loaded, each with why."""
        self._cache: dict[tuple[Kind, bool], dict[str, Registration]] = {}

    def register(self, plugin: object, name: str | None = None) -> None:
        """Add a plugin by hand (a module or an object with hook implementations)."""
        self.pm.register(plugin, name=name)
        self._cache.clear()

    def load_installed(self) -> None:
        """Load the plugins installed packages name in the entry-point group ``taskmill``
        (once)."""
        if self._installed:
            return
        self._installed = True
        for ep in self._entry_points():
            if self.pm.has_plugin(ep.name) or self.pm.is_blocked(ep.name):
                continue
            try:
                module = ep.load()
                self.pm.register(module, name=ep.name)
            except Exception as exc:
                self.problems.append(f"plugin {ep.name!r} ({ep.value}) could not be loaded: "
                                     f"{exc!r}")
                continue
            if ep.dist is not None:
                self._dists[ep.name] = ep.dist.name
        self._cache.clear()

    def registered(self, kind: Kind, *, installed: bool = True) -> dict[str, Registration]:
        """What the plugins register of ``kind``, by name: built-ins first, in their order.
        ``installed=False``: the built-ins and plugins added by hand only."""
        if installed:
            self.load_installed()
        key = (kind, installed)
        if key not in self._cache:
            self._cache[key] = self._collect(kind, installed)
        return self._cache[key]

    def _collect(self, kind: Kind, installed: bool) -> dict[str, Registration]:
        found: dict[str, Registration] = {}
        hook = getattr(self.pm.hook, f"register_{kind}")
        for impl in hook.get_hookimpls()[::-1]:  # the order pluggy calls them in
            plugin = impl.plugin_name
            if not installed and plugin in self._dists:
                continue

            def register(name: str, target: Callable[[], Any] | str,
                         _plugin: str = plugin) -> None:
                if not isinstance(name, str) or not name:
                    self.problems.append(f"plugin {_plugin!r} registered {kind} under the "
                                         f"name {name!r}: a name must be a non-empty string")
                    return
                # the first to name it keeps it: built-ins are called first
                found.setdefault(name, Registration(name, target, _plugin,
                                                    self._dists.get(_plugin)))

            try:
                impl.function(register)
            except Exception as exc:
                self.problems.append(f"plugin {plugin!r} failed in register_{kind}: {exc!r}")
        return found


_default: Plugins | None = None


def plugins() -> Plugins:
    """The process's plugins (made on first use)."""
    global _default
    if _default is None:
        _default = Plugins()
    return _default
