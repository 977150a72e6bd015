"""The SQL of the everyday reads (``ready``, ``show``), and the reads themselves shaped as
the JSON of :meth:`taskmill.model.Task.to_json`, importing nothing but :mod:`sqlite3`: the
lean path of the CLI (:mod:`taskmill.cli.lean`) loads this file on its own (without the
package, whose ``__init__`` imports the whole ledger) to answer ``ready --json`` and
``show ID --json`` in a process that imports little more than :mod:`sqlite3`. The SQLite
store (:mod:`.sqlite.tasks`, :mod:`.sqlite.deps`, :mod:`.sqlite.attempts`) runs the same
statements, so both paths read the ledger the same way.

Nothing here may import anything else (a test holds it so): keep it that way. The readers
return ``None`` where the full path has more to say (a ``defer_until`` to read against the
clock, a task in progress, a ledger to migrate).
"""

from __future__ import annotations

import _sqlite3  # (sqlite3's own C module: the package imports datetime and more)

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Iterator, Sequence
    from typing import Any

    Loads = Callable[[str], Any]

TASK_FIELDS = (
    "id", "title", "description", "design", "acceptance_criteria", "notes", "status",
    "priority", "issue_type", "assignee", "created_at", "updated_at", "closed_at",
    "close_reason", "external_ref", "metadata", "checks", "agent", "hints", "gated", "role",
)
"""The columns a task is made from (:func:`taskmill.ledger.rows.task_from_row` order)."""
TASK_COLUMNS = ", ".join(TASK_FIELDS)

SCHEMA_STEPS = (
    "0001_ledger", "0002_attempts", "0003_beads_readiness", "0003_beads_readiness_backfill",
    "0004_role", "0005_order_slots", "0008_held_index", "0011_listing_indexes",
    "0012_ledger_generation", "0013_task_linked", "0014_nonwork_compared", "0015_kept_text",
    "0016_kept_cells", "0017_claims_index", "0018_held_ids_index",
    "0019_trigger_views",
)
"""The names of :data:`taskmill.ledger.sqlite.schema.MIGRATIONS` (a test holds them equal):
a database with exactly these applied needs no migration, so the lean path may read it."""
MIGRATIONS_SQL = "SELECT name FROM migrations"
MMAP_SQL = "PRAGMA mmap_size = 268435456"
"""The lean reads map the ledger file (its first 256 MiB) rather than copy each page into
SQLite's cache: a fresh process reads a few hundred pages, and mapped they cost a third
fewer page faults and no copies (~4 ms less for ``ready --json`` at 10K tasks). The kept
text ``ready --json`` reads (schema 0015) lies near the file's end, so the map covers a
100K-task ledger whole (80 MB: its query on a fresh connection 5.6 -> 3.6 ms); not a
1M-task ledger's (~800 MB): the mapped pages count as the process's memory, and mapping the
first GiB once made ``ready --json`` 578 MB resident (95 MB unmapped) for no measurable
speed-up there. Only the reads: the writes map nothing."""
BUSY_TIMEOUT_MS = 10_000
"""As :data:`taskmill.ledger.sqlite.schema.BUSY_TIMEOUT_MS`."""

READY_SQL = (f"SELECT {TASK_COLUMNS} FROM tasks INDEXED BY tasks_ready"
             " WHERE status = 'open' AND gated = 0 AND nonwork = 0")
"""The ready tasks (not as Beads), before any ``defer_until`` is applied; ordered by
:data:`READY_ORDER`."""
READY_ORDER = " ORDER BY priority, created_key, seq"
ANY_DEFERRED_SQL = ("SELECT 1 FROM tasks INDEXED BY tasks_deferred"
                    " WHERE defer_until IS NOT NULL LIMIT 1")
"""A row when some task has a ``defer_until`` (the lean path leaves those to the store)."""

GENERATION_SQL = "SELECT value FROM ledger_generation"
"""The ledger's generation: a new random value at every change of a task, a label or a
dependency (:func:`taskmill.ledger.sqlite.schema.generation_triggers`)."""

TASK_SQL = f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?"
LABELS_SQL = "SELECT label FROM labels WHERE task_id = ? ORDER BY pos, label"


def labels_in_sql(marks: str) -> str:
    """The labels of the tasks whose ids fill ``marks`` (``?,?,...``), in order."""
    return f"SELECT task_id, label FROM labels WHERE task_id IN ({marks}) ORDER BY pos, label"


def children_counts_sql(marks: str) -> str:
    """(parent, children, closed children) of each of the tasks in ``marks``."""
    return ("SELECT d.depends_on_id, count(*), sum(c.status = 'closed') FROM deps d"
            " JOIN tasks c ON c.id = d.issue_id WHERE d.type = 'parent-child'"
            f" AND c.status != 'tombstone' AND d.depends_on_id IN ({marks})"
            " GROUP BY d.depends_on_id")


