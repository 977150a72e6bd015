"""API families: how each one authenticates, and which adapter speaks which.

The proxy drops every credential the agent sent (headers and the ``key`` query parameter)
and adds the real one the family's way:

- ``anthropic``: ``x-api-key: KEY`` (and ``anthropic-version`` is left as the agent sent it);
- ``openai``: ``Authorization: Bearer KEY`` (Responses, Chat Completions, and every
  OpenAI-compatible server);
- ``gemini``: ``x-goog-api-key: KEY``.
"""

from __future__ import annotations

from typing import Literal, get_args

Family = Literal["anthropic", "openai", "gemini"]
FAMILIES: tuple[str, ...] = get_args(Family)

ADAPTER_FAMILY: dict[str, Family] = {
    "claude": "anthropic",
    "codex": "openai",
    "opencode": "openai",
    "qwen": "openai",
    "aider": "openai",
    "gemini": "gemini",
}
"""The family of each built-in adapter; others (``exec``, third-party) default to
``openai`` unless the table sets ``proxy_api``."""
DEFAULT_FAMILY: Family = "openai"

CREDENTIAL_HEADERS = frozenset({
    "authorization", "proxy-authorization", "x-api-key", "x-goog-api-key", "api-key",
    "openai-api-key", "cookie",
})
"""Headers a request may carry a credential in: never forwarded from the agent."""
CREDENTIAL_QUERY = frozenset({"key", "api_key", "access_token"})
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "trailers",
    "transfer-encoding", "upgrade", "host", "content-length", "accept-encoding",
})
"""Not forwarded upstream (httpx sets its own ``host`` and ``content-length``; the proxy asks
for ``accept-encoding: identity`` so that it can read the usage in the answer)."""
RESPONSE_DROP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer",
                           "transfer-encoding", "upgrade"})


def family_for(adapter: str, override: str | None = None) -> Family:
    if override is not None:
        if override not in FAMILIES:
            raise ValueError(f"proxy_api must be one of {', '.join(FAMILIES)}, got {override!r}")
        return override  # type: ignore[return-value]
    return ADAPTER_FAMILY.get(adapter, DEFAULT_FAMILY)


def auth_headers(family: Family, key: str | None) -> list[tuple[str, str]]:
    """The header that carries ``key`` for ``family`` (none without a key)."""
    if not key:
        return []
    if family == "anthropic":
        return [("x-api-key", key)]
    if family == "gemini":
        return [("x-goog-api-key", key)]
    return [("authorization", f"Bearer {key}")]
