"""Importing Beads JSONL into the ledger: all or nothing, merging by id."""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..audit_import import batch_event, combined, import_digest
from ..ledger import ImportItem, Ledger, LedgerStore
from .parallel import Packed, elsewhere, parsed_records
from .parse import Parsed, Seen, Source
from .record import MISSING, dumps, export_record


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    source: str = ""
    dangling_deps: int = 0
    """Dependencies on ids the ledger does not hold (kept as they are)."""
    cycles: list[list[str]] = field(default_factory=list)
    """Cycles of gating dependencies in the ledger after the import (kept as they are)."""
    created_ids: list[str] = field(default_factory=list)
    updated_ids: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.created + self.updated + self.unchanged

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "total": self.total,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "dangling_deps": self.dangling_deps,
            "cycles": self.cycles,
            "created_ids": self.created_ids,
            "updated_ids": self.updated_ids,
        }



def _diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[Any]]:
    changes: dict[str, list[Any]] = {}
    for key in (*old, *(k for k in new if k not in old)):
        a, b = old.get(key, MISSING), new.get(key, MISSING)
        if a != b:
            changes[key] = [None if a is MISSING else a, None if b is MISSING else b]
    if not changes and list(old) != list(new):
        changes["key_order"] = [list(old), list(new)]
    return changes


@dataclass(frozen=True)
class ImportProgress:
    """How far an import is, for a caller that shows it (:func:`import_beads`'s
    ``progress``): told after each batch is written, then once as it finishes (``finishing``:
    the indexes and readiness, seconds at 1M tasks)."""

    records: int
    bytes_read: int
    size: int | None
    """The file's size (None: lines given)."""
    finishing: bool = False


BATCH = 2000
"""Records parsed, compared and written at a time (memory stays flat however long the file)."""


def import_beads(ledger: Ledger, path_or_lines: Path | str | os.PathLike[str] | Iterable[str],
                 *, actor: str | None = None, batch: int = BATCH,
                 workers: int | None = None,
                 progress: Callable[[ImportProgress], None] | None = None) -> ImportReport:
    """Import a Beads JSONL export (a path, or an iterable of lines), all or nothing.

    The file is read line by line and written in batches, all inside one transaction.
    Records already in the ledger (same id) are updated when they differ (one ``imported``
    event each, with the changes); an unchanged record writes nothing. The tasks created
    get one ``imported`` event for the whole import (see :mod:`taskmill.audit_import`): the
    file's SHA-256, the number of records, the creation numbers of the new tasks and a hash
    over each new task's hash, which ``taskmill verify`` recomputes from the rows. Raises
    :class:`InvalidInput` naming the file and line of the first malformed record, and then
    imports nothing. A big file is parsed by ``workers`` processes meanwhile (None: as
    many as the cores allow, see :func:`taskmill.beads.parallel.workers_for`; 0: none).
    ``progress`` is told how far it is (:class:`ImportProgress`).
    """
    with _collection_paused():
        return _import(ledger, path_or_lines, actor=actor, batch=batch, workers=workers,
                       progress=progress)


