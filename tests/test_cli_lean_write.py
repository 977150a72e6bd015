"""The lean write path (``taskmill.cli.lean_write``): ``create``, ``update`` and ``close`` in
their common forms without the ledger's package, making the same change as the full path
(rows, labels, audit events and chain), printing the same bytes, and handing everything it
does not fully understand to the full path with nothing written."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import invoke_cli
from taskmill import lean_rules, validation
from taskmill.audit import verify
from taskmill.beads import import_beads
from taskmill.cli import fast, lean_write
from taskmill.clock import FixedClock, iso
from taskmill.errors import InvalidInput
from taskmill.ledger import Ledger, held_links, lean_readiness, links_begun
from taskmill.ledger import lean as lean_sql
from taskmill.ledger import lean_write as write_sql

SRC = Path(__file__).resolve().parents[1] / "src"
PROBE = "LEANWRITE_TEST_PROBE"
"""A file the test's process wrapper writes "lean" or "full" to at exit."""
_WRAPPER = (
    "import atexit, os, sys\n"
    "def _probe():\n"
    "    full = 'taskmill.cli.context' in sys.modules\n"
    "    with open(os.environ['" + PROBE + "'], 'w') as f:\n"
    "        f.write('full' if full else 'lean')\n"
    "atexit.register(_probe)\n"
    "from taskmill.cli import main\n"
    "sys.exit(main())\n"
)
TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


@pytest.fixture
def seeded(taskmill_repo: Path) -> Path:
    """Tasks the lean path may change (open, blocked, deferred, unicode, a control
    character in a title) and tasks it may not (with dependencies, a parent, children,
    in progress, closed); and the lean cache the full path writes when it opens the ledger."""
    with Ledger.open(taskmill_repo / ".taskmill" / "taskmill.db", prefix="tm",
                     clock=FixedClock(), actor="seed") as ledger:
        ledger.create("Plain", task_id="tm-p", labels=["x"], description="d")
        ledger.create("Second plain", task_id="tm-q", priority=3, notes="old notes")
        ledger.create("Élan ✓ \"unicode\"", task_id="tm-u", assignee="zoe")
        ledger.create("Blocked status", task_id="tm-bs", status="blocked")
        ledger.create("Deferred status", task_id="tm-ds", status="deferred")
        ledger.create("Esc title", task_id="tm-esc")
        ledger.store.conn.execute(  # type: ignore[attr-defined]  (as an import may carry)
            "UPDATE tasks SET title = 'Esc \x1b title' WHERE id = 'tm-esc'")
        ledger.create("Epic", task_id="tm-epic", issue_type="epic")
        ledger.create("Only child", task_id="tm-child", parent="tm-epic")
        ledger.create("Blocker", task_id="tm-blocker")
        ledger.create("Waiter", task_id="tm-waiter", after=["tm-blocker"])
        ledger.create("In progress", task_id="tm-ip")
        ledger.claim("tm-ip", "bob")
        ledger.create("Closed", task_id="tm-c")
        ledger.close("tm-c", "done")
        ledger.create("With metadata", task_id="tm-m", metadata={"k": 1})
        ledger.create("Epic two", task_id="tm-e2", issue_type="epic")
        ledger.create("Kid one", task_id="tm-k1", parent="tm-e2")
        ledger.create("Kid two", task_id="tm-k2", parent="tm-e2", after=["tm-k1"])
        ledger.create("Grandkid", task_id="tm-g", parent="tm-k2")
        ledger.create("Deferred kid", task_id="tm-dk", parent="tm-ds")
        import_beads(ledger, [json.dumps(r) + "\n" for r in (  # (only imports make these)
            _record("tm-sp"), _record("tm-sp1", ("tm-sp", "parent-child")),
            _record("tm-sp2", ("tm-sp", "parent-child")),
            _record("tm-fan", ("tm-sp", "waits-for")),
            _record("tm-cond", ("tm-q", "conditional-blocks")))])
    invoke_cli(["list"], cwd=taskmill_repo).ok()  # the full path: checks config, caches it
    return taskmill_repo


