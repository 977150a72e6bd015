"""The dashboard application: the JSON API, the page (static files) and access control.

Access control, in one ASGI middleware (:class:`Guard`). The dashboard always has a token
(``taskmill serve`` prints it and writes it to ``.taskmill/run/serve.token``, mode 0600):

- every request that changes something needs it, on loopback too (an agent, or any local
  process, cannot PATCH a task's checks or close it): ``Authorization: Bearer TOKEN``, the
  cookie, or ``?token=``. The page gets it written into the HTML it is served (a page of
  another site cannot read that: no CORS, and the ``Host`` check below) and sends it as a
  bearer token;
- bound to loopback (the default) reads need no token, but the ``Host`` header must name
  the loopback (a page on another site cannot reach the API through DNS rebinding);
- bound to any other address every request needs the token: ``?token=`` once (the page
  then gets a cookie and is redirected to the same address without the token), the cookie,
  or ``Authorization: Bearer``;
- requests that change something must send ``Content-Type: application/json``, and an
  ``Origin`` header, when there is one, must match the ``Host``: a form or a script on
  another site cannot post to the dashboard.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import secrets
from collections.abc import AsyncIterator, Collection, Mapping
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..clock import Clock, SystemClock
from ..errors import TaskmillError
from ..mill_service import MillService
from ..project import actor_from_env, open_project
from .api import Api
from .base import error_response
from .routes import ROUTES

STATIC_DIR = Path(__file__).parent / "static"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TOKEN_PLACEHOLDER = "{{TASKMILL_TOKEN}}"


def new_token() -> str:
    return secrets.token_urlsafe(24)


def _error(status: int, code: str, message: str, hint: str | None = None) -> JSONResponse:
    err: dict[str, Any] = {"code": code, "message": message}
    if hint:
        err["hint"] = hint
    return JSONResponse({"error": err}, status_code=status)


class Guard:
    """Token, Host and Origin checks (see the module's description)."""

    def __init__(self, app: ASGIApp, *, token: str | None,
                 allowed_hosts: Collection[str] | None, reads_need_token: bool = True,
                 users: Mapping[str, str] | None = None) -> None:
        self.app = app
        self.token = token
        self.users = dict(users or {})
        """token -> person (``taskmill serve --users``): such a request acts as the person."""
        self.reads_need_token = reads_need_token
        self.allowed_hosts = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}
        digest = hashlib.sha256((token or "").encode()).hexdigest()[:12]
        self.cookie_name = f"taskmill_{digest}"

    def _valid(self, value: str | None) -> bool:
        return self._who(value) is not None

    def _who(self, value: str | None) -> str | None:
        """Whose token ``value`` is: a person's name, ``""`` for the dashboard's own token,
        None for no valid token."""
        if not value:
            return None
        found: str | None = None
        for token, person in self.users.items():  # compare with every token (constant time)
            if secrets.compare_digest(value.encode(), token.encode()):
                found = person
        if self.token and secrets.compare_digest(value.encode(), self.token.encode()):
            found = ""
        return found

    @staticmethod
    def _as(scope: Scope, person: str, token: str) -> None:
        state = scope.setdefault("state", {})
        state["person"] = person or None
        state["token"] = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        host = request.headers.get("host", "")
        if self.allowed_hosts is not None:
            hostname = (urlsplit(f"//{host}").hostname or "").lower()
            if hostname not in self.allowed_hosts and f"[{hostname}]" not in self.allowed_hosts:
                await _error(403, "forbidden", f"host {host!r} is not served here",
                             hint="open the dashboard at the address `taskmill serve` "
                                  "printed")(scope, receive, send)
                return
        if request.method in UNSAFE_METHODS:
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/json":
                await _error(415, "invalid", "send changes as application/json")(
                    scope, receive, send)
                return
            origin = request.headers.get("origin")
            if origin and origin != "null" and urlsplit(origin).netloc.lower() != host.lower():
                await _error(403, "forbidden", f"requests from {origin} are refused")(
                    scope, receive, send)
                return
        if self.token is None or (not self.reads_need_token
                                  and request.method not in UNSAFE_METHODS):
            await self.app(scope, receive, send)
            return
        from_query = request.query_params.get("token")
        who = self._who(from_query)
        if who is not None and from_query:
            if request.method == "GET" and not request.url.path.startswith("/api/"):
                rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
                target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
                response = Response(status_code=303, headers={"Location": target})
                self._set_cookie(response, from_query)
                await response(scope, receive, send)
                return
            self._as(scope, who, from_query)
            await self.app(scope, receive, self._with_cookie(send, from_query))
            return
        auth = request.headers.get("authorization", "")
        bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        cookies = SimpleCookie()
        with contextlib.suppress(Exception):
            cookies.load(request.headers.get("cookie", ""))
        morsel = cookies.get(self.cookie_name)
        for given in (bearer, morsel.value if morsel else None):
            who = self._who(given)
            if who is not None and given:
                self._as(scope, who, given)
                await self.app(scope, receive, send)
                return
        what = "this dashboard needs its token" if self.reads_need_token else \
            "changes need the dashboard's token"
        await _error(401, "unauthorized", what,
                     hint="send Authorization: Bearer TOKEN (`taskmill serve` prints it and "
                          "writes it to .taskmill/run/serve.token), or use the page `taskmill "
                          "serve` opens")(scope, receive, send)

    def _set_cookie(self, response: Response, token: str) -> None:
        response.set_cookie(self.cookie_name, token, httponly=True, samesite="strict",
                            path="/")

    def _with_cookie(self, send: Send, token: str) -> Send:
        probe = Response()
        self._set_cookie(probe, token)
        header = next(v for k, v in probe.raw_headers if k == b"set-cookie")

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                   (b"set-cookie", header)]}
            await send(message)

        return wrapped