@contextmanager
def _collection_paused() -> Iterator[None]:
    """Python's cycle collector paused (an import makes no cycles; a 1M import spent ~5% of
    its CPU in the collector scanning the records in flight), and as it was after."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _import(ledger: Ledger, path_or_lines: Path | str | os.PathLike[str] | Iterable[str], *,
            actor: str | None, batch: int, workers: int | None,
            progress: Callable[[ImportProgress], None] | None) -> ImportReport:
    now = ledger.now()
    source = Source(path_or_lines)
    report = ImportReport(source=source.name)
    label = Path(source.name).name if source.path is not None else source.name
    who = actor or ledger.actor
    with ledger.store.bulk_writing(), ledger.transaction() as store:
        first_seq = store.max_seq() + 1
        empty = store.task_count() == 0  # nothing to compare with, but this file's records
        # and nothing but them: no dependency left without its task either (one would be
        # counted dangling and, named by a record of the file, become its)
        fresh = empty and store.dangling_deps() == 0
        seen = Seen(source.name)
        used = store.comment_ids()
        digests: list[bytes] = []
        records = 0
        size = source.size()
        pending: list[Parsed] = []

        def flush() -> None:
            # an empty ledger holds only what this import wrote (iter_beads refuses an id
            # twice): no record to compare with
            stored = {} if empty else store.stored_items([p.row[0] for p in pending])
            creates: list[Parsed] = []
            updates: list[tuple[Parsed, dict[str, list[Any]]]] = []
            for item in pending:
                tid = item.row[0]
                have = stored.get(tid)
                if have is None:
                    creates.append(item)
                    continue
                old = export_record(have.row, have.labels, have.deps, have.comments)
                record = item.record
                assert record is not None  # (kept when the ledger was not empty)
                if old == record and list(old) == list(record):
                    report.unchanged += 1
                    continue
                updates.append((item, _diff(old, record)))
            if creates or updates:
                _write(store, creates, [u[0] for u in updates], used)
                for item, changes in updates:
                    ledger.record("imported", item.row[0],
                                  {"action": "updated", "source": label, "line": item.line,
                                   "changes": changes}, actor=who, ts=now)
            digests.extend(p.digest or import_digest(p.row, p.labels, [d[:2] for d in p.deps],
                                                     [c[1:3] for c in p.comments])
                           for p in creates)
            report.created += len(creates)
            report.updated += len(updates)
            report.updated_ids.extend(u[0].row[0] for u in updates)
            pending.clear()
            if progress is not None:
                progress(ImportProgress(records, source.bytes_read, size))

        with store.bulk_import():  # the indexes built once the rows are in
            # parsed by workers meanwhile, for a big file
            # into an empty ledger, a worker's batch comes as the store's rows ready to write
            for item in parsed_records(source, now=now, keep_records=not empty,
                                       workers=workers, seen=seen,
                                       pack=store.import_packer() if empty else None):
                if isinstance(item, Packed):
                    if pending:
                        flush()  # (first: the tasks are numbered in the file's order)
                    store.import_packed(item.rows)
                    digests.extend(item.digests)
                    records += item.count
                    report.created += item.count
                    if progress is not None:
                        progress(ImportProgress(records, source.bytes_read, size))
                    continue
                records += 1
                pending.append(item)
                if len(pending) >= batch:
                    flush()
            if pending:
                flush()
            read = seen.close()
            if progress is not None:
                progress(ImportProgress(records, source.bytes_read, size, finishing=True))
            # the digests sorted and hashed by a process of its own while the store builds
            # its indexes on this one's core (a 1M import's ~1 s; a thread would hold the
            # interpreter through the sort)
            digest = elsewhere(combined, digests) if report.created else None
            digests.clear()  # (that process has its copy: not held here while the indexes
            # are built, when a big import's memory is at its peak)
        if digest is not None:
            ledger.record("imported", None, batch_event(
                source=label, sha256=source.sha256, records=records,
                first_seq=first_seq, last_seq=first_seq + report.created - 1,
                digest=digest()), actor=who, ts=now)
            # the tasks created, in the order they were: into an empty ledger, every record
            # read, in the file's order; else read back rather than held all along
            ids = read.ids() if fresh and read.count == report.created else None
            report.created_ids = ids if ids is not None else \
                store.ids_by_seq(first_seq, first_seq + report.created - 1)
        if report.created or report.updated:
            store.recompute_readiness(fresh=fresh)
    # into an empty ledger, the file's dependencies are all there is: what they leave
    # dangling, and whether one could close a cycle, is known from the reading
    dangling = read.dangling if fresh else None
    report.dangling_deps = ledger.store.dangling_deps() if dangling is None else dangling
    report.cycles = ledger.cycles() if not fresh or read.may_cycle else []
    return report


def _write(store: LedgerStore, creates: list[Parsed], updates: list[Parsed],
           used: set[int]) -> None:
    items = [*updates, *creates]
    comments = _comment_ids(used, items)

    def item(p: Parsed) -> ImportItem:
        return ImportItem(p.row, list(p.labels), [tuple(d) for d in p.deps],
                          comments.get(id(p), []))

    store.import_rows([item(p) for p in creates], [item(p) for p in updates])


def _comment_ids(used: set[int], items: list[Parsed]) -> dict[int, list[tuple[Any, ...]]]:
    """Each item's comments (by ``id(item)``), keeping their ids where free and in order,
    else with new ids (``used``: the comment ids taken, kept up to date)."""
    if not any(p.comments for p in items):
        return {}
    plan: list[tuple[Parsed, list[int | None]]] = []
    top = max(used, default=0)
    for p in items:
        chosen: list[int | None] = []
        last = None
        fresh = False
        for crow in p.comments:
            cid = crow[0]
            if not fresh and cid is not None and cid > 0 and cid not in used and (
                    last is None or cid > last):
                used.add(cid)
                chosen.append(cid)
                last = cid
                top = max(top, cid)
            else:
                fresh = True
                chosen.append(None)
        plan.append((p, chosen))
    rows: dict[int, list[tuple[Any, ...]]] = {}
    for p, chosen in plan:
        for crow, cid, original in zip(p.comments, chosen, p.comment_ids, strict=True):
            extra = crow[4]
            if cid is None:
                top += 1
                cid = top
                used.add(cid)
                if original is not MISSING and original != cid:
                    data = json.loads(extra) if extra else {}
                    data.setdefault("set", {})["id"] = original
                    extra = dumps(data)
            rows.setdefault(id(p), []).append((cid, crow[1], crow[2], crow[3], extra))
    return rows

