"""Formulas: reusable, parameterised workflows (``.taskmill/formulas/NAME.toml``), poured
into the ledger as an epic and one task per step (see :mod:`.model` for the file)."""

from __future__ import annotations

from ..roles import ROLES_DIR, role_names
from .load import (
    FORMULAS_DIR,
    FormulaError,
    LoadedFormula,
    find_formula,
    formula_names,
    load_formula,
)
from .model import Formula, FormulaStep, FormulaVar
from .pour import EPIC_TYPE, POURED, PourReport, key_source, pour
from .render import PlannedTask, PourPlan, plan_pour

__all__ = ["EPIC_TYPE", "FORMULAS_DIR", "POURED", "ROLES_DIR", "Formula", "FormulaError",
           "FormulaStep", "FormulaVar", "LoadedFormula", "PlannedTask", "PourPlan",
           "PourReport", "find_formula", "formula_names", "key_source", "load_formula",
           "plan_pour", "pour", "role_names"]
