"""Landing, end to end: no empty commits (a task with nothing to land is "already
satisfied"), a reopened task's landing carries its lap and crash recovery accepts only the
current lap's, merge-queue rejections are in the ledger, and an attempt's diff is its own."""

from __future__ import annotations

import json
import os
from pathlib import Path

from starlette.testclient import TestClient

from mill_helpers import MillRepo, agent_script
from taskmill.clock import SystemClock
from taskmill.web.app import create_app

LAP = "Taskmill-Lap"


def _message(repo: MillRepo, sha: str) -> str:
    return repo.git("log", "-1", "--format=%B", sha)


def _kinds(repo: MillRepo, task_id: str) -> list[str]:
    return [e.kind for e in repo.ledger.events(task_id)]


def _dead_run_claims(repo: MillRepo, task_id: str) -> None:
    """What a run killed right after claiming ``task_id`` leaves: the task in progress for a
    run whose lock nobody holds."""
    repo.ledger.claim(task_id, "mill:deadbeef", actor="mill:deadbeef")
    (repo.root / ".taskmill" / "run").mkdir(exist_ok=True)
    (repo.root / ".taskmill" / "run" / "run-deadbeef.lock").write_text("99999999\n")


# -- 8: no empty commits ----------------------------------------------------------------------


def test_noop_turn_on_a_satisfied_task_closes_it_without_a_commit(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path, files={"greeting.txt": "hello\n"})
    cmd = agent_script(tmp_path / "agent.py", "pass  # nothing to do: it is done already",
                       spy=repo.spy)
    repo.create("tm-s", checks=["grep -q hello greeting.txt"])
    tip = repo.tip()

    result = repo.run("--agent-cmd", cmd)

    assert result.returncode == 0, result.describe()
    assert repo.tip() == tip, repo.git("log", "--format=%H %s", f"{tip}..main")
    assert "tm-s" not in repo.landings()
    task = repo.task("tm-s")
    assert task["status"] == "closed"
    assert task["close_reason"] == f"already satisfied at {tip}"
    assert "already_satisfied" in _kinds(repo, "tm-s")
    (event,) = [e for e in repo.ledger.events("tm-s") if e.kind == "already_satisfied"]
    assert event.data["commit"] == tip
    assert [e["commit"] for e in result.events_of("satisfied", "tm-s")] == [tip]
    assert result.events_of("landed") == []
    finished = result.events_of("run_finished")[-1]
    assert (finished["landed"], finished["satisfied"], finished["blocked"]) == (0, 1, 0)
    assert "satisfied" in result.stdout
    # the attempt passed, and made no commit (it is not shown the commit it started from)
    (attempt,) = repo.attempts("tm-s")
    assert attempt["outcome"] == "passed" and attempt["commit_sha"] is None
    assert repo.mill_branches() == []
    repo.verify_ok()


def test_a_task_whose_work_is_already_on_the_target_lands_nothing(tmp_path: Path) -> None:
    """The agent does the work, but the target already has exactly that change (the user
    made it meanwhile): the merged tree is the target's, so no commit is made."""
    repo = MillRepo(tmp_path)
    root = repo.root
    cmd = agent_script(tmp_path / "agent.py", f"""
        (WT / "feature.txt").write_text("done\\n")
        # the same change reaches main from elsewhere while the task is in flight
        root = pathlib.Path({str(root)!r})
        (root / "feature.txt").write_text("done\\n")
        subprocess.run(["git", "-C", str(root), "add", "feature.txt"], check=True)
        subprocess.run(["git", "-C", str(root), "commit", "-qm", "user: feature"], check=True)
    """, spy=repo.spy)
    repo.create("tm-f", checks=["test -f feature.txt"])

    result = repo.run("--agent-cmd", cmd)

    assert result.returncode == 0, result.describe()
    user_commit = repo.tip()
    assert repo.git("log", "-1", "--format=%s", "main").strip() == "user: feature"
    assert repo.task("tm-f")["close_reason"] == f"already satisfied at {user_commit}"
    assert "tm-f" not in repo.landings()


