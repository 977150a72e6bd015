"""End-to-end tests of ``taskmill run``: the agent loop, landing, ordering, records, events.

Every test drives a real ``taskmill run`` process on a real git repository, with small
Python scripts as agents (see ``mill_helpers.agent_script``).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from mill_helpers import MillRepo, agent_script, read_spy_log


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_lands_every_task_once_and_closes_it_with_the_commit(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / f"out-{TASK}.txt").write_text(f"work of {TASK}\\n")
        print(f"agent says: finished {TASK}")
    """, spy=repo.spy)
    ids = [repo.create(f"tm-{n}", checks=[f"test -f out-tm-{n}.txt"]) for n in "abc"]
    before = repo.tip()

    result = repo.run("--agent-cmd", cmd, "-j", "2")

    assert result.returncode == 0, result.describe()
    repo.assert_all_landed_once(ids)
    # squash landing: one commit per task, in a straight line on top of the old tip
    log = repo.git("rev-list", "--parents", f"{before}..main").splitlines()
    assert len(log) == 3 and all(len(line.split()) == 2 for line in log)
    # the user's clean checkout of main was moved forward with it
    assert repo.git("symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert repo.git("status", "--porcelain").strip() == ""
    for tid in ids:
        assert (repo.root / f"out-{tid}.txt").read_text() == f"work of {tid}\n"
    # the summary table names every task
    for tid in ids:
        assert tid in result.stdout
    assert "3 landed" in result.stdout
    # finished branches are gone, the worktree pool is bounded by the workers
    assert repo.mill_branches() == []
    assert len(repo.worktrees()) <= 1 + 2
    repo.verify_ok()
    # the full agent output is kept in the log named by the attempt
    attempt = repo.attempts("tm-a")[-1]
    assert "agent says: finished tm-a" in Path(attempt["log_path"]).read_text()
    assert Path(attempt["log_path"]).resolve().is_relative_to((repo.root / ".taskmill").resolve())


def test_second_iteration_prompt_holds_the_failing_check_output(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    # the check prints a distinctive line and fails until value.txt says 2
    check = "v=$(cat value.txt); echo \"CHECK-SAYS: expected 2 but value is $v\"; test \"$v\" = 2"
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / "value.txt").write_text(str(ITER))
        notes = pathlib.Path(os.environ["TASKMILL_PROGRESS_FILE"])
        with notes.open("a") as fh:
            fh.write(f"NOTE-FROM-ITERATION-{ITER}: tried writing {ITER}\\n")
        usage(input_tokens=100 * ITER, output_tokens=10 * ITER, cost_usd=0.25)
        print("I am done, everything passes!")
    """, spy=repo.spy)
    repo.create("tm-v", "Make value two", checks=[check],
                description="DESCRIPTION-MARKER: value.txt must hold 2")

    result = repo.run("--agent-cmd", cmd, "-j", "1")

    assert result.returncode == 0, result.describe()
    repo.assert_all_landed_once(["tm-v"])
    first = (repo.spy / "prompt-tm-v-1.stdin").read_text()
    second = (repo.spy / "prompt-tm-v-2.stdin").read_text()
    # stdin and $TASKMILL_PROMPT_FILE carry the same prompt
    assert second == (repo.spy / "prompt-tm-v-2.file").read_text()
    for prompt in (first, second):
        assert "tm-v" in prompt and "Make value two" in prompt
        assert "DESCRIPTION-MARKER" in prompt
    assert "CHECK-SAYS: expected 2 but value is 1" not in first
    assert "CHECK-SAYS: expected 2 but value is 1" in second
    assert "NOTE-FROM-ITERATION-1" in second
    # the agent's environment
    env = json.loads((repo.spy / "env-tm-v-2.json").read_text())
    assert env["TASKMILL_TASK_ID"] == "tm-v"
    assert env["TASKMILL_TASK_TITLE"] == "Make value two"
    assert env["TASKMILL_ITERATION"] == "2"
    assert Path(env["TASKMILL_WORKTREE"]).is_relative_to(repo.pool)
    # the ledger only through the mill's socket for this turn (gone when the turn ended)
    assert "TASKMILL_DIR" not in env
    assert Path(env["TASKMILL_SOCKET"]).parent.parent == repo.root / ".taskmill" / "run" / "cap"
    assert not Path(env["TASKMILL_SOCKET"]).exists()

    # every attempt recorded, with its figures, outcome, commit and log
    attempts = repo.attempts("tm-v")
    assert [a["iteration"] for a in attempts] == [1, 2]
    assert [a["outcome"] for a in attempts] == ["failed", "passed"]
    for n, a in enumerate(attempts, start=1):
        assert a["agent"] == "cmd"
        assert a["started_at"] and a["ended_at"] and _ts(a["ended_at"]) >= _ts(a["started_at"])
        assert (a["input_tokens"], a["output_tokens"]) == (100 * n, 10 * n)
        assert a["cost_usd"] == 0.25
        assert a["commit_sha"] and repo.git("cat-file", "-t", a["commit_sha"]).strip() == "commit"
        assert "I am done" in Path(a["log_path"]).read_text()
    assert "CHECK-SAYS: expected 2 but value is 1" in attempts[0]["detail"]["failure"]
    assert attempts[0]["run_id"] == attempts[1]["run_id"]
    # the landed tree has iteration 2's work
    assert repo.git("show", "main:value.txt") == "2"

    # `taskmill show` lists the attempts (text and JSON)
    shown = repo.cli("show", "tm-v")
    assert shown.returncode == 0, shown.stderr
    assert "Attempts" in shown.stdout and "failed" in shown.stdout and "passed" in shown.stdout
    data = json.loads(repo.cli("show", "tm-v", "--json").stdout)
    assert [a["outcome"] for a in data["attempts"]] == ["failed", "passed"]
    assert data["close_reason"] == f"landed {repo.tip()}"
    repo.verify_ok()


def test_agent_claiming_done_counts_for_nothing_and_exit_code_is_1(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        if TASK == "tm-liar":
            (WT / "attempt.txt").write_text(str(ITER))   # a change every turn
            print("DONE. All checks pass. Task complete.")
            usage(input_tokens=1, output_tokens=1)
        else:
            (WT / "good.txt").write_text("ok")
    """, spy=repo.spy)
    repo.create("tm-liar", "Claims success", checks=["echo \"missing proof.txt\" >&2; test -f proof.txt"])
    repo.create("tm-good", "Honest work", checks=["test -f good.txt"])

    result = repo.run("--agent-cmd", cmd, "--max-iterations", "2", "-j", "2")

    assert result.returncode == 1, result.describe()
    liar = repo.task("tm-liar")
    assert liar["status"] == "blocked"
    assert any("max-iterations" in c["text"] for c in liar["comments"]), liar["comments"]
    assert [a["outcome"] for a in repo.attempts("tm-liar")] == ["failed", "failed"]
    assert "tm-liar" not in repo.landings()
    repo.assert_all_landed_once(["tm-good"])
    # the summary table shows both, and why the blocked one stopped
    assert "tm-good" in result.stdout and "tm-liar" in result.stdout
    assert "blocked" in result.stdout
    assert "1 landed, 1 not landed" in result.stdout
    repo.verify_ok()


