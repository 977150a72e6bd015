"""Containers (a task with children, e.g. an epic): never work, closed when their children
close, reopened when one reopens, shown as a group, and a deferred one says what it holds.

Issue 8, item 7: epics were handed to the agent and closed "landed" with empty commits
before their children ran.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from mill_helpers import MillRepo, agent_script
from taskmill.clock import FixedClock
from taskmill.containers import AUTO_CLOSE_REASON
from taskmill.errors import ClaimConflict
from taskmill.ledger import Ledger


@pytest.fixture
def ledger() -> Ledger:
    led = Ledger.memory(prefix="tm", clock=FixedClock(step=0.001), actor="tester")
    yield led  # type: ignore[misc]
    led.close_db()


def _epic(ledger: Ledger, n: int = 3, *, epic_id: str = "tm-e") -> list[str]:
    ledger.create("The epic", issue_type="epic", task_id=epic_id)
    return [ledger.create(f"child {i}", parent=epic_id, task_id=f"{epic_id}{i}").id
            for i in range(n)]


# -- never work ------------------------------------------------------------------------------


def test_a_container_is_never_claimed_as_work(ledger: Ledger) -> None:
    kids = _epic(ledger)
    # `ready` lists it, as Beads does, but marked; work_only (the mill) leaves it out
    ready = {t.id: t for t in ledger.ready()}
    assert ready["tm-e"].container and ready["tm-e"].to_json()["container"] is True
    assert not ready[kids[0]].container and ready[kids[0]].parent == "tm-e"
    assert [t.id for t in ledger.ready(work_only=True)] == kids
    # claim_next (MCP's and the mill's way of taking work) never takes it
    taken = [ledger.claim_next("agent").id for _ in kids]  # type: ignore[union-attr]
    assert taken == kids and ledger.claim_next("agent") is None
    assert ledger.get("tm-e").status == "open"


def test_claiming_a_container_as_work_is_refused(ledger: Ledger) -> None:
    _epic(ledger, 1)
    with pytest.raises(ClaimConflict, match="container"):
        ledger.claim("tm-e", "mill", work_only=True)
    assert ledger.get("tm-e").status == "open"
    # a person may still take it on by hand
    assert ledger.claim("tm-e", "alice").status == "in_progress"


# -- closing and reopening -----------------------------------------------------------------


def test_closing_the_last_child_closes_the_epic_by_the_same_actor(ledger: Ledger) -> None:
    kids = _epic(ledger)
    ledger.close(kids[0], "done", actor="alice")
    ledger.close(kids[1], "done", actor="alice")
    assert ledger.get("tm-e").status == "open"
    ledger.close(kids[2], "done", actor="bob")
    epic = ledger.get("tm-e")
    assert (epic.status, epic.close_reason) == ("closed", AUTO_CLOSE_REASON)
    assert (epic.children, epic.children_closed) == (3, 3)
    last = ledger.events("tm-e")[-1]
    assert last.actor == "bob" and last.kind == "updated"
    assert last.data["changes"]["status"] == ["open", "closed"]
    assert last.data["cause"]["child"] == kids[2]
    # recorded after the child's own close, in one chain that still verifies
    seqs = [e.seq for e in ledger.events() if e.task_id in (kids[2], "tm-e")]
    assert [e.task_id for e in ledger.events() if e.seq in seqs[-2:]] == [kids[2], "tm-e"]
    assert ledger.verify().ok


def test_nested_epics_close_and_reopen_all_the_way_up(ledger: Ledger) -> None:
    ledger.create("top", issue_type="epic", task_id="tm-top")
    ledger.create("middle", issue_type="epic", parent="tm-top", task_id="tm-mid")
    leaf = ledger.create("leaf", parent="tm-mid", task_id="tm-leaf").id
    ledger.update(leaf, {"status": "closed"}, actor="carol")
    assert [ledger.get(t).status for t in ("tm-mid", "tm-top")] == ["closed", "closed"]
    assert all(e.actor == "carol" for e in ledger.events()[-3:])

    ledger.reopen(leaf, actor="dave")
    for tid in ("tm-mid", "tm-top"):
        task = ledger.get(tid)
        assert (task.status, task.close_reason) == ("open", None)
        assert ledger.events(tid)[-1].actor == "dave"
    assert ledger.verify().ok


def test_a_new_open_child_reopens_a_closed_epic(ledger: Ledger) -> None:
    kids = _epic(ledger, 1)
    ledger.close(kids[0])
    assert ledger.get("tm-e").status == "closed"
    ledger.create("one more thing", parent="tm-e", task_id="tm-more")
    assert ledger.get("tm-e").status == "open"
    # the same through `dep add`, for an existing task
    ledger.close("tm-more")
    assert ledger.get("tm-e").status == "closed"
    ledger.create("loose", task_id="tm-loose")
    ledger.add_dep("tm-loose", "tm-e", "parent-child")
    assert ledger.get("tm-e").status == "open"
    # a closed task added as a child does not reopen it
    ledger.close("tm-loose")
    ledger.create("old", status="closed", task_id="tm-old")
    ledger.add_dep("tm-old", "tm-e", "parent-child")
    assert ledger.get("tm-e").status == "closed"


def test_removing_the_last_open_child_closes_the_epic(ledger: Ledger) -> None:
    kids = _epic(ledger, 2)
    ledger.close(kids[0])
    ledger.remove_dep(kids[1], "tm-e")
    epic = ledger.get("tm-e")
    assert (epic.status, epic.close_reason) == ("closed", AUTO_CLOSE_REASON)
    assert epic.children == 1
    # an epic left with no child at all is plain work again, not closed
    kids = _epic(ledger, 1, epic_id="tm-f")
    ledger.remove_dep(kids[0], "tm-f")
    assert ledger.get("tm-f").status == "open" and not ledger.get("tm-f").container


def test_the_epic_changes_in_the_same_transaction_as_its_child(ledger: Ledger) -> None:
    kids = _epic(ledger, 1)
    events = len(ledger.events())
    with pytest.raises(RuntimeError), ledger.transaction():
        ledger._update(kids[0], {"status": "closed"}, actor="x")
        assert ledger.get("tm-e").status == "closed"
        raise RuntimeError("the change fails after the close")
    assert [ledger.get(t).status for t in ("tm-e", kids[0])] == ["open", "open"]
    assert len(ledger.events()) == events and ledger.verify().ok


def test_the_epic_readiness_follows_auto_close_for_what_waits_on_it(ledger: Ledger) -> None:
    kids = _epic(ledger, 1)
    ledger.create("after the epic", after=["tm-e"], task_id="tm-next")
    assert not ledger.get("tm-next").ready
    ledger.close(kids[0])
    assert ledger.get("tm-next").ready
    ledger.reopen(kids[0])
    assert not ledger.get("tm-next").ready


# -- deferring -----------------------------------------------------------------------------


def test_a_deferred_epic_names_itself_as_the_reason_its_children_wait(ledger: Ledger) -> None:
    kids = _epic(ledger, 2)
    ledger.create("grandchild", parent=kids[0], task_id="tm-g")
    ledger.update("tm-e", {"status": "deferred"})
    assert ledger.held_back("tm-e") == [*kids, "tm-g"]
    held = {b.task.id: b for b in ledger.blocked()}
    assert held[kids[1]].reasons == ["parent tm-e is deferred"]
    assert held["tm-g"].reasons == [f"ancestor tm-e (through {kids[0]}) is deferred"]
    assert held["tm-g"].held_by_ancestor == ["tm-e"]
    assert held["tm-g"].to_json()["reasons"] == held["tm-g"].reasons


def test_a_parent_waiting_on_a_blocker_is_named_with_it(ledger: Ledger) -> None:
    ledger.create("first", task_id="tm-a")
    ledger.create("epic", after=["tm-a"], task_id="tm-e")
    ledger.create("child", parent="tm-e", task_id="tm-c")
    held = {b.task.id: b for b in ledger.blocked()}
    assert held["tm-c"].reasons == ["parent tm-e waits on tm-a"]


# -- the command line ------------------------------------------------------------------------


def test_cli_show_list_ready_blocked_and_defer_group_the_epic(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    led = repo.ledger
    kids = _epic(led, 3)
    led.close(kids[0])

    show = repo.cli("show", "tm-e")
    assert show.returncode == 0, show.stderr
    assert "1 of 3 closed" in show.stdout
    for kid in kids:
        assert kid in show.stdout
    shown = json.loads(repo.cli("show", "tm-e", "--json").stdout)
    assert [c["id"] for c in shown["child_tasks"]] == kids
    assert (shown["children"], shown["children_closed"], shown["container"]) == (3, 1, True)

    listed = json.loads(repo.cli("list", "--json").stdout)  # flat, with parent and count
    by_id = {t["id"]: t for t in listed}
    assert by_id["tm-e"]["children"] == 3 and by_id["tm-e"]["parent"] is None
    assert all(by_id[k]["parent"] == "tm-e" for k in kids[1:])
    text = repo.cli("list").stdout
    rows = {tid: next(line for line in text.splitlines() if re.search(rf"{tid}\b", line))
            for tid in ("tm-e", *kids)}
    assert "└ " + kids[1] in rows[kids[1]] and "└" not in rows["tm-e"]
    assert text.index("tm-e ") < text.index(kids[0]) < text.index(kids[2])

    ready = repo.cli("ready")
    assert "Containers" in ready.stdout and "tm-e" in ready.stdout
    ready_json = {t["id"]: t for t in json.loads(repo.cli("ready", "--json").stdout)}
    assert ready_json["tm-e"]["container"] is True

    deferred = repo.cli("update", "tm-e", "--status", "deferred")
    assert deferred.returncode == 0, deferred.stderr
    assert "holds back 2 tasks" in deferred.stdout
    wide = subprocess.run(repo.command("blocked"), cwd=repo.root, capture_output=True,
                          text=True, check=False, env={**os.environ, "COLUMNS": "200"})
    for kid in kids[1:]:
        row = next(line for line in wide.stdout.splitlines() if kid in line)
        assert "parent tm-e is deferred" in row, wide.stdout
    blocked = {b["id"]: b for b in json.loads(repo.cli("blocked", "--json").stdout)}
    assert blocked[kids[1]]["reasons"] == ["parent tm-e is deferred"]
    assert blocked[kids[1]]["held_by_ancestor"] == ["tm-e"]


# -- the mill --------------------------------------------------------------------------------


def test_the_mill_never_hands_an_epic_to_the_agent(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / f"out-{TASK}.txt").write_text(f"work of {TASK}\\n")
    """, spy=repo.spy)
    led = repo.ledger
    led.create("The epic", issue_type="epic", task_id="tm-e", priority=0)
    kids = [led.create(f"child {n}", parent="tm-e", task_id=f"tm-{n}",
                       checks=[f"test -f out-tm-{n}.txt"]).id for n in "abc"]
    before = repo.tip()

    result = repo.run("--agent-cmd", cmd, "-j", "2")

    assert result.returncode == 0, result.describe()
    assert not list(repo.spy.glob("prompt-tm-e-*")), "the agent was called with the epic"
    assert not result.events_of("dispatched", "tm-e")
    repo.assert_all_landed_once(kids)  # and no landing names the epic
    assert len(repo.git("rev-list", f"{before}..main").split()) == 3
    epic = repo.task("tm-e")
    assert (epic["status"], epic["close_reason"]) == ("closed", AUTO_CLOSE_REASON)
    assert epic["attempts"] == []
    repo.verify_ok()


