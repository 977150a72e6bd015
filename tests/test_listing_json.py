"""``list --json`` and ``blocked --json`` write each task's JSON as text made by the store (by
SQLite itself): byte for byte what the tasks' ``to_json()`` dumped by ``json.dumps(indent=2)``
gives (the output before), for every option, on a ledger holding every kind of record."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import invoke_cli, make_git_repo
from taskmill.beads import import_beads
from taskmill.cli import listing_ops, task_ops
from taskmill.project import open_project
from taskmill.roles.budget import Hold

ODD = "ünï \u2028 \x01\x1f\x7f \"q\" \\ \t tab 😀"
TITLE = "ünï \"q\" \\ <&> 😀"


def _rec(tid: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": tid, "title": f"Task {tid}", "status": "open", "priority": 2,
                            "issue_type": "task", "created_at": "2025-01-01T00:00:00Z",
                            "updated_at": "2025-01-01T00:00:00Z"}
    base.update(fields)
    return base


def _dep(a: str, b: str, typ: str = "blocks") -> dict[str, Any]:
    return {"issue_id": a, "depends_on_id": b, "type": typ, "created_at": "t", "created_by": "me"}


RECORDS = [
    _rec("k-epic", issue_type="epic", labels=["x", "ü"], priority=0),
    _rec("k-mid", dependencies=[_dep("k-mid", "k-epic", "parent-child")], status="deferred",
         defer_until="2099-01-01T00:00:00Z"),
    _rec("k-leaf", title=TITLE, notes=ODD, description=ODD + "\nline two",
         dependencies=[_dep("k-leaf", "k-mid", "parent-child")], labels=["x"]),
    _rec("k-gone", status="tombstone", dependencies=[_dep("k-gone", "k-epic", "parent-child")]),
    _rec("k-done", status="closed", closed_at="2025-01-02T00:00:00Z", close_reason="done",
         dependencies=[_dep("k-done", "k-epic", "parent-child")]),
    _rec("k-failed", status="closed", closed_at="t", close_reason="Tests FAILED"),
    _rec("k-fix", dependencies=[_dep("k-fix", "k-failed", "conditional-blocks")],
         assignee="bob"),
    _rec("k-spawn"),
    _rec("k-c1", dependencies=[_dep("k-c1", "k-spawn", "parent-child")]),
    _rec("k-wait", dependencies=[_dep("k-wait", "k-spawn", "waits-for"),
                                 _dep("k-wait", "k-fix", "related"),
                                 _dep("k-wait", "k-leaf", "discovered-from")],
         issue_type="bug", priority=1),
    _rec("k-cy1", dependencies=[_dep("k-cy1", "k-cy2")]),
    _rec("k-cy2", dependencies=[_dep("k-cy2", "k-cy1")], labels=["x"]),
    _rec("k-pin", status="pinned"),
    _rec("k-after-pin", dependencies=[_dep("k-after-pin", "k-pin")]),
    _rec("k-pinned", pinned=True), _rec("k-eph", ephemeral=True),
    _rec("k-agent", issue_type="agent"),
    _rec("k-blocked", status="blocked", priority=4),
    _rec("k-under-blocked", dependencies=[_dep("k-under-blocked", "k-blocked", "parent-child")]),
    _rec("k-grand", dependencies=[_dep("k-grand", "k-under-blocked", "parent-child")]),
    _rec("k-two", dependencies=[_dep("k-two", "k-spawn"), _dep("k-two", "k-cy1"),
                                _dep("k-two", "k-blocked", "parent-child")]),
    _rec("k-meta", metadata={"n": [1, {"z": None}], "f": 1e-07, "e": {}, "l": []},
         external_ref="gh-1"),
    _rec("k-nulls", description="", assignee=None),
    _rec("k-ctl", title="ctl 漢字 x", labels=["a\tb", "ラベル"], issue_type="bu\x07g",
         dependencies=[_dep("k-ctl", "k-spawn", "parent-child")]),
]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = make_git_repo(tmp_path_factory.mktemp("listing") / "repo")
    assert invoke_cli(["init", "--prefix", "k"], cwd=repo).exit_code == 0
    lines = [json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in RECORDS]
    source = repo.parent / "records.jsonl"
    source.write_text("".join(lines), encoding="utf-8")
    project = open_project(repo, {})
    try:
        ledger = project.ledger
        import_beads(ledger, source)
        a = ledger.create("native " + TITLE, description=ODD, labels=["y", "x"], checks=["make test", ODD],
                          hints={"big": 2**70, "s": "\x7f\x1f", "f": [1e16, 0.5]},
                          metadata={}, role="w", assignee="bob")
        b = ledger.create("waits on it", after=[a.id], priority=0, role="w")
        ledger.create("child of it", parent=b.id, issue_type="bug", checks=[])
        ledger.create("held by role", role="w", labels=["x"])
        ledger.create("other role", role="v")
        run = ledger.create("left by a dead run")
        ledger.update(run.id, {"status": "in_progress", "assignee": "mill:dead-run"})
        ledger.create("marked blocked", status="blocked")
        ledger.comment(b.id, "a comment")
    finally:
        project.close()
    return repo


HOLDS = {"w": Hold("w", "role w spent 100 of 100 tokens today \u2028 ü",
                   datetime(2099, 1, 1, tzinfo=UTC))}


@pytest.fixture(autouse=True)
def _holds(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(task_ops, "role_holds", lambda project: dict(HOLDS))
    yield


def _old_list(repo: Path, filters: dict[str, Any]) -> str:
    """``list --json`` as it was printed before: tasks made in Python, ``to_json()``."""
    project = open_project(repo, {})
    try:
        tasks = project.ledger.list_tasks(**filters)
        task_ops.mark_interrupted(project, tasks)
        task_ops.mark_held(project, tasks, dict(HOLDS))
        return json.dumps([t.to_json() for t in tasks], ensure_ascii=False, indent=2,
                          default=str) + "\n"
    finally:
        project.close()


def _old_blocked(repo: Path, compat: bool) -> str:
    project = open_project(repo, {})
    try:
        items = project.ledger.blocked(beads_compat=compat) + listing_ops.held_items(project)
        return json.dumps([b.to_json() for b in items], ensure_ascii=False, indent=2,
                          default=str) + "\n"
    finally:
        project.close()


LIST_CASES: list[tuple[list[str], dict[str, Any]]] = [
    ([], {}),
    (["--status", "open"], {"status": ["open"]}),
    (["-s", "open", "-s", "blocked", "-s", "deferred"],
     {"status": ["open", "blocked", "deferred"]}),
    (["-s", "closed"], {"status": ["closed"]}),
    (["-s", "in_progress"], {"status": ["in_progress"]}),
    (["-s", "pinned"], {"status": ["pinned"]}),
    (["-s", "tombstone"], {"status": ["tombstone"]}),
    (["--all"], {"include_hidden": True}),
    (["-l", "x"], {"label": "x"}),
    (["-l", "nothing"], {"label": "nothing"}),
    (["-t", "bug"], {"issue_type": "bug"}),
    (["-a", "bob"], {"assignee": "bob"}),
    (["--parent", "k-epic"], {"parent": "k-epic"}),
    (["--parent", "k-epic", "--all"], {"parent": "k-epic", "include_hidden": True}),
    (["-n", "3"], {"limit": 3}),
    (["-s", "open", "-l", "x", "-n", "2"], {"status": ["open"], "label": "x", "limit": 2}),
    (["-s", "open", "-t", "task", "-a", "bob", "--all"],
     {"status": ["open"], "issue_type": "task", "assignee": "bob", "include_hidden": True}),
]


@pytest.mark.parametrize(("args", "filters"), LIST_CASES)
def test_list_json_is_what_the_python_path_printed(repo: Path, args: list[str],
                                                   filters: dict[str, Any]) -> None:
    result = invoke_cli(["list", *args, "--json"], cwd=repo)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == _old_list(repo, filters)


def test_the_ledger_has_every_kind_of_record(repo: Path) -> None:
    """The cases above see what they are meant to (else they could not fail)."""
    listed = json.loads(invoke_cli(["list", "--all", "--json"], cwd=repo).stdout)
    by_title = {t["title"]: t for t in listed}
    assert by_title["left by a dead run"]["interrupted"] is True
    assert by_title["held by role"]["held"].startswith("role w spent")
    assert "held" not in by_title["other role"]
    assert by_title["native " + TITLE]["hints"]["big"] == 2**70
    assert {t["status"] for t in listed} >= {"open", "closed", "blocked", "deferred",
                                              "in_progress", "pinned", "tombstone"}
    assert any(t["container"] for t in listed) and any(t["parent"] for t in listed)
    blocked = json.loads(invoke_cli(["blocked", "--json"], cwd=repo).stdout)
    reasons = [r for b in blocked for r in b["reasons"]]
    assert any(r.startswith("in a dependency cycle") for r in reasons)
    assert any(r.startswith("parent") for r in reasons)
    assert any(r.startswith("ancestor") for r in reasons)
    assert any(b["block_reason"] for b in blocked)
    assert any(b["held_by_parent"] for b in blocked)
    assert any(len(b["blocked_by"]) == 2 for b in blocked)
    assert any(b.get("held") for b in blocked)  # the role's held tasks come last


@pytest.mark.parametrize("compat", [False, True])
def test_blocked_json_is_what_the_python_path_printed(repo: Path, compat: bool) -> None:
    result = invoke_cli(["blocked", "--json", *(["--beads-compat"] if compat else [])],
                        cwd=repo)
    assert result.exit_code == 0, result.stderr
    expected = _old_blocked(repo, compat)
    assert result.stdout == expected
    if compat:  # Beads lists fewer
        assert len(json.loads(expected)) < len(json.loads(_old_blocked(repo, False)))


def _statements(tmp_path: Path, n: int, compat: bool) -> tuple[int, int]:
    """SQL statements ``blocked --json`` runs on a ledger of ``n`` of each kind of held task,
    and those the per-task path (``Ledger.iter_blocked``) runs."""
    from taskmill.ledger import Ledger

    ledger = Ledger.open(tmp_path / f"db-{n}-{compat}", prefix="s")
    with ledger:
        for i in range(n):
            src = ledger.create(f"source {i}")
            epic = ledger.create(f"epic {i}", after=[src.id])
            kid = ledger.create(f"kid {i}", parent=epic.id)
            ledger.create(f"grandkid {i}", parent=kid.id)
            ledger.create(f"marked {i}", status="blocked")
            ledger.create(f"deferred {i}", status="deferred")
        conn = ledger.store.conn  # type: ignore[attr-defined]
        seen: list[str] = []
        conn.set_trace_callback(seen.append)
        texts = list(ledger.blocked_json(beads_compat=compat))
        new = len(seen)
        seen.clear()
        items = list(ledger.iter_blocked(beads_compat=compat))
        conn.set_trace_callback(None)
        assert len(texts) == len(items) == n * (4 if not compat else 3)
    return new, len(seen)


@pytest.mark.parametrize("compat", [False, True])
def test_blocked_reads_set_based(tmp_path: Path, compat: bool) -> None:
    """``blocked`` (and ``--beads-compat``) runs no statement per held task, nor per ancestor:
    the holding parents' states come with the links (``held_links``, read on a connection
    of its own meanwhile). Nor does ``Ledger.iter_blocked`` (the text table's rows): it used
    to run two more per blocked task (why it is blocked) and one per ancestor's parents."""
    (small, rows_small), (big, rows_big) = (_statements(tmp_path, 3, compat),
                                            _statements(tmp_path, 30, compat))
    assert big == small, (small, big)
    assert rows_big == rows_small, (rows_small, rows_big)


def test_the_links_say_whether_a_wait_points_forward(tmp_path: Path) -> None:
    """Without a wait on a task as new or newer there is no cycle: ``blocked`` looks for
    none. The links read meanwhile (another connection) are the links read at once."""
    from taskmill.ledger import Ledger

    ledger = Ledger.open(tmp_path / "db", prefix="f")
    with ledger:
        old = ledger.create("old")
        new = ledger.create("new", after=[old.id])
        epic = ledger.create("epic", after=[new.id])
        ledger.create("kid", parent=epic.id)
        store = ledger.store
        links = store.held_links()
        assert not links.forward
        assert links.waits == {new.id: [old.id], epic.id: [new.id]}
        assert links.states == {epic.id: store.task_state(epic.id)}
        reading = store.held_links_reading()
        assert reading.result() == links
        reading.close()
        ledger.update(old.id, {"status": "blocked"})  # (old waits on nothing yet)
        conn = store.conn  # type: ignore[attr-defined]
        conn.execute("INSERT INTO deps (issue_id, depends_on_id, type) VALUES (?, ?, ?)",
                     (old.id, new.id, "blocks"))  # a cycle, as an import may bring one
        store.recompute_readiness()
        assert store.held_links().forward
        assert any(r.startswith("in a dependency cycle")
                   for b in ledger.blocked() for r in b.reasons)


def test_a_failed_links_reading_raises_in_the_reader() -> None:
    from taskmill.ledger.store import LinksReading

    def broken() -> Any:
        raise RuntimeError("the links could not be read")

    reading = LinksReading(broken, meanwhile=True)
    with pytest.raises(RuntimeError, match="could not be read"):
        reading.result()
    assert reading.done()


def test_rows_read_while_the_links_are_come_out_the_same(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The rows read ahead, in memory and past :data:`listing.AHEAD_CHARS` in a temporary
    file, come out as they would have without waiting."""
    from taskmill.ledger import Ledger, listing
    from taskmill.ledger.store import LinksReading

    class Slow(LinksReading):
        def done(self) -> bool:
            return False  # (every row is read before the links are asked for)

    ledger = Ledger.open(tmp_path / "db", prefix="s")
    with ledger:
        for i in range(4):
            src = ledger.create(f"source {i} {TITLE}", description=ODD)
            epic = ledger.create(f"epic {i}", after=[src.id], labels=["x"])
            ledger.create(f"kid {i}", parent=epic.id, metadata={"n": [1e-07, 2**70]})
            ledger.create(f"marked {i}", status="blocked")
        expected = list(ledger.blocked_json())
        assert len(expected) == 12
        monkeypatch.setattr(listing, "AHEAD_CHARS", 2000)  # two rows or so, the rest spilled
        monkeypatch.setattr(type(ledger.store), "held_links_reading",
                            lambda self, **_: Slow(self.held_links, meanwhile=False))
        assert list(ledger.blocked_json()) == expected


def _old_list_table(repo: Path, filters: dict[str, Any]) -> None:
    """``list``'s table as it was printed before: from tasks made in Python."""
    from taskmill.cli import table_stream

    project = open_project(repo, {})
    try:
        tasks = project.ledger.list_tasks(**filters)
        task_ops.mark_interrupted(project, tasks)
        task_ops.mark_held(project, tasks, dict(HOLDS))
        table_stream.task_rows(((t, None) for t in tasks), extra=False)
    finally:
        project.close()


@pytest.mark.parametrize("columns", ["50", "200"])
@pytest.mark.parametrize(("args", "filters"), LIST_CASES)
def test_list_table_is_what_the_task_path_printed(repo: Path, args: list[str],
                                                  filters: dict[str, Any], columns: str,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The table made from the store's cells (no ``Task``) is the one made from tasks, in
    stretches of a few rows (widths from the first, children under parents in each)."""
    from taskmill.cli import table_stream

    monkeypatch.setattr(table_stream, "SMALL", 4)
    monkeypatch.setenv("COLUMNS", columns)
    _old_list_table(repo, filters)
    expected = capsys.readouterr().out
    result = invoke_cli(["list", *args], cwd=repo)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == expected


@pytest.mark.parametrize("columns", ["50", "200"])
@pytest.mark.parametrize("compat", [False, True])
def test_blocked_table_is_what_the_task_path_printed(repo: Path, compat: bool, columns: str,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    """``blocked``'s table from the store's cells is the one made from ``BlockedTask``s."""
    import itertools

    from taskmill.cli import table_stream

    monkeypatch.setattr(table_stream, "SMALL", 4)
    monkeypatch.setenv("COLUMNS", columns)
    project = open_project(repo, {})
    try:
        table_stream.blocked_rows(itertools.chain(
            project.ledger.iter_blocked(beads_compat=compat), listing_ops.held_items(project)))
    finally:
        project.close()
    expected = capsys.readouterr().out
    assert compat or "taskmill reopen" in expected
    result = invoke_cli(["blocked", *(["--beads-compat"] if compat else [])], cwd=repo)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == expected


def test_the_links_keep_each_tasks_order_by_position(tmp_path: Path) -> None:
    """The links' pass reads the dependencies by task id (each task's by the id waited on);
    a task's waits and holding parents still come in their order by position, as the store
    gives them a task at a time."""
    from taskmill.ledger import Ledger

    ledger = Ledger.open(tmp_path / "db", prefix="o")
    with ledger:
        first, second, third = (ledger.create(f"blocker {n}") for n in range(3))
        waiting = ledger.create("waits", after=[third.id, first.id, second.id])
        also = ledger.create("waits too", after=[second.id, third.id])
        epics = [ledger.create(f"epic {n}", after=[first.id]) for n in range(3)]
        kid = ledger.create("kid", parent=epics[2].id)
        store = ledger.store
        conn = store.conn  # type: ignore[attr-defined]
        for pos, epic in ((1, epics[0]), (2, epics[1])):  # (more parents, after the first)
            conn.execute("INSERT INTO deps (issue_id, depends_on_id, type, pos)"
                         " VALUES (?, ?, 'parent-child', ?)", (kid.id, epic.id, pos))
        store.recompute_readiness()
        links = store.held_links()
        assert links.waits[waiting.id] == [third.id, first.id, second.id]
        assert links.waits[waiting.id] == store.open_blockers_of(waiting.id)
        assert links.waits[also.id] == [second.id, third.id]
        assert links.parents[kid.id] == [epics[2].id, epics[0].id, epics[1].id]
        assert links[:2] == (store.held_waits(),
                             store.holding_parents_many([t.id for t in store.held()]))


def test_the_links_pass_reads_the_held_tasks_by_id_from_their_index(tmp_path: Path) -> None:
    """The links' statement sweeps the held tasks in id order from their own index (no
    task's row read for it, no sort after): the plan, held to it."""
    from taskmill.ledger import Ledger
    from taskmill.ledger.sqlite.listing import LINKS_SQL

    ledger = Ledger.open(tmp_path / "db", prefix="p")
    with ledger:
        conn = ledger.store.conn  # type: ignore[attr-defined]
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + LINKS_SQL)]
    assert plan[0] == "SCAN t USING COVERING INDEX tasks_held_ids"
    assert "SEARCH d USING PRIMARY KEY (issue_id=?)" in plan
    assert not any("TEMP B-TREE" in step for step in plan)
