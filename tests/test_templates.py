"""Request templates: the file's schema, checking a person's values, creating the task in one
transaction, and the CLI (`taskmill template`, `taskmill create --template`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from taskmill.errors import InvalidInput, NotFound
from taskmill.project import open_project
from taskmill.templates import (
    TemplateInputError,
    create_from_template,
    get_template,
    load_templates,
)

UI_TEXT = '''\
description = "Change a piece of text the user sees"

[[fields]]
name = "where"
label = "Where is the text?"
required = true
help = "The screen or message"

[[fields]]
name = "new_text"
label = "The new text"
kind = "textarea"
required = true

[[fields]]
name = "tone"
kind = "choice"
choices = ["plain", "friendly"]
default = "plain"

[[fields]]
name = "size"
kind = "number"
min = 1
max = 10

[task]
title = "UI text: {{ where }}"
description = "Change the text of {{ where }} to:\\n{{ new_text }}\\n(tone: {{ tone }})"
acceptance = "{{ where }} reads the new text"
checks = ["python -m pytest -q tests/test_strings.py"]
labels = ["ui-text"]
priority = 1
'''


def write_template(repo: Path, name: str, text: str) -> Path:
    folder = repo / ".taskmill" / "templates"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_template_is_read_and_listed(taskmill_repo: Path) -> None:
    write_template(taskmill_repo, "ui-text", UI_TEXT)
    with open_project(taskmill_repo, {}) as project:
        [t] = load_templates(project.paths)
        assert t.name == "ui-text" and [f.name for f in t.fields] == [
            "where", "new_text", "tone", "size"]
        assert t.to_json()["fields"][2]["label"] == "tone"  # the name when no label
        assert get_template(project.paths, "ui-text") == t
        with pytest.raises(NotFound, match="no template 'nope'") as exc:
            get_template(project.paths, "nope")
        assert "ui-text" in (exc.value.hint or "")


@pytest.mark.parametrize(("text", "message"), [
    (UI_TEXT + "colour = 'red'\n", "unknown key 'task.colour'"),
    (UI_TEXT.replace('help = "The screen or message"', 'hlep = "x"'),
     "unknown key 'fields.0.hlep'"),
    (UI_TEXT.replace('kind = "choice"\nchoices = ["plain", "friendly"]\n', 'kind = "choice"\n'),
     "is a choice: give its choices"),
    (UI_TEXT.replace('kind = "textarea"', 'kind = "essay"'), "fields.1.kind"),
    (UI_TEXT.replace("{{ where }}\"\ndescription", "{{ where \"\ndescription"), "task.title"),
    ("description = 'x'\n", "task: Field required"),
])
def test_a_bad_template_names_its_file_and_key(taskmill_repo: Path, text: str,
                                               message: str) -> None:
    path = write_template(taskmill_repo, "ui-text", text)
    with open_project(taskmill_repo, {}) as project, \
            pytest.raises(InvalidInput) as exc:
        load_templates(project.paths)
    assert str(path) in exc.value.message and message in exc.value.message, exc.value.message


def test_create_from_template_fills_in_the_task(taskmill_repo: Path) -> None:
    write_template(taskmill_repo, "ui-text", UI_TEXT)
    with open_project(taskmill_repo, {}) as project:
        led = project.ledger
        dep = led.create("Earlier work")
        task = create_from_template(
            led, project, "ui-text", {"where": " the login button ", "new_text": "Sign in",
                                      "size": "3"},
            "alice", after=[dep.id], labels=["urgent"], priority=0)
        assert task.title == "UI text: the login button"
        assert task.description == "Change the text of the login button to:\nSign in\n(tone: plain)"
        assert task.acceptance_criteria == "the login button reads the new text"
        assert task.checks == ["python -m pytest -q tests/test_strings.py"]
        assert task.labels == ["ui-text", "urgent"] and task.priority == 0
        assert task.metadata == {"template": "ui-text", "fields": {
            "where": "the login button", "new_text": "Sign in", "tone": "plain", "size": 3}}
        assert [d.depends_on_id for d in led.show(task.id).dependencies] == [dep.id]
        created = [e for e in led.events(task.id) if e.kind == "created"]
        assert created[0].actor == "alice"


@pytest.mark.parametrize(("values", "field", "message"), [
    ({"new_text": "x"}, "where", "Where is the text? is required"),
    ({"where": "  ", "new_text": "x"}, "where", "is required"),
    ({"where": "a", "new_text": "x", "tone": "angry"}, "tone", "one of: plain, friendly"),
    ({"where": "a", "new_text": "x", "size": "big"}, "size", "must be a number"),
    ({"where": "a", "new_text": "x", "size": 11}, "size", "at most 10"),
    ({"where": "a\nb", "new_text": "x"}, "where", "one line"),
    ({"where": "a", "new_text": "x", "colour": "red"}, "colour", "has no field 'colour'"),
])
def test_bad_values_create_nothing_and_say_which_field(
        taskmill_repo: Path, values: dict[str, Any], field: str, message: str) -> None:
    write_template(taskmill_repo, "ui-text", UI_TEXT)
    with open_project(taskmill_repo, {}) as project:
        before = project.ledger.last_seq()
        with pytest.raises(TemplateInputError) as exc:
            create_from_template(project.ledger, project, "ui-text", values, "alice")
        assert message in exc.value.fields[field], exc.value.fields
        assert exc.value.to_json()["error"]["fields"] == exc.value.fields  # type: ignore[index]
        assert project.ledger.list_tasks() == [] and project.ledger.last_seq() == before


def test_a_missing_dependency_creates_nothing(taskmill_repo: Path) -> None:
    write_template(taskmill_repo, "ui-text", UI_TEXT)
    with open_project(taskmill_repo, {}) as project:
        with pytest.raises(NotFound):
            create_from_template(project.ledger, project, "ui-text",
                                 {"where": "a", "new_text": "b"}, "alice", after=["tm-nope"])
        assert project.ledger.list_tasks() == []


def test_an_undefined_name_in_a_template_is_an_error(taskmill_repo: Path) -> None:
    write_template(taskmill_repo, "ui-text", UI_TEXT.replace("{{ tone }}", "{{ mood }}"))
    with open_project(taskmill_repo, {}) as project:
        with pytest.raises(InvalidInput, match=r"task\.description: 'mood' is undefined"):
            create_from_template(project.ledger, project, "ui-text",
                                 {"where": "a", "new_text": "b"}, "alice")
        assert project.ledger.list_tasks() == []


def test_an_unknown_agent_is_refused(taskmill_repo: Path) -> None:
    write_template(taskmill_repo, "ui-text", UI_TEXT.replace("priority = 1",
                                                             "priority = 1\nagent = 'nobody'"))
    with open_project(taskmill_repo, {}) as project:
        with pytest.raises(InvalidInput, match=r"task\.agent"):
            create_from_template(project.ledger, project, "ui-text",
                                 {"where": "a", "new_text": "b"}, "alice")
        assert project.ledger.list_tasks() == []


def test_the_cli_lists_shows_and_creates(taskmill_repo: Path,
                                         cli: Callable[..., Any]) -> None:
    write_template(taskmill_repo, "ui-text", UI_TEXT)
    listed = cli("template", "list", "--json", cwd=taskmill_repo).ok().json()
    assert [t["name"] for t in listed] == ["ui-text"]
    shown = cli("template", "show", "ui-text", cwd=taskmill_repo).ok().stdout
    assert "--field where=..." in shown and "check: python -m pytest" in shown
    task = cli("--actor", "bob", "create", "--template", "ui-text", "--field", "where=footer",
               "--field", "new_text=Bye", "-l", "x", "-p", "3", "--json",
               cwd=taskmill_repo).ok().json()
    assert task["title"] == "UI text: footer" and task["labels"] == ["ui-text", "x"]
    assert task["priority"] == 3
    log = cli("log", task["id"], "--json", cwd=taskmill_repo).ok().json()
    assert log[0]["actor"] == "bob"


def test_the_cli_refuses_bad_fields_and_creates_nothing(taskmill_repo: Path,
                                                        cli: Callable[..., Any]) -> None:
    write_template(taskmill_repo, "ui-text", UI_TEXT)
    bad = cli("create", "--template", "ui-text", "--field", "where=footer", "--json",
              cwd=taskmill_repo)
    assert bad.exit_code == 2 and bad.error()["fields"] == {
        "new_text": "The new text is required"}
    bad = cli("create", "--template", "ui-text", cwd=taskmill_repo)
    assert bad.exit_code == 2 and "where: Where is the text? is required" in bad.stderr
    assert "new_text: The new text is required" in bad.stderr
    bad = cli("create", "Title", "--template", "ui-text", cwd=taskmill_repo)
    assert bad.exit_code == 2 and "TITLE cannot be given with it" in bad.stderr
    bad = cli("create", "--template", "ui-text", "--field", "where", cwd=taskmill_repo)
    assert bad.exit_code == 2 and "NAME=VALUE" in bad.stderr
    assert cli("list", "--json", cwd=taskmill_repo).ok().json() == []
    assert cli("create", cwd=taskmill_repo).exit_code == 2


def test_the_fast_path_hands_template_requests_to_click(taskmill_repo: Path) -> None:
    """``taskmill create`` is served without click unless --template or --field is given."""
    import json
    import subprocess
    import sys

    write_template(taskmill_repo, "ui-text", UI_TEXT)
    run = [sys.executable, "-m", "taskmill", "create"]
    made = subprocess.run([*run, "--template", "ui-text", "--field", "where=footer",
                           "--field", "new_text=Bye", "--json"], cwd=taskmill_repo,
                          capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["title"] == "UI text: footer"
    bad = subprocess.run([*run, "A title", "--field", "where=x"], cwd=taskmill_repo,
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "--field is for --template" in bad.stderr
