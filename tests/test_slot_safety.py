"""Never the user's checkout: what an agent (or a check) does to its worktree slot -- ``rm
.git``, ``git init``, a ``.git`` pointing elsewhere, deleting or replacing the task's branch,
a ``setsid`` daemon left behind -- never reaches the user's files, commits or HEAD, and the
task still lands (or is redone) correctly.

The user's main checkout holds an uncommitted edit to a tracked file and an untracked (not
ignored) ``.env`` with a secret throughout: with the old pool inside the checkout, git's walk
up from a slot without ``.git`` found the user's checkout, and taskmill's own ``git add -A &&
git commit`` published both to ``main``."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mill_helpers import MillRepo, agent_script, git, process_alive, wait_for
from taskmill.mill.git import Git, git_env
from taskmill.mill.land import MergeQueue
from taskmill.mill.procs import kill_processes_in, processes_in
from taskmill.mill.worktrees import QUARANTINE_REFS, Workspace, WorktreePool, slot_problem
from taskmill.paths import find_repository, git_common_dir

SECRET = "API_KEY=sk-live-do-not-publish-4711"
EDIT = "# test repository\nthe user's uncommitted edit\n"
BREAKAGES = ["removed", "git_init", "elsewhere"]


# -- the user's checkout -----------------------------------------------------------------------


def dirty_user_checkout(repo: MillRepo) -> dict[str, Any]:
    """An uncommitted edit to a tracked file and an untracked private file; what they are."""
    (repo.root / "README.md").write_text(EDIT, encoding="utf-8")
    (repo.root / ".env").write_text(SECRET + "\n", encoding="utf-8")
    return user_state(repo)


def user_state(repo: MillRepo) -> dict[str, Any]:
    return {
        "README.md": (repo.root / "README.md").read_bytes(),
        ".env": (repo.root / ".env").read_bytes(),
        "status": repo.git("status", "--porcelain", "--untracked-files=all"),
        "HEAD": (repo.root / ".git" / "HEAD").read_text(),
    }


def assert_never_committed(repo: MillRepo) -> None:
    """Neither the secret nor the user's edit is in any commit of the repository."""
    history = repo.git("log", "--all", "--reflog", "-p", "--format=%H %s")
    assert "sk-live-do-not-publish" not in history
    assert "the user's uncommitted edit" not in history
    for ref in repo.git("for-each-ref", "--format=%(refname)").split():
        assert ".env" not in repo.git("ls-tree", "-r", "--name-only", ref).split(), ref


def break_dotgit(slot: Path, how: str, tmp: Path) -> None:
    dotgit = slot / ".git"
    if how in ("removed", "git_init"):
        dotgit.unlink()
    if how == "git_init":
        subprocess.run(["git", "init", "-q"], cwd=slot, check=True, capture_output=True)
    if how == "elsewhere":
        other = tmp / "elsewhere"
        git(tmp, "init", "-q", str(other))
        dotgit.write_text(f"gitdir: {other / '.git'}\n")


def assert_proper(slot: Path) -> None:
    """git, run in the slot as checks and agents run it, sees the slot."""
    top = git(slot, "rev-parse", "--show-toplevel").strip()
    assert Path(top).resolve() == slot.resolve()
    assert (slot / ".git").is_file()


# -- end to end ----------------------------------------------------------------------------------

BREAK_IN_AGENT = {
    "removed": "(WT / '.git').unlink()",
    "git_init": "(WT / '.git').unlink(); "
                "subprocess.run(['git', 'init', '-q'], cwd=WT, check=True)",
}


@pytest.mark.parametrize("how", sorted(BREAK_IN_AGENT))
def test_agent_that_breaks_dotgit_never_publishes_the_users_work(tmp_path: Path, how: str) -> None:
    repo = MillRepo(tmp_path)
    before = dirty_user_checkout(repo)
    cmd = agent_script(tmp_path / "agent.py", f"""
        (WT / "feature.txt").write_text("done by " + TASK + "\\n")
        if CALL == 1:
            {BREAK_IN_AGENT[how]}
            # then the agent commits its work, as agents do
            subprocess.run(["git", "add", "-A"], cwd=WT, capture_output=True)
            subprocess.run(["git", "commit", "-qm", "agent"], cwd=WT, capture_output=True)
    """, spy=repo.spy)
    # the checks run in the slot: they see it as a worktree again
    repo.create("tm-1", checks=["test -f feature.txt",
                                'test "$(git rev-parse --show-toplevel)" = "$(pwd -P)"'])
    result = repo.run("--agent-cmd", cmd)
    assert_never_committed(repo)
    assert user_state(repo) == before
    assert result.returncode == 0, result.describe()
    repo.assert_all_landed_once(["tm-1"])
    assert repo.git("show", "main:feature.txt") == "done by tm-1\n"
    assert any(".git" in e["message"] for e in result.events_of("warning", "tm-1"))
    for slot in repo.worktrees()[1:]:
        assert_proper(Path(slot))


