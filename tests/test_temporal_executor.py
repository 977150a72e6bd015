"""The Temporal executor end to end: a real Temporal dev server, ``taskmill worker``
processes each with its own clone of a shared bare remote, ``taskmill run --executor
temporal`` in the user's checkout, scripted agents."""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

import pg_helpers
from mill_helpers import agent_script, kill_group, read_spy_log, wait_for
from taskmill.clock import SystemClock
from taskmill.kinds import AttemptOutcome
from taskmill.web.app import create_app
from temporal_helpers import Cluster, events_of

WRITE_FILE = """
(WT / f"{TASK}.txt").write_text(f"done by {TASK}\\n")
"""


@pytest.fixture
def cluster(tmp_path: Path, temporal_server: str):
    c = Cluster(tmp_path, temporal_server, checks=["test -f README.md"])
    yield c
    c.stop()


def test_one_worker_lands_tasks_and_their_dependents(cluster: Cluster) -> None:
    repo = cluster.repo
    agent = agent_script(cluster.tmp / "agent.py", WRITE_FILE, spy=repo.spy)
    repo.create("tm-a")
    repo.create("tm-b", after=["tm-a"])
    repo.create("tm-c")
    before = repo.tip()
    cluster.start_worker(1)
    result = cluster.run("--agent-cmd", agent, "-j", "2")
    assert result.returncode == 0, result.describe() + cluster.log(1)
    landings = cluster.remote_landings()
    assert {k: len(v) for k, v in landings.items()} == {"tm-a": 1, "tm-b": 1, "tm-c": 1}
    for tid in ("tm-a", "tm-b", "tm-c"):
        task = repo.task(tid)
        assert task["status"] == "closed", task
        assert task["close_reason"] == f"landed {landings[tid][0]}"
    # the user's checkout was not touched: its main is where it was
    assert repo.tip() == before
    assert repo.git("status", "--porcelain") == ""
    assert len(events_of(result, "dispatched")) == 3
    repo.verify_ok()


def test_another_projects_workflow_of_the_same_task_id_does_not_catch_a_run(
        cluster: Cluster) -> None:
    """The namespace is shared: another project (another queue, no worker of ours) has a
    workflow of ``tm-a``'s first lap running. This run's ``tm-a`` is its own workflow; with
    ids of the task alone it waited on theirs for good (how the chaos test hung in CI)."""
    from taskmill.kinds import TaskOutcome
    from taskmill.mill.settings import RunSettings
    from taskmill.mill.worker import Outcome
    from taskmill.temporal.executor import TemporalExecutor
    from taskmill.temporal.payloads import pack
    from taskmill.temporal.spec import RunSpec, TaskSpec

    repo = cluster.repo
    agent = agent_script(cluster.tmp / "agent.py", WRITE_FILE, spy=repo.spy)
    repo.create("tm-a")
    run = pack(RunSpec("their-run", "main", RunSettings(agent="noop")))
    with TemporalExecutor(cluster.address, task_queue=f"{cluster.queue}-theirs") as theirs:
        theirs.start(TaskSpec("tm-a", 1, False, run, 2.0, 60.0, 60.0),
                     lambda exc: Outcome("tm-a", "", TaskOutcome.ERROR, reason=repr(exc)))
        assert wait_for(lambda: theirs.running("tm-a", 1), timeout=30)
    cluster.start_worker(1)
    result = cluster.run("--agent-cmd", agent, timeout=90)
    assert result.returncode == 0, result.describe() + cluster.log(1)
    assert list(cluster.remote_landings()) == ["tm-a"]


