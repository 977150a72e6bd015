"""The Temporal executor end to end: a real Temporal dev server, ``taskmill worker``
processes each with its own clone of a shared bare remote, ``taskmill run --executor
temporal`` in the user's checkout, scripted agents."""

from __future__ import annotations

from pathlib import Path

import pytest
from mill_helpers import agent_script
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