def _main_roots(repo: MillRepo) -> list[str]:
    return repo.git("rev-list", "--max-parents=0", "main").split()


BRANCH_MISCHIEF = {
    # from the user's checkout (git refuses `branch -D` of a branch checked out elsewhere)
    "deleted_from_main_checkout":
        "common = subprocess.run(['git', 'rev-parse', '--path-format=absolute',"
        " '--git-common-dir'], cwd=WT, capture_output=True, text=True).stdout.strip(); "
        "subprocess.run(['git', '-C', common + '/..', 'update-ref', '-d',"
        " 'refs/heads/taskmill/' + TASK], check=True)",
    "detached_and_deleted":
        "subprocess.run(['git', 'checkout', '-q', '--detach'], cwd=WT, check=True); "
        "subprocess.run(['git', 'branch', '-q', '-D', 'taskmill/' + TASK], cwd=WT, check=True)",
    "orphan_branch":
        "subprocess.run(['git', 'checkout', '-q', '--orphan', 'scratch'], cwd=WT, check=True)",
    "orphan_commit":
        "subprocess.run(['git', 'checkout', '-q', '--orphan', 'scratch'], cwd=WT, check=True); "
        "subprocess.run(['git', 'add', '-A'], cwd=WT, check=True); "
        "subprocess.run(['git', 'commit', '-qm', 'a root commit'], cwd=WT, check=True); "
        "subprocess.run(['git', 'update-ref', 'refs/heads/taskmill/' + TASK, 'HEAD'],"
        " cwd=WT, check=True)",
}


@pytest.mark.parametrize("how", sorted(BRANCH_MISCHIEF))
def test_agent_that_deletes_its_branch_mid_turn(tmp_path: Path, how: str) -> None:
    repo = MillRepo(tmp_path)
    before = dirty_user_checkout(repo)
    initial = _main_roots(repo)
    cmd = agent_script(tmp_path / "agent.py", f"""
        (WT / (TASK + ".txt")).write_text("done by " + TASK + "\\n")
        if TASK == "tm-1" and CALL == 1:
            {BRANCH_MISCHIEF[how]}
    """, spy=repo.spy)
    repo.create("tm-1", checks=["test -f tm-1.txt"])
    repo.create("tm-2", after=["tm-1"], checks=["test -f tm-1.txt", "test -f tm-2.txt"])
    result = repo.run("--agent-cmd", cmd)
    assert result.returncode == 0, result.describe()
    repo.assert_all_landed_once(["tm-1", "tm-2"])
    assert repo.git("show", "main:tm-1.txt") == "done by tm-1\n"
    assert _main_roots(repo) == initial  # no orphan root commit reached main
    assert user_state(repo)["HEAD"] == before["HEAD"]
    assert_never_committed(repo)
    warnings = [e["message"] for e in result.events_of("warning", "tm-1")]
    assert any("taskmill/tm-1" in m for m in warnings), warnings
    outcomes = [a["outcome"] for a in repo.attempts("tm-1")]
    if how == "orphan_commit":
        # no history in common with main: set aside, and the task is done again
        assert outcomes == ["failed", "passed"]
        assert repo.git("for-each-ref", "--format=%(refname)", QUARANTINE_REFS).strip()
        assert "starts again" in (repo.spy / "prompt-tm-1-2.file").read_text()
    else:
        # the branch recreated from the slot's HEAD: the turn's work lands as it is
        assert outcomes == ["passed"]


