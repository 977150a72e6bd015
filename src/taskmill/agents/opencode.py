"""The ``opencode`` adapter: opencode (npm ``opencode-ai``) headless.

Command line::

    opencode run --format json --auto --print-logs --log-level WARN [-m PROVIDER/MODEL]
                 [ARGS...] PROMPT

``--auto`` approves every permission not explicitly denied; the written config also sets
``permission`` to ``allow`` for edits, shell and web fetches. opencode retries API errors
silently (nothing on stdout), so ``--print-logs --log-level WARN`` puts its warnings and
errors (``stream error ... Rate limit exceeded``) on stderr, where rate limits are found.
``OPENCODE_DISABLE_AUTOUPDATE``, ``OPENCODE_DISABLE_LSP_DOWNLOAD`` and
``OPENCODE_DISABLE_SHARE`` are set. On its first run in a HOME opencode npm-installs
``@opencode-ai/plugin`` into ``$HOME/.config/opencode`` (~16 MB from the registry); the
isolated HOME is reused across turns, so that happens once per agent. ``env =
{npm_config_offline = "true"}`` skips it, but also breaks any ``npm install`` the agent runs,
so it is not the default.

The config is ``$HOME/.config/opencode/opencode.json`` of the isolated HOME (rewritten each
turn; ``OPENCODE_CONFIG`` points at it too). With ``base_url`` it declares a provider
``taskmill``::

    {"provider": {"taskmill": {
        "npm": "@ai-sdk/openai-compatible",          # table option provider_npm overrides
        "name": "taskmill",
        "options": {"baseURL": "<base_url>", "apiKey": "{env:<api_key_env>}"},
        "models": {"<model>": {"name": "<model>"}}}},  # table option model_cost adds "cost"
     "model": "taskmill/<model>"}

and the run gets ``-m taskmill/<model>`` and ``OPENCODE_DISABLE_MODELS_FETCH=1`` (no
models.dev lookup). The key stays out of the file: ``{env:VAR}`` is filled in by opencode from
the agent's environment. Without ``base_url``, ``model`` is passed as is (``provider/model``).

Parsing (NDJSON ``step_start``/``text``/``tool_use``/``step_finish``/``error``): tokens from
every ``step_finish.part.tokens`` (input, output, ``cache.read``, ``cache.write``) summed;
cost is the sum of ``part.cost`` (from the model's configured price); session id from
``sessionID``; errors from ``error`` events (with ``data.statusCode``); rate limits from 429 / "rate limit" there or in
the logs on stderr.
"""

from __future__ import annotations

import json
from typing import Any

from taskmill.agents.base import AgentConfig, Invocation, TurnRequest, Usage
from taskmill.agents.common import (
    AgentConfigError,
    as_str,
    error_text,
    executable,
    get_dict,
    iter_json_lines,
    mcp_command,
    option_str,
    prompt_arg,
    settle_errors,
    usage_cost,
    usage_tokens,
)
from taskmill.agents.envs import api_key
from taskmill.agents.headless import HeadlessAdapter, invocation

PROVIDER = "taskmill"
DEFAULT_NPM = "@ai-sdk/openai-compatible"
DEFAULT_PROXY_MODEL = "default"
MCP_TIMEOUT_MS = 30_000
"""opencode waits 5 s by default for an MCP server; importing the SDK takes ~1.5 s."""


