"""The hooks a taskmill plugin implements (with pluggy, as simonw/llm and Datasette do).

Each hook is called with a ``register`` function; a plugin calls it once per thing it adds::

    from taskmill.plugins import hookimpl

    @hookimpl
    def register_agents(register):
        register("mycli", MyAdapter)                  # a class or factory ...
        register("other", "mypkg.other:OtherAdapter")  # ... or its import path, loaded on use

``register(name, factory)``: ``factory`` is called with no arguments to make the thing (an
import path ``"module:attribute"`` is imported first, only when the thing is used). Names are
unique per kind: a built-in name is never taken over by a plugin, and of two plugins naming
the same thing, the first one loaded keeps it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "taskmill"
"""pluggy's project name, and the entry-point group plugin packages register in."""

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[[str, "Callable[[], Any] | str"], None]


@hookspec
def register_agents(register: Register) -> None:
    """Agent adapters (:class:`taskmill.agents.base.AgentAdapter`), by the name an
    ``[agents.NAME]`` table's ``adapter`` key uses."""


@hookspec
def register_stores(register: Register) -> None:
    """Ledger stores, by name."""


@hookspec
def register_executors(register: Register) -> None:
    """Mill executors (what runs the tasks' work), by name."""


@hookspec
def register_landers(register: Register) -> None:
    """Landers (:class:`taskmill.mill.lander.Lander`), by name."""
