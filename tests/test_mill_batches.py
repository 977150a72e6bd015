"""The mill with the batching merge queue, end to end: a worker parks its passed branch and
takes the next task at once; parked branches land in batches checked once; a red batch is
bisected and only its culprit goes back to its agent (told which tasks it fails in
combination with); a conflict inside a batch sends back only that branch, with the target
merged into it; ``batch_max = 1`` lands one branch at a time. The batches are in the events
and in the audit trail."""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from mill_helpers import MillRepo, agent_script, wait_for

# The project check: red when the marker files mA and mB are both there (two tasks that
# break it only together); it notes each tree it checks, sleeps ``delay`` seconds, and while
# ``spy/hold`` exists says so (``spy/checking``) and sleeps as many seconds as it says.
CHECK_SH = """#!/bin/sh
echo "$(git rev-parse HEAD^{{tree}})" >> {spy}/project-checks
sleep {delay}
if [ -e {spy}/hold ]; then touch {spy}/checking; sleep "$(cat {spy}/hold)"; fi
if [ -e mA ] && [ -e mB ]; then echo "mA and mB together"; exit 1; fi
exit 0
"""


def _repo(tmp_path: Path, *, batch_max: int, batch_wait: float, delay: float = 0.0,
          files: dict[str, str] | None = None) -> MillRepo:
    check = tmp_path / "check.sh"
    check.write_text(CHECK_SH.format(spy=tmp_path / "spy", delay=delay), encoding="utf-8")
    repo = MillRepo(tmp_path, checks=[f"sh {check}"], files=files)
    config = repo.root / ".taskmill" / "config.toml"
    config.write_text(config.read_text() + f"\n[merge]\nbatch_max = {batch_max}\n"
                      f"batch_wait = {batch_wait}\n")
    repo.git("commit", "-qam", "merge queue settings")
    return repo


def _project_checks(repo: MillRepo) -> list[str]:
    path = repo.spy / "project-checks"
    return path.read_text().split() if path.exists() else []


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_worker_takes_the_next_task_while_its_branch_waits_to_land(tmp_path: Path) -> None:
    repo = _repo(tmp_path, batch_max=5, batch_wait=0, delay=1.5)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / f"{TASK}.txt").write_text(TASK + "\\n")
    """, spy=repo.spy)
    for tid in ("tm-a", "tm-b", "tm-c"):
        repo.create(tid, checks=[f"test -f {tid}.txt"])

    result = repo.run("--agent-cmd", cmd, "-j", "1")

    assert result.returncode == 0, result.describe()
    repo.assert_all_landed_once(["tm-a", "tm-b", "tm-c"])
    first = result.events_of("dispatched")[0]["task"]
    second = result.events_of("dispatched")[1]["task"]
    # the one worker started the second task before the first one landed (its project
    # checks take 1.5 s): it did not wait on the landing
    assert (_ts(result.events_of("dispatched", second)[0]["ts"])
            < _ts(result.events_of("landed", first)[0]["ts"]))
    # the parked task held no worktree: its slot went to the next task
    slots = {e["path"] for e in result.events_of("workspace")}
    assert len(slots) == 1, slots
    assert repo.mill_branches() == []
    repo.verify_ok()


def test_parked_branches_land_together_checked_once(tmp_path: Path) -> None:
    repo = _repo(tmp_path, batch_max=3, batch_wait=5)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / f"{TASK}.txt").write_text(TASK + "\\n")
    """, spy=repo.spy)
    ids = [repo.create(f"tm-{i}", checks=[f"test -f tm-{i}.txt"]) for i in range(3)]
    base = repo.tip()

    result = repo.run("--agent-cmd", cmd, "-j", "3")

    assert result.returncode == 0, result.describe()
    repo.assert_all_landed_once(ids)
    (started,) = result.events_of("batch_started")
    assert sorted(started["tasks"]) == ids and started["base"] == base
    assert len(_project_checks(repo)) == 1  # three landings, one run of the project checks
    (landed,) = result.events_of("batch_landed")
    assert landed["tasks"] == started["tasks"] and landed["commit"] == repo.tip()
    # one commit per task, each with its trailer, in the batch's order
    log = repo.git("log", "--reverse", "--format=%H", f"{base}..main").split()
    assert log == [repo.landings()[t][0] for t in started["tasks"]]
    (finished,) = result.events_of("batch_finished")
    assert finished["outcomes"] == dict.fromkeys(ids, "landed")
    # the audit trail says so too, as run-level events
    trail = [(e.kind, e.data) for e in repo.ledger.events() if e.task_id is None]
    assert [k for k, _ in trail if k.startswith("batch")] == [
        "batch_started", "batch_checks", "batch_landed", "batch_finished"]
    assert dict(trail)["batch_landed"]["tasks"] == started["tasks"]
    repo.verify_ok()


