"""An in-memory :class:`~taskmill.ledger.store.LedgerStore`: plain dicts, no SQL.

It exists to prove the seam (``tests/store_contract.py`` holds it to the same behaviour as
the SQLite store) and to run tests fast. It lives in one process, shared by its threads: every
verb holds the store's lock, and a transaction holds it throughout (writers queue, as SQLite's
``BEGIN IMMEDIATE`` makes them), with a copy of the data to go back to (a nested one, a copy
of its own: a savepoint).
Readiness is recomputed from the definitions after each change (the SQLite store keeps it
incrementally; the contract checks they agree).
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..audit import GENESIS, canonical, chain_hash, event_from_row
from ..lean_rules import event_text
from ..model import (
    BLOCKING_TYPES,
    DONE_STATUSES,
    GATING_TYPES,
    HIDDEN_STATUSES,
    HOLDING_STATUSES,
    PARENT_CHILD,
    TOMBSTONE,
    WAITS_FOR,
    Comment,
    Dependency,
    Event,
    Task,
)
from .beads_rules import (
    blocks_now,
    deferred,
    extra_fields,
    gate_shut,
    is_nonwork,
    order_key,
    waits_for_gate,
)
from .graph import closed_path, cyclic_groups, shortest_path
from .listing import PagedCellRows
from .rows import (
    ATTEMPT_FIELDS,
    JSON_FIELDS,
    TASK_FIELDS,
    attempt_from_row,
    dumps,
    estimate,
    task_from_row,
)
from .store import (
    IMPORT_ROW_COLUMNS,
    Change,
    EventRow,
    HeldLinks,
    ImportItem,
    LedgerStore,
    LinksReading,
    OrderSlot,
    Row,
    pack_items,
    unpack_items,
)

_DEFAULTS: dict[str, Any] = {
    "description": "", "design": "", "acceptance_criteria": "", "notes": "", "status": "open",
    "priority": 2, "issue_type": "task", "assignee": None, "closed_at": None,
    "close_reason": None, "external_ref": None, "metadata": None, "checks": None,
    "agent": None, "hints": None, "role": None, "extra": None, "open_blockers": 0, "gated": 0,
}


@dataclass
class _Dep:
    created_at: str | None
    created_by: str | None
    extra: str | None
    pos: int


@dataclass
class _Data:
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    labels: dict[str, list[str]] = field(default_factory=dict)
    deps: dict[tuple[str, str, str], _Dep] = field(default_factory=dict)
    comments: dict[int, tuple[str, str, str, str, str | None]] = field(default_factory=dict)
    attempts: dict[int, dict[str, Any]] = field(default_factory=dict)
    events: list[EventRow] = field(default_factory=list)
    head: tuple[int, str] = (0, GENESIS)
    plan_keys: dict[tuple[str, str], str] = field(default_factory=dict)
    order_slots: dict[tuple[str, str], OrderSlot] = field(default_factory=dict)


class MemoryStore(PagedCellRows):
    """A ledger store in memory (see the module's text)."""

    def __init__(self) -> None:
        self._d = _Data()
        self._lock = threading.RLock()
        self._saved: list[_Data] = []
        self._pending: tuple[int, str] | None = None

    # -- the unit of work ------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            outer = not self._saved
            self._saved.append(copy.deepcopy(self._d))
            if outer:
                self._pending = self._d.head
            pending = self._pending
            try:
                yield
            except BaseException:
                self._d = self._saved[-1]
                self._pending = pending
                raise
            else:
                if outer:
                    assert self._pending is not None
                    self._d.head = self._pending
            finally:
                self._saved.pop()
                if not self._saved:
                    self._pending = None

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        with self._lock:  # (another thread's write waits for it)
            yield

    @property
    def in_transaction(self) -> bool:
        return bool(self._saved)

    def reset(self) -> None:
        if self._saved:
            self._d = self._saved[0]
            self._saved.clear()
            self._pending = None

    def close(self) -> None:
        pass

    # -- helpers ---------------------------------------------------------------------------

    def _row(self, tid: str) -> list[Any]:
        t = self._d.tasks[tid]
        return [t[k] for k in TASK_FIELDS]

    def _order(self, ids: Iterable[str]) -> list[str]:
        """By priority, then creation."""
        tasks = self._d.tasks
        return sorted(ids, key=lambda i: (tasks[i]["priority"], tasks[i]["seq"]))

    def _ready_order(self, ids: Iterable[str]) -> list[str]:
        """By priority, then creation time, then creation."""
        tasks = self._d.tasks
        return sorted(ids, key=lambda i: (tasks[i]["priority"], tasks[i]["created_key"],
                                          tasks[i]["seq"]))

    def _by_seq(self, ids: Iterable[str]) -> list[str]:
        return sorted(ids, key=lambda i: self._d.tasks[i]["seq"])

    def _done(self, tid: str) -> bool:
        return self._d.tasks[tid]["status"] in DONE_STATUSES

    def _deps_from(self, tid: str) -> list[tuple[str, str, _Dep]]:
        """(depends on, type, dep) of ``tid``'s dependencies, by position."""
        out = [(b, t, d) for (a, b, t), d in self._d.deps.items() if a == tid]
        return sorted(out, key=lambda x: (x[2].pos, x[0], x[1]))

    def _children(self, parent: str) -> list[str]:
        """Children of ``parent`` that exist, oldest first."""
        return self._by_seq({a for (a, b, t) in self._d.deps
                             if b == parent and t == PARENT_CHILD and a in self._d.tasks})

    def _is_container(self, tid: str) -> bool:
        return any(self._d.tasks[c]["status"] != TOMBSTONE for c in self._children(tid))

    def _tasks(self, ids: Iterable[str], annotate: bool = True) -> list[Task]:
        out = []
        for tid in ids:
            task = task_from_row(self._row(tid), list(self._d.labels.get(tid, [])))
            if annotate:
                kids = [c for c in self._children(tid) if self._d.tasks[c]["status"] != TOMBSTONE]
                if kids:
                    task.children = len(kids)
                    task.children_closed = sum(self._d.tasks[c]["status"] == "closed"
                                               for c in kids)
                parents = [b for b, t, _d in self._deps_from(tid) if t == PARENT_CHILD]
                if parents:
                    task.parent = parents[0]
            out.append(task)
        return out

    # -- tasks -----------------------------------------------------------------------------

    def task(self, task_id: str) -> Task | None:
        if task_id not in self._d.tasks:
            return None
        return self._tasks([task_id])[0]

    def exists(self, task_id: str) -> bool:
        return task_id in self._d.tasks

    def ids_from(self, start: str, limit: int) -> list[str]:
        end = start + "\uffff"
        return sorted(i for i in self._d.tasks if start <= i < end)[:limit]

    def ids_lower_in(self, names: Sequence[str], limit: int) -> list[str]:
        return self._by_seq(i for i in self._d.tasks if i.lower() in names)[:limit]

    def ids_lower_prefix(self, start: str, limit: int) -> list[str]:
        return sorted(i for i in self._d.tasks if i.lower()[:len(start)] == start)[:limit]

    def ids_sized(self, shortest: int, longest: int) -> list[str]:
        return self._by_seq(i for i, t in self._d.tasks.items()
                            if shortest <= len(i) <= longest and t["status"] != TOMBSTONE)

    def generation(self) -> int | None:
        return None  # (no generation kept: nothing is kept)

    def kept_text_differences(self) -> list[str] | None:
        return None  # (no listing text kept)

    def remake_kept_text(self) -> None:
        return None

    def max_seq(self) -> int:
        return max((t["seq"] for t in self._d.tasks.values()), default=0)

    def list_tasks(self, *, statuses: Sequence[str] | None, include_hidden: bool,
                   label: str | None, issue_type: str | None, assignee: str | None,
                   parent: str | None, limit: int | None) -> list[Task]:
        def keep(tid: str, t: dict[str, Any]) -> bool:
            if statuses:
                if t["status"] not in statuses:
                    return False
            elif not include_hidden and t["status"] in HIDDEN_STATUSES:
                return False
            if label and label not in self._d.labels.get(tid, []):
                return False
            if issue_type and t["issue_type"] != issue_type:
                return False
            if assignee and t["assignee"] != assignee:
                return False
            return not parent or (tid, parent, PARENT_CHILD) in self._d.deps

        ids = self._order(tid for tid, t in self._d.tasks.items() if keep(tid, t))
        return self._tasks(ids[:limit] if limit else ids)

    def task_pages(self, *, statuses: Sequence[str] | None, include_hidden: bool,
                   label: str | None, issue_type: str | None, assignee: str | None,
                   parent: str | None, limit: int | None,
                   size: int | None = 1000) -> Iterator[list[Task]]:
        tasks = self.list_tasks(statuses=statuses, include_hidden=include_hidden, label=label,
                                issue_type=issue_type, assignee=assignee, parent=parent,
                                limit=limit)
        step = size or max(len(tasks), 1)
        return iter([tasks[i:i + step] for i in range(0, len(tasks), step)])

    def task_json_rows(self, *, statuses: Sequence[str] | None, include_hidden: bool,
                       label: str | None, issue_type: str | None, assignee: str | None,
                       parent: str | None, limit: int | None,
                       interrupted: Collection[str] = (),
                       held: Mapping[str, str] | None = None) -> Iterator[str]:
        from .listing import task_json_rows

        return task_json_rows(
            self, statuses=statuses, include_hidden=include_hidden, label=label,
            issue_type=issue_type, assignee=assignee, parent=parent, limit=limit,
            interrupted=interrupted, held=held)

    def held_json_rows(self, beads_compat: bool = False, *,
                       interrupted: Collection[str] = (),
                       held: Mapping[str, str] | None = None
                       ) -> Iterator[tuple[str, str, str]]:
        from .listing import held_json_rows

        return held_json_rows(self, beads_compat, interrupted=interrupted,
                              held=held)

    def held_links(self) -> HeldLinks:
        from .listing import held_links

        return held_links(self)

    def held_links_reading(self) -> LinksReading:
        return LinksReading(self.held_links, meanwhile=False)

    def block_marks(self, prefix: str, kinds: Sequence[str], limit: int
                    ) -> dict[str, tuple[str | None, str | None, str | None]]:
        from .listing import block_marks

        return block_marks(self, prefix, kinds, limit)

    def statuses_in_use(self) -> list[str]:
        return list(dict.fromkeys(t["status"] for t in self._d.tasks.values()))

    def ready(self, limit: int | None, work_only: bool, *, now: str,
              beads_compat: bool = False, for_claim: bool = False) -> list[Task]:
        hidden = self._deferred_out(now, beads_compat)
        dep_gated = self._dep_gated() if beads_compat else set()
        ids = self._ready_order(
            i for i, t in self._d.tasks.items()
            if t["status"] == "open" and i not in hidden
            and not is_nonwork(t["issue_type"], t["extra"])
            and (i not in dep_gated if beads_compat else not t["gated"])
            and not (work_only and self._is_container(i)))
        return self._tasks(ids[:limit] if limit else ids)

    def _deferred_out(self, now: str, direct_children_only: bool) -> set[str]:
        out = {i for i, t in self._d.tasks.items()
               if deferred(extra_fields(t["extra"]).get("defer_until"), now)}
        queue = list(out)
        while queue:
            for child in self._children(queue.pop()):
                if child not in out:
                    out.add(child)
                    if not direct_children_only and not self._done(child):
                        queue.append(child)
        return out

    def _dep_gated(self) -> set[str]:
        """Gated through blocking dependencies alone (Beads' ``is_blocked``)."""
        seeds = [i for i, t in self._d.tasks.items() if t["open_blockers"] > 0]
        out = set(seeds)
        while seeds:
            node = seeds.pop()
            if self._done(node):
                continue
            for child in self._children(node):
                if child not in out:
                    out.add(child)
                    seeds.append(child)
        return out

    def held(self, beads_compat: bool = False) -> list[Task]:
        if beads_compat:
            dep_gated = self._dep_gated()
            return self._tasks(self._order(i for i in dep_gated if not self._done(i)))
        return self._tasks(self._order(
            i for i, t in self._d.tasks.items()
            if (t["gated"] or t["status"] == "blocked") and t["status"] not in DONE_STATUSES))

    def held_pages(self, beads_compat: bool = False, size: int = 1000
                   ) -> Iterator[list[Task]]:
        held = self.held(beads_compat)
        for start in range(0, len(held), size):
            yield held[start:start + size]

    def child_tasks(self, parent: str) -> list[Task]:
        return self._tasks(c for c in self._children(parent)
                           if self._d.tasks[c]["status"] != TOMBSTONE)

    def all_tasks(self, include_tombstones: bool) -> list[Task]:
        return self._tasks(sorted(i for i, t in self._d.tasks.items()
                                  if include_tombstones or t["status"] != TOMBSTONE),
                           annotate=False)

    def labels(self, task_id: str) -> list[str]:
        return list(self._d.labels.get(task_id, []))

    def labels_in_use(self) -> list[str]:
        return sorted({lb for tid, lbs in self._d.labels.items() for lb in lbs
                       if tid in self._d.tasks and self._d.tasks[tid]["status"] != TOMBSTONE})

    def task_extra(self, task_id: str) -> str | None:
        t = self._d.tasks.get(task_id)
        return None if t is None else t["extra"]

    def stats(self) -> dict[str, Any]:
        by_status: dict[str, int] = {}
        for status in sorted(t["status"] for t in self._d.tasks.values()):
            by_status[status] = by_status.get(status, 0) + 1
        deps: dict[str, int] = {}
        for typ in sorted(t for (_a, _b, t) in self._d.deps):
            deps[typ] = deps.get(typ, 0) + 1
        attempts = list(self._d.attempts.values())
        return {
            "total": sum(v for k, v in by_status.items() if k not in HIDDEN_STATUSES),
            "by_status": by_status,
            "ready": sum(1 for t in self._d.tasks.values()
                         if t["status"] == "open" and not t["gated"]
                         and not is_nonwork(t["issue_type"], t["extra"])),
            "blocked": sum(1 for t in self._d.tasks.values()
                           if (t["gated"] or t["status"] == "blocked")
                           and t["status"] not in DONE_STATUSES),
            "dependencies": deps,
            "events": len(self._d.events),
            "attempts": len(attempts),
            "input_tokens": sum(a["input_tokens"] or 0 for a in attempts),
            "output_tokens": sum(a["output_tokens"] or 0 for a in attempts),
            "cost_usd": round(float(sum(a["cost_usd"] or 0 for a in attempts)), 6),
        }

    def insert_task(self, values: Mapping[str, Any], labels: Sequence[str]) -> None:
        tid = values["id"]
        if tid in self._d.tasks:
            raise ValueError(f"task {tid} exists")
        row = {**_DEFAULTS, **{k: dumps(v) if k in JSON_FIELDS else v for k, v in values.items()}}
        row["seq"] = self.max_seq() + 1
        row["created_key"] = order_key(row.get("created_at"))
        self._d.tasks[tid] = row
        if labels:
            self._d.labels[tid] = list(labels)

    def update_task(self, task_id: str, values: Mapping[str, Any]) -> None:
        row = self._d.tasks[task_id]
        for key, value in values.items():
            row[key] = dumps(value) if key in JSON_FIELDS else value
        if "created_at" in values:
            row["created_key"] = order_key(row["created_at"])

    def claim_row(self, task_id: str, assignee: str, now: str, work_only: bool) -> bool:
        t = self._d.tasks.get(task_id)
        if t is None or t["status"] != "open" or t["gated"] or (work_only and (
                is_nonwork(t["issue_type"], t["extra"]) or self._is_container(task_id))):
            return False
        t.update(status="in_progress", assignee=assignee, updated_at=now)
        return True

    def reassign(self, task_id: str, old: str, new: str) -> bool:
        t = self._d.tasks.get(task_id)
        if t is None or t["assignee"] != old or t["status"] != "in_progress":
            return False
        t["assignee"] = new
        return True

    def add_labels(self, task_id: str, labels: Sequence[str], start: int) -> None:
        self._d.labels.setdefault(task_id, []).extend(labels)

    def remove_labels(self, task_id: str, labels: Sequence[str]) -> None:
        self._d.labels[task_id] = [lb for lb in self._d.labels.get(task_id, [])
                                   if lb not in labels]

    def replace_labels(self, task_id: str, labels: Sequence[str]) -> None:
        self._d.labels[task_id] = list(labels)

    def claims(self, assignee_prefix: str) -> list[tuple[str, str]]:
        low = assignee_prefix.lower()  # as SQL's LIKE: ASCII case does not count
        return [(i, t["assignee"]) for i in self._by_seq(self._d.tasks)
                if (t := self._d.tasks[i])["status"] == "in_progress"
                and (t["assignee"] or "").lower().startswith(low)]

    def chain_weights(self) -> dict[str, float]:
        return {tid: estimate(self._d.tasks[tid]["hints"]) for tid in self._by_seq(self._d.tasks)
                if self._d.tasks[tid]["status"] not in DONE_STATUSES}

    # -- readiness -------------------------------------------------------------------------

    def status_changed(self, task_id: str, old: str, new: str) -> None:
        self.recompute_readiness()

    def recompute_readiness(self, *, fresh: bool = False) -> None:
        tasks = self._d.tasks
        for t in tasks.values():
            t["open_blockers"] = 0
        for (a, b, typ), dep in self._d.deps.items():
            if a in tasks and typ in BLOCKING_TYPES and self._holds(b, typ, dep.extra):
                tasks[a]["open_blockers"] += 1
        seeds = [tid for tid, t in tasks.items() if t["open_blockers"] > 0]
        kids: dict[str, list[str]] = defaultdict(list)
        for (child, parent, typ) in self._d.deps:
            if typ == PARENT_CHILD and child in tasks and parent in tasks:
                kids[parent].append(child)
                if tasks[parent]["status"] in HOLDING_STATUSES:
                    seeds.append(child)
        gated = set(seeds)
        work = deque(seeds)
        while work:
            node = work.popleft()
            if self._done(node):
                continue
            for child in kids.get(node, ()):
                if child not in gated:
                    gated.add(child)
                    work.append(child)
        for tid, t in tasks.items():
            t["gated"] = 1 if tid in gated else 0

    def _holds(self, target: str, typ: str, dep_extra: str | None) -> bool:
        """Whether a ``typ`` dependency on ``target`` holds its task now (see
        :mod:`taskmill.ledger.beads_rules`)."""
        if typ == WAITS_FOR:
            return gate_shut(waits_for_gate(dep_extra),
                             [self._d.tasks[c]["status"] for c in self._children(target)])
        t = self._d.tasks.get(target)
        return t is not None and blocks_now(typ, t["status"], t["close_reason"])

    def readiness_state(self) -> dict[str, tuple[int, bool]]:
        return {tid: (t["open_blockers"], bool(t["gated"])) for tid, t in self._d.tasks.items()}

    def _gating_graph(self) -> dict[str, list[str]]:
        graph: dict[str, list[str]] = defaultdict(list)
        for a, b, typ in sorted(self._d.deps):
            if typ in GATING_TYPES:
                graph[a].append(b)
        return graph

    def find_path(self, start: str, goal: str) -> list[str] | None:
        if start == goal:
            return [start]
        graph = self._gating_graph()
        return shortest_path(start, goal, lambda node: graph.get(node, []))

    def cycles(self) -> list[list[str]]:
        graph = self._gating_graph()
        return sorted((closed_path(graph, g, min(g)) for g in cyclic_groups(graph, list(graph))),
                      key=lambda path: path[0])

    # -- dependencies ----------------------------------------------------------------------

    def has_dep(self, issue_id: str, depends_on_id: str, dep_type: str) -> bool:
        return (issue_id, depends_on_id, dep_type) in self._d.deps

    def insert_dep(self, dep: Dependency, extra: str | None = None) -> None:
        key = (dep.issue_id, dep.depends_on_id, dep.type)
        if key in self._d.deps:
            raise ValueError(f"dependency {key} exists")
        pos = sum(1 for (a, _b, _t) in self._d.deps if a == dep.issue_id)
        self._d.deps[key] = _Dep(dep.created_at, dep.created_by, extra, pos)
        if dep.type in GATING_TYPES or dep.type in BLOCKING_TYPES:
            self.recompute_readiness()

    def delete_deps(self, issue_id: str, depends_on_id: str, types: Sequence[str]) -> None:
        for typ in types:
            self._d.deps.pop((issue_id, depends_on_id, typ), None)
        self.recompute_readiness()

    def deps_between(self, issue_id: str, depends_on_id: str,
                     dep_type: str | None = None) -> list[Dependency]:
        return [Dependency(a, b, t, d.created_at, d.created_by)
                for (a, b, t), d in sorted(self._d.deps.items(), key=lambda kv: kv[0])
                if a == issue_id and b == depends_on_id and (not dep_type or t == dep_type)]

    def deps_of(self, task_id: str) -> list[Dependency]:
        return [Dependency(task_id, b, t, d.created_at, d.created_by)
                for b, t, d in self._deps_from(task_id)]

    def dependents_of(self, task_id: str) -> list[Dependency]:
        return [Dependency(a, b, t, d.created_at, d.created_by)
                for (a, b, t), d in sorted(self._d.deps.items(),
                                           key=lambda kv: (kv[0][0], kv[0][2]))
                if b == task_id]

    def _edges(self) -> list[tuple[str, str, str, _Dep]]:
        return sorted(((a, b, t, d) for (a, b, t), d in self._d.deps.items()),
                      key=lambda x: (x[0], x[3].pos, x[1], x[2]))

    def dep_edges(self, types: Iterable[str] | None = None) -> list[tuple[str, str, str]]:
        wanted = set(types) if types is not None else None
        return [(a, b, t) for a, b, t, _d in self._edges() if wanted is None or t in wanted]

    def deps_with_extra(self, types: Sequence[str],
                        issue_id: str | None = None) -> list[tuple[str, str, str, str | None]]:
        return [(a, b, t, d.extra) for a, b, t, d in self._edges()
                if t in types and (issue_id is None or a == issue_id)]

    def dangling_deps(self) -> int:
        return sum(1 for (_a, b, _t) in self._d.deps if b not in self._d.tasks)

    def status_of(self, task_id: str) -> str | None:
        t = self._d.tasks.get(task_id)
        return None if t is None else str(t["status"])

    def task_state(self, task_id: str) -> tuple[str, int, bool] | None:
        t = self._d.tasks.get(task_id)
        return None if t is None else (t["status"], t["open_blockers"], bool(t["gated"]))

    def parents(self, child: str) -> list[str]:
        return [b for b, t, _d in self._deps_from(child)
                if t == PARENT_CHILD and b in self._d.tasks]

    def holding_parents(self, child: str) -> list[str]:
        return [p for p in self.parents(child) if not self._done(p) and (
            self._d.tasks[p]["gated"] or self._d.tasks[p]["status"] in HOLDING_STATUSES)]

    def open_blockers_of(self, task_id: str) -> list[str]:
        return [b for b, t, d in self._deps_from(task_id)
                if t in BLOCKING_TYPES and self._holds(b, t, d.extra)]

    def holding_parents_many(self, children: Sequence[str]) -> dict[str, list[str]]:
        return {c: held for c in children if (held := self.holding_parents(c))}

    def held_waits(self) -> dict[str, list[str]]:
        return {tid: waits for tid, t in self._d.tasks.items()
                if t["open_blockers"] and t["gated"] and not self._done(tid)
                and (waits := self.open_blockers_of(tid))}

    def child_rows(self, parent: str) -> list[tuple[str, str, str]]:
        return [(c, self._d.tasks[c]["title"], self._d.tasks[c]["status"])
                for c in self._children(parent)]

    def children_done(self, parent: str) -> tuple[int, int]:
        kids = self._children(parent)
        return len(kids), sum(1 for c in kids if not self._done(c))

    # -- comments and attempts -------------------------------------------------------------

    def insert_comment(self, task_id: str, author: str, text: str, now: str) -> int:
        cid = max(self._d.comments, default=0) + 1
        self._d.comments[cid] = (task_id, author, text, now, None)
        return cid

    def comments(self, task_id: str) -> list[Comment]:
        return [Comment(cid, tid, author, text, created)
                for cid, (tid, author, text, created, _x) in sorted(self._d.comments.items())
                if tid == task_id]

    def last_comments(self, task_ids: Sequence[str]) -> dict[str, Comment]:
        wanted = set(task_ids)
        out: dict[str, Comment] = {}
        for cid, (tid, author, text, created, _x) in sorted(self._d.comments.items()):
            if tid in wanted:
                out[tid] = Comment(cid, tid, author, text, created)
        return out

    def last_comment_starting(self, task_id: str, prefix: str) -> str | None:
        for _cid, (tid, _a, text, _c, _x) in sorted(self._d.comments.items(), reverse=True):
            if tid == task_id and text.startswith(prefix):
                return text
        return None

    def _attempt_list(self, task_id: str | None = None) -> list[dict[str, Any]]:
        return [a for _i, a in sorted(self._d.attempts.items())
                if task_id is None or a["task_id"] == task_id]

    def attempts(self, task_id: str) -> list[dict[str, Any]]:
        return [attempt_from_row([a[k] for k in ATTEMPT_FIELDS])
                for a in self._attempt_list(task_id)]

    def attempt_task_ids(self) -> set[str]:
        return {a["task_id"] for a in self._d.attempts.values()}

    def attempt_usage(self) -> list[tuple[Any, ...]]:
        return [(a["agent"], a["model"], a["started_at"], a["ended_at"], a["outcome"],
                 a["input_tokens"], a["output_tokens"], a["cost_usd"], a["role"])
                for a in self._attempt_list()]

    def role_spend(self, since: str) -> dict[str, tuple[int, float]]:
        out: dict[str, tuple[int, float]] = {}
        for a in self._attempt_list():
            if a["role"] is not None and a["started_at"] >= since:
                tokens, cost = out.get(a["role"], (0, 0.0))
                out[a["role"]] = (tokens + int(a["input_tokens"] or 0)
                                  + int(a["output_tokens"] or 0),
                                  cost + float(a["cost_usd"] or 0.0))
        return out

    def last_lap(self, task_id: str) -> int:
        return max((a["lap"] for a in self._attempt_list(task_id)), default=0)

    def lap_usage(self, task_id: str, lap: int) -> tuple[int, int, int, float]:
        # as SQL's NOT IN: an attempt with no outcome yet is not counted either
        counted = [a for a in self._attempt_list(task_id) if a["lap"] == lap
                   and a["outcome"] is not None
                   and a["outcome"] not in ("interrupted", "rate_limited")]
        return (len(counted), sum(a["input_tokens"] or 0 for a in counted),
                sum(a["output_tokens"] or 0 for a in counted),
                float(sum(a["cost_usd"] or 0 for a in counted)))

    def count_attempts(self, task_id: str, lap: int, outcomes: Iterable[str]) -> int:
        wanted = set(outcomes)
        return sum(1 for a in self._attempt_list(task_id)
                   if a["lap"] == lap and a["outcome"] in wanted)

    def insert_attempt(self, task_id: str, *, iteration: int, agent: str | None,
                       model: str | None, started_at: str, log_path: str, run_id: str,
                       lap: int, role: str | None = None) -> int:
        aid = max(self._d.attempts, default=0) + 1
        self._d.attempts[aid] = {
            "id": aid, "task_id": task_id, "iteration": iteration, "agent": agent,
            "model": model, "started_at": started_at, "ended_at": None, "outcome": None,
            "input_tokens": 0, "output_tokens": 0, "cost_usd": None, "commit_sha": None,
            "log_path": log_path, "detail": None, "run_id": run_id, "lap": lap, "role": role}
        return aid

    def end_attempt(self, attempt_id: int, *, ended_at: str, outcome: str, input_tokens: int,
                    output_tokens: int, cost_usd: float | None, commit: str | None,
                    model: str | None, detail: Mapping[str, Any]) -> None:
        a = self._d.attempts.get(attempt_id)
        if a is None:
            return
        a.update(ended_at=ended_at, outcome=outcome, input_tokens=input_tokens,
                 output_tokens=output_tokens, cost_usd=cost_usd, commit_sha=commit,
                 detail=json.dumps(detail, default=str))
        if model is not None:
            a["model"] = model

    def amend_attempt(self, attempt_id: int, *, outcome: str,
                      detail: Mapping[str, Any]) -> None:
        a = self._d.attempts.get(attempt_id)
        if a is None:
            return
        merged = (json.loads(a["detail"]) if a["detail"] else None) or {}
        merged.update(detail)
        a.update(outcome=outcome, detail=json.dumps(merged, default=str))

    def end_open_attempts(self, task_id: str, *, outcome: str, ended_at: str,
                          detail: Mapping[str, Any] | None = None,
                          run_id: str | None = None) -> int:
        n = 0
        for a in self._attempt_list(task_id):
            if a["outcome"] is None and (run_id is None or a["run_id"] == run_id):
                a.update(outcome=outcome, ended_at=ended_at)
                if detail is not None:
                    a["detail"] = json.dumps(detail)
                n += 1
        return n

    # -- events ----------------------------------------------------------------------------

    def append_event(self, *, ts: str, actor: str, task_id: str | None, kind: str,
                     data: dict[str, Any]) -> int:
        if self._pending is None:
            raise RuntimeError("an event is appended inside a transaction")
        last_seq, prev = self._pending
        seq = last_seq + 1
        text = event_text(data)
        digest = chain_hash(prev, canonical(seq, ts, actor, task_id, kind, text))
        self._d.events.append(EventRow(seq, ts, actor, task_id, kind, text, prev, digest))
        self._pending = (seq, digest)
        return seq

    @staticmethod
    def _event(row: EventRow) -> Event:
        return event_from_row(tuple(row))

    def events(self, task_id: str | None = None, *, limit: int | None = None) -> list[Event]:
        rows = [r for r in self._d.events if task_id is None or r.task_id == task_id]
        if limit:
            rows = rows[-int(limit):]
        return [self._event(r) for r in rows]

    def events_since(self, seq: int, limit: int) -> list[Event]:
        return [self._event(r) for r in self._d.events if r.seq > seq][:limit]

    def recent_events(self, task_id: str, kinds: Sequence[str], limit: int) -> list[Event]:
        rows = [r for r in reversed(self._d.events) if r.task_id == task_id and r.kind in kinds]
        return [self._event(r) for r in rows[:limit]]

    def events_of_kinds(self, kinds: Sequence[str], *, task_id: str | None = None,
                        since: str | None = None) -> list[Event]:
        return [self._event(r) for r in self._d.events if r.kind in kinds
                and (task_id is None or r.task_id == task_id)
                and (since is None or r.ts >= since)]

    def changes_since(self, seq: int) -> list[Change]:
        return [Change(r.seq, r.task_id, r.kind) for r in self._d.events if r.seq > seq]

    def last_seq(self) -> int:
        return self._d.events[-1].seq if self._d.events else 0

    def claimed_after_last_attempt(self, task_id: str) -> bool:
        claimed = started = None
        for r in self._d.events:
            if r.task_id == task_id and r.kind == "claimed":
                claimed = r.seq
            elif r.task_id == task_id and r.kind == "attempt_started":
                started = r.seq
        return claimed is not None and started is not None and claimed > started

    def audit_head(self) -> tuple[int, str]:
        return self._d.head

    def event_rows(self, after: int = 0, upto: int | None = None) -> Iterator[EventRow]:
        return iter([r for r in self._d.events
                     if r.seq > after and (upto is None or r.seq <= upto)])

    def event_hash(self, seq: int) -> str | None:
        for r in self._d.events:
            if r.seq == seq:
                return r.hash
        return None

    # -- bulk ------------------------------------------------------------------------------

    def task_ids(self) -> set[str]:
        return set(self._d.tasks)

    def task_count(self) -> int:
        return len(self._d.tasks)

    def task_rows(self, *, order: str = "id", include_tombstones: bool = True) -> Iterator[Row]:
        if order not in ("id", "seq"):
            raise ValueError(f"order must be 'id' or 'seq', not {order!r}")
        ids = sorted(self._d.tasks) if order == "id" else self._by_seq(self._d.tasks)
        return iter([tuple(t[k] for k in IMPORT_ROW_COLUMNS) for t in map(self._d.tasks.get, ids)
                     if t is not None and (include_tombstones or t["status"] != TOMBSTONE)])

    def label_rows(self) -> Iterator[tuple[str, str]]:
        return iter([(tid, lb) for tid in sorted(self._d.labels) for lb in self._d.labels[tid]])

    def dep_rows(self) -> Iterator[tuple[str, str, str, str | None, str | None, str | None]]:
        return iter([(a, b, t, d.created_at, d.created_by, d.extra)
                     for a, b, t, d in self._edges()])

    def comment_rows(self) -> Iterator[tuple[int, str, str, str, str, str | None]]:
        return iter([(cid, tid, author, text, created, extra)
                     for cid, (tid, author, text, created, extra)
                     in sorted(self._d.comments.items())])

    def comment_ids(self) -> set[int]:
        return set(self._d.comments)

    @contextmanager
    def bulk_import(self) -> Iterator[None]:
        yield

    @contextmanager
    def bulk_writing(self) -> Iterator[None]:
        yield

    def import_packer(self) -> Callable[[Sequence[ImportItem]], Any]:
        return pack_items

    def import_packed(self, packed: Any) -> None:
        self.import_rows(unpack_items(packed), [])

    def import_rows(self, creates: Sequence[ImportItem], updates: Sequence[ImportItem]) -> None:
        for item in updates:
            tid = item.row[0]
            self._d.labels.pop(tid, None)
            for key in [k for k in self._d.deps if k[0] == tid]:
                del self._d.deps[key]
            for cid in [c for c, v in self._d.comments.items() if v[0] == tid]:
                del self._d.comments[cid]
            self._d.tasks[tid].update(zip(IMPORT_ROW_COLUMNS[1:], item.row[1:], strict=True))
            self._d.tasks[tid]["created_key"] = order_key(self._d.tasks[tid]["created_at"])
        top = self.max_seq()
        for item in creates:
            tid = item.row[0]
            if tid in self._d.tasks:
                raise ValueError(f"task {tid} exists")
            row = {**_DEFAULTS, **dict(zip(IMPORT_ROW_COLUMNS, item.row, strict=True))}
            top += 1
            row["seq"] = top
            row["created_key"] = order_key(row["created_at"])
            self._d.tasks[tid] = row
        for item in [*updates, *creates]:
            tid = item.row[0]
            if item.labels:
                self._d.labels[tid] = list(item.labels)
            for i, (b, typ, created_at, created_by, extra) in enumerate(item.deps):
                self._d.deps[(tid, b, typ)] = _Dep(created_at, created_by, extra, i)
            for cid, author, text, created, extra in item.comments:
                if cid in self._d.comments:
                    raise ValueError(f"comment {cid} exists")
                self._d.comments[cid] = (tid, author, text, created, extra)

    def stored_items(self, ids: Sequence[str]) -> dict[str, ImportItem]:
        out: dict[str, ImportItem] = {}
        for tid in ids:
            t = self._d.tasks.get(tid)
            if t is None:
                continue
            out[tid] = ImportItem(
                tuple(t[k] for k in IMPORT_ROW_COLUMNS), list(self._d.labels.get(tid, [])),
                [(b, typ, d.created_at, d.created_by, d.extra)
                 for a, b, typ, d in self._edges() if a == tid],
                [(cid, author, text, created, extra)
                 for cid, (ct, author, text, created, extra) in sorted(self._d.comments.items())
                 if ct == tid])
        return out

    def ids_by_seq(self, first: int, last: int) -> list[str]:
        return self._by_seq(i for i, t in self._d.tasks.items() if first <= t["seq"] <= last)

    def plan_keys(self, source: str) -> dict[str, str]:
        return {k: t for (s, k), t in self._d.plan_keys.items() if s == source}

    def set_plan_key(self, source: str, key: str, task_id: str) -> None:
        self._d.plan_keys[(source, key)] = task_id

    def record_order_slot(self, slot: OrderSlot) -> bool:
        key = (slot.order, slot.slot)
        if key in self._d.order_slots:
            return False
        self._d.order_slots[key] = slot
        return True

    def order_slots(self, order: str, *, outcomes: Sequence[str] | None = None,
                    limit: int | None = None) -> list[OrderSlot]:
        found = sorted((s for (o, _k), s in self._d.order_slots.items() if o == order
                        and (outcomes is None or s.outcome in outcomes)),
                       key=lambda s: s.slot, reverse=True)
        return found if limit is None else found[:limit]


def _locked(verb: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(verb)
    def under_lock(self: MemoryStore, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return verb(self, *args, **kwargs)

    return under_lock


for _name, _verb in list(vars(MemoryStore).items()):
    if not _name.startswith("_") and _name != "transaction" and inspect.isfunction(_verb):
        setattr(MemoryStore, _name, _locked(_verb))


def _is_a_store(store: MemoryStore) -> LedgerStore:
    return store  # mypy checks MemoryStore against the protocol here
