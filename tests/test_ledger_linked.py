"""``tasks.linked`` (schema 0013): a clear bit means the task has no labels / parent /
children, whoever wrote the rows and in whatever order; the listings that trust it print
what they printed when they looked every time."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from conftest import invoke_cli
from schema_steps import ledger_before, steps_from
from taskmill.beads.importer import import_beads
from taskmill.ledger import Ledger
from taskmill.ledger.sqlite import schema, split
from taskmill.ledger.sqlite.schema import connect, linked_of, migrate

FIXTURE = Path(__file__).parent / "fixtures" / "beads-sample.jsonl"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "beads-issues.jsonl"


def _wrong(db: Path) -> list[tuple[str, int, int]]:
    """The tasks whose ``linked`` leaves clear a bit their rows set: (id, linked, rows)."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f"SELECT id, linked, {linked_of('t.id')} FROM tasks t"
                            f" WHERE {linked_of('t.id')} & ~linked != 0").fetchall()
    finally:
        conn.close()


def _listings(ledger: Ledger) -> tuple[list[str], list[tuple[object, ...]], list[str]]:
    return (list(ledger.list_json(status=None)),
            [tuple(c) for c in ledger.list_cells(status=None)], list(ledger.blocked_json()))


def _looked_every_time(ledger: Ledger, db: Path
                       ) -> tuple[list[str], list[tuple[object, ...]], list[str]]:
    """The listings with every bit set (every task's rows looked for)."""
    conn = connect(db)
    conn.execute("UPDATE tasks SET linked = 7")
    conn.close()
    return _listings(ledger)


@pytest.fixture(autouse=True)
def _no_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(split, "SPLIT_MIN", 10**9)


def test_every_way_of_writing_links_keeps_the_bits_true(tmp_path: Path) -> None:
    db = tmp_path / "db"
    ledger = Ledger.open(db, prefix="k")
    with ledger:
        epic = ledger.create("epic")
        a = ledger.create("a", labels=["x", "y"], parent=epic.id)
        b = ledger.create("b", after=[a.id])
        c = ledger.create("c")
        ledger.add_labels(b.id, ["later"])
        ledger.add_dep(c.id, b.id, "parent-child")
        ledger.remove_labels(a.id, ["x", "y"])  # (bits stay set: harmless)
        ledger.remove_dep(a.id, epic.id, "parent-child")
        assert _wrong(db) == []
        before = _listings(ledger)
        # behind the ledger's back: rows naming a task that comes only later, a rename
        conn = sqlite3.connect(db)
        conn.execute("INSERT INTO labels (task_id, label, pos) VALUES ('k-later', 'l', 0)")
        conn.execute("INSERT INTO deps (issue_id, depends_on_id, type) VALUES"
                     " ('k-kid', 'k-later', 'parent-child'), ('k-later', ?, 'parent-child')",
                     (epic.id,))
        conn.execute("INSERT INTO deps (issue_id, depends_on_id, type) VALUES"
                     " ('k-orphan', 'k-renamed', 'parent-child')")
        conn.execute("INSERT INTO tasks (id, title, created_at, updated_at, created_key)"
                     " SELECT 'k-later', 'later', created_at, updated_at, created_key"
                     " FROM tasks WHERE id = ?", (epic.id,))
        conn.execute("UPDATE tasks SET id = 'k-renamed' WHERE id = ?", (c.id,))
        conn.execute("UPDATE labels SET task_id = ? WHERE task_id = 'k-later'", (b.id,))
        conn.commit()
        conn.close()
        assert _wrong(db) == []
        after = _listings(ledger)
        assert after != before
        assert _looked_every_time(ledger, db) == after


def _before_the_bits(db: Path) -> sqlite3.Connection:
    """A ledger at the schema before 0013."""
    return ledger_before(db, "0013_task_linked")


def test_a_ledger_made_before_the_bits_gets_them_true(tmp_path: Path) -> None:
    db = tmp_path / "db"
    conn = _before_the_bits(db)
    conn.execute("INSERT INTO tasks (id, title, created_at, updated_at, created_key) VALUES"
                 " ('o-1', 'one', 't', 't', 't'), ('o-2', 'two', 't', 't', 't')")
    conn.execute("INSERT INTO labels (task_id, label) VALUES ('o-1', 'l')")
    conn.execute("INSERT INTO deps (issue_id, depends_on_id, type) VALUES"
                 " ('o-2', 'o-1', 'parent-child')")
    conn.execute("INSERT INTO labels (task_id, label) VALUES ('o-3', 'l')")  # (o-3 comes
    conn.execute("INSERT INTO deps (issue_id, depends_on_id, type) VALUES"  # later)
                 " ('o-1', 'o-3', 'parent-child')")
    assert migrate(conn) == steps_from("0013_task_linked")
    assert dict(conn.execute("SELECT id, linked FROM tasks")) == {"o-1": 1 | 2 | 4, "o-2": 2}
    conn.execute("INSERT INTO tasks (id, title, created_at, updated_at, created_key) VALUES"
                 " ('o-3', 'three', 't', 't', 't')")
    assert conn.execute("SELECT linked FROM tasks WHERE id = 'o-3'").fetchone() == (1 | 4,)
    assert conn.execute("SELECT count(*) FROM linked_waiting").fetchone() == (0,)
    conn.close()
    assert _wrong(db) == []


