"""``list --json`` and ``blocked --json`` at scale. The store writes each task's JSON text
(:meth:`~taskmill.ledger.store.LedgerStore.task_json_rows`, ``held_json_rows``; the generic
versions here serve a store without a faster way). For ``blocked`` what holds each task is
read at once (``held_links``, ``block_marks``) and added to its text here; the ancestors'
reasons are worked out only for the tasks that have a holding parent (most have none)."""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, cast

from ..model import BLOCK_COMMENT_PREFIX, BLOCKED, OPEN, Task
from . import containers
from .rows import item_text
from .spill import read_rows, write_batch
from .store import (
    CellRow,
    Cycles,
    HeldItem,
    HeldLaying,
    HeldLinks,
    Holding,
    Laying,
    LedgerStore,
    LinksReading,
)

_CLOSE = "\n  }"
_BLOCKED_BY = ',\n    "blocked_by": '
_NO_MORE = (',\n    "held_by_parent": [],\n    "held_by_ancestor": [],\n    "reasons": [],'
            '\n    "block_reason": null,\n    "unblock_with": null\n  }')
"""The end of a held task's item when nothing else holds it (``BlockedTask.to_json``)."""


_STRING: Callable[[str], str] = json.encoder.encode_basestring
"""A string as ``json.dumps(ensure_ascii=False)`` writes it (the encoder's own C function)."""


def _value(value: str | None) -> str:
    return "null" if value is None else _STRING(value)


def _strings(values: Sequence[str]) -> str:
    """A list of strings as the value of an item's key (``json.dumps(indent=2)``)."""
    if not values:
        return "[]"
    return "[\n      " + ",\n      ".join(map(_STRING, values)) + "\n    ]"


def _marked(task: Task, interrupted: Collection[str], held: Mapping[str, str] | None) -> Task:
    if task.id in interrupted:
        task.interrupted = True
    if held and task.role is not None and task.status == OPEN and held.get(task.role):
        task.held = held[task.role]
    return task


def task_json_rows(store: LedgerStore, *, statuses: Sequence[str] | None,
                   include_hidden: bool, label: str | None, issue_type: str | None,
                   assignee: str | None, parent: str | None, limit: int | None,
                   interrupted: Collection[str] = (),
                   held: Mapping[str, str] | None = None) -> Iterator[str]:
    """:meth:`LedgerStore.task_json_rows` from the store's :meth:`~LedgerStore.task_pages`
    (for a store without a faster way)."""
    for page in store.task_pages(statuses=statuses, include_hidden=include_hidden,
                                 label=label, issue_type=issue_type, assignee=assignee,
                                 parent=parent, limit=limit):
        for task in page:
            yield item_text(_marked(task, interrupted, held).to_json())


def held_json_rows(store: LedgerStore, beads_compat: bool = False, *,
                   interrupted: Collection[str] = (), held: Mapping[str, str] | None = None
                   ) -> Iterator[tuple[str, str, str]]:
    """:meth:`LedgerStore.held_json_rows` from the store's :meth:`~LedgerStore.held_pages`
    (for a store without a faster way)."""
    for page in store.held_pages(beads_compat):
        for task in page:
            text = item_text(_marked(task, interrupted, held).to_json())[:-len(_CLOSE)]
            yield task.id, task.status, text


def cell_row(task: Task) -> CellRow:
    """What the task tables show of ``task`` (:data:`~taskmill.ledger.store.CellRow`)."""
    closed = (f"{task.children_closed}/{task.children} closed" if task.children > 0
              else None)
    return (task.id, task.parent, task.priority, task.issue_type, task.status, task.ready,
            closed, task.title, ", ".join(task.labels), task.role)


def task_cell_rows(store: LedgerStore, *, statuses: Sequence[str] | None,
                   include_hidden: bool, label: str | None, issue_type: str | None,
                   assignee: str | None, parent: str | None, limit: int | None
                   ) -> Iterator[CellRow]:
    """:meth:`LedgerStore.task_cell_rows` from the store's :meth:`~LedgerStore.task_pages`
    (for a store without a faster way)."""
    for page in store.task_pages(statuses=statuses, include_hidden=include_hidden,
                                 label=label, issue_type=issue_type, assignee=assignee,
                                 parent=parent, limit=limit):
        yield from map(cell_row, page)