def _record(tid: str, *deps: tuple[str, str]) -> dict[str, Any]:
    """A Beads record (with dependencies of any type)."""
    return {"id": tid, "title": f"Imported {tid}", "status": "open", "priority": 2,
            "issue_type": "task", "created_at": "2025-01-01T00:00:00Z",
            "updated_at": "2025-01-01T00:00:00Z",
            "dependencies": [{"issue_id": tid, "depends_on_id": on, "type": kind,
                              "created_at": "2025-01-01T00:00:00Z", "created_by": "me"}
                             for on, kind in deps]}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKMILL_")}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])
    env["TASKMILL_ACTOR"] = "tester"
    env.update(extra)
    return env


def _run(argv: list[str], repo: Path, **env: str) -> tuple[int, str, str, str]:
    """``taskmill ARGV`` as a whole process: status, stdout, stderr, and which path ran."""
    probe = repo.parent / f"{repo.name}.probe"
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, *argv], cwd=repo,
                          env=_env(**{PROBE: str(probe)}, **env), capture_output=True,
                          check=False)
    path = probe.read_text()
    probe.unlink()
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode(), path


def _state(repo: Path) -> dict[str, Any]:
    """The ledger's rows and events; timestamps as ``<ts>``, hashes left out (each chain is
    checked on its own)."""
    conn = sqlite3.connect(repo / ".taskmill" / "taskmill.db")
    try:
        tasks = [tuple(TS.sub("<ts>", v) if isinstance(v, str) else v for v in row)
                 for row in conn.execute("SELECT * FROM tasks ORDER BY seq")]
        labels = conn.execute("SELECT * FROM labels ORDER BY task_id, pos").fetchall()
        events = [(seq, actor, task_id, kind, TS.sub("<ts>", data)) for seq, actor, task_id,
                  kind, data in conn.execute(
                      "SELECT seq, actor, task_id, kind, data FROM events ORDER BY seq")]
        rows = conn.execute("SELECT seq, ts, actor, task_id, kind, data, prev_hash, hash"
                            " FROM events ORDER BY seq").fetchall()
        head = conn.execute("SELECT value FROM meta WHERE key = 'audit_head'").fetchone()[0]
    finally:
        conn.close()
    seq, digest = head.split(":")
    report = verify(rows, (int(seq), digest))
    assert report.ok, report.problems
    return {"tasks": tasks, "labels": labels, "events": events}


def _twins(seeded: Path, tmp_path: Path) -> tuple[Path, Path]:
    full, lean = tmp_path / "full", tmp_path / "lean"
    shutil.copytree(seeded, full)
    shutil.copytree(seeded, lean)
    return full, lean


def _same_ids(full: str, lean: str, text: str) -> str:
    return text.replace(lean, full)


LEAN_CASES: list[list[str]] = [
    ["create", "A new task", "--json"],
    ["create", "Typed", "-p", "0", "-t", "bug", "-d", "two\nlines \"q\" \\ é", "--design",
     "des", "--acceptance", "acc", "--notes", "n", "-l", "b", "-l", "a", "-l", "b", "--json"],
    ["create", "Élan ✓ text output"],
    ["create", "--priority=4", "Attached", "--label=z", "--type=chore"],
    ["update", "tm-p", "--notes", "new notes", "--json"],
    ["update", "tm-q", "--title", "Renamed", "-p", "1", "-t", "feature", "-a", "alice",
     "--external-ref", "gh-1", "--json"],
    ["update", "tm-q", "--notes", ""],
    ["update", "tm-p", "--title", "Plain", "--json"],  # nothing changes: no event
    ["update", "tm-u", "-d", "ünïcode\ttab", "--acceptance", "x"],
    ["update", "tm-esc", "--notes", "esc", "--json"],
    ["update", "tm-m", "--notes", "x", "--json"],  # (its metadata printed)
    ["update", "tm-ip", "--notes", "x", "--json"],  # in progress: its fields only
    ["update", "tm-waiter", "-p", "0", "--json"],  # its dependencies stay as they are
    ["update", "tm-epic", "--notes", "x", "--json"],  # a container (children counted)
    ["update", "tm-child", "-t", "bug"],
    ["close", "tm-p", "--json"],
    ["close", "tm-q", "-r", "done by hand"],
    ["close", "tm-u", "--reason=ok", "--json"],
    ["close", "tm-bs", "--json"],
    ["close", "tm-ds"],  # its child is no longer held back
    ["close", "tm-blocker", "--json"],  # its dependent becomes ready
    ["close", "tm-epic"],  # a container with an open child
    ["close", "tm-k1", "--json"],  # one of two children; its sibling and grandchild follow
    ["close", "tm-sp1", "--json"],  # a child of a spawner another task waits for
    ["close", "tm-q", "-r", "failed: wontfix"],  # a conditional-blocks dependent's count
    ["close", "tm-waiter"],  # with an open blocker
]
"""Command lines the lean path writes."""

