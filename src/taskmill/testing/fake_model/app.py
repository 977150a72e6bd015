"""The fake model's HTTP application: routes, the request log, and answering a plan."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import threading
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from taskmill.testing.fake_model.anthropic import AnthropicWire
from taskmill.testing.fake_model.gemini import GeminiWire
from taskmill.testing.fake_model.openai import ChatWire, ResponsesWire
from taskmill.testing.fake_model.router import Plan, Router
from taskmill.testing.fake_model.script import Script
from taskmill.testing.fake_model.wire import Wire, default_message

SECRET_HEADERS = {
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "x-goog-api-key",
    "api-key",
    "openai-api-key",
}
SECRET_QUERY = {"key", "api_key", "access_token"}
REDACTED = "<redacted>"
GEMINI_VERSIONS = ("v1beta", "v1alpha", "v1")


class RequestLog:
    """Every request the server saw, in memory and (optionally) as NDJSON on disk."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries: list[dict[str, Any]] = []
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()

    def record(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, ensure_ascii=False, default=str)
        with self._lock:
            self._entries.append(entry)
            if self.path is not None:
                with self.path.open("a", encoding="utf-8") as handle:
                    handle.write(line + "\n")

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._entries)


def _headers(request: Request) -> dict[str, str]:
    secret = ("api-key", "apikey", "secret", "token")
    return {
        name: REDACTED if name in SECRET_HEADERS or any(s in name for s in secret) else value
        for name, value in request.headers.items()
    }


