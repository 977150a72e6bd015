"""Which agent works which task in ``taskmill run``: a task's own agent, else the run's default
(``--agent-cmd``, ``--agent``, ``[run] agent``); tasks with neither are named, not worked."""

from __future__ import annotations

import json
from pathlib import Path

from mill_helpers import MillRepo, agent_script

WRITE_OUT = """
    (WT / f"out-{TASK}.txt").write_text(pathlib.Path(sys.argv[0]).stem)
"""


def bot_repo(tmp_path: Path) -> MillRepo:
    """A repository whose config has one agent, ``bot`` (an exec agent), and no default."""
    bot = agent_script(tmp_path / "bot.py", WRITE_OUT, spy=tmp_path / "spy")
    return MillRepo(tmp_path, agents={"bot": {"adapter": "exec", "command": [bot]}})


def create(repo: MillRepo, task_id: str, agent: str | None) -> str:
    repo.ledger.create(f"task {task_id}", task_id=task_id, agent=agent,
                       checks=[f"test -f out-{task_id}.txt"])
    return task_id


def test_tasks_naming_their_agent_run_without_a_default(tmp_path: Path) -> None:
    repo = bot_repo(tmp_path)
    ids = [create(repo, f"tm-{n}", "bot") for n in "ab"]

    result = repo.run("-j", "2")

    assert result.returncode == 0, result.describe()
    repo.assert_all_landed_once(ids)
    assert {a["agent"] for tid in ids for a in repo.attempts(tid)} == {"bot"}
    assert (repo.root / "out-tm-a.txt").read_text() == "bot"


def test_tasks_without_an_agent_are_named_and_the_others_land(tmp_path: Path) -> None:
    repo = bot_repo(tmp_path)
    create(repo, "tm-a", "bot")
    create(repo, "tm-b", None)
    create(repo, "tm-c", None)

    result = repo.run("-j", "2")

    assert result.returncode == 1, result.describe()  # work was left undone
    repo.assert_all_landed_once(["tm-a"])
    for tid in ("tm-b", "tm-c"):
        assert repo.task(tid)["status"] == "open"
        assert repo.attempts(tid) == []
        assert not result.events_of("dispatched", tid)
    (warning,) = result.events_of("warning")
    assert warning["tasks"] == ["tm-b", "tm-c"]
    for words in ("tm-b, tm-c", "no default agent", "taskmill update ID --agent NAME",
                  "[run] agent", "--agent-cmd"):
        assert words in warning["message"]
    assert warning["message"] in result.stdout  # said at start, in the run's output
    assert "not worked: tm-b: names no agent" in result.stdout  # and in the summary
    (finished,) = result.events_of("run_finished")
    assert [s["task"] for s in finished["skipped"]] == ["tm-b", "tm-c"]


def test_agent_cmd_works_only_the_tasks_without_an_agent(tmp_path: Path) -> None:
    repo = bot_repo(tmp_path)
    create(repo, "tm-a", "bot")
    create(repo, "tm-b", None)
    cmd = agent_script(tmp_path / "cmd.py", WRITE_OUT, spy=repo.spy)

    result = repo.run("--agent-cmd", cmd, "-j", "2")

    assert result.returncode == 0, result.describe()
    repo.assert_all_landed_once(["tm-a", "tm-b"])
    assert (repo.root / "out-tm-a.txt").read_text() == "bot"
    assert (repo.root / "out-tm-b.txt").read_text() == "cmd"
    assert [a["agent"] for a in repo.attempts("tm-a")] == ["bot"]
    assert [a["agent"] for a in repo.attempts("tm-b")] == ["cmd"]


def test_a_task_whose_agent_left_the_config_is_reported_once(tmp_path: Path) -> None:
    repo = bot_repo(tmp_path)
    create(repo, "tm-a", None)
    create(repo, "tm-b", "bot")
    # its [agents.gone] table was removed after the task was created
    repo.ledger.update("tm-b", {"agent": "gone"})
    cmd = agent_script(tmp_path / "cmd.py", WRITE_OUT, spy=repo.spy)

    result = repo.run("--agent-cmd", cmd, "-j", "1")

    assert result.returncode == 1, result.describe()
    repo.assert_all_landed_once(["tm-a"])
    assert repo.task("tm-b")["status"] == "open"
    (skipped,) = result.events_of("skipped", "tm-b")
    assert "agent 'gone' is neither an [agents.gone] table" in skipped["reason"]
    assert "taskmill update tm-b --agent NAME" in skipped["hint"]
    assert "tm-b" in result.stdout and "'gone' is neither" in result.stdout
    summary = json.loads(repo.cli("run", "--agent-cmd", cmd, "--json").stdout)
    assert summary["skipped"] == [{"task": "tm-b", "reason": skipped["reason"]}]
