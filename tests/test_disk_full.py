"""A full disk (SQLite's ``database or disk is full``, made here by capping the database's
pages) and other storage failures: a plain message, nothing half written, and a ledger that
works again once there is room."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import invoke_cli, make_git_repo
from taskmill.cli.context import known_error
from taskmill.errors import TaskmillError
from taskmill.ledger import Ledger
from taskmill.ledger.sqlite import schema
from taskmill.ledger.sqlite.schema import DatabaseError, database_error


def _cap(conn: sqlite3.Connection) -> None:
    """No page more than the database has now: the next write that needs one fails full."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")


def _uncap(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA max_page_count = 1073741823")


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(tmp_path / "db", prefix="f") as ledger:
        ledger.create("before")
        yield ledger


def test_a_full_disk_is_said_plainly_and_the_ledger_works_again(ledger: Ledger) -> None:
    conn = ledger.store.conn  # type: ignore[attr-defined]
    _cap(conn)
    with pytest.raises(DatabaseError) as raised:
        for i in range(200):  # (until a write needs a page the database may not have)
            ledger.create(f"task {i}", description="x" * 20000)
    assert raised.value.message.startswith("the disk holding the ledger is full")
    assert "nothing was changed" in raised.value.message
    assert raised.value.hint is not None and "free some space" in raised.value.hint
    assert not conn.in_transaction  # (not left open: every later write would fail)
    made = [t.title for t in ledger.list_tasks()]
    _uncap(conn)
    ledger.create("after")
    assert [t.title for t in ledger.list_tasks()] == [*made, "after"]
    assert ledger.verify().ok


def test_a_full_disk_at_the_commit_leaves_no_transaction_open(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = ledger.store.conn  # type: ignore[attr-defined]
    real = schema.retry_locked
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = sqlite3.SQLITE_FULL  # type: ignore[attr-defined]

    def commit_fails(fn: object, **kwargs: object) -> object:
        if conn.in_transaction:
            raise database_error(full)
        return real(fn, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(schema, "retry_locked", commit_fails)
    with pytest.raises(DatabaseError, match="disk holding the ledger is full"):
        ledger.create("lost")
    monkeypatch.setattr(schema, "retry_locked", real)
    assert not conn.in_transaction
    assert [t.title for t in ledger.list_tasks()] == ["before"]  # rolled back
    ledger.create("after")
    assert [t.title for t in ledger.list_tasks()] == ["before", "after"]


@pytest.mark.parametrize(("code", "said"), [
    (sqlite3.SQLITE_FULL, "the disk holding the ledger is full"),
    (sqlite3.SQLITE_READONLY, "the ledger database cannot be written"),
    (sqlite3.SQLITE_CORRUPT, "the ledger database is damaged"),
    (sqlite3.SQLITE_IOERR | (3 << 8), "the ledger database could not be read or written"),
    (sqlite3.SQLITE_BUSY, "the ledger database stayed locked"),
])
def test_what_sqlite_raised_is_said_plainly(code: int, said: str) -> None:
    exc = sqlite3.OperationalError("what sqlite said")
    exc.sqlite_errorcode = code  # type: ignore[attr-defined]
    error = database_error(exc)
    assert error.message.startswith(said) and "what sqlite said" in error.message
    assert known_error(exc) is not None
    assert isinstance(known_error(exc), TaskmillError)
    assert known_error(ValueError("a defect")) is None  # (raised as it is)


def test_the_cli_says_a_full_disk_plainly(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_git_repo(tmp_path / "repo")
    invoke_cli(["init"], cwd=repo).ok()
    invoke_cli(["create", "before"], cwd=repo).ok()
    from taskmill.ledger import sqlite as sqlite_store

    real = sqlite_store.connect

    def capped(path: Path | str) -> sqlite3.Connection:
        conn = real(path)
        _cap(conn)
        return conn

    monkeypatch.setattr(sqlite_store, "connect", capped)
    said = invoke_cli(["create", "x" * 400, "-d", "y" * 60000, "--json"], cwd=repo)
    assert said.exception is None and said.exit_code == 1
    error = said.error()
    assert error["code"] == "database"
    assert error["message"].startswith("the disk holding the ledger is full")
    said = invoke_cli(["create", "x" * 400, "-d", "y" * 60000], cwd=repo)
    assert said.exit_code == 1 and "error: the disk holding the ledger is full" in said.stderr
    assert "hint: free some space" in said.stderr
    monkeypatch.setattr(sqlite_store, "connect", real)
    titles = [t["title"] for t in invoke_cli(["list", "--json"], cwd=repo).ok().json()]
    assert titles == ["before"]


def test_a_damaged_ledger_file_is_said_plainly(tmp_path: Path) -> None:
    repo = make_git_repo(tmp_path / "repo")
    invoke_cli(["init"], cwd=repo).ok()
    invoke_cli(["create", "before"], cwd=repo).ok()
    db = repo / ".taskmill" / "taskmill.db"
    for extra in ("-wal", "-shm"):
        Path(f"{db}{extra}").unlink(missing_ok=True)
    db.write_bytes(b"not a database at all" * 400)
    for args in (["list", "--json"], ["create", "after", "--json"]):
        said = invoke_cli(args, cwd=repo)
        assert said.exception is None and said.exit_code == 1
        error = said.error()
        assert error["code"] == "database"
        assert error["message"].startswith("the ledger database is damaged")
    assert db.read_bytes() == b"not a database at all" * 400  # (left as it was)
