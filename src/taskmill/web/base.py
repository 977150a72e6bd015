"""What every group of API handlers shares: errors as JSON, ledger connections, request parsing.

:class:`HandlerBase` holds the project (paths, configuration, clock, a :class:`LedgerPool`)
and the helpers the handler groups in :mod:`~taskmill.web.reads`,
:mod:`~taskmill.web.actions` and :mod:`~taskmill.web.mill_state` have in common; the handler
groups are mixed into :class:`taskmill.web.api.Api`.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from ..clock import Clock, elapsed_seconds
from ..config import Config
from ..control import is_paused
from ..errors import Forbidden as Forbidden  # re-exported: the handlers raise it
from ..errors import InvalidInput, TaskmillError
from ..ledger import Ledger
from ..mill_service import MillService
from ..model import BlockedTask, Task
from ..paths import LedgerPaths
from ..review.log_names import mill_review_log
from ..roles.budget import Hold, current_holds, mark_held, read_budgets
from ..validation import LIMIT_MAX


class TooLarge(InvalidInput):
    code = "too_large"


# A request body larger than this is refused unread (413): the largest change the ledger
# accepts (four 64 KiB texts and two 64 KiB JSON objects) fits well inside it.
BODY_MAX_BYTES = 1024 * 1024

HTTP_STATUS = {
    "too_large": 413, "invalid": 400, "not_initialized": 400, "not_a_repository": 400, "plan_invalid": 400,
    "cycle": 400, "unauthorized": 401, "forbidden": 403, "not_found": 404, "conflict": 409,
    "claim_conflict": 409, "git": 502, "integrity": 500, "database": 503, "error": 500,
}


def error_response(exc: TaskmillError) -> JSONResponse:
    return JSONResponse(exc.to_json(), status_code=HTTP_STATUS.get(exc.code, 500))


def json_response(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)


# -- ledger connections ------------------------------------------------------------------------


class LedgerPool:
    """A few ledger connections shared by the request threads (one per request at a time)."""

    def __init__(self, paths: LedgerPaths, config: Config, clock: Clock, actor: str, *,
                 url: str | None = None) -> None:
        self.paths = paths
        self.url = url
        self.config = config
        self.clock = clock
        self.actor = actor
        self._idle: queue.LifoQueue[Ledger] = queue.LifoQueue()
        self._all: list[Ledger] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def ledger(self) -> Iterator[Ledger]:
        try:
            led = self._idle.get_nowait()
        except queue.Empty:
            led = Ledger.open(self.paths.db, prefix=self.config.prefix, clock=self.clock,
                              actor=self.actor, url=self.url)
            with self._lock:
                self._all.append(led)
        try:
            yield led
        finally:
            led.store.reset()  # never hand on a connection inside a transaction
            self._idle.put(led)

    def close(self) -> None:
        with self._lock:
            while True:
                try:
                    self._idle.get_nowait()
                except queue.Empty:
                    break
            for led in self._all:
                with contextlib.suppress(Exception):
                    led.close_db()
            self._all.clear()


# -- the handlers' common ground -----------------------------------------------------------------


class HandlerBase:
    """The project the handlers serve, and the helpers more than one group of them uses."""

    paths: LedgerPaths
    config: Config
    clock: Clock
    pool: LedgerPool
    service: MillService | None
    """The mill ``taskmill serve --mill`` runs in this process (None: not that)."""

    # -- the request ----------------------------------------------------------------------

    @staticmethod
    async def _body(request: Request) -> dict[str, Any]:
        too_large = TooLarge(f"the request body is larger than {BODY_MAX_BYTES // 1024} KiB",
                             hint="a text field holds at most 64 KiB")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > BODY_MAX_BYTES:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > BODY_MAX_BYTES:
                raise too_large
            chunks.append(chunk)
        raw = b"".join(chunks)
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except RecursionError:
            raise InvalidInput("the request body nests too deep") from None
        except ValueError as exc:
            raise InvalidInput(f"the request body is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidInput("the request body must be a JSON object")
        return data

    @staticmethod
    def _int(request: Request, name: str, default: int | None = None, *, low: int = 1,
             high: int = LIMIT_MAX) -> int | None:
        """An integer query parameter from ``low`` to ``high`` (``default`` when absent)."""
        value = request.query_params.get(name)
        if value is None or value == "":
            return default
        try:
            number = int(value.strip()) if len(value) <= 30 else None
        except ValueError:
            number = None
        if number is None or not low <= number <= high:
            raise InvalidInput(f"{name} must be an integer from {low} to {high:,}, not "
                               f"{value[:40]!r}")
        return number

    @staticmethod
    def _flag(request: Request, name: str) -> bool:
        return request.query_params.get(name, "").lower() in ("1", "true", "yes", "on")

    @staticmethod
    def _statuses(request: Request) -> list[str] | None:
        raw = request.query_params.get("status")
        if not raw:
            return None
        return [s for s in (p.strip() for p in raw.split(",")) if s]

    @staticmethod
    def person(request: Request) -> str | None:
        """The person whose token the request carries (``taskmill serve --users``)."""
        person = request.scope.get("state", {}).get("person")
        return person if isinstance(person, str) else None

    def _actor(self, request: Request) -> str:
        """Who makes the request's changes: its person, or the dashboard's actor."""
        return self.person(request) or self.pool.actor

    # -- the project ----------------------------------------------------------------------

    def _paused(self) -> bool:
        return is_paused(self.paths.run)

    def _now(self) -> datetime:
        return self.clock.now()

    def _attempt_json(self, attempt: dict[str, Any], now: datetime) -> dict[str, Any]:
        item = dict(attempt)
        item["running"] = item.get("outcome") is None
        item["duration_s"] = elapsed_seconds(item.get("started_at"), item.get("ended_at"), now)
        log = self._log_file(item.get("log_path"))
        item["has_log"] = bool(log and log.is_file())
        item["has_checks_log"] = bool(log and log.with_suffix(".checks.log").is_file())
        item["has_review_log"] = bool(log and mill_review_log(log))
        return item

    def _log_file(self, log_path: str | None) -> Path | None:
        if not log_path:
            return None
        path = Path(log_path)
        if not path.is_absolute():
            path = self.paths.root / path
        return path

    def _holds(self, led: Ledger) -> dict[str, Hold]:
        """The roles whose daily budget is spent: their open tasks wait (``held``)."""
        return current_holds(led, read_budgets(self.paths.dir), self._now())

    def _mark_held(self, led: Ledger, tasks: list[Task]) -> list[Task]:
        holds = self._holds(led)
        if holds:
            mark_held(tasks, holds)
        return tasks

    def _blocked(self, led: Ledger) -> list[dict[str, Any]]:
        held = led.blocked()
        holds = self._holds(led)
        if holds:  # ready tasks whose role spent its daily budget wait too
            waiting = mark_held([t for t in led.ready() if t.role in holds], holds)
            held += [BlockedTask(t, [], [], reasons=[t.held or ""]) for t in waiting]
        last = led.last_comments([b.task.id for b in held])
        out = []
        for b in held:
            item = b.to_json()
            comment = last.get(b.task.id)
            item["last_comment"] = comment.to_json() if comment else None
            out.append(item)
        return out
