"""Each task's listing text, kept: ``task_text`` holds, for every task not done, the JSON
text ``list --json``, ``blocked --json`` and ``ready --json`` print for it, made by SQLite
(:data:`TASK_JSON_SQL`) when the task, its labels, its parent or its children change, by
triggers (so by any writer: this code, an older or newer one, a user's ``sqlite3`` shell).
``task_cells`` holds, for the same tasks and kept by the same triggers, the cells of the task
tables (:data:`CELLS`: ``list`` and ``blocked`` without ``--json``), in rows small enough
that a listing's lookups stay within a few thousand pages.

Made per row, that text is most of what a listing costs (``printf``/``json_quote`` over 24
fields and three index probes: ~12-19 us a task; 66,604 open tasks at 1M: ~1.5 s of CPU);
read from here, a rowid lookup each. A listing reads it through a ``LEFT JOIN`` and makes
the text of a task without a row itself (:data:`KEPT_JSON_SQL`), so a row missing is
slower, never wrong; a row that is wrong is what ``taskmill verify`` looks for
(:func:`kept_text_differences`).

A done task (``closed``, ``tombstone``) has no row: of a 1M ledger (912K closed), 88K rows,
73 MB of text (the database ~12% bigger). A bulk import drops the triggers and makes the
rows once before its commit (:func:`refill`: ~2 s at 1M).
"""

from __future__ import annotations

import re
import sqlite3

_LABELS = (  # (labels, parent and children looked for only where ``linked`` says they may
    # be: an index probe each, saved; :data:`~taskmill.ledger.sqlite.schema.LINKED_LABELS`)
    "CASE WHEN t.linked & 1 = 0 THEN '[]' ELSE (SELECT CASE WHEN count(*) = 0 THEN '[]'"
    " ELSE '[\n      ' || group_concat(q, ',\n      ') || '\n    ]' END"
    " FROM (SELECT json_quote(l.label) AS q FROM labels l INDEXED BY labels_ordered"
    " WHERE l.task_id = t.id"
    " ORDER BY l.pos, l.label)) END"
)
_PARENT = (
    "CASE WHEN t.linked & 2 = 0 THEN 'null' ELSE json_quote((SELECT p.depends_on_id FROM deps p"
    " INDEXED BY deps_parent WHERE p.issue_id = t.id"
    " AND p.type = 'parent-child' ORDER BY p.pos, p.depends_on_id LIMIT 1)) END"
)
_NO_CHILDREN = "'0,\n    \"children_closed\": 0,\n    \"container\": false'"
_CHILDREN = (
    f"CASE WHEN t.linked & 4 = 0 THEN {_NO_CHILDREN} WHEN EXISTS (SELECT 1 FROM deps cd"
    " INDEXED BY deps_children WHERE cd.depends_on_id = t.id"
    " AND cd.type = 'parent-child') THEN (SELECT count(*) || ',\n    \"children_closed\": '"
    " || coalesce(sum(c.status = 'closed'), 0) || ',\n    \"container\": '"
    " || CASE WHEN count(*) > 0 THEN 'true' ELSE 'false' END"
    " FROM deps cd INDEXED BY deps_children JOIN tasks c ON c.id = cd.issue_id"
    " WHERE cd.depends_on_id = t.id AND cd.type = 'parent-child' AND c.status != 'tombstone')"
    f" ELSE {_NO_CHILDREN} END"
)


def _nullable(column: str) -> str:
    """``json_quote`` of a column that is often null (the test is cheaper than the call)."""
    return f"CASE WHEN t.{column} IS NULL THEN 'null' ELSE json_quote(t.{column}) END"


def _json_field(column: str) -> str:
    return f"CASE WHEN t.{column} IS NULL THEN 'null' ELSE char(1) || t.{column} || char(1) END"


