"""A role's prompt template: Jinja2 with strict undefined variables.

The template sees ``task`` (the task as ``taskmill show --json`` prints it, comments and all),
``role`` (the role's keys and ``name``), ``vars`` (the task's ``metadata.vars`` table, as a
formula's pour leaves it; ``{}`` otherwise) and ``run`` (``id``, ``iteration``,
``max_iterations``, ``failure``, ``failure_kind``, ``checks``). Using a variable that is not
there is an error naming the template and the line, never an empty string.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

from ..errors import ConfigError
from ..model import Task
from .spec import Role


class TemplateError(ConfigError):
    """A role's prompt template that does not render."""


def _environment(folder: Path) -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)),
                              undefined=jinja2.StrictUndefined, autoescape=False,
                              keep_trailing_newline=True)


def template_vars(task: Task) -> dict[str, Any]:
    """The ``vars`` a task's template sees: its ``metadata.vars`` table (a poured formula's
    variables), else nothing."""
    found = (task.metadata or {}).get("vars")
    return dict(found) if isinstance(found, Mapping) else {}


def render_prompt(role: Role, task: Task, run: Mapping[str, Any]) -> str:
    """The role's prompt for ``task`` (:class:`TemplateError` naming the template, the line
    and what was wrong)."""
    path = role.prompt_path
    assert path is not None, "the role has no prompt"
    where = f"role {role.name!r}: prompt template {path}"
    try:
        template = _environment(path.parent).get_template(path.name)
        return template.render(task=task.to_json(full=True),
                               role={"name": role.name, **role.spec.model_dump(mode="json")},
                               vars=template_vars(task), run=dict(run))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{where}, line {exc.lineno}: {exc.message}",
                            hint="fix the template (Jinja2 syntax)") from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"{where}, line {_line(exc, path)}: {exc.message}",
                            hint="the template sees task, role, vars and run; an undefined "
                                 "variable is an error, not an empty string") from None
    except (OSError, jinja2.TemplateError) as exc:
        raise TemplateError(f"{where}: {exc}") from None


def _line(exc: BaseException, path: Path) -> str:
    """The template line an error was raised at (from the traceback Jinja2 rewrites)."""
    tb = exc.__traceback__
    line: int | None = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == str(path):
            line = tb.tb_lineno
        tb = tb.tb_next
    return str(line) if line is not None else "?"
