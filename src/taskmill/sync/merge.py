"""Three-way merge of one task's record and audit trail, field by field.

Against the last commit both clones synced (the base): a field changed on one side only
takes that side's value; a field changed on both sides takes the later change, the time of
each side's change read from that side's audit events since the base (falling back to the
record's ``updated_at``). Labels and dependencies merge as sets (an element added on one
side is added, one removed on one side is removed), comments and audit events as unions.

What cannot be merged is a :class:`SyncConflict`, reported and never dropped: a field
changed on both sides at the same time to different values (the value kept is the same on
both clones, so they agree; the other stays in the conflict and the audit trail), a task
tombstoned on one side and changed on the other (its changes are kept, under the
tombstone), and a task that one side's files lack while the other changed it (kept).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

MISSING: Any = object()
LISTS = ("labels", "dependencies", "comments")
TOMBSTONE = "tombstone"


@dataclass
class SyncConflict:
    task: str
    field: str
    kind: str
    """``same_time`` (both changed it at once), ``tombstoned`` or ``missing``."""
    kept: Any
    other: Any
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "field": self.field, "kind": self.kind,
                "kept": _plain(self.kept), "other": _plain(self.other),
                "message": self.message}


def _plain(value: Any) -> Any:
    return None if value is MISSING else value


def _canon(value: Any) -> str:
    return "" if value is MISSING else json.dumps(value, sort_keys=True, ensure_ascii=False)


def field_times(events: list[dict[str, Any]], since: set[str]) -> dict[str, str]:
    """When each field last changed, from the events not in ``since`` (hashes)."""
    times: dict[str, str] = {}
    for event in events:
        if event["hash"] in since:
            continue
        data = event.get("data") or {}
        ts = str(event.get("ts") or "")
        touched: list[str] = []
        for key in ("new", "changes"):
            if isinstance(data.get(key), dict):
                touched.extend(data[key])
        for name in touched:
            if ts > times.get(name, ""):
                times[name] = ts
    return times


def _merge_set(base: list[Any], ours: list[Any], theirs: list[Any],
               key: Callable[[Any], Hashable]) -> list[Any]:
    """A three-way merge of lists as sets: base's order for what stays, then what either
    side added in key order (the same on both clones)."""
    if _canon(ours) == _canon(theirs) or _canon(theirs) == _canon(base):
        return ours
    if _canon(ours) == _canon(base):
        return theirs
    b = {key(x): x for x in base}
    o = {key(x): x for x in ours}
    t = {key(x): x for x in theirs}
    kept = [o.get(k, t.get(k)) for k in b if k in o and k in t]
    added = {k: o.get(k, t.get(k)) for k in (*o, *t) if k not in b}
    return kept + [added[k] for k in sorted(added, key=_canon)]


def _comment_key(comment: Any) -> Hashable:
    if not isinstance(comment, dict):
        return _canon(comment)
    return (str(comment.get("author")), str(comment.get("created_at")), str(comment.get("text")))


def _merge_comments(ours: list[Any], theirs: list[Any]) -> list[Any]:
    """Every comment of either side once (the same comment: same author, time and text)."""
    if _canon(ours) == _canon(theirs):
        return ours
    merged: dict[Hashable, Any] = {}
    for comment in (*ours, *theirs):
        k = _comment_key(comment)
        have = merged.get(k)
        if have is None or (isinstance(comment, dict) and isinstance(have, dict)
                            and _canon(comment.get("id")) < _canon(have.get("id"))):
            merged[k] = comment
    return sorted(merged.values(),
                  key=lambda c: (str(c.get("created_at")) if isinstance(c, dict) else "",
                                 _canon(c.get("id")) if isinstance(c, dict) else _canon(c)))


def _dep_key(dep: Any) -> Hashable:
    if isinstance(dep, dict):
        return (str(dep.get("depends_on_id")), str(dep.get("type")))
    return _canon(dep)


def merge_task(tid: str, base: dict[str, Any] | None, ours: dict[str, Any] | None,
               theirs: dict[str, Any] | None, ours_times: dict[str, str],
               theirs_times: dict[str, str]) -> tuple[dict[str, Any] | None, list[SyncConflict]]:
    """The merged record of task ``tid`` (None when neither side has it) and its conflicts."""
    if ours is None or theirs is None:
        present = ours if ours is not None else theirs
        if present is None:
            return None, []
        lost: list[SyncConflict] = []
        if base is not None and _canon(present) != _canon(base):
            lost.append(SyncConflict(
                tid, "*", "missing", present, MISSING,
                f"{tid} is missing from {'their' if theirs is None else 'our'} synced"
                " files but was changed on the other side: kept"))
        return present, lost
    b = base or {}
    merged: dict[str, Any] = {}
    conflicts: list[SyncConflict] = []
    keys = [*ours, *(k for k in theirs if k not in ours)]
    for key in keys:
        o, t, old = ours.get(key, MISSING), theirs.get(key, MISSING), b.get(key, MISSING)
        if key in LISTS:
            lo, lt, lb = (_list(x) for x in (o, t, old))
            value: Any = (_merge_comments(lo, lt) if key == "comments" else
                          _merge_set(lb, lo, lt, _dep_key if key == "dependencies" else _canon))
            if value or o == [] or t == []:  # an empty list only where a side wrote one
                merged[key] = value
            continue
        if key == "updated_at":
            merged[key] = max(str(o) if o is not MISSING else "", str(t) if t is not MISSING
                              else "")
            continue
        if _canon(o) == _canon(t) or _canon(t) == _canon(old):
            value = o
        elif _canon(o) == _canon(old):
            value = t
        else:  # both changed it: the later change wins
            ot = ours_times.get(key) or str(ours.get("updated_at") or "")
            tt = theirs_times.get(key) or str(theirs.get("updated_at") or "")
            if ot != tt:
                value = o if ot > tt else t
            else:
                value = o if _canon(o) > _canon(t) else t
                conflicts.append(SyncConflict(
                    tid, key, "same_time", value, t if value is o else o,
                    f"{tid}: {key} was changed on both sides at {ot or 'the same time'};"
                    f" kept {_show(value)}, the other value was {_show(t if value is o else o)}"))
        if value is not MISSING:
            merged[key] = value
    if merged.get("status") == TOMBSTONE and base is not None:
        live = ours if ours.get("status") != TOMBSTONE else theirs
        if live.get("status") != TOMBSTONE and _changed(base, live):
            side = "here" if live is ours else "on the other side"
            conflicts.append(SyncConflict(
                tid, "status", "tombstoned", TOMBSTONE, live.get("status"),
                f"{tid} was tombstoned on one side and changed {side}: its changes are kept,"
                f" and it stays tombstoned (reopen it to bring it back)"))
    return merged, conflicts


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _changed(base: dict[str, Any], side: dict[str, Any]) -> bool:
    skip = {"updated_at"}
    keys = (set(base) | set(side)) - skip
    return any(_canon(base.get(k, MISSING)) != _canon(side.get(k, MISSING)) for k in keys)


def _show(value: Any) -> str:
    text = "nothing" if value is MISSING else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def merge_events(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]
                 ) -> list[dict[str, Any]]:
    """Both trails, each event once (by its hash), in time order."""
    from .snapshot import sort_events

    return sort_events([*ours, *theirs])
