"""``taskmill sync``: the ledger travels with the repository through refs/taskmill/ledger.

Real git throughout: a bare remote and two clones (alice's and bob's), each with its own
ledger database, changing different tasks, the same task, and the same field."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import CliResult, invoke_cli, make_git_repo, run_git
from taskmill.clock import FixedClock
from taskmill.ledger import Ledger
from taskmill.paths import find_repository
from taskmill.sync import LEDGER_REF, SyncReport, open_ledger, sync


def tm(repo: Path, *args: str, actor: str) -> CliResult:
    return invoke_cli(list(args), cwd=repo, env={"TASKMILL_ACTOR": actor})


@pytest.fixture
def clones(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(bare remote, alice's clone with a ledger and two tasks synced, bob's fresh clone)."""
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    alice = make_git_repo(tmp_path / "alice")
    tm(alice, "init", "--prefix", "tm", actor="alice").ok()
    run_git(alice, "add", ".taskmill")
    run_git(alice, "commit", "-q", "-m", "taskmill ledger config")
    run_git(alice, "remote", "add", "origin", str(remote))
    run_git(alice, "push", "-q", "-u", "origin", "main")
    tm(alice, "create", "Write the parser", "--id", "tm-p", "-d", "parse it", actor="alice").ok()
    tm(alice, "create", "Ship it", "--id", "tm-s", "--after", "tm-p", actor="alice").ok()
    tm(alice, "comment", "tm-p", "start with the lexer", actor="alice").ok()
    tm(alice, "sync", actor="alice").ok()
    subprocess.run(["git", "clone", "-q", str(remote), str(tmp_path / "bob")], check=True)
    return remote, alice, tmp_path / "bob"


def shown(repo: Path, tid: str) -> dict[str, Any]:
    data: dict[str, Any] = tm(repo, "show", tid, "--json", actor="x").ok().json()
    return data


def exported(repo: Path) -> list[dict[str, Any]]:
    """The ledger's tasks as Beads records (what the two clones must agree on)."""
    out = tm(repo, "export", actor="x").ok().stdout
    return [json.loads(line) for line in out.splitlines() if line]


def events(repo: Path) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = tm(repo, "log", "--json", actor="x").ok().json()
    return data


def sync_json(repo: Path, actor: str, *args: str) -> dict[str, Any]:
    data: dict[str, Any] = tm(repo, "sync", "--json", *args, actor=actor).ok().json()
    return data


def test_a_fresh_clone_is_told_a_synced_ledger_exists_and_loads_it(
        clones: tuple[Path, Path, Path]) -> None:
    _, alice, bob = clones
    refused = tm(bob, "list", "--json", actor="bob")
    assert refused.exit_code == 2
    error = refused.error()
    assert error["code"] == "not_initialized"
    assert "synced" in error["message"] and "origin" in error["message"]
    assert "taskmill sync" in error["hint"]
    assert not (bob / ".taskmill" / "taskmill.db").exists()  # no empty ledger was made
    text = tm(bob, "ready", actor="bob")
    assert text.exit_code == 2 and "0 tasks" not in text.stdout
    assert "taskmill sync" in text.stderr

    loaded = sync_json(bob, "bob")
    assert loaded["imported"] == ["tm-p", "tm-s"]
    assert loaded["conflicts"] == []
    assert exported(bob) == exported(alice)
    assert [c["text"] for c in shown(bob, "tm-p")["comments"]] == ["start with the lexer"]
    assert [t["id"] for t in tm(bob, "ready", "--json", actor="bob").ok().json()] == ["tm-p"]
    # alice's audit trail came along, each of her events recorded as synced here
    theirs = [e for e in events(bob) if e["kind"] == "synced"]
    assert {e["data"]["event"]["kind"] for e in theirs} >= {"created", "commented"}
    assert {e["data"]["event"]["actor"] for e in theirs} == {"alice"}
    mine = {e["hash"] for e in events(alice)}
    assert {e["data"]["event"]["hash"] for e in theirs} <= mine


