"""The ledger library: records, validation, ids, readiness, claims, labels, comments,
dependencies and all-or-nothing changes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from taskmill.clock import FixedClock
from taskmill.errors import (
    ClaimConflict,
    Conflict,
    CycleError,
    InvalidInput,
    NotFound,
    TaskmillError,
)
from taskmill.ledger import Ledger


def ids(tasks: list) -> list[str]:  # type: ignore[type-arg]
    return [t.id if hasattr(t, "id") else t.task.id for t in tasks]


def counts(ledger: Ledger) -> tuple[int, int, int, int, int]:
    return tuple(ledger.store.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[return-value]
                 for table in ("tasks", "deps", "labels", "comments", "events"))


# -- creating and reading ----------------------------------------------------------------


def test_create_and_get(ledger: Ledger) -> None:
    task = ledger.create("Write the parser", description="a recursive descent one",
                         design="tokens first", acceptance_criteria="parses the grammar",
                         notes="n", priority=1, issue_type="feature", assignee="ana",
                         labels=["cli", "parser", "cli"], external_ref="gh-12",
                         metadata={"size": "m"}, checks=["pytest -q"], agent="claude",
                         hints={"estimate": 3})
    assert re.fullmatch(r"tm-[0-9a-z]{4}", task.id)
    got = ledger.get(task.id)
    assert got == task
    assert (got.title, got.description, got.design, got.acceptance_criteria, got.notes) == (
        "Write the parser", "a recursive descent one", "tokens first", "parses the grammar", "n")
    assert (got.priority, got.issue_type, got.assignee, got.status) == (1, "feature", "ana", "open")
    assert got.labels == ["cli", "parser"]
    assert got.external_ref == "gh-12"
    assert got.metadata == {"size": "m"} and got.checks == ["pytest -q"]
    assert got.agent == "claude" and got.hints == {"estimate": 3}
    assert got.created_at == got.updated_at == "2026-01-01T00:00:00.000000Z"
    assert got.closed_at is None and got.ready
    event = ledger.events(task.id)[0]
    assert event.kind == "created" and event.actor == "tester"
    assert event.data["new"]["title"] == "Write the parser"
    assert event.data["new"]["labels"] == ["cli", "parser"]


def test_create_defaults(ledger: Ledger) -> None:
    task = ledger.create("plain")
    assert (task.status, task.priority, task.issue_type, task.assignee, task.labels) == (
        "open", 2, "task", None, [])
    assert task.metadata is None and task.checks is None and task.hints is None


def test_create_with_given_id_and_duplicate(ledger: Ledger) -> None:
    assert ledger.create("mine", task_id="tm-custom").id == "tm-custom"
    with pytest.raises(Conflict):
        ledger.create("again", task_id="tm-custom")
    assert counts(ledger)[0] == 1


def test_ids_are_prefix_base36_and_unique_over_many_creates(clock: FixedClock) -> None:
    ledger = Ledger.memory(prefix="proj-x", clock=clock)
    made = [ledger.create("same title at the same instant").id for _ in range(1500)]
    assert len(set(made)) == len(made)
    assert all(re.fullmatch(r"proj-x-[0-9a-z]{4,7}", tid) for tid in made)
    assert {len(t) for t in made[:900]} == {len("proj-x-") + 4}
    assert len(made[-1]) == len("proj-x-") + 5  # longer once the ledger holds 1,000
    ledger.close_db()


def test_show_has_dependencies_both_ways_comments_and_attempts(ledger: Ledger) -> None:
    a = ledger.create("a")
    b = ledger.create("b", after=[a.id])
    c = ledger.create("c", parent=b.id, discovered_from=a.id)
    ledger.comment(b.id, "first")
    ledger.comment(b.id, "second", author="bo")
    shown = ledger.show(b.id)
    assert [(d.issue_id, d.depends_on_id, d.type) for d in shown.dependencies] == [
        (b.id, a.id, "blocks")]
    assert [(d.issue_id, d.type) for d in shown.dependents] == [(c.id, "parent-child")]
    assert [(m.author, m.text) for m in shown.comments] == [("tester", "first"), ("bo", "second")]
    assert shown.attempts == []
    full = shown.to_json(full=True)
    assert full["dependencies"][0]["depends_on_id"] == a.id
    assert full["comments"][1]["author"] == "bo"
    assert {d.type for d in ledger.show(c.id).dependencies} == {"parent-child", "discovered-from"}


def test_list_filters(ledger: Ledger) -> None:
    epic = ledger.create("epic", issue_type="epic", priority=0)
    bug = ledger.create("bug", issue_type="bug", labels=["urgent"], assignee="ana", parent=epic.id)
    chore = ledger.create("chore", issue_type="chore", priority=4)
    ledger.close(chore.id)
    assert ids(ledger.list_tasks()) == [epic.id, bug.id, chore.id]
    assert ids(ledger.list_tasks(status="closed")) == [chore.id]
    assert ids(ledger.list_tasks(status=["open", "closed"], limit=2)) == [epic.id, bug.id]
    assert ids(ledger.list_tasks(label="urgent")) == [bug.id]
    assert ids(ledger.list_tasks(issue_type="epic")) == [epic.id]
    assert ids(ledger.list_tasks(assignee="ana")) == [bug.id]
    assert ids(ledger.list_tasks(parent=epic.id)) == [bug.id]
    with pytest.raises(NotFound):
        ledger.list_tasks(parent="tm-missing")
    # tombstoned records (from imports) are hidden unless asked for
    ledger.store.conn.execute("UPDATE tasks SET status = 'tombstone' WHERE id = ?", (bug.id,))
    assert bug.id not in ids(ledger.list_tasks())
    assert bug.id in ids(ledger.list_tasks(include_hidden=True))


def test_file_ledger_persists(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    with Ledger.open(db, prefix="tm") as ledger:
        tid = ledger.create("kept").id
    with Ledger.open(db, prefix="tm") as ledger:
        assert ledger.get(tid).title == "kept"
        assert ledger.verify().ok


# -- validation --------------------------------------------------------------------------


@pytest.mark.parametrize("priority", [-1, 5, "2", 2.0, True, None])
def test_bad_priority(ledger: Ledger, priority: object) -> None:
    with pytest.raises(InvalidInput, match="priority"):
        ledger.create("x", priority=priority)  # type: ignore[arg-type]
    task = ledger.create("ok")
    with pytest.raises(InvalidInput, match="priority"):
        ledger.update(task.id, {"priority": priority})
    assert ledger.get(task.id).priority == 2


@pytest.mark.parametrize("status", ["done", "OPEN", "", "tombstone", None])
def test_bad_status(ledger: Ledger, status: object) -> None:
    with pytest.raises(InvalidInput, match="status"):
        ledger.create("x", status=status)  # type: ignore[arg-type]
    task = ledger.create("ok")
    with pytest.raises(InvalidInput, match="status"):
        ledger.update(task.id, {"status": status})


def test_unknown_field(ledger: Ledger) -> None:
    task = ledger.create("ok")
    for field in ("id", "created_at", "gated", "labels", "bogus"):
        with pytest.raises(InvalidInput, match="cannot update"):
            ledger.update(task.id, {field: "x"})
    assert len(ledger.events()) == 1


@pytest.mark.parametrize("title", ["", "   ", "\n\t"])
def test_empty_title(ledger: Ledger, title: str) -> None:
    with pytest.raises(InvalidInput):
        ledger.create(title)
    task = ledger.create("ok")
    with pytest.raises(InvalidInput):
        ledger.update(task.id, {"title": title})
    assert ledger.get(task.id).title == "ok"
    assert counts(ledger)[0] == 1


def test_other_validation(ledger: Ledger) -> None:
    task = ledger.create("ok")
    bad = [
        lambda: ledger.create("x", checks=["", "pytest"]),
        lambda: ledger.create("x", checks="pytest"),  # type: ignore[arg-type]
        lambda: ledger.create("x", metadata=["not", "a", "table"]),  # type: ignore[arg-type]
        lambda: ledger.update(task.id, {"hints": "text"}),
        lambda: ledger.add_dep(task.id, task.id, "depends"),
        lambda: ledger.add_labels(task.id, [" "]),
        lambda: ledger.comment(task.id, "   "),
        lambda: ledger.create("x", issue_type=""),
    ]
    for call in bad:
        with pytest.raises(InvalidInput):
            call()
    assert counts(ledger) == (1, 0, 0, 0, 1)


def test_errors_carry_codes_and_exit_codes() -> None:
    assert (InvalidInput("x").code, InvalidInput("x").exit_code) == ("invalid", 2)
    assert (NotFound("x").code, NotFound("x").exit_code) == ("not_found", 3)
    assert (Conflict("x").code, Conflict("x").exit_code) == ("conflict", 4)
    assert (ClaimConflict("x").code, ClaimConflict("x").exit_code) == ("claim_conflict", 4)
    err = CycleError("loop", ["a", "b", "a"], hint="h").to_json()["error"]
    assert err == {"code": "cycle", "message": "loop", "hint": "h", "cycle": ["a", "b", "a"]}
    assert issubclass(CycleError, TaskmillError) and CycleError("x", []).exit_code == 2


# -- resolving ids -----------------------------------------------------------------------


def test_unique_prefix_resolution(ledger: Ledger) -> None:
    for tid in ("tm-abc1", "tm-abc2", "tm-xyz9", "tm-ab"):
        ledger.create(tid, task_id=tid)
    assert ledger.get("tm-x").id == "tm-xyz9"
    assert ledger.get("tm-abc1").id == "tm-abc1"
    assert ledger.get("tm-ab").id == "tm-ab"  # an exact id wins over longer ones it prefixes
    with pytest.raises(InvalidInput, match="ambiguous"):
        ledger.get("tm-abc")
    with pytest.raises(NotFound):
        ledger.get("tm-q")
    with pytest.raises(NotFound):
        ledger.get("zz-abc1")
    # every entry point resolves prefixes
    ledger.update("tm-xy", {"priority": 0})
    ledger.add_dep("tm-xy", "tm-abc1")
    ledger.add_labels("tm-xy", ["p"])
    ledger.comment("tm-xy", "hi")
    assert ledger.show("tm-xyz").dependencies[0].depends_on_id == "tm-abc1"
    ledger.close("tm-abc1")
    assert ledger.get("tm-xyz9").ready


# -- changing ----------------------------------------------------------------------------


def test_update_records_old_and_new(ledger: Ledger, clock: FixedClock) -> None:
    task = ledger.create("old title", metadata={"a": 1})
    clock.advance(60)
    updated = ledger.update(task.id, {"title": "new title", "priority": 0,
                                      "metadata": {"a": 2}, "checks": ["make test"]})
    assert (updated.title, updated.priority, updated.metadata, updated.checks) == (
        "new title", 0, {"a": 2}, ["make test"])
    assert updated.updated_at == "2026-01-01T00:01:00.000000Z"
    assert updated.created_at == task.created_at
    event = ledger.events(task.id)[-1]
    assert event.kind == "updated"
    assert event.data["changes"] == {"title": ["old title", "new title"], "priority": [2, 0],
                                     "metadata": [{"a": 1}, {"a": 2}],
                                     "checks": [None, ["make test"]]}
    # a change to the same values writes nothing
    ledger.update(task.id, {"title": "new title", "priority": 0})
    assert len(ledger.events(task.id)) == 2


def test_update_expect_status(ledger: Ledger) -> None:
    task = ledger.create("x")
    with pytest.raises(Conflict):
        ledger.update(task.id, {"notes": "n"}, expect_status="in_progress")
    assert ledger.update(task.id, {"notes": "n"}, expect_status="open").notes == "n"


def test_close_and_reopen(ledger: Ledger, clock: FixedClock) -> None:
    task = ledger.create("x")
    clock.advance(5)
    closed = ledger.close(task.id, "fixed in main")
    assert (closed.status, closed.close_reason) == ("closed", "fixed in main")
    assert closed.closed_at == "2026-01-01T00:00:05.000000Z" and not closed.ready
    with pytest.raises(Conflict):
        ledger.close(task.id)
    reopened = ledger.reopen(task.id)
    assert (reopened.status, reopened.closed_at, reopened.close_reason) == ("open", None, None)
    assert reopened.ready
    with pytest.raises(Conflict):
        ledger.reopen(task.id)
    # reopen also takes blocked / deferred / in_progress tasks back to open
    ledger.update(task.id, {"status": "deferred"})
    assert ledger.reopen(task.id).status == "open"
    kinds = [e.data["changes"]["status"] for e in ledger.events(task.id)[1:]]
    assert kinds == [["open", "closed"], ["closed", "open"], ["open", "deferred"],
                     ["deferred", "open"]]


def test_close_via_update_sets_closed_at(ledger: Ledger) -> None:
    task = ledger.create("x")
    assert ledger.update(task.id, {"status": "closed"}).closed_at is not None
    assert ledger.update(task.id, {"status": "open"}).closed_at is None


# -- readiness ---------------------------------------------------------------------------


def test_closing_updates_dependents_readiness(ledger: Ledger) -> None:
    a1 = ledger.create("a1")
    a2 = ledger.create("a2")
    b = ledger.create("b", after=[a1.id, a2.id])
    c = ledger.create("c", after=[b.id])
    assert ids(ledger.ready()) == [a1.id, a2.id]
    assert not ledger.get(b.id).ready
    ledger.close(a1.id)
    assert not ledger.get(b.id).ready
    ledger.close(a2.id)
    assert ids(ledger.ready()) == [b.id]
    ledger.close(b.id)
    assert ids(ledger.ready()) == [c.id]
    ledger.reopen(a1.id)  # b is closed: c stays ready; b itself waits again once reopened
    assert ids(ledger.ready()) == [a1.id, c.id]
    ledger.reopen(b.id)
    assert ids(ledger.ready()) == [a1.id]
    blocked = {item.task.id: item for item in ledger.blocked()}
    assert set(blocked) == {b.id, c.id}
    assert blocked[b.id].blockers == [a1.id]
    assert blocked[c.id].blockers == [b.id]


def test_removing_a_dependency_updates_readiness(ledger: Ledger) -> None:
    a = ledger.create("a")
    b = ledger.create("b", after=[a.id])
    assert not ledger.get(b.id).ready
    removed = ledger.remove_dep(b.id, a.id)
    assert [(d.issue_id, d.depends_on_id, d.type) for d in removed] == [(b.id, a.id, "blocks")]
    assert ledger.get(b.id).ready
    with pytest.raises(NotFound):
        ledger.remove_dep(b.id, a.id)


def test_non_gating_links_do_not_hold(ledger: Ledger) -> None:
    a = ledger.create("a")
    b = ledger.create("b")
    ledger.add_dep(b.id, a.id, "related")
    ledger.add_dep(b.id, a.id, "discovered-from")
    ledger.add_dep(a.id, b.id, "related")  # no cycle: related does not gate
    assert ids(ledger.ready()) == [a.id, b.id]


@pytest.mark.parametrize("holding", ["blocked", "deferred"])
def test_children_of_a_held_parent_are_not_ready_transitively(ledger: Ledger,
                                                              holding: str) -> None:
    epic = ledger.create("epic")
    child = ledger.create("child", parent=epic.id)
    grandchild = ledger.create("grandchild", parent=child.id)
    assert ids(ledger.ready()) == [epic.id, child.id, grandchild.id]
    ledger.update(epic.id, {"status": holding})
    assert ids(ledger.ready()) == []
    held = {item.task.id: item for item in ledger.blocked()}
    assert held[child.id].held_by_parent == [epic.id]
    assert held[grandchild.id].held_by_parent == [child.id]
    assert (epic.id in held) == (holding == "blocked")
    ledger.update(epic.id, {"status": "in_progress"})  # being worked on does not hold
    assert ids(ledger.ready()) == [child.id, grandchild.id]
    ledger.update(epic.id, {"status": holding})
    ledger.close(epic.id)  # a done parent does not hold either
    assert ids(ledger.ready()) == [child.id, grandchild.id]


def test_children_of_a_parent_that_waits_are_not_ready_transitively(ledger: Ledger) -> None:
    blocker = ledger.create("blocker")
    epic = ledger.create("epic", after=[blocker.id])
    child = ledger.create("child", parent=epic.id)
    grandchild = ledger.create("grandchild", parent=child.id)
    other = ledger.create("unrelated")
    assert ids(ledger.ready()) == [blocker.id, other.id]
    ledger.close(blocker.id)
    assert ids(ledger.ready()) == [epic.id, child.id, grandchild.id, other.id]
    # holding the middle of the chain holds only what is below it
    ledger.update(child.id, {"status": "blocked"})
    assert ids(ledger.ready()) == [epic.id, other.id]
    ledger.add_dep(other.id, grandchild.id)
    assert ids(ledger.ready()) == [epic.id]


def test_ready_order_and_limit(ledger: Ledger) -> None:
    low = ledger.create("low", priority=4)
    first = ledger.create("first", priority=1)
    second = ledger.create("second", priority=1)
    top = ledger.create("top", priority=0)
    ledger.create("busy", status="in_progress")
    ledger.create("closed", status="closed")
    assert ids(ledger.ready()) == [top.id, first.id, second.id, low.id]
    assert ids(ledger.ready(limit=2)) == [top.id, first.id]


# -- claims ------------------------------------------------------------------------------


def test_claim(ledger: Ledger) -> None:
    a = ledger.create("a")
    b = ledger.create("b", after=[a.id])
    task = ledger.claim(a.id, "agent-1")
    assert (task.status, task.assignee, task.ready) == ("in_progress", "agent-1", False)
    assert ledger.events(a.id)[-1].kind == "claimed"
    assert ledger.events(a.id)[-1].actor == "agent-1"
    with pytest.raises(ClaimConflict, match="already claimed by agent-1"):
        ledger.claim(a.id, "agent-2")
    with pytest.raises(ClaimConflict, match="not ready"):
        ledger.claim(b.id, "agent-2")
    ledger.close(a.id)
    with pytest.raises(ClaimConflict, match="closed"):
        ledger.claim(a.id, "agent-2")
    assert ledger.claim(b.id, "agent-2").assignee == "agent-2"
    with pytest.raises(NotFound):
        ledger.claim("tm-none", "agent-3")


def test_claim_next(ledger: Ledger) -> None:
    low = ledger.create("low", priority=3)
    high = ledger.create("high", priority=1)
    waits = ledger.create("waits", priority=0, after=[low.id])
    first = ledger.claim_next("w1")
    assert first is not None and first.id == high.id
    second = ledger.claim_next("w2", exclude=[low.id])
    assert second is None
    third = ledger.claim_next("w2")
    assert third is not None and third.id == low.id
    assert ledger.claim_next("w3") is None
    ledger.close(low.id)
    fourth = ledger.claim_next("w3")
    assert fourth is not None and (fourth.id, fourth.assignee) == (waits.id, "w3")


# -- labels and comments -----------------------------------------------------------------


def test_labels(ledger: Ledger) -> None:
    task = ledger.create("x", labels=["b"])
    assert ledger.add_labels(task.id, ["a", "b", "c", "a"]).labels == ["b", "a", "c"]
    assert ledger.events(task.id)[-1].data == {"labels": ["a", "c"]}
    n_events = len(ledger.events())
    assert ledger.add_labels(task.id, ["a"]).labels == ["b", "a", "c"]
    assert len(ledger.events()) == n_events  # nothing new, nothing recorded
    assert ledger.remove_labels(task.id, ["b"]).labels == ["a", "c"]
    with pytest.raises(NotFound):
        ledger.remove_labels(task.id, ["zzz"])
    assert ledger.get(task.id).labels == ["a", "c"]
    assert ids(ledger.list_tasks(label="c")) == [task.id]


def test_comments(ledger: Ledger) -> None:
    task = ledger.create("x")
    note = ledger.comment(task.id, "try the other approach")
    assert (note.issue_id, note.author, note.text) == (task.id, "tester", "try the other approach")
    other = ledger.comment(task.id[:5], "agreed", author="bo")
    assert other.id > note.id
    assert [c.text for c in ledger.show(task.id).comments] == ["try the other approach", "agreed"]
    assert ledger.events(task.id)[-1].data == {"comment_id": other.id, "text": "agreed"}


# -- dependencies ------------------------------------------------------------------------


def test_dep_tree(ledger: Ledger) -> None:
    a = ledger.create("a")
    b = ledger.create("b", after=[a.id])
    c = ledger.create("c", parent=b.id)
    d = ledger.create("d", after=[a.id])
    tree = ledger.dep_tree(c.id)
    assert (tree["id"], tree["type"], tree["title"], tree["status"]) == (c.id, None, "c", "open")
    assert [(n["id"], n["type"]) for n in tree["children"]] == [(b.id, "parent-child")]
    assert [(n["id"], n["type"]) for n in tree["children"][0]["children"]] == [(a.id, "blocks")]
    reverse = ledger.dep_tree(a.id, reverse=True)
    assert sorted(n["id"] for n in reverse["children"]) == sorted([b.id, d.id])
    shallow = ledger.dep_tree(c.id, max_depth=1)
    assert shallow["children"][0]["children"] == []


def test_cycles_are_refused(ledger: Ledger) -> None:
    a = ledger.create("a")
    b = ledger.create("b", after=[a.id])
    c = ledger.create("c", parent=b.id)
    with pytest.raises(CycleError) as info:
        ledger.add_dep(a.id, c.id)
    assert info.value.cycle == [a.id, c.id, b.id, a.id]
    with pytest.raises(CycleError):
        ledger.add_dep(a.id, c.id, "parent-child")
    with pytest.raises(CycleError):
        ledger.add_dep(a.id, a.id)
    with pytest.raises(Conflict):
        ledger.add_dep(b.id, a.id)
    assert ledger.cycles() == []
    n_events = len(ledger.events())
    ledger.add_dep(a.id, c.id, "related")  # links may loop
    assert len(ledger.events()) == n_events + 1
    assert ledger.cycles() == []


def test_cycles_from_imported_data_are_reported(ledger: Ledger) -> None:
    a = ledger.create("a")
    b = ledger.create("b", after=[a.id])
    ledger.store.conn.execute("INSERT INTO deps (issue_id, depends_on_id, type) VALUES (?, ?, 'blocks')",
                        (a.id, b.id))
    (cycle,) = ledger.cycles()
    assert cycle[0] == cycle[-1] and set(cycle) == {a.id, b.id}


# -- all or nothing ----------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [
    {"after": ["tm-missing"]},
    {"after": ["{first}", "tm-missing"]},
    {"parent": "tm-missing"},
    {"discovered_from": "tm-missing"},
    {"after": ["{first}", "{first}"]},
])
def test_a_failed_create_leaves_nothing_behind(ledger: Ledger, kwargs: dict) -> None:  # type: ignore[type-arg]
    first = ledger.create("first")
    kwargs = {k: ([x.format(first=first.id) for x in v] if isinstance(v, list) else v)
              for k, v in kwargs.items()}
    before = counts(ledger)
    head = ledger.verify().head
    with pytest.raises((NotFound, Conflict)):
        ledger.create("doomed", labels=["l1", "l2"], **kwargs)
    assert counts(ledger) == before  # no task, dependency, label or event
    assert ledger.verify().head == head
    assert ids(ledger.list_tasks()) == [first.id]
    assert ledger.create("fine", after=[first.id]).title == "fine"
    assert ledger.verify().ok


def test_a_failed_dep_add_leaves_nothing_behind(ledger: Ledger) -> None:
    a = ledger.create("a")
    b = ledger.create("b", after=[a.id])
    before = counts(ledger)
    with pytest.raises(CycleError):
        ledger.add_dep(a.id, b.id)
    with pytest.raises(NotFound):
        ledger.add_dep(a.id, "tm-missing")
    assert counts(ledger) == before
    assert ledger.get(a.id).ready and not ledger.get(b.id).ready


def test_stats(ledger: Ledger) -> None:
    a = ledger.create("a")
    ledger.create("b", after=[a.id])
    ledger.create("c", status="blocked")
    ledger.create("d", status="closed")
    stats = ledger.stats()
    assert stats["total"] == 4
    assert stats["by_status"] == {"open": 2, "blocked": 1, "closed": 1}
    assert (stats["ready"], stats["blocked"]) == (1, 2)
    assert stats["dependencies"] == {"blocks": 1}
    assert stats["events"] == 5
    assert stats["attempts"] == 0


def test_claim_next_keeps_looking_when_others_win_a_whole_batch(tmp_path: Path) -> None:
    """Other claimers taking every task ``claim_next`` looked at must not make it give up
    while ready tasks remain. (Its candidates are read in its own write transaction, where
    no other claimer can come between; the store here loses them all the same.)"""
    db = tmp_path / "l.db"
    with Ledger.open(db, prefix="tm", actor="me") as mine:
        made = [mine.create(f"t{i}").id for i in range(60)]
        original = mine.store.ready
        looks = []

        def racing_ready(limit: int | None, work_only: bool, *, now: str,
                         beads_compat: bool = False,
                         for_claim: bool = False) -> list:  # type: ignore[type-arg]
            seen = original(limit, work_only, now=now, beads_compat=beads_compat,
                            for_claim=for_claim)
            if not looks:  # between our first look and our claims, they take all of it
                for task in seen:
                    assert mine.store.claim_row(task.id, "them", now, True)
            looks.append(len(seen))
            return seen

        mine.store.ready = racing_ready  # type: ignore[method-assign]
        got = mine.claim_next("me")
        mine.store.ready = original  # type: ignore[method-assign]
        assert got is not None and got.assignee == "me"
        assert got.id in made
        assert looks[0] < 60  # the first look did not see every task
        theirs_now = {t.id for t in mine.list_tasks(assignee="them")}
        assert len(theirs_now) == looks[0] and got.id not in theirs_now