def opencode_config(config: AgentConfig, request: TurnRequest) -> tuple[dict[str, Any], str | None]:
    """The ``opencode.json`` for this agent, and the ``-m`` value."""
    doc: dict[str, Any] = {
        "$schema": "https://opencode.ai/config.json",
        "autoupdate": False,
        "share": "disabled",
        "permission": {"edit": "allow", "bash": "allow", "webfetch": "allow"},
    }
    model_flag = config.model
    if config.base_url:
        model = config.model or DEFAULT_PROXY_MODEL
        if model.startswith(PROVIDER + "/"):
            model = model[len(PROVIDER) + 1 :]
        entry: dict[str, Any] = {"name": model}
        cost = config.options.get("model_cost")
        if cost is not None:
            if not isinstance(cost, dict):
                raise AgentConfigError(
                    f"agent {config.name!r}: model_cost must be a table like "
                    "{input = 3.0, output = 15.0} (USD per million tokens)"
                )
            entry["cost"] = cost
        options: dict[str, Any] = {"baseURL": config.base_url.rstrip("/")}
        if config.api_key_env:
            options["apiKey"] = "{env:" + config.api_key_env + "}"
        doc["provider"] = {PROVIDER: {
            "npm": option_str(config, "provider_npm") or DEFAULT_NPM,
            "name": PROVIDER,
            "options": options,
            "models": {model: entry},
        }}
        model_flag = f"{PROVIDER}/{model}"
        doc["model"] = model_flag
    if config.mcp:
        command = mcp_command(config)
        doc["mcp"] = {"taskmill": {
            "type": "local", "command": command, "enabled": True,
            "environment": dict(request.taskmill_env), "timeout": MCP_TIMEOUT_MS,
        }}
    return doc, model_flag


def parse_opencode_stream(
    output: str, exit_code: int | None, *, now: float, stderr: str = ""
) -> Usage:
    """Read ``opencode run --format json`` output."""
    usage = Usage()
    errors: list[str] = []
    cost: float | None = None
    finished = False
    for event in iter_json_lines(output):
        usage.session_id = usage.session_id or as_str(event.get("sessionID"))
        part = get_dict(event, "part")
        kind = event.get("type")
        if kind == "step_finish":
            finished = True
            tokens = get_dict(part, "tokens")
            cache = get_dict(tokens, "cache")
            usage.input_tokens += usage_tokens(usage, "tokens.input", tokens.get("input"))
            usage.output_tokens += usage_tokens(usage, "tokens.output", tokens.get("output"))
            usage.cache_read_tokens += usage_tokens(usage, "tokens.cache.read", cache.get("read"))
            usage.cache_write_tokens += usage_tokens(usage, "tokens.cache.write",
                                                     cache.get("write"))
            step_cost = usage_cost(usage, "cost", part.get("cost"))
            if step_cost is not None:
                cost = (cost or 0.0) + step_cost
        elif kind == "error":
            error = event.get("error") or event.get("message")
            text = error_text(error) or "error"
            status = get_dict(error, "data").get("statusCode") if isinstance(error, dict) else None
            errors.append(f"{text} (HTTP {status})" if status else text)
        elif kind == "tool_use":
            state = get_dict(part, "state")
            if state.get("status") == "error" and exit_code not in (0, None):
                errors.append(error_text(state.get("error")))
        model = as_str(part.get("modelID"))
        if model:
            usage.model = model
    usage.cost_usd = cost
    if not finished and not errors and exit_code not in (0, None):
        errors.append("the output ended without a step_finish event")
    settle_errors(usage, errors, exit_code, now=now, evidence=[stderr])
    return usage


class OpencodeAdapter(HeadlessAdapter):
    name = "opencode"
    install_hint = "npm install -g opencode-ai@1.18.33"
    read_output = staticmethod(parse_opencode_stream)

    def prepare(self, config: AgentConfig, request: TurnRequest) -> Invocation:
        doc, model_flag = opencode_config(config, request)
        path = request.home / ".config" / "opencode" / "opencode.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        extra = {
            "OPENCODE_CONFIG": str(path),
            "OPENCODE_DISABLE_AUTOUPDATE": "1",
            "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
            "OPENCODE_DISABLE_SHARE": "1",
        }
        if config.base_url:
            extra["OPENCODE_DISABLE_MODELS_FETCH"] = "1"
        key = api_key(config, request)
        if key and config.api_key_env:
            extra[config.api_key_env] = key
        argv = [*executable(config, "opencode"), "run", "--format", "json", "--auto",
                "--print-logs", "--log-level", "WARN"]
        if model_flag:
            argv += ["-m", model_flag]
        argv += [*config.args, prompt_arg(request)]
        return invocation(config, request, argv, extra)
