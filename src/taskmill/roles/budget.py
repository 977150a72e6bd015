"""A role's daily budget, enforced by taskmill itself (issue 13; Gas City #115: a
deterministic breaker, not an agent watching spend).

A role's spend for a day is the tokens (input + output) and cost of the attempts made as the
role that *started* that day (UTC, by the injected clock), as the ledger records them. When
either is at or over the role's ``[budget]``, its tasks wait: the mill hands none of them
out, and ``show``, ``list``, ``ready``, ``blocked`` and the dashboard say why and until when.
At midnight UTC the spend starts again from zero and the tasks are worked again.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from ..clock import iso
from . import role_names, roles_dir

if TYPE_CHECKING:
    from ..ledger import Ledger
    from ..model import Task


def day_start(now: datetime) -> datetime:
    """Midnight (UTC) of ``now``'s day: a role's budget counts from there."""
    day = now.astimezone(UTC)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@dataclass(frozen=True)
class RoleBudget:
    """A role's ``[budget]``."""

    role: str
    tokens_per_day: int | None = None
    cost_per_day: float | None = None


def read_budgets(taskmill_dir: Path) -> dict[str, RoleBudget]:
    """The ``[budget]`` of every role that has one, read without the full check of
    :mod:`taskmill.roles.spec` (cheap enough for ``ready``; the mill checks the files, and a
    file it cannot read here is left out)."""
    out: dict[str, RoleBudget] = {}
    for name in role_names(taskmill_dir):
        try:
            data = tomllib.loads((roles_dir(taskmill_dir) / f"{name}.toml").read_text("utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            continue
        table = data.get("budget")
        if not isinstance(table, dict):
            continue
        tokens, cost = table.get("tokens_per_day"), table.get("cost_per_day")
        out[name] = RoleBudget(
            name, tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None,
            float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool)
            else None)
    return out


@dataclass(frozen=True)
class Hold:
    """Why a role's tasks wait, and until when."""

    role: str
    reason: str
    until: datetime

    def to_json(self) -> dict[str, str]:
        return {"role": self.role, "reason": self.reason, "until": iso(self.until)}


def hold_for(budget: RoleBudget, spent: tuple[int, float], now: datetime) -> Hold | None:
    """The hold on a role with ``budget`` given what it ``spent`` today (tokens, cost), or
    None."""
    tokens, cost = spent
    name = budget.role
    until = day_start(now) + timedelta(days=1)
    resume = f"its tasks wait until {until.strftime('%Y-%m-%d %H:%M')} UTC"
    if budget.tokens_per_day is not None and tokens >= budget.tokens_per_day:
        return Hold(name, f"role {name!r} spent its daily token budget "
                          f"({tokens:,} of {budget.tokens_per_day:,} tokens today); {resume}",
                    until)
    if budget.cost_per_day is not None and cost >= budget.cost_per_day:
        return Hold(name, f"role {name!r} spent its daily cost budget "
                          f"(${cost:.2f} of ${budget.cost_per_day:.2f} today); {resume}", until)
    return None


def holds(budgets: Mapping[str, RoleBudget], spend: Mapping[str, tuple[int, float]],
          now: datetime) -> dict[str, Hold]:
    """The roles whose budget for ``now``'s day is spent (``spend``: per role, since
    :func:`day_start`)."""
    out: dict[str, Hold] = {}
    for name, budget in budgets.items():
        hold = hold_for(budget, spend.get(name, (0, 0.0)), now)
        if hold is not None:
            out[name] = hold
    return out


def current_holds(ledger: Ledger, budgets: Mapping[str, RoleBudget],
                  now: datetime) -> dict[str, Hold]:
    """:func:`holds` with today's spend read from the ledger (nothing read when no role has
    a budget)."""
    if not budgets:
        return {}
    return holds(budgets, ledger.role_spend(day_start(now)), now)


def mark_held(tasks: list[Task], found: Mapping[str, Hold]) -> list[Task]:
    """Set ``held`` on the open tasks whose role waits for its budget; returns ``tasks``."""
    for task in tasks:
        if task.role is not None and task.role in found and task.status == "open":
            task.held = found[task.role].reason
    return tasks
