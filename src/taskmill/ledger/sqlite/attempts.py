"""Comments and attempts (the mill's turns) in SQLite."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ...model import Comment
from .. import lean
from ..rows import attempt_from_row
from .tasks import chunks


class AttemptRows:
    """The ``comments`` and ``attempts`` tables."""

    conn: sqlite3.Connection

    # -- comments --------------------------------------------------------------------------

    def insert_comment(self, task_id: str, author: str, text: str, now: str) -> int:
        cur = self.conn.execute(
            "INSERT INTO comments (task_id, author, text, created_at) VALUES (?, ?, ?, ?)",
            (task_id, author, text, now))
        return int(cur.lastrowid or 0)

    def comments(self, task_id: str) -> list[Comment]:
        return [Comment(*r) for r in self.conn.execute(lean.COMMENTS_SQL, (task_id,))]

    def last_comments(self, task_ids: Sequence[str]) -> dict[str, Comment]:
        out: dict[str, Comment] = {}
        for chunk in chunks(list(task_ids)):
            marks = ",".join("?" * len(chunk))
            for cid, tid, author, text, created in self.conn.execute(
                    "SELECT id, task_id, author, text, created_at FROM comments WHERE id IN"
                    f" (SELECT max(id) FROM comments WHERE task_id IN ({marks}) GROUP BY task_id)",
                    chunk):
                out[tid] = Comment(cid, tid, author, text, created)
        return out

    def last_comment_starting(self, task_id: str, prefix: str) -> str | None:
        """The text of ``task_id``'s newest comment that starts with ``prefix``."""
        row = self.conn.execute(
            "SELECT text FROM comments WHERE task_id = ? AND substr(text, 1, ?) = ?"
            " ORDER BY id DESC LIMIT 1", (task_id, len(prefix), prefix)).fetchone()
        return None if row is None else str(row[0])

    # -- attempts --------------------------------------------------------------------------

    def attempts(self, task_id: str) -> list[dict[str, Any]]:
        rows = self.conn.execute(lean.ATTEMPTS_SQL, (task_id,)).fetchall()
        return [attempt_from_row(r) for r in rows]

    def attempt_task_ids(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT DISTINCT task_id FROM attempts")}

    def attempt_usage(self) -> list[tuple[Any, ...]]:
        """(agent, model, started_at, ended_at, outcome, input tokens, output tokens, cost,
        role) of every attempt."""
        return self.conn.execute(
            "SELECT agent, model, started_at, ended_at, outcome, input_tokens,"
            " output_tokens, cost_usd, role FROM attempts").fetchall()

    def role_spend(self, since: str) -> dict[str, tuple[int, float]]:
        return {str(role): (int(tokens), float(cost)) for role, tokens, cost in self.conn.execute(
            "SELECT role, coalesce(sum(input_tokens + output_tokens), 0),"
            " coalesce(sum(cost_usd), 0) FROM attempts INDEXED BY attempts_role"
            " WHERE role IS NOT NULL AND started_at >= ? GROUP BY role", (since,))}

    def last_lap(self, task_id: str) -> int:
        row = self.conn.execute("SELECT max(lap) FROM attempts WHERE task_id = ?",
                                (task_id,)).fetchone()
        return int(row[0] or 0)

    def lap_usage(self, task_id: str, lap: int) -> tuple[int, int, int, float]:
        row = self.conn.execute(
            "SELECT count(*), coalesce(sum(input_tokens),0), coalesce(sum(output_tokens),0),"
            " coalesce(sum(cost_usd),0) FROM attempts WHERE task_id = ? AND lap = ?"
            " AND outcome NOT IN ('interrupted', 'rate_limited')",
            (task_id, lap)).fetchone()
        return int(row[0]), int(row[1]), int(row[2]), float(row[3])

    def count_attempts(self, task_id: str, lap: int, outcomes: Iterable[str]) -> int:
        wanted = list(outcomes)
        if not wanted:
            return 0
        marks = ",".join("?" * len(wanted))
        return int(self.conn.execute(
            f"SELECT count(*) FROM attempts WHERE task_id = ? AND lap = ? AND outcome IN ({marks})",
            (task_id, lap, *wanted)).fetchone()[0])

    def insert_attempt(self, task_id: str, *, iteration: int, agent: str | None,
                       model: str | None, started_at: str, log_path: str, run_id: str,
                       lap: int, role: str | None = None) -> int:
        cur = self.conn.execute(
            "INSERT INTO attempts (task_id, iteration, agent, model, started_at, log_path,"
            " run_id, lap, role) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (task_id, iteration, agent, model, started_at, log_path, run_id, lap, role))
        return int(cur.lastrowid or 0)

    def end_attempt(self, attempt_id: int, *, ended_at: str, outcome: str, input_tokens: int,
                    output_tokens: int, cost_usd: float | None, commit: str | None,
                    model: str | None, detail: Mapping[str, Any]) -> None:
        self.conn.execute(
            "UPDATE attempts SET ended_at = ?, outcome = ?, input_tokens = ?,"
            " output_tokens = ?, cost_usd = ?, commit_sha = ?, model = coalesce(?, model),"
            " detail = ? WHERE id = ?",
            (ended_at, outcome, input_tokens, output_tokens, cost_usd, commit,
             model, json.dumps(detail, default=str), attempt_id))

    def amend_attempt(self, attempt_id: int, *, outcome: str,
                      detail: Mapping[str, Any]) -> None:
        row = self.conn.execute("SELECT detail FROM attempts WHERE id = ?",
                                (attempt_id,)).fetchone()
        merged = (json.loads(row[0]) if row and row[0] else None) or {}
        merged.update(detail)
        self.conn.execute("UPDATE attempts SET outcome = ?, detail = ? WHERE id = ?",
                          (outcome, json.dumps(merged, default=str), attempt_id))

    def end_open_attempts(self, task_id: str, *, outcome: str, ended_at: str,
                          detail: Mapping[str, Any] | None = None,
                          run_id: str | None = None) -> int:
        sql = "UPDATE attempts SET outcome = ?, ended_at = ?"
        args: list[Any] = [outcome, ended_at]
        if detail is not None:
            sql += ", detail = ?"
            args.append(json.dumps(detail))
        sql += " WHERE task_id = ?"
        args.append(task_id)
        if run_id is not None:
            sql += " AND run_id = ?"
            args.append(run_id)
        return int(self.conn.execute(sql + " AND outcome IS NULL", args).rowcount)
