"""The clean environment every agent runs with.

Agents never inherit taskmill's environment: they would pick up whatever keys and
settings the parent has. :func:`build_env` starts from nothing and adds, in this order
(later wins):

1. basics: ``PATH`` (taskmill's own without taskmill's virtualenv, or a default),
   ``HOME=request.home``, ``LANG``,
   ``LC_ALL`` (when the parent has one), ``TERM=dumb``, ``NO_COLOR=1``, ``CI=1``, ``USER``,
   ``TMPDIR`` (when the parent has one),
   ``TASKMILL_PROMPT_FILE`` and ``TASKMILL_USAGE_FILE``;
2. ``extra``: what the adapter needs (endpoint, key, CLI switches);
3. ``config.pass_env``: copied from ``request.parent_env`` when present there;
4. ``config.env``;
5. ``request.taskmill_env`` (TASKMILL_TASK_ID, TASKMILL_WORKTREE, ...).

Nothing else from ``request.parent_env`` reaches the agent; ``VIRTUAL_ENV`` never does, and
taskmill's own virtualenv is removed from ``PATH`` (:func:`clean_path`), so an agent's (or a
check's) ``python`` is not the interpreter taskmill runs in.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from taskmill.agents.base import AgentConfig, TurnRequest
from taskmill.agents.common import AgentConfigError

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
DEFAULT_LANG = "C.UTF-8"


def own_venv_bins(parent_env: Mapping[str, str], *, prefix: str = sys.prefix,
                   base_prefix: str = sys.base_prefix) -> list[str]:
    """The ``bin`` directories of taskmill's own virtualenv: ``prefix/bin`` when taskmill runs
    in a virtualenv (``prefix != base_prefix``), and ``$VIRTUAL_ENV/bin``."""
    bins = []
    if os.path.normpath(prefix) != os.path.normpath(base_prefix):
        bins.append(str(Path(prefix) / "bin"))
    virtual_env = parent_env.get("VIRTUAL_ENV")
    if virtual_env:
        bins.append(str(Path(virtual_env) / "bin"))
    return bins


def clean_path(parent_env: Mapping[str, str], *, prefix: str = sys.prefix,
               base_prefix: str = sys.base_prefix) -> str:
    """taskmill's ``PATH`` (or :data:`DEFAULT_PATH`) without taskmill's own virtualenv.

    ``prefix``/``base_prefix`` default to this interpreter's ``sys.prefix`` and
    ``sys.base_prefix``; tests pass others."""
    path = parent_env.get("PATH") or DEFAULT_PATH
    drop = {_same(d) for d in own_venv_bins(parent_env, prefix=prefix, base_prefix=base_prefix)}
    kept = [entry for entry in path.split(os.pathsep) if entry and _same(entry) not in drop]
    return os.pathsep.join(kept) or DEFAULT_PATH


def _same(directory: str) -> str:
    """A directory in a form that compares equal however it is spelled (symlinks resolved)."""
    try:
        return os.path.realpath(directory)
    except (OSError, ValueError):
        return os.path.normpath(directory)


def basic_env(parent_env: Mapping[str, str], home: str) -> dict[str, str]:
    """What every process taskmill starts for a task gets (agents and checks): ``PATH``
    without taskmill's virtualenv, ``HOME``, locale, ``USER``, ``TMPDIR``, and a plain,
    colourless, non-interactive terminal (``TERM=dumb``, ``NO_COLOR=1``, ``CI=1``)."""
    env = {
        "PATH": clean_path(parent_env),
        "HOME": home,
        "LANG": parent_env.get("LANG") or DEFAULT_LANG,
        "TERM": "dumb",
        "NO_COLOR": "1",
        "CI": "1",
        "USER": parent_env.get("USER") or "taskmill",
    }
    for name in ("LC_ALL", "TMPDIR"):
        value = parent_env.get(name)
        if value:
            env[name] = value
    return env


def base_env(request: TurnRequest) -> dict[str, str]:
    """PATH, HOME, locale and terminal basics, and the TASKMILL_*_FILE variables."""
    env = basic_env(request.parent_env, str(request.home))
    env["TASKMILL_PROMPT_FILE"] = str(request.prompt_file)
    env["TASKMILL_USAGE_FILE"] = str(request.usage_file)
    return env


def build_env(
    config: AgentConfig, request: TurnRequest, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The complete environment of one agent turn (see the module docstring for the order)."""
    env = base_env(request)
    if extra:
        env.update(extra)
    for name in config.pass_env:
        value = request.parent_env.get(name)
        if value is not None:
            env[name] = value
    env.update({str(k): str(v) for k, v in config.env.items()})
    env.update({str(k): str(v) for k, v in request.taskmill_env.items()})
    return env


def api_key(config: AgentConfig, request: TurnRequest) -> str | None:
    """The value of the variable named by ``config.api_key_env`` in taskmill's environment.

    ``None`` when the table names no variable. Raises :class:`AgentConfigError` when it names
    one that is unset or empty, so the turn fails with a message saying what to export.
    """
    name = config.api_key_env
    if not name:
        return None
    value = request.parent_env.get(name) or config.env.get(name)
    if not value:
        raise AgentConfigError(
            f"agent {config.name!r}: api_key_env = {name!r} but ${name} is not set in "
            f"taskmill's environment; export {name}=<key> before running taskmill"
        )
    return value


def with_suffix_v1(base_url: str) -> str:
    """``base_url`` ending in ``/v1`` (for OpenAI-style clients that append ``/responses``)."""
    url = base_url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


def without_suffix_v1(base_url: str) -> str:
    """``base_url`` without a trailing ``/v1`` (for clients that append ``/v1/messages``)."""
    url = base_url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url