def _routes(api: Api, token: str) -> list[BaseRoute]:
    routes: list[BaseRoute] = [
        Route(spec.path, getattr(api, spec.handler), methods=[spec.method], name=spec.handler)
        for spec in ROUTES
    ]
    template = (STATIC_DIR / "index.html").read_text(encoding="utf-8")

    async def index(request: Request) -> Response:
        # the page carries the token it was opened with (a person's, under --users; else
        # the dashboard's): never stored, never shown to another origin
        given = request.scope.get("state", {}).get("token") or token
        page = template.replace(TOKEN_PLACEHOLDER, html.escape(given, quote=True))
        return HTMLResponse(page, headers={"Cache-Control": "no-store",
                                           "Referrer-Policy": "no-referrer",
                                           "X-Frame-Options": "DENY"})

    routes += [
        Route("/", index, methods=["GET"], include_in_schema=False),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    return routes


async def _taskmill_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TaskmillError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized",
            403: "forbidden"}.get(exc.status_code, "invalid" if exc.status_code < 500 else "error")
    return _error(exc.status_code, code, str(exc.detail))


async def _server_error(request: Request, exc: Exception) -> Response:
    return _error(500, "error", f"{type(exc).__name__}: {exc}")


def create_app(project_root: Path, env: Mapping[str, str], clock: Clock | None = None, *,
               token: str | None = None, loopback: bool = True,
               allowed_hosts: Collection[str] | None = LOOPBACK_HOSTS,
               users: Mapping[str, str] | None = None,
               mill: Mapping[str, Any] | None = None) -> Starlette:
    """The dashboard for the ledger of the repository containing ``project_root``.

    ``token``: what every change needs (a new one when not given; ``app.state.token``).
    ``loopback``: served on the loopback only, so reads need no token and the ``Host``
    must be one of ``allowed_hosts`` (``None``: any); not on the loopback, every request
    needs the token and any ``Host`` is served.
    ``users``: token -> person (``--users``): every request needs a token (on the loopback
    too), and one with a person's token acts as that person.
    ``mill``: run the mill in this process (``--mill``), with these ``[run]`` overrides; the
    page starts and stops it (:class:`~taskmill.mill_service.MillService`).
    """
    token = token or new_token()
    project = open_project(Path(project_root), env, clock=clock)
    paths, config = project.paths, project.config
    project.close()
    api = Api(paths, config, env, clock or SystemClock(), actor_from_env(env))
    if mill is not None:
        service = MillService(paths, config, env, api.clock, overrides=mill)
        api.service = service
        api.broadcaster.service = lambda: service.status().to_json()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if api.service is not None:  # as taskmill run's Ctrl-C: drain, then cut
                await run_in_threadpool(api.service.close)
            await api.broadcaster.aclose()
            api.close()

    app = Starlette(
        routes=_routes(api, token),
        exception_handlers={TaskmillError: _taskmill_error, HTTPException: _http_error,
                            Exception: _server_error},
        lifespan=lifespan,
    )
    app.state.api = api
    app.state.token = token
    app.add_middleware(Guard, token=token, allowed_hosts=allowed_hosts if loopback else None,
                       reads_need_token=not loopback or bool(users), users=users)
    return app

