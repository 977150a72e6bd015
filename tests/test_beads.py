"""Beads JSONL import and export: lossless round trip, idempotence, errors, readiness."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from taskmill.beads import ImportReport, export_beads, export_json, import_beads
from taskmill.errors import ClaimConflict, InvalidInput
from taskmill.ledger import Ledger

REPO = Path(__file__).resolve().parents[1]
# the real Beads exports: ../shared/data next to the repository (or /work/shared/data)
DATA = next((p for p in (REPO.parent / "shared" / "data", Path("/work/shared/data"))
             if p.is_dir()), REPO.parent / "shared" / "data")
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SAMPLE = FIXTURES / "beads-sample.jsonl"
REAL_FILES = ["beads-issues.jsonl", "gastown-issues.jsonl"]


def _export(ledger: Ledger, **kwargs: Any) -> list[str]:
    out = io.StringIO()
    export_beads(ledger, out, **kwargs)
    return out.getvalue().splitlines()


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _by_id(lines: list[str]) -> list[str]:
    return sorted(lines, key=lambda line: json.loads(line)["id"])


def _counts(ledger: Ledger) -> tuple[int, ...]:
    conn = ledger.store.conn
    return tuple(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                 for t in ("tasks", "labels", "deps", "comments", "events", "plan_keys"))


def _rec(tid: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": tid, "title": f"Task {tid}", "status": "open", "priority": 2,
                            "issue_type": "task", "created_at": "2025-01-01T00:00:00Z",
                            "updated_at": "2025-01-01T00:00:00Z"}
    base.update(fields)
    return base


def _jsonl(*records: dict[str, Any]) -> list[str]:
    return [json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records]


# -- the real exports ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", REAL_FILES)
def test_real_file_round_trip(tmp_path: Path, name: str) -> None:
    path = DATA / name
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    original = _lines(path)
    with Ledger.open(tmp_path / "db", prefix="t") as ledger:
        report = import_beads(ledger, path)
        assert (report.created, report.updated, report.unchanged) == (len(original), 0, 0)
        # by id, as Beads writes
        exported = _export(ledger)
        expected = _by_id(original)
        assert len(exported) == len(expected)
        for want, got in zip(expected, exported, strict=True):
            assert json.loads(got) == json.loads(want)
        # and byte for byte: same key order, same escaping of <, > and &
        assert exported == expected
        # in the order of the file
        assert _export(ledger, order="ledger") == original
        assert ledger.verify().ok


@pytest.mark.slow
@pytest.mark.parametrize("name", REAL_FILES)
def test_real_file_reimport_changes_nothing(tmp_path: Path, name: str) -> None:
    path = DATA / name
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    with Ledger.open(tmp_path / "db", prefix="t") as ledger:
        first = import_beads(ledger, path)
        before = _counts(ledger)
        assert before[4] == 1  # one "imported" event for the import
        again = import_beads(ledger, path)
        assert (again.created, again.updated, again.unchanged) == (0, 0, first.created)
        assert _counts(ledger) == before
        assert ledger.verify().ok
        # tombstones are kept but hidden
        hidden = {t.id for t in ledger.list_tasks(status="tombstone")}
        assert hidden
        assert not hidden & {t.id for t in ledger.list_tasks()}
        assert not hidden & {t.id for t in ledger.ready()}


# -- the sample fixture (excerpts of the real files) -----------------------------------------


def test_sample_round_trip_and_report() -> None:
    ledger = Ledger.memory()
    report = import_beads(ledger, SAMPLE)
    assert isinstance(report, ImportReport)
    original = _lines(SAMPLE)
    assert report.created == len(original) and report.total == len(original)
    assert _export(ledger, order="ledger") == original
    assert _export(ledger) == _by_id(original)
    assert report.source == str(SAMPLE)
    assert report.dangling_deps > 0  # the sample names ids that are not in it
    assert report.to_json()["created"] == len(original)
    events = ledger.events()
    assert len(events) == 1  # one event for the import, not a copy of every record
    event = events[0]
    assert event.kind == "imported" and event.task_id is None
    assert event.data["action"] == "created"
    assert event.data["sha256"] == hashlib.sha256(SAMPLE.read_bytes()).hexdigest()
    assert event.data["records"] == event.data["created"] == len(original)
    assert event.data["last_seq"] - event.data["first_seq"] + 1 == len(original)
    assert len(event.data["digest"]) == 64 and "new" not in event.data


def test_tombstones_hidden_but_exported() -> None:
    ledger = Ledger.memory()
    import_beads(ledger, SAMPLE)
    tombstones = [json.loads(line)["id"] for line in _lines(SAMPLE)
                  if json.loads(line)["status"] == "tombstone"]
    assert tombstones
    listed = {t.id for t in ledger.list_tasks()}
    ready = {t.id for t in ledger.ready()}
    for tid in tombstones:
        assert tid not in listed and tid not in ready
        assert ledger.get(tid).status == "tombstone"
    exported = {json.loads(line)["id"] for line in _export(ledger)}
    assert set(tombstones) <= exported
    without = {json.loads(line)["id"] for line in _export(ledger, include_tombstones=False)}
    assert not set(tombstones) & without
    assert len(without) == len(exported) - len(tombstones)


def test_unknown_statuses_and_fields_are_kept() -> None:
    ledger = Ledger.memory()
    import_beads(ledger, SAMPLE)
    hooked = ledger.get("bd-077e")
    assert hooked.status == "hooked"
    assert hooked.id not in {t.id for t in ledger.ready()}
    record = next(json.loads(line) for line in _export(ledger) if '"bd-mol-bzx"' in line[:20])
    assert record["await_type"] == "gh:run" and record["timeout"] == 1800000000000
    dep_types = {r[0] for r in ledger.store.conn.execute("SELECT DISTINCT type FROM deps")}
    assert {"tracks", "blocked-by", "parent-child", "blocks"} <= dep_types


# -- edge cases ------------------------------------------------------------------------------


def test_edge_cases_round_trip_exactly() -> None:
    records = [
        _rec("x-1", description="", assignee=None, closed_at="", labels=[], dependencies=[],
             comments=[], owner="someone", notes=None),
        {"title": "key order", "id": "x-2", "priority": 0, "status": "weird-status",
         "issue_type": "convoy", "updated_at": "u", "created_at": "c", "metadata": {"k": [1]}},
        _rec("x-3", dependencies=[
            {"issue_id": "x-3", "depends_on_id": "nowhere-9", "type": "tracks",
             "created_at": "t", "created_by": "me", "thread_id": "th-1"},
            {"depends_on_id": "x-1", "type": "blocks", "issue_id": "x-3", "created_at": None},
            {"issue_id": "other", "depends_on_id": "x-2", "type": "parent-child"},
        ], comments=[
            {"id": 7, "issue_id": "x-3", "author": "a", "text": "second <&> \u2028", "created_at": "t"},
            {"id": "c-3", "issue_id": "x-3", "author": "b", "text": "odd id", "created_at": "t",
             "reactions": {"+1": 2}},
            {"issue_id": "x-3", "author": None, "text": "", "created_at": "t"},
        ], labels=["b", "a"]),
        {"id": "x-4", "title": "minimal"},
        _rec("x-5", metadata="not an object", checks=["", 3], agent=5, hints=[1], priority=4),
        _rec("x-6", checks=["make test"], agent="claude", hints={"model": "m"}),
    ]
    lines = _jsonl(*records)
    ledger = Ledger.memory()
    import_beads(ledger, lines)
    exported = _export(ledger, order="ledger")
    assert [json.loads(e) for e in exported] == records
    for got, want in zip(exported, records, strict=True):
        assert list(json.loads(got)) == list(want)  # key order too
    assert "\\u003c\\u0026\\u003e \\u2028" in exported[2]
    # the columns hold what taskmill understands
    x6 = ledger.get("x-6")
    assert (x6.checks, x6.agent, x6.hints) == (["make test"], "claude", {"model": "m"})
    assert ledger.get("x-3").labels == ["b", "a"]
    assert ledger.get("x-4").status == "open" and ledger.get("x-4").priority == 2
    assert import_beads(ledger, lines).unchanged == len(records)


def test_comment_ids_kept_and_collisions_resolved() -> None:
    ledger = Ledger.memory()
    comment = {"id": 1, "issue_id": "a-1", "author": "x", "text": "hi", "created_at": "t"}
    import_beads(ledger, _jsonl(_rec("a-1", comments=[comment])))
    other = dict(comment, issue_id="b-1", text="same id, other task")
    import_beads(ledger, _jsonl(_rec("b-1", comments=[other])))
    records = {json.loads(line)["id"]: json.loads(line) for line in _export(ledger)}
    assert records["a-1"]["comments"] == [comment]
    assert records["b-1"]["comments"] == [other]
    assert import_beads(ledger, _jsonl(_rec("b-1", comments=[other]))).unchanged == 1
    native = ledger.comment("a-1", "from taskmill")
    assert native.id not in (1,)
    records = {json.loads(line)["id"]: json.loads(line) for line in _export(ledger)}
    assert [c["text"] for c in records["a-1"]["comments"]] == ["hi", "from taskmill"]


def test_changed_record_is_updated_with_an_event() -> None:
    ledger = Ledger.memory()
    rec = _rec("u-1", labels=["one"])
    import_beads(ledger, _jsonl(rec, _rec("u-2")))
    events = len(ledger.events())
    changed = dict(rec, title="New title", labels=["one", "two"], status="closed",
                   closed_at="2025-02-01T00:00:00Z")
    report = import_beads(ledger, _jsonl(changed, _rec("u-2")))
    assert (report.created, report.updated, report.unchanged) == (0, 1, 1)
    assert report.updated_ids == ["u-1"]
    new_events = ledger.events()[events:]
    assert len(new_events) == 1
    event = new_events[0]
    assert event.kind == "imported" and event.task_id == "u-1"
    assert event.data["action"] == "updated"
    assert event.data["changes"] == {
        "title": ["Task u-1", "New title"],
        "status": ["open", "closed"],
        "labels": [["one"], ["one", "two"]],
        "closed_at": [None, "2025-02-01T00:00:00Z"],
    }
    task = ledger.get("u-1")
    assert (task.title, task.status, task.labels) == ("New title", "closed", ["one", "two"])
    assert ledger.verify().ok


def test_tasks_not_in_the_file_are_left_alone() -> None:
    ledger = Ledger.memory()
    native = ledger.create("native task")
    import_beads(ledger, _jsonl(_rec("i-1")))
    assert ledger.get(native.id).title == "native task"
    assert {t.id for t in ledger.list_tasks()} == {native.id, "i-1"}


# -- readiness and cycles --------------------------------------------------------------------


def _dep(a: str, b: str, typ: str = "blocks") -> dict[str, Any]:
    return {"issue_id": a, "depends_on_id": b, "type": typ, "created_at": "t", "created_by": "me"}


def test_readiness_after_import() -> None:
    ledger = Ledger.memory()
    import_beads(ledger, _jsonl(
        _rec("r-open"),
        _rec("r-done", status="closed", closed_at="t"),
        _rec("r-waits", dependencies=[_dep("r-waits", "r-open")]),
        _rec("r-free", dependencies=[_dep("r-free", "r-done"), _dep("r-free", "gone-1"),
                                     _dep("r-free", "r-open", "related")]),
        _rec("r-parent", status="blocked"),
        _rec("r-child", dependencies=[_dep("r-child", "r-parent", "parent-child")]),
        _rec("r-tomb", status="tombstone"),
        _rec("r-after-tomb", dependencies=[_dep("r-after-tomb", "r-tomb")]),
    ))
    ready = {t.id for t in ledger.ready()}
    assert ready == {"r-open", "r-free", "r-after-tomb"}
    ledger.close("r-open")
    assert "r-waits" in {t.id for t in ledger.ready()}


def test_cycles_are_accepted_and_reported() -> None:
    ledger = Ledger.memory()
    report = import_beads(ledger, _jsonl(
        _rec("c-a", dependencies=[_dep("c-a", "c-b")]),
        _rec("c-b", dependencies=[_dep("c-b", "c-a")]),
        _rec("c-c"),
    ))
    assert report.cycles == [["c-a", "c-b", "c-a"]]
    assert ledger.cycles() == [["c-a", "c-b", "c-a"]]
    assert {t.id for t in ledger.ready()} == {"c-c"}


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("bad", "fragment"), [
    ("{not json", "bad JSON"),
    ('["a list"]', "JSON object"),
    ('{"title": "no id"}', "missing id"),
    ('{"id": "e-9"}', "missing title"),
    ('{"id": "e-9", "title": "  "}', "title must be a non-empty string"),
    ('{"id": "e-9", "title": "t", "priority": 7}', "priority must be an integer from 0 to 4"),
    ('{"id": "e-9", "title": "t", "priority": "high"}', "priority"),
    ('{"id": "e-9", "title": "t", "priority": NaN}', "bad JSON"),
    ('{"id": "e-9", "title": "t", "dependencies": {}}', "dependencies must be a list"),
    ('{"id": "e-9", "title": "t", "dependencies": [{"type": "blocks"}]}', "depends_on_id"),
    ('{"id": "e-9", "title": "t", "labels": ["a", 1]}', "labels"),
    ('{"id": "e-9", "title": "t", "assignee": 3}', "assignee must be a string"),
    ('{"id": "e-1", "title": "again"}', "already appeared on line 1"),
])
def test_malformed_line_names_file_and_line_and_imports_nothing(
        tmp_path: Path, bad: str, fragment: str) -> None:
    path = tmp_path / "issues.jsonl"
    good = _jsonl(_rec("e-1"), _rec("e-2"))
    path.write_text("".join(good) + "\n" + bad + "\n", encoding="utf-8")  # bad is line 4
    ledger = Ledger.memory()
    ledger.create("already here")
    before = _counts(ledger)
    with pytest.raises(InvalidInput) as info:
        import_beads(ledger, path)
    message = str(info.value)
    assert str(path) in message and "line 4" in message and fragment in message
    assert _counts(ledger) == before


def test_lines_input_errors_name_input() -> None:
    with pytest.raises(InvalidInput, match=r"<input>, line 2: .*missing title"):
        import_beads(Ledger.memory(), ['{"id": "a-1", "title": "ok"}\n', '{"id": "a-2"}\n'])


def test_missing_file() -> None:
    with pytest.raises(InvalidInput, match="no such file"):
        import_beads(Ledger.memory(), "/nonexistent/issues.jsonl")


def test_a_bad_line_after_many_batches_imports_nothing(tmp_path: Path) -> None:
    path = tmp_path / "issues.jsonl"
    lines = _jsonl(*(_rec(f"b-{i}") for i in range(1, 10)))
    path.write_text("".join(lines) + '{"id": "b-99"}\n', encoding="utf-8")  # line 10
    ledger = Ledger.memory()
    before = _counts(ledger)
    with pytest.raises(InvalidInput, match=r"issues.jsonl, line 10: .*missing title"):
        import_beads(ledger, path, batch=2)  # four batches written before the bad line
    assert _counts(ledger) == before
    dup = "".join(lines) + json.dumps(_rec("b-2")) + "\n"
    path.write_text(dup, encoding="utf-8")
    with pytest.raises(InvalidInput, match="line 10: id b-2 already appeared on line 2"):
        import_beads(ledger, path, batch=3)
    assert _counts(ledger) == before


def test_file_read_in_batches_is_the_same_import(tmp_path: Path) -> None:
    path = tmp_path / "issues.jsonl"
    path.write_bytes(SAMPLE.read_bytes())
    whole, batched = Ledger.memory(), Ledger.memory()
    import_beads(whole, path)
    report = import_beads(batched, path, batch=3)
    assert report.created == len(_lines(SAMPLE))
    assert _export(batched, order="ledger") == _export(whole, order="ledger") == _lines(SAMPLE)
    assert whole.events()[0].data == batched.events()[0].data
    assert batched.verify().ok
    assert import_beads(batched, path, batch=4).unchanged == report.created


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "issues.jsonl"
    path.write_bytes(b"".join(x.encode() for x in _jsonl(_rec("n-1"))) + b'{"id": "\xff"}\n')
    with pytest.raises(InvalidInput, match="line 2: not UTF-8"):
        import_beads(Ledger.memory(), path)


# -- the audit trail of an import ------------------------------------------------------------


def _imported(tmp_path: Path) -> Ledger:
    ledger = Ledger.open(tmp_path / "db", prefix="t")
    import_beads(ledger, _jsonl(
        _rec("v-1", labels=["a"], description="first"),
        _rec("v-2", dependencies=[_dep("v-2", "v-1")], metadata={"k": 1},
             comments=[{"id": 5, "issue_id": "v-2", "author": "x", "text": "hi",
                        "created_at": "t"}]),
        _rec("v-3", status="closed", closed_at="t", close_reason="done"),
    ))
    return ledger


def test_verify_after_import_and_later_changes(tmp_path: Path) -> None:
    with _imported(tmp_path) as ledger:
        assert ledger.verify().ok
        ledger.update("v-1", {"title": "renamed", "priority": 0})
        ledger.add_labels("v-1", ["b"])
        ledger.remove_labels("v-1", ["a"])
        ledger.close("v-1", "finished")
        ledger.reopen("v-3")
        ledger.remove_dep("v-2", "v-1")
        ledger.add_dep("v-2", "v-3")
        ledger.comment("v-2", "a later comment")
        ledger.set_labels("v-2", ["z"])
        native = ledger.create("made after the import", after=["v-2"], labels=["n"])
        ledger.close(native.id)
        report = ledger.verify()
        assert report.ok, report.problems
        # a re-import with changes is checked too
        import_beads(ledger, _jsonl(_rec("v-3", title="from the file again")))
        assert ledger.verify().ok


def test_verify_after_changes_then_a_reimport_that_undoes_them(tmp_path: Path) -> None:
    with _imported(tmp_path) as ledger:
        ledger.comment("v-2", "said after the import")
        ledger.add_labels("v-2", ["later"])
        ledger.add_dep("v-2", "v-3")
        ledger.remove_labels("v-1", ["a"])
        report = import_beads(ledger, _jsonl(  # the file again: puts each record back
            _rec("v-1", labels=["a"], description="first"),
            _rec("v-2", dependencies=[_dep("v-2", "v-1")], metadata={"k": 1},
                 comments=[{"id": 5, "issue_id": "v-2", "author": "x", "text": "hi",
                            "created_at": "t"}])))
        assert report.updated == 2
        assert ledger.get("v-2").labels == [] and ledger.get("v-1").labels == ["a"]
        result = ledger.verify()
        assert result.ok, result.problems


@pytest.mark.parametrize("sql", [
    "UPDATE tasks SET title = 'forged' WHERE id = 'v-1'",
    "UPDATE tasks SET description = 'forged' WHERE id = 'v-1'",
    "UPDATE tasks SET metadata = '{\"k\":2}' WHERE id = 'v-2'",
    "UPDATE tasks SET assignee = 'mallory' WHERE id = 'v-3'",
    "DELETE FROM labels WHERE task_id = 'v-1'",
    "INSERT INTO labels (task_id, label, pos) VALUES ('v-3', 'sneaky', 0)",
    "DELETE FROM deps WHERE issue_id = 'v-2'",
    "UPDATE comments SET text = 'forged' WHERE id = 5",
    "UPDATE tasks SET seq = seq + 100 WHERE id = 'v-2'",
])
def test_verify_catches_an_edit_of_an_imported_row(tmp_path: Path, sql: str) -> None:
    with _imported(tmp_path) as ledger:
        ledger.update("v-1", {"notes": "a change through taskmill"})
        assert ledger.verify().ok
        with ledger.store.conn:
            ledger.store.conn.execute(sql)
        report = ledger.verify()
        assert not report.ok
        assert any("import of" in p or "replay" in p for p in report.problems)


def test_verify_catches_an_edit_of_a_field_changed_after_the_import(tmp_path: Path) -> None:
    with _imported(tmp_path) as ledger:
        ledger.update("v-1", {"title": "through taskmill"})
        with ledger.store.conn:
            ledger.store.conn.execute("UPDATE tasks SET title = 'forged' WHERE id = 'v-1'")
        report = ledger.verify()
        assert not report.ok and any("v-1: title" in p for p in report.problems)


# -- native tasks ----------------------------------------------------------------------------


def test_native_tasks_export_with_beads_names() -> None:
    ledger = Ledger.memory()
    a = ledger.create("First", priority=1, labels=["x"])
    b = ledger.create("Second", description="why", checks=["pytest -q"], agent="claude",
                      hints={"model": "m"}, after=[a.id])
    ledger.comment(b.id, "a note", author="me")
    records = {json.loads(line)["id"]: json.loads(line) for line in _export(ledger)}
    first = records[a.id]
    assert set(first) == {"id", "title", "status", "priority", "issue_type", "created_at",
                          "updated_at", "labels"}
    assert first["labels"] == ["x"] and first["priority"] == 1
    second = records[b.id]
    assert second["description"] == "why"
    assert second["checks"] == ["pytest -q"] and second["agent"] == "claude"
    assert second["hints"] == {"model": "m"}
    dep = second["dependencies"][0]
    assert (dep["issue_id"], dep["depends_on_id"], dep["type"]) == (b.id, a.id, "blocks")
    assert set(dep) == {"issue_id", "depends_on_id", "type", "created_at", "created_by"}
    comment = second["comments"][0]
    assert set(comment) == {"id", "issue_id", "author", "text", "created_at"}
    assert "assignee" not in second and "closed_at" not in second and "notes" not in second
    # the same ledger re-importing its own export changes nothing
    lines = [line + "\n" for line in _export(ledger)]
    before = _counts(ledger)
    assert import_beads(ledger, lines).unchanged == 2
    assert _counts(ledger) == before
    # and a fresh ledger gives the same export back
    fresh = Ledger.memory()
    import_beads(fresh, lines)
    assert _export(fresh) == [line.rstrip("\n") for line in lines]
    assert fresh.get(b.id).checks == ["pytest -q"]
    assert [t.id for t in fresh.ready()] == [a.id]


def test_export_json_is_the_full_task_format() -> None:
    ledger = Ledger.memory()
    a = ledger.create("First")
    b = ledger.create("Second", after=[a.id], labels=["l"])
    ledger.comment(b.id, "note")
    data = export_json(ledger)
    assert [d["id"] for d in data] == sorted([a.id, b.id])
    by_id = {d["id"]: d for d in data}
    assert by_id[b.id] == ledger.show(b.id).to_json(full=True)
    assert by_id[a.id] == ledger.show(a.id).to_json(full=True)
    assert by_id[a.id]["dependents"][0]["issue_id"] == b.id


# -- Beads' readiness rules ------------------------------------------------------------------

NON_WORK = ("agent", "role", "rig", "molecule", "gate", "message", "merge-request")


@pytest.mark.slow
@pytest.mark.parametrize(("name", "agents", "molecules"), [
    ("beads-issues.jsonl", 12, 6), ("gastown-issues.jsonl", 9, 3)])
def test_real_file_non_work_records_are_never_ready(name: str, agents: int,
                                                   molecules: int) -> None:
    path = DATA / name
    if not path.exists():
        pytest.skip(f"{path} is not here")
    ledger = Ledger.memory()
    import_beads(ledger, path)
    open_by_type: dict[str, int] = {}
    for task in ledger.list_tasks(status="open"):
        open_by_type[task.issue_type] = open_by_type.get(task.issue_type, 0) + 1
    assert (open_by_type.get("agent"), open_by_type.get("molecule")) == (agents, molecules)
    for work_only in (False, True):
        offered = ledger.ready(work_only=work_only)
        assert offered, "some real work is ready"
        assert not [t.id for t in offered if t.issue_type in NON_WORK]
    for compat in (False, True):
        assert not [t.id for t in ledger.ready(beads_compat=compat)
                    if t.issue_type in NON_WORK]
    assert _by_id(_export(ledger)) == _by_id(_lines(path))  # still byte-exact
    # the mill's way in: claim_next never takes one either
    while (task := ledger.claim_next("mill:test")) is not None:
        assert task.issue_type not in NON_WORK


def test_non_work_pinned_and_ephemeral_records_are_not_ready() -> None:
    ledger = Ledger.memory()
    import_beads(ledger, _jsonl(
        *(_rec(f"nw-{t}", issue_type=t) for t in NON_WORK),
        _rec("nw-pinned", pinned=True), _rec("nw-ephemeral", ephemeral=True),
        _rec("nw-not-pinned", pinned=False), _rec("nw-task")))
    assert {t.id for t in ledger.ready()} == {"nw-not-pinned", "nw-task"}
    assert ledger.stats()["ready"] == 2
    with pytest.raises(ClaimConflict):
        ledger.claim("nw-agent", "mill:x", work_only=True)


def test_pinned_blocker_does_not_block() -> None:
    ledger = Ledger.memory()
    import_beads(ledger, _jsonl(
        _rec("p-pin", status="pinned"),
        _rec("p-after", dependencies=[_dep("p-after", "p-pin")])))
    assert [t.id for t in ledger.ready()] == ["p-after"]
    assert ledger.blocked() == []


@pytest.mark.parametrize("where", ["memory", "file"])
def test_a_dependency_on_an_id_not_there_yet_holds_once_a_task_has_it(
        tmp_path: Path, where: str) -> None:
    # Beads reads readiness at query time: a blocker that does not exist holds nothing,
    # and holds from the moment an issue has its id (created by hand, or imported later)
    ledger = Ledger.memory() if where == "memory" else Ledger.open(tmp_path / "db", prefix="d")
    with ledger:
        import_beads(ledger, _jsonl(
            _rec("d-1", dependencies=[_dep("d-1", "d-2")]),
            _rec("d-3", dependencies=[_dep("d-3", "d-4", "conditional-blocks")])))
        assert [t.id for t in ledger.ready()] == ["d-1", "d-3"]
        ledger.create("the blocker", task_id="d-2")
        ledger.create("the condition", task_id="d-4")
        assert [t.id for t in ledger.ready()] == ["d-2", "d-4"]
        assert [b.task.id for b in ledger.blocked()] == ["d-1", "d-3"]
        ledger.close("d-2")
        assert [t.id for t in ledger.ready()] == ["d-1", "d-4"]
        assert ledger.store.readiness_state() == _recomputed(ledger)


def _recomputed(ledger: Ledger) -> dict[str, tuple[int, bool]]:
    """The readiness every task would have if it were computed afresh."""
    with ledger.transaction():
        ledger.store.recompute_readiness()
    return ledger.store.readiness_state()


def test_conditional_blocks_runs_only_if_the_blocker_fails() -> None:
    ledger = Ledger.memory()
    import_beads(ledger, _jsonl(
        _rec("cb-a"), _rec("cb-b"),
        _rec("cb-fix", dependencies=[_dep("cb-fix", "cb-a", "conditional-blocks")]),
        _rec("cb-alt", dependencies=[_dep("cb-alt", "cb-b", "conditional-blocks")])))
    ready = {t.id for t in ledger.ready()}
    assert ready == {"cb-a", "cb-b"}
    ledger.close("cb-a", "Tests FAILED on CI")
    ledger.close("cb-b", "shipped")
    assert {t.id for t in ledger.ready()} == {"cb-fix"}
    assert [b.blockers for b in ledger.blocked()] == [["cb-b"]]
    ledger.update("cb-b", {"close_reason": "abandoned"})  # the reason alone changes it
    assert {t.id for t in ledger.ready()} == {"cb-fix", "cb-alt"}


def _spawner(prefix: str, gate: str | None) -> list[dict[str, Any]]:
    dep = _dep(f"{prefix}-wait", f"{prefix}-spawn", "waits-for")
    if gate is not None:
        dep["metadata"] = json.dumps({"gate": gate})
    return [_rec(f"{prefix}-spawn"),
            _rec(f"{prefix}-c1", dependencies=[_dep(f"{prefix}-c1", f"{prefix}-spawn",
                                                    "parent-child")]),
            _rec(f"{prefix}-c2", dependencies=[_dep(f"{prefix}-c2", f"{prefix}-spawn",
                                                    "parent-child")]),
            _rec(f"{prefix}-wait", dependencies=[dep])]


def test_waits_for_gates_all_or_any_children() -> None:
    ledger = Ledger.memory()
    lines = _jsonl(*_spawner("all", None), *_spawner("any", "any-children"))
    import_beads(ledger, lines)
    assert _by_id(_export(ledger)) == _by_id([ln.rstrip("\n") for ln in lines])  # metadata kept
    ready = {t.id for t in ledger.ready()}
    assert "all-wait" not in ready and "any-wait" not in ready
    ledger.close("all-c1", "done")
    ledger.close("any-c1", "done")
    ready = {t.id for t in ledger.ready()}
    assert "any-wait" in ready and "all-wait" not in ready
    assert {b.task.id: b.blockers for b in ledger.blocked()}["all-wait"] == ["all-spawn"]
    ledger.close("all-c2", "done")
    assert "all-wait" in {t.id for t in ledger.ready()}


def test_defer_until_hides_a_task_and_its_children() -> None:
    from taskmill.clock import FixedClock, parse_iso

    now = parse_iso("2026-03-01T00:00:00.000000Z")
    assert now is not None
    ledger = Ledger.memory(clock=FixedClock(now))
    import_beads(ledger, _jsonl(
        _rec("d-later", defer_until="2026-04-01T00:00:00Z"),
        _rec("d-past", defer_until="2026-02-01T00:00:00-08:00"),
        _rec("d-kid", dependencies=[_dep("d-kid", "d-later", "parent-child")]),
        _rec("d-grandkid", dependencies=[_dep("d-grandkid", "d-kid", "parent-child")])))
    assert {t.id for t in ledger.ready()} == {"d-past"}
    assert {t.id for t in ledger.ready(beads_compat=True)} == {"d-past", "d-grandkid"}
    ledger.clock = FixedClock(parse_iso("2026-05-01T00:00:00.000000Z") or now)
    assert {t.id for t in ledger.ready()} == {"d-past", "d-later", "d-kid", "d-grandkid"}
    assert {t.id for t in ledger.ready(work_only=True)} == {"d-past", "d-grandkid"}


def test_ready_is_by_priority_then_creation_time() -> None:
    ledger = Ledger.memory()
    import_beads(ledger, _jsonl(  # file order is not time order; offsets differ
        _rec("o-late", created_at="2025-01-02T00:00:00Z"),
        _rec("o-early", created_at="2025-01-01T20:00:00-05:00"),  # 2025-01-02T01:00Z
        _rec("o-first", created_at="2024-12-31T23:00:00.5+00:00"),
        _rec("o-urgent", priority=0, created_at="2025-06-01T00:00:00Z")))
    assert [t.id for t in ledger.ready()] == ["o-urgent", "o-first", "o-late", "o-early"]


def test_beads_compat_children_of_held_parents_and_marked_blocked() -> None:
    ledger = Ledger.memory()
    import_beads(ledger, _jsonl(
        _rec("h-parent", status="deferred"),
        _rec("h-kid", dependencies=[_dep("h-kid", "h-parent", "parent-child")]),
        _rec("h-marked", status="blocked"),
        _rec("h-blocker"), _rec("h-waits", dependencies=[_dep("h-waits", "h-blocker")])))
    assert "h-kid" not in {t.id for t in ledger.ready()}
    assert {b.task.id for b in ledger.blocked()} == {"h-kid", "h-marked", "h-waits"}
    assert "h-kid" in {t.id for t in ledger.ready(beads_compat=True)}
    assert {b.task.id for b in ledger.blocked(beads_compat=True)} == {"h-waits"}
    ledger.beads_compat = True  # the [ledger] beads_compat setting
    assert {b.task.id for b in ledger.blocked()} == {"h-waits"}


def test_a_blocks_cycle_is_named_in_blocked() -> None:
    ledger = Ledger.memory()
    import_beads(ledger, _jsonl(
        _rec("y-a", dependencies=[_dep("y-a", "y-b")]),
        _rec("y-b", dependencies=[_dep("y-b", "y-a")]),
        _rec("y-c", dependencies=[_dep("y-c", "y-a")])))
    reasons = {b.task.id: b.reasons for b in ledger.blocked()}
    assert reasons["y-a"][0] == reasons["y-b"][0] == "in a dependency cycle: y-a -> y-b -> y-a"
    assert not any("cycle" in r for r in reasons["y-c"])


def test_a_plain_dependency_is_stored_as_the_general_case_stores_it() -> None:
    """The short cut for dependencies as Beads writes them gives the general case's row
    (a dict subclass takes the general case), and anything unusual takes the general case."""
    from taskmill.beads.parse import _parse_dep

    class General(dict):  # type: ignore[type-arg]
        pass

    base = {"issue_id": "bd-1", "depends_on_id": "bd-2", "type": "blocks",
            "created_at": "2025-01-01T00:00:00Z", "created_by": "ana"}
    variants = [
        base, {k: v for k, v in base.items() if k != "created_by"},
        {k: v for k, v in base.items() if k != "created_at"},
        {k: v for k, v in base.items() if k not in ("created_at", "created_by")},
        {**base, "created_by": ""}, {**base, "created_at": None}, {**base, "issue_id": "bd-9"},
        {"type": "blocks", "issue_id": "bd-1", "depends_on_id": "bd-2"}, {**base, "x": 1},
    ]
    for obj in variants:
        assert _parse_dep("bd-1", obj, 0) == _parse_dep("bd-1", General(obj), 0), obj


def test_export_by_id_reads_parts_side_by_side_and_passes_over_strays(tmp_path: Path) -> None:
    """By id the rows, labels and dependencies are merged as three sorted streams: a task
    left out (a tombstone) or a stray part (its task gone) is passed over, and each task
    gets its own parts, the same as read a task at a time (the ledger's order)."""
    records = [_rec(f"bd-{i:03d}", labels=[f"l{i % 3}", "z", "a"][: 1 + i % 3],
                    dependencies=[{"issue_id": f"bd-{i:03d}", "depends_on_id": f"bd-{i - 1:03d}",
                                   "type": "blocks", "created_at": "2025-01-01T00:00:00Z",
                                   "created_by": "x"}] if i else [],
                    comments=[{"id": 100 + i, "issue_id": f"bd-{i:03d}", "author": "a",
                               "text": f"c{i}", "created_at": "2025-01-01T00:00:00Z"}]
                    if i % 4 == 0 else [],
                    **({"status": "tombstone"} if i % 5 == 1 else {}))
               for i in range(40)]
    records.append(_rec("bd-\u00e9", labels=["unicode"]))  # (sorted after ASCII: code points)
    with Ledger.open(tmp_path / "db", prefix="bd") as ledger:
        import_beads(ledger, _jsonl(*records))
        conn = ledger.store.conn  # type: ignore[attr-defined]
        conn.execute("INSERT INTO labels (task_id, label, pos) VALUES ('bd-000a', 'stray', 0)")
        conn.execute("INSERT INTO labels (task_id, label, pos) VALUES ('aa-gone', 'stray', 0)")
        conn.execute("INSERT INTO deps (issue_id, depends_on_id, type, pos)"
                     " VALUES ('zz-gone', 'bd-001', 'blocks', 0)")
        for tombstones in (True, False):
            by_id = _export(ledger, include_tombstones=tombstones)
            assert by_id == _by_id(_export(ledger, order="ledger",
                                           include_tombstones=tombstones))
            assert len(by_id) == len(records) - (0 if tombstones else 8)
            assert "stray" not in "".join(by_id)
        assert json.loads(_export(ledger)[-1])["labels"] == ["unicode"]


@pytest.mark.parametrize("path", ["ledger", "lean"])
def test_a_generated_id_is_never_one_a_dependency_names(
        tmp_path: Path, path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # an id only given on purpose may start to hold what names it (it recounts those); a
    # generated one is picked among the ids nothing names
    from taskmill import lean_rules
    from taskmill.clock import FixedClock, iso
    from taskmill.ledger import lean, lean_write

    monkeypatch.setattr(lean_rules, "random_nonce", lambda: "0" * 16)
    clock = FixedClock()
    now = iso(clock.now())
    first_choice = lean_rules.new_id("d", "new work", now, length=lean_rules.hash_length(1))
    db = tmp_path / "db"
    with Ledger.open(db, prefix="d", clock=clock) as ledger:
        import_beads(ledger, _jsonl(_rec("d-1", dependencies=[_dep("d-1", first_choice)])))
        if path == "ledger":
            tid = ledger.create("new work").id
        else:
            conn = lean.connect(str(db))
            assert conn is not None
            lean_write.prepare(conn)
            made = lean_write.create(conn, prefix="d", actor="t", now=now, title="new work",
                                     fields={}, labels=[])
            conn.close()
            assert made is not None
            tid = made
        assert tid != first_choice
        assert ledger.get(tid).title == "new work"
        assert {t.id for t in ledger.ready()} == {"d-1", tid}
        assert ledger.store.readiness_state() == _recomputed(ledger)
