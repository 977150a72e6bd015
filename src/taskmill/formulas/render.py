"""What a pour of a formula creates: the formula's steps with its variables filled in
(Jinja2, strict: an undefined variable is an error), fanned out (``for_each``) and skipped
(``condition``), checked before anything is written."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from jinja2.nativetypes import NativeEnvironment

from ..roles import role_names
from .load import LoadedFormula
from .model import FormulaStep

_TEXT = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False,
                           keep_trailing_newline=True)
_NATIVE = NativeEnvironment(undefined=jinja2.StrictUndefined)
_FALSE = {"", "0", "false", "no", "off", "none"}


@dataclass
class PlannedTask:
    """One task a pour creates."""

    key: str
    """The step's id, ``id[n]`` for the n-th item of a ``for_each`` (from 1)."""
    step: str
    title: str
    role: str | None
    checks: list[str] | None
    needs: list[str]
    """Keys of the planned tasks it waits on."""
    max_iterations: int | None
    item: Any = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "step": self.step, "title": self.title,
                               "needs": self.needs}
        for name in ("role", "checks", "max_iterations", "item"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


@dataclass
class PourPlan:
    formula: str
    vars: dict[str, Any]
    title: str
    """The epic's title."""
    tasks: list[PlannedTask] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Steps left out: their condition was false, or their for_each list was empty."""

    def to_json(self) -> dict[str, Any]:
        return {"formula": self.formula, "vars": self.vars, "title": self.title,
                "tasks": [t.to_json() for t in self.tasks], "skipped": self.skipped}


def resolve_vars(loaded: LoadedFormula, given: dict[str, Any]) -> dict[str, Any]:
    """The formula's variables: those given, else their defaults. An unknown or missing one
    is an error naming the file and line."""
    declared = loaded.formula.vars
    for name in given:
        if name not in declared:
            known = ", ".join(declared) or "none"
            raise loaded.error(loaded.lines.tables[0].keys.get("vars")
                               or _first_var_line(loaded),
                               f"unknown var {name!r}: {loaded.formula.formula} declares "
                               f"{known}", hint="declare it as [vars.NAME], or leave it out; "
                               "nothing was created")
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        if name in given:
            values[name] = given[name]
        elif spec.default is not None:
            values[name] = spec.default
        else:
            what = f" ({spec.description})" if spec.description else ""
            raise loaded.error(loaded.var_line(name), f"var {name!r}{what} is required",
                               hint=f"give it: --var {name}=VALUE; nothing was created")
    return values


def _first_var_line(loaded: LoadedFormula) -> int | None:
    found = [t.line for t in loaded.lines.tables if t.name.startswith("vars.")]
    return found[0] if found else None


def plan_pour(loaded: LoadedFormula, given: dict[str, Any], *,
              roles_dir: Path | None = None) -> PourPlan:
    """What pouring ``loaded`` with ``given`` variables creates (nothing is written).
    ``roles_dir``: where roles live (``.taskmill/roles``); a step's role must be one."""
    formula = loaded.formula
    values = resolve_vars(loaded, given)
    shown = ", ".join(f"{k}={_short(v)}" for k, v in given.items())
    plan = PourPlan(formula.formula, values,
                    f"{formula.formula}: {shown}" if shown else formula.formula)
    roles = role_names(roles_dir.parent) if roles_dir is not None else None
    keys_of: dict[str, list[str]] = {}
    for index, step in enumerate(formula.steps):
        if step.condition is not None and not _truthy(
                _native(loaded, index, "condition", step.condition, values)):
            plan.skipped.append(step.id)
            keys_of[step.id] = []
            continue
        items: list[Any] = [None]
        if step.for_each is not None:
            items = _as_list(_native(loaded, index, "for_each", step.for_each, values))
            if not items:
                plan.skipped.append(step.id)
        keys: list[str] = []
        for n, item in enumerate(items, start=1):
            scope = values if step.for_each is None else {**values, "item": item}
            key = step.id if step.for_each is None else f"{step.id}[{n}]"
            needs = [k for need in step.needs for k in keys_of[need]]
            plan.tasks.append(_task(loaded, index, step, scope, key, needs, roles, item))
            keys.append(key)
        keys_of[step.id] = keys
    if not plan.tasks:
        raise loaded.error(None, "every step was skipped (conditions false, for_each lists "
                           "empty): there is nothing to pour")
    return plan


def _task(loaded: LoadedFormula, index: int, step: FormulaStep, scope: dict[str, Any],
          key: str, needs: list[str], roles: list[str] | None, item: Any) -> PlannedTask:
    role = _text(loaded, index, "role", step.role, scope) if step.role else None
    if role is not None and roles is not None and role not in roles:
        known = ", ".join(roles) if roles else "none yet"
        raise loaded.error(loaded.step_line(index, "role"),
                           f"step {step.id!r}: unknown role {role!r} (the roles: {known})",
                           hint=f"write .taskmill/roles/{role}.toml or name another role; "
                                "nothing was created")
    checks = ([_text(loaded, index, "checks", c, scope) for c in step.checks]
              if step.checks is not None else None)
    return PlannedTask(key, step.id, _text(loaded, index, "title", step.title, scope), role,
                       checks, needs, step.max_iterations, item)


@functools.lru_cache(maxsize=4096)
def _compiled(template: str, native: bool) -> jinja2.Template:
    """Templates compiled once (a formula poured again, by an order, reuses them)."""
    return (_NATIVE if native else _TEXT).from_string(template)


def _text(loaded: LoadedFormula, index: int, key: str, template: str,
          scope: dict[str, Any]) -> str:
    if "{" not in template:  # no expression, statement or comment: the text as it is
        return template
    try:
        return _compiled(template, False).render(scope)
    except jinja2.TemplateError as exc:
        raise _template_error(loaded, index, key, exc) from None


def _native(loaded: LoadedFormula, index: int, key: str, template: str,
            scope: dict[str, Any]) -> Any:
    try:
        return _compiled(template, True).render(scope)
    except jinja2.TemplateError as exc:
        raise _template_error(loaded, index, key, exc) from None


def _template_error(loaded: LoadedFormula, index: int, key: str,
                    exc: jinja2.TemplateError) -> Exception:
    step = loaded.formula.steps[index].id
    what = "undefined template variable" if isinstance(exc, jinja2.UndefinedError) \
        else "template error"
    return loaded.error(loaded.step_line(index, key),
                        f"step {step!r}, {key}: {what}: {exc.message or exc}",
                        hint=f"the variables are: {', '.join(loaded.formula.vars) or 'none'}"
                             f"{' and item' if loaded.formula.steps[index].for_each else ''};"
                             " nothing was created")


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE
    return bool(value)


def _as_list(value: Any) -> list[Any]:
    """A ``for_each`` value as a list: a list, a JSON list, or comma-separated words."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            if isinstance(parsed, list):
                return parsed
        return [part.strip() for part in text.split(",") if part.strip()]
    if value is None or value is False:
        return []
    return [value]


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."
