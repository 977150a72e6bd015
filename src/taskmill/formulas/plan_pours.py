"""Plan files may pour formulas: a ``[[pour]]`` table per instance, next to ``[[task]]``::

    [[pour]]
    key = "bug-17"                 # unique in the file (tasks' keys included)
    formula = "bugfix"             # .taskmill/formulas/bugfix.toml
    vars = { issue = "crash on start" }

Importing the plan again pours nothing new: each pour's key is remembered (as ``taskmill
pour --key``), under the plan's source. The pours are part of the import's transaction: a
problem in one (an unknown var, an undefined template variable...) imports nothing.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PlanError, TaskmillError
from ..ledger import Ledger
from .load import find_formula, load_formula
from .pour import pour
from .toml_lines import TomlLines

POUR_FIELDS = ("key", "formula", "vars")


@dataclass
class PlanPour:
    key: str
    formula: str
    vars: dict[str, Any] = field(default_factory=dict)
    line: int | None = None


def parse_pours(name: str, text: str, task_keys: set[str]) -> list[PlanPour]:
    """The ``[[pour]]`` tables of a plan (the file parses: :func:`parse_plan` said so)."""
    raw = tomllib.loads(text).get("pour", [])
    lines = TomlLines.of(text)

    def error(line: int | None, message: str) -> PlanError:
        where = f"{name}, line {line}" if line else name
        return PlanError(f"{where}: {message}", hint="nothing was imported")

    if not isinstance(raw, list) or not all(isinstance(p, dict) for p in raw):
        raise error(lines.line("", "pour"), "pour must be an array of tables ([[pour]])")
    out: list[PlanPour] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        header = lines.line("pour", None, index)
        for key in item:
            if key not in POUR_FIELDS:
                raise error(lines.line("pour", key, index), f"pour {index + 1}: unknown field "
                            f"{key!r} (a pour has {', '.join(POUR_FIELDS)})")
        key, formula, values = item.get("key"), item.get("formula"), item.get("vars", {})
        if not isinstance(key, str) or not key.strip():
            raise error(header, f"pour {index + 1}: key must be a non-empty string")
        if key in seen or key in task_keys:
            raise error(lines.line("pour", "key", index), f"duplicate key {key!r}")
        if not isinstance(formula, str) or not formula.strip():
            raise error(lines.line("pour", "formula", index),
                        f"pour {key!r}: formula must be the name of a formula")
        if not isinstance(values, dict):
            raise error(lines.line("pour", "vars", index), f"pour {key!r}: vars must be a table")
        seen.add(key)
        out.append(PlanPour(key, formula, dict(values), header))
    return out


def pour_plan_items(ledger: Ledger, name: str, pours: list[PlanPour], *, source: str,
                    taskmill_dir: Path, actor: str | None) -> list[tuple[str, str, bool]]:
    """Pour each of ``pours`` (inside the caller's transaction); (key, epic id, created)."""
    out: list[tuple[str, str, bool]] = []
    for item in pours:
        try:
            loaded = load_formula(find_formula(taskmill_dir / "formulas", item.formula),
                                  shown=f".taskmill/formulas/{item.formula}.toml")
            report = pour(ledger, loaded, item.vars, key=f"plan:{source}#{item.key}",
                          roles_dir=taskmill_dir / "roles", actor=actor,
                          extra={"plan": source, "plan_key": item.key})
        except TaskmillError as exc:
            where = f"{name}, line {item.line}" if item.line else name
            raise PlanError(f"{where}: pour {item.key!r}: {exc.message}",
                            hint="nothing was imported") from None
        assert report.epic is not None
        out.append((item.key, report.epic, not report.existing))
    return out
