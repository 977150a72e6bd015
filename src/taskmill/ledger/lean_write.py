"""The SQL of the everyday writes (a task's row, its labels, the audit event and the chain's
head), and the lean path's ``create``, ``update`` and ``close`` made of them.

The SQLite store (:mod:`.sqlite.tasks`, :mod:`.sqlite.events`) runs these same functions for
every write, and the rules around them (the event's JSON and hash, the id, the diff) are
:mod:`taskmill.lean_rules`' for both, so the two paths write the same rows and events. The
CLI's lean write path (:mod:`taskmill.cli.lean_write`) loads this file on its own, without
the package (whose ``__init__`` imports the whole ledger): nothing here may import anything
but :mod:`taskmill.lean_rules` (a test holds it so).

The lean writes do only what they can do exactly as :class:`taskmill.ledger.Ledger` does:
each returns ``None`` or ``False``, having rolled back, wherever the ledger would do more
(a parent that closes with its last child; a task in progress; an id that is not exactly a
task's). The caller then runs the full path. A close keeps readiness in step by the store's
own :func:`taskmill.ledger.lean_readiness.status_changed`, which the caller passes in.
"""

from __future__ import annotations

from taskmill import lean_rules as rules

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

    Head = tuple[int, str]
    StatusHook = Callable[[sqlite3.Connection, str, str, str], None]