FULL_CASES: list[list[str]] = [
    ["create", "Child", "--parent", "tm-epic", "--json"],
    ["create", "After", "--after", "tm-p"],
    ["create", "", "--json"],  # an error
    ["create", "bad\x1b title"],
    ["create", "x" * 501],
    ["create", "t", "-p", "9"],
    ["create", "t", "--metadata", "{\"a\": 1}"],
    ["add", "alias"],
    ["--actor", "someone", "create", "globals"],
    ["update", "tm-p", "-s", "in_progress", "--json"],
    ["update", "tm-p"],  # nothing to change
    ["update", "tm-nope", "--notes", "x"],
    ["update", "TM-P", "--notes", "x"],  # another case: resolved by the full path
    ["update", "tm-p", "-a", ""],
    ["close", "tm-child"],  # the epic closes with it
    ["close", "tm-ip", "--json"],  # in progress
    ["close", "tm-c"],  # already closed: an error
    ["close", "tm-p", "-r", "landed abc123"],  # the mill's own form: refused
    ["close", "tm-p", "tm-q"],
    ["close", "tm-esc"],  # the text output escapes the title
]
"""Command lines the full path serves (the lean path hands them over)."""


@pytest.mark.parametrize("argv", LEAN_CASES + FULL_CASES, ids=" ".join)
def test_the_lean_write_makes_the_change_the_full_path_makes(
        argv: list[str], seeded: Path, tmp_path: Path) -> None:
    full_repo, lean_repo = _twins(seeded, tmp_path)
    full = _run(argv, full_repo, TASKMILL_LEAN="0")
    lean = _run(argv, lean_repo)
    assert full[3] == "full"
    assert lean[3] == ("lean" if argv in LEAN_CASES else "full")
    full_state, lean_state = _state(full_repo), _state(lean_repo)
    created = [r[1] for r in lean_state["tasks"] if r[1] not in
               {t[1] for t in full_state["tasks"]}]
    made = [r[1] for r in full_state["tasks"] if r[1] not in
            {t[1] for t in lean_state["tasks"]}]
    assert len(created) == len(made) <= 1
    fix = (lambda s: _same_ids(made[0], created[0], s)) if created else (lambda s: s)
    assert (lean[0], TS.sub("<ts>", fix(lean[1])), fix(lean[2])) == \
        (full[0], TS.sub("<ts>", full[1]), full[2])
    lean_state = json.loads(fix(json.dumps(lean_state, ensure_ascii=False)))
    full_state = json.loads(json.dumps(full_state, ensure_ascii=False))
    # the labels are listed by task id: the new task's, random on each side, sorts anywhere
    lean_state["labels"].sort()
    full_state["labels"].sort()
    assert lean_state == full_state


def test_a_new_tasks_id_has_the_full_paths_form(seeded: Path) -> None:
    code, out, _, path = _run(["create", "Shape", "--json"], seeded)
    assert (code, path) == (0, "lean")
    assert re.fullmatch(r"tm-[0-9a-z]{4}", json.loads(out)["id"])


def test_a_mix_of_lean_and_full_writes_keeps_the_chain_and_verify_passes(
        seeded: Path) -> None:
    for i in range(3):
        assert _run(["create", f"lean {i}", "-l", "m"], seeded)[3] == "lean"
        assert _run(["create", f"full {i}"], seeded, TASKMILL_LEAN="0")[0] == 0
    assert _run(["update", "tm-p", "--notes", "a"], seeded)[3] == "lean"
    assert _run(["close", "tm-blocker"], seeded)[3] == "lean"
    assert _run(["close", "tm-child"], seeded)[3] == "full"
    assert _run(["close", "tm-q"], seeded)[3] == "lean"
    report = _verify(seeded)
    assert report["ok"] is True and report["replay"] == []


