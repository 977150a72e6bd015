"""Smaller defects a new user meets: unknown statuses, ids typed without the prefix or in
another case, what a plan re-import did, why a task is blocked and how to unblock it, the
wording of ``dep tree``, the dashboard's badge without a run, the ledger file's mode, and
seconds in ``--json`` output."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from conftest import CliResult
from mill_helpers import MillRepo, agent_script
from taskmill.clock import SystemClock
from taskmill.errors import InvalidInput, NotFound
from taskmill.ledger import Ledger
from taskmill.web.app import create_app

Cli = Callable[..., CliResult]


# -- list -s bogus ---------------------------------------------------------------------------


def test_unknown_status_is_an_error_naming_the_statuses(cli: Cli, taskmill_repo: Path,
                                                       ledger: Ledger) -> None:
    cli("create", "x", cwd=taskmill_repo).ok()
    result = cli("list", "-s", "bogus", "--json", cwd=taskmill_repo)
    assert result.exit_code == 2
    error = result.error()
    assert "bogus" in error["message"]
    assert "open, in_progress, blocked, deferred, closed" in error["hint"]
    human = cli("list", "-s", "open", "-s", "bogus", cwd=taskmill_repo)
    assert human.exit_code == 2 and "0 tasks" not in human.stdout
    # statuses taskmill does not set, but imported records carry, are fine
    with pytest.raises(InvalidInput, match="no status 'weird'"):
        ledger.list_tasks(status="weird")
    ledger.store.conn.execute("UPDATE tasks SET status = 'weird' WHERE id = ?",
                        (ledger.create("imported").id,))
    assert [t.title for t in ledger.list_tasks(status="weird")] == ["imported"]
    assert ledger.list_tasks(status=["tombstone", "hooked"]) == []


# -- ids -------------------------------------------------------------------------------------


def test_ids_without_the_prefix_or_in_another_case(cli: Cli, taskmill_repo: Path) -> None:
    repo = taskmill_repo
    cli("create", "target", "--id", "tm-3s6p", cwd=repo).ok()
    cli("create", "other", "--id", "tm-9zzz", cwd=repo).ok()
    for given in ("tm-3s6p", "3s6p", "TM-3S6P", "3S6P", "Tm-3s6", "3s6"):
        assert cli("show", given, "--json", cwd=repo).ok().json()["id"] == "tm-3s6p", given
    cli("close", "3S6P", "--json", cwd=repo).ok()
    cli("reopen", "TM-3s6p", cwd=repo).ok()
    cli("dep", "add", "9ZZZ", "3s6p", cwd=repo).ok()
    assert cli("blocked", "--json", cwd=repo).ok().json()[0]["blocked_by"] == ["tm-3s6p"]
    # a near miss names the nearest ids
    error = cli("show", "tm-3s6q", "--json", cwd=repo).error()
    assert error["code"] == "not_found" and error["hint"] == "did you mean tm-3s6p?"
    assert "did you mean tm-3s6p?" in cli("show", "3s7p", cwd=repo).stderr
    far = cli("show", "qqqqqqqq", "--json", cwd=repo).error()
    assert "did you mean" not in far["hint"]


def test_id_resolution_edge_cases(ledger: Ledger) -> None:
    ledger.create("a", task_id="tm-ab12")
    ledger.create("b", task_id="tm-ab34")
    ledger.create("imported", task_id="BD-Up1")
    with pytest.raises(NotFound):
        ledger.resolve("AB")  # under three characters without the prefix: no prefix match
    assert ledger.resolve("AB1") == "tm-ab12"
    with pytest.raises(InvalidInput, match="ambiguous"):
        ledger.resolve("TM-AB")
    assert ledger.resolve("bd-up1") == "BD-Up1"
    assert ledger.resolve("ab34") == "tm-ab34"
    with pytest.raises(NotFound):
        ledger.resolve("a")  # one character without the prefix is not a prefix match
    for bad in ("", "  ", {"id": 1}, None, "x\x00y"):
        with pytest.raises(InvalidInput):
            ledger.resolve(bad)  # type: ignore[arg-type]


# -- plan re-import --------------------------------------------------------------------------


PLAN = """\
[[task]]
key = "a"
title = "first"

