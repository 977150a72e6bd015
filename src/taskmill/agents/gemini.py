"""The ``gemini`` adapter: Google Gemini CLI (npm ``@google/gemini-cli``) headless.

Command line::

    gemini -p PROMPT -o stream-json --skip-trust --yolo [-m M] [ARGS...]

``--skip-trust``: without it the CLI exits 55 in a directory it has not been told to trust
(every fresh worktree). ``--yolo``: in the default approval mode headless runs drop the
write and shell tools.

Endpoint: ``base_url`` -> ``GOOGLE_GEMINI_BASE_URL``, the key from ``api_key_env`` ->
``GEMINI_API_KEY``, and ``$HOME/.gemini/settings.json`` gets
``{"security": {"auth": {"selectedType": "gemini-api-key"}}}`` (other settings in the file
are kept). The settings also switch off auto-update and usage statistics. With ``base_url`` and no ``model`` the adapter passes ``-m gemini-2.5-pro``: the
default model first makes a routing call whose reply must be JSON. ``mcp = true`` adds
``mcpServers.taskmill`` to the settings. ``GEMINI_CLI_NO_RELAUNCH=true`` is set (the CLI
otherwise starts a second node process to raise its heap limit, doubling start-up time).

Parsing (NDJSON ``init``/``message``/``tool_use``/``tool_result``/``error``/``result``):
session id and model from ``init``; ``result.stats`` input/output tokens (``cached`` ->
cache read); no cost; errors from ``result.status == "error"`` and ``error`` events of
severity ``error``; rate limits from 429 / ``RESOURCE_EXHAUSTED`` / quota messages there or
on stderr, with "retry in Ns" / ``retryDelay`` as ``retry_after_s``.
"""

from __future__ import annotations

from typing import Any

from taskmill.agents.base import AgentConfig, Invocation, TurnRequest, Usage
from taskmill.agents.common import (
    as_str,
    error_text,
    executable,
    get_dict,
    iter_json_lines,
    mcp_stdio_server,
    prompt_arg,
    settle_errors,
    usage_tokens,
    write_json_settings,
)
from taskmill.agents.envs import api_key
from taskmill.agents.headless import HeadlessAdapter, invocation

DEFAULT_PROXY_MODEL = "gemini-2.5-pro"


def parse_gemini_stream(
    output: str, exit_code: int | None, *, now: float, stderr: str = ""
) -> Usage:
    """Read ``gemini -o stream-json`` output."""
    usage = Usage()
    errors: list[str] = []
    result: dict[str, Any] | None = None
    for event in iter_json_lines(output):
        kind = event.get("type")
        if kind == "init":
            usage.session_id = as_str(event.get("session_id")) or usage.session_id
            usage.model = as_str(event.get("model")) or usage.model
        elif kind == "error":
            if event.get("severity", "error") == "error":
                errors.append(error_text(event.get("message") or event.get("error")))
        elif kind == "result":
            result = event
    if result is not None:
        stats = get_dict(result, "stats")
        usage.input_tokens = usage_tokens(usage, "input_tokens",
                                          stats.get("input_tokens", stats.get("input")))
        usage.output_tokens = usage_tokens(usage, "output_tokens", stats.get("output_tokens"))
        usage.cache_read_tokens = usage_tokens(usage, "cached",
                                               stats.get("cached", stats.get("cached_tokens")))
        if result.get("status", "success") != "success":
            errors.append(error_text(result.get("error")) or f"status {result.get('status')}")
    elif output.strip() or exit_code not in (0, None):
        errors.append("the output ended without a result event")
    settle_errors(usage, errors, exit_code, now=now, evidence=[stderr])
    return usage


class GeminiAdapter(HeadlessAdapter):
    name = "gemini"
    install_hint = "npm install -g @google/gemini-cli@0.61.0"
    read_output = staticmethod(parse_gemini_stream)

    def prepare(self, config: AgentConfig, request: TurnRequest) -> Invocation:
        # The CLI re-launches itself to raise node's heap limit: twice the start-up time and
        # a second node process per agent. Set GEMINI_CLI_NO_RELAUNCH="" in env to allow it.
        extra: dict[str, str] = {"GEMINI_CLI_NO_RELAUNCH": "true"}
        settings: dict[str, Any] = {
            "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
            "privacy": {"usageStatisticsEnabled": False},
        }
        key = api_key(config, request)
        if key:
            extra["GEMINI_API_KEY"] = key
        if config.base_url:
            extra["GOOGLE_GEMINI_BASE_URL"] = config.base_url.rstrip("/")
        if key or config.base_url:
            settings["security"] = {"auth": {"selectedType": "gemini-api-key"}}
        if config.mcp:
            settings["mcpServers"] = {"taskmill": {
                **mcp_stdio_server(config), "env": dict(request.taskmill_env),
            }}
        write_json_settings(request.home / ".gemini" / "settings.json", settings)
        argv = [*executable(config, "gemini"), "-p", prompt_arg(request), "-o", "stream-json",
                "--skip-trust", "--yolo"]
        model = config.model or (DEFAULT_PROXY_MODEL if config.base_url else None)
        if model:
            argv += ["-m", model]
        argv += config.args
        return invocation(config, request, argv, extra)
