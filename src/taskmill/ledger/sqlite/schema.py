"""SQLite plumbing: connections, migrations and write transactions.

The ledger is one SQLite database in WAL mode. Writers take the write lock up front
(``BEGIN IMMEDIATE``) with a busy timeout, and a lock that still cannot be had is retried
with back-off, so concurrent writers queue instead of failing with "database is locked".
Migrations are named, run in one transaction each, and recorded in ``migrations``.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeGuard, TypeVar

from ...errors import TaskmillError
from ..beads_rules import READY_EXCLUDE_TYPES, order_key
from .kept_text import migrate_kept_cells, migrate_kept_text, migrate_trigger_views

BUSY_TIMEOUT_MS = 10_000
LOCK_RETRY_SECONDS = 120.0

_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE tasks (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    design TEXT NOT NULL DEFAULT '',
    acceptance_criteria TEXT NOT NULL DEFAULT '',
    notes TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'open',
    priority INTEGER NOT NULL DEFAULT 2,
    issue_type TEXT NOT NULL DEFAULT 'task',
    assignee TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    closed_at TEXT,
    close_reason TEXT,
    external_ref TEXT,
    metadata TEXT,
    checks TEXT,
    agent TEXT,
    hints TEXT,
    extra TEXT,
    open_blockers INTEGER NOT NULL DEFAULT 0,
    gated INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tasks_ready ON tasks(priority, seq) WHERE status = 'open' AND gated = 0;
CREATE INDEX tasks_status ON tasks(status, priority, seq);
CREATE TABLE labels (
    task_id TEXT NOT NULL,
    label TEXT NOT NULL,
    pos INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (task_id, label)
) WITHOUT ROWID;
CREATE INDEX labels_label ON labels(label);
CREATE TABLE deps (
    issue_id TEXT NOT NULL,
    depends_on_id TEXT NOT NULL,
    type TEXT NOT NULL,
    created_at TEXT,
    created_by TEXT,
    extra TEXT,
    pos INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (issue_id, depends_on_id, type)
) WITHOUT ROWID;
CREATE INDEX deps_reverse ON deps(depends_on_id, type, issue_id);
CREATE TABLE comments (
    id INTEGER PRIMARY KEY,
    task_id TEXT NOT NULL,
    author TEXT NOT NULL,
    text TEXT NOT NULL,
    created_at TEXT NOT NULL,
    extra TEXT
);
CREATE INDEX comments_task ON comments(task_id, id);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    actor TEXT NOT NULL,
    task_id TEXT,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX events_task ON events(task_id, seq);
CREATE TABLE plan_keys (
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    task_id TEXT NOT NULL,
    PRIMARY KEY (source, key)
) WITHOUT ROWID;
"""

_V2_ATTEMPTS = """
CREATE TABLE attempts (
    id INTEGER PRIMARY KEY,
    task_id TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    agent TEXT,
    model TEXT,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    outcome TEXT,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL,
    commit_sha TEXT,
    log_path TEXT,
    detail TEXT,
    run_id TEXT,
    lap INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX attempts_task ON attempts(task_id, id);
"""

_V3_BEADS_READINESS = f"""
ALTER TABLE tasks ADD COLUMN created_key TEXT NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN nonwork INTEGER GENERATED ALWAYS AS (
    issue_type IN ({", ".join(f"'{t}'" for t in READY_EXCLUDE_TYPES)})
    OR coalesce(json_extract(extra, '$.fields.pinned'), 0) = 1
    OR coalesce(json_extract(extra, '$.fields.ephemeral'), 0) = 1) VIRTUAL;
ALTER TABLE tasks ADD COLUMN defer_until GENERATED ALWAYS AS (
    json_extract(extra, '$.fields.defer_until')) VIRTUAL;
DROP INDEX tasks_ready;
CREATE INDEX tasks_ready ON tasks(priority, created_key, seq)
    WHERE status = 'open' AND gated = 0 AND nonwork = 0;
CREATE INDEX tasks_deferred ON tasks(defer_until) WHERE defer_until IS NOT NULL
"""
"""Beads' readiness rules: ``created_key`` (the creation time as a key that sorts oldest
first, written with each row: :func:`~taskmill.ledger.beads_rules.order_key`), ``nonwork``
(a record ``ready`` never offers) and ``defer_until`` (from the fields an import kept)."""


