"""The ``codex`` adapter: OpenAI Codex CLI (npm ``@openai/codex``) headless.

Command line (stdin is ``/dev/null``: ``codex exec`` otherwise waits on it)::

    codex exec --json --skip-git-repo-check --dangerously-bypass-approvals-and-sandbox
               [-m M] [ARGS...] PROMPT

Sandbox: the default bypasses Codex's own sandbox because ``git commit`` in a worktree
writes to the main repository's ``.git`` (outside the workspace a ``workspace-write``
sandbox allows). ``sandbox = "workspace-write"`` in the table selects ``--sandbox`` instead.

``CODEX_HOME`` is ``$HOME/.codex`` of the isolated HOME; ``config.toml`` there is rewritten
each turn. It always has ``check_for_update_on_startup = false`` and ``[analytics]
enabled = false``; with ``base_url`` it declares a provider (``OPENAI_BASE_URL`` is ignored
by Codex)::

    model_provider = "taskmill"
    [model_providers.taskmill]
    name = "taskmill"
    base_url = "<base_url ending in /v1>"
    env_key = "<api_key_env>"          # the key is passed in that variable
    wire_api = "responses"
    supports_websockets = false

Without ``base_url`` the key from ``api_key_env`` is passed as ``OPENAI_API_KEY`` and
``CODEX_API_KEY``. ``mcp = true`` adds ``[mcp_servers.taskmill]`` (``required``: the first
turn waits for it; Codex 0.169 offers its tools through ``tool_search``); a ``codex_config`` table
in the agent table is merged into the top level of ``config.toml``, a ``codex_provider``
table into the provider (e.g. ``{stream_max_retries = 1, request_max_retries = 1}``: Codex
reconnects 5 times on its own before giving up). Use a model name Codex knows (e.g.
``gpt-5.5``): with an unknown one it warns ("Model metadata ... not found") and does not offer
its ``apply_patch`` tool.

Parsing (NDJSON): ``thread.started.thread_id`` -> session id; ``turn.completed.usage``
(input, cached input -> cache read, cache-write input, output) summed over turns; no cost; errors from
``turn.failed``, and from ``error`` events not followed by a completed turn (Codex reports
its own reconnects as ``error`` events); ``item`` errors are kept only when the turn
failed. Rate limits: 429 / "rate limit" / "usage limit" in those errors or stderr, with
"try again in ..." as ``retry_after_s``.
"""

from __future__ import annotations

from typing import Any

import tomli_w

from taskmill.agents.base import AgentConfig, Invocation, TurnRequest, Usage
from taskmill.agents.common import (
    AgentConfigError,
    as_str,
    error_text,
    executable,
    get_dict,
    iter_json_lines,
    mcp_stdio_server,
    option_str,
    prompt_arg,
    settle_errors,
    usage_tokens,
)
from taskmill.agents.envs import api_key, with_suffix_v1
from taskmill.agents.headless import HeadlessAdapter, invocation

PROVIDER = "taskmill"


def codex_config(config: AgentConfig, request: TurnRequest) -> dict[str, Any]:
    """The content of ``$CODEX_HOME/config.toml`` for this agent."""
    doc: dict[str, Any] = {"check_for_update_on_startup": False, "analytics": {"enabled": False}}
    extra = config.options.get("codex_config")
    if extra is not None:
        if not isinstance(extra, dict):
            raise AgentConfigError(f"agent {config.name!r}: codex_config must be a table")
        doc.update(extra)
    if config.model:
        doc["model"] = config.model
    if config.base_url:
        provider: dict[str, Any] = {
            "name": PROVIDER,
            "base_url": with_suffix_v1(config.base_url),
            "wire_api": "responses",
            "supports_websockets": False,
        }
        if config.api_key_env:
            provider["env_key"] = config.api_key_env
        overrides = config.options.get("codex_provider")
        if overrides is not None:
            if not isinstance(overrides, dict):
                raise AgentConfigError(f"agent {config.name!r}: codex_provider must be a table")
            provider.update(overrides)
        doc["model_provider"] = PROVIDER
        doc.setdefault("model_providers", {})[PROVIDER] = provider
    if config.mcp:
        # required: the first turn waits for the server (and fails if it cannot start);
        # without it Codex sends the first request before a slow server is up.
        server = {**mcp_stdio_server(config), "required": True, "startup_timeout_sec": 30}
        if request.taskmill_env:
            server["env"] = dict(request.taskmill_env)
        doc.setdefault("mcp_servers", {})["taskmill"] = server
    return doc


def parse_codex_stream(
    output: str, exit_code: int | None, *, now: float, stderr: str = ""
) -> Usage:
    """Read ``codex exec --json`` output."""
    usage = Usage()
    fatal: list[str] = []
    pending: list[str] = []  # `error` events since the last completed turn
    item_errors: list[str] = []
    completed = False
    for event in iter_json_lines(output):
        kind = event.get("type")
        if kind == "thread.started":
            usage.session_id = as_str(event.get("thread_id")) or usage.session_id
        elif kind == "turn.completed":
            completed = True
            pending.clear()
            tokens = get_dict(event, "usage")
            for field, key in (("input_tokens", "input_tokens"),
                               ("cache_read_tokens", "cached_input_tokens"),
                               ("cache_write_tokens", "cache_write_input_tokens"),
                               ("output_tokens", "output_tokens")):
                count = usage_tokens(usage, key, tokens.get(key))
                setattr(usage, field, getattr(usage, field) + count)
        elif kind == "turn.failed":
            fatal.append(error_text(event.get("error")) or "turn failed")
        elif kind == "error":
            pending.append(error_text(event.get("message") or event.get("error")))
        elif kind in ("item.completed", "item.updated", "item.started"):
            item = get_dict(event, "item")
            if item.get("type") == "error":
                item_errors.append(error_text(item.get("message") or item.get("text")))
        model = as_str(event.get("model"))
        if model:
            usage.model = model
    fatal += pending[-1:]  # Codex repeats one error per reconnect attempt
    if not completed and not fatal and (output.strip() or exit_code not in (0, None)):
        fatal.append("the output ended without turn.completed")
    settle_errors(
        usage, fatal, exit_code, now=now, evidence=[*item_errors, stderr], shown=fatal
    )
    return usage


class CodexAdapter(HeadlessAdapter):
    name = "codex"
    install_hint = "npm install -g @openai/codex@0.169.0"
    read_output = staticmethod(parse_codex_stream)

    def prepare(self, config: AgentConfig, request: TurnRequest) -> Invocation:
        codex_home = request.home / ".codex"
        codex_home.mkdir(parents=True, exist_ok=True)
        extra = {"CODEX_HOME": str(codex_home)}
        key = api_key(config, request)
        if key and config.api_key_env:
            if config.base_url:
                extra[config.api_key_env] = key
            else:
                extra["OPENAI_API_KEY"] = key
                extra["CODEX_API_KEY"] = key
        (codex_home / "config.toml").write_text(
            tomli_w.dumps(codex_config(config, request)), encoding="utf-8"
        )
        argv = [*executable(config, "codex"), "exec", "--json", "--skip-git-repo-check"]
        sandbox = option_str(config, "sandbox")
        if sandbox:
            argv += ["--sandbox", sandbox]
        else:
            argv.append("--dangerously-bypass-approvals-and-sandbox")
        if config.model:
            argv += ["-m", config.model]
        argv += [*config.args, prompt_arg(request)]
        return invocation(config, request, argv, extra)
