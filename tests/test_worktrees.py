"""The worktree pool: a worktree per task on ``taskmill/<id>`` cut from the target's tip,
slots reset rather than re-created, ``.taskmill/include`` copied in, disk bounded by the
workers, and what a killed run leaves behind taken over."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from mill_helpers import MillRepo, agent_script, git
from taskmill.mill.git import Git, git_env
from taskmill.mill.worktrees import WorktreePool


def _pool(repo: MillRepo, **kw: bool) -> WorktreePool:
    g = Git(repo.root, git_env(os.environ))
    return WorktreePool(g, repo.pool, repo_root=repo.root,
                        include_file=repo.root / ".taskmill" / "include", **kw)


@pytest.fixture
def repo(tmp_path: Path) -> MillRepo:
    return MillRepo(tmp_path, gitignore=".env\nsecrets/\nbuild/\n")


def test_acquire_cuts_the_branch_from_the_tip_and_release_cleans(repo: MillRepo) -> None:
    pool = _pool(repo)
    tip = repo.tip()
    ws = pool.acquire("tm-1", tip)
    wt = ws.path
    assert wt == repo.pool / "w0"
    assert git(wt, "symbolic-ref", "HEAD").strip() == "refs/heads/taskmill/tm-1"
    assert git(wt, "rev-parse", "HEAD").strip() == tip
    assert not ws.resumed
    (wt / "untracked.txt").write_text("junk")
    (wt / "README.md").write_text("modified")
    pool.release(ws, delete_branch=True)
    assert not (wt / "untracked.txt").exists()
    assert (wt / "README.md").read_text() == "# test repository\n"
    assert repo.mill_branches() == []
    # the user's checkout is not touched by any of it
    assert repo.git("status", "--porcelain").strip() == ""


def test_slots_are_reset_not_recreated(repo: MillRepo) -> None:
    pool = _pool(repo)
    ws = pool.acquire("tm-1", repo.tip())
    inode = ws.path.stat().st_ino
    (ws.path / "build").mkdir()
    (ws.path / "build" / "cache.o").write_text("expensive build output")  # gitignored
    pool.release(ws, delete_branch=True)
    ws2 = pool.acquire("tm-2", repo.tip())
    assert ws2.path == ws.path and ws2.path.stat().st_ino == inode
    # an ignored build cache survives the reset (unless clean_ignored is asked for)
    assert (ws2.path / "build" / "cache.o").exists()
    pool.release(ws2, delete_branch=True)
    thorough = _pool(repo, clean_ignored=True)
    ws3 = thorough.acquire("tm-3", repo.tip())
    assert ws3.path.stat().st_ino == inode
    thorough.release(ws3, delete_branch=True)
    assert not (ws3.path / "build").exists()


def test_one_slot_per_concurrent_task_and_no_more(repo: MillRepo) -> None:
    pool = _pool(repo)
    held = [pool.acquire(f"tm-{i}", repo.tip()) for i in range(3)]
    assert sorted(ws.path.name for ws in held) == ["w0", "w1", "w2"]
    for ws in held:
        pool.release(ws, delete_branch=True)
    for i in range(5):  # one after another: always the same slot
        ws = pool.acquire(f"tm-x{i}", repo.tip())
        assert ws.path.name == "w0"
        pool.release(ws, delete_branch=True)
    assert len(repo.worktrees()) == 4


def test_threads_never_share_a_slot(repo: MillRepo) -> None:
    pool = _pool(repo)
    seen: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        try:
            ws = pool.acquire(f"tm-t{i}", repo.tip())
            with lock:
                assert ws.path.name not in seen
                seen.append(ws.path.name)
            (ws.path / f"f{i}").write_text("x")
            with lock:
                seen.remove(ws.path.name)
            pool.release(ws, delete_branch=True)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(repo.worktrees()) <= 1 + 6


def test_resuming_a_task_checks_out_its_existing_branch(repo: MillRepo) -> None:
    pool = _pool(repo)
    ws = pool.acquire("tm-r", repo.tip())
    (ws.path / "wip.txt").write_text("work in progress")
    git(ws.path, "add", "wip.txt")
    git(ws.path, "commit", "-q", "-m", "wip")
    wip = git(ws.path, "rev-parse", "HEAD").strip()
    pool.release(ws)  # not landed: the branch stays
    assert repo.mill_branches() == ["taskmill/tm-r"]
    # someone else's work lands meanwhile
    (repo.root / "other.txt").write_text("other")
    repo.git("add", "other.txt")
    repo.git("commit", "-q", "-m", "other")
    ws2 = pool.acquire("tm-r", repo.tip())
    assert ws2.resumed
    assert git(ws2.path, "rev-parse", "HEAD").strip() == wip
    assert (ws2.path / "wip.txt").read_text() == "work in progress"


def test_include_copies_gitignored_files(repo: MillRepo) -> None:
    (repo.root / ".env").write_text("SECRET=42\n")
    (repo.root / "secrets").mkdir()
    (repo.root / "secrets" / "key.pem").write_text("KEY")
    (repo.root / ".taskmill" / "include").write_text(
        "# files the agents need that git does not have\n.env\n\nsecrets/\nmissing.txt\n")
    pool = _pool(repo)
    ws = pool.acquire("tm-i", repo.tip())
    assert (ws.path / ".env").read_text() == "SECRET=42\n"
    assert (ws.path / "secrets" / "key.pem").read_text() == "KEY"
    assert not (ws.path / "missing.txt").exists()
    assert git(ws.path, "status", "--porcelain").strip() == ""  # ignored, so never committed


def test_include_dotenv_end_to_end(repo: MillRepo, tmp_path: Path) -> None:
    (repo.root / ".env").write_text("API_TOKEN=from-the-env-file\n")
    (repo.root / ".taskmill" / "include").write_text(".env\n")
    cmd = agent_script(tmp_path / "agent.py", """
        save("agent-saw-env", (WT / ".env").read_text())
        (WT / "out.txt").write_text((WT / ".env").read_text().split("=")[1])
    """, spy=repo.spy)
    repo.create("tm-env", checks=["grep -q API_TOKEN=from-the-env-file .env", "test -s out.txt"])
    result = repo.run("--agent-cmd", cmd)
    assert result.returncode == 0, result.describe()
    assert (repo.spy / "agent-saw-env").read_text() == "API_TOKEN=from-the-env-file\n"
    repo.assert_all_landed_once(["tm-env"])
    assert ".env" not in repo.git("ls-tree", "-r", "--name-only", "main").split()


def test_finished_worktrees_are_cleaned_and_disk_is_bounded(repo: MillRepo, tmp_path: Path) -> None:
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / f"{TASK}.txt").write_text(TASK)
        (WT / "scratch.tmp").write_text("agent litter")
    """, spy=repo.spy)
    ids = [repo.create(f"tm-{i}") for i in range(6)]
    result = repo.run("--agent-cmd", cmd, "-j", "2")
    assert result.returncode == 0, result.describe()
    repo.assert_all_landed_once(ids)
    slots = sorted(p.name for p in repo.pool.iterdir()
                   if p.is_dir())
    assert slots in (["w0"], ["w0", "w1"]), slots
    assert len(repo.worktrees()) == 1 + len(slots)
    for name in slots:
        wt = repo.pool / name
        assert git(wt, "status", "--porcelain", "--ignored").strip() == ""
        assert git(wt, "symbolic-ref", "-q", "HEAD", check=False).strip() == ""  # detached
    assert repo.mill_branches() == []
    # every task got its own branch, cut from the tip of main when it started
    workspaces = result.events_of("workspace")
    assert sorted(e["branch"] for e in workspaces) == sorted(f"taskmill/{t}" for t in ids)