def test_reopened_landed_task_with_nothing_new_lands_no_second_commit(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / "out.txt").write_text("the work\\n")  # the same on every lap
    """, spy=repo.spy)
    repo.create("tm-o", checks=["test -f out.txt"])
    first = repo.run("--agent-cmd", cmd)
    assert first.returncode == 0, first.describe()
    landed = repo.tip()
    repo.ledger.reopen("tm-o")

    second = repo.run("--agent-cmd", cmd)

    assert second.returncode == 0, second.describe()
    assert repo.tip() == landed and repo.landings()["tm-o"] == [landed]
    assert repo.task("tm-o")["close_reason"] == f"already satisfied at {landed}"


# -- 8: laps -------------------------------------------------------------------------------------


def test_reopened_landed_task_lands_again_with_its_lap(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / "out.txt").write_text(f"call {CALL}\\n")
    """, spy=repo.spy)
    repo.create("tm-l", checks=["test -f out.txt"])

    first = repo.run("--agent-cmd", cmd)
    assert first.returncode == 0, first.describe()
    lap1 = repo.task("tm-l")["close_reason"].split()[1]
    repo.ledger.reopen("tm-l")
    second = repo.run("--agent-cmd", cmd)
    assert second.returncode == 0, second.describe()

    lap2 = repo.task("tm-l")["close_reason"].split()[1]
    assert lap2 != lap1
    assert repo.landings()["tm-l"] == [lap2, lap1]
    assert f"{LAP}: 1" in _message(repo, lap1).splitlines()
    assert f"{LAP}: 2" in _message(repo, lap2).splitlines()
    assert repo.git("show", "main:out.txt") == "call 2\n"
    assert [(a["lap"], a["iteration"]) for a in repo.attempts("tm-l")] == [(1, 1), (2, 1)]


def test_reopened_task_resumed_after_a_crash_is_not_closed_by_its_old_landing(
        tmp_path: Path) -> None:
    """A landed task is reopened; the run that took it died before its first turn. The
    next run must do the new work, not find the old landing and close the task with it."""
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / "out.txt").write_text("the old work\\n" if CALL == 1 else "the new work\\n")
    """, spy=repo.spy)
    repo.create("tm-r", checks=["test -f out.txt"])
    first = repo.run("--agent-cmd", cmd)
    assert first.returncode == 0, first.describe()
    old = repo.tip()
    assert repo.task("tm-r")["close_reason"] == f"landed {old}"
    repo.ledger.reopen("tm-r")
    _dead_run_claims(repo, "tm-r")

    result = repo.run("--agent-cmd", cmd)

    assert result.returncode == 0, result.describe()
    assert [e["task"] for e in result.events_of("recovered")] == ["tm-r"]
    new = repo.task("tm-r")["close_reason"].split()[1]
    assert new != old, "closed with the landing of its previous lap"
    assert repo.git("show", "main:out.txt") == "the new work\n"
    assert repo.landings()["tm-r"] == [new, old]
    assert f"{LAP}: 2" in _message(repo, new).splitlines()
    assert [a["lap"] for a in repo.attempts("tm-r")] == [1, 2]


def test_reopened_task_that_landed_before_a_crash_is_closed_with_that_landing(
        tmp_path: Path) -> None:
    """The other side: the current lap did land before the run died: it is closed with
    that landing, and no agent is run again."""
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / f"call-{CALL}.txt").write_text("work")
    """, spy=repo.spy)
    repo.create("tm-k")
    first = repo.run("--agent-cmd", cmd)
    assert first.returncode == 0, first.describe()
    repo.ledger.reopen("tm-k")
    _dead_run_claims(repo, "tm-k")
    # what the dead run landed for lap 2 before it could close the task
    (repo.root / "k.txt").write_text("lap 2\n")
    repo.git("add", "k.txt")
    repo.git("commit", "-q", "-m", f"task k (tm-k)\n\nTaskmill-Task: tm-k\n{LAP}: 2")
    landed = repo.tip()

    result = repo.run("--agent-cmd", cmd)

    assert result.returncode == 0, result.describe()
    assert repo.task("tm-k")["close_reason"] == f"landed {landed}"
    assert repo.tip() == landed and len(repo.attempts("tm-k")) == 1
    assert not (repo.spy / "calls-tm-k" / "2").exists()


# -- 9: merge-queue rejections ---------------------------------------------------------------


def test_conflict_on_every_turn_is_recorded_and_named_in_the_block_reason(
        tmp_path: Path) -> None:
    repo = MillRepo(tmp_path, files={"shared.txt": "base\n"})
    root = repo.root
    # each turn, the user commits a different shared.txt on main: the branch conflicts
    cmd = agent_script(tmp_path / "agent.py", f"""
        root = pathlib.Path({str(root)!r})
        (root / "shared.txt").write_text(f"user {{CALL}}\\n")
        subprocess.run(["git", "-C", str(root), "commit", "-qam", f"user {{CALL}}"], check=True)
        (WT / "shared.txt").write_text(f"task {{CALL}}\\n")
    """, spy=repo.spy)
    repo.create("tm-c", checks=["grep -q task shared.txt"])

    result = repo.run("--agent-cmd", cmd, "--max-iterations", "3")

    assert result.returncode == 1, result.describe()
    task = repo.task("tm-c")
    assert task["status"] == "blocked"
    reason = task["comments"][-1]["text"]
    assert "the merge queue rejected it 3 times" in reason, reason
    assert "conflict in shared.txt" in reason, reason
    assert "without passing its checks" not in reason
    assert [a["outcome"] for a in repo.attempts("tm-c")] == ["rejected_conflict"] * 3
    for attempt in repo.attempts("tm-c"):
        assert attempt["detail"]["rejection"] == "conflict in shared.txt"
    rejections = [e for e in repo.ledger.events("tm-c") if e.kind == "merge_rejected"]
    assert len(rejections) == 3
    assert {e.data["reason"] for e in rejections} == {"conflict"}
    assert "shared.txt" in rejections[0].data["detail"]
    assert [e.data["attempt"] for e in rejections] == [a["id"] for a in repo.attempts("tm-c")]
    log = repo.cli("log", "tm-c")
    assert log.returncode == 0 and "merge_rejected" in log.stdout, log.stdout + log.stderr
    # totals: no attempt passed (landed) in the end
    stats = json.loads(repo.cli("stats", "--json").stdout)
    assert stats["attempts"] == 3


