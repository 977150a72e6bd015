"""Formulas (``.taskmill/formulas``) and ``taskmill pour``: one transaction, idempotent with a
key, fan-out and conditions, and every error naming the file and line with nothing created."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import CliResult
from taskmill.clock import FixedClock
from taskmill.errors import InvalidInput
from taskmill.formulas import load_formula, pour
from taskmill.ledger import Ledger
from taskmill.ledger.memory import MemoryStore
from taskmill.model import BLOCKS, PARENT_CHILD

Cli = Callable[..., CliResult]

BUGFIX = '''\
formula = "bugfix"
description = "Reproduce, fix and document a bug"
[vars.issue]                      # required unless it has a default
description = "what is wrong"
[vars.area]
default = "core"
[vars.areas]
default = ["core", "cli"]
[vars.document]
default = true
[[steps]]
id = "repro"
title = "Reproduce: {{ issue }}"
role = "tester"
checks = ["test -f tests/test_repro_{{ area }}.py"]
[[steps]]
id = "fix"
needs = ["repro"]
title = "Fix: {{ issue }}"
max_iterations = 6               # the step's own Ralph loop
[[steps]]
id = "notes"
needs = ["fix"]
title = "Changelog entry for {{ item }}"
for_each = "{{ areas }}"
condition = "{{ document }}"
'''


@pytest.fixture
def tm(tmp_path: Path) -> Path:
    """A ``.taskmill`` directory with the bugfix formula and a tester role."""
    root = tmp_path / ".taskmill"
    (root / "formulas").mkdir(parents=True)
    (root / "roles").mkdir()
    (root / "roles" / "tester.toml").write_text('description = "tests"\n', encoding="utf-8")
    (root / "formulas" / "bugfix.toml").write_text(BUGFIX, encoding="utf-8")
    return root


@pytest.fixture(params=["sqlite", "memory"])
def ledger(request: pytest.FixtureRequest) -> Ledger:
    clock = FixedClock(step=0.001)
    if request.param == "memory":
        return Ledger(MemoryStore(), prefix="tm", clock=clock, actor="test")
    return Ledger.memory(prefix="tm", clock=clock, actor="test")


def test_pour_creates_an_epic_and_a_task_per_step_linked_by_needs(tm: Path,
                                                                   ledger: Ledger) -> None:
    loaded = load_formula(tm / "formulas" / "bugfix.toml")
    report = pour(ledger, loaded, {"issue": "crash on start"}, roles_dir=tm / "roles")
    assert report.epic is not None and not report.existing
    epic = ledger.show(report.epic)
    assert epic.issue_type == "epic" and epic.metadata == {
        "formula": "bugfix", "vars": {"issue": "crash on start", "area": "core",
                                      "areas": ["core", "cli"], "document": True}}
    assert list(report.tasks) == ["repro", "fix", "notes[1]", "notes[2]"]
    ids = report.tasks
    repro, fix = ledger.get(ids["repro"]), ledger.get(ids["fix"])
    assert repro.title == "Reproduce: crash on start" and repro.role == "tester"
    assert repro.checks == ["test -f tests/test_repro_core.py"]
    assert fix.hints == {"max_iterations": 6}
    assert [ledger.get(ids[k]).title for k in ("notes[1]", "notes[2]")] == [
        "Changelog entry for core", "Changelog entry for cli"]
    edges = set(ledger.dep_edges())
    assert (ids["fix"], ids["repro"], BLOCKS) in edges
    assert {(ids[k], ids["fix"], BLOCKS) for k in ("notes[1]", "notes[2]")} <= edges
    assert {(tid, report.epic, PARENT_CHILD) for tid in ids.values()} <= edges
    # the epic is a container: only the first step is work now
    assert [t.id for t in ledger.ready(work_only=True)] == [ids["repro"]]
    poured = [e for e in ledger.events(report.epic, limit=None) if e.kind == "poured"]
    assert poured and poured[0].data["tasks"] == ids
    assert ledger.verify().ok


def test_condition_false_skips_a_step_and_for_each_takes_a_comma_list(tm: Path,
                                                                       ledger: Ledger) -> None:
    loaded = load_formula(tm / "formulas" / "bugfix.toml")
    skipped = pour(ledger, loaded, {"issue": "x", "document": "false"}, roles_dir=tm / "roles")
    assert list(skipped.tasks) == ["repro", "fix"] and skipped.plan.skipped == ["notes"]
    fanned = pour(ledger, loaded, {"issue": "x", "areas": "a, b,c"}, roles_dir=tm / "roles")
    assert [k for k in fanned.tasks if k.startswith("notes")] == [
        "notes[1]", "notes[2]", "notes[3]"]


def test_pour_with_a_key_is_idempotent_and_dry_run_writes_nothing(tm: Path,
                                                                  ledger: Ledger) -> None:
    loaded = load_formula(tm / "formulas" / "bugfix.toml")
    seq = ledger.last_seq()
    dry = pour(ledger, loaded, {"issue": "x"}, key="bug-1", dry_run=True, roles_dir=tm / "roles")
    assert dry.epic is None and len(dry.plan.tasks) == 4 and ledger.last_seq() == seq
    first = pour(ledger, loaded, {"issue": "x"}, key="bug-1", roles_dir=tm / "roles")
    again = pour(ledger, loaded, {"issue": "x"}, key="bug-1", roles_dir=tm / "roles")
    assert again.existing and again.epic == first.epic and again.tasks == first.tasks
    assert len(ledger.list_tasks()) == 5
    other = pour(ledger, loaded, {"issue": "x"}, key="bug-2", roles_dir=tm / "roles")
    assert other.epic != first.epic


@pytest.mark.parametrize(("edit", "given", "line", "words"), [
    (None, {"issue": "x", "isue": "y"}, 3, "unknown var 'isue'"),
    (None, {}, 3, "var 'issue' (what is wrong) is required"),
    (("{{ issue }}\"\nrole", "{{ isue }}\"\nrole"), {"issue": "x"}, 13,
     "undefined template variable: 'isue' is undefined"),
    (('needs = ["repro"]', 'needs = ["notes"]'), {"issue": "x"}, 18,
     "cycle in needs: fix -> notes -> fix"),
    (('role = "tester"', 'role = "tster"'), {"issue": "x"}, 14,
     "unknown role 'tster' (the roles: tester)"),
    (('needs = ["fix"]', 'needs = ["fixx"]'), {"issue": "x"}, 23, "no step has that id"),
    (("max_iterations = 6", "max_iterations = 0"), {"issue": "x"}, 20, "max_iterations"),
    (('id = "fix"', 'id = "repro"'), {"issue": "x"}, 17, "used twice"),
])
def test_errors_name_file_and_line_and_create_nothing(
        tm: Path, ledger: Ledger, edit: tuple[str, str] | None, given: dict[str, str],
        line: int, words: str) -> None:
    path = tm / "formulas" / "bugfix.toml"
    if edit is not None:
        assert edit[0] in BUGFIX
        path.write_text(BUGFIX.replace(edit[0], edit[1], 1), encoding="utf-8")
    seq = ledger.last_seq()
    with pytest.raises(InvalidInput) as err:
        pour(ledger, load_formula(path, shown="bugfix.toml"), given, roles_dir=tm / "roles")
    assert err.value.message.startswith(f"bugfix.toml, line {line}: "), err.value.message
    assert words in err.value.message
    assert ledger.last_seq() == seq and ledger.list_tasks() == []


def test_a_failure_midway_leaves_nothing(tm: Path, ledger: Ledger,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = load_formula(tm / "formulas" / "bugfix.toml")
    real = Ledger.create
    made: list[str] = []

    def flaky(self: Ledger, title: str, **kw: object) -> object:
        if len(made) == 3:
            raise InvalidInput("the disk is full")
        task = real(self, title, **kw)  # type: ignore[arg-type]
        made.append(task.id)
        return task

    monkeypatch.setattr(Ledger, "create", flaky)
    with pytest.raises(InvalidInput):
        pour(ledger, loaded, {"issue": "x"}, key="k", roles_dir=tm / "roles")
    assert ledger.list_tasks() == [] and ledger.store.plan_keys("formula:bugfix") == {}


def test_pour_of_a_100_step_formula_is_fast(tmp_path: Path) -> None:
    steps = "".join(f'[[steps]]\nid = "s{i}"\ntitle = "step {i} of {{{{ name }}}}"\n'
                    + (f'needs = ["s{i - 1}"]\n' if i else "") for i in range(100))
    path = tmp_path / "big.toml"
    path.write_text(f'formula = "big"\n[vars.name]\n{steps}', encoding="utf-8")
    ledger = Ledger.open(tmp_path / "db", prefix="tm")
    start = time.perf_counter()
    report = pour(ledger, load_formula(path), {"name": "x"})
    elapsed = time.perf_counter() - start
    assert len(report.tasks) == 100
    assert elapsed < 2.0  # the figure (benchmarks/watch.py) is far below: a loose bound here


def test_cli_pour_formula_list_and_show(cli: Cli, taskmill_repo: Path) -> None:
    tm = taskmill_repo / ".taskmill"
    (tm / "formulas").mkdir()
    (tm / "roles").mkdir()
    (tm / "roles" / "tester.toml").write_text('description = "tests"\n', encoding="utf-8")
    (tm / "formulas" / "bugfix.toml").write_text(BUGFIX, encoding="utf-8")
    listed = cli("formula", "list", "--json", cwd=taskmill_repo).ok().json()
    assert listed[0]["formula"] == "bugfix" and listed[0]["steps"] == ["repro", "fix", "notes"]
    shown = cli("formula", "show", "bugfix", "--json", cwd=taskmill_repo).ok().json()
    assert shown["vars"]["area"]["default"] == "core"
    dry = cli("pour", "bugfix", "--var", "issue=boom", "--dry-run", cwd=taskmill_repo).ok()
    assert "would pour bugfix" in dry.stdout
    assert cli("list", "--json", cwd=taskmill_repo).ok().json() == []
    out = cli("pour", "bugfix", "--var", "issue=boom", "--var", "areas=a", "--key", "b1",
              "--json", cwd=taskmill_repo).ok().json()
    assert out["epic"] and list(out["ids"]) == ["repro", "fix", "notes[1]"]
    again = cli("pour", "bugfix", "--var", "issue=boom", "--key", "b1", cwd=taskmill_repo).ok()
    assert "already" in again.stdout and out["epic"] in again.stdout
    bad = cli("pour", "bugfix", "--var", "colour=red", "--json", cwd=taskmill_repo)
    assert bad.exit_code == 2 and bad.error()["code"] == "formula_invalid"
    assert "bugfix.toml, line 3" in bad.error()["message"]
    missing = cli("pour", "nope", cwd=taskmill_repo)
    assert missing.exit_code == 3 and "the formulas are: bugfix" in missing.stderr
    assert len(cli("list", "--json", cwd=taskmill_repo).ok().json()) == 4


def test_a_plan_file_pours_formulas_once_per_key(cli: Cli, taskmill_repo: Path) -> None:
    tm = taskmill_repo / ".taskmill"
    (tm / "formulas").mkdir()
    (tm / "formulas" / "two.toml").write_text(
        'formula = "two"\n[vars.x]\n[[steps]]\nid = "a"\ntitle = "A {{ x }}"\n'
        '[[steps]]\nid = "b"\nneeds = ["a"]\ntitle = "B {{ x }}"\n', encoding="utf-8")
    plan = taskmill_repo / "plan.toml"
    plan.write_text('[[task]]\nkey = "setup"\ntitle = "Set up"\n\n'
                    '[[pour]]\nkey = "first"\nformula = "two"\nvars = { x = "one" }\n',
                    encoding="utf-8")
    ids = cli("import", "plan.toml", "--json", cwd=taskmill_repo).ok().json()
    assert set(ids) == {"setup", "first"}
    children = cli("list", "--parent", ids["first"], "--json", cwd=taskmill_repo).ok().json()
    assert sorted(t["title"] for t in children) == ["A one", "B one"]
    again = cli("import", "plan.toml", "--json", cwd=taskmill_repo).ok().json()
    assert again == ids
    assert len(cli("list", "--json", cwd=taskmill_repo).ok().json()) == 4
    # a bad pour names the plan's line and the formula's problem; nothing is imported
    plan.write_text('[[task]]\nkey = "other"\ntitle = "Other"\n\n'
                    '[[pour]]\nkey = "second"\nformula = "two"\nvars = { y = "1" }\n',
                    encoding="utf-8")
    bad = cli("import", "plan.toml", "--json", cwd=taskmill_repo)
    assert bad.exit_code == 2
    message = bad.error()["message"]
    assert "plan.toml, line 5: pour 'second': .taskmill/formulas/two.toml, line 2" in message
    assert "unknown var 'y'" in message
    assert len(cli("list", "--json", cwd=taskmill_repo).ok().json()) == 4


def test_concurrent_pours_of_one_key_make_one_instance(tm: Path, tmp_path: Path) -> None:
    import threading

    loaded = load_formula(tm / "formulas" / "bugfix.toml")
    db = tmp_path / "db"
    Ledger.open(db, prefix="tm").close_db()
    epics: list[str | None] = []
    start = threading.Barrier(4)

    def one() -> None:
        with Ledger.open(db, prefix="tm") as ledger:
            start.wait()
            epics.append(pour(ledger, loaded, {"issue": "x"}, key="same",
                              roles_dir=tm / "roles").epic)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(epics)) == 1 and None not in epics
    with Ledger.open(db, prefix="tm") as ledger:
        assert len(ledger.list_tasks(issue_type="epic")) == 1
