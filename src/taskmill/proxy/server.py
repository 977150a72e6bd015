"""The model proxy: one per ``taskmill run``, so that no agent ever holds a model key.

:class:`ModelProxy` listens on ``127.0.0.1:<ephemeral port>`` and on a unix socket
(``.taskmill/run/proxy-<run id>.sock``, mode 0600; the sandbox binds it into a turn and
forwards the turn's ``127.0.0.1:<port>`` to it). It serves from a thread of its own
(uvicorn on an asyncio loop; httpx upstream), started and stopped with the run.

Routes are per turn: the mill :meth:`~ModelProxy.register`\\ s each agent turn and gets a
random token; the agent's ``base_url`` is ``http://127.0.0.1:<port>/t/<token>[/upstream
path]``. A request to ``/t/<token>/<rest>`` is forwarded to ``<rest>`` on the turn's
upstream host (scheme, host and port are the configured ``base_url``'s: no other host is
reachable through the proxy), with every credential the agent sent removed and the real
key added the family's way (:mod:`.families`). An unknown or expired token is answered
``403``. The answer goes back unchanged, byte for byte, chunk by chunk as it arrives
(upstream is asked for ``accept-encoding: identity``); a copy is read for the usage
(:mod:`.usage`). :meth:`~ModelProxy.unregister` ends the turn's route and returns what it
counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import uvicorn

from ..capability.protocol import bind_unix
from ..errors import ServiceError
from .families import (
    CREDENTIAL_HEADERS,
    CREDENTIAL_QUERY,
    HOP_BY_HOP,
    RESPONSE_DROP,
    Family,
    auth_headers,
)
from .pricing import PriceTable
from .usage import ResponseMeter, TurnUsage

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PLACEHOLDER_KEY = "taskmill-proxy"
"""The key agents are given instead of the real one (their CLIs insist on having one)."""
ROUTE_PREFIX = b"/t/"
MAX_REQUEST_BYTES = 64 * 1024 * 1024


class ProxyError(ServiceError):
    """The proxy could not start."""


@dataclass
class TurnRoute:
    """One turn's way through the proxy."""

    token: str
    agent: str
    family: Family
    upstream: httpx.URL
    key: str | None = field(repr=False)
    usage: TurnUsage = field(default_factory=TurnUsage)
    base_url: str = ""
    """What the agent is given as its ``base_url``."""


def _json_error(status: int, kind: str, message: str) -> tuple[int, bytes]:
    body = json.dumps({"type": "error", "error": {"type": kind, "message": message}})
    return status, body.encode()


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def _no_proxy(host: str, env: Mapping[str, str]) -> bool:
    listed = env.get("NO_PROXY") or env.get("no_proxy") or ""
    for entry in (e.strip().lstrip(".") for e in listed.split(",")):
        if entry == "*" or (entry and (host == entry or host.endswith("." + entry))):
            return True
    return False


def outbound_proxy(upstream: httpx.URL, env: Mapping[str, str]) -> str | None:
    """The HTTP(S) proxy taskmill's environment names for ``upstream`` (none for loopback
    or a ``NO_PROXY`` host)."""
    host = upstream.host
    if _is_loopback(host) or _no_proxy(host, env):
        return None
    names = ("HTTPS_PROXY", "https_proxy") if upstream.scheme == "https" else \
        ("HTTP_PROXY", "http_proxy")
    for name in (*names, "ALL_PROXY", "all_proxy"):
        if env.get(name):
            return env[name]
    return None