HEAD_SQL = "SELECT value FROM meta WHERE key = 'audit_head'"
HEAD_SET_SQL = ("INSERT INTO meta (key, value) VALUES ('audit_head', ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value")
EVENT_INSERT_SQL = ("INSERT INTO events (seq, ts, actor, task_id, kind, data, prev_hash, hash)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
LABEL_INSERT_SQL = "INSERT OR REPLACE INTO labels (task_id, label, pos) VALUES (?, ?, ?)"
"""A new task's labels: a row left for its id with no task (written behind taskmill's
back) is the task's from now on, or replaced by the task's own (not a UNIQUE error)."""
EXISTS_SQL = ("SELECT 1 FROM tasks WHERE id = ?1"
              " UNION ALL SELECT 1 FROM deps WHERE depends_on_id = ?1"
              " LIMIT 1")
"""Whether an id is taken for a new task: a task has it, or a dependency names it (a task
given that id would be held by, or hold, what names it: readiness the write would not
recount)."""
MAX_SEQ_SQL = "SELECT max(seq) FROM tasks"
PARENTS_SQL = ("SELECT p.id FROM deps d JOIN tasks p ON p.id = d.depends_on_id"
               " WHERE d.issue_id = ? AND d.type = 'parent-child' ORDER BY d.pos")
"""A task's parents, in order (``LedgerStore.parents``)."""
CHILDREN_DONE_SQL = ("SELECT count(*), coalesce(sum(c.status NOT IN ('closed', 'tombstone')), 0)"
                     " FROM deps d JOIN tasks c ON c.id = d.issue_id"
                     " WHERE d.depends_on_id = ? AND d.type = 'parent-child'")
"""(children, those not done) of a task (``LedgerStore.children_done``)."""
STATUS_SQL = "SELECT status FROM tasks WHERE id = ?"
SYNCHRONOUS_SQL = "PRAGMA synchronous = NORMAL"
"""As :func:`taskmill.ledger.sqlite.schema.connect` sets it."""


# -- the statements both paths run ------------------------------------------------------


def read_head(conn: sqlite3.Connection) -> Head:
    """The audit chain's head: (last seq, its hash)."""
    row = conn.execute(HEAD_SQL).fetchone()
    if row is None:
        return 0, rules.GENESIS
    seq, digest = row[0].split(":", 1)
    return int(seq), digest


def append_event(conn: sqlite3.Connection, head: Head, *, ts: str, actor: str,
                 task_id: str | None, kind: str, data: Mapping[str, Any]) -> Head:
    """Insert the event after ``head``, chained to it; the new head."""
    last_seq, prev = head
    seq = last_seq + 1
    text = rules.event_text(data)
    digest = rules.chain_hash(prev, rules.canonical(seq, ts, actor, task_id, kind, text))
    conn.execute(EVENT_INSERT_SQL, (seq, ts, actor, task_id, kind, text, prev, digest))
    return seq, digest


def set_head(conn: sqlite3.Connection, head: Head) -> None:
    """Record the chain's new head (in the transaction that appended its events)."""
    conn.execute(HEAD_SET_SQL, (f"{head[0]}:{head[1]}",))


def insert_task(conn: sqlite3.Connection, values: Mapping[str, Any],
                labels: Sequence[str]) -> None:
    """A task's row (``values``: columns, JSON already as text) and its labels."""
    cols = list(values)
    conn.execute(f"INSERT INTO tasks ({', '.join(cols)}) VALUES ({','.join('?' * len(cols))})",
                 list(values.values()))
    if labels:
        conn.executemany(LABEL_INSERT_SQL, [(values["id"], lb, i) for i, lb in enumerate(labels)])


def update_task(conn: sqlite3.Connection, task_id: str, values: Mapping[str, Any]) -> None:
    """Set columns of a task's row (``values``: JSON already as text)."""
    assignments = ", ".join(f"{k} = ?" for k in values)
    conn.execute(f"UPDATE tasks SET {assignments} WHERE id = ?", (*values.values(), task_id))


# -- the lean writes ----------------------------------------------------------------------


def prepare(conn: sqlite3.Connection) -> None:
    """Set up a connection (opened by :func:`taskmill.ledger.lean.connect`) for writing as
    the store's is."""
    conn.execute(SYNCHRONOUS_SQL)


def task_row(conn: sqlite3.Connection, task_id: str) -> Any:
    """The row of the task (:data:`taskmill.ledger.lean.TASK_FIELDS`), or ``None``."""
    return conn.execute(f"SELECT {', '.join(_FIELDS)} FROM tasks WHERE id = ?",
                        (task_id,)).fetchone()



def create(conn: sqlite3.Connection, *, prefix: str, actor: str, now: str, title: str,
           fields: Mapping[str, Any], labels: Sequence[str]) -> str | None:
    """``Ledger.create(title, **fields, labels=labels)`` for a task without dependencies,
    in one transaction (``fields``: validated; ``now``: in :func:`taskmill.clock.iso`'s form,
    which is its own order key); its id, or ``None``."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        def exists(tid: str) -> bool:
            return conn.execute(EXISTS_SQL, (tid,)).fetchone() is not None

        max_seq = int(conn.execute(MAX_SEQ_SQL).fetchone()[0] or 0)
        tid = rules.pick_id(prefix, title, now, max_seq, exists)
        if tid is None:
            conn.execute("ROLLBACK")
            return None
        values: dict[str, Any] = {
            "id": tid, "title": title, "description": "", "design": "",
            "acceptance_criteria": "", "notes": "", "status": "open", "priority": 2,
            "issue_type": "task", "assignee": None, "created_at": now, "updated_at": now,
            "closed_at": None, "external_ref": None, "metadata": None, "checks": None,
            "agent": None, "hints": None, "role": None}
        values.update(fields)
        label_list = list(dict.fromkeys(labels))
        insert_task(conn, {**values, "created_key": now}, label_list)
        head = append_event(conn, read_head(conn), ts=now, actor=actor, task_id=tid,
                            kind="created", data={"new": rules.created_fields(values, label_list)})
        set_head(conn, head)
        conn.execute("COMMIT")
        return tid
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def change(conn: sqlite3.Connection, *, actor: str, now: str, task_id: str,
           changes: Mapping[str, Any], close: bool = False, plain_title: bool = False,
           status_changed: StatusHook | None = None) -> bool:
    """``Ledger.update(task_id, changes)`` (``close``: ``Ledger.close_many([task_id], ...)``,
    ``changes`` holding the status and any reason) of the task of exactly that id, in one
    transaction, or ``False`` (rolled back) where the ledger would do more or refuse: a
    status changed other than by ``close``; a close of a task in progress or already closed
    (an error), or whose parent would close with it (its container follows: more changes
    and events), or without ``status_changed`` (the store's readiness update,
    :func:`taskmill.ledger.lean_readiness.status_changed`); a JSON field. ``plain_title``:
    also ``False`` when the task's title holds a control character (the text output
    escapes those)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = task_row(conn, task_id)
        ok = row is not None and not (set(changes) & {"metadata", "checks", "hints"}) \
            and not (plain_title and not rules.is_plain(row[1]))
        if ok and ("status" in changes or close):
            ok = (close and status_changed is not None
                  and set(changes) <= {"status", "close_reason"}
                  and changes.get("status") == "closed"
                  and row[6] in ("open", "blocked", "deferred"))
        if not ok:
            conn.execute("ROLLBACK")
            return False
        current = dict(zip(_FIELDS, row, strict=True))
        diff, values = rules.changed_values(current.__getitem__, changes, lambda: now)
        if diff:
            update_task(conn, task_id, values)
            if "status" in diff:
                assert status_changed is not None
                status_changed(conn, task_id, diff["status"][0], diff["status"][1])
                if _a_parent_follows(conn, task_id):
                    conn.execute("ROLLBACK")
                    return False
            head = append_event(conn, read_head(conn), ts=now, actor=actor, task_id=task_id,
                                kind="updated", data={"changes": diff})
            set_head(conn, head)
        conn.execute("COMMIT")
        return True
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _a_parent_follows(conn: sqlite3.Connection, task_id: str) -> bool:
    """Whether a parent of ``task_id``, just closed, closes too: it is not done and all its
    children are (:func:`taskmill.ledger.containers.status_changed`)."""
    for (pid,) in conn.execute(PARENTS_SQL, (task_id,)).fetchall():
        (status,) = conn.execute(STATUS_SQL, (pid,)).fetchone()
        total, open_ = conn.execute(CHILDREN_DONE_SQL, (pid,)).fetchone()
        if rules.parent_closes(status, int(total), int(open_)):
            return True
    return False


_FIELDS = ("id", "title", "description", "design", "acceptance_criteria", "notes", "status",
           "priority", "issue_type", "assignee", "created_at", "updated_at", "closed_at",
           "close_reason", "external_ref", "metadata", "checks", "agent", "hints", "gated",
           "role")
"""A task's columns (:data:`taskmill.ledger.lean.TASK_FIELDS`; a test holds them equal)."""