def test_a_clone_without_the_config_is_told_by_init_that_a_synced_ledger_exists(
        tmp_path: Path, clones: tuple[Path, Path, Path]) -> None:
    # alice's config committed or not: a clone that had to run ``init`` hears where the
    # shared ledger is and how to load it, instead of starting an empty one unawares
    remote, _, bob = clones
    run_git(bob, "rm", "-q", "-r", ".taskmill")
    told = tm(bob, "init", actor="bob").ok().stdout
    assert "a synced ledger exists on origin" in told and "next: taskmill sync" in told
    assert sync_json(bob, "bob")["imported"] == ["tm-p", "tm-s"]
    fresh = make_git_repo(tmp_path / "fresh")
    assert tm(fresh, "init", "--json", actor="x").ok().json()["synced_ledger"] is None
    assert "next: taskmill create" in tm(fresh, "init", actor="x").ok().stdout
    assert remote.exists()


def test_nothing_changed_makes_no_new_commit(clones: tuple[Path, Path, Path]) -> None:
    remote, alice, _ = clones
    before = run_git(alice, "rev-parse", LEDGER_REF).strip()
    again = sync_json(alice, "alice")
    assert again["commit"] == before and again["exported"] == [] and not again["pushed"]
    assert run_git(remote, "rev-parse", LEDGER_REF).strip() == before


def test_a_task_is_one_deterministic_file_with_its_dependencies_and_comments(
        clones: tuple[Path, Path, Path]) -> None:
    _, alice, _ = clones
    files = run_git(alice, "ls-tree", "-r", "--name-only", LEDGER_REF).split()
    assert {"ledger.json", "tasks/tm-p.json", "tasks/tm-s.json", "events/tm-p.jsonl",
            "events/tm-s.jsonl"} <= set(files)
    text = run_git(alice, "show", f"{LEDGER_REF}:tasks/tm-s.json")
    record = json.loads(text)
    assert record["dependencies"][0]["depends_on_id"] == "tm-p"
    assert text.count("\n") > 5  # one field a line: git's diffs and merges read well
    comment = json.loads(run_git(alice, "show", f"{LEDGER_REF}:tasks/tm-p.json"))["comments"]
    assert comment[0]["text"] == "start with the lexer"


def test_two_clones_change_different_tasks_and_nothing_is_lost(
        clones: tuple[Path, Path, Path]) -> None:
    _, alice, bob = clones
    sync_json(bob, "bob")
    tm(alice, "update", "tm-p", "--title", "Write the parser (LL1)", actor="alice").ok()
    tm(alice, "create", "Docs", "--id", "tm-d", actor="alice").ok()
    tm(bob, "update", "tm-s", "-p", "0", actor="bob").ok()
    tm(bob, "comment", "tm-s", "ship on friday", actor="bob").ok()
    tm(bob, "create", "Tests", "--id", "tm-t", actor="bob").ok()
    assert sync_json(alice, "alice")["imported"] == []
    assert sync_json(bob, "bob")["imported"] == ["tm-d", "tm-p"]
    last = sync_json(alice, "alice")
    assert last["imported"] == ["tm-s", "tm-t"]
    # the two clones converge: bob takes alice's merge as it is, and nothing is left to sync
    settled = sync_json(bob, "bob")
    assert (settled["imported"], settled["exported"], settled["commit"]) == (
        [], [], last["commit"])
    assert sync_json(alice, "alice")["commit"] == last["commit"]
    assert exported(alice) == exported(bob)
    assert shown(alice, "tm-p")["title"] == "Write the parser (LL1)"
    assert shown(alice, "tm-s")["priority"] == 0
    assert [c["text"] for c in shown(alice, "tm-s")["comments"]] == ["ship on friday"]
    assert {t["id"] for t in tm(alice, "list", "--json", actor="x").ok().json()} == {
        "tm-p", "tm-s", "tm-d", "tm-t"}
    # both audit trails hold both clones' events
    for repo, other in ((alice, bob), (bob, alice)):
        here = events(repo)
        originals = {e["hash"] for e in here} | {
            e["data"]["event"]["hash"] for e in here if e["kind"] == "synced"}
        theirs = {e["hash"] for e in events(other) if not e["actor"].startswith("sync:")
                  and e["kind"] not in ("synced", "sync")}
        assert theirs <= originals
    assert tm(alice, "verify", actor="x").exit_code == 0


