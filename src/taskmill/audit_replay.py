"""Replay: rebuild every task from its audit events and compare with the tables.

Every change the ledger makes writes an event saying what changed (``created`` with the new
task's fields, ``updated`` with the old and new value of each field, ``claimed``, labels,
comments, dependencies, Beads imports: see :mod:`taskmill.audit_import`). Replaying them in order gives
what each task's row, labels, comments and dependencies must be; a row edited behind
taskmill's back (a status set to ``closed`` in the database by hand) differs from it, and each field that
differs is named.

Not replayed: ``updated_at`` (bookkeeping stamped by several code paths), and the derived
columns (``gated``, ``open_blockers``, recomputed from the dependencies).
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .audit_import import Vouching
from .model import CLOSED

if TYPE_CHECKING:
    from .ledger.store import LedgerStore

FIELDS = ("title", "description", "design", "acceptance_criteria", "notes", "status",
          "priority", "issue_type", "assignee", "created_at", "closed_at", "close_reason",
          "external_ref", "metadata", "checks", "agent", "hints")
_FIELD_SET = frozenset(FIELDS)
_JSON = frozenset({"metadata", "checks", "hints"})
_DEFAULTS: dict[str, Any] = {"status": "open", "priority": 2, "issue_type": "task"}


def _norm(value: Any) -> Any:
    """Empty values (None, "", [], {}) are one value: an empty field is stored either way."""
    return None if value is None or value == "" or value == [] or value == {} else value


@dataclass
class Mismatch:
    task: str
    field: str
    table: Any
    events: Any

    def text(self) -> str:
        if self.field == "imported rows":
            return (f"the {self.task} vouches for rows that have changed since: a task it"
                    " created was edited behind taskmill's back")
        if self.field == "tasks created":
            return (f"the {self.task} created {self.events} tasks; the tasks table holds"
                    f" {self.table} of them")
        if self.field == "row":
            return (f"task {self.task} is in the tasks table but no event created it"
                    if self.events is None else
                    f"task {self.task} was created by its events but is missing from the"
                    " tasks table")
        return (f"task {self.task}: {self.field} is {_show(self.table)} in the table but"
                f" {_show(self.events)} from its events")

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "field": self.field, "table": self.table,
                "events": self.events}


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


class Replay:
    """Feed it the events in order (:meth:`feed`), then :meth:`compare` with the tables."""

    def __init__(self) -> None:
        self.tasks: dict[str, dict[str, Any]] = {}
        self.labels: dict[str, list[str]] = {}
        self.deps: set[tuple[str, str, str]] = set()
        self.comments: dict[int, tuple[str, str, str]] = {}
        self.imported_comments: dict[str, Counter[tuple[str, str]]] = {}
        self.vouching = Vouching()
        self.vouched: set[str] = set()

    def feed(self, ts: str, actor: str, task_id: str | None, kind: str, data: str) -> None:
        handler = _HANDLERS.get(kind)
        if handler is None:
            return
        if task_id is None and kind != "imported":
            return
        try:
            payload = json.loads(data)
        except ValueError:
            return  # the chain check names an event that does not parse
        if not isinstance(payload, dict):
            return
        if task_id is None:
            self.vouching.batch(ts, payload)  # an import's one event for the tasks it made
        elif (task_id not in self.tasks and self.vouching.batches and kind != "created"
              and not (kind == "imported" and payload.get("action") == "created")):
            # a task no event created: one a batch import made (checked in compare)
            mine = ({k for k, v in self.comments.items() if v[0] == task_id}
                    if kind == "imported" else set())
            self.vouching.feed(ts, actor, task_id, kind, payload, mine)
            if kind == "commented":
                handler(self, ts, actor, task_id, payload)
            elif kind == "imported" and "comments" in (payload.get("changes") or {}):
                self.comments = {k: v for k, v in self.comments.items() if k not in mine}
                self.imported_comments[task_id] = Counter(
                    (_text(c.get("author")), _text(c.get("text")))
                    for c in (payload["changes"]["comments"][1] or []) if isinstance(c, dict))
        else:
            handler(self, ts, actor, task_id, payload)

    # -- handlers --------------------------------------------------------------------------

    def _created(self, ts: str, actor: str, tid: str, data: dict[str, Any]) -> None:
        new = data.get("new") or {}
        row: dict[str, Any] = {k: None for k in FIELDS}
        row.update(_DEFAULTS)
        row.update({k: v for k, v in new.items() if k in _FIELD_SET})
        row["created_at"] = ts
        row["closed_at"] = ts if row["status"] == CLOSED else None
        self.tasks[tid] = row
        self.labels[tid] = list(new.get("labels") or [])

    def _updated(self, ts: str, actor: str, tid: str, data: dict[str, Any]) -> None:
        row = self.tasks.get(tid)
        changes = data.get("changes") or {}
        if row is None or not isinstance(changes, dict):
            return
        for key, pair in changes.items():
            if key == "labels" and isinstance(pair, list) and len(pair) == 2:
                self.labels[tid] = list(pair[1] or [])
            elif key in _FIELD_SET and isinstance(pair, list) and len(pair) == 2:
                row[key] = pair[1]
        status = changes.get("status")
        if isinstance(status, list) and len(status) == 2:
            if status[1] == CLOSED:
                row["closed_at"] = ts
            elif status[0] == CLOSED:
                row["closed_at"] = None
                if "close_reason" not in changes:
                    row["close_reason"] = None

    def _recovered(self, ts: str, actor: str, tid: str, data: dict[str, Any]) -> None:
        if tid in self.tasks:
            self.tasks[tid]["assignee"] = actor

    def _labels_added(self, ts: str, actor: str, tid: str, data: dict[str, Any]) -> None:
        current = self.labels.setdefault(tid, [])
        current.extend(lb for lb in data.get("labels") or [] if lb not in current)

    def _labels_removed(self, ts: str, actor: str, tid: str, data: dict[str, Any]) -> None:
        gone = set(data.get("labels") or [])
        self.labels[tid] = [lb for lb in self.labels.get(tid, []) if lb not in gone]

    def _commented(self, ts: str, actor: str, tid: str, data: dict[str, Any]) -> None:
        cid = data.get("comment_id")
        if isinstance(cid, int):
            self.comments[cid] = (tid, actor, str(data.get("text", "")))

    def _dep_added(self, ts: str, actor: str, tid: str, data: dict[str, Any]) -> None:
        self.deps.add((tid, str(data.get("depends_on")), str(data.get("type"))))

    def _dep_removed(self, ts: str, actor: str, tid: str, data: dict[str, Any]) -> None:
        self.deps.discard((tid, str(data.get("depends_on")), str(data.get("type"))))

    def _imported(self, ts: str, actor: str, tid: str, data: dict[str, Any]) -> None:
        if data.get("action") == "created":
            record = data.get("new") or {}
            if not isinstance(record, dict):
                return
            self.tasks[tid] = row_from_record(record, ts)
            self.labels[tid] = [lb for lb in record.get("labels") or [] if isinstance(lb, str)]
            self._imported_parts(tid, record)
            return
        row = self.tasks.get(tid)
        changes = data.get("changes") or {}
        if row is None or not isinstance(changes, dict):
            return
        new = {k: v[1] for k, v in changes.items() if isinstance(v, list) and len(v) == 2}
        for key, value in row_from_record(new, ts, partial=True).items():
            row[key] = value
        if "labels" in new:
            self.labels[tid] = [lb for lb in new["labels"] or [] if isinstance(lb, str)]
        self._imported_parts(tid, new, partial=True)

    def _imported_parts(self, tid: str, record: dict[str, Any], *, partial: bool = False) -> None:
        if "dependencies" in record or not partial:
            self.deps = {d for d in self.deps if d[0] != tid}
            for dep in record.get("dependencies") or []:
                if isinstance(dep, dict):
                    self.deps.add((tid, str(dep.get("depends_on_id")), str(dep.get("type"))))
        if "comments" in record or not partial:
            self.comments = {k: v for k, v in self.comments.items() if v[0] != tid}
            self.imported_comments[tid] = Counter(
                (_text(c.get("author")), _text(c.get("text")))
                for c in record.get("comments") or [] if isinstance(c, dict))

    # -- comparing -------------------------------------------------------------------------

    def compare(self, store: LedgerStore) -> list[Mismatch]:
        """What the tables hold that the events do not say, field by field."""
        out: list[Mismatch] = []
        seen: set[str] = set()
        from .ledger.store import IMPORT_ROW_COLUMNS

        vouched, found = self.vouching.check(store, set(self.comments))
        self.vouched = vouched
        out.extend(Mismatch(*item) for item in found)
        at = [IMPORT_ROW_COLUMNS.index(f) for f in FIELDS]
        for stored in store.task_rows():
            tid = stored[0]
            if tid in vouched:
                seen.add(tid)
                continue
            row = (tid, *(stored[i] for i in at))
            seen.add(tid)
            want = self.tasks.get(tid)
            if want is None:
                out.append(Mismatch(tid, "row", "present", None))
                continue
            for key, value in zip(FIELDS, row[1:], strict=True):
                if key in _JSON and value is not None:
                    with contextlib.suppress(ValueError):
                        value = json.loads(value)
                if _norm(value) != _norm(want[key]):
                    out.append(Mismatch(tid, key, value, want[key]))
        out.extend(Mismatch(tid, "row", None, "created") for tid in self.tasks if tid not in seen)
        out.extend(self._compare_labels(store))
        out.extend(self._compare_deps(store))
        out.extend(self._compare_comments(store))
        return out

    def _compare_labels(self, store: LedgerStore) -> list[Mismatch]:
        table: dict[str, list[str]] = {}
        for tid, label in store.label_rows():
            if tid not in self.vouched:
                table.setdefault(tid, []).append(label)
        out = []
        for tid in sorted(set(table) | {t for t, v in self.labels.items() if v}):
            have, want = table.get(tid, []), self.labels.get(tid, [])
            if sorted(have) != sorted(want):
                out.append(Mismatch(tid, "labels", have, want))
        return out

    def _compare_deps(self, store: LedgerStore) -> list[Mismatch]:
        table = {(a, b, t) for a, b, t, *_ in store.dep_rows() if a not in self.vouched}
        out = [Mismatch(a, f"dependency on {b} ({t})", "present", None)
               for a, b, t in sorted(table - self.deps)]
        out += [Mismatch(a, f"dependency on {b} ({t})", None, "present")
                for a, b, t in sorted(self.deps - table)]
        return out

    def _compare_comments(self, store: LedgerStore) -> list[Mismatch]:
        out: list[Mismatch] = []
        imported = {tid: Counter(c) for tid, c in self.imported_comments.items()}
        seen: set[int] = set()
        for cid, tid, author, text, *_ in store.comment_rows():
            want = self.comments.get(cid)
            seen.add(cid)
            if want == (tid, author, text):
                continue
            pool = imported.get(tid)
            if want is None and pool is None and tid in self.vouched:
                continue  # an imported comment: the import's digest covers it
            if want is None and pool and pool[(author, text)] > 0:
                pool[(author, text)] -= 1
                continue
            shown = f"{author}: {text}"
            out.append(Mismatch(tid, f"comment {cid}", shown,
                                None if want is None else f"{want[1]}: {want[2]}"))
        for cid, (tid, author, text) in self.comments.items():
            if cid not in seen:
                out.append(Mismatch(tid, f"comment {cid}", None, f"{author}: {text}"))
        for tid, pool in imported.items():
            if sum(pool.values()) > 0:
                out.append(Mismatch(tid, "imported comments", None,
                                    f"{sum(pool.values())} more"))
        return out


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def row_from_record(record: dict[str, Any], ts: str, *, partial: bool = False) -> dict[str, Any]:
    """A Beads record's task fields as the import stores them (see taskmill.beads.parse)."""
    row: dict[str, Any] = {}
    if not partial:
        row = {k: None for k in FIELDS}
        row.update(_DEFAULTS)
    for key in FIELDS:
        if key not in record:
            continue
        row[key] = _record_value(key, record[key], ts)
    if not partial and not isinstance(record.get("created_at"), str):
        row["created_at"] = ts
    return row


def _record_value(key: str, value: Any, ts: str) -> Any:
    """The column value the import stores for a record's ``key`` (odd values are kept in
    the row's ``extra``, the column left empty)."""
    if key in ("metadata", "hints"):
        return value if isinstance(value, dict) else None
    if key == "checks":
        good = isinstance(value, list) and all(isinstance(c, str) and c.strip() for c in value)
        return value if good else None
    if key == "agent":
        return value if isinstance(value, str) else None
    if key == "created_at":
        return value if isinstance(value, str) else ts
    return value


_HANDLERS = {
    "created": Replay._created,
    "updated": Replay._updated,
    "claimed": Replay._updated,
    "recovered": Replay._recovered,
    "labels_added": Replay._labels_added,
    "labels_removed": Replay._labels_removed,
    "commented": Replay._commented,
    "dep_added": Replay._dep_added,
    "dep_removed": Replay._dep_removed,
    "imported": Replay._imported,
}