TEXT_FIELDS: list[tuple[str, str]] = [
    ("id", "json_quote(t.id)"),
    ("title", "json_quote(t.title)"),
    ("description", "json_quote(t.description)"),
    ("design", "json_quote(t.design)"),
    ("acceptance_criteria", "json_quote(t.acceptance_criteria)"),
    ("notes", "json_quote(t.notes)"),
    ("status", "json_quote(t.status)"),
    ("priority", "json_quote(t.priority)"),
    ("issue_type", "json_quote(t.issue_type)"),
    ("assignee", _nullable("assignee")),
    ("labels", _LABELS),
    ("created_at", "json_quote(t.created_at)"),
    ("updated_at", "json_quote(t.updated_at)"),
    ("closed_at", _nullable("closed_at")),
    ("close_reason", _nullable("close_reason")),
    ("external_ref", _nullable("external_ref")),
    ("metadata", _json_field("metadata")),
    ("checks", _json_field("checks")),
    ("agent", _nullable("agent")),
    ("hints", _json_field("hints")),
    ("role", _nullable("role")),
    ("ready", "CASE WHEN t.status = 'open' AND NOT coalesce(t.gated, 0) THEN 'true'"
              " ELSE 'false' END"),
    ("parent", _PARENT),
    ("children", _CHILDREN),  # children, children_closed and container
]

TASK_JSON_SQL = ("printf('{" + ",".join(f'\n    "{name}": %s' for name, _ in TEXT_FIELDS) + "', "
                 + ", ".join(expr for _, expr in TEXT_FIELDS) + ")")
"""The task ``t`` (a row of ``tasks``) as the text of ``Task.to_json()`` up to
``container``, in an item's indentation, without its closing brace (SQL string literals
hold the line breaks)."""


CELLS: list[tuple[str, str]] = [
    ("id", "t.id"),
    ("parent", "CASE WHEN t.linked & 2 THEN (SELECT p.depends_on_id FROM deps p INDEXED BY"
               " deps_parent WHERE p.issue_id = t.id AND p.type = 'parent-child'"
               " ORDER BY p.pos, p.depends_on_id LIMIT 1) END"),
    ("priority", "t.priority"),
    ("issue_type", "t.issue_type"),
    ("status", "t.status"),
    ("ready", "t.status = 'open' AND NOT coalesce(t.gated, 0)"),
    ("closed", "CASE WHEN t.linked & 4 = 0 THEN NULL WHEN EXISTS (SELECT 1 FROM deps cd"
               " INDEXED BY deps_children WHERE cd.depends_on_id = t.id"
               " AND cd.type = 'parent-child') THEN (SELECT CASE WHEN count(*) > 0"
               " THEN coalesce(sum(c.status = 'closed'), 0) || '/' || count(*) || ' closed'"
               " END FROM deps cd INDEXED BY deps_children JOIN tasks c ON c.id = cd.issue_id"
               " WHERE cd.depends_on_id = t.id AND cd.type = 'parent-child'"
               " AND c.status != 'tombstone') END"),
    ("title", "t.title"),
    ("tags", "CASE WHEN t.linked & 1 THEN (SELECT group_concat(q.label, ', ') FROM"
             " (SELECT l.label FROM labels l INDEXED BY labels_ordered WHERE l.task_id = t.id"
             " ORDER BY l.pos, l.label) q) END"),
    ("role", "t.role"),
]
"""What the task tables show of the task ``t``, in :data:`taskmill.ledger.store.CellRow`'s
order: id, parent, priority, type, status, ready, the container's "2/5 closed" (None when it
has no children: tombstones left out), title, labels joined by ", " (None when none),
role."""
_INTEGERS = ("priority", "ready")
CELLS_TABLE_SQL = ("CREATE TABLE task_cells (seq INTEGER NOT NULL, "
                   + ", ".join(f"{name} {'INTEGER' if name in _INTEGERS else 'TEXT'}"
                               for name, _ in CELLS)
                   + ", PRIMARY KEY (status, priority, seq)) WITHOUT ROWID")
"""``seq``: the task's ``tasks.seq``; then :data:`CELLS` (schema 0016), in the order a
listing of one status reads them (:data:`KEPT_LISTING_SQL`: one range of one b-tree). Each
column has the type of the column of ``tasks`` it comes from: the same values, and a join on
``(status, priority, seq)`` finds its row through the key (a key column of another type
than the value it is compared with is not searched, only scanned)."""
CELLS_JOIN_SQL = (" LEFT JOIN task_cells k ON k.status = t.status AND k.priority = t.priority"
                  " AND k.seq = t.seq")
KEPT_CELLS_SQL = ", ".join(f"CASE WHEN k.seq IS NULL THEN {sql} ELSE k.{name} END"
                           for name, sql in CELLS)