def test_resumed_task_whose_branch_is_an_orphan_starts_again(tmp_path: Path) -> None:
    """An earlier run left ``taskmill/tm-1`` as a root commit: it could never merge
    ("refusing to merge unrelated histories", forever). It is set aside and redone."""
    repo = MillRepo(tmp_path)
    tree = repo.git("write-tree").strip()
    orphan = git(repo.root, "commit-tree", tree, "-m", "orphan").strip()
    repo.git("update-ref", "refs/heads/taskmill/tm-1", orphan)
    repo.create("tm-1", checks=["test -f tm-1.txt"])
    repo.ledger.claim("tm-1", "mill:deadbeef", actor="mill:deadbeef")  # a run that died
    initial = _main_roots(repo)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / (TASK + ".txt")).write_text("x")
    """, spy=repo.spy)
    result = repo.run("--agent-cmd", cmd)
    assert result.returncode == 0, result.describe()
    repo.assert_all_landed_once(["tm-1"])
    assert _main_roots(repo) == initial
    kept = repo.git("for-each-ref", "--format=%(objectname)", QUARANTINE_REFS).split()
    assert kept == [orphan]
    assert any("shares no history" in e["message"] for e in result.events_of("warning"))


@pytest.mark.parametrize("contain", ["auto", "group"])
def test_setsid_daemon_left_by_an_agent_never_writes_into_another_task(tmp_path: Path,
                                                                      contain: str) -> None:
    """tm-a's agent leaves a daemon (its own session) that writes into its cwd once told to;
    tm-b then works in the same slot and tells it to. The daemon must be dead by then.

    ``auto``: the turn's PID namespace takes the daemon with it. ``group`` (no namespace):
    the daemon also drops the turn's marker from its environment (``env -i``), so only the
    scan of the slot before it is reused can find it, and it says so."""
    repo = MillRepo(tmp_path, run={"contain": contain})
    go = tmp_path / "go"
    cmd = agent_script(tmp_path / "agent.py", f"""
        (WT / (TASK + ".txt")).write_text(TASK)
        if TASK == "tm-a":
            daemon = subprocess.Popen(
                ["env", "-i", "sh", "-c",
                 "while [ ! -e {go} ]; do sleep 0.02; done; echo late > late.txt"],
                cwd=WT, start_new_session=True, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            save("daemon.pid", str(outer_pid(daemon.pid)))  # as the host sees it
        else:
            pathlib.Path({str(go)!r}).touch()
            pid = int((SPY / "daemon.pid").read_text())
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not (WT / "late.txt").exists():
                # the daemon's host pid (this turn runs in a PID namespace of its own, so
                # it cannot signal it, but the host's /proc is visible)
                try:
                    state = pathlib.Path(f"/proc/{{pid}}/stat").read_text()
                except OSError:
                    break
                if state.split(")")[1].split()[0] == "Z":
                    break
                time.sleep(0.02)
    """, spy=repo.spy)
    repo.create("tm-a")
    repo.create("tm-b", after=["tm-a"])
    result = repo.run("--agent-cmd", cmd, "-j", "1")
    assert result.returncode == 0, result.describe()
    repo.assert_all_landed_once(["tm-a", "tm-b"])
    for ref in ("main", *[c for cs in repo.landings().values() for c in cs]):
        assert "late.txt" not in repo.git("ls-tree", "-r", "--name-only", ref).split()
    pid = int((repo.spy / "daemon.pid").read_text())
    assert not process_alive(pid)
    if contain == "group":
        warnings = [e["message"] for e in result.events_of("warning")]
        assert any(f"killed process {pid}" in m for m in warnings), warnings


def test_an_older_versions_pool_in_the_checkout_is_taken_apart(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    legacy = repo.root / ".taskmill" / "worktrees"
    legacy.mkdir()
    for name in ("w0", "w1"):
        repo.git("worktree", "add", "-q", "--detach", str(legacy / name), "main")
        (legacy / f"{name}.lock").write_text("")
    (legacy / "w0.clean").write_text("")
    (legacy / "admin.lock").write_text("")
    (legacy / "w1" / "wip.txt").write_text("left by a killed run")
    (legacy / "w1" / ".git").unlink()  # and broken
    before = dirty_user_checkout(repo)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / (TASK + ".txt")).write_text(TASK)
    """, spy=repo.spy)
    repo.create("tm-1")
    result = repo.run("--agent-cmd", cmd)
    assert result.returncode == 0, result.describe()
    repo.assert_all_landed_once(["tm-1"])
    assert not legacy.exists()
    worktrees = repo.worktrees()
    assert all(Path(p).resolve().is_relative_to(repo.pool.resolve()) for p in worktrees[1:])
    assert "prunable" not in repo.git("worktree", "list", "--porcelain")
    kept = list((repo.pool / "quarantine").glob("legacy-w1-*"))
    assert len(kept) == 1 and (kept[0] / "wip.txt").read_text() == "left by a killed run"
    assert user_state(repo) == before