def test_a_red_batch_is_bisected_and_only_the_culprit_goes_back_naming_the_other(
        tmp_path: Path) -> None:
    """tm-x and tm-y each pass the project checks alone, not together; tm-z is fine. The
    tasks have no checks of their own: their workers run the project checks, so the merge
    queue knows each branch alone is green and tells the culprit what it fails with."""
    repo = _repo(tmp_path, batch_max=3, batch_wait=5)
    cmd = agent_script(tmp_path / "agent.py", """
        marker = {"tm-x": "mA", "tm-y": "mB"}.get(TASK)
        if ITER == 1:
            (WT / (marker or "z.txt")).write_text(TASK + "\\n")
        else:  # sent back: the prompt says why; do it another way
            save(f"prompt-{TASK}-{ITER}", PROMPT)
            (WT / marker).unlink()
            (WT / f"{marker}-other-way").write_text(TASK + "\\n")
    """, spy=repo.spy)
    ids = [repo.create(tid) for tid in ("tm-x", "tm-y", "tm-z")]
    base = repo.tip()

    result = repo.run("--agent-cmd", cmd, "-j", "3")

    assert result.returncode == 0, result.describe()
    repo.assert_all_landed_once(ids)
    (rejected,) = result.events_of("merge_rejected")
    culprit = rejected["task"]
    other = "tm-y" if culprit == "tm-x" else "tm-x"
    assert rejected["reason"] == "merge_checks"
    assert [a["outcome"] for a in repo.attempts(culprit)] == ["rejected_checks", "passed"]
    for tid in (other, "tm-z"):
        assert [a["outcome"] for a in repo.attempts(tid)] == ["passed"]
    failure = repo.attempts(culprit)[0]["detail"]["failure"]
    # it is told it fails only in combination, with the tasks landed since its branch was
    # cut (the other one among them)
    assert "pass on this task's branch alone" in failure and "combined with" in failure
    assert other in failure.split("combined with", 1)[1].split("\n")[0]
    assert "mA and mB together" in failure
    prompt = (repo.spy / f"prompt-{culprit}-2").read_text()
    assert other in prompt and "mA and mB together" in prompt
    assert result.events_of("bisect_step")
    # never a red tree on main
    for sha in repo.git("log", "--format=%H", f"{base}..main").split():
        files = repo.git("ls-tree", "--name-only", sha).split()
        assert not ("mA" in files and "mB" in files), sha
    repo.verify_ok()


def test_a_conflict_in_a_batch_sends_back_only_that_branch_with_the_target_merged(
        tmp_path: Path) -> None:
    repo = _repo(tmp_path, batch_max=3, batch_wait=5,
                 files={"shared.txt": "line one\nline two\nline three\n"})
    cmd = agent_script(tmp_path / "agent.py", """
        shared = WT / "shared.txt"
        text = shared.read_text()
        mine = f"line two by {TASK}"
        if TASK == "tm-z":
            (WT / "z.txt").write_text("z\\n")
        elif "<<<<<<<" in text:
            save(f"conflict-{TASK}", text)
            keep = [ln for ln in text.splitlines()
                    if not ln.startswith(("<<<<<<<", "=======", ">>>>>>>"))]
            shared.write_text("".join(ln + "\\n" for ln in keep))
        elif mine not in text:
            shared.write_text(text.replace("line two", mine))
    """, spy=repo.spy)
    check = "grep -q 'line two by {t}' shared.txt && ! grep -q '^<<<<<<<' shared.txt"
    for tid in ("tm-x", "tm-y"):
        repo.create(tid, checks=[check.format(t=tid)])
    repo.create("tm-z", checks=["test -f z.txt"])

    result = repo.run("--agent-cmd", cmd, "-j", "3")

    assert result.returncode == 0, result.describe()
    repo.assert_all_landed_once(["tm-x", "tm-y", "tm-z"])
    (rejected,) = result.events_of("merge_rejected")
    loser = rejected["task"]
    assert rejected["reason"] == "conflict" and loser in ("tm-x", "tm-y")
    assert "shared.txt" in rejected["summary"]
    first = result.events_of("batch_finished")[0]["outcomes"]
    assert first[loser] == "conflict"
    assert [v for k, v in first.items() if k != loser] == ["landed", "landed"]
    # its worktree came back with the target merged in, the conflict markers left for it
    assert "<<<<<<<" in (repo.spy / f"conflict-{loser}").read_text()
    (rejoined,) = [e for e in result.events_of("workspace", loser) if e.get("rejoined")]
    assert rejoined["resumed"] is False
    final = repo.git("show", "main:shared.txt")
    assert "line two by tm-x" in final and "line two by tm-y" in final
    assert "<<<<<<<" not in final
    repo.verify_ok()


