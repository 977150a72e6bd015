"""Tasks and labels in SQLite: reading (one, a list, ``ready``), writing, claiming, counts."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from ...model import DONE_STATUSES, HIDDEN_STATUSES, PARENT_CHILD, Task
from .. import lean, lean_write
from ..beads_rules import deferred, order_key
from ..rows import JSON_FIELDS, TASK_COLUMNS, dumps, estimate, task_from_row
from ..task_filter import listing_order, task_where
from .deps import HELD_SQL

HAS_CHILDREN_SQL = (
    "EXISTS (SELECT 1 FROM deps cd JOIN tasks ct ON ct.id = cd.issue_id"
    " WHERE cd.depends_on_id = tasks.id AND cd.type = 'parent-child'"
    " AND ct.status != 'tombstone')"
)
"""True for a row of ``tasks`` that is a container (use in a query over ``tasks``)."""


def chunks(ids: Sequence[str], size: int = 500) -> Iterable[list[str]]:
    for start in range(0, len(ids), size):
        yield list(ids[start:start + size])


def _column_value(key: str, value: Any) -> Any:
    return dumps(value) if key in JSON_FIELDS else value


class TaskRows:
    """The ``tasks`` and ``labels`` tables."""

    conn: sqlite3.Connection

    # -- reading ---------------------------------------------------------------------------

    def _labels_for(self, ids: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {i: [] for i in ids}
        for chunk in chunks(ids):
            marks = ",".join("?" * len(chunk))
            for tid, label in self.conn.execute(lean.labels_in_sql(marks), chunk):
                out[tid].append(label)
        return out

    def _annotate(self, tasks: list[Task]) -> None:
        """Fill each task's ``parent``, ``children`` and ``children_closed``."""
        by_id = {t.id: t for t in tasks}
        for chunk in chunks(list(by_id)):
            marks = ",".join("?" * len(chunk))
            for pid, total, closed in self.conn.execute(lean.children_counts_sql(marks),
                                                        chunk):
                by_id[pid].children = int(total)
                by_id[pid].children_closed = int(closed or 0)
            for cid, pid in self.conn.execute(lean.parents_sql(marks), chunk):
                by_id[cid].parent = pid  # the last written is the first by position

    def _tasks(self, rows: list[Sequence[Any]]) -> list[Task]:
        labels = self._labels_for([r[0] for r in rows]) if rows else {}
        tasks = [task_from_row(r, labels.get(r[0])) for r in rows]
        self._annotate(tasks)
        return tasks

    def task(self, task_id: str) -> Task | None:
        row = self.conn.execute(lean.TASK_SQL, (task_id,)).fetchone()
        if row is None:
            return None
        task = task_from_row(row, self.labels(task_id))
        self._annotate([task])
        return task

    def exists(self, task_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM tasks WHERE id = ?",
                                 (task_id,)).fetchone() is not None

    def ids_from(self, start: str, limit: int) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM tasks WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
            (start, start + "\uffff", limit))]

    def ids_lower_in(self, names: Sequence[str], limit: int) -> list[str]:
        marks = ",".join("?" * len(names))
        return [r[0] for r in self.conn.execute(
            f"SELECT id FROM tasks WHERE lower(id) IN ({marks}) LIMIT ?", (*names, limit))]

    def ids_lower_prefix(self, start: str, limit: int) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM tasks WHERE substr(lower(id), 1, ?) = ? ORDER BY id LIMIT ?",
            (len(start), start, limit))]

    def ids_sized(self, shortest: int, longest: int) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM tasks WHERE length(id) BETWEEN ? AND ? AND status != 'tombstone'",
            (shortest, longest))]

    def generation(self) -> int | None:
        row = self.conn.execute("SELECT value FROM ledger_generation").fetchone()
        return None if row is None else int(row[0])

    def max_seq(self) -> int:
        return int(self.conn.execute("SELECT max(seq) FROM tasks").fetchone()[0] or 0)

    def list_tasks(self, *, statuses: Sequence[str] | None, include_hidden: bool,
                   label: str | None,
                   issue_type: str | None, assignee: str | None, parent: str | None,
                   limit: int | None) -> list[Task]:
        return [t for page in self.task_pages(
            statuses=statuses, include_hidden=include_hidden, label=label,
            issue_type=issue_type, assignee=assignee, parent=parent, limit=limit,
            size=None) for t in page]

    def task_pages(self, *, statuses: Sequence[str] | None, include_hidden: bool,
                   label: str | None, issue_type: str | None, assignee: str | None,
                   parent: str | None, limit: int | None,
                   size: int | None = 1000) -> Iterator[list[Task]]:
        where, args = task_where(statuses=statuses, include_hidden=include_hidden,
                                 label=label, issue_type=issue_type, assignee=assignee,
                                 parent=parent, postgres=False)
        sql = f"SELECT {TASK_COLUMNS} FROM tasks{where}{listing_order(limit)}"
        cursor = self.conn.execute(sql, args)
        if size is None:
            yield self._tasks(cursor.fetchall())
            return
        while rows := cursor.fetchmany(size):
            yield self._tasks(rows)

    def statuses_in_use(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT DISTINCT status FROM tasks")]

    def ready(self, limit: int | None, work_only: bool, *, now: str,
              beads_compat: bool = False, for_claim: bool = False) -> list[Task]:
        hidden = self._deferred_out(now, beads_compat)
        if beads_compat:
            extra = self._held_by_status_only()
            gate = "(gated = 0" + (f" OR id IN ({','.join('?' * len(extra))}))" if extra else ")")
            sql = (f"SELECT {TASK_COLUMNS} FROM tasks WHERE status = 'open' AND {gate}"
                   " AND nonwork = 0")
            args: list[Any] = list(extra)
        else:
            sql = lean.READY_SQL
            args = []
        sql += (f" AND NOT {HAS_CHILDREN_SQL}" if work_only else "") + lean.READY_ORDER
        if limit:
            sql += f" LIMIT {int(limit) + len(hidden)}"
        rows = [r for r in self.conn.execute(sql, args) if r[0] not in hidden]
        return self._tasks(rows[:limit] if limit else rows)

    def _deferred_out(self, now: str, direct_children_only: bool) -> set[str]:
        """The tasks a ``defer_until`` after ``now`` hides: the deferred tasks, and their
        children (``direct_children_only``, as Beads) or every task under them not reached
        through a done one (taskmill: as a ``deferred`` parent holds its subtree)."""
        out = {tid for tid, until in self.conn.execute(
            "SELECT id, defer_until FROM tasks INDEXED BY tasks_deferred"
            " WHERE defer_until IS NOT NULL") if deferred(until, now)}
        queue = list(out)
        while queue:
            parent = queue.pop()
            for child, status in self.conn.execute(
                    "SELECT d.issue_id, t.status FROM deps d JOIN tasks t ON t.id = d.issue_id"
                    " WHERE d.depends_on_id = ? AND d.type = ?", (parent, PARENT_CHILD)):
                if child in out:
                    continue
                out.add(child)
                if not direct_children_only and status not in DONE_STATUSES:
                    queue.append(child)
        return out

    def _dep_gated(self) -> set[str]:
        """Beads' ``is_blocked``: a blocking dependency holds the task, or a parent is so
        held (through parents that are not done); parent statuses do not count. One
        recursive query; done tasks left out."""
        from .listing import DEP_GATED_SQL

        return {r[0] for r in self.conn.execute(DEP_GATED_SQL)}

    def _held_by_status_only(self) -> list[str]:
        """Open tasks gated only through a ``blocked``/``deferred`` ancestor."""
        dep_gated = self._dep_gated()
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM tasks WHERE status = 'open' AND gated = 1") if r[0] not in dep_gated]

    def held(self, beads_compat: bool = False) -> list[Task]:
        return [t for page in self.held_pages(beads_compat, size=1 << 30) for t in page]

    def held_pages(self, beads_compat: bool = False, size: int = 1000
                   ) -> Iterator[list[Task]]:
        # the partial index tasks_held (schema 0008) holds exactly these rows, in order
        cursor = self.conn.execute(
            f"SELECT {TASK_COLUMNS} FROM tasks INDEXED BY tasks_held"
            f" WHERE {HELD_SQL.format(t='')} ORDER BY priority, seq")
        ids = self._dep_gated() if beads_compat else None
        while rows := cursor.fetchmany(size):
            if ids is not None:  # Beads: those a blocking dependency holds (all gated)
                rows = [r for r in rows if r[0] in ids]
            if rows:
                yield self._tasks(rows)

    def child_tasks(self, parent: str) -> list[Task]:
        return self._tasks(self.conn.execute(lean.CHILD_TASKS_SQL, (parent,)).fetchall())

    def all_tasks(self, include_tombstones: bool) -> list[Task]:
        where = "" if include_tombstones else " WHERE status != 'tombstone'"
        rows = self.conn.execute(f"SELECT {TASK_COLUMNS} FROM tasks{where} ORDER BY id").fetchall()
        labels: dict[str, list[str]] = {}
        for tid, label in self.conn.execute(
                "SELECT task_id, label FROM labels ORDER BY task_id, pos, label"):
            labels.setdefault(tid, []).append(label)
        return [task_from_row(r, labels.get(r[0])) for r in rows]

    def labels(self, task_id: str) -> list[str]:
        return [r[0] for r in self.conn.execute(lean.LABELS_SQL, (task_id,))]

    def labels_in_use(self) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT DISTINCT l.label FROM labels l JOIN tasks t ON t.id = l.task_id"
            " WHERE t.status != 'tombstone' ORDER BY l.label")]

    def task_extra(self, task_id: str) -> str | None:
        row = self.conn.execute("SELECT extra FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return None if row is None else row[0]

    def stats(self) -> dict[str, Any]:
        by_status = dict(self.conn.execute("SELECT status, count(*) FROM tasks GROUP BY status"))
        ready = self.conn.execute(
            "SELECT count(*) FROM tasks INDEXED BY tasks_ready WHERE status = 'open' AND gated = 0"
            " AND nonwork = 0").fetchone()[0]
        held = self.conn.execute(
            "SELECT count(*) FROM tasks WHERE (gated = 1 OR status = 'blocked')"
            " AND status NOT IN ('closed', 'tombstone')").fetchone()[0]
        deps = dict(self.conn.execute("SELECT type, count(*) FROM deps GROUP BY type"))
        attempts = self.conn.execute(
            "SELECT count(*), coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),"
            " coalesce(sum(cost_usd), 0) FROM attempts").fetchone()
        return {
            "total": sum(v for k, v in by_status.items() if k not in HIDDEN_STATUSES),
            "by_status": by_status,
            "ready": ready,
            "blocked": held,
            "dependencies": deps,
            "events": self.conn.execute("SELECT count(*) FROM events").fetchone()[0],
            "attempts": attempts[0],
            "input_tokens": attempts[1],
            "output_tokens": attempts[2],
            "cost_usd": round(float(attempts[3]), 6),
        }

    # -- writing ---------------------------------------------------------------------------

    def insert_task(self, values: Mapping[str, Any], labels: Sequence[str]) -> None:
        values = {**values, "created_key": order_key(values.get("created_at"))}
        lean_write.insert_task(self.conn, {k: _column_value(k, v) for k, v in values.items()},
                               labels)

    def update_task(self, task_id: str, values: Mapping[str, Any]) -> None:
        if "created_at" in values:
            values = {**values, "created_key": order_key(values["created_at"])}
        lean_write.update_task(self.conn, task_id,
                               {k: _column_value(k, v) for k, v in values.items()})

    def claim_row(self, task_id: str, assignee: str, now: str, work_only: bool) -> bool:
        cur = self.conn.execute(
            "UPDATE tasks SET status = 'in_progress', assignee = ?, updated_at = ?"
            " WHERE id = ? AND status = 'open' AND gated = 0"
            + (f" AND nonwork = 0 AND NOT {HAS_CHILDREN_SQL}" if work_only else ""),
            (assignee, now, task_id))
        return cur.rowcount == 1

    def reassign(self, task_id: str, old: str, new: str) -> bool:
        cur = self.conn.execute(
            "UPDATE tasks SET assignee = ? WHERE id = ? AND assignee = ?"
            " AND status = 'in_progress'", (new, task_id, old))
        return cur.rowcount == 1

    def add_labels(self, task_id: str, labels: Sequence[str], start: int) -> None:
        self.conn.executemany("INSERT INTO labels (task_id, label, pos) VALUES (?, ?, ?)",
                              [(task_id, lb, start + i) for i, lb in enumerate(labels)])

    def remove_labels(self, task_id: str, labels: Sequence[str]) -> None:
        self.conn.executemany("DELETE FROM labels WHERE task_id = ? AND label = ?",
                              [(task_id, lb) for lb in labels])

    def replace_labels(self, task_id: str, labels: Sequence[str]) -> None:
        self.conn.execute("DELETE FROM labels WHERE task_id = ?", (task_id,))
        self.add_labels(task_id, labels, 0)

    def claims(self, assignee_prefix: str) -> list[tuple[str, str]]:
        rows = self.conn.execute(
            "SELECT id, assignee FROM tasks INDEXED BY tasks_claims"
            " WHERE status = 'in_progress' AND assignee LIKE ?",
            (assignee_prefix + "%",)).fetchall()
        return [(str(tid), str(assignee)) for tid, assignee in rows]

    def chain_weights(self) -> dict[str, float]:
        return {tid: estimate(hints) for tid, hints in self.conn.execute(
            "SELECT id, hints FROM tasks WHERE status NOT IN ('closed', 'tombstone')")}
