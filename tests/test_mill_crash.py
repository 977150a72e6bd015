"""Crash safety: ``kill -9`` of ``taskmill run`` at any moment, then ``taskmill run`` again,
lands every task exactly once; two runs at once never work the same task."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from mill_helpers import (
    MillRepo,
    agent_script,
    git_kill_env,
    kill_group,
    process_alive,
    read_spy_log,
    wait_for,
)

# An agent for the crash tests: each task writes its own file, some also append their id
# to a shared log (so tasks worked side by side conflict and have to be resolved; not all,
# or the hot file alone would use up their iterations), then it sleeps a little so that
# kills land in the middle of turns as well as of taskmill's own work.
SHARED_LOG = ("tm-a", "tm-c", "tm-f", "tm-h")
CRASH_AGENT = """
    import random
    log_file = WT / "log.txt"
    if TASK not in ("tm-a", "tm-c", "tm-f", "tm-h"):  # SHARED_LOG
        log_file = WT / f"log-{TASK}.txt"
    text = log_file.read_text() if log_file.exists() else ""
    if "<<<<<<<" in text:
        keep = [ln for ln in text.splitlines()
                if not ln.startswith(("<<<<<<<", "=======", ">>>>>>>"))]
        text = "".join(ln + "\\n" for ln in keep)
    if TASK not in text.split():
        text += TASK + "\\n"
    log_file.write_text(text)
    (WT / f"out-{TASK}.txt").write_text(f"{TASK}\\n")
    if random.random() < 0.3:
        subprocess.run(["git", "add", "-A"], check=False)
        subprocess.run(["git", "commit", "-qm", f"agent commit {TASK}"], check=False,
                       capture_output=True)
    time.sleep(random.uniform(0.02, 0.5))
