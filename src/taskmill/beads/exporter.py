"""The ledger out: as Beads JSONL (:func:`export_beads`) or in taskmill's own JSON
(:func:`export_json`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, TextIO

from ..ledger import Ledger
from ..model import Comment, Dependency
from .record import CommentRow, DepRow, Row, encode_record, export_record


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


def load_stored(ledger: Ledger, *, order_by: str = "id",
                include_tombstones: bool = True) -> Stored:
    """The tasks in ``order_by`` order (``id``, or ``seq``: as they entered the ledger), with
    their parts."""
    store = ledger.store
    rows: dict[str, Row] = {}
    for r in store.task_rows(order=order_by, include_tombstones=include_tombstones):
        rows[r[0]] = r
    labels: dict[str, list[str]] = defaultdict(list)
    for tid, label in store.label_rows():
        if tid in rows:
            labels[tid].append(label)
    deps: dict[str, list[DepRow]] = defaultdict(list)
    for tid, *rest in store.dep_rows():
        if tid in rows:
            deps[tid].append(tuple(rest))  # type: ignore[arg-type]
    comments: dict[str, list[CommentRow]] = defaultdict(list)
    for cid, tid, *rest in store.comment_rows():
        if tid in rows:
            comments[tid].append((cid, *rest))  # type: ignore[arg-type]
    return Stored(rows, labels, deps, comments, list(rows))



def beads_records(ledger: Ledger, *, include_tombstones: bool = True,
                  order: Literal["id", "ledger"] = "id") -> list[dict[str, Any]]:
    """Every task as a Beads record. ``order``: by id (as Beads writes), or ``ledger`` (the
    order the tasks entered the ledger, which for an import is the order of the file)."""
    return list(iter_beads_records(ledger, include_tombstones=include_tombstones, order=order))


def iter_beads_records(ledger: Ledger, *, include_tombstones: bool = True,
                       order: Literal["id", "ledger"] = "id") -> Iterator[dict[str, Any]]:
    """:func:`beads_records`, each record made as it is taken (the stored rows are read at
    once; the records, several times their size, are not all held)."""
    stored = load_stored(ledger, order_by="id" if order == "id" else "seq",
                         include_tombstones=include_tombstones)
    for tid in stored.order:
        yield stored.record(tid)


def export_beads(ledger: Ledger, out: TextIO, *, include_tombstones: bool = True,
                 order: Literal["id", "ledger"] = "id") -> int:
    """Write the ledger as Beads JSONL; returns the number of records written."""
    count = 0
    for record in iter_beads_records(ledger, include_tombstones=include_tombstones,
                                     order=order):
        out.write(encode_record(record))
        out.write("\n")
        count += 1
    return count


def export_json(ledger: Ledger, *, include_tombstones: bool = True) -> list[dict[str, Any]]:
    """taskmill's own full format: ``Task.to_json(full=True)`` for every task, by id."""
    store = ledger.store
    tasks = store.all_tasks(include_tombstones)
    by_id = {t.id: t for t in tasks}
    deps = [Dependency(*r[:5]) for r in store.dep_rows()]  # by issue, position
    for dep in deps:
        if dep.issue_id in by_id:
            by_id[dep.issue_id].dependencies.append(dep)
    for dep in sorted(deps, key=lambda d: (d.depends_on_id, d.issue_id)):
        if dep.depends_on_id in by_id:
            by_id[dep.depends_on_id].dependents.append(dep)
    for cid, tid, author, text, created, _extra in store.comment_rows():
        if tid in by_id:
            by_id[tid].comments.append(Comment(cid, tid, author, text, created))
    attempt_ids = ledger.attempt_task_ids()
    for task in tasks:
        if task.id in attempt_ids:
            task.attempts = ledger.attempts(task.id)
    return [t.to_json(full=True) for t in tasks]