def held_cell_rows(store: LedgerStore, beads_compat: bool = False) -> Iterator[CellRow]:
    """:meth:`LedgerStore.held_cell_rows` from the store's :meth:`~LedgerStore.held_pages`
    (for a store without a faster way)."""
    for page in store.held_pages(beads_compat):
        yield from map(cell_row, page)


class PagedCellRows:
    """:meth:`LedgerStore.task_cell_rows` and ``held_cell_rows`` from the store's pages
    (:func:`task_cell_rows`, :func:`held_cell_rows`): for a store without a faster way."""

    def task_cell_rows(self, *, statuses: Sequence[str] | None, include_hidden: bool,
                       label: str | None, issue_type: str | None, assignee: str | None,
                       parent: str | None, limit: int | None) -> Iterator[CellRow]:
        return task_cell_rows(
            cast(LedgerStore, self), statuses=statuses, include_hidden=include_hidden,
            label=label, issue_type=issue_type, assignee=assignee, parent=parent,
            limit=limit)

    def task_cell_texts(self, laying: Laying, *, statuses: Sequence[str] | None,
                        include_hidden: bool, label: str | None, issue_type: str | None,
                        assignee: str | None, parent: str | None, limit: int | None
                        ) -> Iterator[tuple[str, int]]:
        return laying.lay(cast(LedgerStore, self).task_cell_rows(
            statuses=statuses, include_hidden=include_hidden, label=label,
            issue_type=issue_type, assignee=assignee, parent=parent, limit=limit), None)

    def held_cell_rows(self, beads_compat: bool = False) -> Iterator[CellRow]:
        return held_cell_rows(cast(LedgerStore, self), beads_compat)

    def held_cell_texts(self, laying: HeldLaying, beads_compat: bool, cycles: Cycles
                        ) -> Iterator[tuple[str, int]]:
        return laying.lay(blocked_cells(cast(LedgerStore, self), beads_compat=beads_compat,
                                        cycles=cycles), None)

    def held_json_texts(self, beads_compat: bool, cycles: Cycles) -> Iterator[str]:
        return blocked_json(cast(LedgerStore, self), beads_compat=beads_compat, cycles=cycles)


def held_links(store: LedgerStore) -> HeldLinks:
    """:meth:`LedgerStore.held_links` from :meth:`~LedgerStore.held_waits` and
    :meth:`~LedgerStore.holding_parents_many` (no states read; cycles not ruled out)."""
    return HeldLinks(store.held_waits(),
                     store.holding_parents_many([t.id for t in store.held()]), {}, True)


BLOCK_MARKS = (BLOCK_COMMENT_PREFIX, ("updated", "imported"), 200)
"""What :meth:`~taskmill.ledger.Ledger.blocked` reads to say why a task is blocked."""


def block_reason(tid: str,
                  marks: Mapping[str, tuple[str | None, str | None, str | None]]) -> str:
    """The mill's reason for blocking a task, else who marked it blocked and when (as
    :meth:`taskmill.ledger.Ledger.blocked` says it)."""
    text, actor, ts = marks.get(tid, (None, None, None))
    if text is not None:
        return text[len(BLOCK_COMMENT_PREFIX):]
    if actor is not None:
        return f"marked blocked by {actor} at {ts}"
    return "marked blocked (no reason recorded)"


def block_marks(store: LedgerStore, prefix: str, kinds: Sequence[str], limit: int
                ) -> dict[str, tuple[str | None, str | None, str | None]]:
    """:meth:`LedgerStore.block_marks` a task at a time (for a store without a faster way)."""
    out: dict[str, tuple[str | None, str | None, str | None]] = {}
    for task in store.list_tasks(statuses=[BLOCKED], include_hidden=False, label=None,
                                 issue_type=None, assignee=None, parent=None, limit=None):
        mark: tuple[str | None, str | None] = (None, None)
        for event in store.recent_events(task.id, kinds, limit):
            status = event.data.get("changes", {}).get("status")
            if isinstance(status, list) and status[-1:] == [BLOCKED]:
                mark = (event.actor, event.ts)
                break
        out[task.id] = (store.last_comment_starting(task.id, prefix), *mark)
    return out