"""


def _crash_repo(tmp_path: Path) -> tuple[MillRepo, str, list[str]]:
    repo = MillRepo(tmp_path, checks=["! grep -rl '^<<<<<<<' --include=*.txt ."],
                    files={"log.txt": ""})
    cmd = agent_script(tmp_path / "agent.py", CRASH_AGENT, spy=repo.spy)
    deps = {"tm-a": [], "tm-b": [], "tm-c": [], "tm-d": ["tm-a"], "tm-e": ["tm-d"],
            "tm-f": ["tm-b", "tm-c"], "tm-g": [], "tm-h": ["tm-e"], "tm-i": [], "tm-j": []}
    for tid, after in deps.items():
        log = "log.txt" if tid in SHARED_LOG else f"log-{tid}.txt"
        repo.create(tid, checks=[f"grep -qx {tid} {log}", f"test -f out-{tid}.txt"],
                    after=after)
    return repo, cmd, list(deps)


def _assert_clean_end_state(repo: MillRepo, ids: list[str], workers: int) -> None:
    repo.assert_all_landed_once(ids)
    log = repo.git("show", "main:log.txt").split()
    assert sorted(log) == sorted(SHARED_LOG), log
    for tid in set(ids) - set(SHARED_LOG):
        assert repo.git("show", f"main:log-{tid}.txt") == f"{tid}\n"
    for tid in ids:
        assert repo.git("show", f"main:out-{tid}.txt") == f"{tid}\n"
    rows = repo.ledger.store.conn.execute(
        "SELECT count(*) FROM tasks WHERE status != 'closed'").fetchone()
    assert rows[0] == 0
    unfinished = repo.ledger.store.conn.execute(
        "SELECT count(*) FROM attempts WHERE outcome IS NULL OR ended_at IS NULL").fetchone()
    assert unfinished[0] == 0
    repo.verify_ok()
    # stale worktrees and branches recovered; the pool never outgrows the workers (the
    # merge queue's own checkout, where batches are checked, is one more, outside the pool)
    worktrees = [w for w in repo.worktrees()
                 if Path(w).resolve() != (repo.root / ".git" / "taskmill" / "lander").resolve()]
    assert Path(worktrees[0]).resolve() == repo.root.resolve()
    assert len(worktrees) <= 1 + workers, worktrees
    for path in worktrees[1:]:
        assert Path(path).is_dir()
        assert Path(path).parent.resolve() == repo.pool.resolve()
    assert "prunable" not in repo.git("worktree", "list", "--porcelain")
    assert repo.mill_branches() == [], _branch_diagnostics(repo)
    assert repo.git("fsck", "--connectivity-only", "--no-dangling").strip() == ""


def _branch_diagnostics(repo: MillRepo) -> str:
    locks = sorted(str(p.relative_to(repo.root)) for p in (repo.root / ".git").rglob("*.lock"))
    branches = repo.mill_branches()
    proc = subprocess.run(["git", "-C", str(repo.root), "branch", "-D", *branches[:1]],
                          capture_output=True, text=True, check=False)
    return (f"locks: {locks}\nworktrees:\n{repo.git('worktree', 'list', '--porcelain')}"
            f"\ndelete: {proc.stdout} {proc.stderr}\nevents: " + "\n".join(
                p.read_text()[-3000:] for p in sorted(repo.tmp.glob("events-*.ndjson"))[-1:]))


def test_kill_minus_9_at_random_points_then_every_task_lands_exactly_once(
        tmp_path: Path) -> None:
    seed = int(os.environ.get("TASKMILL_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    repo, cmd, ids = _crash_repo(tmp_path)
    workers = 2
    kills = 0
    for round_ in range(8):
        proc = repo.spawn("--agent-cmd", cmd, "-j", str(workers), "--quiet",
                          events_file=tmp_path / f"events-{round_}.ndjson")
        time.sleep(rng.uniform(0.2, 1.2))
        if proc.poll() is not None:
            proc.communicate()
            break
        kill_group(proc)
        kills += 1
    final = repo.run("--agent-cmd", cmd, "-j", str(workers), timeout=120)

    context = f"seed {seed} (rerun with TASKMILL_CRASH_SEED={seed}), {kills} kills\n"
    assert final.returncode == 0, context + final.describe()
    assert kills >= 2, context
    try:
        _assert_clean_end_state(repo, ids, workers)
    except AssertionError as exc:
        raise AssertionError(context + str(exc)) from exc
    # the user's checkout (clean, on main) followed the landings
    checkout = (f"HEAD: {repo.git('symbolic-ref', '-q', 'HEAD', check=False).strip()}\n"
                f"status:\n{repo.git('status', '--porcelain')}\nreflog:\n"
                f"{repo.git('reflog', '-n', '12', 'HEAD', check=False)}\nnotes: "
                + " | ".join(line for p in sorted(tmp_path.glob("events-*.ndjson"))
                             for line in p.read_text().splitlines()
                             if "checkout_not_moved" in line or "warning" in line))
    assert repo.git("symbolic-ref", "-q", "HEAD", check=False).strip() == "refs/heads/main", \
        context + checkout
    assert repo.git("status", "--porcelain").strip() == "", context + checkout


def test_killed_turn_is_resumed_on_its_branch_and_the_attempt_marked_interrupted(
        tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        if CALL == 1:
            (WT / "part1.txt").write_text("committed before the crash\\n")
            subprocess.run(["git", "add", "-A"], check=True)
            subprocess.run(["git", "commit", "-qm", "part 1"], check=True)
            (WT / "uncommitted.txt").write_text("lost with the crash\\n")
            save("ready", str(PID))
            time.sleep(60)
        else:
            save(f"seen-{CALL}", "\\n".join(sorted(p.name for p in WT.iterdir())))
            (WT / "part2.txt").write_text("after the crash\\n")
    """, spy=repo.spy)
    repo.create("tm-k", checks=["test -f part1.txt && test -f part2.txt"])

    proc = repo.spawn("--agent-cmd", cmd, "--quiet")
    assert wait_for(lambda: (repo.spy / "ready").exists(), timeout=20)
    agent_pid = int((repo.spy / "ready").read_text())
    kill_group(proc)
    # the agent lives in its own session; a real crash leaves it running. Stop it here.
    os.kill(agent_pid, signal.SIGKILL)
    assert wait_for(lambda: not process_alive(agent_pid))
    dead_run = repo.attempts("tm-k")[0]["run_id"]
    assert repo.task("tm-k")["status"] == "in_progress"
    assert (repo.root / ".taskmill" / "run" / f"run-{dead_run}.lock").exists()

    result = repo.run("--agent-cmd", cmd)

    assert result.returncode == 0, result.describe()
    (recovered,) = result.events_of("recovered")
    assert recovered["task"] == "tm-k" and recovered["from_run"] == dead_run
    (ws,) = result.events_of("workspace")
    assert ws["resumed"] is True
    attempts = repo.attempts("tm-k")
    assert attempts[0]["outcome"] == "interrupted" and attempts[0]["ended_at"]
    assert attempts[0]["run_id"] == dead_run
    assert [a["outcome"] for a in attempts[1:]] == ["passed"]
    assert attempts[1]["run_id"] != dead_run
    seen = (repo.spy / "seen-2").read_text().split()
    assert "part1.txt" in seen and "uncommitted.txt" not in seen
    repo.assert_all_landed_once(["tm-k"])
    assert repo.git("show", "main:part1.txt") == "committed before the crash\n"
    assert repo.git("show", "main:part2.txt") == "after the crash\n"
    # an interrupted turn does not count against the iteration limit
    assert attempts[1]["iteration"] == 1
    repo.verify_ok()


