"""Request templates: the kinds of work a person can ask for without writing a check command.

A repository defines them in ``.taskmill/templates/NAME.toml`` (committed)::

    description = "Change a piece of text the user sees"

    [[fields]]
    name = "where"
    label = "Where is the text?"
    kind = "text"            # text | textarea | choice | number
    required = true
    help = "The screen or message, e.g. the login page's button"

    [[fields]]
    name = "new_text"
    label = "The new text"
    kind = "textarea"

    [task]
    title = "UI text: {{ where }}"          # jinja2 over the fields (an undefined name is an
    description = "Change it to: {{ new_text }}"   # error)
    acceptance = "The {{ where }} reads {{ new_text }}"
    agent = "claude"          # or role = "writer"
    checks = ["python -m pytest -q tests/test_strings.py"]
    labels = ["ui-text"]
    priority = 2

:func:`load_templates` reads them (an unknown key is an error naming the file and the key),
:func:`create_from_template` checks every field and creates the task in one transaction: the
CLI (``taskmill template``, ``taskmill create --template``) and the dashboard both call it.
"""

from __future__ import annotations

import inspect
import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

import jinja2
import jinja2.sandbox
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .config import Config
from .errors import InvalidInput, NotFound
from .ledger import Ledger
from .model import Task
from .paths import LedgerPaths

TEMPLATES_DIR = "templates"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
TEXT_MAX = 4_000
"""The longest value a text field takes (a textarea: :data:`TEXTAREA_MAX`)."""
TEXTAREA_MAX = 32_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TemplateField(_Strict):
    """One thing the person is asked for."""

    name: str = Field(description="The name the title/description templates use.")
    label: str = Field("", description="What the form shows (default: the name).")
    kind: Literal["text", "textarea", "choice", "number"] = "text"
    required: bool = False
    default: str | int | float | None = None
    help: str = ""
    choices: list[str] = Field(default_factory=list, description="A choice field's options.")
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _consistent(self) -> TemplateField:
        if not FIELD_RE.match(self.name):
            raise ValueError(f"field name {self.name!r} must be letters, digits and '_', not "
                             "starting with a digit")
        if self.kind == "choice" and not self.choices:
            raise ValueError(f"field {self.name!r} is a choice: give its choices")
        if self.kind != "choice" and self.choices:
            raise ValueError(f"field {self.name!r}: choices are for kind = \"choice\"")
        if self.kind != "number" and (self.min is not None or self.max is not None):
            raise ValueError(f"field {self.name!r}: min and max are for kind = \"number\"")
        return self

    def to_json(self) -> dict[str, Any]:
        data = self.model_dump()
        data["label"] = self.label or self.name
        return data


class TemplateTask(_Strict):
    """The task a request makes: its text (templates over the fields) and how it is worked."""

    title: str
    description: str = ""
    acceptance: str = ""
    role: str | None = None
    agent: str | None = None
    checks: list[str] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)
    priority: int = Field(2, ge=0, le=4)
    type: str = "task"


class Template(_Strict):
    """A request template (``.taskmill/templates/NAME.toml``)."""

    name: str = Field("", description="The file's name without .toml (set when loaded).")
    description: str = Field(description="What kind of request it is, in a sentence.")
    fields: list[TemplateField] = Field(default_factory=list)
    task: TemplateTask

    @model_validator(mode="after")
    def _unique(self) -> Template:
        seen: set[str] = set()
        for f in self.fields:
            if f.name in seen:
                raise ValueError(f"field {f.name!r} is defined twice")
            seen.add(f.name)
        return self

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "fields": [f.to_json() for f in self.fields],
                "task": self.task.model_dump()}


class TemplateInputError(InvalidInput):
    """The values given for a template's fields are wrong: ``fields`` says what is wrong with
    each (by field name), so a form can show it next to the field."""

    def __init__(self, message: str, fields: Mapping[str, str], *,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.fields = dict(fields)

    def to_json(self) -> dict[str, object]:
        data = super().to_json()
        error = data["error"]
        assert isinstance(error, dict)
        error["fields"] = self.fields
        return data


class ProjectLike(Protocol):
    """What :func:`create_from_template` needs of a project (a ``Project``, the web API)."""

    @property
    def paths(self) -> LedgerPaths: ...

    @property
    def config(self) -> Config: ...


# -- reading ------------------------------------------------------------------------------


def templates_dir(paths: LedgerPaths) -> Path:
    return paths.dir / TEMPLATES_DIR


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key {where!r}")
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def load_template(path: Path) -> Template:
    """One template file, checked (:class:`InvalidInput` naming the file and the key)."""
    name = path.name.removesuffix(".toml")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: not valid TOML: {exc}") from exc
    if "name" in data:
        raise InvalidInput(f"{path}: unknown key 'name'",
                           hint="a template is named by its file's name")
    try:
        template = Template.model_validate({**data, "name": name})
    except ValidationError as exc:
        raise InvalidInput(f"{path}: {_describe(exc)}",
                           hint="see the keys a template takes: taskmill template --help"
                           ) from exc
    env = _environment()
    for key in ("title", "description", "acceptance"):
        try:
            env.parse(getattr(template.task, key))
        except jinja2.TemplateSyntaxError as exc:
            raise InvalidInput(f"{path}: task.{key}: {exc.message} (line {exc.lineno})") from exc
    return template


def load_templates(paths: LedgerPaths) -> list[Template]:
    """Every template of the repository, by name (none: an empty list)."""
    folder = templates_dir(paths)
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.toml")):
        if not NAME_RE.match(path.name.removesuffix(".toml")):
            raise InvalidInput(f"{path}: a template's name is letters, digits, '.', '_' "
                               "and '-'")
        out.append(load_template(path))
    return out


def get_template(paths: LedgerPaths, name: str) -> Template:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidInput(f"{name!r} is not a template name")
    path = templates_dir(paths) / f"{name}.toml"
    if not path.is_file():
        known = [t.name for t in load_templates(paths)]
        raise NotFound(f"no template {name!r}",
                       hint=f"templates: {', '.join(known)}" if known else
                       f"define one in {templates_dir(paths)}/{name}.toml")
    return load_template(path)


# -- filling in ----------------------------------------------------------------------------


def _environment() -> jinja2.Environment:
    # sandboxed: a template is committed text, not code; an undefined name is an error
    return jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined,
                                               autoescape=False, keep_trailing_newline=False)


