"""Anthropic Messages API (``POST /v1/messages``), as Claude Code speaks it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taskmill.testing.fake_model.router import ModelRequest, Plan
from taskmill.testing.fake_model.tools import ToolSpec
from taskmill.testing.fake_model.wire import (
    Wire,
    call_id,
    chunk_text,
    count_runs,
    is_model_output,
    new_id,
    opening_text,
    schema_of,
    sse,
    texts,
)

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _usage(plan: Plan) -> dict[str, int]:
    return {
        "input_tokens": plan.usage.input_tokens,
        "output_tokens": plan.usage.output_tokens,
        "cache_creation_input_tokens": plan.usage.cache_creation_tokens,
        "cache_read_input_tokens": plan.usage.cache_read_tokens,
    }


class AnthropicWire(Wire):
    name = "anthropic"

    def parse(self, body: Mapping[str, Any], model: str | None = None) -> ModelRequest:
        raw_messages = body.get("messages")
        messages = [m for m in raw_messages or [] if isinstance(m, Mapping)]
        flags = [is_model_output(m.get("role") == "assistant", m.get("content")) for m in messages]
        user_text = [
            t for m in messages if m.get("role") == "user" for t in texts(m.get("content"))
        ]
        tools = tuple(
            ToolSpec(t["name"], schema_of(t.get("input_schema")), str(t.get("description", "")))
            for t in body.get("tools") or []
            if isinstance(t, Mapping) and isinstance(t.get("name"), str)
        )
        output = schema_of(schema_of(body.get("output_config")).get("format"))
        schema = output.get("schema") or schema_of(body.get("output_format")).get("schema")
        return ModelRequest(
            protocol=self.name,
            model=str(body.get("model") or model or "claude"),
            opening_text=opening_text(
                (flag, m.get("role") == "user", m.get("content"))
                for flag, m in zip(flags, messages, strict=True)
            ),
            model_turns=count_runs(flags),
            tools=tools,
            context_text="\n".join(texts(body.get("system")) + user_text),
            json_schema=schema if isinstance(schema, Mapping) else None,
            stream=bool(body.get("stream")),
        )

    def _blocks(self, plan: Plan) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        if plan.text:
            blocks.append({"type": "text", "text": plan.text})
        if plan.call is not None:
            blocks.append(
                {
                    "type": "tool_use",
                    "id": call_id(plan.call, "toolu_"),
                    "name": plan.call.name,
                    "input": dict(plan.call.arguments),
                }
            )
        return blocks

    def _message(self, plan: Plan, model: str, content: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _usage(plan),
        }

    def response_body(self, plan: Plan, model: str) -> dict[str, Any]:
        message = self._message(plan, model, self._blocks(plan))
        message["stop_reason"] = "tool_use" if plan.call is not None else "end_turn"
        return message

    def stream_start(self, plan: Plan, model: str) -> list[str]:
        message = self._message(plan, model, [])
        message["usage"] = {**_usage(plan), "output_tokens": 1}
        return [
            sse({"type": "message_start", "message": message}, "message_start"),
            sse({"type": "ping"}, "ping"),
        ]

    def stream_events(self, plan: Plan, model: str) -> list[str]:
        events = self.stream_start(plan, model)
        for index, block in enumerate(self._blocks(plan)):
            if block["type"] == "text":
                start: dict[str, Any] = {"type": "text", "text": ""}
                deltas = [{"type": "text_delta", "text": t} for t in chunk_text(block["text"])]
            else:
                start = {**block, "input": {}}
                arguments = plan.call.arguments_json if plan.call else "{}"
                deltas = [
                    {"type": "input_json_delta", "partial_json": part}
                    for part in chunk_text(arguments, 2)
                ]
            events.append(
                sse(
                    {"type": "content_block_start", "index": index, "content_block": start},
                    "content_block_start",
                )
            )
            for delta in deltas:
                events.append(
                    sse(
                        {"type": "content_block_delta", "index": index, "delta": delta},
                        "content_block_delta",
                    )
                )
            events.append(sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
        stop = "tool_use" if plan.call is not None else "end_turn"
        events.append(
            sse(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": _usage(plan),
                },
                "message_delta",
            )
        )
        events.append(sse({"type": "message_stop"}, "message_stop"))
        return events

    def error_body(self, status: int, message: str, retry_after: float | None) -> dict[str, Any]:
        kind = ERROR_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