def test_task_landed_by_a_dead_run_is_closed_not_landed_again(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / "again.txt").write_text("should not run")
    """, spy=repo.spy)
    repo.create("tm-z")
    # what a run that died between landing and closing leaves: the task in progress for
    # it, and the landing commit (with its trailer) on main
    repo.ledger.claim("tm-z", "mill:deadbeef", actor="mill:deadbeef")
    (repo.root / "z.txt").write_text("landed before the crash\n")
    repo.git("add", "z.txt")
    repo.git("commit", "-q", "-m", "task z (tm-z)\n\nTaskmill-Task: tm-z")
    landed = repo.tip()
    (repo.root / ".taskmill" / "run").mkdir(exist_ok=True)
    (repo.root / ".taskmill" / "run" / "run-deadbeef.lock").write_text("99999999\n")

    result = repo.run("--agent-cmd", cmd)

    assert result.returncode == 0, result.describe()
    task = repo.task("tm-z")
    assert task["status"] == "closed" and task["close_reason"] == f"landed {landed}"
    assert repo.attempts("tm-z") == []
    assert repo.landings()["tm-z"] == [landed] and repo.tip() == landed
    assert not (repo.spy / "events.log").exists()
    assert not (repo.root / ".taskmill" / "run" / "run-deadbeef.lock").exists()
    repo.verify_ok()


def test_task_of_a_live_run_is_not_taken_over(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        if TASK == "tm-slow":
            save("slow-started", "1")
            time.sleep(4)
        (WT / f"{TASK}.txt").write_text(TASK)
    """, spy=repo.spy)
    repo.create("tm-slow")
    # one worker: the first run cannot take tm-other while tm-slow is in progress
    first = repo.spawn("--agent-cmd", cmd, "--quiet", "-j", "1",
                       events_file=tmp_path / "first.ndjson")
    try:
        assert wait_for(lambda: (repo.spy / "slow-started").exists(), timeout=20)
        repo.create("tm-other")
        second = repo.run("--agent-cmd", cmd)
        assert second.returncode == 0, second.describe()
        assert second.events_of("recovered") == []
        assert [e["task"] for e in second.events_of("dispatched")] == ["tm-other"], (
            second.describe(), second.events, repo.all_attempts(),
            (tmp_path / "first.ndjson").read_text())
    finally:
        out, err = first.communicate(timeout=60)
    assert first.returncode == 0, out + err
    repo.assert_all_landed_once(["tm-slow", "tm-other"])
    runs = {a["run_id"] for a in repo.attempts("tm-slow")}
    assert len(runs) == 1


