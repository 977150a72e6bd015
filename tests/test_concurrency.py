"""Many OS processes writing one ledger file at once.

Twenty processes (``multiprocessing`` with ``spawn``, each with its own connection) create,
update, comment on, append to and claim tasks in the same database at the same moment
(they start together at a barrier). Afterwards nothing is lost, nobody saw
"database is locked", the audit chain verifies, and every claim was won exactly once.
The same is checked for twenty ``taskmill`` command processes.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from taskmill.errors import ClaimConflict
from taskmill.ledger import Ledger

WORKERS = 20
CREATES = 4
COMMENTS = 4
APPENDS = 3
SPAWN = multiprocessing.get_context("spawn")
TIMEOUT = 150


def _open(db: str, actor: str) -> Ledger:
    return Ledger.open(Path(db), prefix="tm", actor=actor)


def _worker(db: str, index: int, shared: str, prize: str, barrier: Any, results: Any) -> None:
    """One process: phase 1 writes, phase 2 drains the ready queue with claim_next."""
    name = f"w{index:02d}"
    out: dict[str, Any] = {"name": name, "created": [], "won_prize": False, "claimed": []}
    try:
        barrier.wait(timeout=TIMEOUT)
        ledger = _open(db, name)  # twenty connections opening at once, too
        for k in range(CREATES):
            task = ledger.create(f"{name} task {k}", labels=[name], priority=3)
            ledger.update(task.id, {"priority": 1, "notes": f"written by {name}"})
            out["created"].append(task.id)
        for k in range(COMMENTS):
            ledger.comment(shared, f"{name} comment {k}")
        for k in range(APPENDS):
            ledger.append_notes(shared, f"{name} line {k}")
        try:
            ledger.claim(prize, name)
            out["won_prize"] = True
        except ClaimConflict:
            pass
        barrier.wait(timeout=TIMEOUT)
        while (task := ledger.claim_next(name)) is not None:
            out["claimed"].append(task.id)
        ledger.close_db()
    except BaseException:
        out["error"] = traceback.format_exc()
    results.put(out)


def _claimer(db: str, name: str, inbox: Any, barrier: Any, results: Any) -> None:
    """Claims each task id it is sent, at the same moment as the other claimer."""
    ledger = _open(db, name)
    while (tid := inbox.get(timeout=TIMEOUT)) is not None:
        barrier.wait(timeout=TIMEOUT)
        try:
            ledger.claim(tid, name)
            results.put((tid, name, "won"))
        except ClaimConflict:
            results.put((tid, name, "lost"))
        except BaseException:
            results.put((tid, name, traceback.format_exc()))
    ledger.close_db()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "shared.db"
    _open(str(path), "setup").close_db()  # create and migrate once
    return path


def _run(procs: list[Any]) -> None:
    for proc in procs:
        proc.start()


def _join(procs: list[Any]) -> None:
    for proc in procs:
        proc.join(timeout=TIMEOUT)
        if proc.is_alive():  # pragma: no cover - a hung test
            proc.kill()
            raise AssertionError(f"{proc.name} did not finish")
        assert proc.exitcode == 0, f"{proc.name} exited {proc.exitcode}"


def test_twenty_processes_write_one_ledger(db: Path) -> None:
    with _open(str(db), "setup") as ledger:
        shared = ledger.create("shared: everyone comments and appends here", priority=4).id
        prize = ledger.create("the prize: everyone claims it", priority=0).id
        # parked out of claim_next's way until phase 2
        ledger.update(shared, {"status": "deferred"})
        setup_events = len(ledger.events())
    barrier = SPAWN.Barrier(WORKERS)
    results = SPAWN.Queue()
    procs = [SPAWN.Process(target=_worker, args=(str(db), i, shared, prize, barrier, results),
                           name=f"worker-{i}") for i in range(WORKERS)]
    _run(procs)
    outs = [results.get(timeout=TIMEOUT) for _ in procs]
    _join(procs)

    errors = [o["error"] for o in outs if "error" in o]
    assert not errors, errors[0]
    assert not any("locked" in str(o) for o in outs)

    with _open(str(db), "check") as ledger:
        # every create and update of every process is there
        created = [tid for o in outs for tid in o["created"]]
        assert len(created) == len(set(created)) == WORKERS * CREATES
        for o in outs:
            for tid in o["created"]:
                task = ledger.get(tid)
                assert (task.priority, task.notes, task.labels) == (
                    1, f"written by {o['name']}", [o["name"]])
        # every comment, exactly once
        comments = Counter(c.text for c in ledger.show(shared).comments)
        assert sum(comments.values()) == WORKERS * COMMENTS
        assert set(comments.values()) == {1}
        # every read-modify-write append, exactly once: no lost update
        lines = Counter(ledger.get(shared).notes.splitlines())
        assert lines == Counter(f"w{i:02d} line {k}" for i in range(WORKERS)
                                for k in range(APPENDS))
        # the prize was claimed exactly once, by the one who was told it won
        winners = [o["name"] for o in outs if o["won_prize"]]
        assert len(winners) == 1
        assert ledger.get(prize).assignee == winners[0]
        # claim_next: every ready task was taken by exactly one process
        claimed = [tid for o in outs for tid in o["claimed"]]
        assert Counter(claimed).most_common(1)[0][1] == 1
        assert sorted(claimed) == sorted(created)
        assert ledger.ready() == []
        for o in outs:
            for tid in o["claimed"]:
                assert ledger.get(tid).assignee == o["name"]
        # the audit chain holds every change, in one unbroken line
        report = ledger.verify()
        assert report.ok, report.problems
        expected = (setup_events + WORKERS * (2 * CREATES + COMMENTS + APPENDS) + 1
                    + len(claimed))
        assert report.events == expected
        kinds = Counter(e.kind for e in ledger.events())
        assert kinds["commented"] == WORKERS * COMMENTS
        assert kinds["claimed"] == 1 + len(claimed)


def test_two_processes_claiming_one_task_exactly_one_wins(db: Path) -> None:
    rounds = 8
    barrier = SPAWN.Barrier(2)
    results = SPAWN.Queue()
    inboxes = [SPAWN.Queue(), SPAWN.Queue()]
    procs = [SPAWN.Process(target=_claimer, args=(str(db), f"c{i}", inboxes[i], barrier, results),
                           name=f"claimer-{i}") for i in range(2)]
    _run(procs)
    wins: Counter[str] = Counter()
    try:
        with _open(str(db), "setup") as ledger:
            for r in range(rounds):
                tid = ledger.create(f"contested {r}").id
                for inbox in inboxes:
                    inbox.put(tid)
                got = sorted(results.get(timeout=TIMEOUT) for _ in range(2))
                outcomes = [g[2] for g in got]
                assert sorted(outcomes) == ["lost", "won"], got
                winner = next(g[1] for g in got if g[2] == "won")
                wins[winner] += 1
                task = ledger.get(tid)
                assert (task.status, task.assignee) == ("in_progress", winner)
                assert [e.kind for e in ledger.events(tid)] == ["created", "claimed"]
    finally:
        for inbox in inboxes:
            inbox.put(None)
        _join(procs)
    assert sum(wins.values()) == rounds
    with _open(str(db), "check") as ledger:
        assert ledger.verify().ok


def _taskmill() -> list[str]:
    script = Path(sys.executable).with_name("taskmill")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "taskmill"]


def test_twenty_command_processes_at_once(taskmill_repo: Path) -> None:
    """``taskmill`` processes started together: comments, note appends, creates, claims."""
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*_taskmill(), *args], cwd=taskmill_repo, capture_output=True,
                              text=True, check=False, env=os.environ.copy())

    shared_id = json.loads(run("create", "shared", "--json").stdout)["id"]
    prize_id = json.loads(run("create", "prize", "--json").stdout)["id"]
    tm = " ".join(_taskmill())
    procs = []
    for i in range(WORKERS):
        script = (f"{tm} comment {shared_id} 'comment {i}' --json"
                  f" && {tm} update {shared_id} --append-notes 'line {i}' --json"
                  f" && {tm} --actor p{i} update {prize_id} --claim --json")
        procs.append(subprocess.Popen(["sh", "-c", script], cwd=taskmill_repo, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=TIMEOUT)
        outs.append((proc.returncode, out, err))
    assert not any("locked" in err for _, _, err in outs), [e for _, _, e in outs]
    codes = Counter(code for code, _, _ in outs)
    # the last command of each script is the claim: exactly one exits 0, the rest 4
    assert codes == Counter({0: 1, 4: WORKERS - 1}), outs
    for code, _, err in outs:
        if code == 4:
            assert json.loads(err.strip().splitlines()[-1])["error"]["code"] == "claim_conflict"
    show = json.loads(run("show", shared_id, "--json").stdout)
    assert sorted(c["text"] for c in show["comments"]) == sorted(
        f"comment {i}" for i in range(WORKERS))
    assert sorted(show["notes"].splitlines()) == sorted(f"line {i}" for i in range(WORKERS))
    prize = json.loads(run("show", prize_id, "--json").stdout)
    winner = [i for i, (code, _, _) in enumerate(outs) if code == 0]
    assert (prize["status"], prize["assignee"]) == ("in_progress", f"p{winner[0]}")
    verify = run("verify", "--json")
    assert verify.returncode == 0 and json.loads(verify.stdout)["ok"]
