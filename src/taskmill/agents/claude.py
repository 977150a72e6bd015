"""The ``claude`` adapter: Claude Code (npm ``@anthropic-ai/claude-code``) headless.

Command line::

    claude -p PROMPT --output-format stream-json --verbose --permission-mode bypassPermissions
           [--model M] [--mcp-config FILE] [ARGS...]

Permissions: an unattended agent has to run tests and ``git`` as well as edit files, so
the default is ``--permission-mode bypassPermissions`` (the same as
``--dangerously-skip-permissions``): the protection is taskmill's sandbox
(:mod:`taskmill.sandbox`). Claude Code refuses that mode as root unless ``IS_SANDBOX=1``,
which the runner sets only when the turn really runs in the sandbox (so as root without
one, choose another mode). A table can choose otherwise with
``permission_mode = "acceptEdits"`` and ``allowed_tools = ["Bash(git:*)", "Bash(pytest:*)"]``
(the latter becomes ``--allowedTools``); ``max_turns = N`` adds ``--max-turns N``.
``mcp = true`` writes ``claude-mcp.json`` (``{"mcpServers": {"taskmill": ...}}``, with
``alwaysLoad`` so that the first model call waits for the server) into the turn's state
directory, passes it with ``--mcp-config`` and adds ``mcp__taskmill`` (all of the server's
tools) to ``--allowedTools``.

Endpoint: ``base_url`` -> ``ANTHROPIC_BASE_URL`` (without a trailing ``/v1``: the CLI appends
``/v1/messages``), the key from ``api_key_env`` -> ``ANTHROPIC_API_KEY``. Telemetry,
auto-update and other non-essential traffic are switched off.

Parsing (NDJSON events ``system``/``assistant``/``user``/``result``): tokens (input, output,
cache read, cache creation), ``total_cost_usd`` (computed by the CLI from its own price
table: meaningless behind a proxy), session id, model, errors (``result.subtype`` other than
``success``, ``is_error``), and rate/usage limits (``429``, ``rate_limit``, ``Claude AI usage
limit reached|<epoch>``, "You've hit your ... limit"; the epoch becomes ``retry_after_s``,
else the ``retry_delay_ms`` of the last 429/529 ``api_retry`` event). Claude Code retries
a failing API call up to 10 times on its own (``api_retry`` events); set
``env = {CLAUDE_CODE_MAX_RETRIES = "2"}`` in the table to give up sooner. Without a ``result`` event
(a truncated stream) the per-message usage of the ``assistant`` events is summed.
:func:`parse_claude_stream` is shared with the ``qwen`` adapter (same event format).
"""

from __future__ import annotations

import json
from typing import Any

from taskmill.agents.base import AgentConfig, Invocation, TurnRequest, Usage
from taskmill.agents.common import (
    as_float,
    as_str,
    error_text,
    executable,
    get_dict,
    iter_json_lines,
    mcp_stdio_server,
    option_list,
    option_str,
    prompt_arg,
    settle_errors,
    usage_cost,
    usage_tokens,
)
from taskmill.agents.envs import api_key, without_suffix_v1
from taskmill.agents.headless import HeadlessAdapter, invocation

DEFAULT_PERMISSION_MODE = "bypassPermissions"
MCP_TOOLS = "mcp__taskmill"
"""Every tool of the taskmill MCP server, in ``--allowedTools`` syntax."""


def _token_fields(target: Usage, usage: dict[str, Any]) -> None:
    target.input_tokens = usage_tokens(target, "input_tokens", usage.get("input_tokens"))
    target.output_tokens = usage_tokens(target, "output_tokens", usage.get("output_tokens"))
    target.cache_read_tokens = usage_tokens(target, "cache_read_input_tokens",
                                            usage.get("cache_read_input_tokens"))
    target.cache_write_tokens = usage_tokens(target, "cache_creation_input_tokens",
                                             usage.get("cache_creation_input_tokens"))