def test_task_id_that_prefixes_a_landed_task_is_not_taken_as_landed(tmp_path: Path) -> None:
    """Finding a task's landing commit must match its trailer exactly: ``tm-a`` is not
    ``tm-ab`` (nor the Beads-style child ``tm-a.1``), whether the others landed while it
    was being worked or before a crash."""
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        if TASK == "tm-a":
            time.sleep(1.0)  # the others land first, while tm-a is in flight
        (WT / f"{TASK}.txt").write_text(TASK)
    """, spy=repo.spy)
    for tid in ("tm-a", "tm-ab", "tm-a.1"):
        repo.create(tid)

    result = repo.run("--agent-cmd", cmd, "-j", "3")

    assert result.returncode == 0, result.describe()
    repo.assert_all_landed_once(["tm-a", "tm-ab", "tm-a.1"])
    assert repo.git("show", "main:tm-a.txt") == "tm-a"

    # the same after a crash: tm-b was in progress for a dead run, tm-bc has landed
    repo.create("tm-b")
    repo.create("tm-bc")
    only = repo.run("--agent-cmd", cmd, "--only", "tm-bc")
    assert only.returncode == 0, only.describe()
    repo.ledger.claim("tm-b", "mill:deadbeef", actor="mill:deadbeef")
    after_crash = repo.run("--agent-cmd", cmd)
    assert after_crash.returncode == 0, after_crash.describe()
    assert [e["task"] for e in after_crash.events_of("recovered")] == ["tm-b"]
    assert len(repo.attempts("tm-b")) == 1
    repo.assert_all_landed_once(["tm-a", "tm-ab", "tm-a.1", "tm-b", "tm-bc"])
    assert repo.git("show", "main:tm-b.txt") == "tm-b"


def test_two_runs_at_once_never_work_the_same_task(tmp_path: Path) -> None:
    workers = 2
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / f"out-{TASK}.txt").write_text(TASK + "\\n")
        time.sleep(0.5)
    """, spy=repo.spy)
    ids = [repo.create(f"tm-{n}", checks=[f"test -f out-tm-{n}.txt"]) for n in range(8)]

    procs = [repo.spawn("--agent-cmd", cmd, "-j", str(workers), "--quiet",
                        events_file=tmp_path / f"events-{i}.ndjson") for i in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]

    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out + err
    repo.assert_all_landed_once(ids)
    # every task was attempted by one run only, and claimed once
    run_of: dict[str, set[str]] = {}
    for attempt in repo.all_attempts():
        run_of.setdefault(attempt["task_id"], set()).add(attempt["run_id"])
    assert all(len(runs) == 1 for runs in run_of.values()), run_of
    claims = Counter(e.task_id for e in repo.ledger.events() if e.kind == "claimed")
    assert claims == dict.fromkeys(ids, 1)
    # both runs did some of the work, and their event streams agree
    worked = [{json.loads(line)["task"] for line in (tmp_path / f"events-{i}.ndjson")
               .read_text().splitlines() if json.loads(line)["event"] == "dispatched"}
              for i in range(2)]
    assert worked[0] and worked[1] and not worked[0] & worked[1], worked
    assert worked[0] | worked[1] == set(ids)
    starts = [row for row in read_spy_log(repo.spy) if row[1] == "start"]
    assert Counter(row[2] for row in starts) == dict.fromkeys(ids, 1)
    repo.verify_ok()
    assert len(repo.worktrees()) <= 1 + 2 * workers
    assert repo.git("status", "--porcelain").strip() == ""


# Kill points inside taskmill's own git work, reached deterministically through a git shim
# that SIGKILLs taskmill's process group once, before or after the matching command.
KILL_POINTS = [
    ("worktree add", "before"),
    ("worktree add", "after"),
    ("commit -q --no-verify", "after"),
    ("merge --no-ff --no-commit", "after"),   # a conflict left in the worktree
    ("checkout -q --detach", "after"),        # the worktree on the candidate, project checks
    ("read-tree -m -u", "after"),             # the user's checkout moved, the ref not yet
    ("update-ref -m taskmill: land", "before"),
    ("update-ref -m taskmill: land", "after"),  # landed, not yet closed
    ("update-ref -d refs/heads/taskmill", "before"),  # closed, branch and slot not yet cleaned
]


@pytest.mark.parametrize(("match", "when"), KILL_POINTS,
                         ids=[f"{w}-{m.split()[0]}-{m.split()[-1]}" for m, w in KILL_POINTS])
def test_kill_at_each_git_step_then_rerun(tmp_path: Path, match: str, when: str) -> None:
    repo = MillRepo(tmp_path, checks=["! grep -rl '^<<<<<<<' --include=*.txt ."],
                    files={"shared.txt": "line one\nline two\nline three\n"})
    cmd = agent_script(tmp_path / "agent.py", """
        shared = WT / "shared.txt"
        text = shared.read_text()
        if "<<<<<<<" in text:
            keep = [ln for ln in text.splitlines()
                    if not ln.startswith(("<<<<<<<", "=======", ">>>>>>>"))]
            shared.write_text("".join(ln + "\\n" for ln in keep))
        elif f"by {TASK}" not in text:
            time.sleep(0.2)
            shared.write_text(text.replace("line two", f"line two by {TASK}"))
    """, spy=repo.spy)
    ids = ["tm-1", "tm-2"]
    for tid in ids:
        repo.create(tid, checks=[f"grep -q 'by {tid}' shared.txt"])

    killed = repo.run("--agent-cmd", cmd, "-j", "2", env=git_kill_env(tmp_path, match, when))
    assert killed.returncode == -9 or killed.returncode == 137, killed.describe()
    result = repo.run("--agent-cmd", cmd, "-j", "2")

    assert result.returncode == 0, result.describe()
    _assert_clean_end_state_shared(repo, ids)


