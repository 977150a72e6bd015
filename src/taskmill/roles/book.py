"""The roles of one mill run: read and checked once at its start, then asked per task.

What a role changes for its tasks (issue 13): the agent and model that work them (a task's
own ``agent`` still wins), the prompt (the role's template, rendered per turn), the default
checks (a task's own ``checks`` still win), ``max_iterations``, how many of its tasks are
worked at once (``max_parallel``), whether passed work lands (``land``), and the daily
``[budget]`` past which its tasks wait.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidInput
from ..model import Task
from .budget import Hold, RoleBudget, current_holds

if TYPE_CHECKING:
    from ..ledger import Ledger
    from .spec import Role


class RoleBook:
    def __init__(self, roles: Mapping[str, Role]) -> None:
        self.roles = dict(roles)

    @classmethod
    def load(cls, taskmill_dir: Path) -> RoleBook:
        """Every role of ``.taskmill/roles/`` (a wrong file is a
        :class:`~taskmill.errors.ConfigError` naming it and the key). With no role file,
        nothing more is imported (pydantic is only loaded to check role files)."""
        from . import role_names

        if not role_names(taskmill_dir):
            return cls({})
        from .spec import load_roles

        return cls(load_roles(taskmill_dir))

    def role(self, task: Task) -> Role | None:
        """The role ``task`` is worked as (None: it has none). Raises :class:`InvalidInput`
        when it names a role that has no file."""
        if not task.role:
            return None
        found = self.roles.get(task.role)
        if found is None:
            known = ", ".join(sorted(self.roles)) or "none defined"
            raise InvalidInput(f"{task.id}: role {task.role!r} has no file "
                               f".taskmill/roles/{task.role}.toml; roles: {known}",
                               hint=f"add the role file, or give the task another: taskmill "
                                    f"update {task.id} --role NAME")
        return found

    def effective(self, task: Task) -> Task:
        """``task`` as the mill works it: with its role's checks when it has none of its
        own."""
        role = self.role(task)
        if role is None or task.checks or not role.spec.checks:
            return task
        return replace(task, checks=list(role.spec.checks))

    def lands(self, task: Task) -> bool:
        role = self.role(task)
        return role is None or role.spec.land

    def max_iterations(self, task: Task, default: int) -> int:
        role = self.role(task)
        if role is None or role.spec.max_iterations is None:
            return default
        return role.spec.max_iterations

    def budgets(self) -> dict[str, RoleBudget]:
        return {name: RoleBudget(name, r.spec.budget.tokens_per_day, r.spec.budget.cost_per_day)
                for name, r in self.roles.items() if r.spec.budget is not None}

    def holds(self, ledger: Ledger, now: datetime) -> dict[str, Hold]:
        """The roles whose daily budget is spent, with why and until when."""
        return current_holds(ledger, self.budgets(), now)

    def at_capacity(self, task: Task, running: Iterable[str | None]) -> str | None:
        """Why ``task`` may not start now (its role's ``max_parallel`` tasks are being
        worked: ``running`` holds the role of each task being worked), or None."""
        role = self.role(task)
        if role is None or role.spec.max_parallel is None:
            return None
        busy = sum(1 for name in running if name == role.name)
        if busy < role.spec.max_parallel:
            return None
        return (f"role {role.name!r} has {busy} task{'s' if busy != 1 else ''} being worked "
                f"(max_parallel = {role.spec.max_parallel})")
