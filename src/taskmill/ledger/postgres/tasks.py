"""Tasks and labels in PostgreSQL: reading (one, a list, ``ready``), writing, claiming, counts
(the SQLite store's :mod:`taskmill.ledger.sqlite.tasks`, in PostgreSQL's words)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import psycopg

from ...model import DONE_STATUSES, HIDDEN_STATUSES, PARENT_CHILD, Task
from ..beads_rules import deferred, order_key
from ..rows import JSON_FIELDS, TASK_COLUMNS, dumps, estimate, task_from_row
from ..store import HeldLinks, LinksReading
from ..task_filter import listing_order, task_where
from .deps import HELD_SQL

LABEL_CONFLICT = "ON CONFLICT (task_id, label) DO UPDATE SET pos = excluded.pos"
"""A new task's labels: a row left for its id with no task (written behind taskmill's
back) is the task's from now on, or replaced by the task's own (not a UNIQUE error)."""
HAS_CHILDREN_SQL = (
    "EXISTS (SELECT 1 FROM deps cd JOIN tasks ct ON ct.id = cd.issue_id"
    " WHERE cd.depends_on_id = tasks.id AND cd.type = 'parent-child'"
    " AND ct.status != 'tombstone')"
)
"""True for a row of ``tasks`` that is a container (use in a query over ``tasks``)."""

_COLUMN_RE = re.compile(r"^[a-z_][a-z0-9_]*$")


def _column_value(key: str, value: Any) -> Any:
    return dumps(value) if key in JSON_FIELDS else value


def _checked(columns: Sequence[str]) -> None:
    """Column names are written into the SQL: plain names only."""
    bad = [c for c in columns if not _COLUMN_RE.match(c)]
    if bad:
        raise ValueError(f"not column names: {', '.join(bad)}")


class TaskRows:
    """The ``tasks`` and ``labels`` tables."""

    conn: psycopg.Connection[Any]

    # -- reading ---------------------------------------------------------------------------

    def _labels_for(self, ids: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {i: [] for i in ids}
        for tid, label in self.conn.execute(
                "SELECT task_id, label FROM labels WHERE task_id = ANY(%s) ORDER BY pos, label",
                (ids,)):
            out[tid].append(label)
        return out

    def _annotate(self, tasks: list[Task]) -> None:
        """Fill each task's ``parent``, ``children`` and ``children_closed``."""
        by_id = {t.id: t for t in tasks}
        if not by_id:
            return
        ids = list(by_id)
        for pid, total, closed in self.conn.execute(
                "SELECT d.depends_on_id, count(*), count(*) FILTER (WHERE c.status = 'closed')"
                " FROM deps d JOIN tasks c ON c.id = d.issue_id WHERE d.type = 'parent-child'"
                " AND c.status != 'tombstone' AND d.depends_on_id = ANY(%s)"
                " GROUP BY d.depends_on_id", (ids,)):
            by_id[pid].children = int(total)
            by_id[pid].children_closed = int(closed or 0)
        for cid, pid in self.conn.execute(
                "SELECT issue_id, depends_on_id FROM deps WHERE type = 'parent-child'"
                " AND issue_id = ANY(%s) ORDER BY pos DESC, depends_on_id DESC", (ids,)):
            by_id[cid].parent = pid  # the last written is the first by position

    def _tasks(self, rows: Sequence[Sequence[Any]]) -> list[Task]:
        labels = self._labels_for([r[0] for r in rows]) if rows else {}
        tasks = [task_from_row(r, labels.get(r[0])) for r in rows]
        self._annotate(tasks)
        return tasks

    def task(self, task_id: str) -> Task | None:
        row = self.conn.execute(f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = %s",
                                (task_id,)).fetchone()
        if row is None:
            return None
        task = task_from_row(row, self.labels(task_id))
        self._annotate([task])
        return task

    def exists(self, task_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM tasks WHERE id = %s",
                                 (task_id,)).fetchone() is not None

    def ids_from(self, start: str, limit: int) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM tasks WHERE id >= %s AND id < %s ORDER BY id LIMIT %s",
            (start, start + "\uffff", limit))]

    def ids_lower_in(self, names: Sequence[str], limit: int) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM tasks WHERE lower(id) = ANY(%s) LIMIT %s", (list(names), limit))]

    def ids_lower_prefix(self, start: str, limit: int) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM tasks WHERE substr(lower(id), 1, %s) = %s ORDER BY id LIMIT %s",
            (len(start), start, limit))]

    def ids_sized(self, shortest: int, longest: int) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM tasks WHERE length(id) BETWEEN %s AND %s AND status != 'tombstone'",
            (shortest, longest))]

    def generation(self) -> int | None:
        return None  # (no generation kept: nothing is kept)

    def kept_text_differences(self) -> list[str] | None:
        return None  # (no listing text kept)

    def remake_kept_text(self) -> None:
        return None

    def max_seq(self) -> int:
        return int(self.conn.execute("SELECT max(seq) FROM tasks").fetchall()[0][0] or 0)

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
                                 parent=parent, postgres=True)
        sql = f"SELECT {TASK_COLUMNS} FROM tasks{where}{listing_order(limit)}"
        rows = self.conn.execute(sql, args).fetchall()
        if size is None:
            yield self._tasks(rows)
            return
        for start in range(0, len(rows), size):
            yield self._tasks(rows[start:start + size])

    def held_links(self) -> HeldLinks:
        from ..listing import held_links

        return held_links(self)  # type: ignore[arg-type]

    def held_links_reading(self) -> LinksReading:
        return LinksReading(self.held_links, meanwhile=False)

    def block_marks(self, prefix: str, kinds: Sequence[str], limit: int
                    ) -> dict[str, tuple[str | None, str | None, str | None]]:
        from ..listing import block_marks

        return block_marks(self, prefix, kinds, limit)  # type: ignore[arg-type]

    def statuses_in_use(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT DISTINCT status FROM tasks")]

    def ready(self, limit: int | None, work_only: bool, *, now: str,
              beads_compat: bool = False, for_claim: bool = False) -> list[Task]:
        hidden = self._deferred_out(now, beads_compat)
        args: list[Any] = []
        if beads_compat:
            extra = self._held_by_status_only()
            sql = (f"SELECT {TASK_COLUMNS} FROM tasks WHERE status = 'open'"
                   " AND (gated = 0 OR id = ANY(%s)) AND NOT nonwork")
            args.append(extra)
        else:
            sql = (f"SELECT {TASK_COLUMNS} FROM tasks"
                   " WHERE status = 'open' AND gated = 0 AND NOT nonwork")
        sql += (f" AND NOT {HAS_CHILDREN_SQL}" if work_only else "") + \
            " ORDER BY priority, created_key, seq"
        if limit:
            sql += f" LIMIT {int(limit) + len(hidden)}"
        if for_claim:  # a concurrent claimer's candidates are not offered again
            sql += " FOR UPDATE OF tasks SKIP LOCKED"
        rows = [r for r in self.conn.execute(sql, args) if r[0] not in hidden]
        return self._tasks(rows[:limit] if limit else rows)

    def _deferred_out(self, now: str, direct_children_only: bool) -> set[str]:
        """The tasks a ``defer_until`` after ``now`` hides (see the SQLite store's)."""
        out = {tid for tid, until in self.conn.execute(
            "SELECT id, defer_until FROM tasks WHERE defer_until IS NOT NULL")
            if deferred(until, now)}
        queue = list(out)
        while queue:
            parent = queue.pop()
            for child, status in self.conn.execute(
                    "SELECT d.issue_id, t.status FROM deps d JOIN tasks t ON t.id = d.issue_id"
                    " WHERE d.depends_on_id = %s AND d.type = %s", (parent, PARENT_CHILD)):
                if child in out:
                    continue
                out.add(child)
                if not direct_children_only and status not in DONE_STATUSES:
                    queue.append(child)
        return out

    def _dep_gated(self) -> set[str]:
        """Beads' ``is_blocked`` (see the SQLite store's), in one recursive query; done
        tasks left out (no listing shows them)."""
        return {r[0] for r in self.conn.execute(
            "WITH RECURSIVE g(id) AS ("
            f" SELECT id FROM tasks WHERE {HELD_SQL.format(t='')}"
            " AND gated = 1 AND open_blockers > 0"
            " UNION SELECT d.issue_id FROM g JOIN tasks p ON p.id = g.id"
            " JOIN deps d ON d.depends_on_id = g.id AND d.type = 'parent-child'"
            " WHERE p.status NOT IN ('closed', 'tombstone')) SELECT id FROM g")}

    def _held_by_status_only(self) -> list[str]:
        """Open tasks gated only through a ``blocked``/``deferred`` ancestor."""
        dep_gated = self._dep_gated()
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM tasks WHERE status = 'open' AND gated = 1") if r[0] not in dep_gated]

    def held(self, beads_compat: bool = False) -> list[Task]:
        return [t for page in self.held_pages(beads_compat, size=1 << 30) for t in page]

    def held_pages(self, beads_compat: bool = False, size: int = 1000
                   ) -> Iterator[list[Task]]:
        # a page at a time, each after the last one's (priority, seq): the partial index
        # tasks_held (schema 0008) holds exactly these rows, in this order
        ids = self._dep_gated() if beads_compat else None
        after: tuple[int, int] = (-(1 << 31), 0)
        while True:
            rows = self.conn.execute(
                f"SELECT {TASK_COLUMNS}, priority, seq FROM tasks"
                f" WHERE {HELD_SQL.format(t='')} AND (priority, seq) > (%s, %s)"
                " ORDER BY priority, seq LIMIT %s", (*after, size)).fetchall()
            if not rows:
                return
            after = (int(rows[-1][-2]), int(rows[-1][-1]))
            page = [r[:-2] for r in rows
                    if ids is None or r[0] in ids]  # Beads: those a blocking dependency holds
            if page:
                yield self._tasks(page)
            if len(rows) < size:
                return

    def child_tasks(self, parent: str) -> list[Task]:
        return self._tasks(self.conn.execute(
            f"SELECT {TASK_COLUMNS} FROM tasks WHERE id IN (SELECT issue_id FROM deps"
            " WHERE depends_on_id = %s AND type = 'parent-child') AND status != 'tombstone'"
            " ORDER BY seq", (parent,)).fetchall())

    def all_tasks(self, include_tombstones: bool) -> list[Task]:
        where = "" if include_tombstones else " WHERE status != 'tombstone'"
        rows = self.conn.execute(f"SELECT {TASK_COLUMNS} FROM tasks{where} ORDER BY id").fetchall()
        labels: dict[str, list[str]] = {}
        for tid, label in self.conn.execute(
                "SELECT task_id, label FROM labels ORDER BY task_id, pos, label"):
            labels.setdefault(tid, []).append(label)
        return [task_from_row(r, labels.get(r[0])) for r in rows]

    def labels(self, task_id: str) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT label FROM labels WHERE task_id = %s ORDER BY pos, label", (task_id,))]

    def labels_in_use(self) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT DISTINCT l.label FROM labels l JOIN tasks t ON t.id = l.task_id"
            " WHERE t.status != 'tombstone' ORDER BY l.label")]

    def task_extra(self, task_id: str) -> str | None:
        row = self.conn.execute("SELECT extra FROM tasks WHERE id = %s", (task_id,)).fetchone()
        return None if row is None else row[0]

    def stats(self) -> dict[str, Any]:
        by_status = {s: int(n) for s, n in self.conn.execute(
            "SELECT status, count(*) FROM tasks GROUP BY status")}
        ready = self.conn.execute(
            "SELECT count(*) FROM tasks WHERE status = 'open' AND gated = 0"
            " AND NOT nonwork").fetchall()[0][0]
        held = self.conn.execute(
            "SELECT count(*) FROM tasks WHERE (gated = 1 OR status = 'blocked')"
            " AND status NOT IN ('closed', 'tombstone')").fetchall()[0][0]
        deps = {t: int(n) for t, n in self.conn.execute(
            "SELECT type, count(*) FROM deps GROUP BY type")}
        attempts = self.conn.execute(
            "SELECT count(*), coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),"
            " coalesce(sum(cost_usd), 0) FROM attempts").fetchall()[0]
        return {
            "total": sum(v for k, v in by_status.items() if k not in HIDDEN_STATUSES),
            "by_status": by_status,
            "ready": int(ready),
            "blocked": int(held),
            "dependencies": deps,
            "events": int(self.conn.execute("SELECT count(*) FROM events").fetchall()[0][0]),
            "attempts": int(attempts[0]),
            "input_tokens": int(attempts[1]),
            "output_tokens": int(attempts[2]),
            "cost_usd": round(float(attempts[3]), 6),
        }

    # -- writing ---------------------------------------------------------------------------

    def insert_task(self, values: Mapping[str, Any], labels: Sequence[str]) -> None:
        values = {**values, "created_key": order_key(values.get("created_at"))}
        cols = list(values)
        _checked(cols)
        # the next creation number, as SQLite gives a new row (writers hold the writer lock)
        self.conn.execute(
            f"INSERT INTO tasks (seq, {', '.join(cols)}) SELECT coalesce(max(seq), 0) + 1,"
            f" {', '.join(['%s'] * len(cols))} FROM tasks",
            [_column_value(k, values[k]) for k in cols])
        if labels:
            with self.conn.cursor() as cur:
                cur.executemany("INSERT INTO labels (task_id, label, pos) VALUES (%s, %s, %s)"
                                f" {LABEL_CONFLICT}",
                                [(values["id"], lb, i) for i, lb in enumerate(labels)])

    def update_task(self, task_id: str, values: Mapping[str, Any]) -> None:
        if "created_at" in values:
            values = {**values, "created_key": order_key(values["created_at"])}
        _checked(list(values))
        assignments = ", ".join(f"{k} = %s" for k in values)
        self.conn.execute(f"UPDATE tasks SET {assignments} WHERE id = %s",
                          (*(_column_value(k, v) for k, v in values.items()), task_id))

    def claim_row(self, task_id: str, assignee: str, now: str, work_only: bool) -> bool:
        cur = self.conn.execute(
            "UPDATE tasks SET status = 'in_progress', assignee = %s, updated_at = %s"
            " WHERE id = %s AND status = 'open' AND gated = 0"
            + (f" AND NOT nonwork AND NOT {HAS_CHILDREN_SQL}" if work_only else ""),
            (assignee, now, task_id))
        return cur.rowcount == 1

    def reassign(self, task_id: str, old: str, new: str) -> bool:
        cur = self.conn.execute(
            "UPDATE tasks SET assignee = %s WHERE id = %s AND assignee = %s"
            " AND status = 'in_progress'", (new, task_id, old))
        return cur.rowcount == 1

    def add_labels(self, task_id: str, labels: Sequence[str], start: int) -> None:
        with self.conn.cursor() as cur:
            cur.executemany("INSERT INTO labels (task_id, label, pos) VALUES (%s, %s, %s)",
                            [(task_id, lb, start + i) for i, lb in enumerate(labels)])

    def remove_labels(self, task_id: str, labels: Sequence[str]) -> None:
        self.conn.execute("DELETE FROM labels WHERE task_id = %s AND label = ANY(%s)",
                          (task_id, list(labels)))

    def replace_labels(self, task_id: str, labels: Sequence[str]) -> None:
        self.conn.execute("DELETE FROM labels WHERE task_id = %s", (task_id,))
        self.add_labels(task_id, labels, 0)

    def claims(self, assignee_prefix: str) -> list[tuple[str, str]]:
        rows = self.conn.execute(
            "SELECT id, assignee FROM tasks WHERE status = 'in_progress'"
            " AND assignee ILIKE %s", (assignee_prefix + "%",)).fetchall()  # as SQLite's LIKE
        return [(str(tid), str(assignee)) for tid, assignee in rows]

    def chain_weights(self) -> dict[str, float]:
        return {tid: estimate(hints) for tid, hints in self.conn.execute(
            "SELECT id, hints FROM tasks WHERE status NOT IN ('closed', 'tombstone')")}
