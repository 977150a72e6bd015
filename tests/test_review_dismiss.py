"""Dismissing findings: the working agent through its capability socket (the MCP tool's
path inside a turn), a person through the CLI; the hit rate and `taskmill review stats`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from taskmill.capability.client import CapabilityClient, RemoteTasks
from taskmill.capability.server import CapabilityServer
from taskmill.errors import TaskmillError
from taskmill.ledger import Ledger
from taskmill.review.book import findings, record_review
from taskmill.review.findings import BlockAt, Finding

PY = sys.executable


def seed(led: Ledger) -> dict[str, str]:
    """One blocker on tm-own and one on tm-other; returns their ids by task."""
    ids = {}
    for task in ("tm-own", "tm-other"):
        verdict = record_review(
            led, subject=task, task_id=task, reviewer="rev", repo="repo", commit="c1",
            found=[Finding(file="a.py", line_start=1, line_end=2, severity="blocker",
                           confidence=0.9, title=f"bug in {task}", explanation="x")],
            block_at=BlockAt(), min_confidence=0.0, changed_since=lambda old: {},
            actor="mill:run1")
        ids[task] = verdict.blocking[0].id
    return ids


def test_the_agent_dismisses_its_own_tasks_finding_with_a_reason(tmp_path: Path) -> None:
    db = tmp_path / "taskmill.db"
    with Ledger.open(db, prefix="tm", actor="tester") as led:
        led.create("worked", task_id="tm-own", status="in_progress")
        led.create("other", task_id="tm-other")
        ids = seed(led)
    server = CapabilityServer(tmp_path / "cap", lambda: Ledger.open(db, prefix="tm",
                                                                     actor="mill:run1"))
    server.start()
    client = CapabilityClient(server.register("tm-own", "exec"), timeout=30)
    try:
        tasks = RemoteTasks(client)
        with pytest.raises(TaskmillError, match="needs a reason"):
            tasks.dismiss_finding(ids["tm-own"], " ")
        with pytest.raises(TaskmillError) as refused:
            tasks.dismiss_finding(ids["tm-other"], "not mine but wrong")
        assert refused.value.code == "forbidden"
        done = tasks.dismiss_finding(ids["tm-own"], "a.py is generated code")
        assert done["fate"] == "dismissed" and done["decided_by"] == "agent:exec/tm-own"
    finally:
        client.close()
        server.stop()
    with Ledger.open(db, prefix="tm", actor="tester") as led:
        fates = {r.task_id: (r.fate, r.reason) for r in findings(led)}
        assert fates == {"tm-own": ("dismissed", "a.py is generated code"),
                         "tm-other": ("open", "")}
        assert [e.data["op"] for e in led.events() if e.kind == "capability_refused"] == [
            "dismiss_finding"]


def taskmill(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "taskmill", *args], cwd=repo, capture_output=True,
                          text=True, check=False, timeout=60)


def test_cli_dismiss_list_and_stats(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    assert taskmill(repo, "init", "--prefix", "tm").returncode == 0
    with Ledger.open(repo / ".taskmill" / "taskmill.db", prefix="tm", actor="tester") as led:
        led.create("worked", task_id="tm-own")
        led.create("other", task_id="tm-other")
        ids = seed(led)
    listed = json.loads(taskmill(repo, "review", "list", "--open", "--json").stdout)
    assert {r["id"] for r in listed} == set(ids.values())

    done = taskmill(repo, "review", "dismiss", ids["tm-own"], "-m", "wrong", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["fate"] == "dismissed"
    again = taskmill(repo, "review", "dismiss", ids["tm-own"], "-m", "wrong")
    assert again.returncode == 2 and "already dismissed" in again.stderr
    missing = taskmill(repo, "review", "dismiss", "F-00000000")
    assert missing.returncode == 3 and "no finding" in missing.stderr

    stats = json.loads(taskmill(repo, "review", "stats", "--json").stdout)
    [row] = stats["rows"]
    assert (row["reviewer"], row["severity"], row["reported"], row["open"], row["dismissed"],
            row["hit_rate"]) == ("rev", "blocker", 2, 1, 1, 0.0)
    text = taskmill(repo, "review", "stats").stdout
    assert "rev" in text and "0.00" in text


def test_the_mcp_tool_dismisses_outside_a_turn(taskmill_repo: Path, tmp_path: Path) -> None:
    from test_mcp import SERVER, call, call_error, run_session, server_env

    with Ledger.open(taskmill_repo / ".taskmill" / "taskmill.db", prefix="tm",
                     actor="tester") as led:
        led.create("worked", task_id="tm-own")
        led.create("other", task_id="tm-other")
        ids = seed(led)

    async def scenario(session: Any) -> None:
        done = await call(session, "dismiss_finding", finding_id=ids["tm-other"],
                          reason="the reviewer misread it")
        assert done["fate"] == "dismissed" and done["decided_by"] == "mcp-person"
        again = await call_error(session, "dismiss_finding", finding_id=ids["tm-other"],
                                 reason="twice")
        assert "already dismissed" in again

    run_session(SERVER, cwd=taskmill_repo, env=server_env(TASKMILL_ACTOR="mcp-person"),
                errlog=tmp_path / "server.log", scenario=scenario)


def test_a_review_agent_that_does_not_exist_stops_the_run_before_it_starts(
        tmp_path: Path) -> None:
    from mill_helpers import MillRepo

    repo = MillRepo(tmp_path)
    config = repo.root / ".taskmill" / "config.toml"
    config.write_text(config.read_text() + '\n[review]\nagent = "nobody"\n', encoding="utf-8")
    repo.git("commit", "-qam", "review on")
    repo.create("tm-a")
    result = repo.run("--agent-cmd", "true")
    assert result.returncode == 2, result.describe()
    assert "[review] agent" in result.stderr and "nobody" in result.stderr
    assert repo.task("tm-a")["status"] == "open"