# -- each git step of the pool and the merge queue, with the slot's .git broken ----------------


@pytest.fixture
def repo(tmp_path: Path) -> MillRepo:
    return MillRepo(tmp_path)


class Pool(WorktreePool):
    def __init__(self, repo: MillRepo, **kw: Any) -> None:
        self.warnings: list[str] = []
        super().__init__(Git(repo.root, git_env(os.environ)), repo.pool, repo_root=repo.root,
                         include_file=repo.root / ".taskmill" / "include",
                         warn=lambda message, _task: self.warnings.append(message), **kw)


def _quarantined(repo: MillRepo) -> list[str]:
    folder = repo.pool / "quarantine"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.mark.parametrize("how", BREAKAGES)
def test_commit_in_a_broken_slot_goes_to_the_task_branch(repo: MillRepo, tmp_path: Path,
                                                        how: str) -> None:
    pool = Pool(repo)
    tip = repo.tip()
    ws = pool.acquire("tm-1", tip)
    before = dirty_user_checkout(repo)
    (ws.path / "feature.txt").write_text("feature\n")
    break_dotgit(ws.path, how, tmp_path)
    assert ws.git.commit_all("the task's work\n")
    branch = repo.tip("taskmill/tm-1")
    assert repo.git("rev-parse", f"{branch}^").strip() == tip
    files = repo.git("ls-tree", "-r", "--name-only", branch).split()
    assert "feature.txt" in files and ".env" not in files and ".git" not in files
    assert repo.tip() == tip
    assert_never_committed(repo)
    assert user_state(repo) == before


@pytest.mark.parametrize("how", BREAKAGES)
def test_settle_repairs_a_held_slot_and_keeps_its_work(repo: MillRepo, tmp_path: Path,
                                                       how: str) -> None:
    pool = Pool(repo)
    ws = pool.acquire("tm-1", repo.tip())
    before = dirty_user_checkout(repo)
    (ws.path / "feature.txt").write_text("feature\n")
    break_dotgit(ws.path, how, tmp_path)
    assert slot_problem(ws.path, ws.admin) is not None
    pool.settle(ws)
    assert slot_problem(ws.path, ws.admin) is None
    assert_proper(ws.path)
    assert (ws.path / "feature.txt").read_text() == "feature\n"
    assert git(ws.path, "symbolic-ref", "HEAD").strip() == "refs/heads/taskmill/tm-1"
    if how != "removed":  # what was in its place is set aside, not deleted
        assert [n for n in _quarantined(repo) if n.startswith("w0.git-")]
    assert pool.warnings
    assert user_state(repo) == before


@pytest.mark.parametrize("how", BREAKAGES)
def test_release_of_a_broken_slot_quarantines_it(repo: MillRepo, tmp_path: Path,
                                                 how: str) -> None:
    pool = Pool(repo)
    ws = pool.acquire("tm-1", repo.tip())
    before = dirty_user_checkout(repo)
    (ws.path / "junk.txt").write_text("agent litter")
    (ws.path / "README.md").write_text("changed in the slot")
    break_dotgit(ws.path, how, tmp_path)
    pool.release(ws, delete_branch=True)
    assert user_state(repo) == before  # no reset --hard, clean or HEAD move reached it
    assert repo.mill_branches() == []
    kept = [n for n in _quarantined(repo) if n.startswith("w0-")]
    assert len(kept) == 1
    assert (repo.pool / "quarantine" / kept[0] / "junk.txt").read_text() == "agent litter"
    assert any("moved aside" in w for w in pool.warnings)
    ws2 = pool.acquire("tm-2", repo.tip())  # rebuilt
    assert ws2.path == ws.path
    assert_proper(ws2.path)
    assert not (ws2.path / "junk.txt").exists()
    pool.release(ws2, delete_branch=True)
    assert user_state(repo) == before