def fingerprint(secret: str) -> str:
    """How the log shows a credential it received: enough to tell which key it was, never
    the key itself."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:16]


def _credentials(request: Request) -> dict[str, str]:
    """The credentials a request carried (headers and query parameters), fingerprinted
    (``Authorization: Bearer K`` as K's)."""
    found = {}
    for name, value in request.headers.items():
        if name in SECRET_HEADERS - {"cookie"}:
            scheme, _, rest = value.partition(" ")
            found[name] = fingerprint(rest if scheme.lower() == "bearer" and rest else value)
    for name, value in request.query_params.items():
        if name in SECRET_QUERY:
            found[f"?{name}"] = fingerprint(value)
    return found


def _query(request: Request) -> dict[str, str]:
    return {k: REDACTED if k in SECRET_QUERY else v for k, v in request.query_params.items()}


class FakeModelApp:
    """Builds the Starlette app; keeps the router, the log and the stop flag."""

    def __init__(self, script: Script, log: RequestLog) -> None:
        self.script = script
        self.router = Router(script)
        self.log = log
        self.stopping = threading.Event()
        self.wires: dict[str, Wire] = {
            w.name: w for w in (AnthropicWire(), ResponsesWire(), ChatWire(), GeminiWire())
        }
        post, get = ["POST"], ["GET"]
        routes = [
            Route("/_taskmill/health", self.health, methods=get),
            Route("/_taskmill/requests", self.requests, methods=get),
            Route("/", self.root, methods=["GET", "HEAD"]),
            Route("/v1/messages/count_tokens", self.count_tokens, methods=post),
            Route("/v1/messages", self.anthropic, methods=post),
            Route("/messages", self.anthropic, methods=post),
            Route("/v1/responses", self.responses, methods=post),
            Route("/responses", self.responses, methods=post),
            Route("/v1/chat/completions", self.chat, methods=post),
            Route("/chat/completions", self.chat, methods=post),
            Route("/v1/models", self.models, methods=get),
            Route("/models", self.models, methods=get),
            *[
                Route(f"/{v}/models/{{rest:path}}", self.gemini, methods=post)
                for v in GEMINI_VERSIONS
            ],
            Route("/v1beta/models", self.gemini_models, methods=get),
            Route("/v1/models/{rest:path}", self.model_info, methods=get),
            Route("/v1beta/models/{rest:path}", self.model_info, methods=get),
            Route(
                "/{path:path}",
                self.not_found,
                methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
            ),
        ]
        self.app = Starlette(routes=routes)

    # ----- bookkeeping -------------------------------------------------------------------

    def _entry(self, request: Request, body: Any, served: Mapping[str, Any]) -> None:
        self.log.record(
            {
                "ts": time.time(),
                "method": request.method,
                "path": request.url.path,
                "query": _query(request),
                "headers": _headers(request),
                "credentials": _credentials(request),
                "body": body,
                "served": dict(served),
            }
        )

    async def _body(self, request: Request) -> tuple[bytes, Any]:
        raw = await request.body()
        if not raw:
            return raw, None
        try:
            return raw, json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return raw, raw.decode("utf-8", "replace")

    async def health(self, request: Request) -> Response:
        return JSONResponse(
            {"status": "ok", "requests": len(self.log.entries()), "turns": len(self.script.turns)}
        )

    async def requests(self, request: Request) -> Response:
        return JSONResponse(self.log.entries())

    async def root(self, request: Request) -> Response:
        self._entry(request, None, {"kind": "root"})
        return JSONResponse({"status": "ok", "service": "taskmill fake model"})

    async def not_found(self, request: Request) -> Response:
        _, body = await self._body(request)
        message = f"taskmill fake model: no route for {request.method} {request.url.path}"
        self._entry(request, body, {"kind": "not_found", "status": 404})
        return JSONResponse({"error": {"type": "not_found", "message": message}}, 404)

    # ----- model calls -------------------------------------------------------------------

    async def _call(
        self, request: Request, wire: Wire, model: str | None = None, stream: bool | None = None
    ) -> Response:
        raw, body = await self._body(request)
        if not isinstance(body, dict):
            message = "taskmill fake model: the request body is not a JSON object"
            self._entry(request, body, {"protocol": wire.name, "kind": "bad_request"})
            return JSONResponse(wire.error_body(400, message, None), 400)
        parsed = wire.parse(body, model)
        parsed = replace(parsed, size=len(raw), stream=parsed.stream if stream is None else stream)
        plan = self.router.decide(parsed)
        self._entry(
            request,
            body,
            {
                "protocol": wire.name,
                "model": parsed.model,
                "stream": parsed.stream,
                "tools": [t.name for t in parsed.tools],
                "model_turns": parsed.model_turns,
                **plan.info,
                "usage": plan.usage.as_dict(),
            },
        )
        return self._respond(wire, plan, parsed.model, parsed.stream)

    def _respond(self, wire: Wire, plan: Plan, model: str, stream: bool) -> Response:
        if plan.kind == "error":
            status = plan.status or 500
            headers: dict[str, str] = {}
            if plan.retry_after is not None:
                headers["retry-after"] = str(math.ceil(plan.retry_after))
                headers["retry-after-ms"] = str(int(plan.retry_after * 1000))
            message = plan.message or default_message(status)
            return JSONResponse(
                wire.error_body(status, message, plan.retry_after), status, headers=headers
            )
        if plan.kind == "garbage":
            media = wire.sse_content_type if stream else "application/json"
            return Response(
                "taskmill fake model: <<garbage>> this is not a valid response\n",
                200,
                media_type=media,
            )
        if plan.kind == "stall":
            start = wire.stream_start(plan, model) if stream else []
            media = wire.sse_content_type if stream else "application/json"
            return StreamingResponse(self._stall(start, plan.stall), 200, media_type=media)
        if stream:
            return StreamingResponse(
                self._events(wire.stream_events(plan, model)),
                200,
                media_type=wire.sse_content_type,
                headers={"cache-control": "no-cache"},
            )
        return JSONResponse(wire.response_body(plan, model))

    async def _events(self, events: list[str]) -> AsyncIterator[bytes]:
        for event in events:
            yield event.encode()
            await asyncio.sleep(0)

    async def _stall(self, start: list[str], seconds: float) -> AsyncIterator[bytes]:
        for event in start:
            yield event.encode()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.stopping.is_set():
            await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    async def anthropic(self, request: Request) -> Response:
        return await self._call(request, self.wires["anthropic"])

    async def responses(self, request: Request) -> Response:
        return await self._call(request, self.wires["responses"])

    async def chat(self, request: Request) -> Response:
        return await self._call(request, self.wires["chat"])

    async def count_tokens(self, request: Request) -> Response:
        raw, body = await self._body(request)
        self._entry(request, body, {"protocol": "anthropic", "kind": "count_tokens"})
        return JSONResponse({"input_tokens": max(1, len(raw) // 4)})

    async def gemini(self, request: Request) -> Response:
        rest = request.path_params["rest"]
        model, _, action = rest.rpartition(":")
        wire = self.wires["gemini"]
        if action == "streamGenerateContent":
            return await self._call(request, wire, model, stream=True)
        if action == "generateContent":
            return await self._call(request, wire, model, stream=False)
        raw, body = await self._body(request)
        self._entry(request, body, {"protocol": "gemini", "kind": action or "unknown"})
        if action == "countTokens":
            return JSONResponse({"totalTokens": max(1, len(raw) // 4)})
        if action == "embedContent":
            return JSONResponse({"embedding": {"values": [0.0] * 8}})
        if action == "batchEmbedContents":
            count = len(body.get("requests") or []) if isinstance(body, dict) else 1
            return JSONResponse({"embeddings": [{"values": [0.0] * 8}] * count})
        message = f"taskmill fake model: unknown Gemini action {action!r}"
        return JSONResponse(wire.error_body(404, message, None), 404)

    # ----- model lists -------------------------------------------------------------------

    def _model(self, name: str) -> dict[str, Any]:
        return {
            "id": name,
            "object": "model",
            "created": 0,
            "owned_by": "taskmill",
            "type": "model",
            "display_name": name,
            "created_at": "2025-01-01T00:00:00Z",
        }

    def _gemini_model(self, name: str) -> dict[str, Any]:
        return {
            "name": f"models/{name}",
            "displayName": name,
            "inputTokenLimit": 1048576,
            "outputTokenLimit": 65536,
            "supportedGenerationMethods": [
                "generateContent",
                "streamGenerateContent",
                "countTokens",
            ],
        }

    async def models(self, request: Request) -> Response:
        self._entry(request, None, {"kind": "models"})
        data = [self._model(m) for m in self.script.models]
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"],
                "last_id": data[-1]["id"],
            }
        )

    async def gemini_models(self, request: Request) -> Response:
        self._entry(request, None, {"kind": "models"})
        return JSONResponse({"models": [self._gemini_model(m) for m in self.script.models]})

    async def model_info(self, request: Request) -> Response:
        self._entry(request, None, {"kind": "model_info"})
        name = str(request.path_params["rest"]).removeprefix("models/")
        return JSONResponse({**self._model(name), **self._gemini_model(name)})
