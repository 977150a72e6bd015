"""What a ``taskmill worker`` works out for its runs once, not on every run's first task.

A worker builds a context for each ``taskmill run`` it works for (its first task pays for
it, on the task's critical path). Most of what goes into one does not change from run to
run, and is found here once:

- per worker (:meth:`RunSetups.warm`, on a thread started once the worker polls, while it
  waits for its first task): whether PID namespaces and the sandbox work here (each a probe that
  starts a process), the agents' adapters and the turn runner imported, the clone's git
  identity, and the sandbox choice for the settings a plain ``taskmill run`` has (the
  committed ``[run]`` table);
- per distinct run settings (:meth:`RunSetups.sandbox`): the containment and the sandbox
  choice, which depend on the run's ``contain``, the ``[sandbox]`` table and the checks'
  environment only; a run with other settings (or after the config changed) gets its own.
"""

from __future__ import annotations

import importlib
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..agents.registry import get_adapter
from ..config import Config
from ..containment import Containment, containment
from ..mill.engine import Mill
from ..mill.git import Git, identity_env
from ..mill.settings import RunSettings


def preload(*modules: str) -> threading.Thread:
    """Import ``modules`` on a thread of their own: a worker starting loads what it needs
    next while its git commands run (an import that fails fails again where it is needed)."""

    def load() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:
                return

    thread = threading.Thread(target=load, daemon=True, name="taskmill-worker-preload")
    thread.start()
    return thread


@dataclass(frozen=True)
class SandboxChoice:
    """What :meth:`~taskmill.mill.engine.Mill.choose_sandbox` made of one set of settings."""

    containment: Containment
    check_env: Mapping[str, str]
    info: dict[str, Any]
    unsandboxed: str
    limits_warning: str


def sandbox_key(mill: Mill) -> str:
    """What a sandbox choice depends on: the run's ``contain``, ``[sandbox]``, and the
    checks' environment (before the sandbox's HOME is put in)."""
    return json.dumps([mill.settings.contain, mill.config.sandbox,
                       sorted(mill.check_env.items())], sort_keys=True, default=str)


class RunSetups:
    """A worker's cache of the setup its runs share (see the module's doc)."""

    def __init__(self, git: Git) -> None:
        self.git = git
        self._sandboxes: dict[str, SandboxChoice] = {}
        self._lock = threading.Lock()
        self._identity: dict[str, str] | None = None
        self._identity_lock = threading.Lock()
        self.warmed = threading.Event()
        """Set when :meth:`warm` is over (whatever it found)."""

    def agent_git_env(self) -> dict[str, str]:
        """The clone's git identity, handed to agents (the worker's own clone: read once)."""
        with self._identity_lock:
            if self._identity is None:
                self._identity = identity_env(self.git)
            return dict(self._identity)

    def sandbox(self, mill: Mill) -> tuple[dict[str, Any], str]:
        """``mill.choose_sandbox()`` with ``mill.containment`` set for its settings, made
        once per distinct :func:`sandbox_key`: ``mill`` gets the containment and checks'
        environment it made. Returns what the sandbox allows and the unsandboxed warning.
        A sandbox with a network allowlist proxy (started for its run) is not shared."""
        key = sandbox_key(mill)
        with self._lock:
            choice = self._sandboxes.get(key)
            if choice is None:
                mill.containment = containment(mill.settings.contain, mill.env)
                info, unsandboxed = mill.choose_sandbox()
                choice = SandboxChoice(mill.containment, dict(mill.check_env), info,
                                       unsandboxed, mill.limits_warning)
                if mill.netproxy is None:
                    self._sandboxes[key] = choice
                return dict(info), unsandboxed
        mill.containment = choice.containment
        mill.check_env = dict(choice.check_env)
        mill.limits_warning = choice.limits_warning
        return dict(choice.info), choice.unsandboxed

    def warm(self, config: Config, build: Callable[[RunSettings], Mill]) -> None:
        """Probe and load, once, what the worker's runs need: meant for a thread started
        with the worker. What fails here is left for the run that needs it (which says so)."""
        try:
            from ..mill.turn_runner import default_turn_runner

            default_turn_runner()  # imports the agent runner (subprocess supervision)
            for agent in config.agents.values():
                try:
                    get_adapter(agent.adapter)  # imports its module
                except Exception:
                    continue
            self.agent_git_env()
            settings = RunSettings.from_config(config.run, {})
            if not config.sandbox.get("network"):  # that one starts a proxy for its run
                self.sandbox(build(settings))
        except Exception:
            pass
        finally:
            self.warmed.set()

    def start(self, config: Config, build: Callable[[RunSettings], Mill]) -> threading.Thread:
        """:meth:`warm` on a thread of its own."""
        thread = threading.Thread(target=self.warm, args=(config, build), daemon=True,
                                  name="taskmill-worker-warm")
        thread.start()
        return thread

