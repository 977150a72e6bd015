"""The audit trail: every change is one hash-chained event, and tampering is caught.

Events are altered and removed with plain ``sqlite3`` on the database file, the way someone
editing the file behind taskmill's back would; ``verify`` must name the first bad event and
``taskmill verify`` must exit 5.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import CliResult
from taskmill.audit import GENESIS, canonical, chain_hash
from taskmill.clock import FixedClock
from taskmill.errors import NotFound
from taskmill.ledger import Ledger


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def filled(db_path: Path) -> Iterator[Ledger]:
    """A file ledger with eight events (seq 1..8)."""
    ledger = Ledger.open(db_path, prefix="tm", clock=FixedClock(step=1), actor="alice")
    a = ledger.create("first")  # 1
    b = ledger.create("second")  # 2
    ledger.add_dep(b.id, a.id)  # 3
    ledger.update(a.id, {"priority": 1})  # 4
    ledger.add_labels(a.id, ["x"])  # 5
    ledger.comment(a.id, "looks good")  # 6
    ledger.close(a.id, "done")  # 7
    ledger.claim(b.id, "bob")  # 8
    yield ledger
    ledger.close_db()


def tamper(db_path: Path, sql: str, *args: object) -> None:
    conn = sqlite3.connect(db_path)
    try:
        with conn:
            cur = conn.execute(sql, args)
            assert cur.rowcount >= 1, sql
    finally:
        conn.close()


def fresh_verify(db_path: Path):  # type: ignore[no-untyped-def]
    with Ledger.open(db_path, prefix="tm") as ledger:
        return ledger.verify()


def test_every_change_is_one_chained_event(filled: Ledger) -> None:
    events = filled.events()
    assert [e.seq for e in events] == list(range(1, 9))
    assert [e.kind for e in events] == ["created", "created", "dep_added", "updated",
                                        "labels_added", "commented", "updated", "claimed"]
    assert events[0].prev_hash == GENESIS
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.hash
    assert events[3].data == {"changes": {"priority": [2, 1]}}
    assert events[7].actor == "bob"
    report = filled.verify()
    assert report.ok and report.events == 8 and report.first_bad_seq is None
    assert report.head == events[-1].hash
    # the hash is sha256(prev + canonical event), recomputable by anyone
    row = filled.store.conn.execute(
        "SELECT seq, ts, actor, task_id, kind, data, prev_hash, hash FROM events WHERE seq = 5"
    ).fetchone()
    assert chain_hash(row[6], canonical(*row[:6])) == row[7]


def test_events_for_one_task_and_last_n(filled: Ledger) -> None:
    first = filled.events()[0].task_id
    assert first is not None
    assert [e.kind for e in filled.events(first)] == [
        "created", "updated", "labels_added", "commented", "updated"]
    assert [e.seq for e in filled.events(limit=3)] == [6, 7, 8]
    with pytest.raises(NotFound):
        filled.events("tm-nope")


@pytest.mark.parametrize("column, value", [
    ("data", '{"new":{"title":"forged"}}'),
    ("actor", "mallory"),
    ("ts", "2020-01-01T00:00:00.000000Z"),
    ("kind", "deleted"),
    ("task_id", "tm-zzzz"),
])
def test_a_modified_event_is_named(filled: Ledger, db_path: Path, column: str,
                                   value: str) -> None:
    tamper(db_path, f"UPDATE events SET {column} = ? WHERE seq = 4", value)
    report = fresh_verify(db_path)
    assert not report.ok
    assert report.first_bad_seq == 4
    assert "event 4" in report.problems[0] and "altered" in report.problems[0]


def test_a_modified_event_with_a_recomputed_hash_breaks_the_next_link(
        filled: Ledger, db_path: Path) -> None:
    row = filled.store.conn.execute(
        "SELECT seq, ts, actor, task_id, kind, prev_hash FROM events WHERE seq = 3").fetchone()
    forged = '{"depends_on":"tm-forged","type":"blocks"}'
    digest = chain_hash(row[5], canonical(row[0], row[1], row[2], row[3], row[4], forged))
    tamper(db_path, "UPDATE events SET data = ?, hash = ? WHERE seq = 3", forged, digest)
    report = fresh_verify(db_path)
    assert not report.ok and report.first_bad_seq == 4
    assert "event 4" in report.problems[0]


@pytest.mark.parametrize("where, first_bad, named", [
    pytest.param("WHERE seq = 5", 5, ("removed", "5"), id="a middle event"),
    pytest.param("WHERE seq IN (3, 4, 6)", 3, (), id="several middle events: the first"),
    pytest.param("WHERE seq = 1", 1, (), id="the first event"),
    pytest.param("WHERE seq = 8", 8, ("removed",), id="the last event"),
    pytest.param("WHERE seq >= 6", 6, (), id="the last events together"),
    pytest.param("", 1, (), id="every event"),
])
def test_deleted_events_are_named(filled: Ledger, db_path: Path, where: str, first_bad: int,
                                  named: tuple[str, ...]) -> None:
    tamper(db_path, f"DELETE FROM events {where}")
    report = fresh_verify(db_path)
    assert not report.ok and report.first_bad_seq == first_bad
    for fragment in named:
        assert fragment in report.problems[0]


def test_a_forged_head_is_caught(filled: Ledger, db_path: Path) -> None:
    tamper(db_path, "UPDATE meta SET value = ? WHERE key = 'audit_head'", "8:" + "f" * 64)
    report = fresh_verify(db_path)
    assert not report.ok


def test_a_failed_change_leaves_no_event_and_the_chain_intact(filled: Ledger) -> None:
    before = len(filled.events())
    with pytest.raises(NotFound):
        filled.create("orphan", after=["tm-missing"])
    with pytest.raises(NotFound):
        filled.comment("tm-missing", "hello")
    assert len(filled.events()) == before
    filled.create("after the failure")
    report = filled.verify()
    assert report.ok and report.events == before + 1


def test_another_connection_continues_the_chain(filled: Ledger, db_path: Path) -> None:
    with Ledger.open(db_path, prefix="tm", actor="carol") as other:
        other.create("from another process")
    filled.create("and back")
    report = filled.verify()
    assert report.ok and report.events == 10
    assert [e.actor for e in filled.events(limit=2)] == ["carol", "alice"]


# -- the command -------------------------------------------------------------------------


def _db(repo: Path) -> Path:
    return repo / ".taskmill" / "taskmill.db"


def _some_history(cli: Callable[..., CliResult], repo: Path) -> None:
    a = cli("create", "one", "--json", cwd=repo).ok().json()["id"]
    b = cli("create", "two", "--json", cwd=repo).ok().json()["id"]
    cli("dep", "add", b, a, cwd=repo).ok()
    cli("close", a, cwd=repo).ok()  # 4 events


def test_verify_command_ok(cli: Callable[..., CliResult], taskmill_repo: Path) -> None:
    _some_history(cli, taskmill_repo)
    result = cli("verify", "--json", cwd=taskmill_repo).ok()
    data = result.json()
    assert data["ok"] is True and data["events"] == 4 and data["first_bad_seq"] is None
    assert "4" in cli("verify", cwd=taskmill_repo).ok().stdout


@pytest.mark.parametrize("sql, bad", [
    ("UPDATE events SET data = '{}' WHERE seq = 2", 2),
    ("DELETE FROM events WHERE seq = 3", 3),
    ("DELETE FROM events WHERE seq = 4", 4),
])
def test_verify_command_exits_5_naming_the_event(cli: Callable[..., CliResult],
                                                 taskmill_repo: Path, sql: str, bad: int) -> None:
    _some_history(cli, taskmill_repo)
    tamper(_db(taskmill_repo), sql)
    result = cli("verify", "--json", cwd=taskmill_repo)
    assert result.exit_code == 5
    data = result.json()
    assert data["ok"] is False
    assert data["first_bad_seq"] == bad
    assert any(f"event {bad}" in p for p in data["problems"])
    human = cli("verify", cwd=taskmill_repo)
    assert human.exit_code == 5
    assert f"event {bad}" in human.stdout + human.stderr