def test_with_speculate_the_next_batch_is_checked_while_the_one_ahead_is(
        tmp_path: Path) -> None:
    """``[merge] speculate = true``, batches of 2, 4 tasks at once: the two branches behind
    the first batch are checked on top of it at the same time; that batch lands whole, so
    the speculative result is the second batch's. Two runs of the project checks in all; the
    audit trail has the speculation."""
    repo = _repo(tmp_path, batch_max=2, batch_wait=5, delay=2)
    config = repo.root / ".taskmill" / "config.toml"
    config.write_text(config.read_text() + "speculate = true\n")
    repo.git("commit", "-qam", "speculate")
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / f"{TASK}.txt").write_text(TASK + "\\n")
    """, spy=repo.spy)
    ids = [repo.create(f"tm-{i}", checks=[f"test -f tm-{i}.txt"]) for i in range(4)]

    result = repo.run("--agent-cmd", cmd, "-j", "4")

    assert result.returncode == 0, result.describe()
    repo.assert_all_landed_once(ids)
    first, second = (e["tasks"] for e in result.events_of("batch_started"))
    # (speculated again as each branch arrived: an earlier speculation is superseded)
    started = result.events_of("speculation_started")[-1]
    assert started["tasks"] == second and started["ahead"] == first
    assert {e["why"] for e in result.events_of("speculation_discarded")} <= {
        "superseded by a newer speculation"}
    (used,) = result.events_of("speculation_used")
    assert used["tasks"] == second and used["passed"] is True
    # two runs of the project checks ended, the speculative one being the second batch's
    # (a superseded speculation's run is cut as it starts)
    assert [(e["tasks"], e.get("speculative", False)) for e in sorted(
        result.events_of("batch_checks"), key=lambda e: e["tasks"] == second)] == [
        (first, False), (second, True)]
    trail = [e.kind for e in repo.ledger.events() if e.task_id is None]
    assert "speculation_started" in trail and "speculation_used" in trail
    # the speculative checkouts are the merge queue's own, not the user's or a task's
    assert repo.git("worktree", "list").count("lander-speculative") >= 1
    repo.verify_ok()


def test_a_worker_is_kept_for_the_critical_path_while_its_branch_lands(
        tmp_path: Path) -> None:
    """tm-a -> tm-b -> tm-c is the long chain; tm-x and tm-y stand alone and take 5 s each.
    Two workers. When tm-a parks, the free worker is kept for tm-b (ready the moment tm-a
    lands) instead of starting tm-y, which would hold it for 5 s while tm-b waits."""
    repo = _repo(tmp_path, batch_max=5, batch_wait=0, delay=1)
    cmd = agent_script(tmp_path / "agent.py", """
        import time
        if TASK in ("tm-x", "tm-y"):
            time.sleep(5)
        (WT / f"{TASK}.txt").write_text(TASK + "\\n")
    """, spy=repo.spy)
    repo.create("tm-a", priority=2)
    repo.create("tm-b", after=["tm-a"])
    repo.create("tm-c", after=["tm-b"])
    repo.create("tm-x")
    repo.create("tm-y")

    result = repo.run("--agent-cmd", cmd, "-j", "2")

    assert result.returncode == 0, result.describe()
    repo.assert_all_landed_once(["tm-a", "tm-b", "tm-c", "tm-x", "tm-y"])
    order = [e["task"] for e in result.events_of("dispatched")]
    assert order[0] == "tm-a"  # the longest chain first
    # tm-b started as soon as tm-a landed, before the second stand-alone task
    assert order.index("tm-b") < order.index("tm-y") or order.index("tm-b") < order.index(
        "tm-x"), order
    landed_a = _ts(result.events_of("landed", "tm-a")[0]["ts"])
    started_b = _ts(result.events_of("dispatched", "tm-b")[0]["ts"])
    assert (started_b - landed_a).total_seconds() < 2
    repo.verify_ok()


def test_no_worker_is_kept_when_other_work_is_the_critical_path(tmp_path: Path) -> None:
    """tm-a -> tm-b -> tm-c, and six stand-alone tasks of 2 s: the work not started (7
    tasks over 2 workers) is longer than the chain waiting on tm-a (2), so when tm-a parks
    its worker takes the next stand-alone task at once."""
    repo = _repo(tmp_path, batch_max=5, batch_wait=0, delay=1)
    cmd = agent_script(tmp_path / "agent.py", """
        import time
        if TASK.startswith("tm-x"):
            time.sleep(2)
        (WT / f"{TASK}.txt").write_text(TASK + "\\n")
    """, spy=repo.spy)
    repo.create("tm-a")
    repo.create("tm-b", after=["tm-a"])
    repo.create("tm-c", after=["tm-b"])
    for i in range(6):
        repo.create(f"tm-x{i}")

    result = repo.run("--agent-cmd", cmd, "-j", "2")

    assert result.returncode == 0, result.describe()
    order = [e["task"] for e in result.events_of("dispatched")]
    assert order[:3] == ["tm-a", "tm-x0", "tm-x1"], order
    parked_a = _ts(result.events_of("merge_queued", "tm-a")[0]["ts"])
    started_x1 = _ts(result.events_of("dispatched", "tm-x1")[0]["ts"])
    assert (started_x1 - parked_a).total_seconds() < 0.5
    repo.verify_ok()


def test_batch_max_1_lands_one_branch_at_a_time(tmp_path: Path) -> None:
    repo = _repo(tmp_path, batch_max=1, batch_wait=0)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / f"{TASK}.txt").write_text(TASK + "\\n")
    """, spy=repo.spy)
    ids = [repo.create(f"tm-{i}", checks=[f"test -f tm-{i}.txt"]) for i in range(3)]

    result = repo.run("--agent-cmd", cmd, "-j", "3")

    assert result.returncode == 0, result.describe()
    repo.assert_all_landed_once(ids)
    assert [len(e["tasks"]) for e in result.events_of("batch_started")] == [1, 1, 1]
    assert len(_project_checks(repo)) == 3


