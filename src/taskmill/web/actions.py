"""The API's actions: change a task (update, reopen, unblock, comment) and pause or resume the
mill.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from .. import control
from ..errors import Conflict, InvalidInput
from ..ledger import Ledger
from .base import Forbidden, HandlerBase, json_response


class ActionHandlers(HandlerBase):
    """The routes that change something: a task in the ledger, or the mill's pause file."""

    async def update(self, request: Request) -> Response:
        body = await self._body(request)
        if not body:
            raise InvalidInput("nothing to change", hint="send a JSON object of fields")
        if isinstance(body.get("role"), str) and body["role"]:
            from ..roles import check_role

            check_role(self.paths.dir, body["role"], what="role")
        tid = request.path_params["task_id"]
        actor = self._actor(request)
        return await self._in_thread(lambda led: led.update(tid, body, actor=actor).to_json())

    async def reopen(self, request: Request) -> Response:
        tid = request.path_params["task_id"]
        actor = self._actor(request)
        return await self._in_thread(lambda led: led.reopen(tid, actor=actor).to_json())

    async def unblock(self, request: Request) -> Response:
        tid = request.path_params["task_id"]
        actor = self._actor(request)

        def do(led: Ledger) -> Any:
            task = led.get(tid)
            if task.status != "blocked":
                raise Conflict(f"{task.id} is {task.status}, not blocked",
                               hint="reopen a closed task instead" if task.status == "closed"
                               else None)
            return led.update(task.id, {"status": "open"}, actor=actor,
                              expect_status="blocked").to_json()

        return await self._in_thread(do)

    async def comment(self, request: Request) -> Response:
        body = await self._body(request)
        text = body.get("text")
        if not isinstance(text, str):
            raise InvalidInput("a comment needs a text (a string)")
        author = body.get("author")
        if author is not None and not isinstance(author, str):
            raise InvalidInput("author must be a string")
        person = self.person(request)
        if person is not None and author and author != person:
            raise Forbidden(f"{person} cannot comment as {author}")
        author = author or person
        tid = request.path_params["task_id"]
        return await self._in_thread(
            lambda led: led.comment(tid, text, author=author or None).to_json(), status=201)

    async def _in_thread(self, fn: Callable[[Ledger], Any], status: int = 200) -> Response:
        def work() -> Any:
            with self.pool.ledger() as led:
                return fn(led)

        return json_response(await run_in_threadpool(work), status)

    async def pause(self, request: Request) -> Response:
        actor = self._actor(request)
        by = f"by {actor} from the dashboard" if self.person(request) else "from the dashboard"
        if control.pause(self.paths.run, now=self._now(), by=by) and self.person(request):
            await self._in_thread(lambda led: self._audit(led, "mill_paused", actor))
        return json_response({"paused": True})

    async def resume(self, request: Request) -> Response:
        actor = self._actor(request)
        if control.resume(self.paths.run) and self.person(request):
            await self._in_thread(lambda led: self._audit(led, "mill_resumed", actor))
        return json_response({"paused": False})

    @staticmethod
    def _audit(led: Ledger, kind: str, actor: str) -> None:
        """The audit trail says who steered the mill from the page (under --users: a
        person's token)."""
        with led.transaction():
            led.record(kind, None, {"by": "dashboard"}, actor=actor)