def test_the_same_task_changed_in_different_fields_keeps_both(
        clones: tuple[Path, Path, Path]) -> None:
    _, alice, bob = clones
    sync_json(bob, "bob")
    tm(alice, "update", "tm-p", "--title", "Parser", actor="alice").ok()
    tm(alice, "label", "add", "tm-p", "core", actor="alice").ok()
    tm(bob, "update", "tm-p", "-p", "1", "--notes", "bob's notes", actor="bob").ok()
    tm(bob, "label", "add", "tm-p", "parser", actor="bob").ok()
    tm(bob, "comment", "tm-p", "bob was here", actor="bob").ok()
    sync_json(alice, "alice")
    report = sync_json(bob, "bob")
    assert report["imported"] == ["tm-p"] and report["conflicts"] == []
    sync_json(alice, "alice")
    for repo in (alice, bob):
        task = shown(repo, "tm-p")
        assert (task["title"], task["priority"], task["notes"]) == ("Parser", 1, "bob's notes")
        assert sorted(task["labels"]) == ["core", "parser"]
        assert [c["text"] for c in task["comments"]] == ["start with the lexer", "bob was here"]
    assert exported(alice) == exported(bob)


@pytest.mark.parametrize("first", ["earlier", "later"])
def test_the_same_field_changed_on_both_sides_takes_the_later_change(
        clones: tuple[Path, Path, Path], first: str) -> None:
    _, alice, bob = clones
    sync_json(bob, "bob")
    tm(bob, "update", "tm-p", "--notes", "bob's, earlier", actor="bob").ok()
    tm(bob, "update", "tm-s", "--title", "bob touched this later", actor="bob").ok()
    tm(alice, "update", "tm-p", "--notes", "alice's, later", actor="alice").ok()
    order = [(bob, "bob"), (alice, "alice"), (bob, "bob")] if first == "earlier" else \
        [(alice, "alice"), (bob, "bob"), (alice, "alice")]
    for repo, actor in order:
        assert sync_json(repo, actor)["conflicts"] == []
    for repo in (alice, bob):
        assert shown(repo, "tm-p")["notes"] == "alice's, later"
        assert shown(repo, "tm-s")["title"] == "bob touched this later"
    assert exported(alice) == exported(bob)


def _fixed_sync(repo: Path, actor: str, clock: FixedClock) -> tuple[SyncReport, Ledger]:
    paths = find_repository(repo)
    ledger = open_ledger(paths, {**_env(), "TASKMILL_ACTOR": actor}, clock=clock)
    return sync(ledger, paths, _env()), ledger


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


@pytest.fixture
def at_once() -> Iterator[FixedClock]:
    yield FixedClock(datetime(2030, 1, 1, tzinfo=UTC))


