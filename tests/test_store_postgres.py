"""The store contract (``store_contract.py``) for the PostgreSQL store, on a real server the
tests start (``pg_helpers``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import pg_helpers
from store_contract import StoreContract
from taskmill.ledger import LedgerStore


class TestPostgresStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _close(self) -> Iterator[None]:
        yield
        pg_helpers.close_stores()

    def make_store(self) -> LedgerStore:
        return pg_helpers.new_store()

    def open_again(self, store: LedgerStore) -> LedgerStore | None:
        from taskmill.ledger.postgres import PostgresStore

        assert isinstance(store, PostgresStore)
        return PostgresStore.open(store.url, schema=store.schema)


def test_event_rows_are_read_a_page_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from taskmill.clock import FixedClock
    from taskmill.ledger import Ledger

    pg_helpers.database_url()  # skips without a server or psycopg
    from taskmill.ledger.postgres import events

    monkeypatch.setattr(events, "EVENT_PAGE", 2)
    ledger = Ledger(pg_helpers.new_store(), prefix="tm", clock=FixedClock(), actor="t")
    try:
        for n in range(5):
            ledger.create(f"t{n}")
        assert [r.seq for r in ledger.store.event_rows()] == [1, 2, 3, 4, 5]
        assert [r.seq for r in ledger.store.event_rows(after=1, upto=4)] == [2, 3, 4]
        assert ledger.verify().ok
    finally:
        pg_helpers.close_stores()


def test_a_dropped_connection_is_replaced_on_the_next_use() -> None:
    """A server restart or fail-over drops the connection: the statement that meets it
    fails (nothing half-done), the next one runs on a new connection."""
    import psycopg

    from taskmill.clock import FixedClock
    from taskmill.ledger import Ledger

    ledger = Ledger(pg_helpers.new_store(), prefix="tm", clock=FixedClock(), actor="t")
    try:
        first = ledger.create("before the drop")
        store = ledger.store
        with psycopg.connect(pg_helpers.database_url(), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (store.conn.info.backend_pid,))
        with pytest.raises(psycopg.OperationalError):
            ledger.create("lost with the connection")
        second = ledger.create("after the drop")
        assert [t.id for t in ledger.list_tasks()] == [first.id, second.id]
        assert ledger.verify().ok
    finally:
        pg_helpers.close_stores()


def test_a_claim_passes_over_a_task_whose_row_another_holds() -> None:
    """The candidates of a claim are read ``FOR UPDATE SKIP LOCKED``: a row another
    transaction holds is passed over, not waited for."""
    import psycopg

    from taskmill.clock import FixedClock
    from taskmill.ledger import Ledger

    ledger = Ledger(pg_helpers.new_store(), prefix="tm", clock=FixedClock(), actor="t")
    try:
        first, second = ledger.create("first").id, ledger.create("second").id
        store = ledger.store
        with psycopg.connect(pg_helpers.database_url()) as other:
            other.execute(f"SET search_path TO {store.schema}")  # type: ignore[attr-defined]
            other.execute("SET lock_timeout = '5s'")
            other.execute("SELECT id FROM tasks WHERE id = %s FOR UPDATE", (first,))
            store.conn.execute("SET lock_timeout = '2s'")  # type: ignore[attr-defined]
            got = ledger.claim_next("mill:r")
            other.rollback()
        assert got is not None and got.id == second
        again = ledger.claim_next("mill:r")
        assert again is not None and again.id == first
        store.conn.execute("RESET lock_timeout")  # type: ignore[attr-defined]
    finally:
        pg_helpers.close_stores()


def test_rows_left_for_an_id_with_no_task_do_not_stop_its_creation() -> None:
    """As in SQLite (``test_ledger_linked.py``): a created or imported task takes the rows
    written behind taskmill's back for its id, its own replacing those with the same key."""
    import json

    from taskmill.beads import import_beads
    from taskmill.clock import FixedClock
    from taskmill.ledger import Ledger

    ledger = Ledger(pg_helpers.new_store(), prefix="o", clock=FixedClock(), actor="t")
    try:
        conn = ledger.store.conn
        conn.execute("INSERT INTO labels (task_id, label, pos) VALUES ('o-1', 'x', 5),"
                     " ('o-1', 'kept', 9), ('o-2', 'x', 0)")
        conn.execute("INSERT INTO deps (issue_id, depends_on_id, type, pos, created_by)"
                     " VALUES ('o-1', 'o-2', 'blocks', 0, 'someone')")
        conn.commit()
        line = json.dumps({"id": "o-1", "title": "left rows", "labels": ["x"],
                           "dependencies": [{"issue_id": "o-1", "depends_on_id": "o-2",
                                             "type": "blocks"}]}) + "\n"
        assert import_beads(ledger, [line]).created == 1
        assert ledger.get("o-1").labels == ["x", "kept"]
        assert ledger.create("made", task_id="o-2", labels=["x"]).labels == ["x"]
        assert not ledger.get("o-1").ready  # o-1 waits on o-2 now that it exists
    finally:
        pg_helpers.close_stores()
