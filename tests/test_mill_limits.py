"""Limits and circuit breakers stop a task's loop and mark it blocked with the reason in a
comment; a rate-limited agent is paused and resumed without burning iterations (the back-off
itself is tested in-process on a fake clock: tests/test_mill_inprocess.py)."""

from __future__ import annotations

import time
from pathlib import Path

from mill_helpers import MillRepo, agent_script, process_alive, read_spy_log, wait_for

# a check whose output differs every time, so the same-failure breaker stays out of the way
VARYING_FAILURE = "echo \"not yet, nonce $(date +%N)$$\"; exit 1"


def _blocked_comment(repo: MillRepo, task_id: str) -> str:
    task = repo.task(task_id)
    assert task["status"] == "blocked", task
    texts = [c["text"] for c in task["comments"] if "taskmill blocked" in c["text"]]
    assert len(texts) == 1, task["comments"]
    return texts[0]


def test_max_iterations_default_5_and_flag(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / "progress.txt").write_text(str(ITER))
    """, spy=repo.spy)
    repo.create("tm-five", checks=[VARYING_FAILURE])
    repo.create("tm-two", checks=[VARYING_FAILURE])

    default = repo.run("--agent-cmd", cmd, "--only", "tm-five")
    flagged = repo.run("--agent-cmd", cmd, "--only", "tm-two", "--max-iterations", "2")

    assert default.returncode == 1, default.describe()
    assert flagged.returncode == 1, flagged.describe()
    assert [a["iteration"] for a in repo.attempts("tm-five")] == [1, 2, 3, 4, 5]
    assert [a["iteration"] for a in repo.attempts("tm-two")] == [1, 2]
    assert "--max-iterations (5)" in _blocked_comment(repo, "tm-five")
    assert "--max-iterations (2)" in _blocked_comment(repo, "tm-two")
    assert repo.landings() == {}
    assert repo.mill_branches() == ["taskmill/tm-five", "taskmill/tm-two"]  # work kept
    repo.verify_ok()


def test_turn_timeout_kills_the_whole_process_group_and_blocks(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        child = subprocess.Popen(["sh", "-c", f"sleep 120 & echo $! > {SPY}/grandchild.in; wait"])
        save("child.pid", str(outer_pid(child.pid)))
        while not (SPY / "grandchild.in").exists() or not (SPY / "grandchild.in").read_text():
            time.sleep(0.01)
        save("grandchild.pid", str(outer_pid(int((SPY / "grandchild.in").read_text()))))
        (WT / "started.txt").write_text("x")
        time.sleep(120)
    """, spy=repo.spy)
    repo.create("tm-slow", checks=["true"])

    result = repo.run("--agent-cmd", cmd, "--turn-timeout", "1")

    assert result.returncode == 1, result.describe()
    assert result.seconds < 20, result.describe()
    assert wait_for(lambda: (repo.spy / "grandchild.pid").exists(), timeout=1)
    pids = [int((repo.spy / name).read_text()) for name in ("grandchild.pid", "child.pid")]
    agent_pid = int(next(row for row in read_spy_log(repo.spy) if row[1] == "start")[5])
    for pid in (*pids, agent_pid):
        assert wait_for(lambda pid=pid: not process_alive(pid), timeout=5), pid
    (attempt,) = repo.attempts("tm-slow")
    assert attempt["outcome"] == "timeout"
    assert attempt["detail"]["timed_out"] is True
    comment = _blocked_comment(repo, "tm-slow")
    assert "timed out" in comment or "wall-clock" in comment, comment
    assert repo.landings() == {}


