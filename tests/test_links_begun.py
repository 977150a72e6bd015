"""``blocked``'s links begun by a child the CLI forks first (:mod:`taskmill.ledger.links_begun`,
:mod:`taskmill.cli.lean_links`): taken over by the store, the listing the same bytes; a
write after the begin, a failed child: the links read as without it; nothing begun where a
kept listing answers or the command line is another; a child not taken over ended."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from conftest import invoke_cli, lean_env
from taskmill.cli import lean_links, main
from taskmill.clock import FixedClock
from taskmill.ledger import Ledger, links_begun
from taskmill.ledger.sqlite import SqliteStore, held_listing, split


@pytest.fixture
def repo(taskmill_repo: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Held tasks (waiting on blockers, under a deferred parent), the lean cache written;
    a small ledger counted as big."""
    with Ledger.open(taskmill_repo / ".taskmill" / "taskmill.db", prefix="tm",
                     clock=FixedClock()) as ledger:
        blockers = [ledger.create(f"blocker {i}").id for i in range(3)]
        parked = ledger.create("parked")
        ledger.update(parked.id, {"status": "deferred"})
        for i in range(30):
            ledger.create(f"task {i} waiting", parent=parked.id if i % 5 == 0 else None,
                          after=[] if i % 5 == 0 else blockers[:1 + i % 3])
    invoke_cli(["list"], cwd=taskmill_repo).ok()  # (the full path: the config checked)
    monkeypatch.setattr(links_begun, "FORK_MIN", 4)
    monkeypatch.setattr(split, "LINKS_FORK_MIN", 4)
    monkeypatch.setattr(held_listing, "SPLIT_MIN", 8)
    monkeypatch.setattr(threading, "active_count", lambda: 1)  # (pytest's own threads)
    return taskmill_repo


def _blocked(repo: Path, capsys: pytest.CaptureFixture[str], *argv: str,
             **env: str) -> tuple[str, bool]:
    """``taskmill blocked ARGV`` through the CLI's entry point, without what was kept;
    its output, and whether the links were read here in the end (all of them)."""
    read_here: list[bool] = []
    held_links = SqliteStore.held_links

    def counted(self: SqliteStore) -> object:
        read_here.append(True)
        return held_links(self)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(SqliteStore, "held_links", counted)
        with pytest.raises(SystemExit) as done:
            main(["blocked", *argv], env=lean_env(TASKMILL_KEPT="0", **env), cwd=repo)
    assert done.value.code in (0, None)
    return capsys.readouterr().out, bool(read_here)


def _begin(repo: Path, argv: list[str], **env: str) -> bool:
    return lean_links.begin(argv, lean_env(**env), str(repo))


@pytest.mark.parametrize("argv", [[], ["--json"]])
def test_the_begun_links_are_taken_and_make_the_same_listing(
        repo: Path, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    expected, _ = _blocked(repo, capsys, *argv, TASKMILL_LEAN="0")  # (nothing begun)
    taken: list[links_begun.Begun | None] = []
    take = links_begun.take

    def spied(db: str) -> links_begun.Begun | None:
        taken.append(take(db))
        return taken[-1]

    with pytest.MonkeyPatch.context() as m:
        m.setattr(links_begun, "take", spied)
        out, read_here = _blocked(repo, capsys, *argv)
    assert out == expected and "tm-" in out
    assert len(taken) == 1 and taken[0] is not None and not read_here
    assert taken[0].status is not None  # (the child waited for)
    with pytest.raises(sqlite3.ProgrammingError):  # (its connection closed)
        taken[0].watch.execute("SELECT 1")


def test_a_write_after_the_begin_is_listed(repo: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert _begin(repo, ["blocked"])
    db = repo / ".taskmill" / "taskmill.db"
    with Ledger.open(db, prefix="tm", clock=FixedClock()) as ledger:  # (another process
        for task in ledger.list_tasks():  # would: after the child began reading)
            if task.title == "blocker 0":
                ledger.close(task.id, "done")
    assert links_begun._BEGUN
    out, read_here = _blocked(repo, capsys, TASKMILL_LEAN="0")  # (the listing takes the
    assert read_here and not links_begun._BEGUN  # child begun, whose links were of the
    # state before the write, and reads them here)
    expected, _ = _blocked(repo, capsys, TASKMILL_LEAN="0")
    assert out == expected


def test_a_failed_child_leaves_the_links_to_this_process(
        repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected, _ = _blocked(repo, capsys, TASKMILL_LEAN="0")

    def failing(db: str, out: object) -> None:
        raise RuntimeError("the child could not read")

    monkeypatch.setattr(lean_links, "_read", failing)
    out, read_here = _blocked(repo, capsys)
    assert read_here and out == expected


def test_nothing_is_begun_for_other_command_lines_or_a_kept_listing(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert not _begin(repo, ["blocked", "--beads-compat"])
    assert not _begin(repo, ["blocked", "--json", "-q"])
    assert not _begin(repo, ["blocked"], TASKMILL_LEAN="0")
    assert not _begin(repo.parent, ["blocked"])  # (no repository there)
    with pytest.raises(SystemExit):
        main(["blocked", "--json"], env=lean_env(), cwd=repo)  # (kept as printed)
    capsys.readouterr()
    assert not _begin(repo, ["blocked"])  # (the answer is kept: no link is read)
    assert _begin(repo, ["blocked"], TASKMILL_KEPT="0")
    links_begun._end_all()


def test_a_child_not_taken_is_ended(repo: Path) -> None:
    assert _begin(repo, ["blocked"])
    begun = links_begun.take(str(repo / ".taskmill" / "taskmill.db"))
    assert begun is not None
    links_begun._BEGUN["elsewhere"] = begun
    links_begun._end_all()  # (as the process ends)
    assert begun.status is not None and not links_begun._BEGUN
    with pytest.raises(ChildProcessError):
        os.waitpid(begun.pid, os.WNOHANG)  # (no zombie left)
