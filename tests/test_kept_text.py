"""The listings' kept text (schema 0015) and cells (0016): each task not done has the JSON
text the listings print kept in ``task_text`` and its task tables' cells in ``task_cells``,
in step with its rows whoever writes them (triggers); the listings print what they printed
when they made every task's text and cells per row, and ``verify`` finds a kept text or cell
that is wrong."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from conftest import invoke_cli
from schema_steps import ledger_before, steps_from
from taskmill.beads.importer import import_beads
from taskmill.cli.table_stream import Laying
from taskmill.errors import TaskmillError
from taskmill.ledger import Ledger
from taskmill.ledger.sqlite import split
from taskmill.ledger.sqlite.kept_text import kept_text_differences, text_triggers
from taskmill.ledger.sqlite.schema import connect, migrate

FIXTURE = Path(__file__).parent / "fixtures" / "beads-sample.jsonl"


@pytest.fixture(autouse=True)
def _no_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(split, "SPLIT_MIN", 10**9)


def _differences(db: Path) -> list[str]:
    conn = connect(db)
    try:
        return kept_text_differences(conn)
    finally:
        conn.close()


def _kept(db: Path) -> dict[int, str]:
    conn = sqlite3.connect(db)
    try:
        return dict(conn.execute("SELECT seq, body FROM task_text"))
    finally:
        conn.close()


def _triggers(db: Path) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        return {r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    finally:
        conn.close()


def _listings(ledger: Ledger) -> list[list[Any]]:
    return [list(ledger.list_json(status=None)),
            list(ledger.list_json(status=None, include_hidden=True)),
            list(ledger.list_json(status=["open"])), list(ledger.blocked_json()),
            [tuple(row) for row in ledger.list_cells(status=None, include_hidden=True)],
            [tuple(row) for row in ledger.list_cells(status="open")],
            [(tuple(row), waits, held) for row, waits, held in ledger.blocked_cells()],
            [text for status in ("open", "in_progress", "closed")
             for text in ledger.list_texts(Laying(small=2), status=status)]]


def _laid(ledger: Ledger, status: str) -> list[tuple[str, int]]:
    return list(ledger.list_texts(Laying(small=2), status=status))


def _made_per_row(ledger: Ledger, db: Path) -> list[list[Any]]:
    """The listings with no text or cells kept (each task's made as it is listed), then
    kept again."""
    conn = sqlite3.connect(db)
    kept = {table: conn.execute(f"SELECT * FROM {table}").fetchall()
            for table in ("task_text", "task_cells")}
    for table in kept:
        conn.execute(f"DELETE FROM {table}")
    conn.commit()
    try:
        return _listings(ledger)
    finally:
        for table, rows in kept.items():
            if rows:
                marks = ", ".join("?" * len(rows[0]))
                conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
        conn.commit()
        conn.close()


def test_every_way_of_writing_keeps_the_text_in_step(tmp_path: Path) -> None:
    db = tmp_path / "db"
    ledger = Ledger.open(db, prefix="k")
    with ledger:
        epic = ledger.create("epic")
        a = ledger.create("a", labels=["x", "y"], parent=epic.id)
        b = ledger.create("b", after=[a.id], parent=epic.id)
        c = ledger.create("c", metadata={"k": [1, 2]})
        ledger.add_labels(b.id, ["later"])
        ledger.add_dep(c.id, b.id, "parent-child")
        ledger.remove_labels(a.id, ["x"])
        ledger.close(a.id, "done")  # (b is ready now; the epic counts a closed child)
        ledger.update(c.id, {"title": "c, renamed", "priority": 0})
        ledger.claim(b.id, "me")
        ledger.remove_dep(a.id, epic.id, "parent-child")
        ledger.update(epic.id, {"status": "deferred"})  # (its children are held)
        ledger.reopen(a.id)
        assert _differences(db) == []
        assert len(_kept(db)) == 4
        assert _made_per_row(ledger, db) == _listings(ledger)
        # behind the ledger's back, as a user's sqlite3 shell
        conn = sqlite3.connect(db)
        conn.execute("INSERT INTO labels (task_id, label, pos) VALUES ('k-later', 'l', 0)")
        conn.execute("INSERT INTO deps (issue_id, depends_on_id, type) VALUES"
                     " ('k-later', ?, 'parent-child')", (epic.id,))
        conn.execute("INSERT INTO tasks (id, title, created_at, updated_at, created_key)"
                     " SELECT 'k-later', 'later', created_at, updated_at, created_key"
                     " FROM tasks WHERE id = ?", (epic.id,))
        conn.execute("UPDATE tasks SET id = 'k-renamed' WHERE id = ?", (c.id,))
        conn.execute("UPDATE tasks SET status = 'tombstone' WHERE id = ?", (a.id,))
        conn.execute("UPDATE labels SET task_id = ? WHERE task_id = 'k-later'", (b.id,))
        conn.commit()
        assert _differences(db) == []  # (a label alone moved: its tasks' text and cells)
        conn.execute("UPDATE deps SET type = 'related' WHERE issue_id = ? AND type ="
                     " 'parent-child'", (b.id,))
        conn.execute("DELETE FROM tasks WHERE id = 'k-later'")
        conn.commit()
        conn.close()
        assert _differences(db) == []
        assert _made_per_row(ledger, db) == _listings(ledger)
        assert ledger.verify().ok is False  # (the rows changed behind its back: replay says)
        conn = sqlite3.connect(db)  # a cells row left under another status (no trigger)
        conn.execute("INSERT INTO task_cells SELECT seq, id, parent, priority, issue_type,"
                     " 'blocked', ready, closed, title, tags, role FROM task_cells"
                     " WHERE id = ?", (b.id,))
        conn.commit()
        assert _differences(db) == [b.id]
        assert _laid(ledger, "blocked") == []  # (the listing does not take it)
        conn.execute("DELETE FROM task_cells WHERE status = 'blocked'")
        conn.commit()
        conn.close()
        assert _differences(db) == []
        assert not [p for p in ledger.verify().problems if p.startswith("kept text")]


def test_a_kept_text_made_wrong_is_found_and_remade(taskmill_repo: Path) -> None:
    tmp_path = taskmill_repo
    for title in ("one", "two", "three"):
        invoke_cli(["create", title], cwd=tmp_path).ok()
    db = tmp_path / ".taskmill" / "taskmill.db"
    listed = invoke_cli(["list", "--json"], cwd=tmp_path, env={"TASKMILL_KEPT": "0"}).ok().stdout
    conn = sqlite3.connect(db)
    conn.execute("UPDATE task_text SET body = replace(body, '\"two\"', '\"TWO\"')")
    conn.execute("DELETE FROM task_text WHERE seq = 3")  # (missing: made per row)
    conn.execute("UPDATE task_cells SET title = 'TWO' WHERE title = 'two'")
    conn.execute("DELETE FROM task_cells WHERE seq = 3")
    conn.commit()
    conn.close()
    wrong = invoke_cli(["list", "--json"], cwd=tmp_path).ok().stdout  # (an answer kept)
    assert '"TWO"' in wrong and wrong.replace('"TWO"', '"two"') == listed
    table = invoke_cli(["list"], cwd=tmp_path).ok().stdout
    assert "TWO" in table and "one" in table and "three" in table
    check = invoke_cli(["verify", "--json"], cwd=tmp_path)
    assert check.exit_code == 5
    problems = json.loads(check.stdout)["problems"]
    assert any(p.startswith("kept text: what `list`, `blocked` and `ready` print for 2 task(s)")
               and "tm-" in p and "taskmill ledger remake" in p for p in problems), problems
    out = invoke_cli(["ledger", "remake", "--json"], cwd=tmp_path).ok()
    assert json.loads(out.stdout) == {"remade": True, "tasks": 3}
    assert invoke_cli(["verify"], cwd=tmp_path).exit_code == 0
    assert invoke_cli(["list", "--json"], cwd=tmp_path).ok().stdout == listed  # (the answer
    # kept from the wrong text not served again)
    assert "TWO" not in invoke_cli(["list"], cwd=tmp_path).ok().stdout
    assert _triggers(db) >= {name for name, _ in text_triggers()}


@pytest.mark.parametrize("into", ["an empty ledger", "a ledger with tasks"])
def test_an_import_makes_the_text_once_and_keeps_its_triggers(tmp_path: Path, into: str) -> None:
    db = tmp_path / "db"
    ledger = Ledger.open(db, prefix="bd")
    with ledger:
        if into == "a ledger with tasks":
            first = json.loads(FIXTURE.read_text().splitlines()[0])["id"]
            kid = ledger.create("a child of a record", labels=["old"])
            conn = sqlite3.connect(db)  # (a record the import rewrites gets a child)
            conn.execute("INSERT INTO deps (issue_id, depends_on_id, type) VALUES"
                         " (?, ?, 'parent-child')", (kid.id, first))
            conn.commit()
            conn.close()
        import_beads(ledger, FIXTURE)
        assert _triggers(db) >= {name for name, _ in text_triggers()}
        assert _differences(db) == []
        assert _kept(db)
        assert _made_per_row(ledger, db) == _listings(ledger)
        kept, listed = _kept(db), _listings(ledger)
        broken = tmp_path / "broken.jsonl"
        broken.write_text(FIXTURE.read_text().splitlines()[0].replace('"open"', '"closed"')
                          + "\n{not json\n")
        with pytest.raises(TaskmillError):
            import_beads(ledger, broken)
        assert _kept(db) == kept and _listings(ledger) == listed
        assert _triggers(db) >= {name for name, _ in text_triggers()}


@pytest.mark.parametrize("before", ["0015_kept_text", "0016_kept_cells", "0019_trigger_views"])
def test_a_ledger_made_before_the_kept_text_gets_it(tmp_path: Path, before: str) -> None:
    db = tmp_path / "db"
    conn = ledger_before(db, before)
    conn.execute("INSERT INTO tasks (id, title, created_at, updated_at, created_key, status)"
                 " VALUES ('o-1', 'one', 't', 't', 't', 'open'),"
                 " ('o-2', 'two', 't', 't', 't', 'closed')")
    conn.execute("INSERT INTO labels (task_id, label) VALUES ('o-1', 'l')")
    conn.execute("INSERT INTO deps (issue_id, depends_on_id, type) VALUES"
                 " ('o-2', 'o-1', 'parent-child')")
    assert migrate(conn) == steps_from(before)
    conn.close()
    assert list(_kept(db)) == [1]
    assert '"children_closed": 1' in _kept(db)[1]
    check = sqlite3.connect(db)
    assert check.execute("SELECT seq, id, closed, tags FROM task_cells").fetchall() == [
        (1, "o-1", "1/1 closed", "l")]
    check.close()
    assert _differences(db) == []


def test_the_triggers_make_the_rows_through_views_a_small_schema(tmp_path: Path) -> None:
    """Each trigger names the views that make a task's rows (schema 0019) rather than
    repeating their ~4 KB: the schema every connection parses as it opens stays small."""
    with Ledger.open(tmp_path / "db", prefix="v"):
        pass
    conn = sqlite3.connect(tmp_path / "db")
    sizes = dict(conn.execute("SELECT name, length(sql) FROM sqlite_master"
                              " WHERE type = 'trigger' AND name LIKE '%_text_%'").fetchall())
    total = conn.execute("SELECT sum(length(sql)) FROM sqlite_master").fetchone()[0]
    conn.close()
    assert set(sizes) == {name for name, _ in text_triggers()}
    assert max(sizes.values()) < 1200 and total < 24_000


def test_writes_go_on_while_an_older_import_has_dropped_the_listing_indexes(
        tmp_path: Path) -> None:
    """The triggers name no index: an older taskmill's bulk import drops some for its time."""
    db = tmp_path / "db"
    ledger = Ledger.open(db, prefix="k")
    with ledger:
        epic = ledger.create("epic")
        conn = sqlite3.connect(db)
        for name in ("deps_parent", "deps_children", "labels_ordered"):
            conn.execute(f"DROP INDEX {name}")
        conn.execute("INSERT INTO tasks (id, title, created_at, updated_at, created_key)"
                     " VALUES ('k-kid', 'kid', 't', 't', 't')")
        conn.execute("INSERT INTO labels (task_id, label) VALUES ('k-kid', 'l')")
        conn.execute("INSERT INTO deps (issue_id, depends_on_id, type) VALUES"
                     " ('k-kid', ?, 'parent-child')", (epic.id,))
        conn.commit()
        conn.close()
    again = connect(db)
    assert migrate(again) == []
    again.execute("DELETE FROM migrations WHERE name = '0011_listing_indexes'")
    assert migrate(again) == ["0011_listing_indexes"]  # (the indexes made again)
    assert kept_text_differences(again) == []
    again.close()


def test_a_tables_listings_find_each_kept_row_by_its_key(tmp_path: Path) -> None:
    """The kept cells are joined on their whole key (a column of another type than the
    value compared with it is scanned, not searched: a listing over every row kept)."""
    from taskmill.ledger.sqlite.kept_text import CELLS_JOIN_SQL
    from taskmill.ledger.sqlite.listing import CELLS_SQL

    db = tmp_path / "db"
    with Ledger.open(db, prefix="k"):
        pass
    conn = connect(db)
    for sql in (f"SELECT {CELLS_SQL} FROM tasks t{CELLS_JOIN_SQL} WHERE t.status IN ('open')"
                " ORDER BY t.priority, t.seq",
                f"SELECT {CELLS_SQL} FROM tasks t INDEXED BY tasks_held{CELLS_JOIN_SQL}"
                " WHERE t.gated = 1 AND t.status NOT IN ('closed', 'tombstone')"):
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
        assert "SEARCH k USING PRIMARY KEY (status=? AND priority=? AND seq=?) LEFT-JOIN" \
            in plan, plan
    conn.close()
