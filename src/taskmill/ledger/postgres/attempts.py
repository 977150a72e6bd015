"""Comments and attempts (the mill's turns) in PostgreSQL (the SQLite store's
:mod:`taskmill.ledger.sqlite.attempts`, in PostgreSQL's words). New ids are the highest
plus one, as SQLite gives them (writers hold the writer lock)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import psycopg

from ...model import Comment
from ..rows import ATTEMPT_FIELDS, attempt_from_row


class AttemptRows:
    """The ``comments`` and ``attempts`` tables."""

    conn: psycopg.Connection[Any]

    # -- comments --------------------------------------------------------------------------

    def insert_comment(self, task_id: str, author: str, text: str, now: str) -> int:
        row = self.conn.execute(
            "INSERT INTO comments (id, task_id, author, text, created_at)"
            " SELECT coalesce(max(id), 0) + 1, %s, %s, %s, %s FROM comments RETURNING id",
            (task_id, author, text, now)).fetchall()[0]
        return int(row[0])

    def comments(self, task_id: str) -> list[Comment]:
        return [Comment(int(r[0]), *r[1:]) for r in self.conn.execute(
            "SELECT id, task_id, author, text, created_at FROM comments WHERE task_id = %s"
            " ORDER BY id", (task_id,))]

    def last_comments(self, task_ids: Sequence[str]) -> dict[str, Comment]:
        out: dict[str, Comment] = {}
        for cid, tid, author, text, created in self.conn.execute(
                "SELECT id, task_id, author, text, created_at FROM comments WHERE id IN"
                " (SELECT max(id) FROM comments WHERE task_id = ANY(%s) GROUP BY task_id)",
                (list(task_ids),)):
            out[tid] = Comment(int(cid), tid, author, text, created)
        return out

    def last_comment_starting(self, task_id: str, prefix: str) -> str | None:
        """The text of ``task_id``'s newest comment that starts with ``prefix``."""
        row = self.conn.execute(
            "SELECT text FROM comments WHERE task_id = %s AND substr(text, 1, %s) = %s"
            " ORDER BY id DESC LIMIT 1", (task_id, len(prefix), prefix)).fetchone()
        return None if row is None else str(row[0])

    # -- attempts --------------------------------------------------------------------------

    def attempts(self, task_id: str) -> list[dict[str, Any]]:
        rows = self.conn.execute(f"SELECT {', '.join(ATTEMPT_FIELDS)} FROM attempts"
                                 " WHERE task_id = %s ORDER BY id", (task_id,)).fetchall()
        return [attempt_from_row(r) for r in rows]

    def attempt_task_ids(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT DISTINCT task_id FROM attempts")}

    def attempt_usage(self) -> list[tuple[Any, ...]]:
        """(agent, model, started_at, ended_at, outcome, input tokens, output tokens, cost,
        role) of every attempt."""
        return [tuple(r) for r in self.conn.execute(
            "SELECT agent, model, started_at, ended_at, outcome, input_tokens,"
            " output_tokens, cost_usd, role FROM attempts")]

    def role_spend(self, since: str) -> dict[str, tuple[int, float]]:
        # started_at in byte order, as SQLite compares it (and as attempts_role holds it)
        return {str(role): (int(tokens), float(cost)) for role, tokens, cost in self.conn.execute(
            "SELECT role, coalesce(sum(input_tokens + output_tokens), 0),"
            " coalesce(sum(cost_usd), 0) FROM attempts"
            ' WHERE role IS NOT NULL AND (started_at COLLATE "C") >= %s GROUP BY role',
            (since,))}

    def last_lap(self, task_id: str) -> int:
        row = self.conn.execute("SELECT max(lap) FROM attempts WHERE task_id = %s",
                                (task_id,)).fetchall()[0]
        return int(row[0] or 0)

    def lap_usage(self, task_id: str, lap: int) -> tuple[int, int, int, float]:
        row = self.conn.execute(
            "SELECT count(*), coalesce(sum(input_tokens),0), coalesce(sum(output_tokens),0),"
            " coalesce(sum(cost_usd),0) FROM attempts WHERE task_id = %s AND lap = %s"
            " AND outcome NOT IN ('interrupted', 'rate_limited')",
            (task_id, lap)).fetchall()[0]
        return int(row[0]), int(row[1]), int(row[2]), float(row[3])

    def count_attempts(self, task_id: str, lap: int, outcomes: Iterable[str]) -> int:
        wanted = list(outcomes)
        if not wanted:
            return 0
        return int(self.conn.execute(
            "SELECT count(*) FROM attempts WHERE task_id = %s AND lap = %s"
            " AND outcome = ANY(%s)", (task_id, lap, wanted)).fetchall()[0][0])

    def insert_attempt(self, task_id: str, *, iteration: int, agent: str | None,
                       model: str | None, started_at: str, log_path: str, run_id: str,
                       lap: int, role: str | None = None) -> int:
        row = self.conn.execute(
            "INSERT INTO attempts (id, task_id, iteration, agent, model, started_at, log_path,"
            " run_id, lap, role) SELECT coalesce(max(id), 0) + 1, %s, %s, %s, %s, %s, %s, %s,"
            " %s, %s FROM attempts RETURNING id",
            (task_id, iteration, agent, model, started_at, log_path, run_id, lap,
             role)).fetchall()[0]
        return int(row[0])

    def end_attempt(self, attempt_id: int, *, ended_at: str, outcome: str, input_tokens: int,
                    output_tokens: int, cost_usd: float | None, commit: str | None,
                    model: str | None, detail: Mapping[str, Any]) -> None:
        self.conn.execute(
            "UPDATE attempts SET ended_at = %s, outcome = %s, input_tokens = %s,"
            " output_tokens = %s, cost_usd = %s, commit_sha = %s, model = coalesce(%s, model),"
            " detail = %s WHERE id = %s",
            (ended_at, outcome, input_tokens, output_tokens, cost_usd, commit,
             model, json.dumps(detail, default=str), attempt_id))

    def amend_attempt(self, attempt_id: int, *, outcome: str,
                      detail: Mapping[str, Any]) -> None:
        row = self.conn.execute("SELECT detail FROM attempts WHERE id = %s",
                                (attempt_id,)).fetchone()
        merged = (json.loads(row[0]) if row and row[0] else None) or {}
        merged.update(detail)
        self.conn.execute("UPDATE attempts SET outcome = %s, detail = %s WHERE id = %s",
                          (outcome, json.dumps(merged, default=str), attempt_id))

    def end_open_attempts(self, task_id: str, *, outcome: str, ended_at: str,
                          detail: Mapping[str, Any] | None = None,
                          run_id: str | None = None) -> int:
        sql = "UPDATE attempts SET outcome = %s, ended_at = %s"
        args: list[Any] = [outcome, ended_at]
        if detail is not None:
            sql += ", detail = %s"
            args.append(json.dumps(detail))
        sql += " WHERE task_id = %s"
        args.append(task_id)
        if run_id is not None:
            sql += " AND run_id = %s"
            args.append(run_id)
        return int(self.conn.execute(sql + " AND outcome IS NULL", args).rowcount)