def _assert_clean_end_state_shared(repo: MillRepo, ids: list[str]) -> None:
    repo.assert_all_landed_once(ids)
    final = repo.git("show", "main:shared.txt")
    assert all(f"by {tid}" in final for tid in ids), final
    assert repo.ledger.store.conn.execute(
        "SELECT count(*) FROM attempts WHERE outcome IS NULL").fetchone()[0] == 0
    repo.verify_ok()
    assert repo.mill_branches() == []
    assert "prunable" not in repo.git("worktree", "list", "--porcelain")
    assert repo.git("symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert repo.git("status", "--porcelain").strip() == ""


@pytest.mark.parametrize("leftover", ["packed-refs.lock", "packed-refs.new"])
def test_branch_of_a_landed_task_left_by_a_killed_run_is_deleted(
        tmp_path: Path, leftover: str) -> None:
    """Killed while deleting the branch after landing: the branch stays, and git's
    packed-refs.lock (or the packed-refs.new it writes under it) is left behind; the next
    run deletes the branch all the same."""
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / f"{TASK}.txt").write_text(TASK)
    """, spy=repo.spy)
    repo.create("tm-1")
    first = repo.run("--agent-cmd", cmd)
    assert first.returncode == 0, first.describe()
    repo.git("branch", "taskmill/tm-1", "main")
    (repo.root / ".git" / leftover).write_text("")
    repo.create("tm-2")
    result = repo.run("--agent-cmd", cmd)
    assert result.returncode == 0, result.describe()
    repo.assert_all_landed_once(["tm-1", "tm-2"])
    assert repo.mill_branches() == []
    assert not (repo.root / ".git" / leftover).exists()


def _killed_while_moving_checkout(repo: MillRepo, how: str) -> tuple[str, str]:
    """The state of the user's checkout when a run was killed in the middle of moving main
    from ``old`` to ``new`` (its journal says so). Returns (old, new)."""
    from taskmill.mill.land import ADVANCE_JOURNAL

    old = repo.tip()
    repo.git("checkout", "-q", "-b", "candidate")
    (repo.root / "a.txt").write_text("a from the candidate\n")
    (repo.root / "gone.txt").unlink()
    (repo.root / "added.txt").write_text("added by the candidate\n")
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", "candidate")
    new = repo.tip("candidate")
    repo.git("checkout", "-q", "main")
    repo.git("branch", "-q", "-D", "candidate")
    if how == "read-tree done":
        repo.git("read-tree", "-m", "-u", old, new)
    elif how == "read-tree half done":  # files partly written, the index not yet
        (repo.root / "a.txt").write_text("a from the candidate\n")
        (repo.root / "added.txt").write_text("added by the candidate\n")
        (repo.root / "gone.txt").unlink()
        (repo.root / ".git" / "index.lock").write_text("")
    elif how == "read-tree cut short":  # killed in the middle of writing a file
        (repo.root / "a.txt").write_text("a from the")
        (repo.root / "added.txt").write_text("")
        (repo.root / ".git" / "index.lock").write_text("")
    elif how == "detached":
        repo.git("update-ref", "--no-deref", "HEAD", old)
    (repo.root / ".taskmill" / "run").mkdir(exist_ok=True)
    (repo.root / ".taskmill" / "run" / ADVANCE_JOURNAL).write_text(json.dumps(
        {"ref": "refs/heads/main", "old": old, "new": new, "checkout": True}))
    return old, new


@pytest.mark.parametrize("how", ["read-tree done", "read-tree half done",
                                 "read-tree cut short", "detached"])
def test_checkout_half_moved_by_a_killed_run_is_put_back(tmp_path: Path, how: str) -> None:
    repo = MillRepo(tmp_path, files={"a.txt": "a\n", "b.txt": "b\n", "gone.txt": "gone\n"})
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / "b.txt").write_text("b from the task\\n")
    """, spy=repo.spy)
    repo.create("tm-1")
    _killed_while_moving_checkout(repo, how)
    (repo.root / "mine.txt").write_text("the user's own file\n")

    result = repo.run("--agent-cmd", cmd)

    assert result.returncode == 0, result.describe()
    repo.assert_all_landed_once(["tm-1"])
    assert repo.git("symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert repo.git("status", "--porcelain").splitlines() == ["?? mine.txt"]
    assert (repo.root / "a.txt").read_text() == "a\n"
    assert (repo.root / "b.txt").read_text() == "b from the task\n"
    assert (repo.root / "gone.txt").read_text() == "gone\n"
    assert not (repo.root / "added.txt").exists()


def test_task_killed_after_its_checks_passed_lands_without_another_turn(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / "a.txt").write_text("a")
    """, spy=repo.spy)
    repo.create("tm-p", checks=["test -f a.txt"])
    killed = repo.run("--agent-cmd", cmd, env=git_kill_env(tmp_path, "merge-tree", "before"))
    assert killed.returncode in (-9, 137), killed.describe()
    assert [a["outcome"] for a in repo.attempts("tm-p")] == ["passed"]

    result = repo.run("--agent-cmd", cmd)

    assert result.returncode == 0, result.describe()
    assert result.events_of("turn_started") == []
    assert [a["outcome"] for a in repo.attempts("tm-p")] == ["passed"]
    repo.assert_all_landed_once(["tm-p"])
    (finished,) = result.events_of("task_finished")
    assert finished["iterations"] == 1


def test_turn_redone_after_a_crash_sees_the_previous_failure(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / "n.txt").write_text(str(ITER))
        if CALL == 2:
            save("in-turn-2", "1")
            time.sleep(60)
    """, spy=repo.spy)
    repo.create("tm-f", checks=["echo \"FAILURE-OF-ITERATION-$(cat n.txt)\"; test \"$(cat n.txt)\" = 2"])
    proc = repo.spawn("--agent-cmd", cmd, "--quiet")
    assert wait_for(lambda: (repo.spy / "in-turn-2").exists(), timeout=20)
    kill_group(proc)
    for row in read_spy_log(repo.spy):
        if row[1] == "start" and row[4] == "2":
            os.kill(int(row[5]), signal.SIGKILL)  # the orphaned agent

    result = repo.run("--agent-cmd", cmd)

    assert result.returncode == 0, result.describe()
    assert [a["outcome"] for a in repo.attempts("tm-f")] == ["failed", "interrupted", "passed"]
    redone = (repo.spy / "prompt-tm-f-3.stdin").read_text()
    assert "FAILURE-OF-ITERATION-1" in redone
    assert "This is iteration 2 of" in redone
    repo.assert_all_landed_once(["tm-f"])