def test_the_same_field_changed_at_the_same_time_is_a_reported_conflict(
        clones: tuple[Path, Path, Path], at_once: FixedClock) -> None:
    _, alice, bob = clones
    sync_json(bob, "bob")
    for repo, actor, title in ((alice, "alice", "Alice's title"), (bob, "bob", "Bob's title")):
        paths = find_repository(repo)
        ledger = open_ledger(paths, _env(), clock=at_once, actor=actor)
        with ledger:
            ledger.update("tm-p", {"title": title})
    report, ledger = _fixed_sync(alice, "alice", at_once)
    ledger.close_db()
    assert report.conflicts == []
    report, ledger = _fixed_sync(bob, "bob", at_once)
    ledger.close_db()
    [conflict] = report.conflicts
    assert (conflict.task, conflict.field, conflict.kind) == ("tm-p", "title", "same_time")
    assert {conflict.kept, conflict.other} == {"Alice's title", "Bob's title"}
    kept = conflict.kept
    tm(alice, "update", "tm-s", "--notes", "unrelated", actor="alice").ok()
    sync_json(alice, "alice")
    sync_json(bob, "bob")
    for repo in (alice, bob):
        assert shown(repo, "tm-p")["title"] == kept
        recorded = [e for e in events(repo) if e["kind"] == "sync_conflict"] + [
            e["data"]["event"] for e in events(repo) if e["kind"] == "synced"
            and e["data"]["event"]["kind"] == "sync_conflict"]
        assert recorded and recorded[0]["data"]["other"] == conflict.other  # never dropped
    assert exported(alice) == exported(bob)


def test_the_cli_exits_4_and_lists_conflicts(clones: tuple[Path, Path, Path],
                                             at_once: FixedClock) -> None:
    _, alice, bob = clones
    sync_json(bob, "bob")
    for repo, actor, notes in ((alice, "alice", "a"), (bob, "bob", "b")):
        ledger = open_ledger(find_repository(repo), _env(), clock=at_once, actor=actor)
        with ledger:
            ledger.update("tm-s", {"notes": notes})
    sync_json(alice, "alice")
    result = tm(bob, "sync", actor="bob")
    assert result.exit_code == 4
    assert "conflict: tm-s: notes was changed on both sides" in result.stderr


def test_a_task_tombstoned_on_one_side_and_changed_on_the_other_is_reported(
        clones: tuple[Path, Path, Path]) -> None:
    _, alice, bob = clones
    sync_json(bob, "bob")
    record = next(r for r in exported(alice) if r["id"] == "tm-s")
    record["status"] = "tombstone"
    (alice / "tomb.jsonl").write_text(json.dumps(record) + "\n", encoding="utf-8")
    tm(alice, "import", str(alice / "tomb.jsonl"), actor="alice").ok()
    tm(bob, "update", "tm-s", "--description", "bob still needs this", actor="bob").ok()
    sync_json(alice, "alice")
    result = tm(bob, "sync", "--json", actor="bob")
    assert result.exit_code == 4
    [conflict] = result.json()["conflicts"]
    assert conflict["kind"] == "tombstoned" and conflict["task"] == "tm-s"
    kept = next(r for r in exported(bob) if r["id"] == "tm-s")
    assert kept["description"] == "bob still needs this"  # the change is not lost


def test_sync_without_the_remote_is_a_clear_error(git_repo: Path) -> None:
    tm(git_repo, "init", "--prefix", "tm", actor="a").ok()
    result = tm(git_repo, "sync", "--json", actor="a")
    assert result.exit_code == 2
    assert "no remote 'origin'" in result.error()["message"]
    assert "git remote add" in result.error()["hint"]
    named = tm(git_repo, "sync", "--remote", "upstream", actor="a")
    assert named.exit_code == 2 and "no remote 'upstream'" in named.stderr


def test_no_push_leaves_the_remote_alone(clones: tuple[Path, Path, Path]) -> None:
    remote, alice, _ = clones
    before = run_git(remote, "rev-parse", LEDGER_REF).strip()
    tm(alice, "create", "Local only", "--id", "tm-l", actor="alice").ok()
    report = sync_json(alice, "alice", "--no-push")
    assert report["exported"] == ["tm-l"] and not report["pushed"]
    assert run_git(remote, "rev-parse", LEDGER_REF).strip() == before
    assert run_git(alice, "rev-parse", LEDGER_REF).strip() == report["commit"] != before