# -- the dashboard -----------------------------------------------------------------------------


def test_dashboard_graph_and_task_page_show_the_group(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from taskmill.clock import SystemClock
    from taskmill.web.app import create_app

    repo = MillRepo(tmp_path)
    kids = _epic(repo.ledger, 3)
    repo.ledger.close(kids[0])
    repo.ledger.update("tm-e", {"status": "deferred"})
    app = create_app(repo.root, dict(os.environ), SystemClock())
    with TestClient(app, base_url="http://127.0.0.1") as client:
        nodes = {n["id"]: n for n in client.get("/api/graph").json()["nodes"]}
        assert (nodes["tm-e"]["container"], nodes["tm-e"]["children"],
                nodes["tm-e"]["children_closed"]) == (True, 3, 1)
        assert nodes[kids[1]]["parent"] == "tm-e" and not nodes[kids[1]]["container"]
        task = client.get("/api/tasks/tm-e").json()
        assert [c["id"] for c in task["child_tasks"]] == kids
        assert [c["status"] for c in task["child_tasks"]] == ["closed", "open", "open"]
        blocked = {b["id"]: b for b in client.get("/api/blocked").json()}
        assert blocked[kids[1]]["reasons"] == ["parent tm-e is deferred"]
    # the page draws a container's progress and lists its children
    script = (Path(__file__).parent.parent / "src/taskmill/web/static/app.js").read_text()
    assert "containerProgress(n, w, hgt)" in script and "childList(task)" in script


def test_a_plan_reimport_moving_the_last_open_child_out_closes_the_epic(
        ledger: Ledger, tmp_path: Path) -> None:
    from taskmill.plan import import_plan

    plan = tmp_path / "plan.toml"
    body = ('[[task]]\nkey = "epic"\ntitle = "Epic"\nissue_type = "epic"\n\n'
            '[[task]]\nkey = "a"\ntitle = "A"\nparent = "epic"\n\n'
            '[[task]]\nkey = "b"\ntitle = "B"\n{}\n')
    plan.write_text(body.format('parent = "epic"'))
    ids = import_plan(ledger, plan)
    ledger.close(ids["a"])
    assert ledger.get(ids["epic"]).status == "open"
    plan.write_text(body.format(""))
    import_plan(ledger, plan)
    epic = ledger.get(ids["epic"])
    assert (epic.status, epic.close_reason, epic.children) == ("closed", AUTO_CLOSE_REASON, 1)
    # and moving it back reopens the epic
    plan.write_text(body.format('parent = "epic"'))
    import_plan(ledger, plan)
    assert ledger.get(ids["epic"]).status == "open"
    assert ledger.verify().ok