def parents_sql(marks: str) -> str:
    """(child, parent) of the tasks in ``marks``: the last row of a child is its parent."""
    return ("SELECT issue_id, depends_on_id FROM deps WHERE type = 'parent-child'"
            f" AND issue_id IN ({marks}) ORDER BY pos DESC, depends_on_id DESC")


# -- a task's JSON written by SQLite -------------------------------------------------------


TASK_TEXT_KEYS = ("id", "title", "description", "design", "acceptance_criteria", "notes",
                  "status", "priority", "issue_type", "assignee", "labels", "created_at",
                  "updated_at", "closed_at", "close_reason", "external_ref", "metadata",
                  "checks", "agent", "hints", "role", "ready", "parent", "children",
                  "children_closed", "container")
"""The keys of a task's kept text, in order (:func:`task_json`'s: a test holds it)."""


READY_BLOB_SQL = (
    "SELECT t.id, CAST(CASE WHEN typeof(t.priority) = 'integer' THEN x.body END AS BLOB)"
    " FROM tasks AS t INDEXED BY tasks_ready LEFT JOIN task_text AS x ON x.seq = t.seq"
    " WHERE t.status = 'open' AND t.gated = 0 AND t.nonwork = 0"
    " ORDER BY t.priority, t.created_key, t.seq")
""":data:`READY_SQL`'s tasks as (id, the task's JSON as an item of an indented list less its
closing brace, as UTF-8 bytes, or NULL where the caller writes it): the text the ledger
keeps for each task (:mod:`taskmill.ledger.sqlite.kept_text`: ``json_quote`` escapes as
:mod:`json` does), NULL where the priority is not an integer or no text is kept; a text
holding U+0001 (a JSON field set: ``metadata``, ``checks``, ``hints``, kept compact) is the
caller's to write too (:func:`ready_blobs`). Read through the ready index alone (it holds
every column asked of ``tasks``: schema 0015) and a rowid lookup each. As bytes: written
out as they are, never made Python strings (at 100K tasks, 2,666 ready, ~5 ms less in a
fresh process than decoding, joining and encoding them again)."""


DEP_COLUMNS = "issue_id, depends_on_id, type, created_at, created_by"
DEPS_OF_SQL = f"SELECT {DEP_COLUMNS} FROM deps WHERE issue_id = ? ORDER BY pos, depends_on_id"
DEPENDENTS_OF_SQL = f"SELECT {DEP_COLUMNS} FROM deps WHERE depends_on_id = ? ORDER BY issue_id"
COMMENTS_SQL = ("SELECT id, task_id, author, text, created_at FROM comments WHERE task_id = ?"
                " ORDER BY id")
ATTEMPT_FIELDS = ("id", "task_id", "iteration", "agent", "model", "started_at", "ended_at",
                  "outcome", "input_tokens", "output_tokens", "cost_usd", "commit_sha",
                  "log_path", "detail", "run_id", "lap", "role")
"""An attempt's fields, in the order :meth:`LedgerStore.attempts` reads them."""
ATTEMPTS_SQL = (f"SELECT {', '.join(ATTEMPT_FIELDS)} FROM attempts"
                " WHERE task_id = ? ORDER BY id")
CHILD_TASKS_SQL = (f"SELECT {TASK_COLUMNS} FROM tasks WHERE id IN (SELECT issue_id FROM deps"
                   " WHERE depends_on_id = ? AND type = 'parent-child') AND status != 'tombstone'"
                   " ORDER BY seq")

DEP_KEYS = ("issue_id", "depends_on_id", "type", "created_at", "created_by")
COMMENT_KEYS = ("id", "issue_id", "author", "text", "created_at")


def task_json(row: Sequence[Any], labels: list[str], parent: str | None, children: int,
              children_closed: int, loads: Loads) -> dict[str, Any]:
    """A task row (:data:`TASK_FIELDS`) as :meth:`taskmill.model.Task.to_json` shapes it;
    ``loads`` parses the JSON columns (called only for one that is not null)."""
    (tid, title, description, design, acceptance, notes, status, priority, issue_type,
     assignee, created_at, updated_at, closed_at, close_reason, external_ref, metadata,
     checks, agent, hints, gated, role) = row
    return {
        "id": tid, "title": title, "description": description, "design": design,
        "acceptance_criteria": acceptance, "notes": notes, "status": status,
        "priority": priority, "issue_type": issue_type, "assignee": assignee,
        "labels": labels, "created_at": created_at, "updated_at": updated_at,
        "closed_at": closed_at, "close_reason": close_reason, "external_ref": external_ref,
        "metadata": None if metadata is None else loads(metadata),
        "checks": None if checks is None else loads(checks), "agent": agent,
        "hints": None if hints is None else loads(hints), "role": role,
        "ready": status == "open" and not gated, "parent": parent, "children": children,
        "children_closed": children_closed, "container": children > 0,
    }


# -- the reads ---------------------------------------------------------------------------


