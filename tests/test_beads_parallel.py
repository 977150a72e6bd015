"""A big Beads file parsed by workers (:mod:`taskmill.beads.parallel`): the same import, the
same first error, nothing left behind; the files here are small, read in batches of two."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskmill.beads import import_beads, parallel
from taskmill.beads.parse import Source
from taskmill.clock import FixedClock
from taskmill.errors import InvalidInput
from taskmill.ledger import Ledger
from test_beads import SAMPLE, _counts, _export, _jsonl, _lines, _rec


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "BATCH_BYTES", 150)  # (a line or two; a long one in pieces)


def _edge_records() -> list[dict[str, Any]]:
    return [
        _rec("x-1", description="", assignee=None, closed_at="", labels=[], dependencies=[],
             comments=[], owner="someone", notes=None),
        {"title": "key order", "id": "x-2", "priority": 0, "status": "weird-status",
         "issue_type": "convoy", "updated_at": "u", "created_at": "c", "metadata": {"k": [1.5]}},
        _rec("x-3", dependencies=[
            {"issue_id": "x-3", "depends_on_id": "x-1", "type": "blocks"},
            {"issue_id": "other", "depends_on_id": "x-2", "type": "parent-child"}],
             comments=[
            {"id": 7, "issue_id": "x-3", "author": "a", "text": "second <&> \u2028 \ud83d\ude00",
             "created_at": "t"},
            {"id": "c-3", "issue_id": "x-3", "author": "b", "text": "odd id", "created_at": "t"},
            {"issue_id": "x-3", "author": None, "text": "", "created_at": "t"},
        ], labels=["b", "a"], big=2**80),
        {"id": "x-4", "title": "minimal"},
        _rec("x-5", metadata="not an object", checks=["", 3], agent=5, hints=[1], priority=4),
    ]


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_import_what_one_process_imports(tmp_path: Path, workers: int) -> None:
    path = tmp_path / "issues.jsonl"
    edge = [json.dumps(r, separators=(",", ":")) + "\n" for r in _edge_records()]  # (\ud83d)
    path.write_text("".join(edge) + "\n"
                    + SAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    clock = FixedClock(datetime(2026, 12, 1, tzinfo=UTC))  # (a record without stamps gets now)
    alone, shared = Ledger.memory(clock=clock), Ledger.memory(clock=clock)
    first = import_beads(alone, path, workers=0)
    report = import_beads(shared, path, workers=workers)
    assert report.to_json() == first.to_json()
    assert _export(shared, order="ledger") == _export(alone, order="ledger")
    assert [json.loads(line) for line in _export(shared, order="ledger")] == [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()]
    # the one audit event: the file's hash and each new task's digest, as one process made
    assert shared.events()[0].data == alone.events()[0].data
    assert shared.verify().ok
    # into a ledger that holds them: each record compared with the stored task
    again = import_beads(shared, path, workers=workers)
    assert (again.created, again.updated, again.unchanged) == (0, 0, report.created)
    edited = path.read_text(encoding="utf-8").replace('"title":"minimal"', '"title":"changed"')
    path.write_text(edited, encoding="utf-8")
    changed = import_beads(shared, path, workers=workers)
    assert (changed.created, changed.updated) == (0, 1) and changed.updated_ids == ["x-4"]
    assert shared.get("x-4").title == "changed" and shared.verify().ok


@pytest.mark.parametrize(("tail", "message"), [
    ('{"id": "b-99"}\n', r"issues.jsonl, line 8: b-99: missing title"),
    ('{"id": "b-9", "title": \n', r"issues.jsonl, line 8, column \d+: bad JSON"),
    (json.dumps(_rec("b-2")) + "\n", r"line 8: id b-2 already appeared on line 2"),
    ("\n" + json.dumps(_rec("b-3")) + "\n", r"line 9: id b-3 already appeared on line 3"),
    (json.dumps(_rec("b-8", owner="\ud800")) + "\n", r"line 8: a string holds \\ud800"),
])
def test_workers_report_the_first_bad_line_and_import_nothing(
        tmp_path: Path, tail: str, message: str) -> None:
    path = tmp_path / "issues.jsonl"
    # lines 1-7 good, then the bad one, then more bad lines in later batches
    path.write_text("".join(_jsonl(*(_rec(f"b-{i}") for i in range(1, 8)))) + tail
                    + '{"id": "b-50"}\nnot json\n', encoding="utf-8")
    ledger = Ledger.memory()
    ledger.create("already here")
    before = _counts(ledger)
    with pytest.raises(InvalidInput, match=message) as info:
        import_beads(ledger, path, workers=2, batch=3)
    assert info.value.hint == "nothing was imported"
    assert _counts(ledger) == before
    assert not multiprocessing.active_children()


def test_workers_name_a_line_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "issues.jsonl"
    good = "".join(_jsonl(*(_rec(f"n-{i}") for i in range(1, 5)))).encode()
    path.write_bytes(b"\xef\xbb\xbf" + good + b'{"id": "\xff"}\n')  # a byte order mark first
    with pytest.raises(InvalidInput, match="line 5: not UTF-8"):
        import_beads(Ledger.memory(), path, workers=2)
    path.write_bytes(b"\xef\xbb\xbf" + good)
    ledger = Ledger.memory()
    assert import_beads(ledger, path, workers=2).created == 4
    # the file's hash is of its bytes, the mark included
    assert ledger.events()[0].data["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_interrupted_import_leaves_nothing_and_no_workers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "issues.jsonl"
    path.write_bytes(SAMPLE.read_bytes())
    ledger = Ledger.memory()
    before = _counts(ledger)
    calls = []

    def interrupting(name: str) -> None:  # Ctrl-C in the middle of the writes
        writes = getattr(ledger.store, name)

        def interrupted(*args: Any) -> None:
            calls.append(name)
            if len(calls) == 2:
                raise KeyboardInterrupt
            writes(*args)

        monkeypatch.setattr(ledger.store, name, interrupted)

    interrupting("import_rows")
    interrupting("import_packed")  # (an empty ledger's: the workers' batches ready to write)
    monkeypatch.setattr(parallel, "BATCH_BYTES", 512)  # (several batches of the small file)
    with pytest.raises(KeyboardInterrupt):
        import_beads(ledger, path, workers=2, batch=4)
    assert len(calls) == 2 and "import_packed" in calls  # (a batch with comments: rows)
    assert _counts(ledger) == before
    assert not multiprocessing.active_children()
    monkeypatch.undo()
    assert import_beads(ledger, path, workers=2).created == len(_lines(SAMPLE))


def test_how_many_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    monkeypatch.setattr(threading, "active_count", lambda: 1)  # (pytest's own threads)
    small, big = tmp_path / "small.jsonl", tmp_path / "big.jsonl"
    small.write_text("{}\n")
    with big.open("wb") as out:
        out.truncate(parallel.PARALLEL_MIN_BYTES)
    assert parallel.workers_for(Source(small), cores=8) == 0  # parsed before workers start
    assert parallel.workers_for(Source(["{}\n"]), cores=8) == 0  # lines in memory
    assert parallel.workers_for(Source(big), cores=1) == 0
    assert parallel.workers_for(Source(big), cores=2) == 2
    assert parallel.workers_for(Source(big), cores=16) == parallel.MAX_WORKERS
    monkeypatch.setattr(threading, "active_count", lambda: 2)
    assert parallel.workers_for(Source(big), cores=8) == 0  # a fork copies no thread


@pytest.mark.parametrize("workers", [0, 2])
def test_an_import_says_how_far_it_is(tmp_path: Path, workers: int) -> None:
    from taskmill.beads import ImportProgress

    path = tmp_path / "issues.jsonl"
    path.write_text("".join(_jsonl(*(_rec(f"p-{i}") for i in range(7)))), encoding="utf-8")
    seen: list[ImportProgress] = []
    import_beads(Ledger.memory(), path, batch=3, workers=workers, progress=seen.append)
    size = path.stat().st_size
    told = [(p.records, p.finishing) for p in seen]
    if workers:  # (into an empty ledger, told at each batch the workers made ready)
        assert told[-2:] == [(7, False), (7, True)]
        assert [r for r, _ in told] == [*sorted({r for r, _ in told[:-1]}), 7]
    else:
        assert told == [(3, False), (6, False), (7, False), (7, True)]
    assert all(p.size == size for p in seen) and seen[-1].bytes_read == size
    assert [p.bytes_read for p in seen] == sorted(p.bytes_read for p in seen)


def test_the_import_line_on_a_terminal() -> None:
    import io

    from taskmill.beads import ImportProgress
    from taskmill.cli.import_progress import EVERY, ImportMeter

    now = [100.0]
    out = io.StringIO()
    meter = ImportMeter(out, "issues.jsonl", clock=lambda: now[0])
    meter(ImportProgress(2000, 1 << 20, 4 << 20))
    meter(ImportProgress(4000, 2 << 20, 4 << 20))  # too soon: not drawn
    now[0] += EVERY
    meter(ImportProgress(250_000, 3 << 20, 4 << 20))
    meter(ImportProgress(250_001, 4 << 20, 4 << 20, finishing=True))  # always drawn
    meter.clear()
    assert out.getvalue().split("\r\x1b[K") == [
        "", "importing issues.jsonl: 2,000 records (25%)",
        "importing issues.jsonl: 250,000 records (75%)",
        "importing issues.jsonl: 250,001 records (100%), building indexes", ""]
    out.truncate(0)
    out.seek(0)
    ImportMeter(out, "x").clear()  # nothing drawn: nothing to clear
    assert out.getvalue() == ""


def _dies_at_line_7(name: str, first: int, chunk: bytes, now: str, keep: bool,
                    pack: Any = None) -> bytes:
    """In a worker (a module's function: what the pool sends is pickled by name): the
    system kills the worker, out of memory say, when it is given line 7."""
    import os

    if first <= 7 < first + max(chunk.count(b"\n"), 1):
        os._exit(137)
    return _PARSE_BATCH(name, first, chunk, now, keep, pack)


_PARSE_BATCH = parallel._parse_batch


def test_a_worker_killed_mid_import_is_an_error_not_a_hang(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from taskmill.errors import TaskmillError

    path = tmp_path / "issues.jsonl"
    path.write_text("".join(_jsonl(*(_rec(f"k-{i}") for i in range(20)))), encoding="utf-8")
    monkeypatch.setattr(parallel, "_parse_batch", _dies_at_line_7)
    ledger = Ledger.memory()
    before = _counts(ledger)
    with pytest.raises(TaskmillError, match="ended before it was done") as info:
        import_beads(ledger, path, workers=2, batch=3)
    assert info.value.hint and "nothing was imported" in info.value.hint
    assert _counts(ledger) == before
    assert not multiprocessing.active_children()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"{}", b"", b"  ", b'{"a": "x\\ny"}', b"x" * 300, b"a\rb",
                                 b"\r"]), max_size=8),
       st.booleans(), st.booleans(), st.integers(min_value=1, max_value=400))
def test_a_file_in_pieces_is_its_lines(lines: list[bytes], mark: bool, end: bool,
                                       size: int) -> None:
    """What the workers are given (whole lines, numbered) is what one process reads line by
    line, hashed alike, a byte order mark left out alike."""
    import tempfile

    data = (b"\xef\xbb\xbf" if mark else b"") + b"\n".join(lines) + (b"\n" if end else b"")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.jsonl"
        path.write_bytes(data)
        by_line, in_pieces = Source(path), Source(path)
        expected = list(by_line.raw_lines())
        got = []
        for first, chunk in in_pieces.raw_chunks(size):
            assert chunk
            parts = chunk.split(b"\n")
            tail = parts.pop()
            pieces = [p + b"\n" for p in parts] + ([tail] if tail else [])
            got += list(enumerate(pieces, start=first))
        # (a file of a byte order mark alone: one empty line read, no piece: nothing either way)
        assert got == expected or (got, expected) == ([], [(1, b"")])
        assert in_pieces.sha256 == by_line.sha256 == hashlib.sha256(data).hexdigest()
        assert in_pieces.bytes_read == by_line.bytes_read == len(data)


def _sorted_hex(values: list[bytes]) -> str:
    values.sort()
    return hashlib.sha256(b"".join(values)).hexdigest()


def _dies(_values: list[bytes]) -> str:
    import os

    os._exit(137)


def test_a_result_made_elsewhere_meanwhile(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    values = [bytes([i % 251]) * 32 for i in range(5000)]
    expected = _sorted_hex(list(values))
    for threads in (1, 2):  # (forked; with another thread, made here)
        monkeypatch.setattr(threading, "active_count", lambda n=threads: n)
        got = parallel.elsewhere(_sorted_hex, values)
        assert got() == expected
    assert not multiprocessing.active_children()
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    from taskmill.errors import TaskmillError

    with pytest.raises(TaskmillError, match="ended before it was done"):
        parallel.elsewhere(_dies, values)()
    assert not multiprocessing.active_children()
