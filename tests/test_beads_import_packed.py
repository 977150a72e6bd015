"""Into an empty ledger, a worker makes its batch's rows ready for the store
(:meth:`LedgerStore.import_packer`) and the importing process writes them as they come
(:meth:`LedgerStore.import_packed`): the ledger that leaves is, row for row, the one the
records parsed in one process leave, on SQLite and on a real PostgreSQL; a bad line or an
id given twice after such batches imports nothing."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import pg_helpers
from taskmill.beads import import_beads, parallel
from taskmill.clock import FixedClock
from taskmill.errors import InvalidInput
from taskmill.ledger import Ledger
from taskmill.ledger.sqlite import SqliteStore
from test_beads import SAMPLE, _jsonl, _rec
from test_beads_parallel import _edge_records

CLOCK = FixedClock(datetime(2026, 12, 1, tzinfo=UTC))
TABLES = ("tasks", "labels", "deps", "comments", "linked_waiting")


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "BATCH_BYTES", 400)  # (a few records a batch)


def _records() -> list[dict[str, Any]]:
    """Records of every shape a batch may hold: the usual ones (labels, dependencies of each
    type, a parent named before and after its child, one never given), the rarer fields,
    a time with an offset (its order key made by the worker), comments (their batch
    written as items)."""
    out: list[dict[str, Any]] = []
    for i in range(40):
        deps = []
        if i % 3 == 1:
            deps.append({"issue_id": f"k-{i}", "depends_on_id": f"k-{i - 1}", "type": "blocks"})
        if i % 5 == 2:
            deps.append({"issue_id": f"k-{i}", "depends_on_id": f"k-{i + 7}",
                         "type": "parent-child"})
        if i % 7 == 3:
            deps.append({"issue_id": f"k-{i}", "depends_on_id": "gone-1", "type": "parent-child"})
        if i % 11 == 4:
            deps.append({"issue_id": f"k-{i}", "depends_on_id": "k-0", "type": "waits-for",
                         "metadata": "{\"gate\": \"any-children\"}"})
        fields: dict[str, Any] = {}
        if deps:
            fields["dependencies"] = deps
        if i % 4 == 0:
            fields["labels"] = [f"l{i % 3}", "shared"]
        if i % 9 == 5:
            fields["design"] = "a design"
        if i % 13 == 6:
            fields["created_at"] = "2025-11-02T21:58:07.295058-08:00"
        out.append(_rec(f"k-{i}", status="closed" if i % 6 == 0 else "open", **fields))
    return out


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "issues.jsonl"
    edge = [json.dumps(r, separators=(",", ":")) + "\n" for r in _edge_records()]
    path.write_text("".join(_jsonl(*_records())) + "".join(edge)
                    + SAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    return path


def _sqlite(where: Path) -> Ledger:
    return Ledger(SqliteStore.open(where / "db"), prefix="k", clock=CLOCK, actor="t")


def _postgres(where: Path) -> Ledger:
    return Ledger(pg_helpers.open_store(pg_helpers.database_url(), pg_helpers.new_schema()),
                  prefix="k", clock=CLOCK, actor="t")


def _state(ledger: Ledger) -> dict[str, Any]:
    """Everything the import wrote, as stored."""
    store: Any = ledger.store
    state: dict[str, Any] = {
        "events": [(e.kind, e.task_id, e.data) for e in ledger.events()],
        "readiness": store.readiness_state(), "ready": [t.id for t in ledger.ready()],
        "blocked": [b.task.id for b in ledger.blocked()]}
    if isinstance(store, SqliteStore):  # every column of every row (seq, order key, linked)
        for table in TABLES:
            state[table] = sorted(map(repr, store.conn.execute(f"SELECT * FROM {table}")))
    else:
        state["rows"] = (list(store.task_rows(order="seq")), list(store.label_rows()),
                         list(store.dep_rows()), list(store.comment_rows()))
    return state


@pytest.fixture(params=["sqlite", "postgres"])
def open_ledger(request: pytest.FixtureRequest) -> Callable[[Path], Ledger]:
    return {"sqlite": _sqlite, "postgres": _postgres}[request.param]  # type: ignore[return-value]


def _spied(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The batches written as packed by a worker (their sizes)."""
    packed: list[int] = []
    write = ledger.store.import_packed

    def spy(rows: Any) -> None:
        packed.append(len(rows) if isinstance(rows, list) else len(rows[0]))
        write(rows)

    monkeypatch.setattr(ledger.store, "import_packed", spy)
    return packed


def test_packed_batches_leave_the_ledger_one_process_leaves(
        tmp_path: Path, open_ledger: Callable[[Path], Ledger],
        monkeypatch: pytest.MonkeyPatch) -> None:
    path = _file(tmp_path)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    with open_ledger(tmp_path / "one") as alone, open_ledger(tmp_path / "two") as shared:
        first = import_beads(alone, path, workers=0)
        packed = _spied(shared, monkeypatch)
        report = import_beads(shared, path, workers=2)
        assert len(packed) >= 5  # (most batches came ready to write: the test is of them)
        assert report.to_json() == first.to_json()
        assert _state(shared) == _state(alone)
        assert shared.verify().ok


@pytest.mark.parametrize(("tail", "message"), [
    ('{"id": "k-99"}\n', r"line 41: k-99: missing title"),
    (json.dumps(_rec("k-3")) + "\n", r"line 41: id k-3 already appeared on line 4"),
])
def test_a_bad_line_after_packed_batches_imports_nothing(
        tmp_path: Path, tail: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "issues.jsonl"
    path.write_text("".join(_jsonl(*_records())) + tail + "".join(_jsonl(_rec("k-500"))),
                    encoding="utf-8")
    with _sqlite(tmp_path) as ledger:
        packed = _spied(ledger, monkeypatch)
        with pytest.raises(InvalidInput, match=message) as info:
            import_beads(ledger, path, workers=2)
        assert packed and info.value.hint == "nothing was imported"
        conn = ledger.store.conn  # type: ignore[attr-defined]
        assert [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES] == \
            [0] * len(TABLES)
        assert ledger.events() == [] and not multiprocessing.active_children()
        monkeypatch.undo()
        path.write_text("".join(_jsonl(*_records())), encoding="utf-8")
        assert import_beads(ledger, path, workers=2).created == 40 and ledger.verify().ok


def test_the_packer_refuses_comments() -> None:
    from taskmill.ledger.sqlite.bulk import pack_creates
    from taskmill.ledger.store import ImportItem

    with pytest.raises(ValueError, match="comments"):
        pack_creates([ImportItem(("k-1",) + ("",) * 19, [], [],
                                 [(1, "a", "text", "t", None)])])
