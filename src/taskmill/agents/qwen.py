"""The ``qwen`` adapter: Qwen Code (npm ``@qwen-code/qwen-code``) headless.

Command line::

    qwen --auth-type openai PROMPT -o stream-json --yolo [ARGS...]

The positional prompt runs one-shot (``-p`` is deprecated). Endpoint and model go through
the environment: ``base_url`` -> ``OPENAI_BASE_URL`` (ending in ``/v1``: the client appends
``/chat/completions``), the key from ``api_key_env`` -> ``OPENAI_API_KEY``, ``model`` ->
``OPENAI_MODEL``. ``$HOME/.qwen/settings.json`` switches off managed auto-memory (an extra
model call after every turn whose tokens are added to the result), usage statistics and
auto-update (other settings in it are kept).

Qwen Code retries API errors (429 included) silently: nothing reaches stdout or stderr, so
a rate-limited turn shows up as a timeout without ``rate_limited``. When it gives up on an
API error (e.g. a malformed answer) it still exits 0, with ``is_error: false`` and the
error as the result text, ``[API Error: ...]``: the adapter reports that text as the
turn's error (and looks for rate limits in it).

Parsing: the same ``stream-json`` format as Claude Code (``system``/``assistant``/``user``/
``result``), read by :func:`taskmill.agents.claude.parse_claude_stream`: tokens from
``result.usage``, session id, model, errors and rate limits; no cost (Qwen Code reports
none, so ``cost_usd`` stays ``None`` unless the usage file says otherwise).
"""

from __future__ import annotations

from taskmill.agents.base import AgentConfig, Invocation, TurnRequest, Usage
from taskmill.agents.claude import parse_claude_stream
from taskmill.agents.common import (
    detect_rate_limit,
    executable,
    iter_json_lines,
    prompt_arg,
    short,
    write_json_settings,
)
from taskmill.agents.envs import api_key, with_suffix_v1
from taskmill.agents.headless import HeadlessAdapter, invocation

QWEN_SETTINGS = {
    "memory": {"enableManagedAutoMemory": False},
    "privacy": {"usageStatisticsEnabled": False},
    "general": {"enableAutoUpdate": False},
}
"""Managed auto-memory would run an extra "memory extraction" model call after the turn and
add its tokens (~10k) to ``result.usage``."""
API_ERROR = "[API Error:"
"""How Qwen Code's result text starts when it gave up on the model API (it still exits 0)."""


def api_error(output: str) -> str | None:
    """The ``[API Error: ...]`` text of the ``result`` event, if that is what it holds."""
    for event in iter_json_lines(output):
        text = event.get("result")
        if (event.get("type") == "result" and isinstance(text, str)
                and text.lstrip().startswith(API_ERROR)):
            return text.strip()
    return None


class QwenAdapter(HeadlessAdapter):
    name = "qwen"
    install_hint = "npm install -g @qwen-code/qwen-code@0.15.10"

    def prepare(self, config: AgentConfig, request: TurnRequest) -> Invocation:
        extra: dict[str, str] = {}
        if config.base_url:
            extra["OPENAI_BASE_URL"] = with_suffix_v1(config.base_url)
        key = api_key(config, request)
        if key:
            extra["OPENAI_API_KEY"] = key
        if config.model:
            extra["OPENAI_MODEL"] = config.model
        # The prompt comes before ARGS: array options (--allowed-tools ...) would swallow it.
        write_json_settings(request.home / ".qwen" / "settings.json", QWEN_SETTINGS)
        argv = [*executable(config, "qwen"), "--auth-type", "openai", prompt_arg(request),
                "-o", "stream-json", "--yolo", *config.args]
        return invocation(config, request, argv, extra)

    def read_output(
        self, output: str, exit_code: int | None, *, now: float, stderr: str
    ) -> Usage:
        usage = parse_claude_stream(output, exit_code, now=now, stderr=stderr)
        error = api_error(output)
        if error and usage.error is None:
            usage.error = short(error)
            usage.rate_limited, usage.retry_after_s = detect_rate_limit([error, stderr], now)
        usage.cost_usd = None
        return usage