def test_red_project_check_on_every_turn_is_recorded_and_named_in_the_block_reason(
        tmp_path: Path) -> None:
    project_check = ("if [ -f bad.txt ]; then echo 'PROJECT: bad.txt is not allowed'; "
                     "exit 1; fi")
    repo = MillRepo(tmp_path, checks=[project_check])
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / "bad.txt").write_text(f"turn {CALL}\\n")
    """, spy=repo.spy)
    repo.create("tm-p", checks=["test -f bad.txt"])

    result = repo.run("--agent-cmd", cmd, "--max-iterations", "2")

    assert result.returncode == 1, result.describe()
    reason = repo.task("tm-p")["comments"][-1]["text"]
    assert "the merge queue rejected it 2 times" in reason, reason
    assert "the project checks failed on the merged result" in reason, reason
    assert "PROJECT: bad.txt is not allowed" in reason, reason
    attempts = repo.attempts("tm-p")
    assert [a["outcome"] for a in attempts] == ["rejected_checks"] * 2
    assert attempts[0]["detail"]["merge_checks"][0]["ok"] is False
    assert [e.data["reason"] for e in repo.ledger.events("tm-p")
            if e.kind == "merge_rejected"] == ["merge_checks"] * 2
    totals = repo.ledger.attempt_totals(SystemClock().now())["all"]
    assert (totals["attempts"], totals["passed"]) == (2, 0)
    assert "tm-p" not in repo.landings()


# -- 10: attempt diffs and numbering ---------------------------------------------------------


def test_attempt_diffs_are_the_attempts_own_and_show_run_and_lap(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    # the user's own commit is the tip every task starts from
    (repo.root / "user.txt").write_text("the user's own work\n")
    repo.git("add", "user.txt")
    repo.git("commit", "-q", "-m", "user: own work")
    cmd = agent_script(tmp_path / "agent.py", """
        if TASK == "tm-d" and ITER == 2:
            # two commits in one turn: the agent's own, and what it leaves to taskmill
            (WT / "a.txt").write_text("from the agent's commit\\n")
            subprocess.run(["git", "add", "a.txt"], check=True)
            subprocess.run(["git", "commit", "-qm", "agent: a"], check=True)
            (WT / "b.txt").write_text("left uncommitted\\n")
    """, spy=repo.spy)
    repo.create("tm-d", checks=["test -f b.txt"])  # turn 1 changes nothing and fails
    repo.create("tm-n", checks=["true"])  # nothing to do: passes without a change

    result = repo.run("--agent-cmd", cmd)
    assert result.returncode == 0, result.describe()

    first, second = repo.attempts("tm-d")
    (noop,) = repo.attempts("tm-n")
    assert first["commit_sha"] is None and noop["commit_sha"] is None
    app = create_app(repo.root, dict(os.environ), SystemClock())
    with TestClient(app, base_url="http://127.0.0.1") as client:
        for attempt, tid in ((first, "tm-d"), (noop, "tm-n")):
            resp = client.get(f"/api/tasks/{tid}/attempts/{attempt['id']}/diff")
            assert resp.status_code == 200, resp.text
            data = resp.json()
            assert data["no_change"] is True and data["diff"] == "" and data["commit"] is None
        data = client.get(f"/api/tasks/tm-d/attempts/{second['id']}/diff").json()
        assert data["no_change"] is False
        assert data["base"] == second["detail"]["start"]
        assert data["commit"] == second["commit_sha"]
        assert "+++ b/a.txt" in data["diff"] and "+++ b/b.txt" in data["diff"]
        assert "user.txt" not in data["diff"]
        # the run and lap of each attempt, in the API
        shown = client.get("/api/tasks/tm-d").json()["attempts"]
        assert [(a["run_id"], a["lap"], a["iteration"]) for a in shown] == [
            (first["run_id"], 1, 1), (first["run_id"], 1, 2)]
    # ...and in `show` and `show --json`
    proc = repo.cli("show", "tm-d", "--json")
    assert proc.returncode == 0, proc.stderr
    attempts = json.loads(proc.stdout)["attempts"]
    assert [(a["run_id"], a["lap"]) for a in attempts] == [(first["run_id"], 1)] * 2
    text = repo.cli("show", "tm-d")
    assert first["run_id"] in text.stdout and "no change" in text.stdout, text.stdout
