"""The lean path (``taskmill.cli.lean``): ``ready --json`` and ``show ID --json`` answered
with little more than sqlite3 imported, byte for byte as the full path answers them, and
handed to the full path for anything it does not fully understand."""

from __future__ import annotations

import ast
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import invoke_cli, lean_env
from taskmill import lean_config
from taskmill.cli import lean
from taskmill.clock import FixedClock
from taskmill.ledger import Ledger
from taskmill.ledger import lean as lean_sql

SRC = Path(__file__).resolve().parents[1] / "src"


def _open(repo: Path) -> Ledger:
    return Ledger.open(repo / ".taskmill" / "taskmill.db", prefix="tm", clock=FixedClock(),
                       actor="seed")


@pytest.fixture
def seeded(taskmill_repo: Path) -> Path:
    """Labels, dependencies both ways, a parent and children, unicode and control
    characters, JSON fields, comments, an attempt with a float cost, a closed task; and the
    lean cache the full path writes when it opens the ledger."""
    (taskmill_repo / "sub").mkdir()
    with _open(taskmill_repo) as ledger:
        ledger.create("Epic", task_id="tm-epic", issue_type="epic", labels=["big"])
        ledger.create("First child", task_id="tm-a", parent="tm-epic", labels=["y", "x"],
                      description="line one\nline two\ttab \"quoted\" back\\slash")
        ledger.create("Second child", task_id="tm-b", parent="tm-epic", after=["tm-a"],
                      priority=0)
        ledger.create("Élan ✓ unicode", task_id="tm-u", checks=["true"],
                      metadata={"k": [1, {"n": None, "t": True}], "é": "ü"},
                      hints={"files": ["a.py"]})
        ledger.create("Control characters", task_id="tm-esc", priority=1)
        ledger.store.conn.execute(  # type: ignore[attr-defined]  (as an import may carry)
            "UPDATE tasks SET notes = ? WHERE id = 'tm-esc'",
            ("".join(map(chr, range(1, 0x20))) + "\x1b[31mred \x7f \u2028 \u2029 \U0001f600",))
        ledger.create("Closed one", task_id="tm-c")
        ledger.close("tm-c", "done by hand")
        ledger.comment("tm-a", "a comment\nover two lines", author="alice")
        ledger.comment("tm-a", "second ✓", author="bob")
        attempt = ledger.start_attempt("tm-b", iteration=1, agent="scripted", model="m",
                                       log_path="logs/x.log", run_id="r1", lap=1,
                                       actor="mill", now="2026-01-01T00:00:00Z")
        ledger.finish_attempt("tm-b", attempt, outcome="failed", input_tokens=10,
                              output_tokens=5, cost_usd=0.0125, commit=None, model=None,
                              detail={"checks": "1 failed"}, seconds=1.5, usage_error=None,
                              actor="mill", now="2026-01-01T00:01:00Z")
    invoke_cli(["list"], cwd=taskmill_repo).ok()  # the full path: checks config, caches it
    return taskmill_repo




def _lean(argv: list[str], repo: Path, monkeypatch: pytest.MonkeyPatch,
          env: dict[str, str] | None = None) -> bytes | None:
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BytesIO(), encoding="utf-8"))
    return lean.answer(argv, lean_env() if env is None else env, str(repo))