def _blockers(blockers: list[str] | None) -> str:
    """The value of ``blocked_by`` (sorted ids)."""
    if not blockers:
        return "[]"
    if len(blockers) == 1:
        return "[\n      " + _STRING(blockers[0]) + "\n    ]"
    return _strings(sorted(blockers))


def ancestor_reads(store: LedgerStore, links: HeldLinks) -> containers.AncestorReads:
    """The reads of the ancestors' reasons, filled with what ``links`` holds."""
    reads = containers.AncestorReads(store)
    reads.waits = links.waits
    reads.parents.update(links.parents)
    reads.parents_complete = True
    reads.states.update(links.states)
    return reads


AHEAD_CHARS = 16 << 20
"""How much of the held tasks' text ``blocked --json`` keeps in memory while the store reads
what holds them in another thread; rows read after that wait in a temporary file."""

SPILL_BATCH = 256
"""Rows spilled to the temporary file at a time (:mod:`taskmill.ledger.spill`)."""

Row = tuple[str, str, str]
R = TypeVar("R", bound=tuple[Any, ...])


def _read_ahead(rows: Iterator[R], reading: LinksReading,
                size_of: Callable[[R], int]) -> Iterator[R]:
    """The rows read while ``reading`` is not done, then the rest of ``rows``: the first
    :data:`AHEAD_CHARS` (``size_of`` a row) held in memory, the others spilled to a
    temporary file (its pages are the system's, not this process's) and read back once the
    links are in."""
    ahead: list[R] = []
    size = 0
    with contextlib.ExitStack() as stack:
        spill: Any = None
        pending: list[R] = []  # (spilled a batch at a time)
        if not reading.done():
            for row in rows:
                if spill is not None:
                    pending.append(row)
                    if len(pending) >= SPILL_BATCH:
                        write_batch(spill, pending)
                        pending = []
                else:
                    ahead.append(row)
                    size += size_of(row)
                    if size >= AHEAD_CHARS:
                        import tempfile

                        spill = stack.enter_context(tempfile.TemporaryFile())
                if reading.done():
                    break
        yield from ahead
        del ahead[:]
        if spill is not None:
            if pending:
                write_batch(spill, pending)
                pending = []
            yield from read_rows(spill)
            stack.close()
    yield from rows


def holding(store: LedgerStore, rows: Iterator[R], *, cycles: Cycles
            ) -> Iterator[tuple[R, list[str] | None, Holding | None]]:
    """Each row of ``rows`` (the held tasks', id and status first) with what it waits on
    (unsorted; None: nothing) and, where anything else holds it, :class:`Holding` (else
    None: the usual case). ``cycles``: each task of a waits graph in a cycle, with the cycle
    (not asked when the store rules cycles out). The links are read meanwhile where the
    store can (:meth:`~LedgerStore.held_links_reading`), the rows read until then kept
    (:func:`_read_ahead`). Why a task of status blocked is comes from the store's
    :meth:`~LedgerStore.block_marks`, read once."""
    reading = store.held_links_reading()
    try:
        yield from _holding(store, rows, reading, cycles)
    finally:
        reading.close()


def _holding(store: LedgerStore, rows: Iterator[R], reading: LinksReading, cycles: Cycles
             ) -> Iterator[tuple[R, list[str] | None, Holding | None]]:
    rows = read_ahead(rows, reading)
    holder = Holder(store, reading.result(), cycles)
    yield from holder.rows(rows)


def read_ahead(rows: Iterator[R], reading: LinksReading) -> Iterator[R]:
    """``rows``, read ahead until the links are in (:func:`_read_ahead`): when this returns,
    ``reading`` is done or the rows are all read."""
    ahead = _read_ahead(rows, reading, _size)
    next_row = next(ahead, None)
    return itertools.chain(() if next_row is None else (next_row,), ahead)


