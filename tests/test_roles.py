"""Roles (issue 13): ``.taskmill/roles/NAME.toml`` and a task's ``role``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from taskmill.errors import PlanError
from taskmill.ledger import Ledger
from taskmill.plan import import_plan
from taskmill.roles import role_names, role_problem

ROLE = 'description = "Writes the release notes"\nagent = "scripted"\n'


def add_role(repo: Path, name: str, text: str = ROLE) -> Path:
    path = repo / ".taskmill" / "roles" / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# -- the role field ----------------------------------------------------------------------


def test_create_and_update_with_a_role(cli: Callable[..., Any], taskmill_repo: Path) -> None:
    add_role(taskmill_repo, "writer")
    add_role(taskmill_repo, "tester")
    tid = cli("create", "notes", "--role", "writer", "--json", cwd=taskmill_repo).ok().json()["id"]
    assert cli("show", tid, "--json", cwd=taskmill_repo).ok().json()["role"] == "writer"
    assert "role writer" in cli("show", tid, cwd=taskmill_repo).ok().stdout
    cli("update", tid, "--role", "tester", cwd=taskmill_repo).ok()
    assert cli("show", tid, "--json", cwd=taskmill_repo).json()["role"] == "tester"
    cli("update", tid, "--role", "", cwd=taskmill_repo).ok()
    assert cli("show", tid, "--json", cwd=taskmill_repo).json()["role"] is None


def test_an_unknown_role_is_refused_naming_the_known_ones(
        cli: Callable[..., Any], taskmill_repo: Path) -> None:
    add_role(taskmill_repo, "writer")
    add_role(taskmill_repo, "tester")
    result = cli("create", "notes", "--role", "writter", "--json", cwd=taskmill_repo)
    assert result.exit_code != 0
    message = result.error()["message"]
    assert "writter" in message and "tester, writer" in message and "'writer'?" in message
    assert cli("list", "--json", cwd=taskmill_repo).ok().json() == []  # nothing created
    tid = cli("create", "x", "--json", cwd=taskmill_repo).ok().json()["id"]
    result = cli("update", tid, "--role", "nobody", "--json", cwd=taskmill_repo)
    assert result.exit_code != 0 and "roles: tester, writer" in result.error()["message"]
    assert cli("show", tid, "--json", cwd=taskmill_repo).json()["role"] is None


def test_role_names_and_problem(tmp_path: Path) -> None:
    assert role_names(tmp_path) == []
    assert "none defined" in (role_problem(tmp_path, "x") or "")
    add_role(tmp_path.parent / tmp_path.name, "a")  # .taskmill/roles under tmp_path
    assert role_names(tmp_path / ".taskmill") == ["a"]
    assert role_problem(tmp_path / ".taskmill", "a") is None


def test_plan_files_set_a_role_and_check_it(ledger: Ledger, tmp_path: Path) -> None:
    add_role(tmp_path, "writer")
    taskmill_dir = tmp_path / ".taskmill"
    plan = tmp_path / "plan.toml"
    plan.write_text('[defaults]\nrole = "writer"\n\n[[task]]\nkey = "a"\ntitle = "A"\n\n'
                    '[[task]]\nkey = "b"\ntitle = "B"\nrole = "nobody"\n', encoding="utf-8")
    with pytest.raises(PlanError, match=r"line 11: task 'b': role 'nobody' has no file.*roles: "
                                        r"writer"):
        import_plan(ledger, plan, role_problem=lambda n: role_problem(taskmill_dir, n))
    assert ledger.list_tasks() == []
    plan.write_text(plan.read_text(encoding="utf-8").replace('role = "nobody"\n', ""),
                    encoding="utf-8")
    ids = import_plan(ledger, plan, role_problem=lambda n: role_problem(taskmill_dir, n))
    assert [ledger.get(ids[k]).role for k in "ab"] == ["writer", "writer"]
    plan.write_text(plan.read_text(encoding="utf-8").replace('[defaults]\nrole = "writer"\n',
                                                              ""), encoding="utf-8")
    import_plan(ledger, plan)  # a re-import that no longer gives the role clears it
    assert [ledger.get(ids[k]).role for k in "ab"] == [None, None]


def test_import_cli_checks_plan_roles(cli: Callable[..., Any], taskmill_repo: Path) -> None:
    plan = taskmill_repo / "plan.toml"
    plan.write_text('[[task]]\nkey = "a"\ntitle = "A"\nrole = "ghost"\n', encoding="utf-8")
    result = cli("import", str(plan), "--json", cwd=taskmill_repo)
    assert result.exit_code != 0 and "role 'ghost'" in result.error()["message"]
    add_role(taskmill_repo, "ghost")
    ids = cli("import", str(plan), "--json", cwd=taskmill_repo).ok().json()
    assert cli("show", ids["a"], "--json", cwd=taskmill_repo).json()["role"] == "ghost"


# -- role files ----------------------------------------------------------------------------


FULL_ROLE = '''description = "Writes the release notes"
agent = "claude"
model = "sonnet"
prompt = "prompts/release.md"
checks = ["make docs"]
max_iterations = 3
max_parallel = 2
land = true
[budget]
tokens_per_day = 2_000_000
cost_per_day = 20.0
'''


def test_a_role_file_with_every_key_of_the_issue(tmp_path: Path) -> None:
    from taskmill.roles.spec import load_role, load_roles

    add_role(tmp_path, "release", FULL_ROLE)
    (tmp_path / ".taskmill" / "prompts").mkdir()
    (tmp_path / ".taskmill" / "prompts" / "release.md").write_text("x", encoding="utf-8")
    role = load_role(tmp_path / ".taskmill", "release")
    spec = role.spec
    assert (spec.agent, spec.model, spec.checks, spec.max_iterations, spec.max_parallel,
            spec.land) == ("claude", "sonnet", ["make docs"], 3, 2, True)
    assert spec.budget is not None and (spec.budget.tokens_per_day,
                                        spec.budget.cost_per_day) == (2_000_000, 20.0)
    assert role.prompt_path == tmp_path / ".taskmill" / "prompts" / "release.md"
    assert list(load_roles(tmp_path / ".taskmill")) == ["release"]


@pytest.mark.parametrize(("text", "expected"), [
    ('agnet = "claude"\n', "unknown key agnet"),
    ("[budget]\ntokens = 5\n", "unknown key [budget] tokens"),
    ('max_parallel = "two"\n', "max_parallel: Input should be a valid integer"),
    ("max_iterations = 0\n", "max_iterations: Input should be greater than or equal to 1"),
    ('land = "no"\n', "land: Input should be a valid boolean"),
    ('prompt = "prompts/missing.md"\n', "prompt: no template file"),
    ("checks = [\n", "cannot read the role"),
])
def test_a_wrong_role_file_is_an_error_naming_the_file_and_key(
        tmp_path: Path, text: str, expected: str) -> None:
    from taskmill.errors import ConfigError
    from taskmill.roles.spec import load_role

    path = add_role(tmp_path, "bad", text)
    with pytest.raises(ConfigError) as caught:
        load_role(tmp_path / ".taskmill", "bad")
    assert str(path) in caught.value.message and expected in caught.value.message


def test_a_run_with_a_wrong_role_file_starts_nothing(tmp_path: Path) -> None:
    from mill_helpers import MillRepo

    repo = MillRepo(tmp_path)
    add_role(repo.root, "bad", "colour = 1\n")
    repo.create("tm-a", checks=["true"])
    result = repo.run()
    assert result.returncode != 0
    assert "bad.toml: unknown key colour" in result.stderr
    assert repo.task("tm-a")["status"] == "open"


# -- the prompt template ------------------------------------------------------------------


def _template_role(tmp_path: Path, template: str) -> Any:
    from taskmill.roles.spec import load_role

    add_role(tmp_path, "w", 'prompt = "p.md"\n')
    (tmp_path / ".taskmill" / "p.md").write_text(template, encoding="utf-8")
    return load_role(tmp_path / ".taskmill", "w")


def test_the_template_sees_task_role_vars_and_run(tmp_path: Path, ledger: Ledger) -> None:
    from taskmill.roles.template import render_prompt

    role = _template_role(tmp_path, "{{ task.id }} {{ role.name }} {{ vars.area }} "
                                    "{{ run.iteration }}{% for c in task.comments %} "
                                    "{{ c.text }}{% endfor %}")
    task = ledger.create("t", metadata={"vars": {"area": "core"}})
    ledger.comment(task.id, "hello")
    assert render_prompt(role, ledger.show(task.id), {"iteration": 2}) == (
        f"{task.id} w core 2 hello")


@pytest.mark.parametrize(("template", "expected"), [
    ("line one\n{{ nope }}\n", "line 2: 'nope' is undefined"),
    ("{{ vars.area }}", "line 1: 'dict object' has no attribute 'area'"),
    ("{% if %}", "line 1: Expected an expression"),
    ("ok\n\n{{ task.title | upper }} {{ run.missing }}", "line 3: 'dict object' has no "
                                                         "attribute 'missing'"),
])
def test_an_undefined_variable_is_an_error_naming_the_template(
        tmp_path: Path, ledger: Ledger, template: str, expected: str) -> None:
    from taskmill.roles.template import TemplateError, render_prompt

    role = _template_role(tmp_path, template)
    task = ledger.create("t")
    with pytest.raises(TemplateError) as caught:
        render_prompt(role, task, {"iteration": 1})
    message = caught.value.message
    assert f"role 'w': prompt template {tmp_path / '.taskmill' / 'p.md'}" in message
    assert expected in message


# -- budgets and parallelism ----------------------------------------------------------------


def test_a_hold_starts_when_a_budget_is_spent_and_ends_at_midnight_utc() -> None:
    from datetime import UTC, datetime

    from taskmill.roles.budget import RoleBudget, day_start, hold_for

    now = datetime(2026, 5, 1, 23, 59, tzinfo=UTC)
    assert day_start(now) == datetime(2026, 5, 1, tzinfo=UTC)
    both = RoleBudget("w", tokens_per_day=100, cost_per_day=2.0)
    assert hold_for(both, (99, 1.99), now) is None
    tokens = hold_for(both, (100, 0.0), now)
    assert tokens is not None and tokens.until == datetime(2026, 5, 2, tzinfo=UTC)
    assert "100 of 100 tokens today" in tokens.reason
    cost = hold_for(both, (0, 2.5), now)
    assert cost is not None and "$2.50 of $2.00" in cost.reason
    assert hold_for(RoleBudget("w"), (10**9, 10**6), now) is None  # no limit set


def test_role_spend_counts_the_day_s_attempts_per_role(ledger: Ledger, clock: Any) -> None:
    from datetime import timedelta

    from taskmill.roles.budget import day_start

    task = ledger.create("t", role="w")

    def attempt(role: str | None, tokens: int, cost: float) -> None:
        now = ledger.now()
        aid = ledger.start_attempt(task.id, iteration=1, agent="a", model=None, log_path="l",
                                   run_id="r", lap=1, actor="mill:r", now=now, role=role)
        ledger.finish_attempt(task.id, aid, outcome="failed", input_tokens=tokens,
                              output_tokens=1, cost_usd=cost, commit=None, model=None,
                              detail={}, seconds=1.0, usage_error=None, actor="mill:r", now=now)

    attempt("w", 10, 0.5)
    clock.advance(24 * 3600)
    attempt("w", 20, 0.25)
    attempt("x", 5, 0.0)
    attempt(None, 1000, 9.0)
    assert ledger.role_spend(day_start(clock.now())) == {"w": (21, 0.25), "x": (6, 0.0)}
    assert ledger.role_spend(day_start(clock.now()) - timedelta(days=1))["w"] == (32, 0.75)
    assert [a["role"] for a in ledger.attempts(task.id)] == ["w", "w", "x", None]
    totals = ledger.attempt_totals(clock.now())["by_role"]
    assert {k: v["attempts"] for k, v in totals.items()} == {"w": 2, "x": 1, "(none)": 1}


def test_max_parallel_counts_the_role_s_running_tasks(tmp_path: Path) -> None:
    from taskmill.model import Task
    from taskmill.roles.book import RoleBook

    add_role(tmp_path, "solo", "max_parallel = 2\n")
    add_role(tmp_path, "free", "")
    book = RoleBook.load(tmp_path / ".taskmill")
    solo, free = Task("tm-1", "x", role="solo"), Task("tm-2", "y", role="free")
    assert book.at_capacity(solo, ["solo", None, "free"]) is None
    assert "max_parallel = 2" in (book.at_capacity(solo, ["solo", "solo"]) or "")
    assert book.at_capacity(free, ["free"] * 10) is None
    assert book.at_capacity(Task("tm-3", "z"), ["solo"] * 3) is None