def test_a_non_zero_exit_says_why_on_stderr_even_with_json_and_quiet(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / "attempt.txt").write_text(str(ITER))
    """, spy=repo.spy)
    repo.create("tm-red", "Never green", checks=["echo 'proof.txt is missing' >&2; exit 1"])

    result = repo.run("--agent-cmd", cmd, "--max-iterations", "1", "--json", "--quiet")

    assert result.returncode == 1, result.describe()
    assert json.loads(result.stdout)["exit_code"] == 1  # stdout stays the JSON alone
    first, *rest = result.stderr.strip().splitlines()
    assert first.startswith("taskmill: exit 1: 1 of 1 task worked did not end landed"), first
    assert rest[0].startswith("  tm-red: blocked: reached --max-iterations (1)"), rest


def test_exit_reasons_name_the_rule_and_every_task_behind_it() -> None:
    from taskmill.mill.engine import RunSummary
    from taskmill.mill.worker import Outcome

    summary = RunSummary("r1", "main", outcomes=[
        Outcome("tm-a", "a", "landed"), Outcome("tm-b", "b", "error", reason="git broke"),
        Outcome("tm-c", "c", "held", reason="budget")])
    assert summary.exit_reasons() == [
        "exit 1: 1 of 3 tasks worked did not end landed, satisfied, checked or held; "
        "0 ready tasks not worked (skipped), 0 refused",
        "  tm-b: error: git broke"]
    summary.outcomes[1].outcome = "satisfied"
    assert summary.exit_code == 0 and summary.exit_reasons() == []
    summary.skipped.append({"task": "tm-d", "reason": "no agent"})
    summary.refused["tm-e"] = "no checks"
    assert summary.exit_reasons()[1:] == ["  tm-d: not worked: no agent",
                                          "  tm-e: refused: no checks"]
    summary.stopped_by = 15
    assert summary.exit_reasons() == ["exit 143 (128 + 15): the run was stopped by SIGTERM"]


def test_exit_code_0_with_nothing_ready(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", "", spy=repo.spy)
    result = repo.run("--agent-cmd", cmd)
    assert result.returncode == 0, result.describe()
    assert "nothing was ready" in result.stdout


def test_order_highest_priority_then_longest_chain(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / f"{TASK}.txt").write_text(TASK)
    """, spy=repo.spy)
    # created first, so it would come first without the chain rule
    repo.create("tm-alone", priority=2)
    repo.create("tm-root", priority=2)
    repo.create("tm-mid", priority=2, after=["tm-root"])
    repo.create("tm-leaf", priority=2, after=["tm-mid"])
    repo.create("tm-low", priority=3)
    repo.create("tm-urgent", priority=1)

    result = repo.run("--agent-cmd", cmd, "-j", "1")

    assert result.returncode == 0, result.describe()
    order = [e["task"] for e in result.events_of("dispatched")]
    # priority 1 first; then, among priority 2, the one with 3 tasks waiting on it. Its
    # worker is free as soon as its branch is parked to land, so what comes next depends on
    # whether it has landed by then (the lone task, or its dependent, which outranks the lone
    # task by chain length); either way its dependent goes before the priority-3 task
    assert order[:2] == ["tm-urgent", "tm-root"], order
    assert order.index("tm-alone") < order.index("tm-low")
    assert order.index("tm-mid") < order.index("tm-low")
    repo.assert_all_landed_once(
        ["tm-alone", "tm-root", "tm-mid", "tm-leaf", "tm-low", "tm-urgent"])