def _v3_backfill(conn: sqlite3.Connection) -> None:
    """Fill ``created_key`` and recount readiness under the new rules."""
    from .readiness import recompute_all

    keys = [(order_key(c), tid) for tid, c in conn.execute("SELECT id, created_at FROM tasks")]
    conn.executemany("UPDATE tasks SET created_key = ? WHERE id = ?", keys)
    recompute_all(conn)


_V4_ROLE = """
ALTER TABLE tasks ADD COLUMN role TEXT;
ALTER TABLE attempts ADD COLUMN role TEXT;
CREATE INDEX attempts_role ON attempts(role, started_at) WHERE role IS NOT NULL
"""
"""Roles (``.taskmill/roles/NAME.toml``): the role a task is worked as, and the role each
attempt was made as (a role's daily budget is summed from its attempts)."""


_V5_ORDER_SLOTS = """
CREATE TABLE order_slots (
    order_name TEXT NOT NULL,
    slot TEXT NOT NULL,
    outcome TEXT NOT NULL,
    task_id TEXT,
    reason TEXT NOT NULL DEFAULT '',
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (order_name, slot)
) WITHOUT ROWID;
"""
"""Each order's slots (``taskmill watch``): fired, skipped or missed, recorded once each in
the transaction that fires it, so a slot is never fired twice nor lost."""
_V8_HELD_INDEX = """
CREATE INDEX tasks_held ON tasks(priority, seq)
    WHERE (gated = 1 OR status = 'blocked') AND status NOT IN ('closed', 'tombstone')
"""
"""The tasks ``blocked`` lists, in its order: read without scanning the ledger."""
_V11_LISTING_INDEXES = """
CREATE INDEX deps_parent ON deps(issue_id, pos, depends_on_id) WHERE type = 'parent-child';
CREATE INDEX deps_children ON deps(depends_on_id, issue_id) WHERE type = 'parent-child';
CREATE INDEX labels_ordered ON labels(task_id, pos, label);
"""
"""A task's parent and its children, each one small index (~20 MiB at 1M tasks, where the
``deps`` table is 124 MiB and ``deps_reverse`` 60 MiB), and its labels in their order: a
listing looks them up for every task it lists, and these stay in the page cache where the
others miss it at every probe (and need no sort per task)."""


GENERATION_TABLES = ("tasks", "labels", "deps", "comments", "events")
"""The tables whose every change moves the ledger's generation (what the listings read:
``blocked`` reads comments and events for why a task was marked blocked)."""


def generation_triggers() -> list[tuple[str, str]]:
    """``(name, SQL)`` of the triggers that draw a new generation
    (``ledger_generation.value``, a random 64-bit integer) at every row inserted into,
    changed in or deleted from :data:`GENERATION_TABLES`: by this code, an older or newer
    one, or a user's ``sqlite3`` shell alike. What is read from those tables after reading
    the generation, in one transaction or not, is at least as new as what any later reader
    of that generation would read (the CLI keeps the answers of ``ready --json``, ``list``
    and ``blocked`` under it, :mod:`taskmill.cli.lean_kept`). Random, not counted: a ledger
    restored from a copy and changed again never comes back to a generation it had."""
    return [(f"{table}_generation_{event.lower()}",
             f"CREATE TRIGGER {table}_generation_{event.lower()} AFTER {event} ON {table}"
             f" BEGIN {NEW_GENERATION_SQL}; END")
            for table in GENERATION_TABLES for event in ("INSERT", "UPDATE", "DELETE")]


NEW_GENERATION_SQL = "UPDATE ledger_generation SET value = random()"