def _number(raw: Any) -> float | int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        value: float | int = raw
    elif isinstance(raw, str):
        text = raw.strip()
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                return None
    else:
        return None
    return value if math.isfinite(value) else None


def check_values(template: Template, values: Mapping[str, Any]) -> dict[str, Any]:
    """The fields' values, checked and converted (a number field gives a number), with the
    defaults of the ones not given. Every problem at once: :class:`TemplateInputError`."""
    problems: dict[str, str] = {}
    known = {f.name for f in template.fields}
    for key in values:
        if key not in known:
            problems[str(key)] = (f"template {template.name!r} has no field {key!r} (fields: "
                                  f"{', '.join(sorted(known)) or 'none'})")
    out: dict[str, Any] = {}
    for f in template.fields:
        raw = values.get(f.name)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            raw = f.default
        label = f.label or f.name
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            if f.required:
                problems[f.name] = f"{label} is required"
            else:
                out[f.name] = "" if f.kind != "number" else None
            continue
        if f.kind == "number":
            number = _number(raw)
            if number is None:
                problems[f.name] = f"{label} must be a number, not {str(raw)[:40]!r}"
            elif f.min is not None and number < f.min:
                problems[f.name] = f"{label} must be at least {f.min:g}"
            elif f.max is not None and number > f.max:
                problems[f.name] = f"{label} must be at most {f.max:g}"
            else:
                out[f.name] = number
            continue
        if not isinstance(raw, str | int | float) or isinstance(raw, bool):
            problems[f.name] = f"{label} must be text"
            continue
        text = str(raw).strip() if f.kind != "textarea" else str(raw).strip("\n")
        if f.kind == "choice" and text not in f.choices:
            problems[f.name] = f"{label} must be one of: {', '.join(f.choices)}"
        elif f.kind in ("text", "choice") and ("\n" in text or "\r" in text):
            problems[f.name] = f"{label} must be one line"
        elif len(text) > (TEXTAREA_MAX if f.kind == "textarea" else TEXT_MAX):
            problems[f.name] = f"{label} is too long"
        else:
            out[f.name] = text
    if problems:
        first = next(iter(problems.values()))
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise TemplateInputError(f"{first}{more}", problems,
                                 hint=f"taskmill template show {template.name} lists its "
                                      "fields")
    return out


def render(template: Template, values: Mapping[str, Any]) -> dict[str, str]:
    """The task's title, description and acceptance criteria from checked ``values``."""
    env = _environment()
    out = {}
    for key in ("title", "description", "acceptance"):
        try:
            out[key] = env.from_string(getattr(template.task, key)).render(**values).strip()
        except jinja2.UndefinedError as exc:
            raise InvalidInput(f"template {template.name!r}: task.{key}: {exc.message}",
                               hint="the templates may use only the template's fields") from exc
        except jinja2.TemplateError as exc:
            raise InvalidInput(f"template {template.name!r}: task.{key}: {exc}") from exc
    if not out["title"]:
        raise InvalidInput(f"template {template.name!r}: the title came out empty")
    return out


def create_from_template(ledger: Ledger, project: ProjectLike, name: str,
                         values: Mapping[str, Any], actor: str | None, *,
                         after: Iterable[str] = (), labels: Iterable[str] = (),
                         priority: int | None = None) -> Task:
    """Create the task a person asks for with template ``name`` and the fields' ``values``:
    every field is checked first, then the task, its labels and dependencies are created in
    one transaction (nothing is created when anything is wrong). ``after``: tasks it waits
    on; ``labels`` are added to the template's; ``priority`` overrides the template's."""
    template = get_template(project.paths, name)
    checked = check_values(template, values)
    text = render(template, checked)
    spec = template.task
    if spec.agent is not None:
        project.config.check_agent(spec.agent, what=f"template {name!r}: task.agent")
    extra: dict[str, Any] = {}
    if spec.role is not None:
        if "role" not in inspect.signature(ledger.create).parameters:
            raise InvalidInput(f"template {name!r}: task.role: this taskmill has no roles",
                               hint="name an agent (task.agent) instead")
        extra["role"] = spec.role
    metadata = {"template": template.name, "fields": {k: v for k, v in checked.items()
                                                      if v not in ("", None)}}
    return ledger.create(
        text["title"], description=text["description"],
        acceptance_criteria=text["acceptance"],
        priority=spec.priority if priority is None else priority, issue_type=spec.type,
        labels=[*spec.labels, *(lb for lb in labels if lb not in spec.labels)],
        checks=list(spec.checks) or None, agent=spec.agent, metadata=metadata,
        after=tuple(after), actor=actor, **extra)