[[task]]
key = "b"
title = "second"
after = ["a"]
"""


def test_plan_reimport_reports_created_updated_unchanged(cli: Cli, taskmill_repo: Path) -> None:
    from taskmill.plan import import_plan_report
    from taskmill.project import open_project

    plan = taskmill_repo / "plan.toml"
    plan.write_text(PLAN, encoding="utf-8")
    first = cli("import", "plan.toml", cwd=taskmill_repo).ok().stdout
    assert first.startswith("imported plan.toml: 2 created, 0 updated, 0 unchanged")
    again = cli("import", "plan.toml", cwd=taskmill_repo).ok().stdout
    assert again.startswith("imported plan.toml: 0 created, 0 updated, 2 unchanged")
    # --json keeps its documented shape, {key: id}
    keys = cli("import", "plan.toml", "--json", cwd=taskmill_repo).ok().json()
    assert set(keys) == {"a", "b"}
    plan.write_text(PLAN.replace('"second"', '"second, renamed"')
                    + '\n[[task]]\nkey = "c"\ntitle = "third"\n', encoding="utf-8")
    with open_project(taskmill_repo, {}) as project:
        third = import_plan_report(project.ledger, plan).to_json()
    assert (third["created"], third["updated"], third["unchanged"]) == (1, 1, 1)
    assert third["updated_ids"] == [keys["b"]]
    assert third["created_ids"] == [third["tasks"]["c"]]  # type: ignore[index]
    # a dependency the plan no longer gives counts as an update too
    plan.write_text(PLAN.replace('after = ["a"]\n', "").replace('"second"', '"second, renamed"')
                    + '\n[[task]]\nkey = "c"\ntitle = "third"\n', encoding="utf-8")
    fourth = cli("import", "plan.toml", cwd=taskmill_repo).ok().stdout
    assert fourth.startswith("imported plan.toml: 0 created, 1 updated, 2 unchanged")


# -- blocked, its reason and how to unblock; seconds in --json --------------------------------


def test_blocked_says_why_and_how_to_unblock_and_json_seconds_are_rounded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / (TASK + ".txt")).write_text(TASK)
    """, spy=repo.spy)
    repo.create("tm-ok", checks=["test -f tm-ok.txt"])
    repo.create("tm-no", checks=["exit 1"])
    repo.create("tm-wait", after=["tm-no"])
    proc = repo.cli("run", "--agent-cmd", cmd, "--json", "--max-iterations", "1",
                    "--only", "tm-ok", "--only", "tm-no")
    summary = json.loads(proc.stdout)
    assert {t["task_id"]: t["outcome"] for t in summary["tasks"]} == {"tm-ok": "landed",
                                                                      "tm-no": "blocked"}
    for task in summary["tasks"]:
        assert task["seconds"] == round(task["seconds"], 3)
    assert not re.search(r'"seconds": \d+\.\d{4,}', proc.stdout), proc.stdout
    blocked = {b["id"]: b for b in json.loads(repo.cli("blocked", "--json").stdout)}
    assert blocked["tm-no"]["block_reason"].startswith("reached --max-iterations")
    assert blocked["tm-no"]["unblock_with"] == "taskmill reopen tm-no"
    assert blocked["tm-wait"]["blocked_by"] == ["tm-no"]
    assert blocked["tm-wait"]["block_reason"] is None
    text = repo.cli("blocked").stdout
    assert "blocked: reached --max-iterations" in text
    assert "taskmill reopen tm-no" in text and "taskmill reopen tm-wait" not in text
    # the command it names does unblock it
    assert repo.cli("reopen", "tm-no").returncode == 0
    assert repo.task("tm-no")["status"] == "open"


def test_block_reason_without_a_mill_comment(ledger: Ledger) -> None:
    task = ledger.create("x")
    ledger.update(task.id, {"status": "blocked"}, actor="alice")
    (item,) = ledger.blocked()
    assert item.reason is not None and item.reason.startswith("marked blocked by alice at ")
    assert item.unblock == f"taskmill reopen {task.id}"


# -- dep tree --------------------------------------------------------------------------------


def test_dep_tree_says_waits_on(cli: Cli, taskmill_repo: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    repo = taskmill_repo
    cli("create", "the blocker", "--id", "tm-aaaa", cwd=repo).ok()
    cli("create", "the epic", "--id", "tm-eeee", "-t", "epic", cwd=repo).ok()
    cli("create", "the waiter", "--id", "tm-bbbb", "--after", "tm-aaaa", "--parent", "tm-eeee",
        cwd=repo).ok()
    tree = cli("dep", "tree", "tm-bbbb", cwd=repo).ok().stdout
    assert "waits on tm-aaaa" in tree and "child of tm-eeee" in tree
    assert "blocks" not in tree
    reverse = cli("dep", "tree", "tm-aaaa", "--reverse", cwd=repo).ok().stdout
    assert "blocks tm-bbbb" in reverse
    assert "parent of tm-bbbb" in cli("dep", "tree", "tm-eeee", "--reverse", cwd=repo).ok().stdout


# -- the dashboard's badge -------------------------------------------------------------------


def test_dashboard_knows_when_no_run_is_going(taskmill_repo: Path) -> None:
    app = create_app(taskmill_repo, dict(os.environ), SystemClock())
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert client.get("/api/project").json()["mill_running"] is False
        assert client.get("/api/now").json()["mill_running"] is False
        events = taskmill_repo / ".taskmill" / "run" / "events.ndjson"
        events.parent.mkdir(parents=True, exist_ok=True)
        events.write_text(json.dumps({"ts": "t", "event": "run_started", "run_id": "r1"}) + "\n",
                          encoding="utf-8")
        assert client.get("/api/project").json()["mill_running"] is True
        with events.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"ts": "t", "event": "run_finished", "run_id": "r1"}) + "\n")
        assert client.get("/api/project").json()["mill_running"] is False
    script = (Path(__file__).parents[1] / "src" / "taskmill" / "web" / "static" / "app.js"
              ).read_text(encoding="utf-8")
    assert '"no run"' in script


# -- the ledger file -------------------------------------------------------------------------


def test_ledger_database_is_private(tmp_path: Path, cli: Cli, taskmill_repo: Path) -> None:
    with Ledger.open(tmp_path / "ledger.db", prefix="tm") as led:
        led.create("secret plans")
        files = [tmp_path / "ledger.db", tmp_path / "ledger.db-wal", tmp_path / "ledger.db-shm"]
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    db = taskmill_repo / ".taskmill" / "taskmill.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_plan_values_over_the_ledger_limits_name_the_task_and_line(
        cli: Cli, taskmill_repo: Path) -> None:
    plan = taskmill_repo / "plan.toml"
    plan.write_text('[[task]]\nkey = "a"\ntitle = "fine"\n\n[[task]]\nkey = "b"\n'
                    'title = """two\nlines"""\n', encoding="utf-8")
    error = cli("import", "plan.toml", "--json", cwd=taskmill_repo).error()
    assert error["code"] == "plan_invalid"
    assert re.search(r"plan\.toml, line 5: task 'b': the title must be one line", error["message"])
    assert cli("list", "--json", cwd=taskmill_repo).ok().json() == []
