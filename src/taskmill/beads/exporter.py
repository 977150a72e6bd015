"""The ledger out: as Beads JSONL (:func:`export_beads`) or in taskmill's own JSON
(:func:`export_json`)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any, Literal, TextIO

from ..ledger import Ledger
from ..model import Comment, Dependency
from .record import CommentRow, encode_record, export_record

CHUNK = 2000
"""Tasks read at a time by :func:`iter_beads_records`."""


def beads_records(ledger: Ledger, *, include_tombstones: bool = True,
                  order: Literal["id", "ledger"] = "id") -> list[dict[str, Any]]:
    """Every task as a Beads record. ``order``: by id (as Beads writes), or ``ledger`` (the
    order the tasks entered the ledger, which for an import is the order of the file)."""
    return list(iter_beads_records(ledger, include_tombstones=include_tombstones, order=order))


def iter_beads_records(ledger: Ledger, *, include_tombstones: bool = True,
                       order: Literal["id", "ledger"] = "id") -> Iterator[dict[str, Any]]:
    """:func:`beads_records`, each record made as it is taken. By id, the tasks' rows, their
    labels and their dependencies are read side by side, each in task order (every store
    sorts ids by code point), the comments held by task; in the ledger's order, :data:`CHUNK`
    tasks at a time with their parts (:meth:`LedgerStore.stored_items`). Memory stays flat
    however big the ledger (the rows of a million tasks and their parts held at once took
    ~3 GB)."""
    store = ledger.store
    if order != "id":
        rows = store.task_rows(order="seq", include_tombstones=include_tombstones)
        while batch := list(itertools.islice(rows, CHUNK)):
            items = store.stored_items([r[0] for r in batch])
            for row in batch:
                item = items.get(row[0])
                yield export_record(row, *((item.labels, item.deps, item.comments)
                                           if item is not None else ((), (), ())))
        return
    comments: dict[str, list[CommentRow]] = {}
    for cid, tid, *rest in store.comment_rows():  # (by id: in order for each task)
        comments.setdefault(tid, []).append((cid, *rest))  # type: ignore[arg-type]
    labels = TaskGroups(store.label_rows())
    deps = TaskGroups(store.dep_rows())
    for row in store.task_rows(order="id", include_tombstones=include_tombstones):
        tid = row[0]
        yield export_record(row, [label for _t, label in labels.take(tid)],
                            [tuple(d[1:]) for d in deps.take(tid)],
                            comments.get(tid, ()))


class TaskGroups:
    """Rows sorted by their first field (a task id), taken a task at a time, in order."""

    def __init__(self, rows: Iterable[tuple[Any, ...]]) -> None:
        self.rows = iter(rows)
        self.next: tuple[Any, ...] | None = next(self.rows, None)

    def take(self, tid: str) -> list[tuple[Any, ...]]:
        """The rows of ``tid``; the rows of tasks before it (not listed: a tombstone left
        out, a row whose task is gone) are passed over."""
        out: list[tuple[Any, ...]] = []
        row = self.next
        while row is not None and row[0] <= tid:
            if row[0] == tid:
                out.append(row)
            row = next(self.rows, None)
        self.next = row
        return out


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
