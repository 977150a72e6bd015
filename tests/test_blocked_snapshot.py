"""``Ledger.blocked()`` (the web door's and the capability server's) reads what holds the
held tasks and then the tasks, in several statements: all of one state of the ledger
(:meth:`LedgerStore.snapshot`). A write committed by another connection in between would
otherwise list a task as it is after the write, held by nothing (its links from before)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import pg_helpers
from taskmill.clock import FixedClock
from taskmill.ledger import Ledger
from taskmill.ledger.sqlite import SqliteStore
from taskmill.ledger.store import HeldLinks


def _sqlite(tmp_path: Path) -> tuple[Ledger, Callable[[], Ledger]]:
    path = tmp_path / "db"
    return (Ledger.open(path, prefix="s"),
            lambda: Ledger(SqliteStore.open(path), prefix="s", clock=FixedClock(), actor="t"))


def _postgres(tmp_path: Path) -> tuple[Ledger, Callable[[], Ledger]]:
    url, schema = pg_helpers.database_url(), pg_helpers.new_schema()
    return (Ledger(pg_helpers.open_store(url, schema), prefix="s", clock=FixedClock(), actor="t"),
            lambda: Ledger(pg_helpers.open_store(url, schema), prefix="s", clock=FixedClock(), actor="t"))


@pytest.fixture(params=["sqlite", "postgres"])
def ledgers(request: pytest.FixtureRequest, tmp_path: Path
            ) -> Iterator[tuple[Ledger, Callable[[], Ledger]]]:
    ledger, other = {"sqlite": _sqlite, "postgres": _postgres}[request.param](tmp_path)
    with ledger:
        yield ledger, other


def test_blocked_is_of_one_state_when_a_write_commits_in_between(
        ledgers: tuple[Ledger, Callable[[], Ledger]], monkeypatch: pytest.MonkeyPatch) -> None:
    ledger, other = ledgers
    blocker = ledger.create("blocker")
    ledger.create("waits", after=[blocker.id])
    late: list[str] = []
    real = ledger.store.held_links

    def then_a_write() -> HeldLinks:
        links = real()
        if not late:  # another process adds a task held by the blocker
            with other() as writer:
                late.append(writer.create("late", after=[blocker.id]).id)
        return links

    monkeypatch.setattr(ledger.store, "held_links", then_a_write)
    held = {b.task.id: b.blockers for b in ledger.blocked()}
    assert late and late[0] not in held  # (of the state the listing began in)
    assert list(held.values()) == [[blocker.id]]
    assert not ledger.store.in_transaction
    # the next listing sees the write, with what holds the new task
    held = {b.task.id: b.blockers for b in ledger.blocked()}
    assert held[late[0]] == [blocker.id]
    ledger.create("after the listing")  # (the snapshot ended: writes go on)


def test_a_write_while_blocked_is_read_ends_its_snapshot(
        ledgers: tuple[Ledger, Callable[[], Ledger]]) -> None:
    """Unblocking the tasks as they are listed: each write ends the listing's snapshot
    (the rest is read as the write left it, as before there was one), and an iterator
    closed later, inside a transaction, ends nothing of that transaction's."""
    ledger, other = ledgers
    blocker = ledger.create("blocker")
    waiting = [ledger.create(f"waits {i}", after=[blocker.id]).id for i in range(3)]
    seen = []
    for item in ledger.iter_blocked(page_size=1):
        seen.append(item.task.id)
        ledger.update(item.task.id, {"priority": 0})
    assert seen == waiting
    assert not ledger.store.in_transaction
    items = ledger.iter_blocked(page_size=1)
    next(items)
    with ledger.transaction():
        ledger.create("in the transaction")
        items.close()  # type: ignore[attr-defined]
        ledger.create("after the close, in the same transaction")
    with other() as reader:
        assert {t.title for t in reader.list_tasks()} >= {
            "in the transaction", "after the close, in the same transaction"}
        assert all(reader.show(tid).priority == 0 for tid in waiting)


def test_a_snapshot_inside_a_transaction_is_that_transaction(
        ledgers: tuple[Ledger, Callable[[], Ledger]]) -> None:
    ledger, _other = ledgers
    with ledger.transaction():
        task = ledger.create("made in the transaction")
        with ledger.store.snapshot():
            assert ledger.store.task(task.id) is not None
        ledger.create("and another")
    assert len(ledger.list_tasks()) == 2


def test_a_blocked_listing_left_half_read_after_its_ledger_closed(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path / "db", prefix="s")
    blocker = ledger.create("blocker")
    for i in range(3):
        ledger.create(f"waits {i}", after=[blocker.id])
    items = ledger.iter_blocked(page_size=1)
    assert next(items).blockers == [blocker.id]
    ledger.close_db()
    items.close()  # type: ignore[attr-defined]  (the read ended with the connection)


def test_show_is_of_one_state_when_a_write_commits_in_between(
        ledgers: tuple[Ledger, Callable[[], Ledger]], monkeypatch: pytest.MonkeyPatch) -> None:
    """A task shown (its row, dependencies, comments, ...) while another process comments on
    it and adds a dependent: none of that write, not its comment without its dependent."""
    ledger, other = ledgers
    task = ledger.create("shown")
    real = ledger.store.deps_of
    wrote: list[str] = []

    def then_a_write(task_id: str) -> list[Any]:
        deps = real(task_id)
        if not wrote:
            with other() as writer, writer.transaction():
                writer.comment(task.id, "meanwhile")
                wrote.append(writer.create("after it", after=[task.id]).id)
        return deps

    monkeypatch.setattr(ledger.store, "deps_of", then_a_write)
    shown = ledger.show(task.id)
    assert wrote and shown.comments == [] and shown.dependents == []
    assert not ledger.store.in_transaction
    monkeypatch.undo()
    again = ledger.show(task.id)
    assert [c.text for c in again.comments] == ["meanwhile"]
    assert [d.issue_id for d in again.dependents] == wrote
