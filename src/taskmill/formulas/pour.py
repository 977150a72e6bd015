"""Pouring a formula: in one transaction, an epic for the instance and one task per planned
step, linked by ``needs`` (blocks) and parent-child; idempotent with a key."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..ledger import Ledger
from ..model import Task
from .load import LoadedFormula
from .render import PlannedTask, PourPlan, plan_pour

EPIC_TYPE = "epic"
POURED = "poured"
"""The audit event on the epic: the formula, its variables, the key and the tasks."""


def key_source(formula: str) -> str:
    """Where a pour's ``--key`` is remembered (the plan keys' table)."""
    return f"formula:{formula}"


@dataclass
class PourReport:
    plan: PourPlan
    epic: str | None = None
    tasks: dict[str, str] = field(default_factory=dict)
    """Planned key -> task id."""
    existing: bool = False
    """The key was poured before: nothing new was created."""
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return {**self.plan.to_json(), "epic": self.epic, "ids": dict(self.tasks),
                "existing": self.existing, "dry_run": self.dry_run}


def pour(ledger: Ledger, loaded: LoadedFormula, given: dict[str, Any], *,
         key: str | None = None, dry_run: bool = False, roles_dir: Path | None = None,
         actor: str | None = None, extra: dict[str, Any] | None = None) -> PourReport:
    """Pour ``loaded`` with the ``given`` variables. Every check is made before anything is
    written; the writes are one transaction (inside the caller's, when there is one).

    ``key``: a pour with a key already poured returns that instance (``existing``).
    ``extra``: kept in the epic's metadata (an order notes its slot there)."""
    plan = plan_pour(loaded, given, roles_dir=roles_dir)
    report = PourReport(plan, dry_run=dry_run)
    if dry_run:
        if key is not None:
            _existing(ledger, report, key)
        return report
    with ledger.transaction() as store:  # the key is looked up under the write lock
        if key is not None and _existing(ledger, report, key):
            return report
        meta: dict[str, Any] = {"formula": plan.formula, "vars": plan.vars}
        if key is not None:
            meta["key"] = key
        if extra:
            meta.update(extra)
        epic = ledger.create(plan.title[:200], issue_type=EPIC_TYPE,
                             description=loaded.formula.description, metadata=meta,
                             actor=actor)
        report.epic = epic.id
        for task in plan.tasks:
            report.tasks[task.key] = _create(ledger, plan.formula, task, epic,
                                             report.tasks, actor)
        if key is not None:
            store.set_plan_key(key_source(plan.formula), key, epic.id)
        ledger.record(POURED, epic.id, {"formula": plan.formula, "vars": plan.vars,
                                        "key": key, "tasks": dict(report.tasks)}, actor=actor)
    return report


def _existing(ledger: Ledger, report: PourReport, key: str) -> bool:
    """Fill ``report`` with the instance poured with ``key`` before, if there is one."""
    known = ledger.store.plan_keys(key_source(report.plan.formula)).get(key)
    if known is None or not ledger.exists(known):
        return False
    report.epic, report.existing = known, True
    report.tasks = {t.metadata.get("step_key", t.id): t.id
                    for t in ledger.store.child_tasks(known) if t.metadata}
    return True


def _create(ledger: Ledger, formula: str, task: PlannedTask, epic: Task,
            ids: dict[str, str], actor: str | None) -> str:
    meta: dict[str, Any] = {"formula": formula, "step": task.step, "step_key": task.key}
    if task.item is not None:
        meta["item"] = task.item
    hints = ({"max_iterations": task.max_iterations} if task.max_iterations is not None
             else None)
    return ledger.create(task.title[:200], checks=task.checks, hints=hints, metadata=meta,
                         parent=epic.id, after=[ids[n] for n in task.needs], actor=actor,
                         role=task.role).id
