"""The per-task digest of a bulk import (``taskmill.audit_import.state_digest``): written by
orjson when the state holds only strings and small integers, by ``json`` otherwise; either
way the bytes hashed are those ``json.dumps`` writes, so imports recorded before still
verify."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from taskmill.audit_import import (
    DIGEST_FIELDS,
    import_digest,
    norm,
    row_fields,
    state_digest,
)
from taskmill.beads.parse import Source, iter_beads
from taskmill.ledger.store import IMPORT_ROW_COLUMNS

SAMPLE = Path(__file__).resolve().parent / "fixtures" / "beads-sample.jsonl"


def _by_json(fields: dict[str, Any], labels: list[str], deps: list[tuple[str, str]],
             comments: list[tuple[str | None, str | None]]) -> bytes:
    payload = [[norm(fields.get(k)) for k in DIGEST_FIELDS], sorted(labels),
               sorted([str(d[0]), str(d[1])] for d in deps),
               sorted([str(c[0] or ""), str(c[1] or "")] for c in comments)]
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).digest()


def test_the_sample_file_digests_as_json_writes_it() -> None:
    count = 0
    for p in iter_beads(Source(SAMPLE)):
        args = (row_fields(p.row), p.labels, [(d[0], d[1]) for d in p.deps],
                [(c[1], c[2]) for c in p.comments])
        assert state_digest(*args) == _by_json(*args), p.row[0]
        assert import_digest(p.row, *args[1:]) == state_digest(*args), p.row[0]
        count += 1
    assert count > 20


@pytest.mark.parametrize("fields", [
    {"title": "é\u2028\x7f\x00\"\\\n\t", "priority": 2},
    {"title": "lone \ud800 surrogate", "priority": 2},
    {"title": "x", "priority": True},
    {"title": "x", "priority": 2**70},
    {"title": "x", "metadata": {"b": 1.5, "a": [1e-07, 1e16]}},
    {"title": "x", "checks": ["make test"], "hints": {"z": None}},
])
def test_odd_values_digest_as_json_writes_them(fields: dict[str, Any]) -> None:
    args = (fields, ["l\u00e9", "a"], [("b", "blocks"), ("a", "related")], [("x", None)])
    assert state_digest(*args) == _by_json(*args)


@pytest.mark.parametrize("values", [
    {"title": "é\u2028\x7f", "priority": 2, "description": "", "assignee": None},
    {"title": "lone \ud800 surrogate", "priority": 0},
    {"title": "x", "priority": True},
    {"title": "x", "priority": 2**70},
    {"title": "x", "metadata": '{"b": 1.5, "a": [1e-07, 1e16]}'},
    {"title": "x", "metadata": "{}", "checks": "[]", "hints": "not JSON"},
    {"title": "x", "checks": '["make test"]', "hints": '{"z": null}', "agent": ""},
    {"title": "x", "external_ref": [], "notes": {}, "design": 0},
])
def test_the_digest_of_a_row_is_that_of_its_fields(values: dict[str, Any]) -> None:
    """:func:`import_digest` reads the row itself (no mapping made a task): the same
    digest as :func:`state_digest` of :func:`row_fields`, odd values included."""
    row = tuple(values.get(c, f"{c} value" if c in ("id", "status", "created_at") else None)
                for c in IMPORT_ROW_COLUMNS)
    args = (["b", "a"], [("b", "blocks")], [("x", "y")])
    assert import_digest(row, *args) == state_digest(row_fields(row), *args)
    assert import_digest(row, *args) == _by_json(row_fields(row), *args)
