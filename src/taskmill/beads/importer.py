"""Importing Beads JSONL into the ledger: all or nothing, merging by id."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..ledger import ImportItem, Ledger
from .exporter import Stored, load_stored
from .parse import Parsed, parse_beads
from .record import MISSING, dumps


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


def import_beads(ledger: Ledger, path_or_lines: Path | str | os.PathLike[str] | Iterable[str],
                 *, actor: str | None = None) -> ImportReport:
    """Import a Beads JSONL export (a path, or an iterable of lines), all or nothing.

    Records already in the ledger (same id) are updated when they differ; an unchanged
    record writes nothing. Raises :class:`InvalidInput` naming the file and line of the
    first malformed record, and then imports nothing.
    """
    now = ledger.now()
    name, parsed = parse_beads(path_or_lines, now=now)
    report = ImportReport(source=name)
    source = Path(name).name if name != "<input>" else name
    with ledger.transaction() as store:
        ids = {p.row[0] for p in parsed}
        have = store.task_ids()
        stored = load_stored(ledger) if ids & have else None
        creates: list[Parsed] = []
        updates: list[tuple[Parsed, dict[str, list[Any]]]] = []
        for item in parsed:
            tid = item.row[0]
            if stored is None or tid not in stored.rows:
                creates.append(item)
                continue
            old = stored.record(tid)
            if old == item.record and list(old) == list(item.record):
                report.unchanged += 1
                continue
            updates.append((item, _diff(old, item.record)))
        if creates or updates:
            _write(ledger, creates, [u[0] for u in updates], stored)
            who = actor or ledger.actor
            for item in creates:
                ledger.record("imported", item.row[0],
                              {"action": "created", "source": source, "line": item.line,
                               "new": item.record}, actor=who, ts=now)
            for item, changes in updates:
                ledger.record("imported", item.row[0],
                              {"action": "updated", "source": source, "line": item.line,
                               "changes": changes}, actor=who, ts=now)
            store.recompute_readiness()
        report.created = len(creates)
        report.updated = len(updates)
        report.created_ids = [p.row[0] for p in creates]
        report.updated_ids = [u[0].row[0] for u in updates]
    report.dangling_deps = ledger.store.dangling_deps()
    report.cycles = ledger.cycles()
    return report


def _write(ledger: Ledger, creates: list[Parsed], updates: list[Parsed],
           stored: Stored | None) -> None:
    items = [*updates, *creates]
    comments = _comment_ids(ledger, items)

    def item(p: Parsed) -> ImportItem:
        return ImportItem(p.row, list(p.labels), [tuple(d) for d in p.deps],
                          comments.get(id(p), []))

    ledger.store.import_rows([item(p) for p in creates], [item(p) for p in updates])


def _comment_ids(ledger: Ledger, items: list[Parsed]) -> dict[int, list[tuple[Any, ...]]]:
    """Each item's comments (by ``id(item)``), keeping their ids where free and in order,
    else with new ids."""
    if not any(p.comments for p in items):
        return {}
    used = ledger.store.comment_ids()
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
                if original is not MISSING and original != cid:
                    data = json.loads(extra) if extra else {}
                    data.setdefault("set", {})["id"] = original
                    extra = dumps(data)
            rows.setdefault(id(p), []).append((cid, crow[1], crow[2], crow[3], extra))
    return rows

