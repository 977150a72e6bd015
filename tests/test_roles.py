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