class Holder:
    """What holds each held task, once the held tasks' links are in (see :func:`holding`):
    the cycles among their waits worked out, the ancestors' reads kept, the block marks
    read when a first task of status blocked comes."""

    def __init__(self, store: LedgerStore, links: HeldLinks, cycles: Cycles) -> None:
        self.store = store
        self.waits, self.holds = links.waits, links.parents
        self.in_cycle = cycles(links.waits) if links.forward else {}
        self.reads = ancestor_reads(store, links)
        self.marks: dict[str, tuple[str | None, str | None, str | None]] | None = None

    def rebind(self, store: LedgerStore) -> None:
        """Ask ``store`` what is still to be read (another connection to the same state of
        the ledger: a forked child's)."""
        self.store = self.reads.store = store

    def rows(self, rows: Iterable[R]) -> Iterator[tuple[R, list[str] | None, Holding | None]]:
        """Each of ``rows`` (id and status first) with what holds it (see :func:`holding`)."""
        waits, holds, in_cycle = self.waits, self.holds, self.in_cycle
        for row in rows:
            tid, status = row[0], row[1]
            parents = holds.get(tid)
            if not parents and status != BLOCKED and tid not in in_cycle:
                yield row, waits.get(tid), None
                continue
            ancestors, reasons = (containers.ancestor_reasons(self.store, tid, self.reads)
                                  if parents else ([], []))
            if tid in in_cycle:
                reasons = [f"in a dependency cycle: {' -> '.join(in_cycle[tid])}", *reasons]
            blocked = status == BLOCKED
            if blocked and self.marks is None:
                self.marks = self.store.block_marks(*BLOCK_MARKS)
            reason = block_reason(tid, self.marks or {}) if blocked else None
            unblock = f"taskmill reopen {tid}" if blocked else None
            yield row, waits.get(tid), Holding(sorted(parents or ()), ancestors, reasons,
                                               reason, unblock)


def _size(row: tuple[Any, ...]) -> int:
    """About what a row takes in memory (its text, or its cells)."""
    size = 64 * len(row)  # (a Python object each, with its header)
    for value in row:
        if value.__class__ is str:
            size += len(value)
        elif value.__class__ is tuple:
            size += _size(value)
    return size


def blocked_json(store: LedgerStore, *, beads_compat: bool, cycles: Cycles) -> Iterator[str]:
    """Each task :meth:`~taskmill.ledger.Ledger.blocked` lists, as the text of its
    ``to_json()`` indented as an item of a top-level ``json.dumps(indent=2)`` array (what
    holds it: :func:`holding`)."""
    return json_items(holding(store, store.held_json_rows(beads_compat), cycles=cycles))


def json_items(rows: Iterable[tuple[tuple[str, str, str], list[str] | None, Holding | None]]
               ) -> Iterator[str]:
    """:func:`holding`'s rows of :meth:`LedgerStore.held_json_rows` as the items of
    :func:`blocked_json`."""
    for (_tid, _status, text), blockers, held in rows:
        if held is None:
            yield f"{text}{_BLOCKED_BY}{_blockers(blockers)}{_NO_MORE}"
            continue
        yield (f'{text}{_BLOCKED_BY}{_blockers(blockers)},'
               f'\n    "held_by_parent": {_strings(held.parents)},'
               f'\n    "held_by_ancestor": {_strings(held.ancestors)},'
               f'\n    "reasons": {_strings(held.reasons)},'
               f'\n    "block_reason": {_value(held.reason)},'
               f'\n    "unblock_with": {_value(held.unblock)}\n  }}')


def blocked_cells(store: LedgerStore, *, beads_compat: bool, cycles: Cycles
                  ) -> Iterator[HeldItem]:
    """Each task :meth:`~taskmill.ledger.Ledger.blocked` lists as the task tables show it
    (:data:`~taskmill.ledger.store.CellRow`, read by :meth:`LedgerStore.held_cell_rows`),
    with what it waits on (sorted) and what else holds it (:func:`holding`)."""
    return cells_held(holding(store, id_status_first(store.held_cell_rows(beads_compat)),
                              cycles=cycles))


def cells_held(rows: Iterable[tuple[tuple[str, str, CellRow], list[str] | None,
                                    Holding | None]]) -> Iterator[HeldItem]:
    """:func:`holding`'s rows of :func:`id_status_first` as :data:`HeldItem`."""
    for row, blockers, held in rows:
        yield row[2], sorted(blockers) if blockers else [], held


def id_status_first(rows: Iterable[CellRow]) -> Iterator[tuple[str, str, CellRow]]:
    """Each row with its id and status before it (as :func:`holding` reads rows)."""
    for row in rows:
        yield row[0], row[4], row