def _v12_generation(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE ledger_generation"
                 " (id INTEGER PRIMARY KEY CHECK (id = 0), value INTEGER NOT NULL)")
    conn.execute("INSERT INTO ledger_generation (id, value) VALUES (0, random())")
    for _name, sql in generation_triggers():
        conn.execute(sql)


LINKED_LABELS, LINKED_PARENT, LINKED_CHILDREN = 1, 2, 4
"""The bits of ``tasks.linked``: the task may have labels, a parent, children (rows of
``labels``, ``parent-child`` rows of ``deps`` from it, to it). A bit clear: it has none for
certain, and the listings look for none (each look is an index probe: ~2-4 us a task at 1M
tasks). A bit set may have outlived its rows (a label removed): the look then finds
nothing, as it would have."""


def linked_of(task_id: str) -> str:
    """SQL of the :data:`LINKED_LABELS` ... bits the rows that are there give the task
    ``task_id`` (an SQL expression)."""
    return (f"(EXISTS (SELECT 1 FROM labels WHERE task_id = {task_id})"
            f" + 2 * EXISTS (SELECT 1 FROM deps WHERE issue_id = {task_id}"
            " AND type = 'parent-child')"
            f" + 4 * EXISTS (SELECT 1 FROM deps WHERE depends_on_id = {task_id}"
            " AND type = 'parent-child'))")


def _set_linked(bit: int, task_id: str) -> str:
    """SQL setting ``bit`` of the task ``task_id``, or, while no such task is there, keeping
    it for the task to take when it comes (:data:`LINKED_WAITING_TABLE`)."""
    return (f"UPDATE tasks SET linked = linked | {bit} WHERE id = {task_id}"
            f" AND linked & {bit} = 0; INSERT INTO linked_waiting (id, bits)"
            f" SELECT {task_id}, {bit} WHERE NOT EXISTS (SELECT 1 FROM tasks WHERE id = {task_id})"
            " ON CONFLICT (id) DO UPDATE SET bits = bits | excluded.bits;")


LINKED_WAITING_TABLE = ("CREATE TABLE linked_waiting (id TEXT PRIMARY KEY,"
                        " bits INTEGER NOT NULL) WITHOUT ROWID")
"""The ``linked`` bits of tasks not there (yet) that rows already name (a child's row
before its parent comes): the task takes them when it comes. Every look here and in the
triggers goes by a primary key or ``tasks.id``'s index, whatever indexes an import (an
older taskmill's) drops meanwhile."""
TAKE_WAITING_SQL = ("UPDATE tasks SET linked = linked | (SELECT w.bits FROM linked_waiting AS w"
                    " WHERE w.id = tasks.id) WHERE id IN (SELECT id FROM linked_waiting)")
"""Every task there takes the bits kept for it (then :data:`TAKEN_WAITING_SQL`)."""
TAKEN_WAITING_SQL = "DELETE FROM linked_waiting WHERE id IN (SELECT id FROM tasks)"


def linked_triggers() -> list[tuple[str, str]]:
    """``(name, SQL)`` of the triggers that set a task's ``linked`` bits whenever a row of
    its labels, its parent or its children is written (by any writer, as
    :func:`generation_triggers`), and when a task comes (or is renamed) after such rows.
    None clears a bit (a clear bit must be true; a set one need not)."""
    both = (f"{_set_linked(LINKED_PARENT, 'NEW.issue_id')}"
            f" {_set_linked(LINKED_CHILDREN, 'NEW.depends_on_id')}")
    arrived = ("WHEN EXISTS (SELECT 1 FROM linked_waiting WHERE id = NEW.id) BEGIN"
               " UPDATE tasks SET linked = linked | (SELECT bits FROM linked_waiting"
               " WHERE id = NEW.id) WHERE seq = NEW.seq;"
               " DELETE FROM linked_waiting WHERE id = NEW.id; END")
    return [
        ("labels_linked_insert", "CREATE TRIGGER labels_linked_insert AFTER INSERT ON labels"
         f" BEGIN {_set_linked(LINKED_LABELS, 'NEW.task_id')} END"),
        ("labels_linked_update", "CREATE TRIGGER labels_linked_update AFTER UPDATE ON labels"
         f" BEGIN {_set_linked(LINKED_LABELS, 'NEW.task_id')} END"),
        ("deps_linked_insert", "CREATE TRIGGER deps_linked_insert AFTER INSERT ON deps"
         f" WHEN NEW.type = 'parent-child' BEGIN {both} END"),
        ("deps_linked_update", "CREATE TRIGGER deps_linked_update AFTER UPDATE ON deps"
         f" WHEN NEW.type = 'parent-child' BEGIN {both} END"),
        ("tasks_linked_insert", "CREATE TRIGGER tasks_linked_insert AFTER INSERT ON tasks"
         f" {arrived}"),
        ("tasks_linked_rename", "CREATE TRIGGER tasks_linked_rename AFTER UPDATE OF id ON tasks"
         f" {arrived}"),
    ]