BACKLOG_AGENT = """
SLEEP = float(os.environ.get("AGENT_SLEEP", "0"))
time.sleep(SLEEP)
if TASK.startswith("tm-c"):  # the conflict group: all append to the same file
    shared = WT / "shared.txt"
    text = shared.read_text() if shared.exists() else ""
    if "<<<<<<<" in text:
        text = "\\n".join(l for l in text.splitlines()
                          if not l.startswith(("<<<<<<<", "=======", ">>>>>>>"))) + "\\n"
    if f"by {TASK}" not in text:
        text += f"by {TASK}\\n"
    shared.write_text(text)
if TASK.endswith(("3", "7")) and CALL == 1:  # a first turn that fails its checks
    (WT / f"{TASK}.wip").write_text("not yet\\n")
else:
    (WT / f"{TASK}.txt").write_text(f"done by {TASK}\\n")
"""


def task_checks(tid: str) -> list[str]:
    checks = [f"test -f {tid}.txt"]
    if tid.startswith("tm-c"):
        checks.append(f"grep -q 'by {tid}' shared.txt && ! grep -q '^<<<<<<<' shared.txt")
    return checks


def make_backlog(cluster: Cluster, n: int) -> list[str]:
    """``n`` tasks: chains of dependencies, some failing their first turn, a conflict group."""
    ids = []
    for i in range(n):
        # pairs of the conflict group are dispatched together, cut from the same tip
        tid = f"tm-{'c' if i % 10 in (0, 1) else 't'}{i:02d}"
        after = [ids[i - 1]] if i % 5 == 4 else []  # every fifth waits on the one before
        cluster.repo.create(tid, checks=task_checks(tid), after=after)
        ids.append(tid)
    return ids


def assert_landed_exactly_once(cluster: Cluster, ids: list[str]) -> None:
    repo = cluster.repo
    landings = cluster.remote_landings()
    assert sorted(landings) == sorted(ids), sorted(set(ids) ^ set(landings))
    twice = {k: v for k, v in landings.items() if len(v) != 1}
    assert not twice, twice
    for tid in ids:
        task = repo.task(tid)
        assert task["status"] == "closed" and task["close_reason"] == \
            f"landed {landings[tid][0]}", task
    # the final tree passes every task's checks
    final = cluster.tmp / "final"
    repo.git("worktree", "add", "-q", "--detach", str(final), "origin/main")
    for tid in ids:
        for check in task_checks(tid):
            proc = subprocess.run(["bash", "-c", check], cwd=final, capture_output=True)
            assert proc.returncode == 0, (tid, check)
    repo.git("worktree", "remove", "--force", str(final))
    repo.verify_ok()


LEDGERS = ["sqlite", "postgres"]
"""Where the shared ledger is: the SQLite file of the user's checkout (workers on this
machine open it through ``TASKMILL_DIR``), or a real PostgreSQL server (workers open it from
the ``[ledger] url`` committed in the repository they clone: nothing in their environment)."""


def new_cluster(tmp_path: Path, temporal_server: str, ledger: str,
                **options: Any) -> Cluster:
    database = pg_helpers.new_database() if ledger == "postgres" else None
    return Cluster(tmp_path, temporal_server, database=database, **options)


AGENT_USES_THE_LEDGER = """
if TASK == "tm-t02" and CALL == 1:  # the agent's own taskmill finds the shared ledger
    proc = subprocess.run([sys.executable, "-m", "taskmill", "comment", TASK,
                           "noted by the agent"], capture_output=True, text=True)
    save("agent-comment.txt", f"{proc.returncode}\\n{proc.stdout}{proc.stderr}")
"""


def assert_workers_used_the_committed_url(cluster: Cluster) -> None:
    """The workers found the PostgreSQL ledger in their clones' config and made no SQLite
    ledger of their own; their agents reach it only through their turn's capability socket
    (as on the local mill), never with the worker's database URL."""
    assert cluster.database is not None
    for n in (1, 2, 3):
        clone = cluster.tmp / f"worker{n}" / "clone" / ".taskmill"
        assert not (clone / "taskmill.db").exists()
    env = json.loads((cluster.repo.spy / "env-tm-t02-1.json").read_text())
    assert "TASKMILL_DATABASE_URL" not in env and "TASKMILL_DIR" not in env, env
    assert os.path.join("clone", ".taskmill", "run", "cap") in env["TASKMILL_SOCKET"], env
    said = (cluster.repo.spy / "agent-comment.txt").read_text()
    assert said.startswith("0\n"), said
    comments = cluster.repo.task("tm-t02").get("comments") or []
    assert any(c["text"] == "noted by the agent" for c in comments), comments


