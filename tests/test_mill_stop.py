"""Stopping ``taskmill run``: the first Ctrl-C / SIGTERM / SIGHUP drains (nothing new, a
bounded grace for in-flight turns), a second one kills the agents at once; either way the
summary is printed, the exit status is 128 + the signal, no agent survives, and every
interrupted task is resumed (branch and all) and lands on the next run. An internal error
never blocks a task and never shows up as a person's comment."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mill_helpers import (
    MillRepo,
    agent_script,
    kill_group,
    process_alive,
    read_spy_log,
    wait_for,
)
from taskmill.clock import FixedClock
from taskmill.mill.events import EventBus
from taskmill.mill.prompt import PromptContext, build_prompt
from taskmill.model import Comment, Task

# The agent of tm-k: its first turn commits part 1, leaves a helper and a setsid daemon
# running, says it is ready, then works "for a long time" (ignoring SIGTERM when asked).
# Later turns add part 2.
SLOW_AGENT = """
    import signal
    if TASK != "tm-k":
        (WT / f"{TASK}.txt").write_text("done\\n")
    elif CALL == 1:
        if (SPY / "ignore-term").exists():
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        (WT / "part1.txt").write_text("committed before the stop\\n")
        subprocess.run(["git", "add", "-A"], check=True)
        subprocess.run(["git", "commit", "-qm", "part 1"], check=True)
        helper = subprocess.Popen(["sleep", "120"])
        daemon = subprocess.Popen(["setsid", "sleep", "120"])
        save("helpers", f"{outer_pid(helper.pid)} {outer_pid(daemon.pid)}")
        save("ready", str(PID))
        time.sleep(120)
    else:
        save(f"seen-{CALL}", "\\n".join(sorted(p.name for p in WT.iterdir())))
        (WT / "part2.txt").write_text("after the stop\\n")
"""


def _events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


_SPAWNED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_run_left_behind() -> Iterator[None]:
    """A failing test must not leave its ``taskmill run`` (or its agents) running."""
    yield
    while _SPAWNED:
        proc = _SPAWNED.pop()
        if proc.poll() is None:
            kill_group(proc)
            proc.wait()


def _start(repo: MillRepo, cmd: str, tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], Path]:
    events = tmp_path / f"events-{time.monotonic_ns()}.ndjson"
    proc = repo.spawn("--agent-cmd", cmd, *args, events_file=events)
    _SPAWNED.append(proc)
    return proc, events


def _pids_of_first_turn(repo: MillRepo) -> list[int]:
    pids = [int(p) for p in (repo.spy / "helpers").read_text().split()]
    return [int((repo.spy / "ready").read_text()), *pids]


def _assert_resumable(repo: MillRepo, task_id: str) -> None:
    task = repo.task(task_id)
    assert task["status"] == "in_progress", task
    assert task["comments"] == [], task["comments"]  # nothing blocked it, nothing said so
    attempts = repo.attempts(task_id)
    assert [a["outcome"] for a in attempts] == ["interrupted"], attempts
    assert attempts[0]["ended_at"]
    assert repo.mill_branches() == [f"taskmill/{task_id}"]  # the work is kept
    shown = json.loads(repo.cli("show", task_id, "--json").stdout)
    assert shown["interrupted"] is True and shown["status"] == "in_progress"
    listed = json.loads(repo.cli("list", "--json").stdout)
    assert [t.get("interrupted") for t in listed if t["id"] == task_id] == [True]
    assert "interrupted" in repo.cli("show", task_id).stdout
    blocked = repo.ledger.store.conn.execute(
        "SELECT count(*) FROM tasks WHERE status = 'blocked'").fetchone()[0]
    assert blocked == 0
    kinds = [e.kind for e in repo.ledger.events(task_id)]
    assert "interrupted" in kinds


def _assert_resumed_and_landed(repo: MillRepo, cmd: str, task_id: str) -> None:
    result = repo.run("--agent-cmd", cmd, "--only", task_id)
    assert result.returncode == 0, result.describe()
    assert [e["task"] for e in result.events_of("recovered")] == [task_id]
    (ws,) = result.events_of("workspace", task_id)
    assert ws["resumed"] is True
    seen = (repo.spy / "seen-2").read_text().split()
    assert "part1.txt" in seen  # the branch was resumed
    prompt = (repo.spy / f"prompt-{task_id}-2.stdin").read_text()
    assert "Comments from people" not in prompt and "taskmill error" not in prompt
    repo.assert_all_landed_once([task_id])
    assert repo.git("show", "main:part1.txt") == "committed before the stop\n"
    assert [a["outcome"] for a in repo.attempts(task_id)] == ["interrupted", "passed"]
    assert repo.attempts(task_id)[1]["iteration"] == 1  # the interrupted turn did not count
    repo.verify_ok()


def test_first_ctrl_c_cuts_the_turn_at_the_grace_and_the_next_run_resumes_it(
        tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", SLOW_AGENT, spy=repo.spy)
    repo.create("tm-k", checks=["test -f part1.txt && test -f part2.txt"])
    repo.create("tm-later")  # ready, but nothing new is dispatched once stopping
    proc, events = _start(repo, cmd, tmp_path, "-j", "1", "--grace", "1")
    assert wait_for(lambda: (repo.spy / "ready").exists(), timeout=30)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 130, out + err
    assert time.monotonic() - started < 15, "the grace of 1s was not honoured"
    assert "stopping" in err and "Ctrl-C again" in err, err
    assert "Aborted" not in out + err and "Traceback" not in out + err
    assert "stopped by SIGINT" in out and "interrupted" in out, out
    assert "tm-k" in out
    kinds = [e["event"] for e in _events(events)]
    assert "stopping" in kinds and "grace_over" in kinds and kinds[-1] == "run_finished"
    assert [e["task"] for e in _events(events) if e["event"] == "dispatched"] == ["tm-k"]
    for pid in _pids_of_first_turn(repo):  # the agent, its helper and its setsid daemon
        assert wait_for(lambda pid=pid: not process_alive(pid), timeout=5), pid
    _assert_resumable(repo, "tm-k")
    assert repo.task("tm-later")["status"] == "open"

    _assert_resumed_and_landed(repo, cmd, "tm-k")


def test_first_ctrl_c_lets_a_turn_that_ends_within_the_grace_finish_and_land(
        tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        save("ready", str(PID))
        while not (SPY / "go").exists():
            time.sleep(0.02)
        (WT / f"{TASK}.txt").write_text("done\\n")
    """, spy=repo.spy)
    repo.create("tm-a", checks=["test -f tm-a.txt"])
    repo.create("tm-b")
    proc, events = _start(repo, cmd, tmp_path, "-j", "1")
    assert wait_for(lambda: (repo.spy / "ready").exists(), timeout=30)
    proc.send_signal(signal.SIGINT)
    assert wait_for(lambda: any(e["event"] == "stopping" for e in _events(events)), timeout=10)
    (repo.spy / "go").write_text("")  # the turn ends well within the default 30s grace
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 130, out + err
    repo.assert_all_landed_once(["tm-a"])
    assert repo.task("tm-b")["status"] == "open"
    assert "1 landed" in out, out


