"""An import into an empty ledger knows from its reading what its dependencies leave
dangling and whether one can close a cycle (``parse.Seen``), and leaves every task's
readiness at its default before making it (``recompute_readiness(fresh=True)``): what it
reports, and the readiness it leaves, are what the ledger says when asked afterwards."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskmill.beads import import_beads
from taskmill.beads.parse import Seen
from taskmill.ledger import Ledger

IDS = ["bd-1", "bd-2", "bd-3", "bd-4", "bd-5"]
TYPES = ["blocks", "parent-child", "related", "conditional-blocks", "waits-for"]


@st.composite
def files(draw: st.DrawFn) -> list[dict[str, Any]]:
    ids = draw(st.lists(st.sampled_from(IDS), min_size=1, max_size=5, unique=True))
    out = []
    for tid in ids:
        record: dict[str, Any] = {
            "id": tid, "title": f"task {tid}",
            "status": draw(st.sampled_from(["open", "closed", "blocked", "deferred"])),
            "priority": 2, "issue_type": "task", "created_at": "2023-01-01T00:00:00Z",
            "updated_at": "2023-01-01T00:00:00Z"}
        deps = []
        for target in draw(st.lists(st.sampled_from([*IDS, "gone-1"]), max_size=3,
                                    unique=True)):
            deps.append({"issue_id": tid, "depends_on_id": target,
                         "type": draw(st.sampled_from(TYPES))})
        if deps:
            record["dependencies"] = deps
        out.append(record)
    return out


def _import(records: list[dict[str, Any]], where: Path) -> tuple[Any, Ledger]:
    source = where / "issues.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    ledger = Ledger.open(where / "db", prefix="bd")
    return import_beads(ledger, source, workers=0), ledger


def _check(records: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        report, ledger = _import(records, Path(tmp))
        with ledger:
            assert report.dangling_deps == ledger.store.dangling_deps()
            assert report.created_ids == ledger.store.ids_by_seq(1, len(records))
            assert sorted(map(sorted, report.cycles)) == sorted(map(sorted, ledger.cycles()))
            state = ledger.store.readiness_state()
            with ledger.transaction() as store:
                store.recompute_readiness()  # (resetting first)
            assert ledger.store.readiness_state() == state


@settings(max_examples=150, deadline=None)
@given(files())
def test_what_an_import_into_an_empty_ledger_reports_is_what_the_ledger_says(
        records: list[dict[str, Any]]) -> None:
    _check(records)


@settings(max_examples=40, deadline=None)
@given(files())
def test_past_what_is_kept_of_the_ids_ahead_the_ledger_is_asked(
        records: list[dict[str, Any]]) -> None:
    was = Seen.AHEAD_MAX
    Seen.AHEAD_MAX = 0
    try:
        _check(records)
    finally:
        Seen.AHEAD_MAX = was


def _record(tid: str, *on: str) -> dict[str, Any]:
    record: dict[str, Any] = {"id": tid, "title": tid, "status": "open", "priority": 2,
                              "issue_type": "task", "created_at": "2023-01-01T00:00:00Z",
                              "updated_at": "2023-01-01T00:00:00Z"}
    if on:
        record["dependencies"] = [{"issue_id": tid, "depends_on_id": o, "type": "blocks"}
                                  for o in on]
    return record


@pytest.mark.parametrize(("records", "cycles", "dangling"), [
    ([_record("bd-1"), _record("bd-2", "bd-1")], 0, 0),  # (each on an earlier one)
    ([_record("bd-1", "bd-2"), _record("bd-2", "bd-1")], 1, 0),
    ([_record("bd-1", "bd-1")], 1, 0),  # (on itself)
    ([_record("bd-1", "bd-2"), _record("bd-2", "gone")], 0, 1),  # (ahead, no cycle)
])
def test_cycles_and_dangling_dependencies_of_a_file(
        tmp_path: Path, records: list[dict[str, Any]], cycles: int, dangling: int) -> None:
    report, ledger = _import(records, tmp_path)
    with ledger:
        assert (len(report.cycles), report.dangling_deps) == (cycles, dangling)


def test_a_dependency_left_in_the_ledger_without_its_task_is_counted(tmp_path: Path) -> None:
    """A dependency row written behind taskmill's back, of a task the ledger does not hold:
    the ledger is not empty of dependencies, so the import asks it."""
    with Ledger.open(tmp_path / "db", prefix="bd") as ledger:
        ledger.store.conn.execute(  # type: ignore[attr-defined]
            "INSERT INTO deps (issue_id, depends_on_id, type, pos) VALUES"
            " ('bd-9', 'bd-8', 'blocks', 0)")
    report, ledger = _import([_record("bd-1")], tmp_path)
    with ledger:
        assert report.dangling_deps == 1 == ledger.store.dangling_deps()


def test_the_ids_created_are_the_records_read_an_id_with_a_nul_too(tmp_path: Path) -> None:
    records = [{**_record("bd-a\x00b"), "title": "a"}, _record("bd-c", "bd-a\x00b")]
    report, ledger = _import(records, tmp_path)
    with ledger:
        assert report.created_ids == ["bd-a\x00b", "bd-c"] == ledger.store.ids_by_seq(1, 2)
