"""The dashboard's JSON API under ``/api/``: thin handlers over :class:`~taskmill.ledger.Ledger`.

Every route is declared once in :data:`~taskmill.web.routes.ROUTES` with the metadata its
OpenAPI description is generated from (``GET /api/openapi.json``). Errors are ``{"error":
{"code", "message", "hint"?}}`` with the ledger's error ``code`` and an HTTP status derived
from it.

:class:`Api` is the handlers of every route, in groups by module:

- :mod:`~taskmill.web.reads`: the project, tasks, audit trail, diffs and logs, the graph;
- :mod:`~taskmill.web.actions`: update, reopen, unblock, comment; pause and resume the mill;
- :mod:`~taskmill.web.mill_state`: what the mill is doing (its events file, workers, the
  merge queue, totals);
- :mod:`~taskmill.web.workflows`: formulas' instances and the orders;
- :mod:`~taskmill.web.review_page`: approvals (approve, send back) and the hit rate;
- :mod:`~taskmill.web.live`: the server-sent event stream and the watcher that feeds it;
- :mod:`~taskmill.web.research`: research mode's experiments and contributions;
- :mod:`~taskmill.web.requests`: request templates, a task from one, starting and stopping
  the mill ``serve --mill`` runs;
- :mod:`~taskmill.web.base`: what they share (errors as JSON, ledger connections, parsing).
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response

from ..clock import Clock
from ..config import Config
from ..ledger import database_url
from ..mill.git import Git, git_env
from ..paths import LedgerPaths
from .actions import ActionHandlers
from .base import Forbidden, LedgerPool, error_response, json_response
from .live import Broadcaster, LiveHandlers
from .mill_state import MillLog, MillStateHandlers
from .openapi import Param, RouteSpec, openapi_document
from .reads import LayoutCache, ReadHandlers
from .requests import RequestHandlers
from .research import ResearchHandlers
from .review_page import ReviewHandlers
from .routes import ROUTES
from .workflows import WorkflowHandlers

__all__ = [
    "ROUTES", "Api", "Broadcaster", "Forbidden", "LedgerPool", "MillLog", "Param", "RouteSpec",
    "error_response", "openapi_document",
]


class Api(ReadHandlers, ActionHandlers, MillStateHandlers, LiveHandlers, ResearchHandlers,
          WorkflowHandlers, ReviewHandlers, RequestHandlers):
    """The handler of every route in :data:`ROUTES` (by its ``handler`` name)."""

    def __init__(self, paths: LedgerPaths, config: Config, env: Mapping[str, str], clock: Clock,
                 actor: str) -> None:
        self.paths = paths
        self.config = config
        self.env = env
        self.clock = clock
        url = database_url(config.ledger_url, env)
        self.pool = LedgerPool(paths, config, clock, actor, url=url)
        self.mill_log = MillLog(paths.run.events)
        self.broadcaster = Broadcaster(paths, self.mill_log, url=url)
        self.git = Git(paths.root, git_env(env))
        self.layouts = LayoutCache()
        self.service = None

    def close(self) -> None:
        self.pool.close()

    def openapi(self, request: Request) -> Response:
        return json_response(openapi_document(ROUTES))
