"""Token counting from the model's own answers, as they pass through the proxy.

Every response the proxy forwards is fed, chunk by chunk, to a :class:`ResponseMeter`
(after nothing: the bytes go to the agent unchanged; the meter reads a copy). It reads:

- a JSON body (``application/json``): ``usage`` of an Anthropic message, an OpenAI
  Responses ``response`` or a Chat Completions ``chat.completion``, Gemini's
  ``usageMetadata`` (also a JSON array of Gemini chunks);
- a stream (``text/event-stream``): the ``data:`` of each event, parsed as JSON: Anthropic
  ``message_start`` (input and cache tokens) and ``message_delta`` (output), OpenAI Responses
  ``response.completed`` / ``response.incomplete`` / ``response.failed``, the Chat Completions
  chunk that carries ``usage``, Gemini's ``usageMetadata`` (each chunk holds the running
  totals).

Within one response the figures are running totals, so the last value of each field wins;
a turn's figures are the sum over its responses (:class:`TurnUsage`). ``input_tokens`` is
counted as the provider counts it: OpenAI and Gemini include cached input in it, Anthropic
does not (cache reads and writes are separate fields); the cost takes that into account.
"""

from __future__ import annotations

import json
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .pricing import PriceTable

MAX_JSON_BYTES = 64 * 1024 * 1024
"""A JSON body larger than this is forwarded but not read (its usage is then unknown)."""
MAX_EVENT_BYTES = 16 * 1024 * 1024
"""The same for one SSE event."""


