"""The ledger: tasks, dependencies, labels, comments and the audit trail, over a store.

This is the library the CLI, the mill, the web API and the MCP server all call. It holds the
rules (validation, id resolution, containers following their children, what only the mill may
write); the data lives in a :class:`~taskmill.ledger.store.LedgerStore` (SQLite, or memory).
Every change runs in one transaction together with its audit event, so a change is either
wholly applied and recorded, or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import validation as check
from ..audit import VerifyReport
from ..clock import Clock, SystemClock, iso
from ..errors import ClaimConflict, Conflict, CycleError, InvalidInput, NotFound
from ..lean_rules import changed_values, created_fields, pick_id
from ..model import (
    BLOCKED,
    BLOCKS,
    CLOSED,
    GATING_TYPES,
    HOOKED,
    IN_PROGRESS,
    OPEN,
    PARENT_CHILD,
    STATUSES,
    TOMBSTONE,
    UPDATABLE_FIELDS,
    BlockedTask,
    Comment,
    Dependency,
    Event,
    Task,
)
from . import containers
from .store import CellRow, Change, Laying, LedgerStore
from .validate import (
    refuse_mill_author,
    refuse_mill_close_reason,
    validate_checks,
    validate_dep_type,
    validate_field,
    validate_priority,
    validate_status,
    validate_table,
)
from .work import WorkVerbs

if TYPE_CHECKING:
    from ..audit_anchor import AnchorStore
    from .store import HeldLaying, Holding


class Ledger(WorkVerbs):
    """A repository's ledger. Open with :meth:`open` (a file) or :meth:`memory` (tests), or
    over any :class:`LedgerStore`."""

    beads_compat = False
    """Whether :meth:`ready` and :meth:`blocked` follow Beads where taskmill differs (the
    ``[ledger] beads_compat`` setting; each call may say otherwise)."""

    def __init__(self, store: LedgerStore, *, prefix: str, clock: Clock,
                 actor: str, path: Path | None = None) -> None:
        self.store = store
        self.prefix = prefix
        self.clock = clock
        self.actor = actor
        self.path = path

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, db_path: Path, *, prefix: str, clock: Clock | None = None,
             actor: str = "taskmill", url: str | None = None,
             notice: Callable[[str], None] | None = None) -> Ledger:
        """The ledger in the SQLite file ``db_path``, or at the PostgreSQL ``url`` when one
        is given (see :func:`taskmill.ledger.database_url`); ``notice``: told before a long
        upgrade of the SQLite file's schema."""
        if url:  # ``path`` still says which repository (plan sources are named from it)
            from . import open_store

            return cls(open_store(db_path, url), prefix=prefix, clock=clock or SystemClock(),
                       actor=actor, path=db_path)
        from .sqlite import SqliteStore

        return cls(SqliteStore.open(db_path, notice), prefix=prefix,
                   clock=clock or SystemClock(), actor=actor, path=db_path)

    @classmethod
    def memory(cls, *, prefix: str = "tm", clock: Clock | None = None,
               actor: str = "test") -> Ledger:
        """A ledger in a private SQLite database in memory (tests). The dict store:
        ``Ledger(MemoryStore(), prefix=..., clock=..., actor=...)``."""
        from .sqlite import SqliteStore

        return cls(SqliteStore.memory(), prefix=prefix, clock=clock or SystemClock(), actor=actor)

    def close_db(self) -> None:
        self.store.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_db()

    # -- plumbing ------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[LedgerStore]:
        """A unit of work whose audit events are chained and committed with it.

        Inside another one it is a savepoint of that one: an exception leaving it undoes its
        own changes only; nothing is committed before the outermost one ends (see
        :mod:`taskmill.ledger.store`). So several changes, each in its own ``transaction``,
        can be applied all or nothing.
        """
        with self.store.transaction():
            yield self.store

    def record(self, kind: str, task_id: str | None, data: dict[str, Any],
               *, actor: str | None = None, ts: str | None = None) -> None:
        """Append an audit event (inside :meth:`transaction`)."""
        self.store.append_event(ts=ts or self.now(), actor=actor or self.actor,
                                task_id=task_id, kind=kind, data=data)

    def now(self) -> str:
        return iso(self.clock.now())

    def resolve(self, task_id: str) -> str:
        """The full id for ``task_id`` or a unique prefix of one.

        Failing that, the id in another case (``TM-3S6P``) or without the ledger's prefix
        (``3s6p``; a prefix of one from three characters on) is accepted when it matches one
        task only. A task id not found names the nearest ids.
        """
        task_id = check.task_ref(task_id)
        if self.store.exists(task_id):
            return task_id
        matches = self.store.ids_from(task_id, 6)
        if not matches:
            matches = self._loose_matches(task_id)
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidInput(f"{task_id!r} is ambiguous: it could be {', '.join(matches[:5])}",
                               hint="give more of the id")
        near = self._near_ids(task_id)
        raise NotFound(f"no task {task_id!r}",
                       hint=f"did you mean {' or '.join(near)}?" if near
                       else "`taskmill list` shows the task ids")

    def _candidates(self, task_id: str) -> list[str]:
        """The id as given in lower case, and with the ledger's prefix when it has none."""
        low = task_id.lower()
        out = [low]
        if not low.startswith(self.prefix.lower() + "-"):
            out.append(f"{self.prefix}-{low}".lower())
        return out

    def _loose_matches(self, task_id: str) -> list[str]:
        low, *bare = self._candidates(task_id)
        # generated ids are lower case: the index finds them
        for cand in (low, *bare):
            if cand != task_id and self.exists(cand):
                return [cand]
        exact = self.store.ids_lower_in([low, bare[0] if bare else low], 6)
        if exact:
            return exact
        found: dict[str, None] = {}
        starts = [low] + [b for b in bare if len(task_id) >= 3]
        for start in starts:
            found.update(dict.fromkeys(self.store.ids_lower_prefix(start, 6)))
        return list(found)

    def _near_ids(self, task_id: str, n: int = 3) -> list[str]:
        """Up to ``n`` ids that look like ``task_id`` (a typo, a character left out)."""
        import difflib  # only when an id is not found: not at every start-up

        cands = self._candidates(task_id)
        size = max(len(c) for c in cands)
        ids = self.store.ids_sized(min(len(c) for c in cands) - 2, size + 2)
        lowered = {i.lower(): i for i in ids}
        near: dict[str, None] = {}
        for cand in cands:
            for hit in difflib.get_close_matches(cand, list(lowered), n=n, cutoff=0.7):
                near[lowered[hit]] = None
        return list(near)[:n]

    # -- reading -------------------------------------------------------------------------

    def get(self, task_id: str) -> Task:
        tid = self.resolve(task_id)
        task = self.store.task(tid)
        assert task is not None
        return task

    def find(self, task_id: str) -> Task | None:
        """The task with exactly the id ``task_id`` (not resolved), or None."""
        return self.store.task(task_id)

    def show(self, task_id: str) -> Task:
        """A task with its dependencies both ways, comments and attempts, all of one state
        of the ledger (read in one :meth:`LedgerStore.snapshot`: a write another process
        commits meanwhile is not half seen)."""
        with self.store.snapshot():
            task = self.get(task_id)
            task.dependencies = self.store.deps_of(task.id)
            task.dependents = self.store.dependents_of(task.id)
            task.comments = self.store.comments(task.id)
            task.attempts = self.attempts(task.id)
            task.child_tasks = self.store.child_tasks(task.id)
        return task

    def list_tasks(self, *, status: str | Sequence[str] | None = None, label: str | None = None,
                   issue_type: str | None = None, assignee: str | None = None,
                   parent: str | None = None, include_hidden: bool = False,
                   limit: int | None = None) -> list[Task]:
        return [t for page in self.task_pages(
            status=status, label=label, issue_type=issue_type, assignee=assignee,
            parent=parent, include_hidden=include_hidden, limit=limit, size=None)
            for t in page]

    def task_pages(self, *, status: str | Sequence[str] | None = None,
                   label: str | None = None, issue_type: str | None = None,
                   assignee: str | None = None, parent: str | None = None,
                   include_hidden: bool = False, limit: int | None = None,
                   size: int | None = 1000) -> Iterator[list[Task]]:
        """:meth:`list_tasks` in pages of ``size`` tasks, read from the store as the pages
        are taken (the filters are checked before the first)."""
        return self.store.task_pages(**self._listing_filter(
            status, label, issue_type, assignee, parent, include_hidden, limit), size=size)

    def _listing_filter(self, status: str | Sequence[str] | None, label: str | None,
                        issue_type: str | None, assignee: str | None, parent: str | None,
                        include_hidden: bool, limit: int | None) -> dict[str, Any]:
        """A listing's filters checked, as the store's listing verbs take them."""
        checked: dict[str, Any] = {
            "limit": check.limit(limit), "label": check.filter_text("label", label),
            "issue_type": check.filter_text("issue_type", issue_type),
            "assignee": check.filter_text("assignee", assignee),
            "parent": check.filter_text("parent", parent), "include_hidden": include_hidden}
        checked["statuses"] = self._known_statuses(
            [status] if isinstance(status, str) else status) if status else None
        if checked["parent"]:
            checked["parent"] = self.resolve(checked["parent"])
        return checked

    def generation(self) -> int | None:
        """The ledger's generation (:meth:`LedgerStore.generation`): read it before what it
        stands for, and an answer is at least as new as it."""
        return self.store.generation()

    def list_json(self, *, status: str | Sequence[str] | None = None,
                  label: str | None = None, issue_type: str | None = None,
                  assignee: str | None = None, parent: str | None = None,
                  include_hidden: bool = False, limit: int | None = None,
                  interrupted: Collection[str] = (),
                  held: Mapping[str, str] | None = None) -> Iterator[str]:
        """:meth:`list_tasks`, each task as the text of its ``to_json()`` indented as an item
        of a top-level ``json.dumps(indent=2)`` array, made by the store (the filters are
        checked before the first). ``interrupted``: the ids to mark so; ``held``: role ->
        why its open tasks are held (see :class:`~taskmill.model.Task`)."""
        return self.store.task_json_rows(**self._listing_filter(
            status, label, issue_type, assignee, parent, include_hidden, limit),
            interrupted=interrupted, held=held)

    def list_cells(self, *, status: str | Sequence[str] | None = None,
                   label: str | None = None, issue_type: str | None = None,
                   assignee: str | None = None, parent: str | None = None,
                   include_hidden: bool = False, limit: int | None = None
                   ) -> Iterator[CellRow]:
        """:meth:`list_tasks` as the task tables show them
        (:data:`~taskmill.ledger.store.CellRow`), read by the store as they are taken (the
        filters are checked before the first)."""
        return self.store.task_cell_rows(**self._listing_filter(
            status, label, issue_type, assignee, parent, include_hidden, limit))

    def list_texts(self, laying: Laying, *, status: str | Sequence[str] | None = None,
                   label: str | None = None, issue_type: str | None = None,
                   assignee: str | None = None, parent: str | None = None,
                   include_hidden: bool = False, limit: int | None = None
                   ) -> Iterator[tuple[str, int]]:
        """:meth:`list_cells` laid out as a table by ``laying`` (a stretch of rows at a
        time, each with its number of rows; see :class:`~taskmill.ledger.store.Laying`),
        a long listing's later stretches by another process meanwhile where the store
        can."""
        return self.store.task_cell_texts(laying, **self._listing_filter(
            status, label, issue_type, assignee, parent, include_hidden, limit))

    def _known_statuses(self, statuses: Iterable[Any]) -> list[str]:
        """``statuses`` as a list, each one taskmill sets or one the ledger holds (imported)."""
        wanted = list(statuses)
        known = [*STATUSES, TOMBSTONE, HOOKED]
        unknown = [s for s in wanted if s not in known]
        if unknown:
            held = set(self.store.statuses_in_use())
            known += sorted(held - set(known))
            unknown = [s for s in unknown if s not in known]
        if unknown:
            shown = ", ".join(repr(s) for s in unknown)
            raise InvalidInput(f"no status {shown}", hint=f"the statuses are {', '.join(known)}")
        return wanted

    def ready(self, *, limit: int | None = None, work_only: bool = False,
              beads_compat: bool | None = None) -> list[Task]:
        """Open tasks with nothing gating them, highest priority first, then oldest first
        (by ``created_at``; tasks created at the same instant in the order they entered the
        ledger). As Beads: no record that is not work (the types of Beads'
        ``readyWorkExcludeTypes``, ``pinned``/``ephemeral`` records), and none deferred
        (``defer_until``) past the ledger clock's now, nor under one.

        Containers (tasks with children) are listed too, marked ``container`` (as Beads lists
        epics); ``work_only`` leaves them out: they are not work to hand to an agent.
        ``beads_compat`` (default: :attr:`beads_compat`): a ``blocked``/``deferred`` parent
        does not hold back its children, and ``defer_until`` hides a task's children only
        (not the whole subtree), as in Beads."""
        compat = self.beads_compat if beads_compat is None else beads_compat
        return self.store.ready(check.limit(limit), work_only, now=self.now(),
                                beads_compat=compat)

    def blocked(self, *, beads_compat: bool | None = None) -> list[BlockedTask]:
        """Tasks that are not done and are gated or marked blocked, with what holds each. A
        task in a cycle of dependencies says so in its ``reasons``.

        ``beads_compat`` (default: :attr:`beads_compat`): as Beads' ``bd blocked``, only
        tasks a blocking dependency holds (or a parent so held): a ``blocked`` task that
        waits on nothing, and the children of a ``blocked``/``deferred`` parent, are left
        out."""
        return list(self.iter_blocked(beads_compat=beads_compat))

    def iter_blocked(self, *, beads_compat: bool | None = None,
                     page_size: int = 1000) -> Iterator[BlockedTask]:
        """:meth:`blocked`, each task yielded as it is looked at (read ``page_size`` at a
        time; what holds the held tasks, dependencies and parents, is read once, as ids),
        all of one state of the ledger (:meth:`LedgerStore.snapshot`, until the iterator
        ends or is closed, or a write through this ledger meanwhile)."""
        with self.store.snapshot():  # (the links and the pages: else a write in between
            # could list a task as it is after the write, held by what held it before)
            yield from self._iter_blocked(beads_compat, page_size)

    def _iter_blocked(self, beads_compat: bool | None, page_size: int
                      ) -> Iterator[BlockedTask]:
        compat = self.beads_compat if beads_compat is None else beads_compat
        # what holds each task (a task not in them waits on nothing): ids only, read at once
        from .listing import ancestor_reads

        links = self.store.held_links()
        waits, holding = links.waits, links.parents
        in_cycle = _cycles_among(waits) if links.forward else {}
        reads = ancestor_reads(self.store, links)
        marks: dict[str, tuple[str | None, str | None, str | None]] | None = None
        for page in self.store.held_pages(compat, size=page_size):
            for task in page:
                blockers = sorted(waits.get(task.id, ()))
                parents = sorted(holding.get(task.id, ()))
                ancestors, reasons = containers.ancestor_reasons(self.store, task.id, reads)
                item = BlockedTask(task, blockers, parents, ancestors, reasons)
                if task.id in in_cycle:
                    item.reasons = [f"in a dependency cycle: {' -> '.join(in_cycle[task.id])}",
                                    *item.reasons]
                if task.status == BLOCKED:
                    if marks is None:  # why each blocked task is: read once, for all
                        from .listing import BLOCK_MARKS, block_reason

                        marks = self.store.block_marks(*BLOCK_MARKS)
                    item.reason = block_reason(task.id, marks)
                    item.unblock = f"taskmill reopen {task.id}"
                yield item

    def blocked_cells(self, *, beads_compat: bool | None = None
                      ) -> Iterator[tuple[CellRow, list[str], Holding | None]]:
        """:meth:`blocked` as the task tables show the tasks
        (:data:`~taskmill.ledger.store.CellRow`), each with what it waits on and what else
        holds it (None: nothing), read by the store a row at a time."""
        from .listing import blocked_cells

        compat = self.beads_compat if beads_compat is None else beads_compat
        return blocked_cells(self.store, beads_compat=compat, cycles=_cycles_among)

    def blocked_texts(self, laying: HeldLaying, *, beads_compat: bool | None = None
                      ) -> Iterator[tuple[str, int]]:
        """:meth:`blocked_cells` laid out by ``laying`` (a task table's text a stretch at a
        time, with its number of rows; the commands that unblock the tasks kept in
        ``laying.unblock``), a long table's later stretches laid out by another process
        where the store can (:meth:`LedgerStore.held_cell_texts`)."""
        compat = self.beads_compat if beads_compat is None else beads_compat
        return self.store.held_cell_texts(laying, compat, _cycles_among)

    def blocked_json(self, *, beads_compat: bool | None = None) -> Iterator[str]:
        """:meth:`blocked`, each task as the text of its ``to_json()`` indented as an item of a
        top-level ``json.dumps(indent=2)`` array, made by the store a row at a time."""
        compat = self.beads_compat if beads_compat is None else beads_compat
        return self.store.held_json_texts(compat, _cycles_among)

    def held_back(self, task_id: str) -> list[str]:
        """The unfinished tasks under ``task_id`` (its children, theirs, ...): those a
        ``deferred`` or ``blocked`` ``task_id`` holds back."""
        return containers.held_back(self.store, self.resolve(task_id))

    def exists(self, task_id: str) -> bool:
        return self.store.exists(task_id)

    # -- creating ------------------------------------------------------------------------

    def _new_id(self, title: str, created_at: str) -> str:
        # (not an id a dependency names either: the new task would start to hold what names
        # it, which an id given on purpose recounts, a generated one need not)
        tid = pick_id(self.prefix, title, created_at, self.store.max_seq(),
                      lambda t: self.exists(t) or bool(self.store.dependents_of(t)))
        if tid is None:
            raise Conflict("could not find a free task id; try again")
        return tid

    def create(self, title: str, *, description: str = "", design: str = "",
               acceptance_criteria: str = "", notes: str = "", status: str = OPEN,
               priority: int = 2, issue_type: str = "task", assignee: str | None = None,
               labels: Iterable[str] = (), external_ref: str | None = None,
               metadata: dict[str, Any] | None = None, checks: list[str] | None = None,
               agent: str | None = None, hints: dict[str, Any] | None = None,
               role: str | None = None, after: Iterable[str] = (), parent: str | None = None,
               discovered_from: str | None = None, task_id: str | None = None,
               actor: str | None = None) -> Task:
        """Create a task (and its dependencies) in one transaction."""
        after = check.task_refs("after", after)
        with self.transaction():
            tid = self._create(
                title, description=description, design=design,
                acceptance_criteria=acceptance_criteria, notes=notes, status=status,
                priority=priority, issue_type=issue_type, assignee=assignee, labels=labels,
                external_ref=external_ref, metadata=metadata, checks=checks, agent=agent,
                hints=hints, task_id=task_id, actor=actor, role=role)
            for blocker in after:
                self._add_dep(tid, self.resolve(blocker), BLOCKS, actor=actor)
            if parent:
                self._add_dep(tid, self.resolve(parent), PARENT_CHILD, actor=actor)
            if discovered_from:
                self._add_dep(tid, self.resolve(discovered_from), "discovered-from", actor=actor)
        return self.get(tid)

    def _create(self, title: str, *, description: str, design: str, acceptance_criteria: str,
                notes: str, status: str, priority: int, issue_type: str, assignee: str | None,
                labels: Iterable[str], external_ref: str | None, metadata: dict[str, Any] | None,
                checks: list[str] | None, agent: str | None, hints: dict[str, Any] | None,
                task_id: str | None, actor: str | None, role: str | None = None) -> str:
        if title is None or (isinstance(title, str) and not title.strip()):
            raise InvalidInput("a task needs a title")
        title = validate_field("title", title)
        for name, given in (("description", description), ("design", design),
                            ("acceptance_criteria", acceptance_criteria), ("notes", notes),
                            ("assignee", assignee), ("external_ref", external_ref),
                            ("agent", agent), ("role", role)):
            validate_field(name, given)
        validate_priority(priority)
        validate_status(status)
        checks = validate_checks(checks)
        metadata = validate_table("metadata", metadata)
        hints = validate_table("hints", hints)
        if not issue_type:
            raise InvalidInput("issue_type must not be empty")
        validate_field("issue_type", issue_type)
        labels = check.labels(labels)
        if task_id is not None:
            check.one_line("the task id", task_id)
        now = self.now()
        if task_id is not None:
            if self.exists(task_id):
                raise Conflict(f"task {task_id} already exists")
            tid = task_id
        else:
            tid = self._new_id(title, now)
        closed_at = now if status == CLOSED else None
        label_list = list(dict.fromkeys(labels))
        self.store.insert_task({
            "id": tid, "title": title, "description": description, "design": design,
            "acceptance_criteria": acceptance_criteria, "notes": notes, "status": status,
            "priority": priority, "issue_type": issue_type, "assignee": assignee,
            "created_at": now, "updated_at": now, "closed_at": closed_at,
            "external_ref": external_ref, "metadata": metadata, "checks": checks,
            "agent": agent, "hints": hints, "role": role}, label_list)
        if task_id is not None:
            # a dependency may name this id already (imported before the task was: it held
            # nothing while no task had the id); from now on it holds as Beads' would
            self.store.status_changed(tid, TOMBSTONE, status)
        fields = created_fields({"title": title, "status": status, "priority": priority,
                                 "issue_type": issue_type, "description": description,
                                 "design": design, "acceptance_criteria": acceptance_criteria,
                                 "notes": notes, "assignee": assignee,
                                 "external_ref": external_ref, "metadata": metadata,
                                 "checks": checks, "agent": agent, "hints": hints,
                                 "role": role}, label_list)
        self.record("created", tid, {"new": fields}, actor=actor, ts=now)
        return tid

    # -- changing ------------------------------------------------------------------------

    def update(self, task_id: str, changes: Mapping[str, Any], *, actor: str | None = None,
               expect_status: str | None = None) -> Task:
        """Change fields of a task; records old and new value of each field that changed."""
        self._check_changes(changes)
        with self.transaction():
            tid = self.resolve(task_id)
            self._update(tid, changes, actor=actor, expect_status=expect_status)
        return self.get(tid)

    def change(self, task_id: str, changes: Mapping[str, Any], *, actor: str | None = None,
               expect_status: str | None = None) -> dict[str, list[Any]]:
        """:meth:`update`, returning what changed (field: [old, new]; empty: nothing)."""
        self._check_changes(changes)
        with self.transaction():
            tid = self.resolve(task_id)
            return self._update(tid, changes, actor=actor, expect_status=expect_status)

    @staticmethod
    def _check_changes(changes: Mapping[str, Any]) -> None:
        unknown = set(changes) - set(UPDATABLE_FIELDS)
        if unknown:
            raise InvalidInput(f"cannot update {', '.join(sorted(unknown))}",
                               hint=f"updatable fields: {', '.join(UPDATABLE_FIELDS)}")
        if "close_reason" in changes:
            refuse_mill_close_reason(changes["close_reason"])

    def append_notes(self, task_id: str, text: str, *, actor: str | None = None) -> Task:
        """Append a line to a task's notes. Reading and writing them is one transaction, so
        appends made at the same time by several processes are all kept."""
        check.text("the text to append", text)
        with self.transaction():
            tid = self.resolve(task_id)
            current = self.get(tid).notes
            self._update(tid, {"notes": (current + "\n" if current else "") + text}, actor=actor)
        return self.get(tid)

    def _update(self, tid: str, changes: Mapping[str, Any], *, actor: str | None,
                expect_status: str | None = None,
                cause: dict[str, Any] | None = None) -> dict[str, list[Any]]:
        current = self.get(tid)
        if expect_status is not None and current.status != expect_status:
            raise Conflict(f"{tid} is {current.status}, expected {expect_status}")
        checked: dict[str, Any] = {}
        for key, value in changes.items():
            if key == "title" and (not isinstance(value, str) or not value.strip()):
                raise InvalidInput("the title must not be empty")
            checked[key] = validate_field(key, value)
        diff, values = changed_values(lambda key: getattr(current, key), checked, self.now)
        if not diff:
            return diff
        now = values["updated_at"]
        self.store.update_task(tid, values)
        if "status" in diff:
            self.store.status_changed(tid, diff["status"][0], diff["status"][1])
        elif "close_reason" in diff and current.status == CLOSED:
            self.store.status_changed(tid, CLOSED, CLOSED)  # a conditional-blocks dependent
        self.record("updated", tid, {"changes": diff, **({"cause": cause} if cause else {})},
                    actor=actor, ts=now)
        if "status" in diff:  # a container follows its children (and so on up)
            containers.status_changed(self.store, self._follow, tid, diff["status"][0],
                                      diff["status"][1], actor)
        return diff

    def _follow(self, tid: str, changes: dict[str, Any], cause: dict[str, Any],
                actor: str | None) -> None:
        """A container's status change that follows its children's."""
        self._update(tid, changes, actor=actor, cause=cause)

    def close_many(self, task_ids: Iterable[str], reason: str | None = None, *,
                   actor: str | None = None) -> list[Task]:
        """Close several tasks, all or none: every id is resolved and checked first, and a
        task that cannot be closed (already closed, say) leaves every one of them as it was.
        A container closed along the way (its last child was in the batch) is not an error."""
        refs = check.task_refs("task ids", task_ids)
        refuse_mill_close_reason(reason)
        with self.transaction():
            tids = list(dict.fromkeys(self.resolve(t) for t in refs))
            for tid in tids:
                if self.get(tid).status == CLOSED:
                    raise Conflict(f"{tid} is already closed: nothing was closed",
                                   hint=f"`taskmill reopen {tid}` first, or leave it out")
            return [self.get(tid) if self.get(tid).status == CLOSED
                    else self.close(tid, reason, actor=actor) for tid in tids]

    def reopen_many(self, task_ids: Iterable[str], *, actor: str | None = None) -> list[Task]:
        """Reopen several tasks, all or none (see :meth:`close_many`)."""
        refs = check.task_refs("task ids", task_ids)
        with self.transaction():
            tids = list(dict.fromkeys(self.resolve(t) for t in refs))
            for tid in tids:
                if self.get(tid).status == OPEN:
                    raise Conflict(f"{tid} is already open: nothing was reopened")
            return [self.get(tid) if self.get(tid).status == OPEN
                    else self.reopen(tid, actor=actor) for tid in tids]

    def claim(self, task_id: str, assignee: str, *, actor: str | None = None,
              work_only: bool = False) -> Task:
        """Atomically take a ready task: exactly one of several concurrent claimers wins.

        ``work_only`` refuses a container (a task with children): it is not work itself."""
        check.one_line("assignee", assignee)
        with self.transaction():
            tid = self.resolve(task_id)
            now = self.now()
            if not self.store.claim_row(tid, assignee, now, work_only):
                task = self.get(tid)
                if work_only and task.status == OPEN and task.ready and task.container:
                    raise ClaimConflict(
                        f"{tid} has children: it is a container, not work; it closes when"
                        " its last child closes", hint=f"`taskmill list --parent {tid}`")
                if task.status == IN_PROGRESS:
                    who = f" by {task.assignee}" if task.assignee else ""
                    raise ClaimConflict(f"{tid} is already claimed{who}")
                if task.status == OPEN:
                    raise ClaimConflict(f"{tid} is not ready: it waits on open dependencies",
                                        hint=f"`taskmill show {tid}` lists them")
                raise ClaimConflict(f"{tid} is {task.status}, not open")
            self.store.status_changed(tid, OPEN, IN_PROGRESS)
            self.record("claimed", tid, {"changes": {"status": [OPEN, IN_PROGRESS],
                                                     "assignee": [None, assignee]}},
                        actor=actor or assignee, ts=now)
        return self.get(tid)

    def claim_next(self, assignee: str, *, actor: str | None = None,
                   exclude: Iterable[str] = ()) -> Task | None:
        """Claim the first ready task (in ``ready`` order) that another claimer did not win.

        The candidates are read in the claim's write transaction (``for_claim``): claimers
        starting together are each offered a task no other holds, instead of all queueing
        for the same first one and all but one losing it.

        Returns None only when no ready task is left: a task lost to another claimer is no
        longer ready, so each pass over a fresh batch either claims one or shrinks the set.
        """
        skip = set(exclude)
        compat = self.beads_compat
        while True:
            with self.transaction():
                candidates = [t for t in self.store.ready(len(skip) + 20, True, now=self.now(),
                                                          beads_compat=compat, for_claim=True)
                              if t.id not in skip]
                if not candidates:
                    return None
                for task in candidates:
                    try:
                        return self.claim(task.id, assignee, actor=actor, work_only=True)
                    except ClaimConflict:
                        continue

    def close(self, task_id: str, reason: str | None = None, *, actor: str | None = None,
              system: bool = False) -> Task:
        """Close a task. A reason in the mill's own forms (``landed ...``, ``already
        satisfied ...``) is refused unless ``system`` (the mill's code path)."""
        if not system:
            refuse_mill_close_reason(reason)
        with self.transaction():
            tid = self.resolve(task_id)
            if self.get(tid).status == CLOSED:
                raise Conflict(f"{tid} is already closed", hint=f"`taskmill reopen {tid}` first")
            changes: dict[str, Any] = {"status": CLOSED}
            if reason is not None:
                changes["close_reason"] = reason
            self._update(tid, changes, actor=actor)
        return self.get(tid)

    def reopen(self, task_id: str, *, actor: str | None = None) -> Task:
        with self.transaction():
            tid = self.resolve(task_id)
            if self.get(tid).status == OPEN:
                raise Conflict(f"{tid} is already open")
            self._update(tid, {"status": OPEN, "close_reason": None}, actor=actor)
        return self.get(tid)

    # -- dependencies --------------------------------------------------------------------

    def add_dep(self, issue_id: str, depends_on_id: str, dep_type: str = BLOCKS,
                *, actor: str | None = None, extra: str | None = None) -> Dependency:
        """``issue_id`` depends on ``depends_on_id``. A gating edge that closes a cycle is
        refused. ``extra``: kept with the dependency for whoever made it (the plan importer
        marks its own)."""
        validate_dep_type(dep_type)
        with self.transaction():
            a, b = self.resolve(issue_id), self.resolve(depends_on_id)
            dep = self._add_dep(a, b, dep_type, actor=actor, extra=extra)
        return dep

    def _add_dep(self, a: str, b: str, dep_type: str, *, actor: str | None,
                 extra: str | None = None) -> Dependency:
        if self.store.has_dep(a, b, dep_type):
            raise Conflict(f"{a} already depends on {b} ({dep_type})")
        if dep_type in GATING_TYPES:
            path = self.store.find_path(b, a)
            if path is not None:
                cycle = [a, *path]
                raise CycleError(
                    f"adding {a} -> {b} ({dep_type}) would close a cycle: {' -> '.join(cycle)}",
                    cycle, hint="remove one of the dependencies in the cycle first")
        now = self.now()
        dep = Dependency(a, b, dep_type, now, actor or self.actor)
        self.store.insert_dep(dep, extra)
        self.record("dep_added", a, {"depends_on": b, "type": dep_type}, actor=actor, ts=now)
        if dep_type == PARENT_CHILD:
            containers.child_added(self.store, self._follow, a, b, actor)
        return dep

    def remove_dep(self, issue_id: str, depends_on_id: str, dep_type: str | None = None,
                   *, actor: str | None = None) -> list[Dependency]:
        with self.transaction():
            a = self.resolve(issue_id)
            try:
                b = self.resolve(depends_on_id)
            except NotFound:  # an imported edge may point at a task that does not exist
                b = depends_on_id
            removed = self.store.deps_between(a, b, dep_type)
            if not removed:
                raise NotFound(f"{a} does not depend on {b}" + (f" ({dep_type})" if dep_type else ""))
            self.store.delete_deps(a, b, [d.type for d in removed])
            for dep in removed:
                self.record("dep_removed", a, {"depends_on": b, "type": dep.type}, actor=actor)
            if any(d.type == PARENT_CHILD for d in removed):
                containers.child_removed(self.store, self._follow, a, b, actor)
        return removed

    def dep_tree(self, task_id: str, *, reverse: bool = False, max_depth: int = 50) -> dict[str, Any]:
        """The tree of what a task depends on (or, ``reverse``, what depends on it)."""
        root = self.resolve(task_id)

        def links(tid: str) -> list[tuple[str, str]]:
            if reverse:
                return [(d.issue_id, d.type) for d in self.store.dependents_of(tid)]
            return [(d.depends_on_id, d.type) for d in self.store.deps_of(tid)]

        def node(tid: str, dep_type: str | None, depth: int, path: frozenset[str]) -> dict[str, Any]:
            task = self.store.task(tid)
            item: dict[str, Any] = {"id": tid, "type": dep_type,
                                    "title": task.title if task else None,
                                    "status": task.status if task else "missing", "children": []}
            if tid in path:
                item["cycle"] = True
                return item
            if depth < max_depth:
                for other, typ in links(tid):
                    item["children"].append(node(other, typ, depth + 1, path | {tid}))
            return item

        return node(root, None, 0, frozenset())

    def cycles(self) -> list[list[str]]:
        return self.store.cycles()

    # -- labels and comments -------------------------------------------------------------

    def add_labels(self, task_id: str, labels: Iterable[str], *, actor: str | None = None) -> Task:
        labels = check.labels(labels)
        with self.transaction():
            tid = self.resolve(task_id)
            current = self.store.labels(tid)
            new = [lb for lb in dict.fromkeys(labels) if lb not in current]
            if new:
                self.store.add_labels(tid, new, len(current))
                self._touch(tid)
                self.record("labels_added", tid, {"labels": new}, actor=actor)
        return self.get(tid)

    def remove_labels(self, task_id: str, labels: Iterable[str], *, actor: str | None = None) -> Task:
        labels = check.strings("labels", labels)
        with self.transaction():
            tid = self.resolve(task_id)
            current = self.store.labels(tid)
            gone = [lb for lb in dict.fromkeys(labels) if lb in current]
            missing = [lb for lb in labels if lb not in current]
            if missing:
                raise NotFound(f"{tid} has no label {', '.join(missing)}")
            if gone:
                self.store.remove_labels(tid, gone)
                self._touch(tid)
                self.record("labels_removed", tid, {"labels": gone}, actor=actor)
        return self.get(tid)

    def set_labels(self, task_id: str, labels: Iterable[str], *,
                   actor: str | None = None) -> bool:
        """Make a task's labels exactly ``labels`` (in that order); one ``updated`` event
        when they change. Whether they did."""
        wanted = list(dict.fromkeys(check.labels(labels)))
        with self.transaction():
            tid = self.resolve(task_id)
            current = self.store.labels(tid)
            if current == wanted:
                return False
            self.store.replace_labels(tid, wanted)
            now = self.now()
            self.store.update_task(tid, {"updated_at": now})
            self.record("updated", tid, {"changes": {"labels": [current, wanted]}},
                        actor=actor, ts=now)
        return True

    def _touch(self, tid: str) -> None:
        self.store.update_task(tid, {"updated_at": self.now()})

    def comment(self, task_id: str, text: str, *, author: str | None = None,
                system: bool = False) -> Comment:
        """Add a comment by ``author`` (default: the actor). An author starting with
        ``mill:`` is refused unless ``system`` (the mill's code path)."""
        check.text("a comment", text, max_bytes=check.COMMENT_MAX_BYTES)
        if not text.strip():
            raise InvalidInput("a comment must not be empty")
        check.optional_one_line("the author", author)
        if not system:
            refuse_mill_author(author or self.actor)
        with self.transaction():
            return self._comment(self.resolve(task_id), text, author=author)

    def _comment(self, tid: str, text: str, *, author: str | None) -> Comment:
        now = self.now()
        who = author or self.actor
        cid = self.store.insert_comment(tid, who, text, now)
        self.record("commented", tid, {"comment_id": cid, "text": text}, actor=who, ts=now)
        return Comment(cid, tid, who, text, now)

    def labels_in_use(self) -> list[str]:
        """Every label some task other than a tombstone has, sorted."""
        return self.store.labels_in_use()

    def last_comments(self, task_ids: Sequence[str]) -> dict[str, Comment]:
        """The newest comment of each of ``task_ids`` that has one (the ids are not resolved)."""
        return self.store.last_comments(task_ids)

    # -- audit ---------------------------------------------------------------------------

    def events(self, task_id: str | None = None, *, limit: int | None = None) -> list[Event]:
        limit = check.limit(limit)
        tid = self.resolve(task_id) if task_id is not None else None
        return self.store.events(tid, limit=limit)

    def events_of_kinds(self, kinds: Sequence[str], *, task_id: str | None = None,
                        since: str | None = None) -> list[Event]:
        """Every event of ``kinds`` (of ``task_id``; from the timestamp ``since``), oldest
        first."""
        return self.store.events_of_kinds(kinds, task_id=task_id, since=since)

    def events_since(self, seq: int, *, limit: int = 200) -> list[Event]:
        """The events after ``seq``, oldest first, at most ``limit``."""
        return self.store.events_since(seq, limit)

    def changes_since(self, seq: int) -> list[Change]:
        """The change feed: (seq, task id, kind) of every event after ``seq``."""
        return self.store.changes_since(seq)

    def last_seq(self) -> int:
        """The newest event's seq (0: none)."""
        return self.store.last_seq()

    def statuses_in_use(self) -> list[str]:
        """Every status some task has (imported ones too)."""
        return self.store.statuses_in_use()

    def dep_edges(self, types: Iterable[str] | None = None) -> list[tuple[str, str, str]]:
        """(issue, depends on, type) of every dependency (of ``types``)."""
        return self.store.dep_edges(types)

    def verify(self, anchors: AnchorStore | None = None, *,
               anchors_note: str | None = None) -> VerifyReport:
        """The chain, the tables replayed from the events and, given ``anchors``, the chain
        against the anchors in git (see :mod:`taskmill.audit_verify`)."""
        from ..audit_verify import verify_ledger

        return verify_ledger(self.store, anchors, anchors_note=anchors_note)

    def remake(self) -> None:
        """Make again what the store derives from the rows (each task's readiness counts,
        the listings' kept text), all at once; no task changes, no event is recorded. For a
        ledger ``verify`` finds them wrong in (written behind taskmill's back)."""
        with self.transaction() as store:
            store.recompute_readiness()
            store.remake_kept_text()

    def stats(self) -> dict[str, Any]:
        return self.store.stats()


def _cycles_among(waits: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Each task of ``waits`` (task: what holds it) that is in a cycle, with the cycle as a
    closed path from the cycle's least id."""
    from .graph import closed_path, cyclic_groups

    graph = {t: [b for b in bs if b in waits] for t, bs in waits.items()}
    out: dict[str, list[str]] = {}
    for group in cyclic_groups(graph, sorted(graph)):
        path = closed_path(graph, group, min(group))
        for tid in group:
            out[tid] = path
    return out
