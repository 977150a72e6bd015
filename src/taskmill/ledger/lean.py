"""The SQL of the everyday reads (``ready``, ``show``), and a task row shaped as its JSON,
with no import at all: the lean path of the CLI (:mod:`taskmill.cli.lean`) loads this file
on its own (without the package) to answer ``ready --json`` and ``show ID --json`` in a
process that imports little more than :mod:`sqlite3`. The store (:mod:`.tasks`, :mod:`.deps`,
:mod:`.attempts`) runs the same statements, so both paths read the ledger the same way.

Nothing here may import anything (not even the standard library): keep it that way.
"""

from __future__ import annotations

TASK_FIELDS = (
    "id", "title", "description", "design", "acceptance_criteria", "notes", "status",
    "priority", "issue_type", "assignee", "created_at", "updated_at", "closed_at",
    "close_reason", "external_ref", "metadata", "checks", "agent", "hints", "gated", "role",
)
"""The columns a task is made from (:func:`taskmill.ledger.rows.task_from_row` order)."""
TASK_COLUMNS = ", ".join(TASK_FIELDS)

SCHEMA_STEPS = (
    "0001_ledger", "0002_attempts", "0003_beads_readiness", "0003_beads_readiness_backfill",
    "0004_role", "0005_order_slots", "0008_held_index",
)
"""The names of :data:`taskmill.ledger.sqlite.schema.MIGRATIONS` (a test holds them equal):
a database with exactly these applied needs no migration, so the lean path may read it."""
MIGRATIONS_SQL = "SELECT name FROM migrations"

READY_SQL = (f"SELECT {TASK_COLUMNS} FROM tasks INDEXED BY tasks_ready"
             " WHERE status = 'open' AND gated = 0 AND nonwork = 0")
"""The ready tasks (not as Beads), before any ``defer_until`` is applied; ordered by
:data:`READY_ORDER`."""
READY_ORDER = " ORDER BY priority, created_key, seq"
ANY_DEFERRED_SQL = ("SELECT 1 FROM tasks INDEXED BY tasks_deferred"
                    " WHERE defer_until IS NOT NULL LIMIT 1")
"""A row when some task has a ``defer_until`` (the lean path leaves those to the store)."""

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
JSON_COLUMNS = (15, 16, 18)
"""The positions in a task row of the fields held as JSON text (metadata, checks, hints)."""


def task_json(row: tuple[object, ...], labels: list[str], parent: object, children: int,
              children_closed: int, loads: object) -> dict[str, object]:
    """A task row (:data:`TASK_FIELDS`) as :meth:`taskmill.model.Task.to_json` shapes it;
    ``loads`` parses the JSON columns (called only for one that is not null)."""
    (tid, title, description, design, acceptance, notes, status, priority, issue_type,
     assignee, created_at, updated_at, closed_at, close_reason, external_ref, metadata,
     checks, agent, hints, gated, role) = row
    if metadata is not None or checks is not None or hints is not None:
        assert callable(loads)
        metadata = None if metadata is None else loads(metadata)
        checks = None if checks is None else loads(checks)
        hints = None if hints is None else loads(hints)
    return {
        "id": tid, "title": title, "description": description, "design": design,
        "acceptance_criteria": acceptance, "notes": notes, "status": status,
        "priority": priority, "issue_type": issue_type, "assignee": assignee,
        "labels": labels, "created_at": created_at, "updated_at": updated_at,
        "closed_at": closed_at, "close_reason": close_reason, "external_ref": external_ref,
        "metadata": metadata, "checks": checks, "agent": agent, "hints": hints, "role": role,
        "ready": status == "open" and not gated, "parent": parent, "children": children,
        "children_closed": children_closed, "container": children > 0,
    }