def _events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _stop_during_the_batchs_checks(repo: MillRepo, cmd: str, tmp_path: Path, *,
                                   hold: int, grace: int) -> tuple[int, list[dict[str, Any]]]:
    (repo.spy / "hold").write_text(str(hold))
    events = tmp_path / f"events-stop-{hold}.ndjson"
    proc = repo.spawn("--agent-cmd", cmd, "-j", "2", "--grace", str(grace),
                      events_file=events)
    assert wait_for(lambda: (repo.spy / "checking").exists(), timeout=60), \
        proc.poll() or _events(events)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=90)
    (repo.spy / "hold").unlink()
    return proc.returncode, _events(events)


def test_a_stop_during_a_batchs_checks_leaves_the_parked_tasks_resumable(
        tmp_path: Path) -> None:
    """Ctrl-C while the merge queue checks two parked branches; the checks outlast the
    grace: they are cut, nothing lands, the tasks stay in progress; the next run lands them
    without another turn (straight to the queue: no worktree)."""
    repo = _repo(tmp_path, batch_max=5, batch_wait=5)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / f"{TASK}.txt").write_text(TASK + "\\n")
    """, spy=repo.spy)
    ids = [repo.create(t, checks=[f"test -f {t}.txt"]) for t in ("tm-a", "tm-b")]
    start = repo.tip()

    started = time.monotonic()
    code, events = _stop_during_the_batchs_checks(repo, cmd, tmp_path, hold=60, grace=1)

    assert code == 130
    assert time.monotonic() - started < 40, "the grace of 1 s was not honoured"
    assert repo.tip() == start
    assert sorted(e["task"] for e in events if e["event"] == "interrupted") == ids
    for tid in ids:
        assert repo.task(tid)["status"] == "in_progress"
        assert [a["outcome"] for a in repo.attempts(tid)] == ["passed"]
    assert repo.git("status", "--porcelain").strip() == ""

    again = repo.run("--agent-cmd", cmd, "-j", "2")
    assert again.returncode == 0, again.describe()
    repo.assert_all_landed_once(ids)
    assert again.events_of("turn_started") == [] and again.events_of("workspace") == []
    for tid in ids:
        assert [a["outcome"] for a in repo.attempts(tid)] == ["passed"]
    repo.verify_ok()


def test_a_stop_lets_a_batch_that_lands_within_the_grace_land(tmp_path: Path) -> None:
    repo = _repo(tmp_path, batch_max=5, batch_wait=5)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / f"{TASK}.txt").write_text(TASK + "\\n")
    """, spy=repo.spy)
    ids = [repo.create(t, checks=[f"test -f {t}.txt"]) for t in ("tm-a", "tm-b")]

    code, events = _stop_during_the_batchs_checks(repo, cmd, tmp_path, hold=2, grace=60)

    assert code == 130
    repo.assert_all_landed_once(ids)
    assert [e["event"] for e in events if e["event"] == "grace_over"] == []
    repo.verify_ok()
