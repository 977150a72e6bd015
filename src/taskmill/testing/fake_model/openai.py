"""OpenAI Responses (``POST /v1/responses``, Codex) and Chat Completions
(``POST /v1/chat/completions``: Qwen Code, opencode, aider)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from taskmill.testing.fake_model.router import ModelRequest, Plan
from taskmill.testing.fake_model.tools import ToolSpec
from taskmill.testing.fake_model.wire import (
    Wire,
    call_id,
    chunk_text,
    count_runs,
    is_model_output,
    new_id,
    now,
    opening_text,
    schema_of,
    sse,
    texts,
)

ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("rate_limit_exceeded", "rate_limit_exceeded"),
}
MODEL_ITEMS = {
    "function_call",
    "custom_tool_call",
    "local_shell_call",
    "reasoning",
    "web_search_call",
}


def openai_error(status: int, message: str) -> dict[str, Any]:
    kind, code = ERROR_TYPES.get(status, ("server_error", None))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class ResponsesWire(Wire):
    name = "responses"

    def parse(self, body: Mapping[str, Any], model: str | None = None) -> ModelRequest:
        raw = body.get("input")
        items: list[Mapping[str, Any]] = (
            [{"type": "message", "role": "user", "content": raw}]
            if isinstance(raw, str)
            else [i for i in raw or [] if isinstance(i, Mapping)]
        )

        def is_model(item: Mapping[str, Any]) -> bool:
            kind = item.get("type", "message")
            return kind in MODEL_ITEMS or (
                kind == "message"
                and is_model_output(item.get("role") == "assistant", item.get("content"))
            )

        def is_user(item: Mapping[str, Any]) -> bool:
            return item.get("type", "message") == "message" and item.get("role") == "user"

        tools: list[ToolSpec] = []
        for tool in body.get("tools") or []:
            if not isinstance(tool, Mapping) or not isinstance(tool.get("name"), str):
                continue
            kind: Literal["function", "custom"] = (
                "custom" if tool.get("type") == "custom" else "function"
            )
            tools.append(
                ToolSpec(
                    tool["name"],
                    schema_of(tool.get("parameters")),
                    str(tool.get("description", "")),
                    kind,
                )
            )
        context = texts(body.get("instructions")) + [
            t
            for i in items
            if i.get("type", "message") == "message" and i.get("role") != "assistant"
            for t in texts(i.get("content"))
        ]
        text_format = schema_of(schema_of(body.get("text")).get("format"))
        schema = text_format.get("schema")
        return ModelRequest(
            protocol=self.name,
            model=str(body.get("model") or model or "gpt"),
            opening_text=opening_text((is_model(i), is_user(i), i.get("content")) for i in items),
            model_turns=count_runs(is_model(i) for i in items),
            tools=tuple(tools),
            context_text="\n".join(context),
            json_schema=schema if isinstance(schema, Mapping) else None,
            wants_json=text_format.get("type") in ("json_schema", "json_object"),
            stream=bool(body.get("stream")),
        )

    def _items(self, plan: Plan) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        if plan.text:
            items.append(
                {
                    "type": "message",
                    "id": new_id("msg_"),
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": plan.text, "annotations": []}],
                }
            )
        call = plan.call
        if call is not None and call.custom_input is not None:
            items.append(
                {
                    "type": "custom_tool_call",
                    "id": new_id("ctc_"),
                    "status": "completed",
                    "call_id": call.call_id,
                    "name": call.name,
                    "input": call.custom_input,
                }
            )
        elif call is not None:
            items.append(
                {
                    "type": "function_call",
                    "id": call_id(call, "fc_"),
                    "status": "completed",
                    "call_id": call.call_id,
                    "name": call.name,
                    "arguments": call.arguments_json,
                }
            )
        return items

    def _response(self, plan: Plan, model: str, status: str, output: list[Any]) -> dict[str, Any]:
        usage = plan.usage
        return {
            "id": new_id("resp_"),
            "object": "response",
            "created_at": now(),
            "status": status,
            "model": model,
            "output": output,
            "error": None,
            "incomplete_details": None,
            "usage": {
                "input_tokens": usage.input_tokens,
                "input_tokens_details": {"cached_tokens": usage.cache_read_tokens},
                "output_tokens": usage.output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": usage.input_tokens + usage.output_tokens,
            }
            if status == "completed"
            else None,
        }

    def response_body(self, plan: Plan, model: str) -> dict[str, Any]:
        return self._response(plan, model, "completed", self._items(plan))

    def stream_start(self, plan: Plan, model: str) -> list[str]:
        created = {
            "type": "response.created",
            "sequence_number": 0,
            "response": self._response(plan, model, "in_progress", []),
        }
        return [sse(created, "response.created")]

    def stream_events(self, plan: Plan, model: str) -> list[str]:
        events = self.stream_start(plan, model)
        items = self._items(plan)
        seq = 1

        def add(event: dict[str, Any]) -> None:
            nonlocal seq
            events.append(sse({**event, "sequence_number": seq}, event["type"]))
            seq += 1

        for index, item in enumerate(items):
            if item["type"] == "message":
                add(
                    {
                        "type": "response.output_item.added",
                        "output_index": index,
                        "item": {**item, "status": "in_progress", "content": []},
                    }
                )
                part = {"type": "output_text", "text": "", "annotations": []}
                where = {"item_id": item["id"], "output_index": index, "content_index": 0}
                add({"type": "response.content_part.added", **where, "part": part})
                text = item["content"][0]["text"]
                for delta in chunk_text(text):
                    add({"type": "response.output_text.delta", **where, "delta": delta})
                add({"type": "response.output_text.done", **where, "text": text})
                add({"type": "response.content_part.done", **where, "part": item["content"][0]})
            else:
                empty = "input" if item["type"] == "custom_tool_call" else "arguments"
                add(
                    {
                        "type": "response.output_item.added",
                        "output_index": index,
                        "item": {**item, "status": "in_progress", empty: ""},
                    }
                )
            add({"type": "response.output_item.done", "output_index": index, "item": item})
        add(
            {
                "type": "response.completed",
                "response": self._response(plan, model, "completed", items),
            }
        )
        return events

    def error_body(self, status: int, message: str, retry_after: float | None) -> dict[str, Any]:
        return openai_error(status, message)


class ChatWire(Wire):
    name = "chat"

    def parse(self, body: Mapping[str, Any], model: str | None = None) -> ModelRequest:
        messages = [m for m in body.get("messages") or [] if isinstance(m, Mapping)]
        flags = [
            m.get("role") == "assistant"
            and (bool(m.get("tool_calls")) or is_model_output(True, m.get("content")))
            for m in messages
        ]
        tools: list[ToolSpec] = []
        for tool in body.get("tools") or []:
            function = schema_of(tool.get("function")) if isinstance(tool, Mapping) else {}
            if isinstance(function.get("name"), str):
                tools.append(
                    ToolSpec(
                        function["name"],
                        schema_of(function.get("parameters")),
                        str(function.get("description", "")),
                    )
                )
        response_format = schema_of(body.get("response_format"))
        schema = schema_of(response_format.get("json_schema")).get("schema")
        context = [
            t
            for m in messages
            if m.get("role") in ("system", "developer", "user")
            for t in texts(m.get("content"))
        ]
        return ModelRequest(
            protocol=self.name,
            model=str(body.get("model") or model or "gpt"),
            opening_text=opening_text(
                (flag, m.get("role") == "user", m.get("content"))
                for flag, m in zip(flags, messages, strict=True)
            ),
            model_turns=count_runs(flags),
            tools=tuple(tools),
            context_text="\n".join(context),
            json_schema=schema if isinstance(schema, Mapping) else None,
            wants_json=response_format.get("type") in ("json_object", "json_schema"),
            stream=bool(body.get("stream")),
        )

    def _usage(self, plan: Plan) -> dict[str, Any]:
        usage = plan.usage
        return {
            "prompt_tokens": usage.input_tokens,
            "completion_tokens": usage.output_tokens,
            "total_tokens": usage.input_tokens + usage.output_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens},
        }

    def _tool_calls(self, plan: Plan) -> list[dict[str, Any]]:
        if plan.call is None:
            return []
        arguments = plan.call.custom_input or plan.call.arguments_json
        return [
            {
                "index": 0,
                "id": plan.call.call_id,
                "type": "function",
                "function": {"name": plan.call.name, "arguments": arguments},
            }
        ]

    def _chunk(
        self, model: str, cid: str, delta: dict[str, Any], finish: str | None = None, **extra: Any
    ) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return sse(
            {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": now(),
                "model": model,
                "choices": [choice],
                **extra,
            }
        )

    def response_body(self, plan: Plan, model: str) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": plan.text or None}
        calls = self._tool_calls(plan)
        if calls:
            message["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in calls]
        return {
            "id": new_id("chatcmpl-"),
            "object": "chat.completion",
            "created": now(),
            "model": model,
            "choices": [
                {"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}
            ],
            "usage": self._usage(plan),
        }

    def stream_start(self, plan: Plan, model: str) -> list[str]:
        return [self._chunk(model, new_id("chatcmpl-"), {"role": "assistant", "content": ""})]

    def stream_events(self, plan: Plan, model: str) -> list[str]:
        cid = new_id("chatcmpl-")
        events = [self._chunk(model, cid, {"role": "assistant", "content": ""})]
        for delta in chunk_text(plan.text or ""):
            events.append(self._chunk(model, cid, {"content": delta}))
        calls = self._tool_calls(plan)
        if calls:
            events.append(self._chunk(model, cid, {"tool_calls": calls}))
        events.append(self._chunk(model, cid, {}, "tool_calls" if calls else "stop"))
        events.append(
            sse(
                {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": now(),
                    "model": model,
                    "choices": [],
                    "usage": self._usage(plan),
                }
            )
        )
        events.append(sse("[DONE]"))
        return events

    def error_body(self, status: int, message: str, retry_after: float | None) -> dict[str, Any]:
        return openai_error(status, message)