def test_agents_orphaned_by_a_killed_run_are_stopped_before_their_work_is_redone(
        tmp_path: Path) -> None:
    """kill -9 of taskmill leaves its agents running (they have sessions of their own). The
    next run takes their tasks over: the orphans must not keep writing into worktrees that
    are redone or given to other tasks."""
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        if CALL == 1 and TASK in ("tm-0", "tm-1"):  # the two the killed run works
            child = subprocess.Popen(["sleep", "60"])  # a helper the agent started
            save(f"helper-{TASK}", str(outer_pid(child.pid)))
            save(f"orphan-{TASK}", str(PID))
            time.sleep(2.5)
            (WT / "late.txt").write_text(f"written late by the orphaned agent of {TASK}\\n")
        (WT / f"{TASK}.txt").write_text(TASK)
    """, spy=repo.spy)
    ids = [repo.create(f"tm-{n}") for n in range(4)]
    proc = repo.spawn("--agent-cmd", cmd, "-j", "2", "--quiet")
    assert wait_for(lambda: len(list(repo.spy.glob("orphan-*"))) == 2, timeout=20)
    kill_group(proc)
    orphans = [int(p.read_text()) for p in repo.spy.glob("orphan-*")]
    helpers = [int(p.read_text()) for p in repo.spy.glob("helper-*")]
    assert all(process_alive(pid) for pid in orphans + helpers)

    result = repo.run("--agent-cmd", cmd, "-j", "2")

    assert result.returncode == 0, result.describe()
    assert all(wait_for(lambda pid=pid: not process_alive(pid), timeout=5)
               for pid in orphans + helpers)
    time.sleep(3)  # past the moment the orphans would have written
    repo.assert_all_landed_once(ids)
    assert "late.txt" not in repo.git("ls-tree", "-r", "--name-only", "main").split()
    for wt in repo.worktrees()[1:]:
        assert not (Path(wt) / "late.txt").exists()


# -- the batching merge queue --------------------------------------------------------------------

# The project check, run by the merge queue only (each task has checks of its own): it notes
# the tree it checks, and while ``hold`` exists it says so and sleeps, so that the run can be
# killed during a batch's checks.
PROJECT_CHECK = """#!/bin/sh
echo "$(git rev-parse HEAD^{{tree}}) $(ls out-*.txt 2>/dev/null | tr '\\n' ' ')" >> {spy}/batch-checks
if [ -e {spy}/hold ]; then
  touch {spy}/checking
  sleep 60
