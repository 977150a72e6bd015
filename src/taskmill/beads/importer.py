"""Importing Beads JSONL into the ledger: all or nothing, merging by id."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import readiness
from ..ledger import Ledger
from .exporter import Stored, load_stored
from .parse import Parsed, parse_beads
from .record import MISSING, ROW_COLUMNS, ROW_SQL, dumps


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
    conn = ledger.conn
    with ledger.transaction():
        ids = {p.row[0] for p in parsed}
        have = {r[0] for r in conn.execute("SELECT id FROM tasks")}
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
            readiness.recompute_all(conn)
        report.created = len(creates)
        report.updated = len(updates)
        report.created_ids = [p.row[0] for p in creates]
        report.updated_ids = [u[0].row[0] for u in updates]
    report.dangling_deps = conn.execute(
        "SELECT count(*) FROM deps WHERE depends_on_id NOT IN (SELECT id FROM tasks)").fetchone()[0]
    report.cycles = ledger.cycles()
    return report


def _write(ledger: Ledger, creates: list[Parsed], updates: list[Parsed],
           stored: Stored | None) -> None:
    conn = ledger.conn
    if updates:
        upd_ids = [(p.row[0],) for p in updates]
        conn.executemany("DELETE FROM labels WHERE task_id = ?", upd_ids)
        conn.executemany("DELETE FROM deps WHERE issue_id = ?", upd_ids)
        conn.executemany("DELETE FROM comments WHERE task_id = ?", upd_ids)
        assignments = ", ".join(f"{c} = ?" for c in ROW_COLUMNS[1:])
        conn.executemany(f"UPDATE tasks SET {assignments} WHERE id = ?",
                         [(*p.row[1:], p.row[0]) for p in updates])
    if creates:
        marks = ", ".join("?" * len(ROW_COLUMNS))
        conn.executemany(f"INSERT INTO tasks ({ROW_SQL}) VALUES ({marks})",
                         [p.row for p in creates])
    items = [*updates, *creates]
    conn.executemany(
        "INSERT INTO labels (task_id, label, pos) VALUES (?, ?, ?)",
        [(p.row[0], lb, i) for p in items for i, lb in enumerate(p.labels)])
    conn.executemany(
        "INSERT INTO deps (issue_id, depends_on_id, type, created_at, created_by, extra, pos)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(p.row[0], *d, i) for p in items for i, d in enumerate(p.deps)])
    _write_comments(conn, items)


def _write_comments(conn: Any, items: list[Parsed]) -> None:
    """Insert comments keeping their ids where free and in order, else with new ids."""
    if not any(p.comments for p in items):
        return
    used = {r[0] for r in conn.execute("SELECT id FROM comments")}
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
    rows = []
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
            rows.append((cid, p.row[0], crow[1], crow[2], crow[3], extra))
    conn.executemany(
        "INSERT INTO comments (id, task_id, author, text, created_at, extra)"
        " VALUES (?, ?, ?, ?, ?, ?)", rows)

