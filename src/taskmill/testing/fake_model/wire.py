"""What every wire protocol of the fake model provides, and helpers they share."""

from __future__ import annotations

import json
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any

from taskmill.testing.fake_model.router import ModelRequest, Plan
from taskmill.testing.fake_model.tools import ToolCall


class Wire(ABC):
    """One model API: how to read a request and how to write answers in its format."""

    name: str = ""
    sse_content_type = "text/event-stream"

    @abstractmethod
    def parse(self, body: Mapping[str, Any], model: str | None = None) -> ModelRequest:
        """The router's view of a request body (``model`` when the path names it)."""

    @abstractmethod
    def response_body(self, plan: Plan, model: str) -> dict[str, Any]:
        """A complete, non-streamed answer."""

    @abstractmethod
    def stream_events(self, plan: Plan, model: str) -> list[str]:
        """A complete stream, as SSE-formatted chunks."""

    @abstractmethod
    def stream_start(self, plan: Plan, model: str) -> list[str]:
        """The first chunk(s) of a stream; a stalled reply sends these and then hangs."""

    @abstractmethod
    def error_body(self, status: int, message: str, retry_after: float | None) -> dict[str, Any]:
        """An error body in this API's own format."""


def sse(data: Any, event: str | None = None) -> str:
    """One server-sent event; ``data`` that is not a string is JSON-encoded."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n"


def texts(value: Any) -> list[str]:
    """All text found in a message content value (string, block list, nested blocks)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [t for item in value for t in texts(item)]
    if isinstance(value, Mapping):
        found: list[str] = []
        for key in ("text", "content", "output", "parts"):
            if key in value:
                found.extend(texts(value[key]))
        return found
    return []


SETUP_ACKS = frozenset({"Got it. Thanks for the context!"})
"""Model turns some CLIs (Qwen Code, older Gemini CLI) fabricate after their context message."""


def is_model_output(is_model: bool, content: Any) -> bool:
    """Whether a history entry is a real model output (not a client-made setup acknowledgement)."""
    return is_model and "".join(texts(content)).strip() not in SETUP_ACKS


def count_runs(flags: Iterable[bool]) -> int:
    """How many runs of consecutive ``True`` the sequence holds."""
    runs, previous = 0, False
    for flag in flags:
        if flag and not previous:
            runs += 1
        previous = flag
    return runs


def opening_text(items: Iterable[tuple[bool, bool, Any]]) -> str:
    """User text before the first model output; ``items`` are (is_model, is_user, content)."""
    parts: list[str] = []
    for is_model, is_user, content in items:
        if is_model:
            break
        if is_user:
            parts.extend(texts(content))
    return "\n".join(parts)


def chunk_text(text: str, pieces: int = 3) -> list[str]:
    """Split text into a few deltas, as a real stream would."""
    if len(text) <= pieces:
        return [text] if text else []
    size = -(-len(text) // pieces)
    return [text[i : i + size] for i in range(0, len(text), size)]


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def now() -> int:
    return int(time.time())


def call_id(call: ToolCall, prefix: str) -> str:
    """The call's id with the protocol's usual prefix."""
    return prefix + call.call_id.removeprefix("call_")


def schema_of(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


STATUS_TEXT = {
    400: "Bad request",
    401: "Invalid API key",
    403: "Permission denied",
    404: "Not found",
    408: "Request timeout",
    413: "Request too large",
    429: "Rate limit exceeded",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
    529: "Overloaded",
}


def default_message(status: int) -> str:
    return f"taskmill fake model: {STATUS_TEXT.get(status, 'error')} ({status})"
