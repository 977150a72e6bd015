"""The API's review routes: the approvals page's data (each task awaiting approval with its
diff, checks, findings and the agent's notes, plus the reviewer's hit rate) and the approve /
send-back actions (:mod:`taskmill.review.approval`)."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ..errors import InvalidInput
from ..ledger import Ledger
from ..mill.git import Git
from ..mill.prompt import AGENT_AUTHOR
from ..review.approval import approve, awaiting, reject
from ..review.book import dismiss, findings
from ..review.settings import ReviewSettings
from ..review.stats import current_threshold, hit_rates, since_days
from .base import HandlerBase, json_response

DIFF_LIMIT = 200_000


class ReviewHandlers(HandlerBase):
    git: Git

    def _approval(self, led: Ledger, task: Any, state: Any) -> dict[str, Any]:
        attempts = led.attempts(task.id)
        passed = next((a for a in reversed(attempts) if a.get("id") == state.attempt), None)
        detail = (passed or {}).get("detail") or {}
        diff, truncated = "", False
        commit = state.commit
        if commit and self.git.rev(commit) is not None:
            base = self.git.run("merge-base", "HEAD", commit, check=False).stdout.strip()
            text = self.git.run("diff", "--no-color", "--no-ext-diff", "--stat", "--patch",
                                base or f"{commit}~1", commit, check=False, timeout=30.0).stdout
            diff, truncated = text[:DIFF_LIMIT], len(text) > DIFF_LIMIT
        return {
            "task": task.to_json(), "commit": commit, "attempt": state.attempt,
            "since": state.at, "diff": diff, "truncated": truncated,
            "checks": list(detail.get("checks") or []),
            "findings": [r.to_json() for r in findings(led, task_id=task.id)],
            "notes": task.notes or "",
            "agent_comments": [c.text for c in task.comments
                               if c.author.startswith(AGENT_AUTHOR)],
        }

    def review(self, request: Request) -> Response:
        settings = ReviewSettings.from_raw(self.config.raw) or ReviewSettings()
        with self.pool.ledger() as led:
            since = since_days(self._now(), settings.window_days)
            rows = hit_rates(findings(led, since=since), by_severity=False)
            rows += hit_rates(findings(led, since=since))
            waiting = [self._approval(led, task, state) for task, state in awaiting(led)]
            threshold = current_threshold(led, settings.min_confidence)
        return json_response({"approvals": waiting, "hit_rates": [r.to_json() for r in rows],
                              "threshold": threshold, "window_days": settings.window_days,
                              "target_hit_rate": settings.target_hit_rate})

    async def approve(self, request: Request) -> Response:
        tid = request.path_params["task_id"]
        actor = self._actor(request)

        def work() -> Any:
            with self.pool.ledger() as led:
                state = approve(led, tid, actor=actor)
                return {"task": led.resolve(tid), "status": state.status,
                        "commit": state.commit, "comment": state.comment}

        data = await run_in_threadpool(work)
        if self.service is not None:  # serve --mill: it lands now, not at the next look
            self.service.wake()
        return json_response(data)

    async def reject(self, request: Request) -> Response:
        body = await self._body(request)
        comment = body.get("comment")
        if not isinstance(comment, str):
            raise InvalidInput("sending a task back needs a comment (a string)")
        tid = request.path_params["task_id"]
        actor = self._actor(request)

        def work() -> Any:
            with self.pool.ledger() as led:
                state = reject(led, tid, comment, actor=actor)
                return {"task": led.resolve(tid), "status": state.status,
                        "commit": state.commit, "comment": state.comment}

        data = await run_in_threadpool(work)
        if self.service is not None:  # serve --mill: back to work now
            self.service.wake()
        return json_response(data)

    async def dismiss_finding(self, request: Request) -> Response:
        body = await self._body(request)
        reason = body.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidInput("dismissing a finding needs a reason (a string)")
        finding = request.path_params["finding_id"]
        actor = self._actor(request)

        def work() -> Any:
            with self.pool.ledger() as led:
                return dismiss(led, finding, reason=reason, actor=actor).to_json()

        return json_response(await run_in_threadpool(work))
