"""A long listing read by two processes (:mod:`taskmill.ledger.sqlite.split`): the same rows
in the same order as read at once, and the state the listing began with even when another
connection writes meanwhile or the child fails; the links ``blocked`` reads in a child."""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from forks import count_forks, count_laid, not_used
from taskmill.ledger import Ledger
from taskmill.ledger.sqlite import listing as sqlite_listing
from taskmill.ledger.sqlite import split, streamed
from taskmill.ledger.sqlite.schema import connect


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ledger]:
    monkeypatch.setattr(split, "SPLIT_MIN", 4)
    monkeypatch.setattr(split, "LINKS_FORK_MIN", 4)
    monkeypatch.setattr(threading, "active_count", lambda: 1)  # (pytest's own threads)
    ledger = Ledger.open(tmp_path / "db", prefix="s")
    with ledger:
        epic = ledger.create("epic", labels=["x"])
        for i in range(24):
            ledger.create(f"task {i} ünï", priority=i % 3, parent=epic.id if i % 5 == 0 else None,
                          labels=["b", "a"] if i % 2 else [], after=[epic.id] if i == 7 else ())
        yield ledger


def _serial(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], list[object]]:
    with monkeypatch.context() as m:
        m.setattr(split, "SPLIT_MIN", 10**9)
        return list(ledger.list_json(status="open")), list(ledger.list_cells(status="open"))