def test_second_ctrl_c_kills_the_agents_at_once_and_leaves_the_task_resumable(
        tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", SLOW_AGENT, spy=repo.spy)
    (repo.spy / "ignore-term").write_text("")  # only SIGKILL stops this agent
    repo.create("tm-k", checks=["test -f part1.txt && test -f part2.txt"])
    proc, events = _start(repo, cmd, tmp_path)  # the default grace: 30s
    assert wait_for(lambda: (repo.spy / "ready").exists(), timeout=30)
    proc.send_signal(signal.SIGINT)
    assert wait_for(lambda: any(e["event"] == "stopping" for e in _events(events)), timeout=10)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 130, out + err
    assert time.monotonic() - started < 10, "the second Ctrl-C did not stop the agent at once"
    assert "stopping now" in err, err
    assert "Traceback" not in out + err and "Aborted" not in out + err
    assert "closed file" not in out + err
    assert "stopped by SIGINT" in out and "interrupted" in out, out
    for pid in _pids_of_first_turn(repo):
        assert wait_for(lambda pid=pid: not process_alive(pid), timeout=5), pid
    _assert_resumable(repo, "tm-k")
    (repo.spy / "ignore-term").unlink()

    _assert_resumed_and_landed(repo, cmd, "tm-k")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_stop_the_run_and_leave_no_agent_running(
        tmp_path: Path, sig: signal.Signals, code: int) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", SLOW_AGENT, spy=repo.spy)
    repo.create("tm-k", checks=["test -f part1.txt && test -f part2.txt"])
    proc, _ = _start(repo, cmd, tmp_path, "--grace", "0.5")
    assert wait_for(lambda: (repo.spy / "ready").exists(), timeout=30)
    pids = _pids_of_first_turn(repo)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == code, out + err
    assert f"stopped by {sig.name}" in out, out
    for pid in pids:
        assert wait_for(lambda pid=pid: not process_alive(pid), timeout=5), pid
    _assert_resumable(repo, "tm-k")
    _assert_resumed_and_landed(repo, cmd, "tm-k")


def test_grace_from_config(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path, run={"grace": 0.5})
    cmd = agent_script(tmp_path / "agent.py", SLOW_AGENT, spy=repo.spy)
    repo.create("tm-k")
    proc, events = _start(repo, cmd, tmp_path, "--json")
    assert wait_for(lambda: (repo.spy / "ready").exists(), timeout=30)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, out + err
    summary = json.loads(out)
    assert summary["stopped_by"] == "SIGINT" and summary["interrupted"] == 1
    assert summary["exit_code"] == 130
    (task,) = summary["tasks"]
    assert task["outcome"] == "interrupted" and "next `taskmill run`" in task["reason"]
    (stopping,) = [e for e in _events(events) if e["event"] == "stopping"]
    assert stopping["grace"] == 0.5


GIT_FAIL_SHIM = """#!/bin/sh
# git that fails, once, the first command that contains $TM_FAIL_MATCH
case " $* " in
  *"$TM_FAIL_MATCH"*)
    if mkdir "$TM_FAIL_ONCE" 2>/dev/null; then
      echo "fatal: injected failure" >&2
      exit 128
    fi;;
esac
exec "$TM_REAL_GIT" "$@"
"""


def test_internal_error_never_blocks_the_task_and_the_next_run_retries_it(
        tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / f"{TASK}.txt").write_text("done\\n")
    """, spy=repo.spy)
    repo.create("tm-e", checks=["test -f tm-e.txt"])
    real = shutil.which("git")
    assert real is not None
    shim_dir = tmp_path / "git-shim"
    shim_dir.mkdir()
    (shim_dir / "git").write_text(GIT_FAIL_SHIM)
    (shim_dir / "git").chmod(0o755)
    env = {"PATH": f"{shim_dir}{os.pathsep}{os.environ['PATH']}", "TM_REAL_GIT": real,
           "TM_FAIL_MATCH": "commit -q", "TM_FAIL_ONCE": str(tmp_path / "failed-once")}

    result = repo.run("--agent-cmd", cmd, env=env)

    assert (tmp_path / "failed-once").exists(), "the failure was not injected"
    assert result.returncode == 1, result.describe()
    assert "taskmill error" in result.stdout and "retries" in result.stdout, result.stdout
    task = repo.task("tm-e")
    assert task["status"] == "in_progress" and task["comments"] == [], task
    (attempt,) = repo.attempts("tm-e")
    assert attempt["outcome"] == "error" and "injected failure" in attempt["detail"]["error"]
    (event,) = [e for e in repo.ledger.events("tm-e") if e.kind == "internal_error"]
    assert "injected failure" in event.data["error"]
    assert result.events_of("blocked") == []
    (errored,) = result.events_of("internal_error", "tm-e")
    assert "injected failure" in errored["error"]

    again = repo.run("--agent-cmd", cmd)

    assert again.returncode == 0, again.describe()
    repo.assert_all_landed_once(["tm-e"])
    prompt = (repo.spy / "prompt-tm-e-2.stdin").read_text()
    assert "Comments from people" not in prompt and "injected" not in prompt


def test_a_failing_event_sink_fails_nothing(tmp_path: Path) -> None:
    bus = EventBus(FixedClock())
    stream = (tmp_path / "events.ndjson").open("a", encoding="utf-8")
    from taskmill.mill.events import NdjsonWriter

    seen: list[str] = []
    bus.subscribe(NdjsonWriter(stream))
    bus.subscribe(lambda e: seen.append(e["event"]))
    stream.close()  # what a second Ctrl-C used to do under running workers
    bus.emit("turn_finished", task="tm-x")
    bus.emit("blocked", task="tm-x")
    assert seen == ["turn_finished", "blocked"]


def test_only_people_comments_are_presented_as_comments_from_people() -> None:
    task = Task(id="tm-c", title="t", comments=[
        Comment(1, "tm-c", "alice", "please keep the API stable", "2026-01-01T00:00:00Z"),
        Comment(2, "tm-c", "mill:ab12cd34",
                "taskmill blocked this task: taskmill error: I/O operation on closed file",
                "2026-01-01T00:00:01Z"),
        Comment(3, "tm-c", "mill:ab12cd34",
                "taskmill blocked this task: circuit breaker: no change", "2026-01-01T00:00:02Z"),
        Comment(4, "tm-c", "agent:claude/tm-c", "tried X, it broke Y", "2026-01-01T00:00:03Z"),
    ])
    prompt = build_prompt(task, PromptContext(iteration=1, max_iterations=5))
    people = prompt.split("## Comments from people", 1)[1].split("##", 1)[0]
    assert "alice" in people and "mill:" not in people and "agent:" not in people
    assert "I/O operation on closed file" not in prompt  # an internal error is nobody's news
    assert "circuit breaker" in prompt.split("## Notes from taskmill", 1)[1]
    assert "tried X" in prompt.split("## Comments left by agents", 1)[1]


def test_no_agent_outlives_a_stopped_run_even_when_it_ignores_sigterm(tmp_path: Path) -> None:
    """SIGTERM of the run with a grace shorter than the agents' own: they are SIGKILLed."""
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", SLOW_AGENT, spy=repo.spy)
    (repo.spy / "ignore-term").write_text("")
    repo.create("tm-k")
    proc, _ = _start(repo, cmd, tmp_path, "--grace", "0")
    assert wait_for(lambda: (repo.spy / "ready").exists(), timeout=30)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, out + err
    for pid in _pids_of_first_turn(repo):
        assert wait_for(lambda pid=pid: not process_alive(pid), timeout=5), pid
    assert [row[1] for row in read_spy_log(repo.spy)] == ["start"]  # it never ended itself