class ModelProxy:
    """The reverse proxy between agents and their model endpoints (see the module doc)."""

    def __init__(self, socket_path: Path, prices: PriceTable | None = None, *,
                 env: Mapping[str, str] | None = None, host: str = "127.0.0.1") -> None:
        self.socket_path = socket_path
        self.prices = prices or PriceTable.from_config(None)
        self.env = dict(env or {})
        """taskmill's environment (only its HTTP(S)_PROXY / NO_PROXY are read)."""
        self.host = host
        self.port = 0
        self._routes: dict[str, TurnRoute] = {}
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: dict[str | None, httpx.AsyncClient] = {}
        self._sockets: list[socket.socket] = []
        self._failure: BaseException | None = None

    # -- life ----------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> ModelProxy:
        # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY on accepted connections only when
        # the socket says so (proto 0 would leave Nagle on: ~40 ms per streamed answer)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((self.host, 0))
            tcp.listen(256)
            self.port = int(tcp.getsockname()[1])
            self.socket_path.parent.mkdir(parents=True, exist_ok=True)
            self.socket_path.unlink(missing_ok=True)
            bind_unix(unix, self.socket_path)
            os.chmod(self.socket_path, 0o600)
            unix.listen(256)
        except OSError as exc:
            tcp.close()
            unix.close()
            raise ProxyError(f"cannot start the model proxy: {exc}") from exc
        self._sockets = [tcp, unix]
        config = uvicorn.Config(self.app, log_level="warning", access_log=False,
                                lifespan="off", ws="none", interface="asgi3", proxy_headers=False,
                                timeout_graceful_shutdown=1,
                                timeout_keep_alive=30, server_header=False, date_header=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="taskmill-proxy", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ProxyError(f"the model proxy did not start: {self._failure!r}")
            time.sleep(0.005)
        return self

    def _serve(self) -> None:
        assert self._server is not None
        try:
            asyncio.run(self._main(self._server))
        except BaseException as exc:  # reported by start() / stop()
            self._failure = exc

    async def _main(self, server: uvicorn.Server) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            await server.serve(sockets=self._sockets)
        finally:
            for client in list(self._clients.values()):
                with contextlib.suppress(Exception):
                    await client.aclose()
            self._clients.clear()

    def stop(self) -> None:
        """Stop serving (streams still open are cut after a second) and remove the socket."""
        with self._lock:
            self._routes.clear()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for sock in self._sockets:
            sock.close()
        self._sockets = []
        self.socket_path.unlink(missing_ok=True)

    def __enter__(self) -> ModelProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- turns ---------------------------------------------------------------------------

    def register(self, *, agent: str, upstream: str, key: str | None,
                 family: Family) -> TurnRoute:
        """A route for one turn of ``agent`` to ``upstream`` (its configured ``base_url``)."""
        url = httpx.URL(upstream)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"agent {agent!r}: base_url {upstream!r} is not an http(s) URL")
        token = secrets.token_urlsafe(24)
        route = TurnRoute(token=token, agent=agent, family=family, upstream=url, key=key)
        path = url.raw_path.split(b"?", 1)[0].decode("ascii").rstrip("/")
        route.base_url = f"http://127.0.0.1:{self.port}/t/{token}{path}"
        with self._lock:
            self._routes[token] = route
        return route

    def unregister(self, token: str, settle: float = 2.0) -> TurnUsage | None:
        """End a turn's route (later requests with its token get 403); what it counted,
        once the answers in flight are finished (at most ``settle`` seconds: an agent that
        exited has read all it will read; a cut answer ends at once)."""
        with self._lock:
            route = self._routes.pop(token, None)
        if route is None:
            return None
        route.usage.settle(settle)
        return route.usage

    # -- serving -------------------------------------------------------------------------

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        raw = bytes(scope.get("raw_path") or scope["path"].encode())
        token, rest = b"", b""
        if raw.startswith(ROUTE_PREFIX):
            token, _, rest = raw[len(ROUTE_PREFIX):].partition(b"/")
        with self._lock:
            route = self._routes.get(token.decode("ascii", "replace")) if token else None
        if route is None:
            await self._answer(send, *_json_error(
                403, "forbidden", "taskmill model proxy: unknown or expired turn token "
                "(the proxy serves only the agent turns the mill is running)"))
            return
        await self._forward(route, scope, receive, send, b"/" + rest)

    async def _answer(self, send: Send, status: int, body: bytes) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def _client(self, upstream: httpx.URL) -> httpx.AsyncClient:
        proxy = outbound_proxy(upstream, self.env)
        client = self._clients.get(proxy)
        if client is None:
            # TCP_NODELAY: httpcore writes a request's head and body separately; without it
            # the body waits for the upstream's delayed ACK (~40 ms per request)
            transport = httpx.AsyncHTTPTransport(
                proxy=proxy, trust_env=False,
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
                socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
            client = httpx.AsyncClient(
                transport=transport, trust_env=False, follow_redirects=False,
                timeout=httpx.Timeout(connect=30.0, read=None, write=60.0, pool=60.0))
            self._clients[proxy] = client
        return client

    async def _forward(self, route: TurnRoute, scope: Scope, receive: Receive, send: Send,
                       path: bytes) -> None:
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > MAX_REQUEST_BYTES:
                await self._answer(send, *_json_error(
                    413, "request_too_large", "taskmill model proxy: request body over 64 MB"))
                return
            if not message.get("more_body"):
                break
        query = scope.get("query_string") or b""
        if query:
            kept = [(k, v) for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True)
                    if k.lower() not in CREDENTIAL_QUERY]
            query = urlencode(kept).encode("latin-1")
        url = route.upstream.copy_with(raw_path=path + (b"?" + query if query else b""))
        if url.host != route.upstream.host or url.port != route.upstream.port:
            await self._answer(send, *_json_error(
                403, "forbidden", "taskmill model proxy: only the configured upstream is "
                "reachable"))
            return
        headers = [(k, v) for k, v in scope["headers"]
                   if k.lower().decode("latin-1") not in CREDENTIAL_HEADERS | HOP_BY_HOP]
        headers.append((b"accept-encoding", b"identity"))
        headers += [(k.encode(), v.encode()) for k, v in auth_headers(route.family, route.key)]
        client = self._client(route.upstream)
        request = client.build_request(scope["method"], url, headers=headers,
                                       content=bytes(body))
        route.usage.count_request()
        try:
            response = await client.send(request, stream=True)
        except BaseException as exc:
            route.usage.record(502, None, None)
            if not isinstance(exc, httpx.HTTPError):
                raise
            await self._answer(send, *_json_error(
                502, "api_error", f"taskmill model proxy: cannot reach the upstream "
                f"{route.upstream.scheme}://{route.upstream.netloc.decode()}: {exc!r}"))
            return
        pump = asyncio.ensure_future(self._pump(route, response, send, body, path))
        watch = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait({pump, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, watch):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
            await response.aclose()

    async def _pump(self, route: TurnRoute, response: httpx.Response, send: Send,
                    body: bytearray, path: bytes) -> None:
        meter = ResponseMeter(response.headers.get("content-type", ""),
                              response.headers.get("content-encoding", ""))
        headers = [(k, v) for k, v in response.headers.raw
                   if k.lower().decode("latin-1") not in RESPONSE_DROP]
        try:
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": headers})
            async for chunk in response.aiter_raw():
                meter.feed(chunk)  # before the agent has the bytes: counted when it has them
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the agent went away
        finally:  # the request's model only when the answer named none (off the hot path)
            counts = meter.close()
            route.usage.record(response.status_code, counts,
                               meter.model or _request_model(body, path))


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _request_model(body: bytes | bytearray, path: bytes) -> str | None:
    """The model a request names (its JSON ``model``, or Gemini's ``/models/M:action``)."""
    marker = path.find(b"/models/")
    if marker >= 0:
        name = path[marker + len(b"/models/"):].split(b":", 1)[0].split(b"?", 1)[0]
        if name:
            return name.decode("utf-8", "replace")
    if body[:1] == b"{" and len(body) < 8 * 1024 * 1024:
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            value = json.loads(body).get("model")
            if isinstance(value, str) and value:
                return value
    return None