""":data:`CELLS` of ``t`` read from its kept row ``k`` (``LEFT JOIN``
:data:`CELLS_JOIN_SQL`), made here where there is none: ``t``'s own row is then not read
(SQLite defers that lookup until a column of it is asked for)."""
KEPT_LISTING_SQL = ("SELECT " + ", ".join(name for name, _ in CELLS)
                    + " FROM task_cells WHERE status = ?")
"""The kept cells of the tasks of one status (then the span's condition on ``(priority,
seq)``, then ``ORDER BY priority, seq``): what a listing of one status not done reads when
every such task has its row (:func:`kept_cells_complete`)."""


def kept_cells_complete(conn: sqlite3.Connection, status: str) -> bool:
    """Whether as many tasks of ``status`` have kept cells as there are (the triggers keep
    them so; an import's refill, a row deleted by hand or a done status are the cases where
    not)."""
    return bool(conn.execute(
        "SELECT (SELECT count(*) FROM tasks WHERE status = ?1)"
        " = (SELECT count(*) FROM task_cells WHERE status = ?1)", (status,)).fetchone()[0])


DONE = ("closed", "tombstone")
"""The statuses of the tasks nothing is kept for."""
DONE_SQL = "('closed', 'tombstone')"
TABLE_SQL = "CREATE TABLE task_text (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)"
"""``seq``: the task's ``tasks.seq`` (its rowid: a listing's lookup is the cheapest there
is); ``body``: :data:`TASK_JSON_SQL` of the task, JSON fields between U+0001 characters."""

KEPT_JSON_SQL = f"coalesce(x.body, {TASK_JSON_SQL})"
""":data:`TASK_JSON_SQL` of ``t`` read from its kept row ``x`` (``LEFT JOIN`` :data:`JOIN_SQL`),
made here where there is none (SQLite's ``coalesce`` makes its later arguments only when
the earlier are null)."""
JOIN_SQL = " LEFT JOIN task_text x ON x.seq = t.seq"

_TEXT_COLUMNS = (
    "seq", "id", "title", "description", "design", "acceptance_criteria", "notes", "status",
    "priority", "issue_type", "assignee", "created_at", "updated_at", "closed_at",
    "close_reason", "external_ref", "metadata", "checks", "agent", "hints", "role", "gated",
    "linked")
"""The columns of ``tasks`` a task's text is made from (``linked`` says where to look)."""


def _unpinned(sql: str) -> str:
    """``sql`` leaving the planner its indexes (it takes the same): in a trigger, a
    statement naming an index fails while the index is not there (an older taskmill's
    import drops some for its time)."""
    return re.sub(r" INDEXED BY \w+", "", sql)


_CELLS_SQL = ", ".join(sql for _, sql in CELLS)


def _making(where: str) -> list[str]:
    """The statements making the rows (text and cells) of the tasks not done that
    ``where`` selects (of ``tasks t``), naming their indexes (not in a trigger: the
    triggers make them through the views, :func:`view_statements`)."""
    rows = f" FROM tasks t WHERE {where} AND t.status NOT IN {DONE_SQL}"
    return [f"INSERT OR REPLACE INTO task_text (seq, body) SELECT t.seq, {TASK_JSON_SQL}{rows}",
            f"INSERT OR REPLACE INTO task_cells (seq, {', '.join(n for n, _ in CELLS)})"
            f" SELECT t.seq, {_CELLS_SQL}{rows}"]


TEXT_VIEW, CELLS_VIEW = "task_text_made", "task_cells_made"
"""The views the triggers make the rows through (schema 0019): each trigger's statements
name a view rather than repeat its text (~4 KB a statement), so the schema SQLite parses as
each connection opens is 52 -> ~10 KB (~1.8 ms -> ~0.4 ms: every command opens one)."""


def view_statements() -> list[str]:
    """The statements making :data:`TEXT_VIEW` and :data:`CELLS_VIEW` where they are not:
    :func:`_making`'s rows of the tasks not done, by ``seq`` and ``id``."""
    rows = f" FROM tasks t WHERE t.status NOT IN {DONE_SQL}"
    cells = ", ".join(f"{_unpinned(sql)} AS {name}" for name, sql in CELLS)
    return [f"CREATE VIEW IF NOT EXISTS {TEXT_VIEW} AS SELECT t.seq AS seq, t.id AS id,"
            f" {_unpinned(TASK_JSON_SQL)} AS body{rows}",
            f"CREATE VIEW IF NOT EXISTS {CELLS_VIEW} AS SELECT t.seq AS seq, {cells}{rows}"]


