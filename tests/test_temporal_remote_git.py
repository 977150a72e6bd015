"""Landing on a shared remote from several clones (the Temporal executor's workers): a
compare-and-swap push, and a task landed exactly once even when two workers land it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from conftest import run_git
from mill_helpers import wait_for
from taskmill.errors import GitError
from taskmill.ledger import Ledger
from taskmill.mill.checks import ChecksResult
from taskmill.mill.git import Git, git_env
from taskmill.mill.worktrees import Workspace, WorktreePool, branch_for
from taskmill.model import Task

pytest.importorskip("temporalio")

from taskmill.temporal.remote_git import (
    STALE_LOCK_S,
    BranchPush,
    RemoteMergeQueue,
    fetch_branch,
    prepare_clone,
)

IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    seed = tmp_path / "seed"
    seed.mkdir()
    run_git(seed, "init", "-q", "-b", "main")
    (seed / "README.md").write_text("hello\n")
    run_git(seed, "add", "-A")
    run_git(seed, "commit", "-qm", "initial")
    bare = tmp_path / "origin.git"
    run_git(tmp_path, "clone", "-q", "--bare", str(seed), str(bare))
    return bare


def clone(tmp_path: Path, origin: Path, name: str) -> Git:
    base = Git(tmp_path, {**git_env(dict(os.environ)), **IDENTITY})
    git = prepare_clone(str(origin), tmp_path / name / "clone", base)
    return Git(git.cwd, base.env)


def queue(git: Git, tmp_path: Path) -> RemoteMergeQueue:
    return RemoteMergeQueue(git, target="main", lock_path=tmp_path / f"{git.cwd.parent.name}.lock",
                            checks=[], check_env=dict(os.environ), check_timeout=60,
                            user_checkout=git.cwd, log_dir=tmp_path)


def workspace(git: Git, q: RemoteMergeQueue, task: Task, files: dict[str, str]) -> Workspace:
    """The task's branch, cut from the target's tip, with ``files`` committed."""
    base = q.tip()
    branch = branch_for(task.id)
    path = git.cwd.parent / f"slot-{task.id}"
    git.run("worktree", "add", "-q", "-b", branch, str(path), base)
    wt = Git(path, git.env)
    for name, text in files.items():
        (path / name).write_text(text)
    wt.run("add", "-A")
    wt.run("commit", "-qm", f"work on {task.id}")
    return Workspace(path=path, branch=branch, base=base, slot=0, git=wt, admin=path)


def landings(origin: Path) -> list[str]:
    out = run_git(origin, "log", "--format=%(trailers:key=Taskmill-Task,valueonly)", "main")
    return [line for line in out.split() if line]


def tasks(*ids: str) -> list[Task]:
    ledger = Ledger.memory()
    return [ledger.create(f"task {tid}", task_id=tid) for tid in ids]


def test_a_task_two_workers_land_lands_once(tmp_path: Path, origin: Path) -> None:
    (task,) = tasks("tm-x")
    a, b = clone(tmp_path, origin, "a"), clone(tmp_path, origin, "b")
    qa, qb = queue(a, tmp_path), queue(b, tmp_path)
    wa = workspace(a, qa, task, {"x.txt": "x\n"})
    wb = workspace(b, qb, task, {"x.txt": "x\n"})  # a worker taken for dead did it too
    first = qa.land(task, wa)
    assert first.outcome == "landed"
    second = qb.land(task, wb)  # b's view of main is stale: it fetches, finds the trailer
    assert second.outcome == "already_landed" and second.commit == first.commit
    assert landings(origin) == ["tm-x"]


@pytest.mark.parametrize("age", ["stale", "fresh"])
def test_locks_a_killed_push_left_in_the_remote_are_cleared_when_stale(
        tmp_path: Path, origin: Path, age: str) -> None:
    """A worker killed while it pushed (its ``receive-pack`` with it) left the remote's ref
    locks: every later push failed on them and no task landed again (the Temporal chaos
    test, 3 runs in one CI run). A lock older than STALE_LOCK_S is removed and the push
    tried again; a fresh one, perhaps a live push's, is left alone."""
    (task,) = tasks("tm-x")
    a = clone(tmp_path, origin, "a")
    qa = queue(a, tmp_path)
    wa = workspace(a, qa, task, {"x.txt": "x\n"})
    locks = [origin / "HEAD.lock", origin / "packed-refs.lock", origin / "refs/heads/main.lock"]
    long_ago = time.time() - STALE_LOCK_S - 5
    for lock in locks:
        lock.write_text("")
        if age == "stale":
            os.utime(lock, (long_ago, long_ago))
    with pytest.MonkeyPatch.context() as m:
        m.setattr(RemoteMergeQueue, "tries", 2)
        result = qa.land(task, wa)
    if age == "stale":
        assert result.outcome == "landed"
        assert landings(origin) == ["tm-x"]
        assert not any(lock.exists() for lock in locks)
    else:
        assert result.outcome == "conflict"  # (tried again later, as before)
        assert landings(origin) == []
        assert all(lock.exists() for lock in locks)


