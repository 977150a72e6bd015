"""Human approval before landing (``[merge] require_approval`` / ``approval_labels``): a real
``taskmill run`` with a scripted agent; approve and reject through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from mill_helpers import MillRepo, agent_script
from taskmill.mill.worktrees import branch_for
from taskmill.review.approval import approval_state

WORKER = """
(WT / f"{TASK}.txt").write_text(f"{TASK} iteration {ITER}\\n")
"""


def approval_repo(tmp_path: Path, merge: str) -> MillRepo:
    repo = MillRepo(tmp_path, checks=["true"])
    worker = agent_script(tmp_path / "worker.py", WORKER, spy=repo.spy)
    config = repo.root / ".taskmill" / "config.toml"
    config.write_text(config.read_text() + "\n[agents.worker]\nadapter = \"exec\"\n"
                      f"command = {json.dumps([worker])}\n\n[merge]\n{merge}",
                      encoding="utf-8")
    repo.git("commit", "-qam", "approval config")
    return repo


def turns(repo: MillRepo, task: str) -> int:
    return len(list(repo.spy.glob(f"prompt-{task}-*.stdin")))


def test_a_task_waits_without_a_worker_then_lands_once_approved(tmp_path: Path) -> None:
    repo = approval_repo(tmp_path, 'approval_labels = ["security"]\n')
    repo.ledger.create("touchy", task_id="tm-a", labels=["security"])
    repo.create("tm-b", "plain")
    before = repo.tip()

    # one worker: tm-b is worked and lands while tm-a waits (it holds no worker)
    result = repo.run("--agent", "worker", "-j", "1")

    assert repo.task("tm-b")["status"] == "closed", result.describe()
    a = repo.task("tm-a")
    assert a["status"] == "blocked", result.describe()
    state = approval_state(repo.ledger, "tm-a")
    assert state is not None and state.status == "awaiting"
    assert state.commit == repo.git("rev-parse", f"refs/heads/{branch_for('tm-a')}").strip()
    assert "tm-a.txt" not in repo.git("ls-tree", "--name-only", "main")
    assert result.events_of("awaiting_approval", "tm-a")
    listed = json.loads(repo.cli("review", "approvals", "--json").stdout)
    assert [item["task"]["id"] for item in listed] == ["tm-a"]
    assert repo.tip() != before  # tm-b landed

    approved = repo.cli("approve", "tm-a", "--json")
    assert approved.returncode == 0, approved.stderr
    assert repo.cli("approve", "tm-a").returncode == 4  # not awaiting any more
    calls = turns(repo, "tm-a")

    result = repo.run("--agent", "worker")

    assert result.returncode == 0, result.describe()
    assert repo.task("tm-a")["status"] == "closed"
    assert turns(repo, "tm-a") == calls  # landed as approved: no new agent turn
    assert repo.git("show", "main:tm-a.txt") == "tm-a iteration 1\n"
    kinds = [e.kind for e in repo.ledger.events("tm-a")]
    assert kinds.index("approval_requested") < kinds.index("approved")
    repo.verify_ok()


def test_a_task_sent_back_gets_the_comment_in_its_next_prompt(tmp_path: Path) -> None:
    repo = approval_repo(tmp_path, "require_approval = true\n")
    repo.create("tm-a", "needs eyes")
    repo.run("--agent", "worker")
    assert repo.task("tm-a")["status"] == "blocked"
    refused = repo.cli("reject", "tm-a", "-m", " ")
    assert refused.returncode == 2 and "needs a comment" in refused.stderr

    sent = repo.cli("reject", "tm-a", "-m", "Please also log the value you write.")
    assert sent.returncode == 0, sent.stderr

    repo.run("--agent", "worker")

    prompts = sorted(repo.spy.glob("prompt-tm-a-*.stdin"))
    assert len(prompts) == 2
    second = prompts[1].read_text()
    assert second.count("Please also log the value you write.") == 1, second
    # the mill's note on how to approve or send it back is for people, not the agent
    assert "awaiting a person's approval" not in second and "taskmill approve" not in second
    # it waits for approval again, with its new work
    state = approval_state(repo.ledger, "tm-a")
    assert state is not None and state.status == "awaiting"
    assert repo.task("tm-a")["status"] == "blocked"
