"""The lean path's kept ``ready --json`` answer (:mod:`taskmill.cli.lean_kept`): written again
only while the ledger is at the generation it was read at, whoever changed the ledger since
(the library, the CLI, an import, a ``sqlite3`` shell), and never a torn or foreign file."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import invoke_cli, lean_env
from taskmill.cli import lean, lean_kept
from taskmill.clock import FixedClock
from taskmill.ledger import Ledger
from taskmill.ledger.sqlite.schema import GENERATION_TABLES

SRC = Path(__file__).resolve().parents[1] / "src"
READY_FILE = lean_kept.READY + lean_kept.SUFFIX


def _open(repo: Path) -> Ledger:
    return Ledger.open(repo / ".taskmill" / "taskmill.db", prefix="tm", clock=FixedClock(),
                       actor="seed")


@pytest.fixture
def repo(taskmill_repo: Path) -> Path:
    with _open(taskmill_repo) as ledger:
        ledger.create("Epic", task_id="tm-epic", issue_type="epic", labels=["big"])
        ledger.create("First child", task_id="tm-a", parent="tm-epic", labels=["y", "x"])
        ledger.create("Second child", task_id="tm-b", parent="tm-epic", after=["tm-a"])
        ledger.create("Loose", task_id="tm-l", priority=0)
    invoke_cli(["list"], cwd=taskmill_repo,  # the full path: checks config, caches it
               env={"TASKMILL_KEPT": "0"}).ok()
    return taskmill_repo




def _run_dir(repo: Path) -> Path:
    return repo / ".taskmill" / "run"


def _lean_ready(repo: Path, monkeypatch: pytest.MonkeyPatch) -> bytes:
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BytesIO(), encoding="utf-8"))
    out = lean.answer(["ready", "--json"], lean_env(), str(repo))
    assert out is not None, "the lean path handed `ready --json` to the full path"
    return out


def _full_ready(repo: Path) -> bytes:
    env = lean_env(TASKMILL_LEAN="0")
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from taskmill.cli import main; sys.exit(main())",
         "ready", "--json"], cwd=repo, env=env, capture_output=True, check=True)
    return proc.stdout


def _kept(repo: Path) -> bytes:
    return (_run_dir(repo) / READY_FILE).read_bytes()


def _ids(out: bytes) -> list[str]:
    import json

    return [t["id"] for t in json.loads(out)]


def test_the_answer_is_kept_and_written_again_until_the_ledger_changes(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _lean_ready(repo, monkeypatch)
    assert first == _full_ready(repo)
    kept = _kept(repo)
    assert kept.endswith(first) and kept.startswith(b"taskmill-kept ")
    assert oct(os.stat(_run_dir(repo) / READY_FILE).st_mode & 0o777) == "0o600"
    # the kept bytes are what is written (changed by hand here: no SQLite read them)
    marked = kept.replace(b'"Loose"', b'"Lo0se"')
    (_run_dir(repo) / READY_FILE).write_bytes(marked)
    assert b'"Lo0se"' in _lean_ready(repo, monkeypatch)


@pytest.mark.parametrize("change", [
    "create", "update", "close", "label", "dep", "reopen", "parent-closed",
])
def test_every_change_through_the_library_is_seen(
        change: str, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _lean_ready(repo, monkeypatch)
    with _open(repo) as ledger:
        if change == "create":
            ledger.create("New one", task_id="tm-new")
        elif change == "update":
            ledger.update("tm-l", {"title": "Loose, renamed"})
        elif change == "close":
            ledger.close("tm-a", "done")  # tm-b becomes ready, the epic counts it closed
        elif change == "label":
            ledger.add_labels("tm-l", ["fresh"])
        elif change == "dep":
            ledger.add_dep("tm-l", "tm-a")
        elif change == "reopen":  # (back where it was: the closed state in between is seen)
            ledger.close("tm-l", "done")
            between = _lean_ready(repo, monkeypatch)
            assert between == _full_ready(repo) and between != before
            ledger.reopen("tm-l")
            before = between
        else:
            ledger.close("tm-a", "done")
            assert _lean_ready(repo, monkeypatch) == _full_ready(repo)
            ledger.close("tm-b", "done")
    after = _lean_ready(repo, monkeypatch)
    assert after != before
    assert after == _full_ready(repo)


def test_a_change_behind_the_ledgers_back_is_seen(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Triggers in the database move the generation: a user's ``sqlite3`` shell too."""
    _lean_ready(repo, monkeypatch)
    db = repo / ".taskmill" / "taskmill.db"
    for sql in ("UPDATE tasks SET title = 'by hand' WHERE id = 'tm-l'",
                "INSERT INTO labels (task_id, label, pos) VALUES ('tm-l', 'hand', 0)",
                "DELETE FROM deps WHERE issue_id = 'tm-b' AND type = 'blocks'"):
        conn = sqlite3.connect(db)
        with conn:
            conn.execute(sql)
        conn.close()
        assert _lean_ready(repo, monkeypatch) == _full_ready(repo), sql


