"""Gemini API (``POST /v1beta/models/M:streamGenerateContent?alt=sse`` and
``:generateContent``), as Gemini CLI speaks it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taskmill.testing.fake_model.router import ModelRequest, Plan
from taskmill.testing.fake_model.tools import ToolSpec
from taskmill.testing.fake_model.wire import (
    Wire,
    chunk_text,
    count_runs,
    is_model_output,
    new_id,
    opening_text,
    schema_of,
    sse,
    texts,
)

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def _text_parts(content: Any) -> list[str]:
    parts = content.get("parts") if isinstance(content, Mapping) else None
    return [
        p["text"] for p in parts or [] if isinstance(p, Mapping) and isinstance(p.get("text"), str)
    ]


class GeminiWire(Wire):
    name = "gemini"

    def parse(self, body: Mapping[str, Any], model: str | None = None) -> ModelRequest:
        contents = [c for c in body.get("contents") or [] if isinstance(c, Mapping)]
        flags = [
            c.get("role") == "model"
            and (
                any(isinstance(p, Mapping) and "functionCall" in p for p in c.get("parts") or [])
                or is_model_output(True, {"text": _text_parts(c)})
            )
            for c in contents
        ]
        tools: list[ToolSpec] = []
        for group in body.get("tools") or []:
            for decl in schema_of(group).get("functionDeclarations") or []:
                if isinstance(decl, Mapping) and isinstance(decl.get("name"), str):
                    schema = decl.get("parametersJsonSchema") or decl.get("parameters")
                    tools.append(
                        ToolSpec(decl["name"], schema_of(schema), str(decl.get("description", "")))
                    )
        config = schema_of(body.get("generationConfig"))
        schema = config.get("responseJsonSchema") or config.get("responseSchema")
        context = _text_parts(body.get("systemInstruction")) + [
            t for c in contents if c.get("role", "user") == "user" for t in _text_parts(c)
        ]
        return ModelRequest(
            protocol=self.name,
            model=model or "gemini",
            opening_text=opening_text(
                (flag, c.get("role", "user") == "user", {"text": _text_parts(c)})
                for flag, c in zip(flags, contents, strict=True)
            ),
            model_turns=count_runs(flags),
            tools=tuple(tools),
            context_text="\n".join(texts(context)),
            json_schema=schema if isinstance(schema, Mapping) else None,
            wants_json=config.get("responseMimeType") == "application/json",
        )

    def _usage(self, plan: Plan) -> dict[str, int]:
        usage = plan.usage
        return {
            "promptTokenCount": usage.input_tokens,
            "candidatesTokenCount": usage.output_tokens,
            "totalTokenCount": usage.input_tokens + usage.output_tokens,
            "cachedContentTokenCount": usage.cache_read_tokens,
        }

    def _chunk(
        self, model: str, rid: str, parts: list[dict[str, Any]], plan: Plan, finish: str | None
    ) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        return {
            "candidates": [candidate],
            "usageMetadata": self._usage(plan),
            "modelVersion": model,
            "responseId": rid,
        }

    def _parts(self, plan: Plan) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        if plan.text:
            parts.append({"text": plan.text})
        if plan.call is not None:
            args = dict(plan.call.arguments)
            if plan.call.custom_input is not None:
                args = {"input": plan.call.custom_input}
            parts.append({"functionCall": {"name": plan.call.name, "args": args}})
        return parts

    def response_body(self, plan: Plan, model: str) -> dict[str, Any]:
        return self._chunk(model, new_id(""), self._parts(plan) or [{"text": ""}], plan, "STOP")

    def stream_start(self, plan: Plan, model: str) -> list[str]:
        return [sse(self._chunk(model, new_id(""), [{"text": ""}], plan, None))]

    def stream_events(self, plan: Plan, model: str) -> list[str]:
        rid = new_id("")
        parts = self._parts(plan)
        events: list[str] = []
        text_parts = [p for p in parts if "text" in p]
        call_parts = [p for p in parts if "functionCall" in p]
        pieces = chunk_text(text_parts[0]["text"]) if text_parts else []
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1 and not call_parts
            events.append(
                sse(self._chunk(model, rid, [{"text": piece}], plan, "STOP" if last else None))
            )
        if call_parts or not pieces:
            events.append(sse(self._chunk(model, rid, call_parts or [{"text": ""}], plan, "STOP")))
        return events

    def error_body(self, status: int, message: str, retry_after: float | None) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": status,
            "message": message,
            "status": STATUS_NAMES.get(status, "UNKNOWN"),
        }
        if retry_after is not None:
            error["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{retry_after:g}s",
                }
            ]
        return {"error": error}