# -- what a killed run leaves behind -----------------------------------------------------------


def _half_made_worktree(repo: MillRepo, name: str) -> None:
    """The state ``git worktree add`` leaves when killed before it finished."""
    admin = repo.root / ".git" / "worktrees" / name
    admin.mkdir(parents=True)
    path = repo.pool / name
    path.mkdir(parents=True)
    (admin / "locked").write_text("initializing")
    (admin / "gitdir").write_text(f"{path}/.git\n")
    (path / ".git").write_text(f"gitdir: {admin}\n")
    (admin / "commondir").write_text("")  # killed while writing it


def test_half_made_worktree_of_a_killed_run_is_taken_over(repo: MillRepo, tmp_path: Path) -> None:
    _half_made_worktree(repo, "w0")
    _half_made_worktree(repo, "w1")
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / f"{TASK}.txt").write_text(TASK)
    """, spy=repo.spy)
    ids = [repo.create(f"tm-{i}") for i in range(3)]
    result = repo.run("--agent-cmd", cmd, "-j", "3")
    assert result.returncode == 0, result.describe()
    repo.assert_all_landed_once(ids)
    assert "prunable" not in repo.git("worktree", "list", "--porcelain")
    for name in ("w0", "w1"):
        assert not (repo.root / ".git" / "worktrees" / name / "locked").exists()


def test_stale_git_lock_in_a_slot_is_removed(repo: MillRepo, tmp_path: Path) -> None:
    pool = _pool(repo)
    ws = pool.acquire("tm-1", repo.tip())
    pool.release(ws, delete_branch=True)
    # a run killed in the middle of `git add` in that slot
    (repo.root / ".git" / "worktrees" / "w0" / "index.lock").write_text("")
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / "a.txt").write_text("a")
    """, spy=repo.spy)
    repo.create("tm-2")
    result = repo.run("--agent-cmd", cmd, "-j", "1")
    assert result.returncode == 0, result.describe()
    repo.assert_all_landed_once(["tm-2"])


