"""The store contract (``store_contract.py``) for the SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest

from store_contract import StoreContract
from taskmill.ledger import LedgerStore
from taskmill.ledger.sqlite import SqliteStore


class TestSqliteStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _dir(self, tmp_path: Path) -> None:
        self.dir = tmp_path

    def make_store(self) -> LedgerStore:
        return SqliteStore.open(self.dir / "ledger.db")

    def open_again(self, store: LedgerStore) -> LedgerStore | None:
        return SqliteStore.open(self.dir / "ledger.db")


class TestSqliteStoreInMemory(StoreContract):
    def make_store(self) -> LedgerStore:
        return SqliteStore.memory()


def _indexes(store: SqliteStore) -> list[tuple[str, str]]:
    return sorted(store.conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"))


def test_an_import_builds_the_indexes_it_deferred(tmp_path: Path) -> None:
    """A Beads import into a small ledger drops the secondary indexes whose keys come in no
    order while it writes rows and builds them again (a failed import leaves them as they were);
    the plans that read through them still do."""
    from taskmill.beads import import_beads
    from taskmill.clock import FixedClock
    from taskmill.errors import InvalidInput
    from taskmill.ledger import Ledger

    ledger = Ledger(SqliteStore.open(tmp_path / "l.db"), prefix="bd", clock=FixedClock(),
                    actor="test")
    store = ledger.store
    assert isinstance(store, SqliteStore)
    before = _indexes(store)
    assert {"tasks_held", "tasks_ready", "deps_reverse"} <= {name for name, _ in before}
    with pytest.raises(InvalidInput):
        import_beads(ledger, ['{"id": "bd-1", "title": "one"}', "not json"])
    assert _indexes(store) == before and store.task_count() == 0
    seen: list[list[tuple[str, str]]] = []
    real = store.import_rows

    def spy(*args: object) -> None:
        seen.append(_indexes(store))
        real(*args)  # type: ignore[arg-type]

    store.import_rows = spy  # type: ignore[method-assign]
    import_beads(ledger, ['{"id": "bd-1", "title": "one"}',
                          '{"id": "bd-2", "title": "two", "dependencies": [{"issue_id":'
                          ' "bd-2", "depends_on_id": "bd-1", "type": "blocks"}]}'])
    assert seen and all(not {"tasks_ready", "deps_reverse"} & {n for n, _ in s} for s in seen)
    assert all("tasks_held" in {n for n, _ in s} for s in seen)  # (kept: rows come in order)
    assert _indexes(store) == before
    plan = " ".join(str(r) for r in store.conn.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM tasks INDEXED BY tasks_held WHERE (gated = 1 OR"
        " status = 'blocked') AND status NOT IN ('closed', 'tombstone') ORDER BY priority, seq"))
    assert "tasks_held" in plan
    assert [b.task.id for b in ledger.blocked()] == ["bd-2"]
    ledger.close_db()


def test_listings_look_parents_and_children_up_in_their_own_indexes(tmp_path: Path) -> None:
    """A listing reads each task's parent and children through the small partial indexes of
    the ``parent-child`` links (schema 0011), not the whole ``deps`` table, and its labels in
    their order (no sort per task); a ledger made before 0011 gets them when it is opened,
    and lists the same bytes."""
    from taskmill.clock import FixedClock
    from taskmill.ledger import Ledger
    from taskmill.ledger.sqlite.kept_text import TASK_JSON_SQL

    path = tmp_path / "l.db"
    store = SqliteStore.open(path)
    ledger = Ledger(store, prefix="bd", clock=FixedClock(), actor="test")
    epic = ledger.create("epic")
    ledger.create("one", parent=epic.id, labels=["b", "a"])
    done = ledger.create("two", parent=epic.id)
    ledger.close(done.id)
    listed = list(ledger.list_json())
    assert '"children": 2,\n    "children_closed": 1' in listed[0]
    assert f'"parent": "{epic.id}"' in listed[1]
    assert '"labels": [\n      "b",\n      "a"\n    ]' in listed[1]
    plan = " ".join(str(r) for r in store.conn.execute(
        f"EXPLAIN QUERY PLAN SELECT {TASK_JSON_SQL} FROM tasks t"))
    assert "COVERING INDEX deps_parent" in plan and "COVERING INDEX deps_children" in plan
    assert "COVERING INDEX labels_ordered" in plan and "TEMP B-TREE" not in plan
    with store.conn:  # as a ledger made before schema 0011
        store.conn.execute("DROP INDEX deps_parent")
        store.conn.execute("DROP INDEX deps_children")
        store.conn.execute("DROP INDEX labels_ordered")
        store.conn.execute("DELETE FROM migrations WHERE name = '0011_listing_indexes'")
    store.close()
    again = SqliteStore.open(path)
    assert {"deps_parent", "deps_children", "labels_ordered"} <= {n for n, _ in _indexes(again)}
    relisted = Ledger(again, prefix="bd", clock=FixedClock(), actor="test").list_json()
    assert list(relisted) == listed