def _process(argv: list[str], repo: Path, **env: str) -> tuple[int, bytes, bytes]:
    """``taskmill ARGV`` as a whole process, as the console script starts it."""
    environ = lean_env(**env)
    environ["PYTHONPATH"] = os.pathsep.join([str(SRC), environ.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from taskmill.cli import main; sys.exit(main())",
         *argv], cwd=repo, env=environ, capture_output=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


LEAN_CASES: list[list[str]] = [
    ["ready", "--json"], ["ready", "--json", "-n", "1"], ["ready", "-n", "2", "--json"],
    ["ready", "--limit", "3", "--json"], ["ready", "--limit=4", "--json"],
    ["show", "tm-a", "--json"], ["show", "--json", "tm-epic"], ["show", "tm-b", "--json"],
    ["show", "tm-u", "--json"], ["show", "tm-esc", "--json"], ["show", "tm-c", "--json"],
]
"""Command lines the lean path answers."""


@pytest.mark.parametrize("argv", LEAN_CASES, ids=" ".join)
def test_the_lean_path_prints_what_the_full_path_prints(
        argv: list[str], seeded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    answered = _lean(argv, seeded, monkeypatch)
    assert answered is not None, f"the lean path handed {argv} to the full path"
    full = _process(argv, seeded, TASKMILL_LEAN="0")
    assert full[0] == 0 and full[2] == b""
    assert answered == full[1]
    assert _process(argv, seeded) == full  # the whole process: the same bytes, status


def test_many_ready_tasks_are_written_as_the_full_path_writes_them(
        seeded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lean, "BIG", 12)
    with _open(seeded) as ledger:
        for i in range(lean.BIG + 5):
            ledger.create(f"bulk {i} ✓", labels=[f"l{i % 3}"], priority=i % 5,
                          **({"checks": ["make"]} if i % 7 == 0 else {}))
    for argv in (["ready", "--json"], ["ready", "--json", "-n", str(lean.BIG + 1)]):
        answered = _lean(argv, seeded, monkeypatch)
        assert answered is not None
        assert answered == _process(argv, seeded, TASKMILL_LEAN="0")[1]


def _ready_json_both_ways(repo: Path) -> tuple[bytes | None, bytes, int]:
    """``ready --json`` written by SQLite (:func:`lean.ready_json`) and from the tasks'
    dicts (:func:`lean.encode`), and how many tasks SQLite left to Python."""
    sql = lean.sql_module()
    conn = sql.connect(str(repo / ".taskmill" / "taskmill.db"))
    assert conn is not None
    try:
        batches = sql.ready_blobs(conn, None, lean.loads)
        left = sum(item.__class__ is dict for batch in batches for item in batch)
        out = lean.ready_json(sql, conn, None)
        return (None if out is None else b"".join(b"".join(group) for group in out),
                lean.encode(sql.ready(conn, None, lean.loads)), left)
    finally:
        conn.close()


def test_ready_json_written_by_sqlite_is_the_dicts_encoded(
        seeded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Labels out of alphabetical order, a child with two parent links (the first by
    position is its parent), closed and tombstoned children, NULL and empty fields, JSON
    fields (those tasks written by Python, between SQLite's), and the full path agreeing."""
    with _open(seeded) as ledger:
        ledger.create("Parent two", task_id="tm-p2", labels=["b", "a", "c"])
        ledger.create("Kid", task_id="tm-k", parent="tm-p2", assignee="ann", labels=["z"])
        ledger.create("Kid closed", task_id="tm-kc", parent="tm-p2")
        ledger.close("tm-kc", "done")
        ledger.create("Kid gone", task_id="tm-kg", parent="tm-p2")
        conn = ledger.store.conn  # type: ignore[attr-defined]
        conn.execute("UPDATE tasks SET status = 'tombstone' WHERE id = 'tm-kg'")
        conn.execute("INSERT INTO deps (issue_id, depends_on_id, type, pos)"
                     " VALUES ('tm-k', 'tm-epic', 'parent-child', 5)")
        ledger.create("With checks", task_id="tm-ch", checks=["make", "pytest -q"])
        ledger.create("Quotes ' and \" and \\", task_id="tm-q", external_ref="gh-1",
                      description="", notes="n\u0085\u00a0 \x1f end")
    written, encoded, left = _ready_json_both_ways(seeded)
    assert written == encoded
    assert left == 2  # tm-u and tm-ch: JSON fields set
    data = json.loads(written or b"")
    assert [t["labels"] for t in data if t["id"] == "tm-p2"] == [["b", "a", "c"]]
    assert [(t["children"], t["children_closed"], t["container"]) for t in data
            if t["id"] == "tm-p2"] == [(2, 1, True)]
    argv = ["ready", "--json"]
    assert _lean(argv, seeded, monkeypatch) == written
    assert _process(argv, seeded, TASKMILL_LEAN="0")[1] == written


@pytest.mark.parametrize("last", ["kept text", "JSON fields"])
def test_ready_json_ends_the_same_whichever_writes_the_last_task(
        seeded: Path, last: str) -> None:
    """The last ready task's text kept by SQLite (its closing line a piece of its own) or
    written here (a JSON field set): the list closed as the full path closes it."""
    with _open(seeded) as ledger:
        ledger.create("Last", task_id="tm-last", priority=4,
                      hints={"files": ["z.py"]} if last == "JSON fields" else None)
    written, encoded, _left = _ready_json_both_ways(seeded)
    assert written == encoded and b'"tm-last"' in (written or b"")
    assert (written or b"").endswith(b"\n  }\n]\n")


def test_ready_json_with_a_float_in_a_json_field_is_written_as_before(
        seeded: Path) -> None:
    with _open(seeded) as ledger:
        ledger.create("Float", task_id="tm-f", metadata={"ratio": 0.5, "big": 1e300})
    written, encoded, _left = _ready_json_both_ways(seeded)
    assert written == encoded
    assert b'"ratio": 0.5' in (written or b"")


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_ready_json_read_a_batch_at_a_time_is_the_whole_answer(
        seeded: Path, monkeypatch: pytest.MonkeyPatch, batch: int) -> None:
    """Tasks written by SQLite and by Python (a JSON field set; a float in one) on either
    side of each batch's edge: the same bytes as the full path's, a group per batch."""
    with _open(seeded) as ledger:
        for i in range(7):
            ledger.create(f"mixed {i}", priority=4,
                          metadata={"i": i, "ratio": 0.5} if i % 3 == 1 else None)
    monkeypatch.setattr(lean.sql_module(), "READY_BATCH", batch)
    written, encoded, left = _ready_json_both_ways(seeded)
    assert written == encoded
    assert left == 3  # mixed 1 and 4, and tm-u
    argv = ["ready", "--json"]
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BytesIO(), encoding="utf-8"))
    out = lean.pieces(argv, lean_env(), str(seeded))
    assert out is not None
    groups = list(out)
    assert len(groups) > 7 // batch  # (and the list's end: a group of its own)
    assert b"".join(b"".join(group) for group in groups) == written
    assert _process(argv, seeded, TASKMILL_LEAN="0")[1] == written


def test_an_answer_that_cannot_be_read_to_its_end_is_cut_short_with_a_word(
        capfd: pytest.CaptureFixture[str]) -> None:
    """Part of it written (it cannot go to the full path any more): exit 1, and why."""
    def groups() -> Iterator[list[bytes]]:
        yield [b"[\n  ", b"{}"]
        raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(SystemExit) as done:
        lean.emit(groups())
    assert done.value.code == 1
    out, err = capfd.readouterr()
    assert out == "[\n  {}"
    assert err == "error: the answer was cut short: disk I/O error\n"


def test_sqlites_json_quote_writes_what_json_and_orjson_write() -> None:
    """:data:`lean_sql.READY_BLOB_SQL` quotes with SQLite's ``json_quote``; the full path
    writes with ``json`` (and orjson from 2,000 tasks on)."""
    import sqlite3

    import orjson

    conn = sqlite3.connect(":memory:")
    text = ("".join(map(chr, range(0x80))) + "\x9f\xa0\u2028\u2029\ud7ff\ue000\ufeff"
            "\U0001f600 é ✓ 漢")
    for value in (text, "", 0, 4, -1, 2**62):
        quoted = conn.execute("SELECT json_quote(?)", (value,)).fetchone()[0]
        assert quoted == json.dumps(value, ensure_ascii=False) == orjson.dumps(value).decode()


def test_the_task_text_keys_are_the_task_jsons() -> None:
    from taskmill.ledger.sqlite.kept_text import TEXT_FIELDS

    row = ["x"] * len(lean_sql.TASK_FIELDS)
    keys = tuple(lean_sql.task_json(row, [], None, 0, 0, lambda text: None))
    assert keys == lean_sql.TASK_TEXT_KEYS
    assert (*(name for name, _ in TEXT_FIELDS), "children_closed", "container") == keys


FALLBACKS: list[list[str]] = [
    ["ready", "--json", "--json"], ["ready", "--json", "--limit"],
    ["ready", "--json", "--beads-compat"], ["ready", "--json", "-n", "0"],
    ["ready", "--json", "-n", "01"], ["ready", "--json", "-n", "1000001"],
    ["ready", "--json", "-n"], ["ready", "--json", "extra"], ["ready", "--json", "--help"],
    ["show", "--json"], ["show", "tm-a", "tm-b", "--json"], ["show", "a", "--json"],
    ["show", "TM-A", "--json"], ["show", "tm-nope", "--json"], ["show", "tm-a ", "--json"],
    ["show", "tm-\x1ba", "--json"], ["show", "-x", "--json"],
    ["-C", "sub", "ready", "--json"], ["--actor", "bob", "show", "tm-a", "--json"],
    ["list", "--json"], ["blocked", "--json"], ["close", "tm-a", "--json"],
]
"""Command lines the lean path leaves to the full path."""


@pytest.mark.parametrize("argv", FALLBACKS, ids=" ".join)
def test_the_lean_path_leaves_the_rest_to_the_full_path(
        argv: list[str], seeded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _lean(argv, seeded, monkeypatch) is None


@pytest.mark.parametrize("name", ["TASKMILL_SOCKET", "TASKMILL_DIR", "TASKMILL_DATABASE_URL",
                                  "_TASKMILL_COMPLETE"])
def test_an_environment_that_changes_the_commands_sends_them_to_the_full_path(
        name: str, seeded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _lean(["ready", "--json"], seeded, monkeypatch) is not None
    assert _lean(["ready", "--json"], seeded, monkeypatch, lean_env(**{name: "x"})) is None
    assert _lean(["ready", "--json"], seeded, monkeypatch, lean_env(TASKMILL_LEAN="0")) is None


def test_a_config_the_full_path_has_not_checked_is_not_used(
        seeded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = seeded / ".taskmill" / "config.toml"
    config.write_text(config.read_text() + "\n[ledger]\nbeads_compat = true\n")
    assert _lean(["ready", "--json"], seeded, monkeypatch) is None  # edited: not checked
    invoke_cli(["list"], cwd=seeded).ok()
    assert lean_config.read(str(seeded / ".taskmill" / "run"), str(config)) == \
        {"beads_compat": "1", "prefix": "tm"}
    assert _lean(["ready", "--json"], seeded, monkeypatch) is None  # Beads' readiness
    assert _lean(["show", "tm-a", "--json"], seeded, monkeypatch) is not None
    config.write_text("not = [valid\n")  # the full path reports it
    assert _lean(["show", "tm-a", "--json"], seeded, monkeypatch) is None
    code, _out, err = _process(["show", "tm-a", "--json"], seeded)
    assert code != 0 and b"config.toml" in err


def test_no_cache_another_version_or_another_ledger_url_is_the_full_paths(
        seeded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = seeded / ".taskmill" / "run"
    cache = run / lean_config.CACHE_FILE
    cache.write_bytes(cache.read_bytes().replace(b"taskmill-lean 1 ", b"taskmill-lean 1 9"))
    assert _lean(["ready", "--json"], seeded, monkeypatch) is None
    cache.unlink()
    assert _lean(["ready", "--json"], seeded, monkeypatch) is None
    invoke_cli(["ready"], cwd=seeded).ok()
    assert _lean(["ready", "--json"], seeded, monkeypatch) is not None


def test_roles_deferred_tasks_and_tasks_in_progress_are_the_full_paths(
        seeded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with _open(seeded) as ledger:
        ledger.claim("tm-a", "alice")
    assert _lean(["show", "tm-a", "--json"], seeded, monkeypatch) is None  # interrupted?
    assert _lean(["show", "tm-b", "--json"], seeded, monkeypatch) is not None
    roles = seeded / ".taskmill" / "roles"
    roles.mkdir()
    (roles / "README").write_text("no role here")
    assert _lean(["ready", "--json"], seeded, monkeypatch) is not None
    (roles / "dev.toml").write_text("[budget]\ntokens_per_day = 1\n")
    assert _lean(["ready", "--json"], seeded, monkeypatch) is None
    assert _lean(["show", "tm-b", "--json"], seeded, monkeypatch) is None
    shutil.rmtree(roles)
    with _open(seeded) as ledger:
        ledger.store.conn.execute(  # type: ignore[attr-defined]
            "UPDATE tasks SET extra = '{\"fields\": {\"defer_until\": \"2020-01-01\"}}'"
            " WHERE id = 'tm-u'")
    assert _lean(["ready", "--json"], seeded, monkeypatch) is None


def test_a_ledger_that_needs_a_migration_is_the_full_paths(
        seeded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with _open(seeded) as ledger:
        ledger.store.conn.execute(  # type: ignore[attr-defined]
            "DELETE FROM migrations WHERE name = ?", (lean_sql.SCHEMA_STEPS[-1],))
    assert _lean(["ready", "--json"], seeded, monkeypatch) is None


def test_a_linked_worktree_or_no_repository_is_the_full_paths(
        seeded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _lean(["ready", "--json"], seeded / "sub", monkeypatch) is not None
    outside = tmp_path / "outside"
    outside.mkdir()
    assert _lean(["ready", "--json"], outside, monkeypatch) is None
    (outside / ".git").write_text("gitdir: ../elsewhere\n")
    assert _lean(["ready", "--json"], outside, monkeypatch) is None


# -- what keeps it lean and in step with the store ----------------------------------------


def test_the_lean_path_imports_neither_the_ledger_nor_json() -> None:
    """What makes it fast: a whole ``ready --json`` loads none of these."""
    heavy = {"json", "pathlib", "dataclasses", "typing", "tomllib", "re", "click", "orjson",
             "taskmill.project", "taskmill.model", "taskmill.ledger", "taskmill.cli.context",
             "functools", "collections", "importlib", "importlib.machinery",
             "_json"}  # (SQLite writes the JSON)
    code = ("import atexit, sys\n"
            "atexit.register(lambda: sys.stderr.write(repr(sorted(sys.modules))))\n"
            "from taskmill.cli import main\n"
            "sys.exit(main())")
    return_code, out, err = _seeded_process(code)
    assert return_code == 0 and out.startswith(b"[")
    loaded = set(ast.literal_eval(err.decode()))
    assert "_sqlite3" in loaded
    assert heavy.isdisjoint(loaded), sorted(heavy & loaded)


def _seeded_process(code: str) -> tuple[int, bytes, bytes]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
        invoke_cli(["init", "--prefix", "tm"], cwd=repo).ok()
        invoke_cli(["create", "one", "-l", "a"], cwd=repo).ok()
        environ = lean_env(PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
        proc = subprocess.run([sys.executable, "-c", code, "ready", "--json"], cwd=repo,
                              env=environ, capture_output=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr


def test_a_whole_process_ends_at_once_after_its_output_and_atexit_functions() -> None:
    """The console script (``main()``: the process's own command line) skips the
    interpreter's teardown (an object's ``__del__`` never runs) but not the ``atexit``
    functions; called with a command line, ``main`` exits as usual (the teardown runs)."""
    code = ("import atexit, sys\n"
            "atexit.register(lambda: sys.stderr.write('atexit ran\\n'))\n"
            "class Teardown:\n"
            "    def __del__(self):\n"
            "        sys.stderr.write('teardown ran\\n')\n"
            "kept = Teardown()\n"
            "from taskmill.cli import main\n"
            "sys.exit(main({}))")
    for argv, teardown in (("", False), ("sys.argv[1:]", True)):
        return_code, out, err = _seeded_process(code.format(argv))
        assert return_code == 0 and out.startswith(b"[") and out.endswith(b"]\n")
        assert err == b"atexit ran\n" + (b"teardown ran\n" if teardown else b"")


def test_sqlite3s_c_module_loads_without_functools_and_caches_statements() -> None:
    """:func:`lean.sqlite_module`: the statement cache made from functools's C part works
    as functools's own (statements reused, evicted past the cache's size), and afterwards
    ``functools`` is the real module."""
    code = (
        "import sys\n"
        "from taskmill.cli import lean\n"
        "sqlite = lean.sqlite_module()\n"
        "assert 'functools' not in sys.modules and 'collections' not in sys.modules\n"
        "assert lean.sqlite_module() is sqlite and sys.modules['_sqlite3'] is sqlite\n"
        "conn = sqlite.connect(':memory:', cached_statements=4)\n"
        "conn.execute('CREATE TABLE t (n INTEGER)')\n"
        "for i in range(40):\n"
        "    conn.execute(f'INSERT INTO t VALUES ({i % 9})')\n"
        "    conn.execute('INSERT INTO t VALUES (?)', (i,))\n"
        "assert conn.execute('SELECT count(*), sum(n) FROM t').fetchone() == (80, sum(i % 9 + i for i in range(40)))\n"
        "import functools\n"
        "assert functools.reduce(lambda a, b: a + b, [1, 2, 3]) == 6\n"
        "print('ok')\n")
    run_ok(code)


def run_ok(code: str) -> None:
    """``code`` in a new Python with taskmill's source on its path: it prints ``ok``."""
    environ = lean_env(PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True,
                          check=False)
    assert proc.returncode == 0 and proc.stdout == b"ok\n", proc.stderr


def test_sqlite3s_c_module_is_imported_as_usual_once_functools_is_loaded() -> None:
    code = ("import functools, sys\n"
            "from taskmill.cli import lean\n"
            "sqlite = lean.sqlite_module()\n"
            "assert sys.modules['functools'] is functools and sqlite.connect(':memory:')"
            ".execute('SELECT 1').fetchone() == (1,)\n"
            "print('ok')\n")
    run_ok(code)


def test_the_sql_module_imports_only_sqlite3s_c_module() -> None:
    tree = ast.parse(Path(lean_sql.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in tree.body if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module for node in tree.body if isinstance(node, ast.ImportFrom)}
    assert imported == {"__future__", "_sqlite3"}


def test_the_lean_path_knows_the_schema_and_the_limits() -> None:
    from taskmill import validation
    from taskmill.ledger.sqlite.schema import MIGRATIONS

    assert tuple(name for name, _ in MIGRATIONS) == lean_sql.SCHEMA_STEPS
    assert lean.LIMIT_MAX == validation.LIMIT_MAX
    assert lean.ID_MAX == validation.NAME_MAX
    from taskmill.ledger.sqlite.schema import BUSY_TIMEOUT_MS

    assert lean_sql.BUSY_TIMEOUT_MS == BUSY_TIMEOUT_MS


ENCODED = [
    None, True, False, 0, -1, 2**70, "", "plain", "é ✓ \u2028 \u2029 \x7f \x9f",
    "".join(map(chr, range(0x20))) + "\"\\/", [], {}, [[]], {"a": {}}, [1, "x", None],
    {"k": [1, {"n": None, "t": True}], "é": "ü", "": ""}, [{"a": [{"b": []}]}],
    {"f": 1.5}, [0.1, 1e-07], {"nan": float("inf")},
]


@pytest.mark.parametrize("value", ENCODED, ids=repr)
@pytest.mark.parametrize("quoted", ["C", "Python"])
def test_the_encoder_writes_what_json_writes(value: object, quoted: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    if quoted == "Python":  # (where json's C function is missing)
        monkeypatch.setattr(lean, "_quoted", lean._py_quoted)
        monkeypatch.setattr(lean, "_KEYS", {})
    assert lean.encode(value) == \
        (json.dumps(value, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


@pytest.mark.parametrize("unbuffered", ["1", ""])
def test_a_closed_pipe_ends_it_as_it_ends_the_full_path(
        unbuffered: str, seeded: Path) -> None:
    """Status 1 and nothing on stderr; unbuffered, a write takes what the pipe holds, and
    the rest is written (or fails) after it, not dropped."""
    with _open(seeded) as ledger:
        for i in range(600):  # ~400 KiB of JSON: far more than a pipe holds
            ledger.create(f"filler {i}", description="x" * 200)
    outcomes = []
    for switch in ("1", "0"):
        environ = lean_env(TASKMILL_LEAN=switch, PYTHONUNBUFFERED=unbuffered)
        environ["PYTHONPATH"] = os.pathsep.join([str(SRC), environ.get("PYTHONPATH", "")])
        proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from taskmill.cli import main; sys.exit(main())",
             "ready", "--json"], cwd=seeded, env=environ, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.read(1) == b"["
        proc.stdout.close()
        outcomes.append((proc.wait(), proc.stderr.read()))
        proc.stderr.close()
    assert outcomes[0] == outcomes[1] == (1, b"")


def test_a_config_checked_at_every_start_gets_no_cache(
        seeded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One naming a third-party adapter: the full path checks it every time (installed
    packages may have changed), so the lean path must not answer for it."""
    from taskmill import config

    cache = seeded / ".taskmill" / "run" / lean_config.CACHE_FILE
    cache.unlink()
    monkeypatch.setattr(config, "_stamp_key", lambda data, raw: None)
    invoke_cli(["list"], cwd=seeded).ok()
    assert not cache.exists()
    monkeypatch.undo()
    invoke_cli(["list"], cwd=seeded).ok()
    assert cache.exists()