def _made(where: str) -> str:
    """:func:`_making` through the views (:func:`view_statements`), as a trigger's
    statements (``where`` of the view ``t``: its ``seq`` and ``id``)."""
    names = ", ".join(name for name, _ in CELLS)
    picked = ", ".join(f"t.{name}" for name, _ in CELLS)
    return (f"INSERT OR REPLACE INTO task_text (seq, body) SELECT t.seq, t.body"
            f" FROM {TEXT_VIEW} t WHERE {where}; INSERT OR REPLACE INTO task_cells"
            f" (seq, {names}) SELECT t.seq, {picked} FROM {CELLS_VIEW} t WHERE {where}; ")


def _parents_of(*ids: str) -> str:
    """``t`` is a parent of a task of ``ids`` (SQL expressions)."""
    return ("t.id IN (SELECT depends_on_id FROM deps WHERE issue_id IN"
            f" ({', '.join(ids)}) AND type = 'parent-child')")


def _ids(*ids: str) -> str:
    return f"t.id IN ({', '.join(ids)})"


def _gone(where: str) -> str:
    """A trigger's statements deleting the rows (text and cells) of the task ``OLD`` (its
    text only where ``where`` holds too)."""
    return (f"DELETE FROM task_text WHERE seq = OLD.seq{where}; DELETE FROM task_cells"
            " WHERE status = OLD.status AND priority = OLD.priority AND seq = OLD.seq;")


def text_triggers() -> list[tuple[str, str]]:
    """``(name, SQL)`` of the triggers keeping ``task_text`` in step: a task's row, its
    labels, its parent-child links either way, and a child's state (its parent's counts:
    ``children`` leaves tombstones out, ``children_closed`` counts the closed)."""
    counted = ("(OLD.status = 'closed') != (NEW.status = 'closed')"
               " OR (OLD.status = 'tombstone') != (NEW.status = 'tombstone')"
               " OR OLD.id IS NOT NEW.id")
    return [(name, f"CREATE TRIGGER {name} {body}") for name, body in [
        ("tasks_text_insert", "AFTER INSERT ON tasks BEGIN"
         f" {_made('t.seq = NEW.seq')} {_made(_parents_of('NEW.id'))} END"),
        ("tasks_text_update", f"AFTER UPDATE OF {', '.join(_TEXT_COLUMNS)} ON tasks"
         f" WHEN OLD.status NOT IN {DONE_SQL} OR NEW.status NOT IN {DONE_SQL}"
         " OR OLD.seq != NEW.seq BEGIN"
         f" {_gone(f' AND (OLD.seq != NEW.seq OR NEW.status IN {DONE_SQL})')}"
         f" {_made('t.seq = NEW.seq')} END"),
        ("tasks_text_counted", f"AFTER UPDATE OF status, id ON tasks WHEN {counted} BEGIN"
         f" {_made(_parents_of('OLD.id', 'NEW.id'))} END"),
        ("tasks_text_delete", "AFTER DELETE ON tasks BEGIN"
         f" {_gone('')} {_made(_parents_of('OLD.id'))} END"),
        ("labels_text_insert", f"AFTER INSERT ON labels BEGIN {_made(_ids('NEW.task_id'))} END"),
        ("labels_text_update", "AFTER UPDATE ON labels BEGIN"
         f" {_made(_ids('OLD.task_id', 'NEW.task_id'))} END"),
        ("labels_text_delete", f"AFTER DELETE ON labels BEGIN {_made(_ids('OLD.task_id'))} END"),
        ("deps_text_insert", "AFTER INSERT ON deps WHEN NEW.type = 'parent-child' BEGIN"
         f" {_made(_ids('NEW.issue_id', 'NEW.depends_on_id'))} END"),
        ("deps_text_update", "AFTER UPDATE ON deps"
         " WHEN OLD.type = 'parent-child' OR NEW.type = 'parent-child' BEGIN"
         f" {_made(_ids('OLD.issue_id', 'OLD.depends_on_id', 'NEW.issue_id', 'NEW.depends_on_id'))}"
         " END"),
        ("deps_text_delete", "AFTER DELETE ON deps WHEN OLD.type = 'parent-child' BEGIN"
         f" {_made(_ids('OLD.issue_id', 'OLD.depends_on_id'))} END"),
    ]]