@pytest.mark.parametrize("how", BREAKAGES)
def test_acquire_of_a_broken_free_slot_rebuilds_it(repo: MillRepo, tmp_path: Path,
                                                   how: str) -> None:
    pool = Pool(repo)
    ws = pool.acquire("tm-1", repo.tip())
    pool.release(ws, delete_branch=True)
    before = dirty_user_checkout(repo)
    break_dotgit(ws.path, how, tmp_path)
    ws2 = pool.acquire("tm-2", repo.tip())
    assert_proper(ws2.path)
    assert git(ws2.path, "symbolic-ref", "HEAD").strip() == "refs/heads/taskmill/tm-2"
    assert [n for n in _quarantined(repo) if n.startswith("w0-")]
    pool.release(ws2, delete_branch=True)
    assert user_state(repo) == before
    assert "prunable" not in repo.git("worktree", "list", "--porcelain")


@pytest.mark.parametrize("how", BREAKAGES)
def test_killed_runs_slot_with_a_broken_dotgit_is_not_scrubbed_in_the_checkout(
        repo: MillRepo, tmp_path: Path, how: str) -> None:
    """A run died holding the slot (not released): the take-over's reset and clean."""
    pool = Pool(repo)
    ws = pool.acquire("tm-1", repo.tip())
    pool._unlock_slot(ws.slot, ws._lock)  # the kernel drops a dead process's flock
    before = dirty_user_checkout(repo)
    break_dotgit(ws.path, how, tmp_path)
    ws2 = pool.acquire("tm-2", repo.tip())
    assert_proper(ws2.path)
    pool.release(ws2, delete_branch=True)
    assert user_state(repo) == before