def test_a_damaged_remote_ledger_imports_nothing(clones: tuple[Path, Path, Path],
                                                 tmp_path: Path) -> None:
    remote, _, bob = clones
    sync_json(bob, "bob")
    # someone pushes a synced ledger with one good change and one damaged file
    work = tmp_path / "vandal"
    subprocess.run(["git", "clone", "-q", str(remote), str(work)], check=True)
    run_git(work, "fetch", "-q", "origin", f"{LEDGER_REF}:{LEDGER_REF}")
    run_git(work, "checkout", "-q", LEDGER_REF)
    good = json.loads((work / "tasks" / "tm-p.json").read_text(encoding="utf-8"))
    good["title"] = "changed by the vandal"
    (work / "tasks" / "tm-p.json").write_text(json.dumps(good, indent=2) + "\n",
                                              encoding="utf-8")
    (work / "tasks" / "tm-s.json").write_text("{not json", encoding="utf-8")
    run_git(work, "commit", "-q", "-am", "damage")
    run_git(work, "push", "-q", "origin", f"HEAD:{LEDGER_REF}")
    before_ref = run_git(bob, "rev-parse", LEDGER_REF).strip()
    before = exported(bob)
    tm(bob, "update", "tm-s", "--notes", "bob's", actor="bob").ok()
    result = tm(bob, "sync", "--json", actor="bob")
    assert result.exit_code == 2
    assert "tasks/tm-s.json is damaged" in result.error()["message"]
    assert "nothing was imported" in result.error()["hint"]
    assert shown(bob, "tm-p")["title"] == before[0]["title"]
    assert run_git(bob, "rev-parse", LEDGER_REF).strip() == before_ref


def test_a_second_sync_at_once_is_refused(clones: tuple[Path, Path, Path]) -> None:
    import fcntl
    import os

    _, alice, _ = clones
    lock = alice / ".taskmill" / "run" / "sync.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        result = tm(alice, "sync", "--json", actor="alice")
    finally:
        os.close(fd)
    assert result.exit_code == 4
    assert "another taskmill sync is running" in result.error()["message"]


def test_a_fresh_clone_that_fetched_the_ref_by_hand_loads_it_and_deletes_nothing(
        clones: tuple[Path, Path, Path]) -> None:
    # the refusal says a synced ledger exists "in this clone": syncing then must load it,
    # not diff an empty database against it and push every task as deleted
    remote, alice, bob = clones
    run_git(bob, "fetch", "-q", "origin", f"{LEDGER_REF}:{LEDGER_REF}")
    refused = tm(bob, "list", "--json", actor="bob")
    assert refused.exit_code == 2 and "in this clone" in refused.error()["message"]
    loaded = sync_json(bob, "bob")
    assert loaded["imported"] == ["tm-p", "tm-s"] and loaded["exported"] == []
    assert exported(bob) == exported(alice)
    assert sync_json(alice, "alice")["imported"] == []
    assert {t["id"] for t in tm(alice, "list", "--json", actor="x").ok().json()} == {
        "tm-p", "tm-s"}
    assert not run_git(remote, "diff", "--name-only", loaded["commit"], LEDGER_REF).strip()


