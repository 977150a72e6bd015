"""The ledger's verbs for work done on tasks: attempts (an agent's turns, written by the
mill), what they cost, and the mill's own bookkeeping (claims, recovery, laps, blocking)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..clock import elapsed_seconds, iso
from ..model import BLOCK_COMMENT_PREFIX, BLOCKED, Comment
from .store import LedgerStore

HOLD_COMMENT_PREFIX = "taskmill paused this task: "
"""The start of the comment the mill leaves on a task it gives back to wait for its role's
budget (the reason follows)."""


class WorkVerbs:
    """Mixed into :class:`~taskmill.ledger.Ledger`."""

    store: LedgerStore

    if TYPE_CHECKING:
        def transaction(self) -> AbstractContextManager[LedgerStore]: ...
        def record(self, kind: str, task_id: str | None, data: dict[str, Any],
                   *, actor: str | None = None, ts: str | None = None) -> None: ...
        def resolve(self, task_id: str) -> str: ...
        def _update(self, tid: str, changes: Mapping[str, Any], *, actor: str | None,
                    expect_status: str | None = None,
                    cause: dict[str, Any] | None = None) -> dict[str, list[Any]]: ...
        def _comment(self, tid: str, text: str, *, author: str | None) -> Comment: ...

    # -- attempts --------------------------------------------------------------------------

    def attempts(self, task_id: str) -> list[dict[str, Any]]:
        return self.store.attempts(task_id)

    def attempt_totals(self, now: datetime) -> dict[str, Any]:
        """Attempts, passes, tokens, cost and seconds (a running attempt's up to ``now``): over
        all attempts (``all``), per agent (``by_agent``), per model (``by_model``) and per role
        (``by_role``: ``(none)`` for attempts made as no role)."""

        def zero() -> dict[str, Any]:
            return {"attempts": 0, "passed": 0, "input_tokens": 0, "output_tokens": 0,
                    "cost_usd": 0.0, "seconds": 0.0}

        total = zero()
        by_agent: dict[str, dict[str, Any]] = {}
        by_model: dict[str, dict[str, Any]] = {}
        by_role: dict[str, dict[str, Any]] = {}
        for (agent, model, started, ended, outcome, tin, tout, cost,
             role) in self.store.attempt_usage():
            seconds = elapsed_seconds(started, ended, now) or 0.0
            for bucket in (total, by_agent.setdefault(agent or "(none)", zero()),
                           by_model.setdefault(model or "(default)", zero()),
                           by_role.setdefault(role or "(none)", zero())):
                bucket["attempts"] += 1
                bucket["passed"] += outcome == "passed"
                bucket["input_tokens"] += int(tin or 0)
                bucket["output_tokens"] += int(tout or 0)
                bucket["cost_usd"] += float(cost or 0.0)
                bucket["seconds"] += seconds
        for bucket in (total, *by_agent.values(), *by_model.values(), *by_role.values()):
            bucket["cost_usd"] = round(bucket["cost_usd"], 6)
            bucket["seconds"] = round(bucket["seconds"], 3)
        return {"all": total, "by_agent": by_agent, "by_model": by_model, "by_role": by_role}

    def role_spend(self, since: datetime) -> dict[str, tuple[int, float]]:
        """Per role, the tokens and cost (USD) of its attempts started at or after ``since``
        (a role's daily budget is checked against this: :mod:`taskmill.roles.budget`)."""
        return self.store.role_spend(iso(since))

    def attempt_task_ids(self) -> set[str]:
        """The tasks that have at least one attempt."""
        return self.store.attempt_task_ids()

    def start_attempt(self, task_id: str, *, iteration: int, agent: str | None,
                      model: str | None, log_path: str, run_id: str, lap: int, actor: str,
                      now: str, role: str | None = None) -> int:
        """Record the start of an agent's turn on ``task_id`` (and an ``attempt_started``
        event); returns the attempt's id."""
        with self.transaction():
            attempt_id = self.store.insert_attempt(
                task_id, iteration=iteration, agent=agent, model=model, started_at=now,
                log_path=log_path, run_id=run_id, lap=lap, role=role)
            self.record("attempt_started", task_id,
                        {"attempt": attempt_id, "iteration": iteration,
                         "agent": agent, "model": model, **({"role": role} if role else {})},
                        actor=actor, ts=now)
        return attempt_id

    def finish_attempt(self, task_id: str, attempt_id: int, *, outcome: str,
                       input_tokens: int, output_tokens: int, cost_usd: float | None,
                       commit: str | None, model: str | None, detail: Mapping[str, Any],
                       seconds: float, usage_error: str | None, actor: str, now: str) -> None:
        """Record how an attempt ended (and an ``attempt_finished`` event). ``model`` None
        keeps the model it started with."""
        with self.transaction():
            self.store.end_attempt(attempt_id, ended_at=now, outcome=outcome,
                                   input_tokens=input_tokens, output_tokens=output_tokens,
                                   cost_usd=cost_usd, commit=commit, model=model, detail=detail)
            self.record("attempt_finished", task_id, {
                "attempt": attempt_id, "outcome": outcome, "input_tokens": input_tokens,
                "output_tokens": output_tokens, "cost_usd": cost_usd,
                "commit": commit, "seconds": seconds,
                **({"usage_error": usage_error} if usage_error else {})}, actor=actor, ts=now)

    def amend_attempt(self, attempt_id: int, *, outcome: str,
                      detail: Mapping[str, Any]) -> None:
        """Set an ended attempt's outcome and add ``detail`` to its detail."""
        with self.transaction():
            self.store.amend_attempt(attempt_id, outcome=outcome, detail=detail)

    def end_open_attempts(self, task_id: str, *, outcome: str, ended_at: str,
                          detail: Mapping[str, Any] | None = None,
                          run_id: str | None = None) -> int:
        """End ``task_id``'s unfinished attempts (only ``run_id``'s, given one) with
        ``outcome`` (and ``detail``, given one); returns how many."""
        with self.transaction():
            return self.store.end_open_attempts(task_id, outcome=outcome, ended_at=ended_at,
                                                detail=detail, run_id=run_id)

    def last_lap(self, task_id: str) -> int:
        """The highest lap of ``task_id``'s attempts (0: none)."""
        return self.store.last_lap(task_id)

    def claimed_after_last_attempt(self, task_id: str) -> bool:
        """Whether ``task_id``'s newest ``claimed`` event is newer than its newest
        ``attempt_started`` (both present)."""
        return self.store.claimed_after_last_attempt(task_id)

    def lap_usage(self, task_id: str, lap: int) -> tuple[int, int, int, float]:
        """Attempts, input and output tokens and cost of ``task_id``'s lap ``lap``, leaving
        out attempts that ended ``interrupted`` or ``rate_limited``."""
        return self.store.lap_usage(task_id, lap)

    def count_attempts(self, task_id: str, lap: int, outcomes: Iterable[str]) -> int:
        """How many of ``task_id``'s attempts in lap ``lap`` ended in one of ``outcomes``."""
        return self.store.count_attempts(task_id, lap, outcomes)

    # -- the mill's bookkeeping --------------------------------------------------------------

    def claims(self, assignee_prefix: str) -> list[tuple[str, str]]:
        """(id, assignee) of each task in progress whose assignee starts with
        ``assignee_prefix`` (a mill run's claims: ``mill:<run>``)."""
        return self.store.claims(assignee_prefix)

    def recover_orphan(self, task_id: str, assignee: str, *, actor: str, now: str,
                       from_run: str) -> bool:
        """Take over ``task_id``, in progress under ``assignee`` (a run that died): its
        unfinished attempts end ``interrupted``, ``actor`` becomes its assignee and a
        ``recovered`` event says so. False (the attempts ended all the same) when the task
        is no longer in progress under ``assignee``."""
        with self.transaction():
            self.store.end_open_attempts(task_id, outcome="interrupted", ended_at=now)
            if not self.store.reassign(task_id, assignee, actor):
                return False
            self.record("recovered", task_id, {"from_run": from_run}, actor=actor)
        return True

    def chain_weights(self) -> tuple[dict[str, float], list[tuple[str, str]]]:
        """The weight of each unfinished task (its ``estimate`` hint, else 1.0) and every
        ``blocks`` dependency as (issue, blocker): what the mill's scheduler orders by."""
        edges = [(a, b) for a, b, _t in self.store.dep_edges(("blocks",))]
        return self.store.chain_weights(), edges

    def hold(self, task_id: str, reason: str, *, actor: str) -> None:
        """Give ``task_id`` (in progress under ``actor``) back: open and unclaimed, with
        ``reason`` in a comment and a ``held`` event. The mill's way of pausing a task whose
        role spent its daily budget; it is worked again once the budget allows."""
        with self.transaction():
            tid = self.resolve(task_id)
            self._update(tid, {"status": "open", "assignee": None}, actor=actor)
            self._comment(tid, HOLD_COMMENT_PREFIX + reason, author=actor)
            self.record("held", tid, {"reason": reason}, actor=actor)

    def block(self, task_id: str, reason: str, *, actor: str) -> None:
        """Mark ``task_id`` blocked with ``reason`` (in a comment by ``actor``): the mill's
        way of giving a task back to a person."""
        with self.transaction():
            tid = self.resolve(task_id)
            self._update(tid, {"status": BLOCKED}, actor=actor)
            self._comment(tid, BLOCK_COMMENT_PREFIX + reason, author=actor)
