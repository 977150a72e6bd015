"""``blocked``'s table and JSON made by two processes once the links are in
(:mod:`taskmill.ledger.sqlite.held_listing`): the same bytes as one process makes, the
commands that unblock the tasks in order, and the listing of the state it began with when
another connection writes meanwhile or the child fails."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from forks import count_forks, count_laid, not_used
from taskmill.cli import table_stream
from taskmill.ledger import Ledger
from taskmill.ledger.sqlite import held_listing, split
from taskmill.model import BLOCK_COMMENT_PREFIX

HELD = 28
"""The tasks the ledger below lists as held."""


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ledger]:
    monkeypatch.setattr(held_listing, "SPLIT_MIN", 4)
    monkeypatch.setattr(split, "LINKS_FORK_MIN", 4)
    monkeypatch.setattr(threading, "active_count", lambda: 1)  # (pytest's own threads)
    ledger = Ledger.open(tmp_path / "db", prefix="h")
    with ledger:
        blockers = [ledger.create(f"blocker {i}") for i in range(3)]
        epic = ledger.create("epic", after=[blockers[0].id])
        deferred = ledger.create("parked")
        ledger.update(deferred.id, {"status": "deferred"})
        for i in range(24):  # (waiting, under a held epic or a deferred parent; a title
            # wrapped; some the epic's children, listed under it when in its stretch)
            parent = epic.id if i % 4 == 0 else deferred.id if i % 7 == 0 else None
            after = [blockers[i % 3].id, blockers[(i + 1) % 3].id][:1 + i % 2] \
                if parent is None else []
            ledger.create(f"task {i} with a title long enough to wrap in a narrow column",
                          priority=i % 3, parent=parent, labels=["b", "a"] if i % 2 else [],
                          after=after)
        for i in range(3):
            marked = ledger.create(f"marked {i}", priority=1)
            ledger.update(marked.id, {"status": "blocked"})
            if i == 1:
                ledger.comment(marked.id, BLOCK_COMMENT_PREFIX + "the checks failed 3 times")
        yield ledger


def _laid(ledger: Ledger, small: int, beads_compat: bool = False
          ) -> tuple[str, int, list[str]]:
    laying = table_stream.HeldLaying(small=small)
    texts = list(ledger.blocked_texts(laying, beads_compat=beads_compat))
    return "".join(text for text, _ in texts), sum(n for _, n in texts), laying.unblock


def _serial(ledger: Ledger, small: int, monkeypatch: pytest.MonkeyPatch,
            beads_compat: bool = False) -> tuple[str, int, list[str]]:
    with monkeypatch.context() as m:
        m.setattr(held_listing, "SPLIT_MIN", 10**9)
        return _laid(ledger, small, beads_compat)


@pytest.mark.parametrize(("small", "beads_compat"), [(2, False), (3, False), (5, False),
                                                     (3, True)])
def test_blocked_laid_out_by_two_processes_is_the_table(
        ledger: Ledger, small: int, beads_compat: bool, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    serial = _serial(ledger, small, monkeypatch, beads_compat)
    unblock: list[str] = []  # (as blocked printed its table before: from the cells)
    table_stream.blocked_records(table_stream.blocked_records_of(
        ledger.blocked_cells(beads_compat=beads_compat), unblock), unblock, small=small)
    printed = capsys.readouterr().out
    held = len(ledger.blocked(beads_compat=beads_compat))
    assert serial[1] == held == (22 if beads_compat else HELD)
    assert serial[2] == unblock and len(unblock) == (0 if beads_compat else 3)
    assert printed.startswith(serial[0] + f"{held} tasks\n")
    forks = count_forks(monkeypatch)
    here = count_laid(monkeypatch, table_stream.HeldLaying)  # (the rows this process laid
    # out: up to a stretch's start)
    assert _laid(ledger, small, beads_compat) == serial
    if beads_compat:  # (Beads' is not split: its recursive condition would be asked again
        assert len(forks) == 1 and sum(here) == held  # by each process's statements)
        return
    assert len(forks) == 2
    assert 0 < sum(here) < held and (sum(here) - (small + 1)) % small == 0


def _json(ledger: Ledger, beads_compat: bool = False) -> list[str]:
    return list(ledger.blocked_json(beads_compat=beads_compat))


@pytest.mark.parametrize("beads_compat", [False, True])
def test_blocked_json_made_by_two_processes_is_the_listing(
        ledger: Ledger, beads_compat: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from taskmill.ledger.rows import item_text

    with monkeypatch.context() as m:
        m.setattr(held_listing, "SPLIT_MIN", 10**9)
        serial = _json(ledger, beads_compat)
    assert serial == [item_text(b.to_json()) for b in ledger.blocked(beads_compat=beads_compat)]
    forks = count_forks(monkeypatch)
    monkeypatch.setattr(held_listing, "JSON_BATCH", 2)
    assert _json(ledger, beads_compat) == serial
    assert len(forks) == (1 if beads_compat else 2)


@pytest.mark.parametrize("listing", ["table", "json"])
@pytest.mark.parametrize("failure", ["a write", "a failed child"])
def test_blocked_whose_child_is_not_used_is_made_here(
        ledger: Ledger, failure: str, listing: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def made() -> object:
        return _laid(ledger, 3) if listing == "table" else _json(ledger)

    with monkeypatch.context() as m:
        m.setattr(held_listing, "SPLIT_MIN", 10**9)
        serial = made()
    monkeypatch.setattr(held_listing, "_child", not_used(failure, held_listing._child, "status != 'closed'"))
    forks = count_forks(monkeypatch)
    assert made() == serial
    assert len(forks) == 2
    if failure == "a write":
        assert "changed" in str(made())


def test_blocked_left_half_read_stops_its_layout_child(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    pids: list[int] = []
    forked = held_listing.forked

    def recorded(work: Any) -> tuple[int, int]:
        pid, ready = forked(work)
        pids.append(pid)
        return pid, ready

    monkeypatch.setattr(held_listing, "forked", recorded)
    texts = ledger.blocked_texts(table_stream.HeldLaying(small=3))
    next(texts)
    next(texts)  # (the child forked after the first stretch)
    assert len(pids) == 1
    texts.close()  # type: ignore[attr-defined]
    with pytest.raises(ChildProcessError):
        os.waitpid(pids[0], os.WNOHANG)  # (waited for: gone)
    assert not ledger.store.conn.in_transaction  # type: ignore[attr-defined]


def test_a_short_blocked_table_is_laid_out_here(ledger: Ledger,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    serial = _serial(ledger, 3, monkeypatch)
    monkeypatch.setattr(held_listing, "SPLIT_MIN", HELD + 1)
    forks = count_forks(monkeypatch)
    assert _laid(ledger, 3) == serial
    assert len(forks) == 1  # (the links' child alone)
