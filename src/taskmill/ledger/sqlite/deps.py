"""Dependencies in SQLite, and the reads over them that containers and ``blocked`` need."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from ...model import BLOCKING_TYPES, PARENT_CHILD, Dependency
from .. import held_links, lean, lean_write
from . import readiness

_DEP_COLUMNS = lean.DEP_COLUMNS
HELD_SQL = held_links.HELD_SQL
"""A task ``blocked`` lists (:data:`taskmill.ledger.held_links.HELD_SQL`)."""


def _chunks(ids: Sequence[str], size: int = 500) -> Iterable[Sequence[str]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


class DepRows:
    """The ``deps`` table; every change keeps ``open_blockers`` and ``gated`` in step."""

    conn: sqlite3.Connection

    def has_dep(self, issue_id: str, depends_on_id: str, dep_type: str) -> bool:
        return self.conn.execute(
            "SELECT 1 FROM deps WHERE issue_id = ? AND depends_on_id = ? AND type = ?",
            (issue_id, depends_on_id, dep_type)).fetchone() is not None

    def insert_dep(self, dep: Dependency, extra: str | None = None) -> None:
        a, b, dep_type = dep.issue_id, dep.depends_on_id, dep.type
        pos = self.conn.execute("SELECT count(*) FROM deps WHERE issue_id = ?", (a,)).fetchone()[0]
        self.conn.execute(
            "INSERT INTO deps (issue_id, depends_on_id, type, created_at, created_by, extra, pos)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)", (a, b, dep_type, dep.created_at, dep.created_by,
                                              extra, pos))
        roots = [a]
        if dep_type in BLOCKING_TYPES:
            readiness.recount(self.conn, [a])
        elif dep_type == PARENT_CHILD:  # a new child of b: what waits on b's children
            roots += readiness.recount(self.conn, readiness.waiters_on(self.conn, [b]))
        if dep_type in BLOCKING_TYPES or dep_type == PARENT_CHILD:
            readiness.refresh(self.conn, roots)

    def delete_deps(self, issue_id: str, depends_on_id: str, types: Sequence[str]) -> None:
        self.conn.executemany("DELETE FROM deps WHERE issue_id = ? AND depends_on_id = ?"
                              " AND type = ?", [(issue_id, depends_on_id, t) for t in types])
        roots = [issue_id]
        if BLOCKING_TYPES.intersection(types):
            readiness.recount(self.conn, [issue_id])
        if PARENT_CHILD in types:
            roots += readiness.recount(self.conn, readiness.waiters_on(self.conn, [depends_on_id]))
        readiness.refresh(self.conn, roots)

    def deps_between(self, issue_id: str, depends_on_id: str,
                     dep_type: str | None = None) -> list[Dependency]:
        sql = f"SELECT {_DEP_COLUMNS} FROM deps WHERE issue_id = ? AND depends_on_id = ?"
        args: list[Any] = [issue_id, depends_on_id]
        if dep_type:
            sql += " AND type = ?"
            args.append(dep_type)
        return [Dependency(*r) for r in self.conn.execute(sql, args)]

    def deps_of(self, task_id: str) -> list[Dependency]:
        return [Dependency(*r) for r in self.conn.execute(lean.DEPS_OF_SQL, (task_id,))]

    def dependents_of(self, task_id: str) -> list[Dependency]:
        return [Dependency(*r) for r in self.conn.execute(lean.DEPENDENTS_OF_SQL, (task_id,))]

    def dep_edges(self, types: Iterable[str] | None = None) -> list[tuple[str, str, str]]:
        """(issue, depends on, type) of every dependency (of ``types``), by issue and position."""
        sql = "SELECT issue_id, depends_on_id, type FROM deps"
        wanted = list(types) if types is not None else None
        if wanted is not None:
            sql += f" WHERE type IN ({','.join('?' * len(wanted))})"
        return [(a, b, t) for a, b, t in self.conn.execute(sql + " ORDER BY issue_id, pos",
                                                           wanted or [])]

    def deps_with_extra(self, types: Sequence[str],
                        issue_id: str | None = None) -> list[tuple[str, str, str, str | None]]:
        sql = (f"SELECT issue_id, depends_on_id, type, extra FROM deps WHERE type IN"
               f" ({','.join('?' * len(types))})")
        args: list[Any] = list(types)
        if issue_id is not None:
            sql += " AND issue_id = ?"
            args.append(issue_id)
        return [(a, b, t, e) for a, b, t, e in self.conn.execute(sql + " ORDER BY issue_id, pos",
                                                                 args)]

    def dangling_deps(self) -> int:
        return int(self.conn.execute(
            "SELECT count(*) FROM deps WHERE depends_on_id NOT IN (SELECT id FROM tasks)"
        ).fetchone()[0])

    # -- the reads containers and blocked() need ------------------------------------------------

    def status_of(self, task_id: str) -> str | None:
        row = self.conn.execute(lean_write.STATUS_SQL, (task_id,)).fetchone()
        return None if row is None else str(row[0])

    def task_state(self, task_id: str) -> tuple[str, int, bool] | None:
        row = self.conn.execute("SELECT status, open_blockers, gated FROM tasks WHERE id = ?",
                                (task_id,)).fetchone()
        return None if row is None else (str(row[0]), int(row[1]), bool(row[2]))

    def parents(self, child: str) -> list[str]:
        return [r[0] for r in self.conn.execute(lean_write.PARENTS_SQL, (child,))]

    def holding_parents(self, child: str) -> list[str]:
        """The parents of ``child`` that hold it back: not done, and gated or
        blocked/deferred; by position."""
        return [r[0] for r in self.conn.execute(
            "SELECT p.id FROM deps d JOIN tasks p ON p.id = d.depends_on_id"
            " WHERE d.issue_id = ? AND d.type = 'parent-child'"
            " AND p.status NOT IN ('closed', 'tombstone') AND (p.gated = 1 OR p.status IN"
            " ('blocked', 'deferred')) ORDER BY d.pos", (child,))]

    def open_blockers_of(self, task_id: str) -> list[str]:
        """The tasks ``task_id`` waits on through a blocking dependency that holds it now
        (``blocks``, ``conditional-blocks``; for ``waits-for``, the spawner); by position."""
        return [r[0] for r in self.conn.execute(
            "SELECT d.depends_on_id FROM deps d LEFT JOIN tasks b ON b.id = d.depends_on_id"
            f" WHERE d.issue_id = ? AND d.type IN ('blocks', 'conditional-blocks', 'waits-for')"
            f" AND {readiness.HOLDS_SQL} ORDER BY d.pos", (task_id,))]

    def holding_parents_many(self, children: Sequence[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for chunk in _chunks(children):
            marks = ",".join("?" * len(chunk))
            for child, parent in self.conn.execute(
                    "SELECT d.issue_id, p.id FROM deps d JOIN tasks p ON p.id = d.depends_on_id"
                    f" WHERE d.issue_id IN ({marks}) AND d.type = 'parent-child'"
                    " AND p.status NOT IN ('closed', 'tombstone') AND (p.gated = 1 OR p.status"
                    " IN ('blocked', 'deferred')) ORDER BY d.issue_id, d.pos", chunk):
                out.setdefault(child, []).append(parent)
        return out

    def held_waits(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for tid, blocker in self.conn.execute(
                "SELECT d.issue_id, d.depends_on_id FROM tasks t INDEXED BY tasks_held"
                " JOIN deps d ON d.issue_id = t.id LEFT JOIN tasks b ON b.id = d.depends_on_id"
                f" WHERE {HELD_SQL.format(t='t.')} AND t.open_blockers > 0"
                " AND d.type IN ('blocks', 'conditional-blocks', 'waits-for')"
                f" AND {readiness.HOLDS_SQL} ORDER BY d.issue_id, d.pos"):
            out.setdefault(tid, []).append(blocker)
        return out

    def child_rows(self, parent: str) -> list[tuple[str, str, str]]:
        """(id, title, status) of each child of ``parent`` (tombstones too), oldest first."""
        return [(a, b, c) for a, b, c in self.conn.execute(
            "SELECT c.id, c.title, c.status FROM deps d JOIN tasks c ON c.id = d.issue_id"
            " WHERE d.depends_on_id = ? AND d.type = 'parent-child' ORDER BY c.seq", (parent,))]

    def children_done(self, parent: str) -> tuple[int, int]:
        """(children, those not done) of ``parent``."""
        total, open_ = self.conn.execute(lean_write.CHILDREN_DONE_SQL, (parent,)).fetchone()
        return int(total), int(open_)