LINKED_BATCH = 50_000
"""Tasks whose ``linked`` bits the migration sets a statement at a time (what a statement
changes is kept aside until it ends: at 1M tasks in one statement, ~400 MB)."""


def _v13_linked(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE tasks ADD COLUMN linked INTEGER NOT NULL DEFAULT 0")
    conn.execute(LINKED_WAITING_TABLE)
    found = linked_of("tasks.id")
    last = conn.execute("SELECT max(seq) FROM tasks").fetchone()[0] or 0
    conn.execute("DROP TRIGGER IF EXISTS tasks_generation_update")  # (one draw, at the end)
    for first in range(0, last, LINKED_BATCH):
        conn.execute(f"UPDATE tasks SET linked = {found} WHERE seq > ? AND seq <= ?"
                     f" AND {found} != 0", (first, first + LINKED_BATCH))
    missing = "NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = {})"
    conn.execute(  # rows already naming a task not there
        "INSERT INTO linked_waiting (id, bits) SELECT id, sum(bit) FROM ("
        f" SELECT DISTINCT task_id AS id, 1 AS bit FROM labels WHERE {missing.format('task_id')}"
        f" UNION SELECT DISTINCT issue_id, 2 FROM deps WHERE type = 'parent-child'"
        f" AND {missing.format('issue_id')}"
        f" UNION SELECT DISTINCT depends_on_id, 4 FROM deps WHERE type = 'parent-child'"
        f" AND {missing.format('depends_on_id')}) GROUP BY id")
    conn.execute(dict(generation_triggers())["tasks_generation_update"])
    conn.execute(NEW_GENERATION_SQL)
    for _name, sql in linked_triggers():
        conn.execute(sql)


_NONWORK_COMPARED = " OR ".join(
    [*(f"issue_type = '{t}'" for t in READY_EXCLUDE_TYPES),
     "coalesce(json_extract(extra, '$.fields.pinned'), 0) = 1",
     "coalesce(json_extract(extra, '$.fields.ephemeral'), 0) = 1"])
READY_INDEX_SQL = ("CREATE INDEX tasks_ready ON tasks(priority, created_key, seq)"
                   " WHERE status = 'open' AND gated = 0 AND nonwork = 0")


def _v14_nonwork_compared(conn: sqlite3.Connection) -> None:
    """``nonwork`` made of comparisons, not ``issue_type IN (...)``: SQLite makes a table of
    an IN list of three or more at each run of a statement, which for a generated column is
    every row written (~4 us a row, a third of a bulk import's insert of a task). The same
    values. (Where SQLite is older than 3.35 and cannot drop a column, the old form stays.)"""
    conn.execute("DROP INDEX tasks_ready")
    try:
        conn.execute("ALTER TABLE tasks DROP COLUMN nonwork")
    except sqlite3.OperationalError:
        pass
    else:
        conn.execute("ALTER TABLE tasks ADD COLUMN nonwork INTEGER GENERATED ALWAYS AS"
                     f" ({_NONWORK_COMPARED}) VIRTUAL")
    conn.execute(READY_INDEX_SQL)


CLAIMS_INDEX_SQL = (
    "CREATE INDEX tasks_claims ON tasks(assignee, id) WHERE status = 'in_progress'")
"""The tasks in progress by assignee: who holds what (the mill's own claims, asked by
``list`` and ``blocked`` to mark the tasks a stopped run left) read from this small index,
not from every task in progress's row (1M tasks, 7,009 in progress: 18.5 -> 1.3 ms)."""

HELD_IDS_INDEX_SQL = (
    "CREATE INDEX tasks_held_ids ON tasks(id, status, open_blockers, gated)"
    " WHERE (gated = 1 OR status = 'blocked') AND status NOT IN ('closed', 'tombstone')")
"""The tasks ``blocked`` lists (``tasks_held``'s) by id, with what its links' pass asks of
each: their dependencies (a table ordered by task id) read in one sweep, not a task's row and
then its dependencies' pages each in the listing's order (1M tasks, 53,147 held: the pass's
statement 0.43 -> 0.30 s)."""


MIGRATIONS: list[tuple[str, str | Callable[[sqlite3.Connection], None]]] = [
    ("0001_ledger", _V1),
    ("0002_attempts", _V2_ATTEMPTS),
    ("0003_beads_readiness", _V3_BEADS_READINESS),
    ("0003_beads_readiness_backfill", _v3_backfill),
    ("0004_role", _V4_ROLE),
    ("0005_order_slots", _V5_ORDER_SLOTS),
    ("0008_held_index", _V8_HELD_INDEX),
    ("0011_listing_indexes", _V11_LISTING_INDEXES),
    ("0012_ledger_generation", _v12_generation),
    ("0013_task_linked", _v13_linked),
    ("0014_nonwork_compared", _v14_nonwork_compared),
    ("0015_kept_text", migrate_kept_text),
    ("0016_kept_cells", migrate_kept_cells),
    ("0017_claims_index", CLAIMS_INDEX_SQL),
    ("0018_held_ids_index", HELD_IDS_INDEX_SQL),
    ("0019_trigger_views", migrate_trigger_views),
]


T = TypeVar("T")


class DatabaseError(TaskmillError):
    code = "database"


def _is_locked(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


_PLAINLY: dict[int, tuple[str, str]] = {
    sqlite3.SQLITE_FULL: ("the disk holding the ledger is full",
                          "free some space on it, then run the command again"),
    sqlite3.SQLITE_READONLY: ("the ledger database cannot be written",
                              "check the permissions of .taskmill/ and its taskmill.db*"
                              " files, and that the disk is not mounted read-only"),
    sqlite3.SQLITE_IOERR: ("the ledger database could not be read or written",
                           "check the disk holding .taskmill/ (the system log may say more)"),
    sqlite3.SQLITE_CORRUPT: ("the ledger database is damaged",
                             "`taskmill verify` says what holds; restore .taskmill/taskmill.db"
                             " from a copy"),
    sqlite3.SQLITE_NOTADB: ("the ledger database is damaged (not a SQLite database)",
                            "restore .taskmill/taskmill.db from a copy"),
    sqlite3.SQLITE_CANTOPEN: ("the ledger database cannot be opened",
                              "check that .taskmill/ exists and can be written"),
}


def storage_failure(exc: BaseException) -> TypeGuard[sqlite3.DatabaseError]:
    """Whether SQLite raised ``exc`` for what the ledger's file or disk could not do (full,
    read-only, damaged, locked), not for what a statement asked (a defect: raised as is)."""
    return isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError


def database_error(exc: sqlite3.Error) -> DatabaseError:
    """What SQLite raised, said plainly (the disk full, the file read-only or damaged, the
    ledger locked too long), with what to do; the change it stopped was not made."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in _PLAINLY:
        message, hint = _PLAINLY[primary]
        return DatabaseError(f"{message} ({exc}); nothing was changed", hint=hint)
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or _is_locked(exc):
        return DatabaseError(f"the ledger database stayed locked ({exc}); nothing was changed",
                             hint="another taskmill process holds it: try again once it is"
                                  " done")
    return DatabaseError(f"the ledger database failed: {exc}")


def retry_locked(fn: Callable[[], T], *, deadline_s: float = LOCK_RETRY_SECONDS) -> T:
    """Run ``fn``, retrying with jittered back-off while SQLite reports a lock; any other
    error, or a lock held past ``deadline_s``, raises :func:`database_error`'s."""
    start = time.monotonic()
    delay = 0.002
    while True:
        try:
            return fn()
        except sqlite3.DatabaseError as exc:  # (a damaged file too: "not a database")
            if not _is_locked(exc) or time.monotonic() - start > deadline_s:
                raise database_error(exc) from exc
            import random  # only when the ledger is locked: not at every start-up

            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 0.1)


# The ledger holds whatever tasks and comments say: readable by its owner only. SQLite gives
# the -wal and -shm files the database file's mode.
DB_FILE_MODE = 0o600


def _create_private(path: Path | str) -> None:
    """Create the database file (empty: a valid, empty database) with :data:`DB_FILE_MODE`,
    unless it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, DB_FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)


def connect(path: Path | str) -> sqlite3.Connection:
    if str(path) != ":memory:" and not str(path).startswith("file:"):
        _create_private(path)
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000,
                           check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    if str(path) != ":memory:":
        retry_locked(lambda: conn.execute("PRAGMA journal_mode = WAL"))
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("PRAGMA cache_size = -65536")
    conn.execute("PRAGMA temp_store = MEMORY")
    # no memory-mapped reads: the mapped pages of a big ledger counted as the process's own
    # memory (list/blocked at 1M tasks: 260 MB more resident) for no measurable speed-up
    conn.execute("PRAGMA mmap_size = 0")
    return conn


@contextmanager
def write_tx(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction, holding the write lock from its first statement."""
    retry_locked(lambda: conn.execute("BEGIN IMMEDIATE"))
    try:
        yield conn
    except BaseException as exc:
        if conn.in_transaction:  # (SQLite may have rolled it back itself: a full disk)
            conn.execute("ROLLBACK")
        if storage_failure(exc):  # (a full disk, say: said plainly)
            raise database_error(exc) from exc
        raise
    try:
        retry_locked(lambda: conn.execute("COMMIT"))
    except BaseException:  # (a full disk at the commit: the connection is left usable)
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


UPGRADE_NOTICE_MIN = 50_000
"""Tasks from which a schema upgrade is announced first (it rewrites or reads every task:
11 s at 1M tasks for 0013)."""


def migrate(conn: sqlite3.Connection, notice: Callable[[str], None] | None = None
            ) -> list[str]:
    """Apply the migrations not yet recorded; returns the names applied. ``notice`` is told
    first when a ledger of :data:`UPGRADE_NOTICE_MIN` tasks or more is upgraded."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
    )
    applied_now: list[str] = []
    done = {row[0] for row in conn.execute("SELECT name FROM migrations")}
    if all(name in done for name, _ in MIGRATIONS):
        return applied_now
    with write_tx(conn):
        done = {row[0] for row in conn.execute("SELECT name FROM migrations")}
        if notice is not None and "0001_ledger" in done:
            tasks = conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
            if tasks >= UPGRADE_NOTICE_MIN:
                pending = [name for name, _ in MIGRATIONS if name not in done]
                notice(f"upgrading the ledger of {tasks:,} tasks to this taskmill's schema"
                       f" ({', '.join(pending)}): this once, it takes a while")
        for name, sql in MIGRATIONS:
            if name in done:
                continue
            if callable(sql):
                sql(conn)
            else:
                for statement in sql.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(
                "INSERT INTO migrations (name, applied_at) VALUES (?, datetime('now'))", (name,)
            )
            applied_now.append(name)
    return applied_now
