"""Containers: a task with children is a group of work, not work itself.

A task is a *container* while it has at least one child, i.e. a ``parent-child`` dependency
points at it from a task that is not a tombstone (whatever its ``issue_type``; epics are the
usual case). The ledger keeps containers in step with their children, inside the same
transaction as the change that triggers it and with an audit event each (actor: whoever made
that change, ``cause`` naming the child):

- when a child becomes done (closed or tombstoned) and every child of its parent is then
  done, the parent is closed with the reason :data:`AUTO_CLOSE_REASON`; that may close the
  parent's own parent in turn (nested epics);
- when a child stops being done (it is reopened), or an open child is added, a closed parent
  is reopened, and so on up;
- when the dependency on the last open child is removed and the parent still has children,
  all done, the parent is closed too.

These rules follow changes; they are not an invariant: a container reopened by hand whose
children are all closed stays open until it is closed or gets a new child. An import (Beads
JSONL) keeps the records as they are in the file and triggers none of them.

The mill never hands a container to an agent (``Ledger.ready(work_only=True)``, ``claim(...,
work_only=True)``); ``taskmill ready`` still lists containers, as Beads does, marked as such.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from typing import Any

from ..lean_rules import parent_closes
from ..model import CLOSED, DONE_STATUSES, HOLDING_STATUSES, OPEN
from .store import LedgerStore

AUTO_CLOSE_REASON = "all children closed"

SetStatus = Callable[[str, dict[str, Any], dict[str, Any], str | None], object]
"""Applies (task id, changes, cause, actor): the ledger's update with an audit event."""


# -- reading -------------------------------------------------------------------------------


def held_back(store: LedgerStore, task_id: str) -> list[str]:
    """The tasks under ``task_id`` (children, their children, ...) that are not done, reached
    through tasks that are not done: what a ``deferred``/``blocked`` ``task_id`` holds back."""
    found: list[str] = []
    seen = {task_id}
    queue: deque[str] = deque([task_id])
    while queue:
        node = queue.popleft()
        for child, _title, status in store.child_rows(node):
            if status not in DONE_STATUSES and child not in seen:
                seen.add(child)
                found.append(child)
                queue.append(child)
    return found


def _defer_until(store: LedgerStore, task_id: str) -> str | None:
    """A Beads ``defer_until`` kept from an import, if the task has one."""
    extra = store.task_extra(task_id)
    if not extra:
        return None
    try:
        value = json.loads(extra).get("fields", {}).get("defer_until")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


class AncestorReads:
    """The reads :func:`ancestor_reasons` makes, each asked of the store once: ``blocked``
    looks at many tasks under the same few ancestors. ``parents``, ``waits`` and ``states``
    may be filled beforehand (read in bulk); the walks up from a set of parents are kept
    too (tasks under the same parents share them)."""

    def __init__(self, store: LedgerStore) -> None:
        self.store = store
        self.parents: dict[str, list[str]] = {}
        self.parents_complete = False
        """``parents`` holds every held task that has holding parents: a gated task not in it
        has none (only gated ancestors' parents are asked for)."""
        self.waits: dict[str, list[str]] = {}
        self.states: dict[str, tuple[str, int, bool] | None] = {}
        """:meth:`~LedgerStore.task_state` of the tasks asked so far (or filled in)."""
        self._until: dict[str, str | None] = {}
        self._walks: dict[tuple[str, ...], tuple[list[str], list[str], frozenset[str]]] = {}

    def holding_parents(self, child: str) -> list[str]:
        got = self.parents.get(child)
        if got is None:
            if self.parents_complete:
                return []
            got = self.parents[child] = self.store.holding_parents(child)
        return got

    def task_state(self, task_id: str) -> tuple[str, int, bool] | None:
        if task_id not in self.states:
            self.states[task_id] = self.store.task_state(task_id)
        return self.states[task_id]

    def open_blockers_of(self, task_id: str) -> list[str]:
        got = self.waits.get(task_id)
        if got is None:
            got = self.waits[task_id] = self.store.open_blockers_of(task_id)
        return got

    def defer_until(self, task_id: str) -> str | None:
        if task_id not in self._until:
            self._until[task_id] = _defer_until(self.store, task_id)
        return self._until[task_id]

    def walk(self, parents: tuple[str, ...], task_id: str
             ) -> tuple[list[str], list[str]] | None:
        """What a walk up from ``parents`` found for another task, when it holds for
        ``task_id`` too (the walk never came to ``task_id``)."""
        got = self._walks.get(parents)
        if got is None or task_id in got[2]:
            return None
        return list(got[0]), list(got[1])

    def keep_walk(self, parents: tuple[str, ...], roots: list[str], reasons: list[str],
                  met: frozenset[str]) -> None:
        """Keep a walk up from ``parents`` that came to the tasks ``met``."""
        self._walks[parents] = (list(roots), list(reasons), met)