def _verify(repo: Path) -> dict[str, Any]:
    """``taskmill verify --json``, after the seed's title written behind the ledger's back
    is put back as its events say."""
    conn = sqlite3.connect(repo / ".taskmill" / "taskmill.db")
    with conn:
        conn.execute("UPDATE tasks SET title = 'Esc title' WHERE id = 'tm-esc'")
    conn.close()
    result = invoke_cli(["verify", "--json"], cwd=repo)
    result.ok()
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_concurrent_lean_and_full_writers_keep_the_chain(seeded: Path) -> None:
    procs = []
    for i in range(6):
        env = _env(**({"TASKMILL_LEAN": "0"} if i % 2 else {}))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "taskmill", "create", f"racer {i}", "-l", "r"],
            cwd=seeded, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "taskmill", "update", "tm-p", "--notes", "raced"],
        cwd=seeded, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for proc in procs:
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    state = _state(seeded)  # (verifies the chain)
    assert sum(1 for e in state["events"] if e[3] == "created" and "racer" in e[4]) == 6
    assert _verify(seeded)["ok"] is True


def test_a_locked_ledger_goes_to_the_full_path_having_written_nothing(
        seeded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setattr(write_sql, "create", _raise_locked)
    monkeypatch.setitem(sys.modules, "taskmill.ledger.lean_write", write_sql)
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BytesIO(), encoding="utf-8"))
    before = _state(seeded)
    assert lean_write.answer(["create", "x", "--json"], _env(), str(seeded)) is None
    assert _state(seeded) == before


def _raise_locked(*args: Any, **kwargs: Any) -> str:
    raise sqlite3.OperationalError("database is locked")


@pytest.mark.parametrize("env", [{"TASKMILL_LEAN": "0"}, {"TASKMILL_TASK_ID": "tm-p"},
                                 {"TASKMILL_DIR": "/nowhere"}, {"TASKMILL_SOCKET": "/x"}])
def test_settings_that_change_a_write_go_to_the_full_path(env: dict[str, str]) -> None:
    assert lean_write.parse(["create", "x", "--json"], {"PATH": "/bin", **env}) is None


def test_a_ledger_without_the_cached_prefix_goes_to_the_full_path(seeded: Path) -> None:
    cache = seeded / ".taskmill" / "run" / "lean.cache"
    cache.write_bytes(cache.read_bytes().replace(b"prefix tm\n", b""))
    assert _run(["create", "no prefix"], seeded)[3] == "full"
    assert _run(["update", "tm-p", "--notes", "n"], seeded)[3] == "lean"


# -- one implementation ------------------------------------------------------------------


def test_the_options_are_the_fast_paths() -> None:
    for name, spec in lean_write.SPECS.items():
        options, _ = fast.SPECS[name]
        for option, (field, _kind) in spec.items():
            expected = {"json": "as_json", "close_reason": "reason"}.get(field, field)
            assert options[option][0] == expected, (name, option)


def test_the_write_module_columns_are_the_read_modules() -> None:
    assert write_sql._FIELDS == lean_sql.TASK_FIELDS


def test_the_readiness_module_statuses_are_the_models() -> None:
    from taskmill import model

    assert lean_readiness.DONE_STATUSES == model.DONE_STATUSES
    assert lean_readiness.HOLDING_STATUSES == model.HOLDING_STATUSES


@pytest.mark.parametrize(("path", "allowed"), [
    (lean_rules.__file__, {"__future__", "os", "_json"}),
    (write_sql.__file__, {"__future__", "taskmill"}),
    (lean_readiness.__file__, {"__future__"}),
    (held_links.__file__, {"__future__"}),
    (links_begun.__file__, {"__future__", "os", "atexit"}),
])
def test_the_lean_modules_import_only_c_modules(path: str, allowed: set[str]) -> None:
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names if not _in_fallback(tree, node)}
    imported |= {node.module or "" for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and not _in_fallback(tree, node)}
    assert imported - {"time"} <= allowed  # (time: a built-in module)


def _in_fallback(tree: ast.AST, node: ast.AST) -> bool:
    """Under ``TYPE_CHECKING``, or in an ``except ImportError`` / a function's fallback."""
    for parent in ast.walk(tree):
        if isinstance(parent, ast.If) and isinstance(parent.test, ast.Name) \
                and parent.test.id == "TYPE_CHECKING" and node in ast.walk(parent):
            return True
        if isinstance(parent, ast.ExceptHandler) and node in ast.walk(parent):
            return True
        if isinstance(parent, ast.FunctionDef) and parent.name in (
                "compact_json", "_find_sha256") and node in ast.walk(parent):
            return True
    return False