def test_branch_left_checked_out_in_a_dead_runs_slot(repo: MillRepo, tmp_path: Path) -> None:
    """A run died while working tm-1 in slot w1; the next run resumes tm-1 in slot w0, lands
    it, and leaves no stale branch behind."""
    pool = _pool(repo)
    other = pool.acquire("tm-x", repo.tip())
    ws = pool.acquire("tm-1", repo.tip())  # never released: the run died
    assert ws.path.name == "w1"
    pool.release(other, delete_branch=True)
    (ws.path / "part1.txt").write_text("before the crash")
    git(ws.path, "add", "-A")
    git(ws.path, "commit", "-q", "-m", "part 1")
    pool._unlock_slot(ws.slot, ws._lock)  # the kernel drops a dead process's flock
    repo.create("tm-1", checks=["test -f part1.txt && test -f part2.txt"])
    repo.ledger.claim("tm-1", "mill:deadbeef", actor="mill:deadbeef")

    cmd = agent_script(tmp_path / "agent.py", """
        (WT / "part2.txt").write_text("x")
    """, spy=repo.spy)
    result = repo.run("--agent-cmd", cmd, "-j", "1")
    assert result.returncode == 0, result.describe()
    assert result.events_of("workspace")[0]["path"].endswith("w0")
    repo.assert_all_landed_once(["tm-1"])
    assert repo.git("show", "main:part1.txt") == "before the crash"
    assert repo.mill_branches() == []