def connect(path: str, *, mapped: bool = False) -> sqlite3.Connection | None:
    """A connection to the ledger file at ``path`` (which exists), or ``None`` when its
    schema is not exactly this code's (the store migrates it first); ``mapped``: reading
    the file mapped (:data:`MMAP_SQL`)."""
    conn = _sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    if mapped:
        conn.execute(MMAP_SQL)
    if {name for (name,) in conn.execute(MIGRATIONS_SQL)} != set(SCHEMA_STEPS):
        conn.close()
        return None
    return conn


def task_dicts(conn: sqlite3.Connection, rows: list[Any], loads: Loads) -> list[dict[str, Any]]:
    """Task rows with their labels, parent and children counts (as ``TaskRows._tasks``
    fills them), shaped as their JSON."""
    ids = [r[0] for r in rows]
    labels: dict[str, list[str]] = {i: [] for i in ids}
    parents: dict[str, str] = {}
    counts: dict[str, tuple[int, int]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for tid, label in conn.execute(labels_in_sql(marks), chunk):
            labels[tid].append(label)
        for pid, total, closed in conn.execute(children_counts_sql(marks), chunk):
            counts[pid] = (int(total), int(closed or 0))
        for cid, pid in conn.execute(parents_sql(marks), chunk):
            parents[cid] = pid
    return [task_json(r, labels[r[0]], parents.get(r[0]), *counts.get(r[0], (0, 0)), loads)
            for r in rows]


READY_BATCH = 64
"""Ready tasks read at a time by :func:`ready_blobs` (~50 KB of text: a pipe's room)."""


def ready_blobs(conn: sqlite3.Connection, limit: int | None, loads: Loads
                ) -> Iterator[list[bytes | dict[str, Any]]] | None:
    """:func:`ready` with each task's JSON as UTF-8 text less its closing line
    (:data:`READY_BLOB_SQL`), or as its dict (:func:`task_json`) where SQLite leaves it to
    the caller (a JSON field set), :data:`READY_BATCH` tasks at a time, read as they are
    asked for (in one read of the ledger: the statement holds it until its last row); ``None``
    when a task has a ``defer_until``. Read a batch at a time, the text of each is written
    and dropped before the next is read: at 100K tasks (2.2 MB) a fresh process reading them
    all at once spent ~2.5 ms more, most of it the new memory's page faults."""
    if conn.execute(ANY_DEFERRED_SQL).fetchone() is not None:
        return None
    sql = READY_BLOB_SQL + (f" LIMIT {int(limit)}" if limit else "")
    return _blob_batches(conn, conn.execute(sql), loads)


def _blob_batches(conn: sqlite3.Connection, cursor: sqlite3.Cursor, loads: Loads
                  ) -> Iterator[list[bytes | dict[str, Any]]]:
    while rows := cursor.fetchmany(READY_BATCH):
        yield [text if text is not None and b"\x01" not in text
               else task_dicts(conn, [conn.execute(TASK_SQL, (tid,)).fetchone()], loads)[0]
               for tid, text in rows]


def generation(conn: sqlite3.Connection) -> int:
    """The ledger's generation (:data:`GENERATION_SQL`)."""
    return int(conn.execute(GENERATION_SQL).fetchone()[0])


def ready(conn: sqlite3.Connection, limit: int | None, loads: Loads
          ) -> list[dict[str, Any]] | None:
    """``Ledger.ready(limit=limit)`` (not as Beads) as JSON, or ``None`` when a task has a
    ``defer_until`` (read against the ledger's clock by the store)."""
    if conn.execute(ANY_DEFERRED_SQL).fetchone() is not None:
        return None
    sql = READY_SQL + READY_ORDER + (f" LIMIT {int(limit)}" if limit else "")
    return task_dicts(conn, conn.execute(sql).fetchall(), loads)


def show(conn: sqlite3.Connection, task_id: str, loads: Loads) -> dict[str, Any] | None:
    """``Ledger.show(task_id).to_json(full=True)`` for a task of exactly that id, or
    ``None`` (no such id: the store resolves it; a task in progress: the CLI says whether
    its run was interrupted)."""
    row = conn.execute(TASK_SQL, (task_id,)).fetchone()
    if row is None or row[6] == "in_progress":
        return None
    data = task_dicts(conn, [row], loads)[0]
    data["dependencies"] = [dict(zip(DEP_KEYS, r, strict=True))
                            for r in conn.execute(DEPS_OF_SQL, (task_id,))]
    data["dependents"] = [dict(zip(DEP_KEYS, r, strict=True))
                          for r in conn.execute(DEPENDENTS_OF_SQL, (task_id,))]
    data["comments"] = [dict(zip(COMMENT_KEYS, r, strict=True))
                        for r in conn.execute(COMMENTS_SQL, (task_id,))]
    attempts = []
    for r in conn.execute(ATTEMPTS_SQL, (task_id,)):
        item = dict(zip(ATTEMPT_FIELDS, r, strict=True))
        if item["detail"] is not None:
            item["detail"] = loads(item["detail"])
        attempts.append(item)
    data["attempts"] = attempts
    data["child_tasks"] = task_dicts(conn, conn.execute(CHILD_TASKS_SQL, (task_id,)).fetchall(),
                                     loads)
    return data
