"""The ledger out: as Beads JSONL (:func:`export_beads`) or in taskmill's own JSON
(:func:`export_json`)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Literal, TextIO

from ..ledger import TASK_COLUMNS, Ledger, task_from_row
from ..model import Comment, Dependency, Task
from .record import ROW_SQL, CommentRow, DepRow, Row, encode_record, export_record


@dataclass
class Stored:
    """The stored parts of the tasks read by :func:`load_stored`."""

    rows: dict[str, Row]
    labels: dict[str, list[str]]
    deps: dict[str, list[DepRow]]
    comments: dict[str, list[CommentRow]]
    order: list[str]

    def record(self, tid: str) -> dict[str, Any]:
        return export_record(self.rows[tid], self.labels.get(tid, ()), self.deps.get(tid, ()),
                             self.comments.get(tid, ()))


def load_stored(ledger: Ledger, *, order_by: str = "id", where: str = "") -> Stored:
    """The tasks (``where``: a WHERE clause or "") in ``order_by`` order, with their parts."""
    conn = ledger.conn
    rows: dict[str, Row] = {}
    for r in conn.execute(f"SELECT {ROW_SQL} FROM tasks {where} ORDER BY {order_by}"):
        rows[r[0]] = tuple(r)
    labels: dict[str, list[str]] = defaultdict(list)
    for tid, label in conn.execute("SELECT task_id, label FROM labels ORDER BY task_id, pos, label"):
        if tid in rows:
            labels[tid].append(label)
    deps: dict[str, list[DepRow]] = defaultdict(list)
    for tid, *rest in conn.execute(
            "SELECT issue_id, depends_on_id, type, created_at, created_by, extra FROM deps"
            " ORDER BY issue_id, pos, depends_on_id, type"):
        if tid in rows:
            deps[tid].append(tuple(rest))
    comments: dict[str, list[CommentRow]] = defaultdict(list)
    for tid, *rest in conn.execute(
            "SELECT task_id, id, author, text, created_at, extra FROM comments ORDER BY id"):
        if tid in rows:
            comments[tid].append(tuple(rest))
    return Stored(rows, labels, deps, comments, list(rows))



def beads_records(ledger: Ledger, *, include_tombstones: bool = True,
                  order: Literal["id", "ledger"] = "id") -> list[dict[str, Any]]:
    """Every task as a Beads record. ``order``: by id (as Beads writes), or ``ledger`` (the
    order the tasks entered the ledger, which for an import is the order of the file)."""
    where = "" if include_tombstones else "WHERE status != 'tombstone'"
    stored = load_stored(ledger, order_by="id" if order == "id" else "seq", where=where)
    return [stored.record(tid) for tid in stored.order]


def export_beads(ledger: Ledger, out: TextIO, *, include_tombstones: bool = True,
                 order: Literal["id", "ledger"] = "id") -> int:
    """Write the ledger as Beads JSONL; returns the number of records written."""
    count = 0
    for record in beads_records(ledger, include_tombstones=include_tombstones, order=order):
        out.write(encode_record(record))
        out.write("\n")
        count += 1
    return count


def export_json(ledger: Ledger, *, include_tombstones: bool = True) -> list[dict[str, Any]]:
    """taskmill's own full format: ``Task.to_json(full=True)`` for every task, by id."""
    conn = ledger.conn
    where = "" if include_tombstones else " WHERE status != 'tombstone'"
    rows = conn.execute(f"SELECT {TASK_COLUMNS} FROM tasks{where} ORDER BY id").fetchall()
    labels: dict[str, list[str]] = defaultdict(list)
    for tid, label in conn.execute("SELECT task_id, label FROM labels ORDER BY task_id, pos, label"):
        labels[tid].append(label)
    tasks: list[Task] = [task_from_row(r, labels.get(r[0])) for r in rows]
    by_id = {t.id: t for t in tasks}
    for r in conn.execute("SELECT issue_id, depends_on_id, type, created_at, created_by FROM deps"
                          " ORDER BY issue_id, pos, depends_on_id"):
        if r[0] in by_id:
            by_id[r[0]].dependencies.append(Dependency(*r))
    for r in conn.execute("SELECT issue_id, depends_on_id, type, created_at, created_by FROM deps"
                          " ORDER BY depends_on_id, issue_id"):
        if r[1] in by_id:
            by_id[r[1]].dependents.append(Dependency(*r))
    for r in conn.execute("SELECT id, task_id, author, text, created_at FROM comments ORDER BY id"):
        if r[1] in by_id:
            by_id[r[1]].comments.append(Comment(*r))
    attempt_ids = {r[0] for r in conn.execute("SELECT DISTINCT task_id FROM attempts")}
    for task in tasks:
        if task.id in attempt_ids:
            task.attempts = ledger.attempts(task.id)
    return [t.to_json(full=True) for t in tasks]