def test_the_split_listing_is_the_listing(ledger: Ledger,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    texts, cells = _serial(ledger, monkeypatch)
    assert len(texts) == len(cells) == 25
    forks = count_forks(monkeypatch)
    assert list(ledger.list_json(status="open")) == texts
    assert [tuple(c) for c in ledger.list_cells(status="open")] == [tuple(c) for c in cells]
    assert len(forks) == 2


def test_a_write_meanwhile_leaves_the_listing_as_it_began(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    texts, _ = _serial(ledger, monkeypatch)
    store = ledger.store
    go, told = os.pipe()
    child = split._child

    def after_the_write(*args: Any) -> int:
        os.read(go, 1)  # (the child begins reading once the write is committed)
        return child(*args)

    monkeypatch.setattr(split, "_child", after_the_write)
    rows = ledger.list_json(status="open")
    assert next(rows) == texts[0]
    other = connect(store.path)  # type: ignore[attr-defined]
    other.execute("UPDATE tasks SET title = 'changed' WHERE status = 'open'")
    other.close()
    os.write(told, b"1")
    assert [texts[0], *rows] == texts  # (the child saw the change: its rows not used)
    os.close(go)
    os.close(told)
    monkeypatch.setattr(split, "_child", child)
    assert all('"title": "changed"' in t for t in ledger.list_json(status="open"))


def test_a_failed_child_is_passed_over(ledger: Ledger, monkeypatch: pytest.MonkeyPatch
                                       ) -> None:
    texts, _ = _serial(ledger, monkeypatch)

    def broken(*args: object) -> int:
        raise RuntimeError("the child could not read")

    monkeypatch.setattr(split, "_child", broken)
    assert list(ledger.list_json(status="open")) == texts


def test_the_links_read_by_a_child_are_the_links(ledger: Ledger,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = ledger.create("blocker")
    for i in range(3):
        ledger.create(f"waits {i}", after=[blocker.id])
    for i in range(3):  # (more held tasks, by their parent)
        ledger.create(f"under {i}", parent=ledger.create(f"epic {i}", after=[blocker.id]).id)
    store = ledger.store
    forks = count_forks(monkeypatch)
    spans: list[tuple[Any, ...]] = []
    real = sqlite_listing.held_links

    def recorded(conn: Any, *span: Any) -> Any:
        spans.append(span)
        return real(conn, *span)

    monkeypatch.setattr(sqlite_listing, "held_links", recorded)
    reading = store.held_links_reading()
    assert isinstance(reading, split.PinnedReading)
    assert len(forks) == 1
    links = reading.result()
    assert links == real(store.conn)  # type: ignore[attr-defined]
    assert links.parents and links.states and len(links.waits) >= 6
    assert [span[0] for span in spans] == [" AND t.id < ?"]  # (this process's share: the
    assert reading.done()  # ids before the child's; the child's not recorded here)
    reading.close()

    def broken(conn: object) -> object:
        raise RuntimeError("the child could not read")

    failed = split.ForkedReading(store.path, broken, store.held_links)  # type: ignore[attr-defined]
    assert failed.result() == store.held_links()


def test_blocked_with_the_links_read_by_a_child(ledger: Ledger,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = ledger.create("blocker")
    for i in range(12):
        ledger.create(f"waits {i}", after=[blocker.id], priority=i % 3)
    ledger.create("marked", status="blocked")
    with monkeypatch.context() as m:
        m.setattr(split, "SPLIT_MIN", 10**9)
        texts = list(ledger.blocked_json())
        cells = [(tuple(row), blockers, held) for row, blockers, held in ledger.blocked_cells()]
    assert len(texts) == len(cells) == 14  # (and the epic's waiting child)
    forks = count_forks(monkeypatch)
    assert list(ledger.blocked_json()) == texts
    assert [(tuple(row), blockers, held)
            for row, blockers, held in ledger.blocked_cells()] == cells
    assert len(forks) == 2  # (the links, twice; the rows are read at once)


@pytest.mark.parametrize("split_min", [4, 10**9])
@pytest.mark.parametrize("listing", ["list", "cells", "blocked", "blocked cells"])
def test_a_listing_left_half_read_closes_after_its_ledger(
        ledger: Ledger, listing: str, split_min: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A closed pipe leaves a listing half read; it is collected after the ledger closed
    (the exception's frames hold it): closing it then raises nothing."""
    monkeypatch.setattr(split, "SPLIT_MIN", split_min)
    rows: Iterator[object] = {
        "list": lambda: ledger.list_json(status="open"),
        "cells": lambda: ledger.list_cells(status="open"),
        "blocked": ledger.blocked_json,
        "blocked cells": ledger.blocked_cells,
    }[listing]()
    assert next(rows)
    ledger.close_db()
    rows.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize("reader", ["child", "thread"])
def test_blocked_is_of_one_state_when_a_write_commits_meanwhile(
        ledger: Ledger, reader: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The links are read by another connection while this one reads the rows: a write
    committed in between would list a task as held by nothing (its rows from before the
    write, its links from after). The links are then read again in the rows' state."""
    blocker = ledger.create("blocker")
    for i in range(6):
        ledger.create(f"waits {i}", after=[blocker.id])
    if reader == "thread":
        monkeypatch.setattr(split, "LINKS_FORK_MIN", 10**9)
    with monkeypatch.context() as m:
        m.setattr(split, "SPLIT_MIN", 10**9)
        m.setattr(split, "LINKS_FORK_MIN", 10**9)
        texts = list(ledger.blocked_json())
    assert sum(f'"blocked_by": [\n      "{blocker.id}"\n    ]' in t for t in texts) == 6
    store = ledger.store
    path = store.path  # type: ignore[attr-defined]
    real = sqlite_listing.held_links

    def after_a_write(conn: Any, *span: Any) -> Any:
        if conn is not store.conn:  # type: ignore[attr-defined]  (the other reader's)
            other = connect(path)
            other.execute("UPDATE tasks SET status = 'closed' WHERE id = ?", (blocker.id,))
            other.close()
        return real(conn, *span)

    monkeypatch.setattr(sqlite_listing, "held_links", after_a_write)
    forks = count_forks(monkeypatch)
    assert list(ledger.blocked_json()) == texts
    assert len(forks) == (reader == "child")
    monkeypatch.setattr(sqlite_listing, "held_links", real)
    assert not store.conn.in_transaction  # type: ignore[attr-defined]  (ended with it)
    assert sum('"blocked_by": []' in t for t in ledger.blocked_json()) == 6  # (the write's)


def test_blocked_in_a_process_with_threads_begins_nothing_on_its_connection(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    # another thread may use the connection meanwhile (a server's): the links are read on
    # it at once, with no transaction of the listing's own left on it
    blocker = ledger.create("blocker")
    ledger.create("waits", after=[blocker.id])
    expected = list(ledger.blocked_json())
    monkeypatch.setattr(threading, "active_count", lambda: 2)
    reading = ledger.store.held_links_reading()
    assert not isinstance(reading, split.PinnedReading)
    assert not ledger.store.conn.in_transaction  # type: ignore[attr-defined]
    reading.close()
    assert list(ledger.blocked_json()) == expected


# -- a table's rows read by a child alone, passed on through a pipe as they come ------------


def _cells(ledger: Ledger) -> list[tuple[object, ...]]:
    return [tuple(c) for c in ledger.list_cells(status="open")]


def test_a_tables_rows_are_read_by_a_child_and_passed_on_as_they_come(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    _, serial = _serial(ledger, monkeypatch)
    monkeypatch.setattr(streamed, "STREAM_BATCH", 2)
    passed: list[int] = []
    child = streamed._child

    def counted(path: Path, told: int, rows: Any) -> int:
        def counted_rows(*args: Any) -> Iterator[Any]:
            for row in rows(*args):
                passed.append(1)
                yield row

        return child(path, told, counted_rows)

    monkeypatch.setattr(streamed, "_child", counted)
    forks = count_forks(monkeypatch)
    rows = ledger.list_cells(status="open")
    first = tuple(next(rows))
    assert not passed  # (read by the child: its count is not this process's)
    assert [first, *map(tuple, rows)] == [tuple(c) for c in serial]
    assert len(forks) == 1


def test_a_write_before_the_child_reads_leaves_the_table_as_it_began(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    _, serial = _serial(ledger, monkeypatch)
    child = streamed._child

    def after_a_write(path: Path, *args: Any) -> int:
        other = connect(path)  # (another connection commits before the child reads)
        other.execute("UPDATE tasks SET title = 'changed' WHERE status = 'open'")
        other.close()
        return child(path, *args)

    monkeypatch.setattr(streamed, "_child", after_a_write)
    assert _cells(ledger) == [tuple(c) for c in serial]  # (the child's rows not used)
    monkeypatch.setattr(streamed, "_child", child)
    assert all(c[7] == "changed" for c in _cells(ledger))


@pytest.mark.parametrize("after", [0, 3, 7])
def test_a_child_that_fails_is_passed_over_after_the_rows_it_passed_on(
        ledger: Ledger, after: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A child that dies after passing on some rows (none, or part of a batch): the rest
    are read here, each row once."""
    _, serial = _serial(ledger, monkeypatch)
    monkeypatch.setattr(streamed, "STREAM_BATCH", 2)
    child = streamed._child

    def dies(path: Path, told: int, rows: Any) -> int:
        def some(*args: Any) -> Iterator[Any]:
            yield from itertools.islice(rows(*args), after)
            raise RuntimeError("the child could not read")

        return child(path, told, some)

    monkeypatch.setattr(streamed, "_child", dies)
    assert _cells(ledger) == [tuple(c) for c in serial]


def test_a_table_left_half_read_stops_its_child(ledger: Ledger,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streamed, "STREAM_BATCH", 1)
    pids: list[int] = []
    fork = split.os.fork

    def recorded() -> int:
        pid = fork()
        pids.append(pid)
        return pid

    monkeypatch.setattr(split.os, "fork", recorded)
    rows = ledger.list_cells(status="open")
    assert next(rows)
    (pid,) = pids
    rows.close()  # type: ignore[attr-defined]
    with pytest.raises(ChildProcessError):  # (stopped and reaped)
        os.waitpid(pid, os.WNOHANG)
    assert not ledger.store.conn.in_transaction  # type: ignore[attr-defined]
    assert len(_cells(ledger)) == 25


# -- a table laid out by two processes, each the stretches of the rows it reads ----------------


def _laid(ledger: Ledger, small: int) -> tuple[str, int]:
    from taskmill.cli import table_stream

    texts = list(ledger.list_texts(table_stream.Laying(small=small), status="open"))
    return "".join(text for text, _ in texts), sum(n for _, n in texts)


@pytest.mark.parametrize(("small", "kept"), [(2, True), (3, True), (5, True), (3, False)])
def test_a_table_laid_out_by_two_processes_is_the_table(
        ledger: Ledger, small: int, kept: bool, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Read from the kept cells' own table (``kept``), or, where a task's row is missing,
    from the tasks with their kept cells joined."""
    from taskmill.cli import table_stream

    (epic,) = [t for t in ledger.list_tasks() if t.title == "epic"]
    for i in range(6):  # (children listed right under their parent, some across stretches)
        ledger.create(f"kid {i}", parent=epic.id, priority=2)
    if not kept:
        other = connect(ledger.store.path)  # type: ignore[attr-defined]
        other.execute("DELETE FROM task_cells WHERE id = ?", (epic.id,))
        other.close()
    with monkeypatch.context() as m:
        m.setattr(split, "SPLIT_MIN", 10**9)
        serial = _laid(ledger, small)
        table_stream.record_rows(table_stream.records(ledger.list_cells(status="open")),
                                 extra=False, small=small)
    printed = capsys.readouterr().out
    assert serial[1] == 31 and printed == serial[0] + "31 tasks\n"
    forks = count_forks(monkeypatch)
    here = count_laid(monkeypatch, table_stream.Laying)  # (the rows this process laid
    # out: up to a stretch's start)
    assert _laid(ledger, small) == serial
    assert len(forks) == 1
    assert 0 < sum(here) < 31 and (sum(here) - (small + 1)) % small == 0


@pytest.mark.parametrize("failure", ["a write", "a failed child"])
def test_a_laid_table_whose_child_is_not_used_is_laid_out_here(
        ledger: Ledger, failure: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m:
        m.setattr(split, "SPLIT_MIN", 10**9)
        serial = _laid(ledger, 3)
    monkeypatch.setattr(split, "_child", not_used(failure, split._child, "status = 'open'"))
    assert _laid(ledger, 3) == serial