def _assert_triggers(repo: Path) -> None:
    conn = sqlite3.connect(repo / ".taskmill" / "taskmill.db")
    triggers = {(table, name) for name, table in conn.execute(
        "SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'")}
    conn.close()
    for table in GENERATION_TABLES:
        for event in ("insert", "update", "delete"):
            assert (table, f"{table}_generation_{event}") in triggers


def test_each_table_that_makes_the_answer_has_its_triggers(repo: Path) -> None:
    _assert_triggers(repo)


def test_cli_writes_and_an_import_are_seen(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _lean_ready(repo, monkeypatch)
    invoke_cli(["create", "From the CLI", "--json"], cwd=repo).ok()
    after_create = _lean_ready(repo, monkeypatch)
    assert after_create == _full_ready(repo)
    assert "From the CLI" in after_create.decode()
    beads = repo / "in.jsonl"
    beads.write_text('{"id": "tm-imp", "title": "Imported", "status": "open", "priority": 0,'
                     ' "issue_type": "task", "created_at": "2026-01-01T00:00:00Z",'
                     ' "updated_at": "2026-01-01T00:00:00Z"}\n')
    invoke_cli(["import", str(beads)], cwd=repo).ok()
    after_import = _lean_ready(repo, monkeypatch)
    assert "tm-imp" in _ids(after_import)
    assert after_import == _full_ready(repo)
    _assert_triggers(repo)  # (an import draws one generation: its triggers made again)
    beads.write_text(beads.read_text().replace("tm-imp", "tm-imp2") + "{not json\n")
    assert invoke_cli(["import", str(beads)], cwd=repo).exit_code != 0
    _assert_triggers(repo)  # (rolled back with the rest)
    assert _lean_ready(repo, monkeypatch) == after_import


@pytest.mark.parametrize("damage", ["truncated", "other-generation", "no-header", "empty",
                                    "other-version"])
def test_a_damaged_or_foreign_kept_file_is_a_miss(
        damage: str, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = _lean_ready(repo, monkeypatch)
    path = _run_dir(repo) / READY_FILE
    kept = path.read_bytes()
    header, _, body = kept.partition(b"\n")
    fields = header.rstrip(b" ").split(b" ", 6)  # format, version, stamp, generation, length
    wrong = body.replace(b"Loose", b"Wrong")
    if damage == "truncated":
        path.write_bytes(kept[:-10])
    elif damage == "other-generation":
        fields[4] = str(int(fields[4]) ^ 1).encode()
        path.write_bytes(b" ".join(fields) + b"\n" + wrong)
    elif damage == "no-header":
        path.write_bytes(wrong)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        fields[2] = b"0.0.0-other"
        path.write_bytes(b" ".join(fields) + b"\n" + wrong)
    assert _lean_ready(repo, monkeypatch) == good
    assert path.read_bytes() == kept  # made afresh and kept again


def test_an_answer_that_cannot_be_kept_is_still_answered(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> int:
        raise PermissionError("read-only")

    monkeypatch.setattr(lean_kept.os, "open", refuse)
    assert _lean_ready(repo, monkeypatch) == _full_ready(repo)
    monkeypatch.undo()
    assert not (_run_dir(repo) / READY_FILE).exists()
    assert not [n for n in os.listdir(_run_dir(repo)) if n.endswith(".tmp")]


def test_a_dead_writers_temporary_file_is_swept(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = _run_dir(repo) / f"{READY_FILE}.{int(proc.stdout)}.tmp"
    alive = _run_dir(repo) / f"{READY_FILE}.{os.getppid()}.tmp"
    dead.write_bytes(b"half")
    alive.write_bytes(b"half")
    _lean_ready(repo, monkeypatch)
    assert not dead.exists()
    assert alive.exists()


def test_a_ledger_with_a_defer_until_is_the_full_paths_even_with_an_answer_kept(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``defer_until`` is read against the clock: the lean path leaves the answer to the
    store, and setting one moves the generation past the kept answer."""
    _lean_ready(repo, monkeypatch)
    with _open(repo) as ledger:
        ledger.store.conn.execute(  # type: ignore[attr-defined]
            "UPDATE tasks SET extra = '{\"fields\": {\"defer_until\": \"2999-01-01\"}}'"
            " WHERE id = 'tm-l'")
    assert (_run_dir(repo) / READY_FILE).exists()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BytesIO(), encoding="utf-8"))
    assert lean.answer(["ready", "--json"], lean_env(), str(repo)) is None


def test_taskmill_kept_0_makes_the_answer_afresh_and_keeps_nothing(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BytesIO(), encoding="utf-8"))
    out = lean.answer(["ready", "--json"], lean_env(TASKMILL_KEPT="0"), str(repo))
    assert out == _full_ready(repo)
    assert not (_run_dir(repo) / READY_FILE).exists()


# -- list --json and blocked --json ----------------------------------------------------------


def _cli(repo: Path, *args: str, kept: bool = True) -> bytes:
    result = invoke_cli(list(args), cwd=repo, env=None if kept else {"TASKMILL_KEPT": "0"})
    result.ok()
    return result.stdout.encode("utf-8")


def _kept_files(repo: Path, prefix: str) -> list[Path]:
    return sorted(p for p in _run_dir(repo).iterdir()
                  if p.name.startswith(prefix) and p.name.endswith(lean_kept.SUFFIX))


LISTINGS = [("list", "--json"), ("list", "--status", "open", "--json"),
            ("list", "--label", "x", "--json"), ("blocked", "--json"),
            ("blocked", "--beads-compat", "--json"), ("list",), ("list", "--status", "open"),
            ("blocked",), ("blocked", "--beads-compat")]
"""Kept: the JSON, and the tables printed to anything but a terminal."""


def _kind(argv: tuple[str, ...]) -> str:
    return f"{argv[0]}-" if "--json" in argv else f"{argv[0]}-table-"


@pytest.mark.parametrize("argv", LISTINGS, ids=" ".join)
def test_a_listing_is_kept_and_seen_changed(argv: tuple[str, ...], repo: Path) -> None:
    fresh = _cli(repo, *argv, kept=False)
    assert _kept_files(repo, "") == []  # (TASKMILL_KEPT=0: nothing kept)
    assert _cli(repo, *argv) == fresh
    [path] = _kept_files(repo, _kind(argv))
    assert path.read_bytes().endswith(fresh)
    # the kept bytes are what is written (marked by hand: no SQLite wrote them)
    path.write_bytes(path.read_bytes().replace(b'"tm-b"', b'"tm-X"'))
    assert b'"tm-X"' in _cli(repo, *argv) or b'"tm-b"' not in fresh
    for change in (["update", "tm-b", "--title", "Renamed"], ["label", "add", "tm-a", "z"],
                   ["comment", "tm-b", "a note"], ["update", "tm-l", "--status", "blocked"]):
        invoke_cli(change, cwd=repo).ok()
        assert _cli(repo, *argv) == _cli(repo, *argv, kept=False), change


def test_each_kind_of_listing_is_kept_apart_and_the_oldest_go(repo: Path) -> None:
    answers = {}
    for label in range(lean_kept.MAX_FILES + 3):
        answers[label] = _cli(repo, "list", "--label", f"l{label}", "--json")
    assert len(_kept_files(repo, "list")) == lean_kept.MAX_FILES
    assert _kept_files(repo, "list-table") == []
    for label, answer in answers.items():
        assert _cli(repo, "list", "--label", f"l{label}", "--json") == answer


def test_a_closed_pipe_keeps_nothing_half_written(repo: Path) -> None:
    env = lean_env()
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    with _open(repo) as ledger:
        for i in range(400):
            ledger.create(f"filler {i} " + "x" * 400)
    proc = subprocess.run(
        f"'{sys.executable}' -c 'import sys; from taskmill.cli import main; sys.exit(main())'"
        " list --json | head -c 100 >/dev/null", shell=True, cwd=repo, env=env, check=False)
    assert proc.returncode == 0
    assert _kept_files(repo, "list") == []
    assert not [n for n in os.listdir(_run_dir(repo)) if n.endswith(".tmp")]


@pytest.mark.parametrize("kept", ["1", "0"])
def test_ready_json_in_pieces_is_the_whole_answer_and_stops_at_a_closed_pipe(
        repo: Path, kept: str) -> None:
    """``ready --json`` of many tasks, made a batch of tasks at a time and written a piece
    (a task's text) at a time, system calls of many pieces (:func:`lean.write_pieces`): the
    same bytes as the full path's, kept whole; a reader that stops early ends it at once,
    status 1, nothing said, nothing half kept (no temporary file left)."""
    env = lean_env(TASKMILL_KEPT=kept)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    with _open(repo) as ledger:
        for i in range(1500):  # (3,000 pieces: three system calls; ~1 MB, past any pipe)
            ledger.create(f"ready {i}", description="x" * 500)
    run = [sys.executable, "-c", "import sys; from taskmill.cli import main; sys.exit(main())",
           "ready", "--json"]
    cut = subprocess.run(
        " ".join(f"'{a}'" for a in run) + " | head -c 100 >/dev/null; echo ${PIPESTATUS[0]}",
        shell=True, executable="/bin/bash", cwd=repo, env=env, capture_output=True,
        check=False)
    assert cut.stdout.strip() == b"1" and cut.stderr == b""
    assert _kept_files(repo, "ready") == []  # (the answer was not whole: not kept)
    assert not [n for n in os.listdir(_run_dir(repo)) if n.endswith(".tmp")]
    whole = subprocess.run(run, cwd=repo, env=env, capture_output=True, check=False)
    full = subprocess.run(run, cwd=repo, env={**env, "TASKMILL_LEAN": "0"},
                          capture_output=True, check=False)
    assert whole.returncode == full.returncode == 0 and whole.stderr == b""
    assert whole.stdout == full.stdout and whole.stdout.count(b'"id"') == 1503
    if kept == "1":
        assert _kept_files(repo, "ready")
        assert (_run_dir(repo) / (lean_kept.READY + lean_kept.SUFFIX)).read_bytes().endswith(
            whole.stdout)


def test_a_kept_answer_is_sent_from_its_file_to_a_pipe_a_file_and_a_file_appended_to(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The system copies it (``sendfile``) where it can, and it is read and written in
    blocks where it cannot (a file opened to append; not a file at all): the same bytes,
    from the kept file (changed here in place to tell them apart)."""
    env = lean_env()
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    run = [sys.executable, "-c", "import sys; from taskmill.cli import main; sys.exit(main())",
           "ready", "--json"]
    made = subprocess.run(run, cwd=repo, env=env, capture_output=True, check=True).stdout
    kept = _run_dir(repo) / READY_FILE
    assert kept.read_bytes().endswith(made) and made.count(b"Loose") == 1
    kept.write_bytes(kept.read_bytes().replace(b"Loose", b"LOOSE"))  # (same length)
    sent = made.replace(b"Loose", b"LOOSE")
    assert subprocess.run(run, cwd=repo, env=env, capture_output=True,
                          check=True).stdout == sent
    for mode, before in (("wb", b""), ("ab", b"before\n")):
        target = tmp_path / f"out-{mode}"
        target.write_bytes(before)
        with target.open(mode) as out:
            proc = subprocess.run(run, cwd=repo, env=env, stdout=out, stderr=subprocess.PIPE, check=False)
            assert proc.returncode == 0, proc.stderr
        assert target.read_bytes() == before + sent
    assert _lean_ready(repo, monkeypatch) == sent  # (no file: its blocks, joined)


def test_a_table_is_kept_apart_for_each_look(repo: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    wide = _cli(repo, "list")
    monkeypatch.setenv("COLUMNS", "50")
    narrow = _cli(repo, "list", kept=False)
    assert narrow != wide
    assert _cli(repo, "list") == narrow
    assert len(_kept_files(repo, "list-table-")) == 2
    monkeypatch.delenv("COLUMNS")
    assert _cli(repo, "list") == wide


def test_a_table_on_a_terminal_is_printed_afresh(repo: Path) -> None:
    import pty

    env = lean_env()
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", "import sys; from taskmill.cli import main; sys.exit(main())",
             "list"], cwd=repo, env=env, stdout=follower, stderr=subprocess.PIPE, check=False)
        assert proc.returncode == 0, proc.stderr
        assert b"tm-b" in os.read(leader, 1 << 16)
    finally:
        os.close(leader)
        os.close(follower)
    assert _kept_files(repo, "list-table-") == []
