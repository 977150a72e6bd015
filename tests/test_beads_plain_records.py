"""The usual Beads record is read straight into its row (``parse._plain_record``: a big
import's workers parse ~15% faster): for any record, what it reads is what the general reading
(``parse._any_record``) reads, and a record it cannot take exactly is left to that one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from taskmill.beads import parse
from taskmill.beads.record import KEY_ORDER, export_record
from taskmill.errors import InvalidInput

SAMPLE = Path(__file__).resolve().parent / "fixtures" / "beads-sample.jsonl"
PARTS = ("row", "labels", "deps", "comments", "comment_ids")

texts = st.sampled_from(["", " ", "x", "é\u2028", "a\x00b", "t\nu", "t\ru", "a\tb", "<&>",
                         "\x1b[0m", "\x85"]) | st.text(max_size=6)
numbers = st.sampled_from([2**63 - 1, 2**64 - 1, 2**64, -(2**63) - 1, 10**30, 1.5, -0.0, 1e300])
values = (st.none() | st.booleans() | st.integers(min_value=-2, max_value=6) | texts | numbers
          | st.lists(texts | numbers, max_size=3) | st.dictionaries(texts, texts | numbers,
                                                                    max_size=2))


@st.composite
def dependencies(draw: st.DrawFn, tid: str, usual: bool) -> list[Any]:
    out: list[Any] = []
    for target in draw(st.lists(st.sampled_from(["a", "b", "c"]), max_size=3, unique=True)):
        dep: dict[str, Any] = {"issue_id": tid, "depends_on_id": target,
                               "type": draw(st.sampled_from(["blocks", "parent-child"]))}
        if draw(st.booleans()):
            dep["created_at"] = "2023-01-01T00:00:00Z"
        if draw(st.booleans()):
            dep["created_by"] = "ana"
        if not usual:
            dep[draw(st.sampled_from(["issue_id", "depends_on_id", "type"]))] = draw(
                st.sampled_from(["", "other", None]))
            dep = draw(st.sampled_from([dep, dict(reversed(dep.items())), "not a dep"]))
        out.append(dep)
    return out


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    """Half of them of the usual shape, the others with one thing or another off."""
    usual = draw(st.booleans())

    def pick(good: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> Any:
        return draw(good if usual or draw(st.integers(0, 2)) else odd)

    tid = pick(st.sampled_from(["bd-1", "bd-2"]), st.sampled_from([" ", ""]))
    record: dict[str, Any] = {"id": tid, "title": pick(st.sampled_from(["Fix it", "é <&>"]),
                                                       texts)}
    for key in ("description", "design", "acceptance_criteria", "notes"):
        if draw(st.booleans()):
            record[key] = pick(st.sampled_from(["a\nb", "é\u2028", "x"]), texts)
    record["status"] = pick(st.sampled_from(["open", "closed", "tombstone"]), values)
    record["priority"] = pick(st.sampled_from([0, 2, 4]), st.sampled_from([5, -1, True, "2", 2.0]))
    record["issue_type"] = pick(st.sampled_from(["task", "epic"]), values)
    for key in ("assignee", "created_at", "created_by", "updated_at", "closed_at",
                "close_reason", "external_ref", "deleted_at",
                *(() if usual else ("metadata", "agent"))):
        if key in ("created_at", "updated_at") or draw(st.integers(0, 3)) == 0:
            record[key] = pick(st.sampled_from(["ana", "2023-01-01T00:00:00Z"]), values)
    if draw(st.booleans()):
        record["labels"] = pick(st.lists(st.sampled_from(["a", "b", "c d", "é"]), min_size=1,
                                         max_size=3, unique=True),
                                st.lists(st.sampled_from(["a", "", 3]), max_size=3))
    if draw(st.booleans()):
        record["dependencies"] = draw(dependencies(tid, usual or draw(st.booleans())))
    if not usual and draw(st.booleans()):
        record["comments"] = [{"id": 1, "issue_id": tid, "author": "a", "text": "t",
                               "created_at": "c"}]
    if draw(st.integers(0, 3)) == 0:
        record[draw(st.sampled_from(["zz_unknown", "owner"]))] = draw(values)
    if draw(st.integers(0, 5)) == 0:  # (a number JSON readers may read otherwise)
        record["zz_number"] = draw(numbers | st.dictionaries(texts, numbers, max_size=1))
    if not usual:
        for key in draw(st.lists(st.sampled_from(KEY_ORDER), max_size=2)):
            record.pop(key, None)
        if draw(st.booleans()):  # another order
            record = dict(reversed(record.items()))
    return record


def _general(record: dict[str, Any]) -> tuple[Any, ...] | str:
    try:
        item = parse._any_record(record, "2026-01-01T00:00:00.000000Z")
    except parse._Bad as exc:
        return str(exc)
    return tuple(getattr(item, p) for p in PARTS)


@settings(max_examples=600, deadline=None)
@given(records())
def test_a_record_read_straight_is_read_as_the_general_reading_reads_it(
        record: dict[str, Any]) -> None:
    record = json.loads(json.dumps(record))  # (as a line of the file gives it)
    plain = parse._plain_record(record)
    event("read straight" if plain is not None else "read by the general reading")
    if plain is not None:
        assert tuple(getattr(plain, p) for p in PARTS) == _general(record)
        # (what the general reading checks as it reads: the record exports back as it is)
        exported = export_record(plain.row, plain.labels, plain.deps, plain.comments)
        assert exported == record and list(exported) == list(record)
    read = parse._parse_record(record, "2026-01-01T00:00:00.000000Z") \
        if isinstance(_general(record), tuple) else None
    if read is not None:
        assert tuple(getattr(read, p) for p in PARTS) == _general(record)


def test_the_sample_file_is_mostly_read_straight_and_the_same() -> None:
    plain = 0
    for line in SAMPLE.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        item = parse._plain_record(record)
        if item is not None:
            plain += 1
            assert tuple(getattr(item, p) for p in PARTS) == _general(record)
    assert plain >= 14


@pytest.mark.parametrize("record", [
    {"id": "a", "title": "t", "status": "open", "priority": 2, "issue_type": "task",
     "created_at": "c", "updated_at": "u", "labels": ["x", "x"]},  # (a repeat: refused)
    {"id": "a", "title": "t", "status": "open", "priority": 2, "issue_type": "task",
     "created_at": "c", "updated_at": "u", "description": "\x00"},  # (a NUL: refused)
    {"id": "a", "title": "t", "priority": 2, "status": "open", "issue_type": "task",
     "created_at": "c", "updated_at": "u"},  # (another order: kept by the general one)
])
def test_a_record_off_the_usual_shape_is_left_to_the_general_reading(
        record: dict[str, Any]) -> None:
    assert parse._plain_record(record) is None


def _read(line: str) -> tuple[Any, ...] | str:
    try:
        item = parse.parse_line("f", 1, line, "2026-01-01T00:00:00.000000Z")
    except InvalidInput as exc:
        return exc.message
    assert item is not None
    return tuple(getattr(item, p) for p in (*PARTS, "record"))


@settings(max_examples=600, deadline=None)
@given(records(), st.sampled_from(["compact", "spaced", "escaped"]))
def test_a_line_read_by_orjson_is_read_as_json_reads_it(record: dict[str, Any],
                                                        form: str) -> None:
    """orjson reads a line first (faster); a line it reads otherwise (an integer past 64
    bits, which it reads as a float) or refuses is json's: the parts are json's reading's."""
    line = json.dumps(record, ensure_ascii=form == "escaped",
                      separators=(",", ":") if form == "compact" else None)
    fast = _read(line)

    def refused(_line: str) -> Any:
        raise ValueError("not read")

    was = parse._fast_decode
    parse._fast_decode = refused
    try:
        assert fast == _read(line)
    finally:
        parse._fast_decode = was


@pytest.mark.parametrize("line", [
    '{"id":"a","title":"t","status":"open","priority":2,"issue_type":"task",'
    '"created_at":"c","updated_at":"u","big":123456789012345678901234567890}',
    '{"id":"a","title":"t","status":"open","priority":2,"issue_type":"task",'
    '"created_at":"c","updated_at":"u","x":{"y":[18446744073709551616]}}',
    '{"id":"a","title":"t\ud800","status":"open","priority":2,"issue_type":"task",'
    '"created_at":"c","updated_at":"u"}',
    '{"id":"a","title":"t","status":"open","priority":2,"issue_type":"task",'
    '"created_at":"c","updated_at":"u","n":NaN}',
])
def test_what_orjson_reads_otherwise_or_refuses_is_read_by_json(line: str) -> None:
    got = _read(line)
    if isinstance(got, str):  # (refused: json's message, naming the line)
        assert "line 1" in got
        return
    fields = json.loads(got[0][-1])["fields"]
    assert fields == {k: v for k, v in json.loads(line).items() if k in ("big", "x")}
    assert isinstance(fields.get("big", 0), int)