def ancestor_reasons(store: LedgerStore, task_id: str, reads: AncestorReads | None = None
                     ) -> tuple[list[str], list[str]]:
    """What holds ``task_id`` back through its parents: the ancestors at the root of it (each
    ``blocked``/``deferred``, or waiting on a ``blocks`` dependency) and a sentence for each.
    ``reads``: the store's answers so far (kept for the next call)."""
    reads = reads or AncestorReads(store)
    first = tuple(reads.holding_parents(task_id))
    if not first:
        return [], []
    kept = reads.walk(first, task_id)
    if kept is not None:
        return kept
    roots: list[str] = []
    reasons: list[str] = []
    seen = {task_id}
    met: set[str] = set()  # every task the walk came to (task_id too, if it came back)
    # (ancestor, the child of it on the way down to task_id, or None for a direct parent)
    queue: deque[tuple[str, str | None]] = deque()

    def parents(child: str, via: str | None) -> None:
        for pid in reads.holding_parents(child):
            met.add(pid)
            if pid not in seen:
                seen.add(pid)
                queue.append((pid, via))

    parents(task_id, None)
    while queue:
        node, via = queue.popleft()
        state = reads.task_state(node)
        assert state is not None
        status, blockers, gated = state
        who = f"parent {node}" if via is None else f"ancestor {node} (through {via})"
        if status in HOLDING_STATUSES:
            until = reads.defer_until(node) if status == "deferred" else None
            roots.append(node)
            reasons.append(f"{who} is {status}" + (f" until {until}" if until else ""))
        if blockers:
            waits = reads.open_blockers_of(node)
            if node not in roots:
                roots.append(node)
            reasons.append(f"{who} waits on {', '.join(waits)}")
        if gated:
            parents(node, via or node)
    if task_id not in met:  # (else the walk for another task would go on through it)
        reads.keep_walk(first, roots, reasons, frozenset(met))
    return roots, reasons


# -- keeping containers in step --------------------------------------------------------------


def _all_children_done(store: LedgerStore, parent: str) -> bool:
    total, open_ = store.children_done(parent)
    return total > 0 and open_ == 0


def _close(apply: SetStatus, parent: str, cause: dict[str, Any], actor: str | None) -> None:
    apply(parent, {"status": CLOSED, "close_reason": AUTO_CLOSE_REASON}, cause, actor)


def _reopen(apply: SetStatus, parent: str, cause: dict[str, Any], actor: str | None) -> None:
    apply(parent, {"status": OPEN, "close_reason": None}, cause, actor)


def status_changed(store: LedgerStore, apply: SetStatus, task_id: str, old: str, new: str,
                   actor: str | None) -> None:
    """``task_id`` went from ``old`` to ``new`` status: close or reopen its parents."""
    was_done, is_done = old in DONE_STATUSES, new in DONE_STATUSES
    if was_done == is_done:
        return
    for pid in store.parents(task_id):
        # read now: closing or reopening an earlier parent may have changed this one
        pstatus = store.status_of(pid)
        if is_done and parent_closes(pstatus, *store.children_done(pid)):
            _close(apply, pid, {"child": task_id, "rule": "all children closed"}, actor)
        elif not is_done and pstatus == CLOSED:
            _reopen(apply, pid, {"child": task_id, "rule": "a child was reopened"}, actor)


def child_added(store: LedgerStore, apply: SetStatus, child: str, parent: str,
                actor: str | None) -> None:
    """``child`` was made a child of ``parent``: an open child reopens a closed parent."""
    cstatus, pstatus = store.status_of(child), store.status_of(parent)
    if cstatus is not None and pstatus is not None and cstatus not in DONE_STATUSES \
            and pstatus == CLOSED:
        _reopen(apply, parent, {"child": child, "rule": "an open child was added"}, actor)


def child_removed(store: LedgerStore, apply: SetStatus, child: str, parent: str,
                  actor: str | None) -> None:
    """``child`` is no longer a child of ``parent``: if it was the last open one, and
    ``parent`` still has children, all done, ``parent`` closes."""
    cstatus, pstatus = store.status_of(child), store.status_of(parent)
    if cstatus is not None and pstatus is not None and cstatus not in DONE_STATUSES \
            and pstatus not in DONE_STATUSES and _all_children_done(store, parent):
        _close(apply, parent, {"child": child, "rule": "the last open child was removed"},
               actor)