def test_dependents_are_dispatched_as_soon_as_their_blocker_lands(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        if TASK == "tm-slow":
            time.sleep(3)
        (WT / f"{TASK}.txt").write_text(TASK)
    """, spy=repo.spy)
    repo.create("tm-slow")
    repo.create("tm-first")
    repo.create("tm-then", after=["tm-first"])

    result = repo.run("--agent-cmd", cmd, "-j", "2")

    assert result.returncode == 0, result.describe()
    kinds = [(e["event"], e.get("task")) for e in result.events]
    then_dispatched = kinds.index(("dispatched", "tm-then"))
    assert kinds.index(("landed", "tm-first")) < then_dispatched
    # not held back until the other worker's (slow) task is done
    assert then_dispatched < kinds.index(("landed", "tm-slow"))
    dispatched_at = _ts(result.events_of("dispatched", "tm-then")[0]["ts"])
    landed_at = _ts(result.events_of("landed", "tm-first")[0]["ts"])
    assert (dispatched_at - landed_at).total_seconds() < 1.0
    # tm-then was cut from a tip that already has tm-first's work
    assert repo.git("show", f"{repo.landings()['tm-then'][0]}:tm-first.txt") == "tm-first"


def test_json_events_are_ndjson(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / "f.txt").write_text(str(ITER))
    """, spy=repo.spy)
    repo.create("tm-e", checks=["test \"$(cat f.txt)\" = 2"])

    # to a file
    result = repo.run("--agent-cmd", cmd)
    assert result.returncode == 0, result.describe()
    kinds = [e["event"] for e in result.events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    for kind in ("dispatched", "workspace", "turn_started", "turn_finished", "checks_failed",
                 "checks_passed", "merge_queued", "landed", "task_finished"):
        assert kind in kinds, kind
    for event in result.events:
        assert isinstance(event["ts"], str) and _ts(event["ts"])
    finished = result.events[-1]
    assert finished["exit_code"] == 0 and finished["landed"] == 1 and finished["blocked"] == 0

    # to standard output: nothing but NDJSON there
    repo.create("tm-f", checks=["true"])
    proc = repo.cli("run", "--agent-cmd", cmd, "--json-events", "-")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines and all(isinstance(e, dict) and "event" in e for e in lines)
    assert lines[-1]["event"] == "run_finished"
    assert any(e["event"] == "landed" and e["task"] == "tm-f" for e in lines)


def test_json_summary(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / "f.txt").write_text(TASK)
        usage(input_tokens=7, output_tokens=3, cost_usd=0.5)
    """, spy=repo.spy)
    repo.create("tm-j", checks=["test -f f.txt"])
    proc = repo.cli("run", "--agent-cmd", cmd, "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["exit_code"] == 0 and data["landed"] == 1
    (task,) = data["tasks"]
    assert task["task_id"] == "tm-j" and task["outcome"] == "landed"
    assert (task["input_tokens"], task["output_tokens"], task["cost_usd"]) == (7, 3, 0.5)
    assert task["commit"] == repo.tip()


def test_agent_is_run_fresh_each_iteration(tmp_path: Path) -> None:
    """Each iteration is a new process: nothing but the prompt and the worktree carry over."""
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / "n.txt").write_text(str(ITER))
    """, spy=repo.spy)
    repo.create("tm-p", checks=["test \"$(cat n.txt)\" = 3"])
    result = repo.run("--agent-cmd", cmd)
    assert result.returncode == 0, result.describe()
    starts = [row for row in read_spy_log(repo.spy) if row[1] == "start"]
    pids = {row[5] for row in starts}
    assert len(starts) == 3 and len(pids) == 3