@pytest.mark.parametrize(("ledger", "tasks"), [
    ("sqlite", 30), ("postgres", 30),
    pytest.param("sqlite", 60, marks=[pytest.mark.slow, pytest.mark.scale]),
    pytest.param("postgres", 60, marks=[pytest.mark.slow, pytest.mark.scale])])
def test_three_workers_work_a_backlog_each_task_landing_exactly_once(
        tmp_path: Path, temporal_server: str, ledger: str, tasks: int) -> None:
    cluster = new_cluster(tmp_path, temporal_server, ledger, checks=["test -f README.md"])
    try:
        three_workers_work_a_backlog(cluster, tasks)
    finally:
        cluster.stop()


def three_workers_work_a_backlog(cluster: Cluster, tasks: int) -> None:
    repo = cluster.repo
    agent = agent_script(cluster.tmp / "agent.py", AGENT_USES_THE_LEDGER + BACKLOG_AGENT,
                         spy=repo.spy)
    ids = make_backlog(cluster, tasks)
    for n in (1, 2, 3):
        cluster.start_worker(n)
    result = cluster.run("--agent-cmd", agent, "-j", "6", "--max-iterations", "4")
    assert result.returncode == 0, result.describe() + cluster.log(1)
    assert_landed_exactly_once(cluster, ids)
    if cluster.database is not None:
        assert_workers_used_the_committed_url(cluster)
    # every worker did some of the work, each in its own clone
    workers = {a.get("detail", {}).get("worker") for tid in ids for a in repo.attempts(tid)}
    assert workers == {"w1", "w2", "w3"}, workers
    retried = [tid for tid in ids if len(repo.attempts(tid)) > 1]
    assert any(t.endswith(("3", "7")) for t in retried), retried
    conflicts = [tid for tid in ids for a in repo.attempts(tid)
                 if a["outcome"] == AttemptOutcome.REJECTED_CONFLICT]
    assert conflicts, "no landing met a conflict"
    assert events_of(result, "task_finished")


def remote_landed(cluster: Cluster) -> int:
    proc = subprocess.run(["git", "--git-dir", str(cluster.origin), "log", "--format=%H",
                           "--grep=Taskmill-Task: ", "main"], capture_output=True, text=True)
    return len(proc.stdout.split())


@pytest.mark.slow
@pytest.mark.parametrize(("ledger", "tasks", "kills"), [
    ("sqlite", 30, 4), ("postgres", 30, 4),
    pytest.param("postgres", 60, 5, id="postgres-60-full", marks=pytest.mark.scale)])
def test_chaos_workers_and_the_client_killed_nothing_lost_nothing_twice(
        tmp_path: Path, temporal_server: str, ledger: str, tasks: int, kills: int) -> None:
    cluster = new_cluster(tmp_path, temporal_server, ledger, checks=["test -f README.md"],
                          heartbeat_timeout=2.0)
    client = None
    try:
        repo = cluster.repo
        agent = agent_script(tmp_path / "agent.py", "time.sleep(0.6)\n" + BACKLOG_AGENT,
                             spy=repo.spy)
        ids = make_backlog(cluster, tasks)
        for n in (1, 2, 3):
            cluster.start_worker(n)
        args = cluster.run_args("--agent-cmd", agent, "-j", "6", "--max-iterations", "5")
        client = repo.spawn(*args)
        rng = random.Random(15)
        for kill in range(kills):
            landed = remote_landed(cluster)
            assert wait_for(lambda landed=landed: remote_landed(cluster) >= landed + 3,
                            timeout=90), cluster.log(1)
            if kill == 2:  # the client once: its workflows go on; the next run finds them
                kill_group(client)
                client = repo.spawn(*args)
            victim = rng.choice([1, 2, 3])
            cluster.kill_worker(victim)  # kill -9 mid-turn: its tasks move elsewhere
            cluster.start_worker(victim)
        try:
            _out, err = client.communicate(timeout=240)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(cluster.hung(client, exc)) from exc
        if client.returncode != 0:  # tasks a lost worker errored: the next run retries them
            again = cluster.run(*args[4:])
            assert again.returncode == 0, err + again.describe()
        assert_landed_exactly_once(cluster, ids)
        lost = [e for tid in ids for e in repo.ledger.events(tid) if e.kind == "worker_lost"]
        assert lost, "no task lost its worker: the chaos did not bite"
    finally:
        if client is not None and client.poll() is None:
            kill_group(client)
        cluster.stop()