def test_a_landing_that_loses_the_push_race_merges_again_and_lands_on_top(
        tmp_path: Path, origin: Path) -> None:
    one, two = tasks("tm-one", "tm-two")
    a, b = clone(tmp_path, origin, "a"), clone(tmp_path, origin, "b")
    qa = queue(a, tmp_path)
    wa = workspace(a, qa, one, {"one.txt": "1\n"})
    raced: list[bool] = []

    class Racing(RemoteMergeQueue):
        def push(self, old: str, new: str, *, drop: str | None = None) -> bool:
            if not raced:  # another worker lands between our merge and our push
                raced.append(True)
                assert qa.land(one, wa).outcome == "landed"
            return super().push(old, new, drop=drop)

    qb = Racing(b, target="main", lock_path=tmp_path / "b.lock", checks=[],
                check_env=dict(os.environ), check_timeout=60, user_checkout=b.cwd,
                log_dir=tmp_path)
    wb = workspace(b, qb, two, {"two.txt": "2\n"})
    result = qb.land(two, wb)
    assert raced and result.outcome == "landed"
    assert landings(origin) == ["tm-two", "tm-one"]  # newest first: two on top of one
    parent = run_git(origin, "rev-parse", f"{result.commit}^").strip()
    assert parent == run_git(origin, "rev-parse", "main~1").strip()
    assert run_git(origin, "show", "main:one.txt") == "1\n"
    # the landed task's branch went in the same push (none was pushed here: no error)
    assert run_git(origin, "branch", "--list", "taskmill/*").strip() == ""


def test_a_landing_deletes_the_task_branch_on_the_remote(tmp_path: Path, origin: Path) -> None:
    (task,) = tasks("tm-x")
    a = clone(tmp_path, origin, "a")
    qa = queue(a, tmp_path)
    wa = workspace(a, qa, task, {"x.txt": "x\n"})
    a.run("push", "-q", "origin", f"{wa.branch}:{wa.branch}")
    assert run_git(origin, "branch", "--list", "taskmill/*").strip() == "taskmill/tm-x"
    assert qa.land(task, wa).outcome == "landed"
    assert run_git(origin, "branch", "--list", "taskmill/*").strip() == ""


def test_a_resumed_task_landed_before_its_base_is_found_there(tmp_path: Path,
                                                               origin: Path) -> None:
    """A task bound again (resumed) whose first worker landed it before the new binding
    cut its base: its trailer is below that base, and is found all the same."""
    (task,) = tasks("tm-x")
    a, b = clone(tmp_path, origin, "a"), clone(tmp_path, origin, "b")
    qa, qb = queue(a, tmp_path), queue(b, tmp_path)
    wa = workspace(a, qa, task, {"x.txt": "x\n"})
    first = qa.land(task, wa)
    assert first.outcome == "landed"
    wb = workspace(b, qb, task, {"x.txt": "other\n"})  # cut from the tip holding the landing
    wb = Workspace(path=wb.path, branch=wb.branch, base=wb.base, slot=0, git=wb.git,
                   admin=wb.admin, resumed=True)
    assert wb.base == first.commit
    second = qb.land(task, wb)
    assert second.outcome == "already_landed" and second.commit == first.commit
    assert landings(origin) == ["tm-x"]