def test_scripted_agent_from_config(tmp_path: Path) -> None:
    """The configured agent ([run] agent, [agents.NAME]) is used without --agent-cmd; its
    model, tokens and cost are recorded per attempt."""
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"tasks": {
        "tm-s": {
            "1": {"files": {"s.txt": "one"}, "stdout": "scripted turn one\n",
                  "usage": {"input_tokens": 11, "output_tokens": 4, "cost_usd": 0.01}},
            "*": {"files": {"s.txt": "done"},
                  "usage": {"input_tokens": 20, "output_tokens": 8, "cost_usd": 0.02}},
        }}}))
    repo = MillRepo(tmp_path, run={"agent": "robot"},
                    agents={"robot": {"adapter": "scripted", "script": str(script),
                                      "model": "robo-1"}})
    repo.create("tm-s", checks=["test \"$(cat s.txt)\" = done"])

    result = repo.run()

    assert result.returncode == 0, result.describe()
    repo.assert_all_landed_once(["tm-s"])
    attempts = repo.attempts("tm-s")
    assert [(a["agent"], a["model"], a["outcome"]) for a in attempts] == [
        ("robot", "robo-1", "failed"), ("robot", "robo-1", "passed")]
    assert [(a["input_tokens"], a["output_tokens"], a["cost_usd"]) for a in attempts] == [
        (11, 4, 0.01), (20, 8, 0.02)]
    assert "scripted turn one" in Path(attempts[0]["log_path"]).read_text()
    (finished,) = result.events_of("task_finished")
    assert finished["iterations"] == 2
    data = json.loads(repo.cli("stats", "--json").stdout)
    assert (data["input_tokens"], data["output_tokens"]) == (31, 12)


def test_prompt_holds_the_tail_of_long_failing_output(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / "n.txt").write_text(str(ITER))
    """, spy=repo.spy)
    # (quotes split the markers, so the command's own text does not contain them)
    check = ("echo FIRST-LINE-\"OF-OUTPUT\"; seq 1 20000 | sed 's/^/filler line /'; "
             "echo LAST-LINE: \"expected 2\"; test \"$(cat n.txt)\" = 2")
    repo.create("tm-long", checks=[check])
    result = repo.run("--agent-cmd", cmd)
    assert result.returncode == 0, result.describe()
    second = (repo.spy / "prompt-tm-long-2.stdin").read_text()
    assert "LAST-LINE: expected 2" in second
    assert "FIRST-LINE-OF-OUTPUT" not in second.split("## The checks failed", 1)[1]
    assert len(second) < 20000
