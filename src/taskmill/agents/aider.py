"""The ``aider`` adapter: aider (PyPI ``aider-chat``) headless.

Command line::

    aider --message PROMPT --yes-always --no-pretty --no-check-update --no-analytics
          --no-show-model-warnings --no-gitignore --no-fancy-input
          --chat-history-file STATE/aider.chat.history.md
          --input-history-file STATE/aider.input.history
          [--model M] [--openai-api-base URL] [ARGS...]

``--no-gitignore`` and the history files in the turn's ``state_dir`` keep aider from adding
``.aider*`` to the project's ``.gitignore`` and from writing its histories into the worktree
(its repo-map cache ``.aider.tags.cache.*`` may still appear there).

Endpoint: ``base_url`` -> ``--openai-api-base``; the key from ``api_key_env`` goes in
``OPENAI_API_KEY`` (exactly what ``--openai-api-key`` would do, without showing the key in
the process list); ``LITELLM_LOCAL_MODEL_COST_MAP=True`` keeps litellm from fetching its price
table. With ``base_url`` a model without a provider prefix becomes ``openai/<model>`` (the
OpenAI-compatible route of litellm).

Parsing (plain text, no JSON): every ``Tokens: N sent, [N cache write, N cache hit,] M
received.`` line is summed (``2.3k`` is 2300); ``Cost: $X message, $Y session.`` gives the
session cost; ``Model: NAME`` the model. Errors are litellm/API error lines not followed by a
later ``Tokens:`` line; rate limits from ``RateLimitError`` / 429 / "rate limit" in those lines.
"""

from __future__ import annotations

import re

from taskmill.agents.base import AgentConfig, Invocation, TurnRequest, Usage
from taskmill.agents.common import executable, prompt_arg, settle_errors
from taskmill.agents.envs import api_key
from taskmill.agents.headless import HeadlessAdapter, invocation

_NUM = r"([\d][\d.,]*\s*[kKmM]?)"
_TOKENS = re.compile(
    rf"Tokens:\s*{_NUM} sent(?:,\s*{_NUM} cache write)?(?:,\s*{_NUM} cache hit)?,\s*{_NUM} received"
)
_COST = re.compile(r"Cost:\s*\$([\d.]+) message,\s*\$([\d.]+) session")
_MODEL = re.compile(r"^(?:Main )?[Mm]odel:\s*(\S+)")
_ERROR = re.compile(
    r"litellm\.\w*(?:Error|Exception)|^\w*(?:APIError|RateLimitError|AuthenticationError|"
    r"APIConnectionError|NotFoundError|BadRequestError|ServiceUnavailableError)\b"
)


def aider_count(text: str) -> int:
    """``2.3k`` -> 2300, ``1,234`` -> 1234, ``1.5M`` -> 1500000."""
    text = text.replace(",", "").replace(" ", "")
    factor = 1
    if text[-1:] in ("k", "K"):
        factor, text = 1000, text[:-1]
    elif text[-1:] in ("m", "M"):
        factor, text = 1_000_000, text[:-1]
    try:
        return round(float(text) * factor)
    except ValueError:
        return 0


def parse_aider_output(
    output: str, exit_code: int | None, *, now: float, stderr: str = ""
) -> Usage:
    """Read aider's plain-text output."""
    usage = Usage()
    errors: list[str] = []
    for raw in output.splitlines():
        line = raw.strip()
        tokens = _TOKENS.search(line)
        if tokens:
            sent, write, hit, received = tokens.groups()
            usage.input_tokens += aider_count(sent)
            usage.cache_write_tokens += aider_count(write) if write else 0
            usage.cache_read_tokens += aider_count(hit) if hit else 0
            usage.output_tokens += aider_count(received)
            errors.clear()  # a later successful call supersedes retried errors
        cost = _COST.search(line)
        if cost:
            usage.cost_usd = float(cost.group(2))
        model = _MODEL.match(line)
        if model and usage.model is None:
            usage.model = model.group(1)
        if _ERROR.search(line):
            errors.append(line)
    settle_errors(usage, errors, exit_code, now=now, evidence=[stderr], shown=errors[-3:])
    return usage


class AiderAdapter(HeadlessAdapter):
    name = "aider"
    install_hint = "pip install aider-chat (in its own virtualenv; ~700 MB)"
    read_output = staticmethod(parse_aider_output)

    def prepare(self, config: AgentConfig, request: TurnRequest) -> Invocation:
        extra = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "AIDER_CHECK_UPDATE": "false"}
        key = api_key(config, request)
        if key:
            extra["OPENAI_API_KEY"] = key
        argv = [
            *executable(config, "aider"),
            "--message", prompt_arg(request),
            "--yes-always", "--no-pretty", "--no-check-update", "--no-analytics",
            "--no-show-model-warnings", "--no-gitignore", "--no-fancy-input",
            "--chat-history-file", str(request.state_dir / "aider.chat.history.md"),
            "--input-history-file", str(request.state_dir / "aider.input.history"),
        ]
        model = config.model
        if model and config.base_url and "/" not in model:
            model = "openai/" + model
        if model:
            argv += ["--model", model]
        if config.base_url:
            argv += ["--openai-api-base", config.base_url.rstrip("/")]
        argv += config.args
        return invocation(config, request, argv, extra)
