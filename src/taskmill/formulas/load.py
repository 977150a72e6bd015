"""Finding and reading formula files (``.taskmill/formulas/NAME.toml``), with every problem
named by file and line."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from ..errors import InvalidInput, NotFound
from ..ledger.graph import closed_path, cyclic_groups
from .model import Formula
from .toml_lines import TomlLines

FORMULAS_DIR = "formulas"


class FormulaError(InvalidInput):
    """A formula file (or a pour of it) is wrong; the message names the file and line."""

    code = "formula_invalid"


@dataclass
class LoadedFormula:
    formula: Formula
    path: Path
    name: str
    """How the user names the file (relative to the repository when it is inside)."""
    lines: TomlLines

    def error(self, line: int | None, message: str, *, hint: str | None = None) -> FormulaError:
        where = f"{self.name}, line {line}" if line else self.name
        return FormulaError(f"{where}: {message}", hint=hint or "nothing was created")

    def step_line(self, index: int, key: str | None = None) -> int | None:
        return self.lines.line("steps", key, index)

    def var_line(self, var: str) -> int | None:
        line = self.lines.line(f"vars.{var}")
        return line if line is not None else self.lines.line("", "vars")


def formula_names(directory: Path) -> list[str]:
    """The formulas of ``directory`` (``.taskmill/formulas``), sorted."""
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("*.toml") if p.is_file())


def find_formula(directory: Path, name: str) -> Path:
    """The file of formula ``name``; :class:`NotFound` naming the known ones."""
    path = directory / f"{name}.toml"
    if "/" in name or not path.is_file():
        known = formula_names(directory)
        raise NotFound(f"no formula {name!r} ({directory}/{name}.toml)",
                       hint=f"the formulas are: {', '.join(known)}" if known else
                       f"write one in {directory}/NAME.toml (`taskmill formula list`)")
    return path


def load_formula(path: Path, *, shown: str | None = None) -> LoadedFormula:
    """Read and check a formula file: its keys, its steps' ids and ``needs`` (no unknown
    step, no cycle), and that ``formula`` is the file's name."""
    name = shown or str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise FormulaError(f"cannot read {name}: {exc.strerror or exc}") from None
    lines = TomlLines.of(text)
    blank = LoadedFormula(Formula.model_construct(), path, name, lines)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FormulaError(f"{name}: {exc}", hint="fix the TOML syntax") from None
    try:
        formula = Formula.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(p) for p in first["loc"]]
        raise blank.error(_line_of(lines, loc), f"{'.'.join(loc) or 'the file'}: {first['msg']}",
                          hint=_HINT) from None
    loaded = LoadedFormula(formula, path, name, lines)
    if formula.formula != path.stem:
        raise loaded.error(lines.line("", "formula"),
                           f"formula = {formula.formula!r} but the file is {path.stem}.toml",
                           hint="name the file after the formula")
    seen: dict[str, int] = {}
    for index, step in enumerate(formula.steps):
        if step.id in seen:
            raise loaded.error(loaded.step_line(index, "id"), f"step id {step.id!r} is used "
                               f"twice (steps {seen[step.id] + 1} and {index + 1})")
        seen[step.id] = index
    for index, step in enumerate(formula.steps):
        for need in step.needs:
            if need not in seen:
                raise loaded.error(loaded.step_line(index, "needs"),
                                   f"step {step.id!r} needs {need!r}: no step has that id",
                                   hint=f"the steps are: {', '.join(seen)}")
    graph = {s.id: list(s.needs) for s in formula.steps}
    for group in cyclic_groups(graph, list(graph)):
        first_id = next(s.id for s in formula.steps if s.id in group)
        cycle = closed_path(graph, group, first_id)
        raise loaded.error(loaded.step_line(seen[first_id], "needs"),
                           f"cycle in needs: {' -> '.join(cycle)}",
                           hint="each step waits on the next; remove one of these needs")
    return loaded


_HINT = ("a formula has formula, description, [vars.NAME] (description, default) and "
         "[[steps]] (id, title, role, checks, needs, max_iterations, for_each, condition)")


def _line_of(lines: TomlLines, loc: list[str]) -> int | None:
    if not loc:
        return None
    if loc[0] == "steps" and len(loc) >= 2 and loc[1].isdigit():
        return lines.line("steps", loc[2] if len(loc) > 2 else None, int(loc[1]))
    if loc[0] == "vars" and len(loc) >= 2:
        line = lines.line(f"vars.{loc[1]}", loc[2] if len(loc) > 2 else None)
        return line if line is not None else lines.line("", "vars")
    return lines.line("", loc[0])