def test_a_whole_lean_write_imports_none_of_the_ledger(seeded: Path) -> None:
    heavy = {"json", "pathlib", "dataclasses", "typing", "tomllib", "re", "click", "orjson",
             "hashlib", "datetime", "sqlite3", "importlib.machinery", "taskmill.project",
             "taskmill.model", "taskmill.ledger", "taskmill.validation",
             "taskmill.cli.context", "functools", "collections", "importlib"}
    code = ("import atexit, sys\n"
            "atexit.register(lambda: sys.stderr.write(repr(sorted(sys.modules))))\n"
            "from taskmill.cli import main\n"
            "sys.exit(main())")
    proc = subprocess.run([sys.executable, "-c", code, "create", "light", "--json"],
                          cwd=seeded, env=_env(), capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr
    loaded = set(ast.literal_eval(proc.stderr.decode()))
    assert "taskmill.ledger.lean_write" in loaded
    assert heavy.isdisjoint(loaded), sorted(heavy & loaded)


@pytest.mark.parametrize("data", [
    {"changes": {"notes": ["", "é \"q\" \\ \n \x00 \u2028 \U0001f600"]}},
    {"new": {"title": "t", "priority": 2, "metadata": {"b": [1, 2.5, None, True, 1e-07],
                                                       "a": {"z": 10**30}}}},
    {"x": datetime(2026, 1, 1, tzinfo=UTC), "k": (1, 2)},
    {},
])
def test_the_event_json_is_json_dumps(data: dict[str, Any]) -> None:
    assert lean_rules.event_text(data) == json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    body = {"seq": 3, "ts": "t", "actor": "é", "task": None, "kind": "k", "data": "d\n"}
    assert lean_rules.canonical(3, "t", "é", None, "k", "d\n") == json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def test_the_chain_hash_is_sha256() -> None:
    assert lean_rules.chain_hash("ab", b"\xc3\xa9") == hashlib.sha256(b"ab\xc3\xa9").hexdigest()


def test_an_id_is_the_hash_of_title_time_and_nonce() -> None:
    seed = b"t\x002026\x00n0nce"
    digest = lean_rules.base36(hashlib.sha256(seed).digest())
    assert lean_rules.new_id("tm", "t", "2026", length=5, nonce="n0nce") == f"tm-{digest[:5]}"
    taken = {lean_rules.new_id("tm", "t", "2026", length=4, nonce="x")}
    assert lean_rules.pick_id("tm", "t", "2026", 10, lambda _: True) is None
    assert lean_rules.pick_id("tm", "t", "2026", 10, taken.__contains__) not in taken


@pytest.mark.parametrize("ns", [0, 1_767_225_600_123_456_789, 1_767_225_599_999_999_999,
                                951_782_400_000_001_000])
def test_the_lean_time_is_the_clocks_form(ns: int) -> None:
    when = datetime.fromtimestamp(ns // 1_000_000_000, UTC).replace(
        microsecond=ns % 1_000_000_000 // 1000)
    assert lean_rules.iso_from_ns(ns) == iso(when)


@pytest.mark.parametrize("value", [
    "ok", "", "  ", "a\x1fb", "a\x7f", "a\x9f", "a\xa0", "a\u2028", "a\u2029", "tab\t",
    "two\nlines\r\n", "\n", "a\x0bb", "a\x08", "a\ud800",
    "é ✓ \U0001f600", "x" * 200, "x" * 201, "\x00", 5, None,
])
def test_the_lean_checks_accept_what_validation_accepts(value: Any) -> None:
    def accepts(check: Any, *args: Any) -> bool:
        try:
            check(*args)
        except InvalidInput:
            return False
        return True

    assert lean_rules.is_line(value) == accepts(validation.one_line, "v", value)
    assert lean_rules.is_line(value, breaks=True) == accepts(
        lambda v: validation.one_line("v", v, allow_breaks=True), value)
    assert lean_rules.is_text(value) == accepts(validation.text, "v", value)
    if isinstance(value, str):
        assert lean_rules.is_plain(value) == (validation.printable(value) == value)


def test_a_long_text_is_measured_in_bytes() -> None:
    text = "é" * (validation.TEXT_MAX_BYTES // 2)
    assert lean_rules.is_text(text)
    assert not lean_rules.is_text(text + "é")
    assert not lean_rules.is_text("x" * 16 * 1024 + "é" * (24 * 1024 + 1))