def parse_claude_stream(
    output: str, exit_code: int | None, *, now: float, stderr: str = ""
) -> Usage:
    """Read a Claude-Code-style ``stream-json`` transcript (also Qwen Code's)."""
    usage = Usage()
    per_message: dict[str, dict[str, Any]] = {}
    result: dict[str, Any] | None = None
    errors: list[str] = []
    retries: list[str] = []
    retry_delay: float | None = None
    for event in iter_json_lines(output):
        kind = event.get("type")
        if kind == "system":
            usage.session_id = as_str(event.get("session_id")) or usage.session_id
            usage.model = as_str(event.get("model")) or usage.model
            if event.get("subtype") == "api_retry":
                status = event.get("error_status")
                retries.append(f"{status or ''} {error_text(event.get('error'))}".strip())
                delay = as_float(event.get("retry_delay_ms"))
                if status in (429, 529) and delay is not None:
                    retry_delay = delay / 1000.0
        elif kind == "assistant":
            message = get_dict(event, "message")
            usage.session_id = as_str(event.get("session_id")) or usage.session_id
            model = as_str(message.get("model"))
            if model and not model.startswith("<"):  # "<synthetic>" marks CLI-made messages
                usage.model = model
            if isinstance(message.get("usage"), dict):
                key = as_str(message.get("id")) or f"#{len(per_message)}"
                per_message[key] = message["usage"]
            if event.get("error"):
                errors.append(error_text(event.get("error")))
        elif kind == "result":
            result = event
        elif kind == "error":
            errors.append(error_text(event.get("error") or event.get("message")))

    if result is not None:
        _token_fields(usage, get_dict(result, "usage"))
        usage.cost_usd = usage_cost(usage, "total_cost_usd", result.get("total_cost_usd"))
        usage.session_id = as_str(result.get("session_id")) or usage.session_id
        model_usage = get_dict(result, "modelUsage")
        if usage.model is None and model_usage:
            usage.model = next(iter(model_usage))
        subtype = as_str(result.get("subtype")) or "success"
        if result.get("is_error") is True or subtype != "success":
            detail = result.get("result")
            if not isinstance(detail, str) or not detail:
                listed = result.get("errors")
                detail = "; ".join(map(error_text, listed)) if isinstance(listed, list) else ""
            if subtype == "success":  # is_error with subtype success: an API error
                errors.append(detail or "is_error")
            else:
                errors.append(f"{subtype}: {detail}" if detail else subtype)
        if result.get("api_error_status") in (429, 529):
            errors.append(f"API error status {result['api_error_status']}")
    else:
        for message_usage in per_message.values():
            partial = Usage()
            _token_fields(partial, message_usage)
            usage.input_tokens += partial.input_tokens
            usage.output_tokens += partial.output_tokens
            usage.cache_read_tokens += partial.cache_read_tokens
            usage.cache_write_tokens += partial.cache_write_tokens
            usage.invalid += partial.invalid
        if output.strip() or exit_code not in (0, None):
            errors.append("the output ended without a result event")

    settle_errors(usage, errors, exit_code, now=now, evidence=[*retries, stderr])
    if usage.rate_limited and usage.retry_after_s is None:
        usage.retry_after_s = retry_delay
    return usage


class ClaudeAdapter(HeadlessAdapter):
    name = "claude"
    install_hint = "npm install -g @anthropic-ai/claude-code@2.1.197"
    read_output = staticmethod(parse_claude_stream)

    def prepare(self, config: AgentConfig, request: TurnRequest) -> Invocation:
        # The prompt goes right after -p: --allowedTools and --mcp-config take several
        # values and would swallow a trailing positional argument.
        argv = [*executable(config, "claude"), "-p", prompt_arg(request),
                "--output-format", "stream-json", "--verbose"]
        extra = {
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        }
        mode = option_str(config, "permission_mode") or DEFAULT_PERMISSION_MODE
        argv += ["--permission-mode", mode]
        allowed = option_list(config, "allowed_tools")
        if config.mcp and MCP_TOOLS not in allowed:
            allowed.append(MCP_TOOLS)
        if allowed:
            argv += ["--allowedTools", ",".join(allowed)]
        max_turns = config.options.get("max_turns")
        if isinstance(max_turns, int) and not isinstance(max_turns, bool):
            argv += ["--max-turns", str(max_turns)]
        if config.model:
            argv += ["--model", config.model]
        if config.base_url:
            extra["ANTHROPIC_BASE_URL"] = without_suffix_v1(config.base_url)
        key = api_key(config, request)
        if key:
            extra["ANTHROPIC_API_KEY"] = key
        if config.mcp:
            # alwaysLoad: connect before the first model call (-p does not wait otherwise)
            server = {**mcp_stdio_server(config), "env": dict(request.taskmill_env),
                      "alwaysLoad": True}
            path = request.state_dir / "claude-mcp.json"
            path.write_text(json.dumps({"mcpServers": {"taskmill": server}}, indent=2))
            argv += ["--mcp-config", str(path)]
        argv += config.args
        return invocation(config, request, argv, extra)