def refill(conn: sqlite3.Connection) -> None:
    """Every row made again (in the caller's transaction): after a bulk import, which
    writes with the triggers dropped (at 1M tasks, 88K rows: ~2 s)."""
    conn.execute("DELETE FROM task_text")
    conn.execute("DELETE FROM task_cells")
    for sql in _making("1"):  # (every parent's children: the small index)
        conn.execute(sql)


def drop_triggers(conn: sqlite3.Connection) -> None:
    for name, _sql in text_triggers():
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")


def make_triggers(conn: sqlite3.Connection) -> None:
    """The triggers of :func:`text_triggers` (and the views they read: made where not)."""
    for sql in view_statements():
        conn.execute(sql)
    for _name, sql in text_triggers():
        conn.execute(sql)


def migrate_trigger_views(conn: sqlite3.Connection) -> None:
    """Schema 0019: the triggers made again, through the views (:data:`TEXT_VIEW`)."""
    drop_triggers(conn)
    make_triggers(conn)


READY_INDEX_SQL = (
    "CREATE INDEX tasks_ready ON tasks(priority, created_key, seq, id, status, gated, nonwork)"
    " WHERE status = 'open' AND gated = 0 AND nonwork = 0")
"""The ready tasks in their order, with every column ``ready --json`` asks of ``tasks``
(:data:`taskmill.ledger.lean.READY_BLOB_SQL`): read with their kept text and no row of
``tasks`` (100K tasks, 2,666 ready: 20 ms -> 8 ms)."""


def migrate_kept_text(conn: sqlite3.Connection) -> None:
    """Schema 0015: the table; the ready index holding what ``ready --json`` reads beside
    the text. (The rows and their triggers: :func:`migrate_kept_cells`, 0016.)"""
    conn.execute(TABLE_SQL)
    conn.execute("DROP INDEX tasks_ready")
    conn.execute(READY_INDEX_SQL)


def migrate_kept_cells(conn: sqlite3.Connection) -> None:
    """Schema 0016: ``task_cells``; the rows of both tables and their triggers made (the
    triggers of 0015 kept the text alone)."""
    conn.execute(CELLS_TABLE_SQL)
    drop_triggers(conn)
    refill(conn)
    make_triggers(conn)


def kept_text_differences(conn: sqlite3.Connection) -> list[str]:
    """The ids of the tasks whose kept rows are not the text and cells made from the task
    now (or are missing, or kept for a done task, or under another status or priority), and
    the seqs of rows kept for no task (as ``#N``)."""
    made = (f"SELECT t.seq, t.id AS task, {TASK_JSON_SQL} AS body, "
            + ", ".join(f"{sql} AS {name}" for name, sql in CELLS)
            + f" FROM tasks t WHERE t.status NOT IN {DONE_SQL}")
    differs = " OR ".join(f"k.{name} IS NOT m.{name}" for name, _ in CELLS)
    out = [tid for (tid,) in conn.execute(
        f"SELECT m.task FROM ({made}) m LEFT JOIN task_text x ON x.seq = m.seq"
        " LEFT JOIN task_cells k ON k.status = m.status AND k.priority = m.priority"
        f" AND k.seq = m.seq WHERE x.body IS NOT m.body OR k.seq IS NULL OR {differs}"
        " ORDER BY m.seq")]
    out += [tid if tid is not None else f"#{seq}" for seq, tid in conn.execute(
        "SELECT x.seq, t.id FROM task_text x LEFT JOIN tasks t ON t.seq = x.seq"
        f" WHERE t.seq IS NULL OR t.status IN {DONE_SQL}"
        " UNION SELECT k.seq, t.id FROM task_cells k LEFT JOIN tasks t ON t.seq = k.seq"
        f" WHERE t.seq IS NULL OR t.status IN {DONE_SQL} OR t.status IS NOT k.status"
        " OR t.priority IS NOT k.priority ORDER BY 1")]
    return out
