"""Schema 0014: ``nonwork`` (a record ``ready`` never offers) as comparisons, not an IN list
(SQLite made a table of the list at every row written: a third of a bulk import's insert of a
task). A ledger made before it keeps every task's value and what ``ready`` offers."""

from __future__ import annotations

from pathlib import Path

from schema_steps import ledger_before, steps_from
from taskmill.ledger import Ledger
from taskmill.ledger.beads_rules import READY_EXCLUDE_TYPES
from taskmill.ledger.sqlite.schema import migrate


def test_a_ledger_made_before_keeps_what_is_work(tmp_path: Path) -> None:
    db = tmp_path / "db"
    conn = ledger_before(db, "0014_nonwork_compared")
    assert " IN (" in conn.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'tasks'").fetchone()[0]
    rows = [(f"t-{t}", t, None) for t in (*READY_EXCLUDE_TYPES, "task", "epic", "bug")]
    rows += [("t-pinned", "task", '{"fields": {"pinned": true}}'),
             ("t-ephemeral", "task", '{"fields": {"ephemeral": true}}'),
             ("t-not-pinned", "task", '{"fields": {"pinned": false}}')]
    conn.executemany("INSERT INTO tasks (id, title, issue_type, extra, created_at, updated_at,"
                     " created_key) VALUES (?, 'x', ?, ?, 't', 't', 't')", rows)
    before = dict(conn.execute("SELECT id, nonwork FROM tasks"))
    assert sum(before.values()) == len(READY_EXCLUDE_TYPES) + 2
    assert migrate(conn) == steps_from("0014_nonwork_compared")
    assert dict(conn.execute("SELECT id, nonwork FROM tasks")) == before
    table = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'tasks'").fetchone()[0]
    assert " IN (" not in table
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'tasks_ready'"
                        ).fetchone() == (1,)
    conn.close()
    with Ledger.open(db, prefix="t") as ledger:
        offered = {t.id for t in ledger.ready()}
        assert offered == {"t-task", "t-epic", "t-bug", "t-not-pinned"}
        made = ledger.create("made after", issue_type="agent")
        assert made.id not in {t.id for t in ledger.ready()}


def test_a_new_ledger_is_made_with_comparisons(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "db", prefix="t") as ledger:
        ledger.create("a task")
        table = ledger.store.conn.execute(  # type: ignore[attr-defined]
            "SELECT sql FROM sqlite_master WHERE name = 'tasks'").fetchone()[0]
    assert "issue_type = 'agent'" in table and " IN (" not in table