fi
exit 0
"""


def _batch_repo(tmp_path: Path, n: int) -> tuple[MillRepo, str, list[str]]:
    spy = tmp_path / "spy"
    check = tmp_path / "project-check.sh"
    check.write_text(PROJECT_CHECK.format(spy=spy), encoding="utf-8")
    check.chmod(0o755)
    repo = MillRepo(tmp_path, checks=[f"sh {check}"])
    config = repo.root / ".taskmill" / "config.toml"
    config.write_text(config.read_text() + "\n[merge]\nbatch_max = 5\nbatch_wait = 1.5\n")
    repo.git("commit", "-qam", "merge queue: batches")
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / f"out-{TASK}.txt").write_text(f"{TASK}\\n")
    """, spy=repo.spy)
    ids = [repo.create(f"tm-{i}", checks=[f"test -f out-tm-{i}.txt"]) for i in range(n)]
    return repo, cmd, ids


def _events(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize(("match", "when"), [("update-ref -m taskmill: land", "after"),
                                             ("read-tree -m -u", "after")],
                         ids=["landed-not-closed", "checkout-moved-ref-not"])
def test_kill_during_a_batchs_checks_and_during_its_landing_then_each_task_lands_once(
        tmp_path: Path, match: str, when: str) -> None:
    repo, cmd, ids = _batch_repo(tmp_path, 5)
    start = repo.tip()

    # 1. kill -9 while the merge queue checks a batch of parked branches
    (repo.spy / "hold").touch()
    events = tmp_path / "events-checks.ndjson"
    proc = repo.spawn("--agent-cmd", cmd, "-j", "3", "--quiet", events_file=events)
    try:
        assert wait_for(lambda: (repo.spy / "checking").exists(), timeout=60), \
            proc.poll() or _events(events)
    finally:
        kill_group(proc)
    batches = [e["tasks"] for e in _events(events) if e["event"] == "batch_started"]
    assert batches and len(batches[-1]) >= 2, batches  # parked branches checked together
    assert repo.tip() == start  # nothing landed
    parked = [str(t) for t in batches[-1]]
    (repo.spy / "hold").unlink()

    # 2. kill -9 in the middle of the landing of the next batch: the resumed passed branches
    # go straight to the queue (no new turn), are checked and land, and the run dies
    killed = repo.run("--agent-cmd", cmd, "-j", "3", env=git_kill_env(tmp_path, match, when))
    assert killed.returncode in (-9, 137), killed.describe()
    resumed = {e["task"] for e in killed.events_of("recovered")}
    assert set(parked) <= resumed, (parked, resumed)
    assert killed.events_of("batch_started"), killed.describe()

    # 3. the next run finishes: every task landed once, each parked one without a new turn
    final = repo.run("--agent-cmd", cmd, "-j", "3", timeout=120)
    assert final.returncode == 0, final.describe()
    _assert_clean_end_state_batches(repo, ids)
    for tid in parked:
        assert [a["outcome"] for a in repo.attempts(tid)] == ["passed"], repo.attempts(tid)


def _assert_clean_end_state_batches(repo: MillRepo, ids: list[str]) -> None:
    repo.assert_all_landed_once(ids)
    for tid in ids:
        assert repo.git("show", f"main:out-{tid}.txt") == f"{tid}\n"
    assert repo.mill_branches() == [], _branch_diagnostics(repo)
    assert repo.git("symbolic-ref", "-q", "HEAD", check=False).strip() == "refs/heads/main"
    assert repo.git("status", "--porcelain").strip() == ""
    unfinished = [a for a in repo.all_attempts() if a["outcome"] is None]
    assert unfinished == []
    repo.verify_ok()
    # the batches are in the audit trail, as run-level events
    kinds = [e.kind for e in repo.ledger.events() if e.task_id is None]
    assert "batch_started" in kinds and "batch_checks" in kinds