HOLD_AGENT = """
(SPY / f"started-{TASK}").write_text("")
while not (SPY / "release").exists():
    time.sleep(0.05)
(WT / f"{TASK}.txt").write_text("done\\n")
"""


def test_status_and_the_dashboard_show_which_worker_runs_which_task(
        tmp_path: Path, temporal_server: str) -> None:
    cluster = Cluster(tmp_path, temporal_server, heartbeat_timeout=2.0)
    client = None
    try:
        repo = cluster.repo
        agent = agent_script(tmp_path / "agent.py", HOLD_AGENT, spy=repo.spy)
        repo.create("tm-a")
        cluster.start_worker(1)
        client = repo.spawn(*cluster.run_args("--agent-cmd", agent))
        assert wait_for(lambda: (repo.spy / "started-tm-a").exists(), timeout=60), \
            cluster.log(1)

        def placed() -> dict[str, Any]:
            proc = repo.cli("status", "--json")
            assert proc.returncode == 0, proc.stderr
            data: dict[str, Any] = json.loads(proc.stdout)
            return data

        assert wait_for(lambda: (placed()["in_progress"] or [{}])[0].get("last_heartbeat"),
                        timeout=20)
        status = placed()
        assert status["executor"] == "temporal"
        row = status["in_progress"][0]
        assert row["task"] == "tm-a" and row["worker"] == "w1"
        assert row["activity"] == "taskmill.step"
        assert [w["worker"] for w in status["workers"]] == ["w1"]
        assert status["workers"][0]["last_seen"]
        text = repo.cli("status")
        assert "tm-a" in text.stdout and "on w1" in text.stdout, text.stdout

        # the dashboard's /api/now says the same
        app = create_app(repo.root, dict(os.environ), SystemClock())
        with TestClient(app, base_url="http://127.0.0.1") as http:
            now = http.get("/api/now").json()
        assert [t["task"] for t in now["cluster"]["tasks"]] == ["tm-a"]
        assert now["cluster"]["tasks"][0]["worker"] == "w1"
        assert [w["worker"] for w in now["cluster"]["workers"]] == ["w1"]

        (repo.spy / "release").write_text("")
        client.communicate(timeout=60)
        assert client.returncode == 0
        assert repo.cli("status", "--json").stdout.count("tm-a") == 0
    finally:
        if client is not None and client.poll() is None:
            kill_group(client)
        cluster.stop()


def test_a_worker_works_at_most_its_slots_at_once(cluster: Cluster) -> None:
    repo = cluster.repo
    agent = agent_script(cluster.tmp / "agent.py", "time.sleep(0.3)\n" + WRITE_FILE,
                         spy=repo.spy)
    for tid in ("tm-a", "tm-b", "tm-c", "tm-d"):
        repo.create(tid)
    cluster.start_worker(1, slots=1)
    result = cluster.run("--agent-cmd", agent, "-j", "4")  # the client would run 4 at once
    assert result.returncode == 0, result.describe() + cluster.log(1)
    assert sorted(cluster.remote_landings()) == ["tm-a", "tm-b", "tm-c", "tm-d"]
    running, most = 0, 0
    for fields in read_spy_log(repo.spy):
        running += {"start": 1, "end": -1}.get(fields[1], 0)
        most = max(most, running)
    assert most == 1