@pytest.mark.parametrize("into", ["an empty ledger", "a ledger with links"])
def test_an_import_sets_the_bits_its_rows_and_the_ledgers_call_for(
        tmp_path: Path, into: str) -> None:
    db = tmp_path / "db"
    ledger = Ledger.open(db, prefix="bd")
    source = SHARED if SHARED.exists() else FIXTURE
    with ledger:
        if into == "a ledger with links":
            ids = [json.loads(line)["id"] for line in source.read_text().splitlines()[:40]]
            ledger.create("waits on a record", labels=["old"])
            conn = sqlite3.connect(db)  # rows already naming records the import creates
            conn.executemany("INSERT INTO deps (issue_id, depends_on_id, type) VALUES"
                             " ('bd-old', ?, 'parent-child')", [(i,) for i in ids])
            conn.executemany("INSERT INTO labels (task_id, label) VALUES (?, 'before')",
                             [(i,) for i in ids])
            conn.commit()
            conn.close()
        import_beads(ledger, source)
        assert _wrong(db) == []
        names = {r[0] for r in sqlite3.connect(db).execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        assert {"labels_linked_insert", "deps_linked_insert", "tasks_linked_insert"} <= names
        listed = _listings(ledger)
        assert _looked_every_time(ledger, db) == listed


def test_a_long_upgrade_is_said_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    told: list[str] = []
    for least, db in ((4, tmp_path / "small"), (3, tmp_path / "big")):
        conn = _before_the_bits(db)
        conn.executemany("INSERT INTO tasks (id, title, created_at, updated_at, created_key)"
                         " VALUES (?, 't', 't', 't', 't')", [(f"o-{i}",) for i in range(3)])
        monkeypatch.setattr(schema, "UPGRADE_NOTICE_MIN", least)
        assert migrate(conn, told.append) == steps_from("0013_task_linked")
        assert migrate(conn, told.append) == []
        conn.close()
    assert told == ["upgrading the ledger of 3 tasks to this taskmill's schema"
                    f" ({', '.join(steps_from('0013_task_linked'))}): this once,"
                    " it takes a while"]  # (the big one's)


def test_the_cli_says_a_long_upgrade_on_stderr_but_not_with_json(
        taskmill_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = taskmill_repo / ".taskmill" / "taskmill.db"
    for path in db.parent.glob("taskmill.db*"):
        path.unlink()
    _before_the_bits(db).close()
    monkeypatch.setattr(schema, "UPGRADE_NOTICE_MIN", 0)
    out = invoke_cli(["list", "--json"], cwd=taskmill_repo, env={"TASKMILL_LEAN": "0"})
    assert out.exit_code == 0 and "upgrading" not in out.stderr
    for path in db.parent.glob("taskmill.db*"):
        path.unlink()
    _before_the_bits(db).close()
    out = invoke_cli(["list"], cwd=taskmill_repo, env={"TASKMILL_LEAN": "0"})
    assert out.exit_code == 0, out.stderr
    assert out.stderr.startswith("taskmill: upgrading the ledger of 0 tasks"), out.stderr


def test_rows_left_for_an_id_with_no_task_do_not_stop_its_creation(tmp_path: Path) -> None:
    # rows written behind taskmill's back for ids no task has: a task made with that id
    # (created, or imported) takes them as its own, its own rows replacing those with the
    # same key; before, the creation failed with "UNIQUE constraint failed" (a traceback)
    db = tmp_path / "db"
    Ledger.open(db, prefix="o").close_db()
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("INSERT INTO labels (task_id, label, pos) VALUES ('o-1', 'x', 5),"
                     " ('o-1', 'kept', 9), ('o-2', 'x', 0)")
        conn.execute("INSERT INTO deps (issue_id, depends_on_id, type, pos, created_by)"
                     " VALUES ('o-1', 'o-2', 'blocks', 0, 'someone')")
    conn.close()
    line = json.dumps({"id": "o-1", "title": "left rows", "labels": ["x"], "dependencies": [
        {"issue_id": "o-1", "depends_on_id": "o-2", "type": "blocks"}]}) + "\n"
    with Ledger.open(db, prefix="o") as ledger:
        assert import_beads(ledger, [line]).created == 1
        assert ledger.get("o-1").labels == ["x", "kept"]
        assert ledger.create("made", task_id="o-2", labels=["x"]).labels == ["x"]
        assert not ledger.get("o-1").ready  # o-1 waits on o-2
        # the audit trail says the import's task was not left as the import made it
        assert not ledger.verify().ok
    assert _wrong(db) == []
