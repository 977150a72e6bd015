"""Roles: ``.taskmill/roles/NAME.toml``, how a kind of task is worked (its agent, model,
prompt, default checks, iterations, parallelism, landing and daily budget).

This module is light (no pydantic): what the CLI needs to check a task's ``role`` names a
role. The role files themselves are read by :mod:`taskmill.roles.spec`.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from ..errors import InvalidInput

ROLES_DIR = "roles"
"""Under ``.taskmill/``: one ``NAME.toml`` per role (committed with the repository)."""


def roles_dir(taskmill_dir: Path) -> Path:
    return taskmill_dir / ROLES_DIR


def role_names(taskmill_dir: Path) -> list[str]:
    """The roles defined in ``taskmill_dir`` (``.taskmill``), sorted."""
    folder = roles_dir(taskmill_dir)
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.toml") if p.is_file())


def role_problem(taskmill_dir: Path, name: str) -> str | None:
    """Why ``name`` names no role (None when it does)."""
    names = role_names(taskmill_dir)
    if name in names:
        return None
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    guess = f" (did you mean {close[0]!r}?)" if close else ""
    known = ", ".join(names) if names else "none defined"
    return (f"role {name!r} has no file {ROLES_DIR}/{name}.toml in {taskmill_dir}{guess};"
            f" roles: {known}")


def check_role(taskmill_dir: Path, name: str, *, what: str = "--role") -> None:
    """Refuse a role name that names no role file (:class:`InvalidInput`)."""
    problem = role_problem(taskmill_dir, name)
    if problem is not None:
        raise InvalidInput(f"{what}: {problem}",
                           hint=f"create .taskmill/{ROLES_DIR}/{name}.toml, or use one of the "
                                "roles listed")