@pytest.mark.parametrize("how", BREAKAGES)
def test_freeing_a_branch_in_a_broken_dead_slot_never_moves_the_users_head(
        repo: MillRepo, tmp_path: Path, how: str) -> None:
    pool = Pool(repo)
    other = pool.acquire("tm-x", repo.tip())
    ws = pool.acquire("tm-1", repo.tip())  # in w1; never released: the run died
    pool._unlock_slot(ws.slot, ws._lock)
    pool.release(other, delete_branch=True)
    before = dirty_user_checkout(repo)
    break_dotgit(ws.path, how, tmp_path)
    pool.drop_branch("tm-1")
    assert user_state(repo) == before
    assert repo.git("symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert repo.mill_branches() == []


def _queue(repo: MillRepo, tmp_path: Path, checks: list[str]) -> MergeQueue:
    return MergeQueue(Git(repo.root, git_env(os.environ)), target="main",
                      lock_path=repo.root / ".taskmill" / "run" / "merge.lock", checks=checks,
                      check_env=git_env(os.environ), check_timeout=60,
                      user_checkout=repo.root, log_dir=tmp_path / "logs")


def _worked(repo: MillRepo, pool: Pool, *, conflict: bool) -> Workspace:
    repo.create("tm-1")
    ws = pool.acquire("tm-1", repo.tip())
    (ws.path / "feature.txt").write_text("the task's side\n")
    assert ws.git.commit_all("work\n")
    if conflict:  # main moves on with the same file
        (repo.root / "feature.txt").write_text("main's side\n")
        repo.git("add", "feature.txt")
        repo.git("commit", "-q", "-m", "main's side")
    return ws


@pytest.mark.parametrize("how", BREAKAGES)
@pytest.mark.parametrize("outcome", ["landed", "conflict", "checks_failed"])
def test_merge_queue_steps_in_a_broken_slot(repo: MillRepo, tmp_path: Path, how: str,
                                            outcome: str) -> None:
    pool = Pool(repo)
    ws = _worked(repo, pool, conflict=outcome == "conflict")
    tip = repo.tip()
    before = dirty_user_checkout(repo)
    break_dotgit(ws.path, how, tmp_path)
    queue = _queue(repo, tmp_path, ["false"] if outcome == "checks_failed" else ["true"])
    result = queue.land(repo.ledger.show("tm-1"), ws)
    assert result.outcome == outcome, result.detail
    after = user_state(repo)
    assert after["README.md"] == before["README.md"] and after[".env"] == before[".env"]
    assert after["HEAD"] == before["HEAD"]
    if outcome == "landed":
        assert repo.git("show", "main:feature.txt") == "the task's side\n"
        assert repo.git("rev-parse", "main^").strip() == tip
    else:
        assert repo.tip() == tip
        assert repo.git("symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert_never_committed(repo)
    pool.settle(ws)
    pool.release(ws, delete_branch=True)
    assert user_state(repo)["README.md"] == before["README.md"]


def test_settle_rebuilds_a_slot_that_was_removed(repo: MillRepo) -> None:
    pool = Pool(repo)
    ws = pool.acquire("tm-1", repo.tip())
    (ws.path / "a.txt").write_text("a")
    assert ws.git.commit_all("a\n")
    head = repo.tip("taskmill/tm-1")
    before = dirty_user_checkout(repo)
    shutil.rmtree(ws.path)
    pool.settle(ws)
    assert_proper(ws.path)
    assert git(ws.path, "rev-parse", "HEAD").strip() == head
    assert git(ws.path, "symbolic-ref", "HEAD").strip() == "refs/heads/taskmill/tm-1"
    assert any("disappeared" in w for w in pool.warnings)
    pool.release(ws, delete_branch=True)
    assert user_state(repo) == before


def test_recover_branch_after_it_was_deleted(repo: MillRepo) -> None:
    pool = Pool(repo)
    tip = repo.tip()
    ws = pool.acquire("tm-1", tip)
    assert pool.recover_branch(ws, tip) is None  # in order: nothing done
    (ws.path / "a.txt").write_text("a")
    assert ws.git.commit_all("a\n")
    head = repo.tip("taskmill/tm-1")
    repo.git("update-ref", "-d", "refs/heads/taskmill/tm-1")
    what = pool.recover_branch(ws, head)
    assert what is not None and "deleted" in what
    assert repo.tip("taskmill/tm-1") == head
    (ws.path / "b.txt").write_text("b")
    assert ws.git.commit_all("b\n")
    assert repo.git("rev-parse", "taskmill/tm-1^").strip() == head


# -- the /proc scan ------------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="needs Linux /proc")
def test_processes_holding_a_directory_are_found_and_killed(tmp_path: Path) -> None:
    slot = tmp_path / "slot"
    slot.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    common: dict[str, Any] = {"start_new_session": True, "stdin": subprocess.DEVNULL,
                              "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    by_cwd = subprocess.Popen(["sleep", "60"], cwd=slot, **common)
    by_fd = subprocess.Popen(["sh", "-c", f"exec 3>>{slot / 'f'}; exec sleep 60"],
                             cwd=elsewhere, **common)
    by_env = subprocess.Popen(["sleep", "60"], cwd=elsewhere,
                              env={**os.environ, "TASKMILL_WORKTREE": str(slot)}, **common)
    bystander = subprocess.Popen(["sleep", "60"], cwd=elsewhere, **common)
    try:
        assert wait_for(lambda: (slot / "f").exists())
        found = {h.pid: h for h in processes_in(slot)}
        assert found[by_cwd.pid].how == "cwd"
        assert found[by_fd.pid].how.startswith("fd ")
        assert found[by_env.pid].how == "environment"
        assert "sleep 60" in found[by_cwd.pid].command
        assert bystander.pid not in found and os.getpid() not in found
        killed = {h.pid for h in kill_processes_in(slot)}
        assert killed == {by_cwd.pid, by_fd.pid, by_env.pid}
        for proc in (by_cwd, by_fd, by_env):
            assert proc.wait(timeout=5) == -9
        assert bystander.poll() is None
        assert processes_in(slot) == []
    finally:
        for proc in (by_cwd, by_fd, by_env, bystander):
            proc.kill()
            proc.wait()


def test_processes_in_without_proc_finds_nothing(tmp_path: Path) -> None:
    assert processes_in(tmp_path, proc=tmp_path / "no-proc") == []
    assert kill_processes_in(tmp_path, proc=tmp_path / "no-proc") == []


# -- where the pool lives ------------------------------------------------------------------------


def test_pool_lives_in_gits_common_dir_also_from_linked_worktrees_and_submodules(
        tmp_path: Path) -> None:
    main = tmp_path / "main"
    git(tmp_path, "init", "-q", "-b", "main", str(main))
    git(main, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty",
        "-m", "init")
    (main / ".taskmill").mkdir()
    assert find_repository(main).worktrees == (main / ".git" / "taskmill" / "worktrees").resolve()
    linked = tmp_path / "linked"
    git(main, "worktree", "add", "-q", "--detach", str(linked))
    assert git_common_dir(linked) == (main / ".git").resolve()
    # a submodule: .git is a link to the superproject's modules/ directory, no commondir
    sub = tmp_path / "sub"
    sub.mkdir()
    modules = main / ".git" / "modules" / "sub"
    modules.parent.mkdir()
    subprocess.run(["git", "init", "-q", "--separate-git-dir", str(modules), str(sub)],
                   check=True, capture_output=True)
    assert git_common_dir(sub) == modules.resolve()
