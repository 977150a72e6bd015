"""A formula file, ``.taskmill/formulas/NAME.toml``, as pydantic models: exactly the keys the
file may hold (an unknown key is an error).

::

    formula = "bugfix"
    description = "Reproduce, fix and document a bug"
    [vars.issue]                      # required unless it has a default
    description = "what is wrong"
    [vars.area]
    default = "core"
    [[steps]]
    id = "repro"
    title = "Reproduce: {{ issue }}"  # Jinja2, strict: an undefined variable is an error
    role = "tester"                   # a .taskmill/roles/NAME.toml
    checks = ["test -f tests/test_repro_{{ area }}.py"]
    [[steps]]
    id = "fix"
    needs = ["repro"]                 # blocks: this step waits on those
    title = "Fix: {{ issue }}"
    max_iterations = 6                # the step's own Ralph loop
    [[steps]]
    id = "notes"
    needs = ["fix"]
    title = "Changelog entry for {{ item }}"
    for_each = "{{ areas }}"          # one task per item of a list variable
    condition = "{{ document }}"      # the step is skipped when false
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

StepId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]*$",
                                          max_length=64)]
NonEmpty = Annotated[str, StringConstraints(min_length=1)]


class FormulaVar(BaseModel):
    """A variable of the formula; required when it has no ``default``."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    default: Any = None


class FormulaStep(BaseModel):
    """One step: one task (or one per item, with ``for_each``)."""

    model_config = ConfigDict(extra="forbid")

    id: StepId
    title: NonEmpty
    role: str | None = None
    checks: list[NonEmpty] | None = None
    needs: list[StepId] = Field(default_factory=list)
    max_iterations: Annotated[int, Field(ge=1)] | None = None
    for_each: str | None = None
    condition: str | None = None


class Formula(BaseModel):
    """A whole formula file."""

    model_config = ConfigDict(extra="forbid")

    formula: NonEmpty
    description: str = ""
    vars: dict[str, FormulaVar] = Field(default_factory=dict)
    steps: Annotated[list[FormulaStep], Field(min_length=1)]