def test_stale_branch_locks_of_a_killed_run(repo: MillRepo, tmp_path: Path) -> None:
    """A run died inside git commands on two task branches: tm-1's (still checked out in
    the slot it left) and tm-2's own (the task is resumed). Both locks are stale."""
    pool = _pool(repo)
    first = pool.acquire("tm-1", repo.tip())
    second = pool.acquire("tm-2", repo.tip())
    for ws in (first, second):  # never released: the run died
        pool._unlock_slot(ws.slot, ws._lock)
    heads = repo.root / ".git" / "refs" / "heads" / "taskmill"
    (heads / "tm-1.lock").write_text("")
    (heads / "tm-2.lock").write_text("")
    repo.create("tm-2")
    repo.ledger.claim("tm-2", "mill:deadbeef", actor="mill:deadbeef")
    repo.create("tm-3")
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / f"{TASK}.txt").write_text(TASK)
    """, spy=repo.spy)
    result = repo.run("--agent-cmd", cmd, "-j", "2")
    assert result.returncode == 0, result.describe()
    repo.assert_all_landed_once(["tm-2", "tm-3"])


def test_landed_branch_in_a_dead_slot_with_a_stale_head_lock(repo: MillRepo,
                                                              tmp_path: Path) -> None:
    """Killed after landing tm-1, inside a git command on the slot's HEAD: the slot still
    has the branch checked out and its HEAD locked. The next run deletes the branch."""
    pool = _pool(repo)
    ws = pool.acquire("tm-1", repo.tip())
    pool._unlock_slot(ws.slot, ws._lock)  # never released: the run died
    repo.create("tm-1")
    repo.ledger.close("tm-1", f"landed {repo.tip()}", system=True)
    (repo.root / ".git" / "worktrees" / "w0" / "HEAD.lock").write_text("")
    cmd = agent_script(tmp_path / "agent.py", "", spy=repo.spy)
    result = repo.run("--agent-cmd", cmd)
    assert result.returncode == 0, result.describe()
    assert repo.mill_branches() == []


# -- git's config stays in place -----------------------------------------------------------
# Every sandboxed turn and check binds the scrubbed copy of git's config over .git/config
# (taskmill.sandbox). A sandbox that starts while that file is replaced (a new file renamed
# over it) fails to start -- bwrap: "Can't bind mount ... on .../.git/config" -- and the turn
# or the check fails with nothing done; one already running sees the real file again. The
# mill replaced it once per landed task (`git branch -D` rewrites the config to drop the
# branch's section, section or not): with -j 8 a task now and then had two turns in a row
# fail so, and the "no change to the worktree in 2 consecutive turns" breaker blocked it.
# The tests hold the file open: its inode cannot be reused by the file that replaces it.


def _replaced(held: int, path: Path) -> bool:
    """Whether ``path`` is no longer the file open as ``held``."""
    return not os.path.samestat(os.fstat(held), path.stat())


def test_deleting_landed_branches_leaves_git_config_in_place(repo: MillRepo) -> None:
    config = repo.root / ".git" / "config"
    text = config.read_bytes()
    pool = _pool(repo)
    with config.open("rb") as held:
        ws = pool.acquire("tm-1", repo.tip())
        git(ws.path, "commit", "-q", "--allow-empty", "-m", "work")
        pool.release(ws, delete_branch=True)  # landed by its worker
        assert not _replaced(held.fileno(), config)
        parked = pool.acquire("tm-2", repo.tip())
        pool.release(parked)  # parked in the landing queue, which landed it
        pool.drop_branch("tm-2")
        assert not _replaced(held.fileno(), config)
    assert config.read_bytes() == text
    assert repo.mill_branches() == []
    assert not (repo.root / ".git" / "logs" / "refs" / "heads" / "taskmill" / "tm-1").exists()


def test_a_run_landing_tasks_leaves_git_config_in_place(repo: MillRepo, tmp_path: Path) -> None:
    config = repo.root / ".git" / "config"
    for i in range(1, 5):
        repo.create(f"tm-{i}")
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / f"{TASK}.txt").write_text(TASK)
    """, spy=repo.spy)
    with config.open("rb") as held:
        result = repo.run("--agent-cmd", cmd, "-j", "2")
        assert result.returncode == 0, result.describe()
        assert not _replaced(held.fileno(), config)
    repo.assert_all_landed_once([f"tm-{i}" for i in range(1, 5)])
    assert repo.mill_branches() == []


def test_a_branch_checked_out_elsewhere_is_not_deleted(repo: MillRepo) -> None:
    """As ``git branch -D`` refuses to: the user looks at a task's branch in their checkout,
    or a worktree of theirs is rebasing one."""
    pool = _pool(repo)
    for task in ("tm-1", "tm-2"):
        pool.release(pool.acquire(task, repo.tip()))
    repo.git("checkout", "-q", "taskmill/tm-1")
    elsewhere = repo.root.parent / "elsewhere"
    repo.git("worktree", "add", "-q", "--detach", str(elsewhere))
    rebasing = repo.root / ".git" / "worktrees" / "elsewhere" / "rebase-merge"
    rebasing.mkdir()
    (rebasing / "head-name").write_text("refs/heads/taskmill/tm-2\n")
    pool.drop_branch("tm-1")
    pool.drop_branch("tm-2")
    assert repo.mill_branches() == ["taskmill/tm-1", "taskmill/tm-2"]
    assert repo.git("symbolic-ref", "HEAD").strip() == "refs/heads/taskmill/tm-1"
