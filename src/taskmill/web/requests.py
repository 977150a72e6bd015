"""The API's door for people: request templates, creating a task from one, and starting or
stopping the mill that ``taskmill serve --mill`` runs in the same process.

Every change is made as the person whose token the request carries (``taskmill serve
--users``; see :mod:`taskmill.web.users`) and is in the audit trail under their name.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ..errors import Conflict, InvalidInput
from ..mill_service import MillService
from ..templates import create_from_template, load_templates
from .base import HandlerBase, json_response


class RequestHandlers(HandlerBase):
    """``/api/templates``, ``/api/tasks/from-template``, ``/api/mill/start|stop``."""

    service: MillService | None

    def templates(self, request: Request) -> Response:
        return json_response([t.to_json() for t in load_templates(self.paths)])

    async def from_template(self, request: Request) -> Response:
        body = await self._body(request)
        name = body.get("template")
        if not isinstance(name, str) or not name:
            raise InvalidInput("name the template: {\"template\": NAME, \"fields\": {...}}")
        fields = body.get("fields", {})
        if not isinstance(fields, dict):
            raise InvalidInput("fields must be an object of field name -> value")
        after = _strings(body, "after")
        labels = _strings(body, "labels")
        priority = body.get("priority")
        if priority is not None and (not isinstance(priority, int) or isinstance(priority, bool)
                                     or not 0 <= priority <= 4):
            raise InvalidInput("priority must be an integer from 0 to 4")
        actor = self._actor(request)

        def work() -> Any:
            with self.pool.ledger() as led:
                task = create_from_template(led, self, name, fields, actor, after=after,
                                            labels=labels, priority=priority)
                return task.to_json()

        data = await run_in_threadpool(work)
        if self.service is not None:
            self.service.wake()
        return json_response(data, 201)

    def _record(self, kind: str, actor: str, data: dict[str, Any]) -> None:
        with self.pool.ledger() as led, led.transaction():
            led.record(kind, None, data, actor=actor)

    async def mill_start(self, request: Request) -> Response:
        service = self._service()
        actor = self._actor(request)
        status = await run_in_threadpool(service.start, actor)  # reads the order files
        await run_in_threadpool(self._record, "mill_started", actor, {"by": "dashboard"})
        return json_response(status.to_json())

    async def mill_stop(self, request: Request) -> Response:
        service = self._service()
        actor = self._actor(request)
        status = service.stop(actor)
        await run_in_threadpool(self._record, "mill_stopped", actor, {"by": "dashboard"})
        return json_response(status.to_json())

    def _service(self) -> MillService:
        if self.service is None:
            raise Conflict("this dashboard does not run the mill",
                           hint="start it with `taskmill serve --mill`, or run `taskmill run`"
                                " in a terminal")
        return self.service

    def _service_json(self) -> dict[str, Any] | None:
        return None if self.service is None else self.service.status().to_json()


def _strings(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInput(f"{key} must be a list of strings")
    return list(value)