def test_the_remote_target_is_fetched_only_when_it_moved(tmp_path: Path, origin: Path) -> None:
    one, two = tasks("tm-one", "tm-two")
    a, b = clone(tmp_path, origin, "a"), clone(tmp_path, origin, "b")
    qa, qb = queue(a, tmp_path), queue(b, tmp_path)
    fetched: list[str] = []

    class Counting(Git):
        def run(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
            if args and args[0] == "fetch":
                fetched.append(args[-1])
            return super().run(*args, **kwargs)

    qb.git = Counting(b.cwd, b.env)
    tip = qb.tip()
    assert fetched == [] and tip == qa.tip()  # the clone is where the remote is
    wa = workspace(a, qa, one, {"one.txt": "1\n"})
    assert qa.land(one, wa).outcome == "landed"
    assert qb.tip() == run_git(origin, "rev-parse", "main").strip()
    assert len(fetched) == 1  # it moved: fetched once
    wb = workspace(b, qb, two, {"two.txt": "2\n"})
    assert qb.land(two, wb).outcome == "landed"
    assert len(fetched) == 1
    assert landings(origin) == ["tm-two", "tm-one"]


def test_the_project_checks_are_not_run_again_on_a_tree_they_passed(
        tmp_path: Path, origin: Path) -> None:
    """The task's own checks passed on its tree: landing that tree (the target did not move)
    does not run them again; on a target that moved (another tree) they run."""
    one, two = tasks("tm-one", "tm-two")
    runs = tmp_path / "runs.log"
    checks = [f"echo run >> {runs}"]
    a, b = clone(tmp_path, origin, "a"), clone(tmp_path, origin, "b")
    qa, qb = (RemoteMergeQueue(g, target="main", lock_path=tmp_path / f"{n}.lock", checks=checks,
                               check_env=dict(os.environ), check_timeout=60,
                               user_checkout=g.cwd, log_dir=tmp_path)
              for g, n in ((a, "a"), (b, "b")))
    wa = workspace(a, qa, one, {"one.txt": "1\n"})
    wb = workspace(b, qb, two, {"two.txt": "2\n"})
    green = ChecksResult(runs=[])
    qa.remember(wa.git.out("rev-parse", "HEAD^{tree}"), checks, green)
    qb.remember(wb.git.out("rev-parse", "HEAD^{tree}"), checks, green)
    assert qa.land(one, wa).outcome == "landed"
    assert not runs.exists()  # the candidate's tree is the branch's: known green
    assert qb.land(two, wb).outcome == "landed"  # on top of one: a tree never checked
    assert runs.read_text().splitlines() == ["run"]
    assert landings(origin) == ["tm-two", "tm-one"]


def branch_push(git: Git, ws: Workspace, log: list[str], *, after: float = 3600) -> BranchPush:
    """The push of ``ws``'s branch after a turn, as a worker makes it (``log`` says when it
    begins, and what the remote's target was then)."""
    def push() -> None:
        log.append(run_git(Path(git.run("remote", "get-url", "origin").stdout.strip()),
                           "rev-parse", "main").strip())
        git.run("push", "-q", "origin", f"{ws.branch}:{ws.branch}")

    return BranchPush(push, after, POOL.submit)


POOL = ThreadPoolExecutor(max_workers=2)


def remote_branches(origin: Path) -> str:
    return run_git(origin, "branch", "--list", "taskmill/*").strip()


def test_a_landing_that_comes_first_takes_the_place_of_the_branch_push(
        tmp_path: Path, origin: Path) -> None:
    (task,) = tasks("tm-x")
    a = clone(tmp_path, origin, "a")
    qa = queue(a, tmp_path)
    wa = workspace(a, qa, task, {"x.txt": "x\n"})
    pushed: list[str] = []
    qa.pushing[wa.branch] = pushing = branch_push(a, wa, pushed)
    assert qa.land(task, wa).outcome == "landed"
    assert pushing.state == "cancelled" and pushed == []  # one push, not two
    assert remote_branches(origin) == "" and qa.pushing == {} and qa.unpushed == set()
    assert landings(origin) == ["tm-x"]


def test_a_branch_push_that_began_is_waited_for_before_the_landing_deletes_it(
        tmp_path: Path, origin: Path) -> None:
    (task,) = tasks("tm-x")
    a = clone(tmp_path, origin, "a")
    qa = queue(a, tmp_path)
    wa = workspace(a, qa, task, {"x.txt": "x\n"})
    before = run_git(origin, "rev-parse", "main").strip()
    pushed: list[str] = []
    pushing = branch_push(a, wa, pushed, after=0)
    pushing.future.result()  # it began (and ended) before the landing came
    qa.pushing[wa.branch] = pushing
    assert remote_branches(origin) == "taskmill/tm-x"
    assert qa.land(task, wa).outcome == "landed"
    assert pushed == [before]  # pushed before the landing moved the target
    assert remote_branches(origin) == ""  # and deleted by the landing's push


def test_a_landing_that_does_not_land_pushes_the_branch_it_held_back(
        tmp_path: Path, origin: Path) -> None:
    """The landing cancelled the branch's push, then lost to a conflict: the branch is
    pushed all the same (the next turn, or the next worker, starts from it)."""
    one, two = tasks("tm-one", "tm-two")
    a, b = clone(tmp_path, origin, "a"), clone(tmp_path, origin, "b")
    qa, qb = queue(a, tmp_path), queue(b, tmp_path)
    wb = workspace(b, qb, two, {"same.txt": "two\n"})
    wa = workspace(a, qa, one, {"same.txt": "one\n"})
    pushed: list[str] = []
    qb.pushing[wb.branch] = pushing = branch_push(b, wb, pushed)

    class Racing(RemoteMergeQueue):
        def push(self, old: str, new: str, *, drop: str | None = None) -> bool:
            if not pushed and pushing.state == "cancelled" and landings(origin) == []:
                assert qa.land(one, wa).outcome == "landed"  # lands first: two conflicts
            return super().push(old, new, drop=drop)

    qb.__class__ = Racing
    assert qb.land(two, wb).outcome == "conflict"
    assert pushing.state == "cancelled" and pushed == []
    assert remote_branches(origin) == "taskmill/tm-two"  # pushed by the landing instead
    assert run_git(origin, "rev-parse", "taskmill/tm-two").strip() == \
        run_git(b.cwd, "rev-parse", wb.branch).strip()
    assert qb.unpushed == set() and landings(origin) == ["tm-one"]


def test_a_branch_push_is_made_after_its_delay_or_when_settled(tmp_path: Path,
                                                               origin: Path) -> None:
    (task,) = tasks("tm-x")
    a = clone(tmp_path, origin, "a")
    qa = queue(a, tmp_path)
    wa = workspace(a, qa, task, {"x.txt": "x\n"})
    pushed: list[str] = []
    later = branch_push(a, wa, pushed)
    later.settle()  # the next turn comes: pushed now, not an hour later
    assert later.state == "pushing" and len(pushed) == 1
    assert not later.cancel()  # too late to cancel: it was made
    soon = branch_push(a, wa, pushed, after=0)
    soon.future.result()
    assert len(pushed) == 2 and remote_branches(origin) == "taskmill/tm-x"


# -- a worker's threads share its clone: a fetch races nothing they do ---------------------


def hold_first_worktree_add(git: Git, tmp_path: Path) -> tuple[Path, Path]:
    """A ``reference-transaction`` hook in ``git``'s clone holding the first ``git worktree
    add`` at the moment git has written the new entry's placeholder HEAD (the null id) and
    not yet the real one; it touches the first file then, and waits for the second."""
    held, go = tmp_path / "add-held", tmp_path / "add-go"
    hook = git.cwd / ".git" / "hooks" / "reference-transaction"
    hook.write_text(f"""#!/bin/sh
cat >/dev/null
case "$GIT_DIR" in */worktrees/*) ;; *) exit 0 ;; esac
[ "$1" = prepared ] && [ ! -e '{held}' ] || exit 0
touch '{held}'
while [ ! -e '{go}' ]; do sleep 0.01; done
""")
    hook.chmod(0o755)
    return held, go


def landed_elsewhere(tmp_path: Path, origin: Path) -> str:
    """Another worker lands a task: the target moves on the remote. Its new tip."""
    (task,) = tasks("tm-other")
    other = clone(tmp_path, origin, "other")
    q = queue(other, tmp_path)
    assert q.land(task, workspace(other, q, task, {"other.txt": "o\n"})).outcome == "landed"
    return run_git(origin, "rev-parse", "main").strip()


def test_a_fetch_waits_while_the_worker_adds_a_worktree_to_its_clone(tmp_path: Path,
                                                                      origin: Path) -> None:
    """`git worktree add` leaves the null id in the new entry's HEAD for a moment, and a
    fetch into the clone meanwhile fails ("bad object worktrees/w0/HEAD"): a landing whose
    target moved would fail with a taskmill error for nothing the task did."""
    a = clone(tmp_path, origin, "a")
    qa = queue(a, tmp_path)
    qa.worktrees = pool = WorktreePool(a, a.cwd / ".git" / "taskmill" / "worktrees",
                                       repo_root=a.cwd, include_file=a.cwd / ".no-include")
    base = qa.tip()
    tip = landed_elsewhere(tmp_path, origin)
    held, go = hold_first_worktree_add(a, tmp_path)
    with ThreadPoolExecutor(2) as threads:
        adding = threads.submit(pool.acquire, "tm-next", base, fresh=True)
        assert wait_for(held.exists, timeout=30), "the hook did not hold the worktree add"
        try:
            syncing = threads.submit(qa.sync)  # a landing looks at the target meanwhile
            with contextlib.suppress(TimeoutError):  # (waiting, as it must)
                syncing.result(timeout=1)
        finally:
            go.touch()
        assert adding.result(timeout=60).branch == "taskmill/tm-next"
        assert syncing.result(timeout=60) == tip
    # a resumed task's branch is fetched the same way
    assert fetch_branch(a, "taskmill/none-there", pool) is False


def test_a_fetch_of_the_target_needs_no_lock_a_push_holds(tmp_path: Path, origin: Path) -> None:
    """A landing's push (on another of the worker's threads) updates the clone's
    remote-tracking ref: a fetch of the target meanwhile (a task being bound) must not
    need that ref's lock ("cannot lock ref 'refs/remotes/origin/main'")."""
    a = clone(tmp_path, origin, "a")
    qa = queue(a, tmp_path)
    tip = landed_elsewhere(tmp_path, origin)
    (a.cwd / ".git" / "refs" / "remotes" / "origin" / "main.lock").touch()  # the push's
    assert qa.sync() == tip


def test_a_landing_closed_by_the_binding_it_replaced_is_landed_not_an_error() -> None:
    """A worker taken for dead that was not lands the task and closes it; the worker bound
    in its place finds the landing (its trailer) and closes the task too: that is the same
    landing, not a taskmill error (the run would end with the task "error", exit 1)."""
    from taskmill.clock import SystemClock
    from taskmill.errors import Conflict
    from taskmill.mill.events import EventBus
    from taskmill.mill.records import TaskRecords

    ledger = Ledger.memory()
    ledger.create("task", task_id="tm-x")
    bus = EventBus(SystemClock())
    landed: list[dict[str, Any]] = []
    bus.subscribe(lambda event: landed.append(event) if event["event"] == "landed" else None)
    first, second = (TaskRecords(ledger, bus, SystemClock(), task_id="tm-x", lap=1,
                                 run_id="r1") for _ in range(2))
    first.close("abc123", unverified=False)
    second.close("abc123", unverified=False)
    assert ledger.get("tm-x").close_reason == "landed abc123"
    assert [e["commit"] for e in landed] == ["abc123", "abc123"]
    with pytest.raises(Conflict):  # closed for another landing: that is a conflict
        second.close("def456", unverified=False)


def test_a_branch_push_that_failed_is_tried_again_when_settled(
        tmp_path: Path, origin: Path) -> None:
    """A network blip on the push after a turn does not end the task: the push is tried
    again when it is waited for; only a second failure is reported."""
    (task,) = tasks("tm-x")
    a = clone(tmp_path, origin, "a")
    wa = workspace(a, queue(a, tmp_path), task, {"x.txt": "x\n"})
    tries: list[int] = []

    def flaky(failures: int) -> Callable[[], None]:
        def push() -> None:
            tries.append(len(tries))
            if len(tries) <= failures:
                raise GitError("git push failed: Connection reset by peer")
            a.run("push", "-q", "origin", f"{wa.branch}:{wa.branch}")
        return push

    once = BranchPush(flaky(1), 0, POOL.submit)
    once.settle()
    assert tries == [0, 1] and once.error is None
    assert remote_branches(origin) == "taskmill/tm-x"

    tries.clear()
    twice = BranchPush(flaky(2), 0, POOL.submit)
    with pytest.raises(GitError, match="Connection reset"):
        twice.settle()
    assert tries == [0, 1]


def test_a_landing_that_does_not_land_pushes_the_branch_whose_push_failed(
        tmp_path: Path, origin: Path) -> None:
    one, two = tasks("tm-one", "tm-two")
    a, b = clone(tmp_path, origin, "a"), clone(tmp_path, origin, "b")
    qa, qb = queue(a, tmp_path), queue(b, tmp_path)
    wb = workspace(b, qb, two, {"same.txt": "two\n"})
    wa = workspace(a, qa, one, {"same.txt": "one\n"})
    assert qa.land(one, wa).outcome == "landed"  # two now conflicts with the target

    def down() -> None:
        raise GitError("git push failed: Could not resolve host")

    failed = BranchPush(down, 0, POOL.submit)
    failed.future.result()
    qb.pushing[wb.branch] = failed
    assert qb.land(two, wb).outcome == "conflict"  # not an error
    assert remote_branches(origin) == "taskmill/tm-two"  # pushed by the landing after all