def test_token_budget(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / "n.txt").write_text(str(ITER))
        usage(input_tokens=500, output_tokens=100)
    """, spy=repo.spy)
    repo.create("tm-tok", checks=[VARYING_FAILURE])
    result = repo.run("--agent-cmd", cmd, "--max-tokens", "1000")
    assert result.returncode == 1, result.describe()
    assert len(repo.attempts("tm-tok")) == 2  # 600 < 1000 after one turn, 1200 after two
    comment = _blocked_comment(repo, "tm-tok")
    assert "token budget" in comment and "1200" in comment, comment
    (outcome,) = [e for e in result.events if e["event"] == "task_finished"]
    assert outcome["outcome"] == "blocked"


def test_cost_budget(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / "n.txt").write_text(str(ITER))
        usage(input_tokens=1, output_tokens=1, cost_usd=0.4)
    """, spy=repo.spy)
    repo.create("tm-cost", checks=[VARYING_FAILURE])
    result = repo.run("--agent-cmd", cmd, "--max-cost", "1.0", "--json")
    assert result.returncode == 1, result.describe()
    assert len(repo.attempts("tm-cost")) == 3  # 0.8 < 1.0 after two turns, 1.2 after three
    assert "cost budget" in _blocked_comment(repo, "tm-cost")


def test_breaker_no_change_in_two_consecutive_turns(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        print("thinking hard, changing nothing")
    """, spy=repo.spy)
    repo.create("tm-idle", checks=[VARYING_FAILURE])
    result = repo.run("--agent-cmd", cmd)
    assert result.returncode == 1, result.describe()
    attempts = repo.attempts("tm-idle")
    assert len(attempts) == 2
    assert [a["detail"]["changed"] for a in attempts] == [False, False]
    assert "no change" in _blocked_comment(repo, "tm-idle")


def test_breaker_no_change_resets_when_the_agent_changes_something(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        if ITER % 2 == 0:
            (WT / "n.txt").write_text(str(ITER))
    """, spy=repo.spy)
    repo.create("tm-alt", checks=[VARYING_FAILURE])
    result = repo.run("--agent-cmd", cmd, "--max-iterations", "4")
    assert result.returncode == 1, result.describe()
    assert len(repo.attempts("tm-alt")) == 4
    assert "--max-iterations (4)" in _blocked_comment(repo, "tm-alt")


def test_breaker_same_failure_three_times(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / "n.txt").write_text(str(ITER))   # a change every turn
    """, spy=repo.spy)
    # the same failure, up to its timing
    check = "echo \"AssertionError: boom (took $(date +%N) ms)\"; exit 1"
    repo.create("tm-same", checks=[check])
    result = repo.run("--agent-cmd", cmd)
    assert result.returncode == 1, result.describe()
    assert len(repo.attempts("tm-same")) == 3
    comment = _blocked_comment(repo, "tm-same")
    assert "same failure 3 times" in comment and "AssertionError: boom" in comment, comment


def test_rate_limit_pauses_the_agents_other_work_too(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        if TASK == "tm-hit" and CALL == 1:
            log("limited")
            usage(rate_limited=True, retry_after_s=2)
            sys.exit(0)
        if TASK == "tm-other" and CALL == 1:
            # still in its first turn when the limit is reported, and a little after
            while "limited" not in (SPY / "events.log").read_text():
                time.sleep(0.02)
            time.sleep(0.8)
        (WT / f"{TASK}-{ITER}.txt").write_text("x")
    """, spy=repo.spy)
    repo.create("tm-hit", checks=["true"])
    repo.create("tm-other", checks=["test -f tm-other-2.txt"])  # needs a second turn

    result = repo.run("--agent-cmd", cmd, "-j", "2")

    assert result.returncode == 0, result.describe()
    log = read_spy_log(repo.spy)
    limited_at = next(float(r[0]) for r in log if r[1] == "limited")
    second_turn = next(float(r[0]) for r in log if r[1] == "start" and r[2] == "tm-other"
                       and r[3] == "2")
    assert second_turn - limited_at >= 1.7, log
    repo.assert_all_landed_once(["tm-hit", "tm-other"])


def test_budgets_and_limits_from_config(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path, run={"max_iterations": 1})
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / "n.txt").write_text(str(ITER))
    """, spy=repo.spy)
    repo.create("tm-c", checks=[VARYING_FAILURE])
    start = time.monotonic()
    result = repo.run("--agent-cmd", cmd)
    assert result.returncode == 1, result.describe()
    assert len(repo.attempts("tm-c")) == 1
    assert "--max-iterations (1)" in _blocked_comment(repo, "tm-c")
    assert time.monotonic() - start < 30
