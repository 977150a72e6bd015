"""The ledger: tasks, dependencies, labels, comments and the audit trail, over SQLite.

This is the library the CLI, the mill, the web API and the MCP server all call. Every change
runs in one write transaction together with its audit event, so a change is either wholly
applied and recorded, or not at all.
"""

from __future__ import annotations

import difflib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import containers, readiness
from . import validation as check
from .audit import AuditLog, VerifyReport, event_from_row
from .clock import Clock, SystemClock, elapsed_seconds, iso
from .db import connect, migrate, write_tx
from .errors import ClaimConflict, Conflict, CycleError, Forbidden, InvalidInput, NotFound
from .ids import hash_length, new_id
from .model import (
    BLOCK_COMMENT_PREFIX,
    BLOCKED,
    BLOCKS,
    CLOSED,
    DEP_TYPES,
    DONE_STATUSES,
    GATING_TYPES,
    HIDDEN_STATUSES,
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

if TYPE_CHECKING:
    from .audit_anchor import AnchorStore

TASK_COLUMNS = (
    "id, title, description, design, acceptance_criteria, notes, status, priority, issue_type,"
    " assignee, created_at, updated_at, closed_at, close_reason, external_ref, metadata, checks,"
    " agent, hints, gated"
)
_JSON_FIELDS = frozenset({"metadata", "checks", "hints"})


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def task_from_row(row: Sequence[Any], labels: list[str] | None = None) -> Task:
    (tid, title, description, design, acceptance, notes, status, priority, issue_type, assignee,
     created_at, updated_at, closed_at, close_reason, external_ref, metadata, checks, agent,
     hints, gated) = row
    return Task(
        id=tid, title=title, description=description, design=design,
        acceptance_criteria=acceptance, notes=notes, status=status, priority=priority,
        issue_type=issue_type, assignee=assignee, labels=labels or [], created_at=created_at,
        updated_at=updated_at, closed_at=closed_at, close_reason=close_reason,
        external_ref=external_ref, metadata=_loads(metadata), checks=_loads(checks),
        agent=agent, hints=_loads(hints), ready=(status == OPEN and not gated),
    )


def validate_priority(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 4:
        raise InvalidInput(f"priority must be an integer from 0 (highest) to 4, not {value!r}")
    return value


def validate_status(value: Any) -> str:
    if value not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}, not {value!r}")
    return str(value)


def validate_dep_type(value: str) -> str:
    if value not in DEP_TYPES:
        raise InvalidInput(f"dependency type must be one of {', '.join(DEP_TYPES)}, not {value!r}")
    return value


def _validate_checks(value: Any) -> list[str] | None:
    return check.checks(value)


def _validate_table(name: str, value: Any) -> dict[str, Any] | None:
    return check.table(name, value)


MILL_AUTHOR_PREFIX = "mill:"
"""Comments (and events) signed ``mill:<run>`` are the mill's own."""
_MILL_CLOSE_REASONS = ("landed", "already satisfied")
"""How the mill's close reasons begin (``landed <sha>``, ``already satisfied at <sha>``)."""


def refuse_mill_author(author: str | None) -> None:
    """Refuse a comment author that claims to be the mill (only its own code path signs so)."""
    if author is not None and author.strip().lower().startswith(MILL_AUTHOR_PREFIX):
        raise Forbidden(f"the author {author!r} is refused: authors starting with "
                        f"{MILL_AUTHOR_PREFIX!r} are the mill's own",
                        hint="comment under your own name (--author NAME, or none)")


def refuse_mill_close_reason(reason: Any) -> None:
    """Refuse a close reason in the mill's own forms (``landed ...``, ``already satisfied
    ...``): those say the mill verified and merged the work, so only the mill writes them."""
    if not isinstance(reason, str):
        return
    words = " ".join(reason.lower().split())
    for form in _MILL_CLOSE_REASONS:
        if words == form or words.startswith(form + " ") or words.startswith(form + ":"):
            raise Forbidden(f"the close reason {reason[:80]!r} is refused: reasons starting "
                            f"with {form!r} are the mill's own (it writes them when it lands "
                            "a task's checked work)",
                            hint="say it another way, e.g. 'done by hand in <commit>'")


def validate_field(key: str, value: Any) -> Any:
    """``value`` checked for the task field ``key`` (see :mod:`taskmill.validation`)."""
    if key == "priority":
        return validate_priority(value)
    if key == "status":
        return validate_status(value)
    if key == "checks":
        return check.checks(value)
    if key in ("metadata", "hints"):
        return check.table(key, value)
    if key == "title":
        return check.one_line("the title", value, max_chars=check.TITLE_MAX)
    if key == "issue_type":
        return check.one_line("issue_type", value)
    if key in ("assignee", "external_ref", "agent"):
        return check.optional_one_line(key, value)
    if key == "close_reason":
        return check.optional_text(key, value)
    if key in ("description", "design", "acceptance_criteria", "notes"):
        return check.text(key, value)
    return value


class Ledger:
    """A repository's ledger. Open with :meth:`open` (a file) or :meth:`memory` (tests)."""

    def __init__(self, conn: sqlite3.Connection, *, prefix: str, clock: Clock,
                 actor: str, path: Path | None = None) -> None:
        self.conn = conn
        self.prefix = prefix
        self.clock = clock
        self.actor = actor
        self.path = path
        self._audit = AuditLog(conn)
        self._tx_depth = 0

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, db_path: Path, *, prefix: str, clock: Clock | None = None,
             actor: str = "taskmill") -> Ledger:
        conn = connect(db_path)
        migrate(conn)
        return cls(conn, prefix=prefix, clock=clock or SystemClock(), actor=actor, path=db_path)

    @classmethod
    def memory(cls, *, prefix: str = "tm", clock: Clock | None = None,
               actor: str = "test") -> Ledger:
        conn = connect(":memory:")
        migrate(conn)
        return cls(conn, prefix=prefix, clock=clock or SystemClock(), actor=actor)

    def close_db(self) -> None:
        self.conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_db()

    # -- plumbing ------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction whose audit events are chained and committed with it.

        Inside another one it is part of that one (so several changes, each in its own
        ``transaction``, can be applied all or nothing).
        """
        if self._tx_depth:
            self._tx_depth += 1
            try:
                yield self.conn
            finally:
                self._tx_depth -= 1
            return
        with write_tx(self.conn):
            self._tx_depth = 1
            self._audit.begin()
            try:
                yield self.conn
            except BaseException:
                self._audit = AuditLog(self.conn)
                raise
            finally:
                self._tx_depth = 0
            self._audit.finish()

    def record(self, kind: str, task_id: str | None, data: dict[str, Any],
               *, actor: str | None = None, ts: str | None = None) -> None:
        """Append an audit event (inside :meth:`transaction`)."""
        self._audit.append(ts=ts or self.now(), actor=actor or self.actor, task_id=task_id,
                           kind=kind, data=data)

    def now(self) -> str:
        return iso(self.clock.now())

    def _row(self, task_id: str) -> Sequence[Any] | None:
        row: Sequence[Any] | None = self.conn.execute(
            f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,)
        ).fetchone()
        return row

    def resolve(self, task_id: str) -> str:
        """The full id for ``task_id`` or a unique prefix of one.

        Failing that, the id in another case (``TM-3S6P``) or without the ledger's prefix
        (``3s6p``; a prefix of one from three characters on) is accepted when it matches one
        task only. A task id not found names the nearest ids.
        """
        task_id = check.task_ref(task_id)
        if self.conn.execute("SELECT 1 FROM tasks WHERE id = ?", (task_id,)).fetchone():
            return task_id
        matches = self._prefixed(task_id)
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

    def _prefixed(self, start: str) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM tasks WHERE id >= ? AND id < ? ORDER BY id LIMIT 6",
            (start, start + "\uffff"))]

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
        exact = [r[0] for r in self.conn.execute(
            "SELECT id FROM tasks WHERE lower(id) IN (?, ?) LIMIT 6", (low, bare[0] if bare else low))]
        if exact:
            return exact
        found: dict[str, None] = {}
        starts = [low] + [b for b in bare if len(task_id) >= 3]
        for start in starts:
            found.update(dict.fromkeys(r[0] for r in self.conn.execute(
                "SELECT id FROM tasks WHERE substr(lower(id), 1, ?) = ? ORDER BY id LIMIT 6",
                (len(start), start))))
        return list(found)

    def _near_ids(self, task_id: str, n: int = 3) -> list[str]:
        """Up to ``n`` ids that look like ``task_id`` (a typo, a character left out)."""
        cands = self._candidates(task_id)
        size = max(len(c) for c in cands)
        ids = [r[0] for r in self.conn.execute(
            "SELECT id FROM tasks WHERE length(id) BETWEEN ? AND ? AND status != ?",
            (min(len(c) for c in cands) - 2, size + 2, TOMBSTONE))]
        lowered = {i.lower(): i for i in ids}
        near: dict[str, None] = {}
        for cand in cands:
            for hit in difflib.get_close_matches(cand, list(lowered), n=n, cutoff=0.7):
                near[lowered[hit]] = None
        return list(near)[:n]

    def _labels(self, task_id: str) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT label FROM labels WHERE task_id = ? ORDER BY pos, label", (task_id,))]

    def _labels_for(self, ids: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {i: [] for i in ids}
        for chunk_start in range(0, len(ids), 500):
            chunk = ids[chunk_start:chunk_start + 500]
            marks = ",".join("?" * len(chunk))
            for tid, label in self.conn.execute(
                f"SELECT task_id, label FROM labels WHERE task_id IN ({marks}) ORDER BY pos, label",
                chunk,
            ):
                out[tid].append(label)
        return out

    def _tasks(self, rows: list[Sequence[Any]]) -> list[Task]:
        labels = self._labels_for([r[0] for r in rows]) if rows else {}
        tasks = [task_from_row(r, labels.get(r[0])) for r in rows]
        containers.annotate(self.conn, tasks)
        return tasks

    # -- reading -------------------------------------------------------------------------

    def get(self, task_id: str) -> Task:
        tid = self.resolve(task_id)
        row = self._row(tid)
        assert row is not None
        task = task_from_row(row, self._labels(tid))
        containers.annotate(self.conn, [task])
        return task

    def show(self, task_id: str) -> Task:
        """A task with its dependencies both ways, comments and attempts."""
        task = self.get(task_id)
        task.dependencies = [Dependency(*r) for r in self.conn.execute(
            "SELECT issue_id, depends_on_id, type, created_at, created_by FROM deps"
            " WHERE issue_id = ? ORDER BY pos, depends_on_id", (task.id,))]
        task.dependents = [Dependency(*r) for r in self.conn.execute(
            "SELECT issue_id, depends_on_id, type, created_at, created_by FROM deps"
            " WHERE depends_on_id = ? ORDER BY issue_id", (task.id,))]
        task.comments = [Comment(*r) for r in self.conn.execute(
            "SELECT id, task_id, author, text, created_at FROM comments WHERE task_id = ?"
            " ORDER BY id", (task.id,))]
        task.attempts = self.attempts(task.id)
        task.child_tasks = self._tasks(self.conn.execute(
            f"SELECT {TASK_COLUMNS} FROM tasks WHERE id IN (SELECT issue_id FROM deps"
            " WHERE depends_on_id = ? AND type = 'parent-child') AND status != 'tombstone'"
            " ORDER BY seq", (task.id,)).fetchall())
        return task

    def list_tasks(self, *, status: str | Sequence[str] | None = None, label: str | None = None,
                   issue_type: str | None = None, assignee: str | None = None,
                   parent: str | None = None, include_hidden: bool = False,
                   limit: int | None = None) -> list[Task]:
        limit = check.limit(limit)
        label = check.filter_text("label", label)
        issue_type = check.filter_text("issue_type", issue_type)
        assignee = check.filter_text("assignee", assignee)
        parent = check.filter_text("parent", parent)
        where: list[str] = []
        args: list[Any] = []
        if status:
            statuses = self._known_statuses([status] if isinstance(status, str) else status)
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            args.extend(statuses)
        elif not include_hidden:
            where.append(f"status NOT IN ({','.join('?' * len(HIDDEN_STATUSES))})")
            args.extend(sorted(HIDDEN_STATUSES))
        if label:
            where.append("id IN (SELECT task_id FROM labels WHERE label = ?)")
            args.append(label)
        if issue_type:
            where.append("issue_type = ?")
            args.append(issue_type)
        if assignee:
            where.append("assignee = ?")
            args.append(assignee)
        if parent:
            where.append("id IN (SELECT issue_id FROM deps WHERE depends_on_id = ?"
                         " AND type = 'parent-child')")
            args.append(self.resolve(parent))
        sql = f"SELECT {TASK_COLUMNS} FROM tasks"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY priority, seq"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return self._tasks(self.conn.execute(sql, args).fetchall())

    def _known_statuses(self, statuses: Iterable[Any]) -> list[str]:
        """``statuses`` as a list, each one taskmill sets or one the ledger holds (imported)."""
        wanted = list(statuses)
        known = [*STATUSES, TOMBSTONE, HOOKED]
        unknown = [s for s in wanted if s not in known]
        if unknown:
            held = {r[0] for r in self.conn.execute("SELECT DISTINCT status FROM tasks")}
            known += sorted(held - set(known))
            unknown = [s for s in unknown if s not in known]
        if unknown:
            shown = ", ".join(repr(s) for s in unknown)
            raise InvalidInput(f"no status {shown}", hint=f"the statuses are {', '.join(known)}")
        return wanted

    def ready(self, *, limit: int | None = None, work_only: bool = False) -> list[Task]:
        """Open tasks with nothing gating them, highest priority first, then oldest first.

        Containers (tasks with children) are listed too, marked ``container`` (as Beads lists
        epics); ``work_only`` leaves them out: they are not work to hand to an agent."""
        limit = check.limit(limit)
        sql = (f"SELECT {TASK_COLUMNS} FROM tasks INDEXED BY tasks_ready"
               " WHERE status = 'open' AND gated = 0"
               + (f" AND NOT {containers.HAS_CHILDREN_SQL}" if work_only else "")
               + " ORDER BY priority, seq")
        if limit:
            sql += f" LIMIT {int(limit)}"
        return self._tasks(self.conn.execute(sql).fetchall())

    def blocked(self) -> list[BlockedTask]:
        """Tasks that are not done and are gated or marked blocked, with what holds each."""
        rows = self.conn.execute(
            f"SELECT {TASK_COLUMNS} FROM tasks WHERE (gated = 1 OR status = 'blocked')"
            " AND status NOT IN ('closed', 'tombstone') ORDER BY priority, seq").fetchall()
        out: list[BlockedTask] = []
        for task in self._tasks(rows):
            blockers = [r[0] for r in self.conn.execute(
                "SELECT b.id FROM deps d JOIN tasks b ON b.id = d.depends_on_id WHERE d.issue_id = ?"
                " AND d.type = 'blocks' AND b.status NOT IN ('closed', 'tombstone')", (task.id,))]
            parents = [r[0] for r in self.conn.execute(
                "SELECT p.id FROM deps d JOIN tasks p ON p.id = d.depends_on_id WHERE d.issue_id = ?"
                " AND d.type = 'parent-child' AND p.status NOT IN ('closed', 'tombstone')"
                " AND (p.gated = 1 OR p.status IN ('blocked', 'deferred'))", (task.id,))]
            ancestors, reasons = containers.ancestor_reasons(self.conn, task.id)
            item = BlockedTask(task, blockers, parents, ancestors, reasons)
            if task.status == BLOCKED:
                item.reason = self._block_reason(task.id)
                item.unblock = f"taskmill reopen {task.id}"
            out.append(item)
        return out

    def held_back(self, task_id: str) -> list[str]:
        """The unfinished tasks under ``task_id`` (its children, theirs, ...): those a
        ``deferred`` or ``blocked`` ``task_id`` holds back."""
        return containers.held_back(self.conn, self.resolve(task_id))

    def _block_reason(self, tid: str) -> str:
        """The mill's reason for blocking a task, else who marked it blocked and when."""
        row = self.conn.execute(
            "SELECT text FROM comments WHERE task_id = ? AND substr(text, 1, ?) = ?"
            " ORDER BY id DESC LIMIT 1",
            (tid, len(BLOCK_COMMENT_PREFIX), BLOCK_COMMENT_PREFIX)).fetchone()
        if row is not None:
            return str(row[0])[len(BLOCK_COMMENT_PREFIX):]
        for actor, ts, data in self.conn.execute(
                "SELECT actor, ts, data FROM events WHERE task_id = ? AND kind IN"
                " ('updated', 'imported') ORDER BY seq DESC LIMIT 200", (tid,)):
            status = _loads(data).get("changes", {}).get("status")
            if isinstance(status, list) and status[-1:] == [BLOCKED]:
                return f"marked blocked by {actor} at {ts}"
        return "marked blocked (no reason recorded)"

    def exists(self, task_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM tasks WHERE id = ?", (task_id,)).fetchone() is not None

    # -- creating ------------------------------------------------------------------------

    def _new_id(self, title: str, created_at: str) -> str:
        count = self.conn.execute("SELECT max(seq) FROM tasks").fetchone()[0] or 0
        length = hash_length(count)
        for attempt in range(12):
            candidate = new_id(self.prefix, title, created_at, length=length + attempt // 3)
            if not self.exists(candidate):
                return candidate
        raise Conflict("could not find a free task id; try again")

    def create(self, title: str, *, description: str = "", design: str = "",
               acceptance_criteria: str = "", notes: str = "", status: str = OPEN,
               priority: int = 2, issue_type: str = "task", assignee: str | None = None,
               labels: Iterable[str] = (), external_ref: str | None = None,
               metadata: dict[str, Any] | None = None, checks: list[str] | None = None,
               agent: str | None = None, hints: dict[str, Any] | None = None,
               after: Iterable[str] = (), parent: str | None = None,
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
                hints=hints, task_id=task_id, actor=actor)
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
                task_id: str | None, actor: str | None) -> str:
        if title is None or (isinstance(title, str) and not title.strip()):
            raise InvalidInput("a task needs a title")
        title = validate_field("title", title)
        for name, given in (("description", description), ("design", design),
                            ("acceptance_criteria", acceptance_criteria), ("notes", notes),
                            ("assignee", assignee), ("external_ref", external_ref),
                            ("agent", agent)):
            validate_field(name, given)
        validate_priority(priority)
        validate_status(status)
        checks = _validate_checks(checks)
        metadata = _validate_table("metadata", metadata)
        hints = _validate_table("hints", hints)
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
        self.conn.execute(
            "INSERT INTO tasks (id, title, description, design, acceptance_criteria, notes, status,"
            " priority, issue_type, assignee, created_at, updated_at, closed_at, external_ref,"
            " metadata, checks, agent, hints) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (tid, title, description, design, acceptance_criteria, notes, status, priority,
             issue_type, assignee, now, now, closed_at, external_ref, _dumps(metadata),
             _dumps(checks), agent, _dumps(hints)),
        )
        label_list = list(dict.fromkeys(labels))
        if label_list:
            self.conn.executemany("INSERT INTO labels (task_id, label, pos) VALUES (?, ?, ?)",
                                  [(tid, lb, i) for i, lb in enumerate(label_list)])
        fields: dict[str, Any] = {"title": title, "status": status, "priority": priority,
                                  "issue_type": issue_type}
        for key, value in (("description", description), ("design", design),
                           ("acceptance_criteria", acceptance_criteria), ("notes", notes),
                           ("assignee", assignee), ("external_ref", external_ref),
                           ("metadata", metadata), ("checks", checks), ("agent", agent),
                           ("hints", hints)):
            if value:
                fields[key] = value
        if label_list:
            fields["labels"] = label_list
        self.record("created", tid, {"new": fields}, actor=actor, ts=now)
        return tid

    # -- changing ------------------------------------------------------------------------

    def update(self, task_id: str, changes: Mapping[str, Any], *, actor: str | None = None,
               expect_status: str | None = None) -> Task:
        """Change fields of a task; records old and new value of each field that changed."""
        unknown = set(changes) - set(UPDATABLE_FIELDS)
        if unknown:
            raise InvalidInput(f"cannot update {', '.join(sorted(unknown))}",
                               hint=f"updatable fields: {', '.join(UPDATABLE_FIELDS)}")
        if "close_reason" in changes:
            refuse_mill_close_reason(changes["close_reason"])
        with self.transaction():
            tid = self.resolve(task_id)
            self._update(tid, changes, actor=actor, expect_status=expect_status)
        return self.get(tid)

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
        diff: dict[str, list[Any]] = {}
        values: dict[str, Any] = {}
        for key, value in changes.items():
            if key == "title" and (not isinstance(value, str) or not value.strip()):
                raise InvalidInput("the title must not be empty")
            value = validate_field(key, value)
            old = getattr(current, key)
            if old != value:
                diff[key] = [old, value]
                values[key] = _dumps(value) if key in _JSON_FIELDS else value
        if not diff:
            return diff
        now = self.now()
        if "status" in diff:
            old_status, new_status = diff["status"]
            if new_status == CLOSED:
                values["closed_at"] = now
            elif old_status == CLOSED:
                values["closed_at"] = None
                if "close_reason" not in values:
                    values["close_reason"] = None
        values["updated_at"] = now
        assignments = ", ".join(f"{k} = ?" for k in values)
        self.conn.execute(f"UPDATE tasks SET {assignments} WHERE id = ?", (*values.values(), tid))
        if "status" in diff:
            self._status_changed(tid, diff["status"][0], diff["status"][1])
        self.record("updated", tid, {"changes": diff, **({"cause": cause} if cause else {})},
                    actor=actor, ts=now)
        if "status" in diff:  # a container follows its children (and so on up)
            containers.status_changed(self, tid, diff["status"][0], diff["status"][1], actor)
        return diff

    def _status_changed(self, tid: str, old: str, new: str) -> None:
        roots = [tid]
        if (old in DONE_STATUSES) != (new in DONE_STATUSES):
            roots.extend(readiness.on_done_changed(self.conn, tid, new in DONE_STATUSES))
        readiness.refresh(self.conn, roots)

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
            cur = self.conn.execute(
                "UPDATE tasks SET status = 'in_progress', assignee = ?, updated_at = ?"
                " WHERE id = ? AND status = 'open' AND gated = 0"
                + (f" AND NOT {containers.HAS_CHILDREN_SQL}" if work_only else ""),
                (assignee, now, tid))
            if cur.rowcount != 1:
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
            self._status_changed(tid, OPEN, IN_PROGRESS)
            self.record("claimed", tid, {"changes": {"status": [OPEN, IN_PROGRESS],
                                                     "assignee": [None, assignee]}},
                        actor=actor or assignee, ts=now)
        return self.get(tid)

    def claim_next(self, assignee: str, *, actor: str | None = None,
                   exclude: Iterable[str] = ()) -> Task | None:
        """Claim the first ready task (in ``ready`` order) that another claimer did not win.

        Returns None only when no ready task is left: a task lost to another claimer is no
        longer ready, so each pass over a fresh batch either claims one or shrinks the set.
        """
        skip = set(exclude)
        while True:
            candidates = [t for t in self.ready(limit=len(skip) + 20, work_only=True)
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
                *, actor: str | None = None) -> Dependency:
        """``issue_id`` depends on ``depends_on_id``. A gating edge that closes a cycle is refused."""
        validate_dep_type(dep_type)
        with self.transaction():
            a, b = self.resolve(issue_id), self.resolve(depends_on_id)
            dep = self._add_dep(a, b, dep_type, actor=actor)
        return dep

    def _add_dep(self, a: str, b: str, dep_type: str, *, actor: str | None) -> Dependency:
        if self.conn.execute("SELECT 1 FROM deps WHERE issue_id = ? AND depends_on_id = ?"
                             " AND type = ?", (a, b, dep_type)).fetchone():
            raise Conflict(f"{a} already depends on {b} ({dep_type})")
        if dep_type in GATING_TYPES:
            path = readiness.find_path(self.conn, b, a)
            if path is not None:
                cycle = [a, *path]
                raise CycleError(
                    f"adding {a} -> {b} ({dep_type}) would close a cycle: {' -> '.join(cycle)}",
                    cycle, hint="remove one of the dependencies in the cycle first")
        now = self.now()
        who = actor or self.actor
        pos = self.conn.execute("SELECT count(*) FROM deps WHERE issue_id = ?", (a,)).fetchone()[0]
        self.conn.execute(
            "INSERT INTO deps (issue_id, depends_on_id, type, created_at, created_by, pos)"
            " VALUES (?, ?, ?, ?, ?, ?)", (a, b, dep_type, now, who, pos))
        if dep_type == BLOCKS:
            status = self.conn.execute("SELECT status FROM tasks WHERE id = ?", (b,)).fetchone()[0]
            if status not in DONE_STATUSES:
                self.conn.execute("UPDATE tasks SET open_blockers = open_blockers + 1 WHERE id = ?",
                                  (a,))
        if dep_type in GATING_TYPES:
            readiness.refresh(self.conn, [a])
        self.record("dep_added", a, {"depends_on": b, "type": dep_type}, actor=actor, ts=now)
        if dep_type == PARENT_CHILD:
            containers.child_added(self, a, b, actor)
        return Dependency(a, b, dep_type, now, who)

    def remove_dep(self, issue_id: str, depends_on_id: str, dep_type: str | None = None,
                   *, actor: str | None = None) -> list[Dependency]:
        with self.transaction():
            a = self.resolve(issue_id)
            try:
                b = self.resolve(depends_on_id)
            except NotFound:  # an imported edge may point at a task that does not exist
                b = depends_on_id
            sql = "SELECT type, created_at, created_by FROM deps WHERE issue_id = ? AND depends_on_id = ?"
            args: list[Any] = [a, b]
            if dep_type:
                sql += " AND type = ?"
                args.append(dep_type)
            rows = self.conn.execute(sql, args).fetchall()
            if not rows:
                raise NotFound(f"{a} does not depend on {b}" + (f" ({dep_type})" if dep_type else ""))
            removed = []
            for typ, created_at, created_by in rows:
                self.conn.execute("DELETE FROM deps WHERE issue_id = ? AND depends_on_id = ?"
                                  " AND type = ?", (a, b, typ))
                if typ == BLOCKS:
                    self.conn.execute("UPDATE tasks SET open_blockers = ? WHERE id = ?",
                                      (readiness.count_open_blockers(self.conn, a), a))
                self.record("dep_removed", a, {"depends_on": b, "type": typ}, actor=actor)
                removed.append(Dependency(a, b, typ, created_at, created_by))
            readiness.refresh(self.conn, [a])
            if any(d.type == PARENT_CHILD for d in removed):
                containers.child_removed(self, a, b, actor)
        return removed

    def dep_tree(self, task_id: str, *, reverse: bool = False, max_depth: int = 50) -> dict[str, Any]:
        """The tree of what a task depends on (or, ``reverse``, what depends on it)."""
        root = self.resolve(task_id)
        if reverse:
            sql = "SELECT issue_id, type FROM deps WHERE depends_on_id = ? ORDER BY issue_id"
        else:
            sql = "SELECT depends_on_id, type FROM deps WHERE issue_id = ? ORDER BY pos, depends_on_id"

        def node(tid: str, dep_type: str | None, depth: int, path: frozenset[str]) -> dict[str, Any]:
            row = self.conn.execute("SELECT title, status FROM tasks WHERE id = ?", (tid,)).fetchone()
            item: dict[str, Any] = {"id": tid, "type": dep_type,
                                    "title": row[0] if row else None,
                                    "status": row[1] if row else "missing", "children": []}
            if tid in path:
                item["cycle"] = True
                return item
            if depth < max_depth:
                for other, typ in self.conn.execute(sql, (tid,)).fetchall():
                    item["children"].append(node(other, typ, depth + 1, path | {tid}))
            return item

        return node(root, None, 0, frozenset())

    def cycles(self) -> list[list[str]]:
        return readiness.all_cycles(self.conn)

    # -- labels and comments -------------------------------------------------------------

    def add_labels(self, task_id: str, labels: Iterable[str], *, actor: str | None = None) -> Task:
        labels = check.labels(labels)
        with self.transaction():
            tid = self.resolve(task_id)
            current = self._labels(tid)
            new = [lb for lb in dict.fromkeys(labels) if lb not in current]
            for i, lb in enumerate(new):
                self.conn.execute("INSERT INTO labels (task_id, label, pos) VALUES (?, ?, ?)",
                                  (tid, lb, len(current) + i))
            if new:
                self._touch(tid)
                self.record("labels_added", tid, {"labels": new}, actor=actor)
        return self.get(tid)

    def remove_labels(self, task_id: str, labels: Iterable[str], *, actor: str | None = None) -> Task:
        labels = check.strings("labels", labels)
        with self.transaction():
            tid = self.resolve(task_id)
            current = self._labels(tid)
            gone = [lb for lb in dict.fromkeys(labels) if lb in current]
            missing = [lb for lb in labels if lb not in current]
            if missing:
                raise NotFound(f"{tid} has no label {', '.join(missing)}")
            for lb in gone:
                self.conn.execute("DELETE FROM labels WHERE task_id = ? AND label = ?", (tid, lb))
            if gone:
                self._touch(tid)
                self.record("labels_removed", tid, {"labels": gone}, actor=actor)
        return self.get(tid)

    def _touch(self, tid: str) -> None:
        self.conn.execute("UPDATE tasks SET updated_at = ? WHERE id = ?", (self.now(), tid))

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
        cur = self.conn.execute(
            "INSERT INTO comments (task_id, author, text, created_at) VALUES (?, ?, ?, ?)",
            (tid, who, text, now))
        cid = int(cur.lastrowid or 0)
        self.record("commented", tid, {"comment_id": cid, "text": text}, actor=who, ts=now)
        return Comment(cid, tid, who, text, now)

    # -- attempts (written by the mill) --------------------------------------------------

    def attempts(self, task_id: str) -> list[dict[str, Any]]:
        cols = ("id", "task_id", "iteration", "agent", "model", "started_at", "ended_at", "outcome",
                "input_tokens", "output_tokens", "cost_usd", "commit_sha", "log_path", "detail",
                "run_id", "lap")
        rows = self.conn.execute(f"SELECT {', '.join(cols)} FROM attempts WHERE task_id = ?"
                                 " ORDER BY id", (task_id,)).fetchall()
        out = []
        for row in rows:
            item = dict(zip(cols, row, strict=True))
            item["detail"] = _loads(item["detail"])
            out.append(item)
        return out

    def attempt_totals(self, now: datetime) -> dict[str, Any]:
        """Attempts, passes, tokens, cost and seconds (a running attempt's up to ``now``): over
        all attempts (``all``), per agent (``by_agent``) and per model (``by_model``)."""

        def zero() -> dict[str, Any]:
            return {"attempts": 0, "passed": 0, "input_tokens": 0, "output_tokens": 0,
                    "cost_usd": 0.0, "seconds": 0.0}

        total = zero()
        by_agent: dict[str, dict[str, Any]] = {}
        by_model: dict[str, dict[str, Any]] = {}
        for agent, model, started, ended, outcome, tin, tout, cost in self.conn.execute(
                "SELECT agent, model, started_at, ended_at, outcome, input_tokens,"
                " output_tokens, cost_usd FROM attempts"):
            seconds = elapsed_seconds(started, ended, now) or 0.0
            for bucket in (total, by_agent.setdefault(agent or "(none)", zero()),
                           by_model.setdefault(model or "(default)", zero())):
                bucket["attempts"] += 1
                bucket["passed"] += outcome == "passed"
                bucket["input_tokens"] += int(tin or 0)
                bucket["output_tokens"] += int(tout or 0)
                bucket["cost_usd"] += float(cost or 0.0)
                bucket["seconds"] += seconds
        for bucket in (total, *by_agent.values(), *by_model.values()):
            bucket["cost_usd"] = round(bucket["cost_usd"], 6)
            bucket["seconds"] = round(bucket["seconds"], 3)
        return {"all": total, "by_agent": by_agent, "by_model": by_model}

    def labels_in_use(self) -> list[str]:
        """Every label some task other than a tombstone has, sorted."""
        return [r[0] for r in self.conn.execute(
            "SELECT DISTINCT l.label FROM labels l JOIN tasks t ON t.id = l.task_id"
            " WHERE t.status != 'tombstone' ORDER BY l.label")]

    def last_comments(self, task_ids: Sequence[str]) -> dict[str, Comment]:
        """The newest comment of each of ``task_ids`` that has one (the ids are not resolved)."""
        ids = list(task_ids)
        out: dict[str, Comment] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for cid, tid, author, text, created in self.conn.execute(
                    "SELECT id, task_id, author, text, created_at FROM comments WHERE id IN"
                    f" (SELECT max(id) FROM comments WHERE task_id IN ({marks}) GROUP BY task_id)",
                    chunk):
                out[tid] = Comment(cid, tid, author, text, created)
        return out

    # -- the mill's verbs ----------------------------------------------------------------

    def find(self, task_id: str) -> Task | None:
        """The task with exactly the id ``task_id`` (not resolved), or None."""
        row = self._row(task_id)
        if row is None:
            return None
        task = task_from_row(row, self._labels(task_id))
        containers.annotate(self.conn, [task])
        return task

    def claims(self, assignee_prefix: str) -> list[tuple[str, str]]:
        """(id, assignee) of each task in progress whose assignee starts with
        ``assignee_prefix`` (a mill run's claims: ``mill:<run>``)."""
        rows = self.conn.execute(
            "SELECT id, assignee FROM tasks WHERE status = 'in_progress' AND assignee LIKE ?",
            (assignee_prefix + "%",)).fetchall()
        return [(str(tid), str(assignee)) for tid, assignee in rows]

    def recover_orphan(self, task_id: str, assignee: str, *, actor: str, now: str,
                       from_run: str) -> bool:
        """Take over ``task_id``, in progress under ``assignee`` (a run that died): its
        unfinished attempts end ``interrupted``, ``actor`` becomes its assignee and a
        ``recovered`` event says so. False (the attempts ended all the same) when the task
        is no longer in progress under ``assignee``."""
        with self.transaction():
            self.end_open_attempts(task_id, outcome="interrupted", ended_at=now)
            cur = self.conn.execute(
                "UPDATE tasks SET assignee = ? WHERE id = ? AND assignee = ?"
                " AND status = 'in_progress'", (actor, task_id, assignee))
            if cur.rowcount != 1:
                return False
            self.record("recovered", task_id, {"from_run": from_run}, actor=actor)
        return True

    def chain_weights(self) -> tuple[dict[str, float], list[tuple[str, str]]]:
        """The weight of each unfinished task (its ``estimate`` hint, else 1.0) and every
        ``blocks`` dependency as (issue, blocker): what the mill's scheduler orders by."""
        weight: dict[str, float] = {}
        for tid, hints in self.conn.execute(
                "SELECT id, hints FROM tasks WHERE status NOT IN ('closed', 'tombstone')"):
            estimate = 1.0
            if hints and "estimate" in hints:
                value = json.loads(hints).get("estimate")
                if isinstance(value, int | float) and value > 0:
                    estimate = float(value)
            weight[tid] = estimate
        edges = [(str(a), str(b)) for a, b in self.conn.execute(
            "SELECT issue_id, depends_on_id FROM deps WHERE type = 'blocks'")]
        return weight, edges

    def last_lap(self, task_id: str) -> int:
        """The highest lap of ``task_id``'s attempts (0: none)."""
        row = self.conn.execute("SELECT max(lap) FROM attempts WHERE task_id = ?",
                                (task_id,)).fetchone()
        return int(row[0] or 0)

    def claimed_after_last_attempt(self, task_id: str) -> bool:
        """Whether ``task_id``'s newest ``claimed`` event is newer than its newest
        ``attempt_started`` (both present)."""
        claimed, started = self.conn.execute(
            "SELECT max(CASE WHEN kind = 'claimed' THEN seq END),"
            " max(CASE WHEN kind = 'attempt_started' THEN seq END)"
            " FROM events WHERE task_id = ?", (task_id,)).fetchone()
        return claimed is not None and started is not None and bool(claimed > started)

    def lap_usage(self, task_id: str, lap: int) -> tuple[int, int, int, float]:
        """Attempts, input and output tokens and cost of ``task_id``'s lap ``lap``, leaving
        out attempts that ended ``interrupted`` or ``rate_limited``."""
        row = self.conn.execute(
            "SELECT count(*), coalesce(sum(input_tokens),0), coalesce(sum(output_tokens),0),"
            " coalesce(sum(cost_usd),0) FROM attempts WHERE task_id = ? AND lap = ?"
            " AND outcome NOT IN ('interrupted', 'rate_limited')",
            (task_id, lap)).fetchone()
        return int(row[0]), int(row[1]), int(row[2]), float(row[3])

    def count_attempts(self, task_id: str, lap: int, outcomes: Iterable[str]) -> int:
        """How many of ``task_id``'s attempts in lap ``lap`` ended in one of ``outcomes``."""
        wanted = list(outcomes)
        if not wanted:
            return 0
        marks = ",".join("?" * len(wanted))
        return int(self.conn.execute(
            f"SELECT count(*) FROM attempts WHERE task_id = ? AND lap = ? AND outcome IN ({marks})",
            (task_id, lap, *wanted)).fetchone()[0])

    def start_attempt(self, task_id: str, *, iteration: int, agent: str | None,
                      model: str | None, log_path: str, run_id: str, lap: int, actor: str,
                      now: str) -> int:
        """Record the start of an agent's turn on ``task_id`` (and an ``attempt_started``
        event); returns the attempt's id."""
        with self.transaction():
            cur = self.conn.execute(
                "INSERT INTO attempts (task_id, iteration, agent, model, started_at, log_path,"
                " run_id, lap) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (task_id, iteration, agent, model, now, log_path, run_id, lap))
            attempt_id = int(cur.lastrowid or 0)
            self.record("attempt_started", task_id,
                        {"attempt": attempt_id, "iteration": iteration,
                         "agent": agent, "model": model}, actor=actor, ts=now)
        return attempt_id

    def finish_attempt(self, task_id: str, attempt_id: int, *, outcome: str,
                       input_tokens: int, output_tokens: int, cost_usd: float | None,
                       commit: str | None, model: str | None, detail: Mapping[str, Any],
                       seconds: float, usage_error: str | None, actor: str, now: str) -> None:
        """Record how an attempt ended (and an ``attempt_finished`` event). ``model`` None
        keeps the model it started with."""
        with self.transaction():
            self.conn.execute(
                "UPDATE attempts SET ended_at = ?, outcome = ?, input_tokens = ?,"
                " output_tokens = ?, cost_usd = ?, commit_sha = ?, model = coalesce(?, model),"
                " detail = ? WHERE id = ?",
                (now, outcome, input_tokens, output_tokens, cost_usd, commit,
                 model, json.dumps(detail, default=str), attempt_id))
            self.record("attempt_finished", task_id, {
                "attempt": attempt_id, "outcome": outcome, "input_tokens": input_tokens,
                "output_tokens": output_tokens, "cost_usd": cost_usd,
                "commit": commit, "seconds": seconds,
                **({"usage_error": usage_error} if usage_error else {})}, actor=actor, ts=now)

    def amend_attempt(self, attempt_id: int, *, outcome: str,
                      detail: Mapping[str, Any]) -> None:
        """Set an ended attempt's outcome and add ``detail`` to its detail."""
        with self.transaction():
            row = self.conn.execute("SELECT detail FROM attempts WHERE id = ?",
                                    (attempt_id,)).fetchone()
            merged = (json.loads(row[0]) if row and row[0] else None) or {}
            merged.update(detail)
            self.conn.execute("UPDATE attempts SET outcome = ?, detail = ? WHERE id = ?",
                              (outcome, json.dumps(merged, default=str), attempt_id))

    def end_open_attempts(self, task_id: str, *, outcome: str, ended_at: str,
                          detail: Mapping[str, Any] | None = None,
                          run_id: str | None = None) -> int:
        """End ``task_id``'s unfinished attempts (only ``run_id``'s, given one) with
        ``outcome`` (and ``detail``, given one); returns how many."""
        sql = "UPDATE attempts SET outcome = ?, ended_at = ?"
        args: list[Any] = [outcome, ended_at]
        if detail is not None:
            sql += ", detail = ?"
            args.append(json.dumps(detail))
        sql += " WHERE task_id = ?"
        args.append(task_id)
        if run_id is not None:
            sql += " AND run_id = ?"
            args.append(run_id)
        with self.transaction():
            cur = self.conn.execute(sql + " AND outcome IS NULL", args)
        return int(cur.rowcount)

    def block(self, task_id: str, reason: str, *, actor: str) -> None:
        """Mark ``task_id`` blocked with ``reason`` (in a comment by ``actor``): the mill's
        way of giving a task back to a person."""
        with self.transaction():
            tid = self.resolve(task_id)
            self._update(tid, {"status": BLOCKED}, actor=actor)
            self._comment(tid, BLOCK_COMMENT_PREFIX + reason, author=actor)

    # -- audit ---------------------------------------------------------------------------

    def events(self, task_id: str | None = None, *, limit: int | None = None) -> list[Event]:
        limit = check.limit(limit)
        sql = "SELECT seq, ts, actor, task_id, kind, data, prev_hash, hash FROM events"
        args: list[Any] = []
        if task_id is not None:
            sql += " WHERE task_id = ?"
            args.append(self.resolve(task_id))
        sql += " ORDER BY seq"
        if limit:
            sql = f"SELECT * FROM ({sql.replace(' ORDER BY seq', ' ORDER BY seq DESC')} LIMIT {int(limit)}) ORDER BY seq"
        return [event_from_row(r) for r in self.conn.execute(sql, args)]

    def verify(self, anchors: AnchorStore | None = None, *,
               anchors_note: str | None = None) -> VerifyReport:
        """The chain, the tables replayed from the events and, given ``anchors``, the chain
        against the anchors in git (see :mod:`taskmill.audit_verify`)."""
        from .audit_verify import verify_ledger

        return verify_ledger(self.conn, anchors, anchors_note=anchors_note)

    def stats(self) -> dict[str, Any]:
        by_status = dict(self.conn.execute("SELECT status, count(*) FROM tasks GROUP BY status"))
        ready = self.conn.execute(
            "SELECT count(*) FROM tasks INDEXED BY tasks_ready WHERE status = 'open' AND gated = 0"
        ).fetchone()[0]
        held = self.conn.execute(
            "SELECT count(*) FROM tasks WHERE (gated = 1 OR status = 'blocked')"
            " AND status NOT IN ('closed', 'tombstone')").fetchone()[0]
        deps = dict(self.conn.execute("SELECT type, count(*) FROM deps GROUP BY type"))
        attempts = self.conn.execute(
            "SELECT count(*), coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),"
            " coalesce(sum(cost_usd), 0) FROM attempts").fetchone()
        return {
            "total": sum(v for k, v in by_status.items() if k not in HIDDEN_STATUSES),
            "by_status": by_status,
            "ready": ready,
            "blocked": held,
            "dependencies": deps,
            "events": self.conn.execute("SELECT count(*) FROM events").fetchone()[0],
            "attempts": attempts[0],
            "input_tokens": attempts[1],
            "output_tokens": attempts[2],
            "cost_usd": round(float(attempts[3]), 6),
        }
