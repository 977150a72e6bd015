"""The clean environment every agent runs with.

Agents never inherit taskmill's environment: they would pick up whatever keys and
settings the parent has. :func:`build_env` starts from nothing and adds, in this order
(later wins):

1. basics: ``PATH`` (taskmill's own, or a default), ``HOME=request.home``, ``LANG``,
   ``LC_ALL`` (when the parent has one), ``TERM=dumb``, ``NO_COLOR=1``, ``CI=1``, ``USER``,
   ``TMPDIR`` (when the parent has one),
   ``TASKMILL_PROMPT_FILE`` and ``TASKMILL_USAGE_FILE``;
2. ``extra``: what the adapter needs (endpoint, key, CLI switches);
3. ``config.pass_env``: copied from ``request.parent_env`` when present there;
4. ``config.env``;
5. ``request.taskmill_env`` (TASKMILL_TASK_ID, TASKMILL_WORKTREE, ...).

Nothing else from ``request.parent_env`` reaches the agent.
"""

from __future__ import annotations

from collections.abc import Mapping

from taskmill.agents.base import AgentConfig, TurnRequest
from taskmill.agents.common import AgentConfigError

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
DEFAULT_LANG = "C.UTF-8"


def base_env(request: TurnRequest) -> dict[str, str]:
    """PATH, HOME, locale and terminal basics, and the TASKMILL_*_FILE variables."""
    parent = request.parent_env
    env = {
        "PATH": parent.get("PATH") or DEFAULT_PATH,
        "HOME": str(request.home),
        "LANG": parent.get("LANG") or DEFAULT_LANG,
        "TERM": "dumb",
        "NO_COLOR": "1",
        "CI": "1",
        "USER": parent.get("USER") or "taskmill",
        "TASKMILL_PROMPT_FILE": str(request.prompt_file),
        "TASKMILL_USAGE_FILE": str(request.usage_file),
    }
    for name in ("LC_ALL", "TMPDIR"):
        value = parent.get(name)
        if value:
            env[name] = value
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