def test_a_lost_database_is_merged_with_the_synced_ref_not_pushed_as_deletions(
        clones: tuple[Path, Path, Path]) -> None:
    # `git clean -xfd` (or a new machine's empty database) after a sync whose last changes
    # were never pushed: the next sync brings all of it back and deletes nothing anywhere
    remote, alice, _ = clones
    tm(alice, "create", "Unpushed", "--id", "tm-u", actor="alice").ok()
    sync_json(alice, "alice", "--no-push")
    (alice / ".taskmill" / "taskmill.db").unlink()
    for extra in ("taskmill.db-wal", "taskmill.db-shm"):
        (alice / ".taskmill" / extra).unlink(missing_ok=True)
    again = sync_json(alice, "alice")
    assert again["imported"] == ["tm-p", "tm-s", "tm-u"] and again["conflicts"] == []
    assert {t["id"] for t in tm(alice, "list", "--json", actor="x").ok().json()} == {
        "tm-p", "tm-s", "tm-u"}
    assert [c["text"] for c in shown(alice, "tm-p")["comments"]] == ["start with the lexer"]
    files = set(run_git(remote, "ls-tree", "-r", "--name-only", LEDGER_REF).split())
    assert {"tasks/tm-p.json", "tasks/tm-s.json", "tasks/tm-u.json"} <= files
    # the audit trail came back too (as synced events), and the next sync has nothing to do
    assert {e["data"]["event"]["kind"] for e in events(alice) if e["kind"] == "synced"} >= {
        "created", "commented"}
    settled = sync_json(alice, "alice")
    assert settled["imported"] == [] and settled["exported"] == [] and not settled["pushed"]
    assert tm(alice, "verify", actor="x").exit_code == 0


def test_a_merge_streams_its_tasks_a_chunk_at_a_time(clones: tuple[Path, Path, Path],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # a fresh clone's load of a large ledger parses a chunk of tasks at a time (chunks of 2
    # here, over 7 tasks and the ledger's own events): the same ledger, all or nothing
    import taskmill.sync.engine as engine

    _, alice, bob = clones
    for n in range(5):
        tm(alice, "create", f"Task {n}", "--id", f"tm-{n}", actor="alice").ok()
    tm(alice, "comment", "tm-3", "a comment", actor="alice").ok()
    sync_json(alice, "alice")
    monkeypatch.setattr(engine, "MERGE_CHUNK", 2)
    loaded = sync_json(bob, "bob")
    assert loaded["imported"] == ["tm-0", "tm-1", "tm-2", "tm-3", "tm-4", "tm-p", "tm-s"]
    assert exported(bob) == exported(alice)
    assert sync_json(bob, "bob")["imported"] == []


def test_a_sync_writes_each_new_file_into_git_as_it_is_made(
        clones: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    # a first sync of a big ledger held every file's bytes until its commit was written:
    # each new file now goes to one git fast-import as it is made, and none is kept
    import taskmill.sync.engine as engine
    from taskmill.sync.snapshot import Taken, take

    _, alice, _ = clones
    for n in range(4):
        tm(alice, "create", f"Task {n}", "--id", f"tm-{n}", actor="alice").ok()
    taken: list[Taken] = []
    real = engine.take

    def spied(*args: Any, **kwargs: Any) -> Taken:
        taken.append(real(*args, **kwargs))
        return taken[-1]

    monkeypatch.setattr(engine, "take", spied)
    report = sync_json(alice, "alice")
    assert report["exported"] == ["tm-0", "tm-1", "tm-2", "tm-3"]
    assert taken and all(not t.new for t in taken)
    # the commit is the one the files held in memory make, and git has every blob
    ledger = open_ledger(find_repository(alice), {})
    with ledger:
        held = take(ledger)
    git = engine.Git(alice, {})
    assert git.read_tree(report["commit"]) == held.shas
    assert git.read_blobs(held.shas.values()) == {
        sha: content for sha, content in held.new.items()}


def test_a_failed_blob_write_is_a_clear_error(git_repo: Path, tmp_path: Path) -> None:
    from taskmill.errors import GitError
    from taskmill.sync.gitstore import Git

    git = Git(git_repo, {"PATH": "/nonexistent"})
    with pytest.raises(GitError, match="not installed"), git.blob_sink() as sink:
        sink.write(b"x")
    elsewhere = tmp_path / "not-a-repo"
    elsewhere.mkdir()
    git = Git(elsewhere, {"PATH": "/usr/bin:/bin", "GIT_CEILING_DIRECTORIES": str(tmp_path)})
    with pytest.raises(GitError, match="fast-import"), git.blob_sink() as sink:
        for _ in range(3):
            sink.write(b"x" * 1_000_000)
