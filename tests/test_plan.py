"""TOML plan import: keys to ids, defaults, dependencies, idempotence, errors with lines."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from taskmill.errors import PlanError
from taskmill.ledger import Ledger
from taskmill.plan import import_plan, plan_source

PLAN = """\
[defaults]
checks = ["python -m pytest -q"]
priority = 3
labels = ["planned"]
agent = "claude"

[[task]]
key = "epic"
title = "The config epic"
issue_type = "epic"

[[task]]
key = "setup"
title = "Set up the package"
parent = "epic"
labels = []

[[task]]
key = "parse"
title = "Parse the config file"
description = \"\"\"Read it.
[[task]]
key = "not-a-task"
\"\"\"
priority = 1
checks = ["python -m pytest -q tests/test_parse.py"]
after = [
  "setup",
]
parent = "epic"
labels = ["config"]
hints = { model = "small" }
external_ref = "gh-12"

[task.metadata]
owner = "me"
"""


def write(tmp_path: Path, text: str, name: str = "plan.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def counts(ledger: Ledger) -> tuple[int, ...]:
    conn = ledger.store.conn
    return tuple(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                 for t in ("tasks", "labels", "deps", "comments", "events", "plan_keys"))


def deps_of(ledger: Ledger, tid: str) -> set[tuple[str, str]]:
    return {(d.depends_on_id, d.type) for d in ledger.show(tid).dependencies}


def test_import_maps_keys_to_ids_with_defaults_and_deps(tmp_path: Path) -> None:
    ledger = Ledger.memory()
    ids = import_plan(ledger, write(tmp_path, PLAN))
    assert list(ids) == ["epic", "setup", "parse"]
    epic, setup, parse = (ledger.get(ids[k]) for k in ("epic", "setup", "parse"))
    assert epic.title == "The config epic" and epic.issue_type == "epic"
    # defaults apply to tasks without their own value
    assert epic.priority == 3 and epic.checks == ["python -m pytest -q"]
    assert epic.labels == ["planned"] and epic.agent == "claude"
    assert setup.labels == []  # its own (empty) list wins
    assert parse.priority == 1 and parse.checks == ["python -m pytest -q tests/test_parse.py"]
    assert parse.labels == ["config"] and parse.hints == {"model": "small"}
    assert parse.metadata == {"owner": "me"} and parse.external_ref == "gh-12"
    assert parse.description.startswith("Read it.\n[[task]]")
    assert deps_of(ledger, setup.id) == {(epic.id, "parent-child")}
    assert deps_of(ledger, parse.id) == {(setup.id, "blocks"), (epic.id, "parent-child")}
    assert [t.id for t in ledger.ready()] == [epic.id, setup.id]
    assert ledger.verify().ok


def test_reimport_is_idempotent(tmp_path: Path) -> None:
    ledger = Ledger.memory()
    path = write(tmp_path, PLAN)
    ids = import_plan(ledger, path)
    before = counts(ledger)
    assert import_plan(ledger, path) == ids
    assert counts(ledger) == before  # no new tasks, deps or events


def test_reimport_updates_instead_of_duplicating(tmp_path: Path) -> None:
    ledger = Ledger.memory()
    path = write(tmp_path, PLAN)
    ids = import_plan(ledger, path)
    ledger.claim(ids["setup"], "agent-1")
    manual = ledger.create("added by hand")
    ledger.add_dep(ids["parse"], manual.id)
    events = len(ledger.events())
    write(tmp_path, """\
        [defaults]
        checks = ["python -m pytest -q"]

        [[task]]
        key = "epic"
        title = "The config epic, renamed"
        issue_type = "epic"

        [[task]]
        key = "setup"
        title = "Set up the package"
        parent = "epic"

        [[task]]
        key = "parse"
        title = "Parse the config file"
        after = ["lint"]
        labels = ["config", "v2"]

        [[task]]
        key = "lint"
        title = "Lint"
        """)
    new_ids = import_plan(ledger, path)
    assert {k: new_ids[k] for k in ids} == ids
    assert len(ledger.list_tasks()) == 5  # 3 + lint + the manual one
    epic, setup, parse = (ledger.get(ids[k]) for k in ("epic", "setup", "parse"))
    assert epic.title == "The config epic, renamed"
    assert epic.priority == 2 and epic.agent is None and epic.labels == []  # defaults dropped
    assert setup.status == "in_progress" and setup.assignee == "agent-1"  # not reset
    assert parse.description == "" and parse.hints is None and parse.priority == 2
    assert parse.labels == ["config", "v2"]
    # plan deps now match the file; the hand-made one stays
    assert deps_of(ledger, parse.id) == {(new_ids["lint"], "blocks"), (manual.id, "blocks")}
    kinds = [e.kind for e in ledger.events()[events:]]
    assert "updated" in kinds and "dep_removed" in kinds and "dep_added" in kinds
    assert "created" in kinds  # lint
    assert ledger.verify().ok
    # and once more: nothing changes
    before = counts(ledger)
    assert import_plan(ledger, path) == new_ids
    assert counts(ledger) == before


def test_after_and_parent_may_name_existing_tasks(tmp_path: Path) -> None:
    ledger = Ledger.memory()
    epic = ledger.create("Existing epic", issue_type="epic")
    blocker = ledger.create("Existing blocker")
    ids = import_plan(ledger, write(tmp_path, f"""\
        [[task]]
        key = "t"
        title = "T"
        after = ["{blocker.id}"]
        parent = "{epic.id}"
        """))
    assert deps_of(ledger, ids["t"]) == {(blocker.id, "blocks"), (epic.id, "parent-child")}
    assert ids["t"] not in {t.id for t in ledger.ready()}


def test_source_is_relative_to_the_repository(tmp_path: Path) -> None:
    (tmp_path / ".taskmill").mkdir()
    (tmp_path / "plans").mkdir()
    plan = write(tmp_path / "plans", '[[task]]\nkey = "a"\ntitle = "A"\n')
    with Ledger.open(tmp_path / ".taskmill" / "taskmill.db", prefix="t") as ledger:
        assert plan_source(ledger, plan) == "plans/plan.toml"
        ids = import_plan(ledger, plan)
        rows = ledger.store.conn.execute("SELECT source, key, task_id FROM plan_keys").fetchall()
        assert rows == [("plans/plan.toml", "a", ids["a"])]
    memory = Ledger.memory()
    assert plan_source(memory, plan) == plan.resolve().as_posix()
    outside = write(tmp_path.parent, '[[task]]\nkey = "a"\ntitle = "A"\n', f"{tmp_path.name}.toml")
    with Ledger.open(tmp_path / ".taskmill" / "taskmill.db", prefix="t") as ledger:
        assert plan_source(ledger, outside) == outside.resolve().as_posix()


# -- errors ----------------------------------------------------------------------------------

ERRORS = [
    ("""\
     [[task]]
     key = "b"
     title = "B"

     [[task]]
     key = "a"
     title = "A"
     after = ["b", "nope"]
     """, 8, "task 'a': after 'nope' is neither a key in this file nor a task id"),
    ("""\
     [[task]]
     key = "b"
     title = "B"

     [[task]]
     key = "a"
     title = "A"
     after = [
       "b",  # fine
       "nope",
     ]
     """, 10, "after 'nope' is neither"),
    ("""\
     [[task]]
     key = "a"
     title = "A"

     [[task]]
     key = "b"
     title = "B"
     parent = "missing-epic"
     """, 8, "parent 'missing-epic' is neither"),
    ("""\
     [[task]]
     key = "a"
     title = "A"
     after = ["c"]

     [[task]]
     key = "b"
     title = "B"
     after = ["a"]

     [[task]]
     key = "c"
     title = "C"
     parent = "b"
     """, 4, "dependency cycle: a -> c -> b -> a"),
    ("""\
     [[task]]
     key = "a"
     title = "A"
     after = ["a"]
     """, 4, "dependency cycle: a -> a"),
    ("""\
     [[task]]
     key = "a"
     title = "A"

     [[task]]
     key = "a"
     title = "A again"
     """, 6, "duplicate key 'a'"),
    ("""\
     [[task]]
     key = "a"
     title = "A"

     [[task]]
     key = "b"
     description = "no title"
     """, 5, "task 'b': missing title"),
    ("""\
     [[task]]
     key = "a"
     title = "A"
     priority = 5
     """, 4, "priority must be an integer from 0 (highest) to 4"),
    ("""\
     [defaults]
     priority = "high"

     [[task]]
     key = "a"
     title = "A"
     """, 2, "[defaults]: priority must be an integer"),
    ("""\
     [[task]]
     key = "a"
     title = "A"
     owner = "me"
     """, 4, "task 'a': unknown field 'owner'"),
    ("""\
     [defaults]
     color = "red"
     """, 2, "[defaults]: unknown field 'color'"),
    ("""\
     [[task]]
     key = "a"
     title = "A"

     [[tasks]]
     key = "b"
     title = "B"
     """, 5, "unknown table or key 'tasks'"),
    ("""\
     [[task]]
     key = "a"
     title = "A
     """, 3, "TOML syntax error"),
    ("""\
     [[task]]
     key = "a"
     title = "A"
     title = "B"
     """, 4, "TOML syntax error"),
    ("""\
     [[task]]
     title = "no key"
     """, 1, "task 1: missing key"),
    ("""\
     [[task]]
     key = "a"
     title = "A"
     checks = "pytest"
     """, 4, "checks must be a list of non-empty strings"),
    ("""\
     [[task]]
     key = "a"
     title = "A"
     hints = "fast"
     """, 4, "hints must be a table"),
    ("""\
     [[task]]
     key = "a"
     title = "A"
     [task.hints]
     model = "m"

     [[task]]  # the second
     key = "b"
     title = "B"
     [task.extras]
     x = 1
     """, 10, "task 'b': unknown field 'extras'"),
    ("""\
     task = [
       {key = "a", title = "A"},
       {key = "b", title = "B", after = ["zzz"]},
     ]
     """, 3, "task 'b': after 'zzz' is neither"),
    ("""\
     defaults = { priority = 9 }
     """, 1, "[defaults]: priority must be an integer"),
]


@pytest.mark.parametrize(("text", "line", "fragment"), ERRORS)
def test_errors_name_the_line_and_write_nothing(tmp_path: Path, text: str, line: int,
                                                fragment: str) -> None:
    ledger = Ledger.memory()
    ledger.create("already here")
    before = counts(ledger)
    path = write(tmp_path, text)
    with pytest.raises(PlanError) as info:
        import_plan(ledger, path)
    message = str(info.value)
    assert f"{path}, line {line}:" in message
    assert fragment in message
    assert counts(ledger) == before


def test_cycle_through_existing_dependencies_is_refused_before_writing(tmp_path: Path) -> None:
    ledger = Ledger.memory()
    path = write(tmp_path, """\
        [[task]]
        key = "a"
        title = "A"

        [[task]]
        key = "b"
        title = "B"
        """)
    ids = import_plan(ledger, path)
    outside = ledger.create("Outside", after=[ids["a"]])
    ledger.add_dep(ids["b"], outside.id)  # b waits on outside, which waits on a
    before = counts(ledger)
    write(tmp_path, """\
        [[task]]
        key = "a"
        title = "A, renamed"
        after = ["b"]

        [[task]]
        key = "b"
        title = "B"
        """)
    with pytest.raises(PlanError) as info:
        import_plan(ledger, path)
    message = str(info.value)
    assert "line 4" in message
    assert f"dependency cycle: a -> b -> {outside.id} -> a" in message
    assert counts(ledger) == before
    assert ledger.get(ids["a"]).title == "A"


def test_removing_a_plan_dep_allows_reversing_it(tmp_path: Path) -> None:
    ledger = Ledger.memory()
    path = write(tmp_path, """\
        [[task]]
        key = "a"
        title = "A"
        after = ["b"]

        [[task]]
        key = "b"
        title = "B"
        """)
    ids = import_plan(ledger, path)
    write(tmp_path, """\
        [[task]]
        key = "a"
        title = "A"

        [[task]]
        key = "b"
        title = "B"
        after = ["a"]
        """)
    assert import_plan(ledger, path) == ids
    assert deps_of(ledger, ids["a"]) == set()
    assert deps_of(ledger, ids["b"]) == {(ids["a"], "blocks")}
    assert [t.id for t in ledger.ready()] == [ids["a"]]


def test_missing_file(tmp_path: Path) -> None:
    from taskmill.errors import InvalidInput

    with pytest.raises(InvalidInput, match="no such file"):
        import_plan(Ledger.memory(), tmp_path / "nope.toml")