@dataclass
class Counts:
    """Token figures, named as taskmill names them."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    input_includes_cache: bool = False
    """OpenAI and Gemini count cached input inside ``input_tokens``; Anthropic does not."""

    def add(self, other: Counts) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cache_read_tokens += other.cache_read_tokens
        self.cache_write_tokens += other.cache_write_tokens

    @property
    def uncached_input(self) -> int:
        if self.input_includes_cache:
            return max(0, self.input_tokens - self.cache_read_tokens)
        return self.input_tokens

    def to_json(self) -> dict[str, int]:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "cache_read_tokens": self.cache_read_tokens,
                "cache_write_tokens": self.cache_write_tokens}


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = int(value)
    return number if 0 <= number < 10**12 else None


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def read_usage(obj: Any) -> tuple[dict[str, int], bool, str | None] | None:
    """The usage figures one JSON object (a body or an SSE event) carries: ``(fields,
    input_includes_cache, model)``, or None when it carries none."""
    if not isinstance(obj, Mapping):
        return None
    kind = obj.get("type")
    fields: dict[str, Any] = {}
    # Anthropic Messages
    if kind in ("message_start", "message", "message_delta"):
        usage = _get(obj, "message", "usage") if kind == "message_start" else obj.get("usage")
        model = _str(_get(obj, "message", "model")) if kind == "message_start" else \
            _str(obj.get("model"))
        if not isinstance(usage, Mapping):
            return None
        for name, key in (("input_tokens", "input_tokens"), ("output_tokens", "output_tokens"),
                          ("cache_read_tokens", "cache_read_input_tokens"),
                          ("cache_write_tokens", "cache_creation_input_tokens")):
            fields[name] = usage.get(key)
        return _clean(fields), False, model
    # OpenAI Responses (a streamed event, or the body of a non-streamed call)
    response = obj.get("response") if isinstance(kind, str) and kind.startswith("response.") \
        else (obj if obj.get("object") == "response" else None)
    if isinstance(response, Mapping):
        usage = response.get("usage")
        if not isinstance(usage, Mapping):
            return None
        fields = {"input_tokens": usage.get("input_tokens"),
                  "output_tokens": usage.get("output_tokens"),
                  "cache_read_tokens": _get(usage, "input_tokens_details", "cached_tokens")}
        return _clean(fields), True, _str(response.get("model"))
    # OpenAI Chat Completions (the body, or the last chunk of a stream)
    if isinstance(obj.get("usage"), Mapping) and (
            "prompt_tokens" in obj["usage"] or "completion_tokens" in obj["usage"]):
        usage = obj["usage"]
        fields = {"input_tokens": usage.get("prompt_tokens"),
                  "output_tokens": usage.get("completion_tokens"),
                  "cache_read_tokens": _get(usage, "prompt_tokens_details", "cached_tokens")}
        return _clean(fields), True, _str(obj.get("model"))
    # Gemini
    meta = obj.get("usageMetadata")
    if isinstance(meta, Mapping):
        output = _int(meta.get("candidatesTokenCount"))
        thoughts = _int(meta.get("thoughtsTokenCount"))
        fields = {"input_tokens": meta.get("promptTokenCount"),
                  "output_tokens": None if output is None and thoughts is None
                  else (output or 0) + (thoughts or 0),
                  "cache_read_tokens": meta.get("cachedContentTokenCount")}
        return _clean(fields), True, _str(obj.get("modelVersion"))
    return None


def _clean(fields: Mapping[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, value in fields.items():
        number = _int(value)
        if number is not None:
            out[name] = number
    return out


class ResponseMeter:
    """Reads one response's usage from its bytes as they are forwarded."""

    def __init__(self, content_type: str, content_encoding: str = "",
                 request_model: str | None = None) -> None:
        media = content_type.split(";", 1)[0].strip().lower()
        self.mode = ("sse" if media == "text/event-stream"
                     else "json" if media.endswith("json") else None)
        encoding = content_encoding.strip().lower()
        self._inflate = (zlib.decompressobj(zlib.MAX_WBITS | 32)
                         if encoding in ("gzip", "deflate", "x-gzip") else None)
        if encoding and encoding != "identity" and self._inflate is None:
            self.mode = None  # br, zstd: forwarded, not read
        self.fields: dict[str, int] = {}
        self.includes_cache = False
        self.model = request_model
        self.seen = False
        self._buffer = bytearray()
        self._data: list[bytes] = []
        self._data_size = 0
        self.overflow = False

    def feed(self, chunk: bytes) -> None:
        if self.mode is None or not chunk:
            return
        if self._inflate is not None:
            try:
                chunk = self._inflate.decompress(chunk)
            except zlib.error:
                self.mode = None
                return
        if self.mode == "json":
            if len(self._buffer) + len(chunk) > MAX_JSON_BYTES:
                self.overflow, self.mode = True, None
                self._buffer.clear()
                return
            self._buffer += chunk
            return
        self._buffer += chunk
        start = 0
        while True:
            end = self._buffer.find(b"\n", start)
            if end < 0:
                break
            self._line(bytes(self._buffer[start:end]))
            start = end + 1
        del self._buffer[:start]
        if len(self._buffer) > MAX_EVENT_BYTES:
            self.overflow = True
            self._buffer.clear()

    def _line(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            self._dispatch()
        elif line.startswith(b"data:"):
            data = line[5:]
            data = data[1:] if data.startswith(b" ") else data
            self._data_size += len(data)
            if self._data_size > MAX_EVENT_BYTES:
                self.overflow = True
                self._data, self._data_size = [], 0
            else:
                self._data.append(data)

    def _dispatch(self) -> None:
        if not self._data:
            return
        payload = b"\n".join(self._data)
        self._data, self._data_size = [], 0
        if b"sage" not in payload:  # neither "usage" nor "usageMetadata": nothing to count
            return
        self._take(payload)

    def _take(self, payload: bytes) -> None:
        try:
            obj = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            return
        for item in obj if isinstance(obj, list) else [obj]:
            found = read_usage(item)
            if found is None:
                continue
            fields, includes, model = found
            self.seen = True
            self.fields.update(fields)
            self.includes_cache = includes
            self.model = model or self.model

    def close(self) -> Counts | None:
        """The response's figures (None when it carried no usage)."""
        if self.mode == "sse":
            if self._buffer:
                self._line(bytes(self._buffer))
                self._buffer.clear()
            self._dispatch()
        elif self.mode == "json" and self._buffer:
            self._take(bytes(self._buffer))
            self._buffer.clear()
        if not self.seen:
            return None
        return Counts(input_includes_cache=self.includes_cache, **self.fields)


@dataclass
class TurnUsage:
    """What one turn's model calls cost, as the proxy counted them (thread-safe)."""

    requests: int = 0
    """Requests forwarded upstream."""
    unread: int = 0
    """Model responses whose usage could not be read (an error answer, a cut stream, an
    unknown shape)."""
    by_model: dict[str, Counts] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)
    active: int = 0
    """Requests forwarded whose answer is not finished yet."""
    lock: threading.Condition = field(default_factory=threading.Condition, repr=False,
                                      compare=False)

    def settle(self, timeout: float) -> bool:
        """Wait until every answer is finished (the last bytes an agent read are counted
        once the proxy is done with them); False when some still run after ``timeout``."""
        with self.lock:
            return self.lock.wait_for(lambda: self.active == 0, timeout)

    def record(self, status: int, counts: Counts | None, model: str | None) -> None:
        """One answer finished (``counts`` None: it carried no usage)."""
        with self.lock:
            self.active = max(0, self.active - 1)
            self.lock.notify_all()
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if counts is None:
                self.unread += 1
                return
            key = model or "unknown"
            total = self.by_model.setdefault(
                key, Counts(input_includes_cache=counts.input_includes_cache))
            total.add(counts)

    def count_request(self) -> None:
        """A request is forwarded; :meth:`record` follows when its answer is finished."""
        with self.lock:
            self.requests += 1
            self.active += 1

    def totals(self) -> Counts:
        with self.lock:
            total = Counts()
            for counts in self.by_model.values():
                total.add(counts)
            return total

    def cost(self, prices: PriceTable) -> tuple[float | None, list[str]]:
        """USD, and the models without a price (then the cost is None: unknown)."""
        with self.lock:
            cost = 0.0
            unpriced: list[str] = []
            for model, counts in self.by_model.items():
                price = prices.find(model)
                if price is None:
                    if counts.input_tokens or counts.output_tokens:
                        unpriced.append(model)
                    continue
                cost += price.cost(counts.uncached_input, counts.output_tokens,
                                   counts.cache_read_tokens, counts.cache_write_tokens)
            return (None if unpriced else round(cost, 6)), unpriced

    def main_model(self) -> str | None:
        with self.lock:
            named = {m: c for m, c in self.by_model.items() if m != "unknown"}
            if not named:
                return None
            return max(named, key=lambda m: named[m].input_tokens + named[m].output_tokens)

    def to_json(self, prices: PriceTable) -> dict[str, Any]:
        cost, unpriced = self.cost(prices)
        with self.lock:
            data: dict[str, Any] = {
                "requests": self.requests,
                "by_model": {m: c.to_json() for m, c in self.by_model.items()},
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            }
            if self.unread:
                data["unread_responses"] = self.unread
        data["cost_usd"] = cost
        if unpriced:
            data["cost_unknown"] = (
                f"no price for model {', '.join(repr(m) for m in unpriced)}: the cost is "
                "unknown; add [pricing.\"MODEL\"] input = USD, output = USD (per million "
                "tokens) to .taskmill/config.toml")
        return data
