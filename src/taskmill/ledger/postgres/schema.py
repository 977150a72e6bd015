"""PostgreSQL plumbing: connections, the writer lock, and this store's own migrations.

The schema mirrors the SQLite store's (:mod:`taskmill.ledger.sqlite.schema`) migration for
migration, under the same names, so a ledger moves between them column for column. Text
that is sorted or compared is ``COLLATE "C"`` (byte order, as SQLite compares), whatever the
database's own collation. Migrations run under the writer lock, each recorded in
``migrations``; several processes opening a new database at once apply them once.

**Writers are serialised.** A write transaction takes a transaction-scoped advisory lock (the
*writer lock*, one per schema) before its first statement, as SQLite's ``BEGIN IMMEDIATE``
takes the write lock: the audit chain's head is read and moved by one writer at a time, so
the chain stays a chain under any number of writers on any number of machines, and the
readiness counters, kept incrementally, see every committed change before they are updated.
Readers never wait for it (MVCC).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from ...errors import TaskmillError
from ..beads_rules import READY_EXCLUDE_TYPES

T = 'TEXT COLLATE "C"'
"""A text column (byte order)."""

_V1 = f"""
CREATE TABLE meta (key {T} PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE tasks (
    seq BIGINT PRIMARY KEY,
    id {T} NOT NULL UNIQUE,
    title TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    design TEXT NOT NULL DEFAULT '',
    acceptance_criteria TEXT NOT NULL DEFAULT '',
    notes TEXT NOT NULL DEFAULT '',
    status {T} NOT NULL DEFAULT 'open',
    priority INTEGER NOT NULL DEFAULT 2,
    issue_type {T} NOT NULL DEFAULT 'task',
    assignee {T},
    created_at {T} NOT NULL,
    updated_at {T} NOT NULL,
    closed_at {T},
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
    task_id {T} NOT NULL,
    label {T} NOT NULL,
    pos INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (task_id, label)
);
CREATE INDEX labels_label ON labels(label);
CREATE TABLE deps (
    issue_id {T} NOT NULL,
    depends_on_id {T} NOT NULL,
    type {T} NOT NULL,
    created_at TEXT,
    created_by TEXT,
    extra TEXT,
    pos INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (issue_id, depends_on_id, type)
);
CREATE INDEX deps_reverse ON deps(depends_on_id, type, issue_id);
CREATE TABLE comments (
    id BIGINT PRIMARY KEY,
    task_id {T} NOT NULL,
    author TEXT NOT NULL,
    text TEXT NOT NULL,
    created_at TEXT NOT NULL,
    extra TEXT
);
CREATE INDEX comments_task ON comments(task_id, id);
CREATE TABLE events (
    seq BIGINT PRIMARY KEY,
    ts TEXT NOT NULL,
    actor TEXT NOT NULL,
    task_id {T},
    kind {T} NOT NULL,
    data TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX events_task ON events(task_id, seq);
CREATE TABLE plan_keys (
    source {T} NOT NULL,
    key {T} NOT NULL,
    task_id {T} NOT NULL,
    PRIMARY KEY (source, key)
)
"""

_V2_ATTEMPTS = f"""
CREATE TABLE attempts (
    id BIGINT PRIMARY KEY,
    task_id {T} NOT NULL,
    iteration INTEGER NOT NULL,
    agent TEXT,
    model TEXT,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    outcome {T},
    input_tokens BIGINT NOT NULL DEFAULT 0,
    output_tokens BIGINT NOT NULL DEFAULT 0,
    cost_usd DOUBLE PRECISION,
    commit_sha TEXT,
    log_path TEXT,
    detail TEXT,
    run_id TEXT,
    lap INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX attempts_task ON attempts(task_id, id)
"""

_FIELDS = "(extra::jsonb #> '{fields}')"
_V3_BEADS_READINESS = f"""
ALTER TABLE tasks ADD COLUMN created_key {T} NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN nonwork BOOLEAN GENERATED ALWAYS AS (
    issue_type IN ({", ".join(f"'{t}'" for t in READY_EXCLUDE_TYPES)})
    OR coalesce({_FIELDS} -> 'pinned' IN ('true'::jsonb, '1'::jsonb), false)
    OR coalesce({_FIELDS} -> 'ephemeral' IN ('true'::jsonb, '1'::jsonb), false)) STORED;
ALTER TABLE tasks ADD COLUMN defer_until {T} GENERATED ALWAYS AS (
    CASE WHEN jsonb_typeof({_FIELDS} -> 'defer_until') = 'string'
    THEN {_FIELDS} ->> 'defer_until' END) STORED;
DROP INDEX tasks_ready;
CREATE INDEX tasks_ready ON tasks(priority, created_key, seq)
    WHERE status = 'open' AND gated = 0 AND NOT nonwork;
CREATE INDEX tasks_deferred ON tasks(defer_until) WHERE defer_until IS NOT NULL;
CREATE FUNCTION tm_waits_gate(extra text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN ((extra::jsonb #>> '{{fields,metadata}}')::jsonb) ->> 'gate';
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$
"""
"""Beads' readiness rules, as SQLite's 0003: ``created_key`` (written with each row),
``nonwork`` and ``defer_until`` (generated from the fields an import kept, as SQLite's
``json_extract`` reads them: ``defer_until`` only when a string, which is all
:func:`~taskmill.ledger.beads_rules.deferred` reads), and ``tm_waits_gate`` (the gate a
``waits-for`` dependency's metadata names: Beads' ``ParseWaitsForGateMetadata``; a value
that is not JSON names none). ``{ANY_CHILDREN}`` is the gate that differs."""


def _v3_backfill(conn: psycopg.Connection[Any]) -> None:
    """As SQLite's: fill ``created_key`` and recount readiness (a ledger made empty by the
    migrations has nothing to fill; kept so the two lists stay step for step)."""
    from ..beads_rules import order_key
    from .readiness import recompute_all

    keys = [(order_key(c), tid) for tid, c in conn.execute("SELECT id, created_at FROM tasks")]
    if keys:
        with conn.cursor() as cur:
            cur.executemany("UPDATE tasks SET created_key = %s WHERE id = %s", keys)
    recompute_all(conn)


_V4_ROLE = f"""
ALTER TABLE tasks ADD COLUMN role {T};
ALTER TABLE attempts ADD COLUMN role {T};
CREATE INDEX attempts_role ON attempts(role, (started_at COLLATE "C")) WHERE role IS NOT NULL
"""
"""Roles, as SQLite's 0004: the role a task is worked as, and the role each attempt was made
as. ``started_at`` is compared in byte order (``COLLATE "C"``, as the index is built) when a
role's spend since a time is summed."""

_V5_ORDER_SLOTS = f"""
CREATE TABLE order_slots (
    order_name {T} NOT NULL,
    slot {T} NOT NULL,
    outcome {T} NOT NULL,
    task_id {T},
    reason TEXT NOT NULL DEFAULT '',
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (order_name, slot)
)
"""
"""Each order's slots (``taskmill watch``), as SQLite's 0005."""

_V8_HELD_INDEX = """
CREATE INDEX tasks_held ON tasks(priority, seq)
    WHERE (gated = 1 OR status = 'blocked') AND status NOT IN ('closed', 'tombstone')
"""
"""The tasks ``blocked`` lists, in its order, as SQLite's 0008."""


Migration = tuple[str, str | Callable[[psycopg.Connection[Any]], None]]

MIGRATIONS: list[Migration] = [
    ("0001_ledger", _V1),
    ("0002_attempts", _V2_ATTEMPTS),
    ("0003_beads_readiness", _V3_BEADS_READINESS),
    ("0003_beads_readiness_backfill", _v3_backfill),
    ("0004_role", _V4_ROLE),
    ("0005_order_slots", _V5_ORDER_SLOTS),
    ("0008_held_index", _V8_HELD_INDEX),
]
"""This store's migrations: SQLite's list (``ledger/sqlite/schema.py``), step for step, in
PostgreSQL's words. A migration added there is added here under the same name."""


class DatabaseError(TaskmillError):
    code = "database"


SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def writer_lock_key(schema: str) -> int:
    """The advisory lock key of ``schema``'s writer lock (a signed 64-bit number)."""
    digest = hashlib.sha256(f"taskmill-ledger:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def connect(url: str, schema: str) -> psycopg.Connection[Any]:
    """A connection in autocommit mode (each read its own statement; writes in explicit
    transactions) whose search path is ``schema``, created if missing."""
    if not SCHEMA_RE.match(schema):
        raise DatabaseError(f"schema name {schema!r}: lower-case letters, digits and '_'")
    try:
        conn = psycopg.connect(url, autocommit=True)
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot connect to the ledger database {where(url)}: "
                            f"{_without_password(str(exc), url)}".strip(),
                            hint="check [ledger] url in .taskmill/config.toml or "
                                 "TASKMILL_DATABASE_URL, and that the server is up") from exc
    if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s",
                    (schema,)).fetchone() is None:
        with conn.transaction():  # several processes may be first at once
            lock_writer(conn, schema)
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    conn.execute(f"SET search_path TO {schema}")
    return conn


def where(url: str) -> str:
    """Which database of which server ``url`` names (``db at host:port``), for a message:
    never its password."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.Error:
        return "(an URL libpq cannot read)"
    host = str(info.get("host") or info.get("hostaddr") or "localhost")
    return f"{info.get('dbname') or '(default)'} at {host}:{info.get('port') or 5432}"


def _without_password(text: str, url: str) -> str:
    try:
        password = conninfo_to_dict(url).get("password")
    except psycopg.Error:
        return text
    return text.replace(str(password), "***") if password else text


def lock_writer(conn: psycopg.Connection[Any], schema: str) -> None:
    """Take the writer lock (inside a transaction: released when it ends)."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (writer_lock_key(schema),))


def migrate(conn: psycopg.Connection[Any], schema: str) -> list[str]:
    """Apply the migrations not yet recorded; returns the names applied."""
    if conn.execute("SELECT to_regclass('migrations')").fetchall()[0][0] is not None:
        done = {r[0] for r in conn.execute("SELECT name FROM migrations")}
        if all(name in done for name, _ in MIGRATIONS):
            return []
    applied: list[str] = []
    with conn.transaction():
        lock_writer(conn, schema)
        conn.execute("CREATE TABLE IF NOT EXISTS migrations"
                     " (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
        done = {r[0] for r in conn.execute("SELECT name FROM migrations")}
        for name, step in MIGRATIONS:
            if name in done:
                continue
            if callable(step):
                step(conn)
            else:
                conn.execute(step.encode())
            conn.execute("INSERT INTO migrations (name, applied_at) VALUES (%s, now()::text)",
                         (name,))
            applied.append(name)
    return applied
