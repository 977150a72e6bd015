"""A role file, ``.taskmill/roles/NAME.toml``, read and checked (pydantic).

Exactly the keys of issue 13 are allowed::

    description = "Writes the release notes"
    agent = "claude"                 # an [agents.*] key (or a built-in agent)
    model = "sonnet"                 # optional override of the agent's model
    prompt = "prompts/release.md"    # a Jinja2 template, relative to .taskmill/ (strict)
    checks = ["make docs"]           # default checks for tasks of this role
    max_iterations = 3
    max_parallel = 2                 # at most this many of its tasks at once
    land = true                      # false: checked, not merged (the task closes, the
                                     # branch is kept)
    [budget]
    tokens_per_day = 2_000_000       # enforced by taskmill: when spent, the role's tasks
    cost_per_day = 20.0              # wait until the next day (UTC, by the mill's clock)

An unknown key, or a value of the wrong kind, is an error naming the file and the key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ConfigError
from ..validation import ROLE_NAME_RE
from . import ROLES_DIR, role_names, roles_dir

NonEmpty = Annotated[str, Field(min_length=1)]


class Budget(BaseModel):
    """``[budget]``: what the role may spend per day (UTC), summed over its attempts."""

    model_config = ConfigDict(extra="forbid", strict=True)
    tokens_per_day: Annotated[int, Field(ge=0)] | None = None
    cost_per_day: Annotated[float, Field(ge=0)] | None = None


class RoleSpec(BaseModel):
    """The keys of a role file."""

    model_config = ConfigDict(extra="forbid", strict=True)
    description: str = ""
    agent: NonEmpty | None = None
    model: NonEmpty | None = None
    prompt: NonEmpty | None = None
    checks: list[NonEmpty] | None = None
    max_iterations: Annotated[int, Field(ge=1)] | None = None
    max_parallel: Annotated[int, Field(ge=1)] | None = None
    land: bool = True
    budget: Budget | None = None


@dataclass(frozen=True)
class Role:
    """A role as read from its file."""

    name: str
    path: Path
    spec: RoleSpec

    @property
    def prompt_path(self) -> Path | None:
        """The prompt template (relative to ``.taskmill/``, where the roles folder lies)."""
        if self.spec.prompt is None:
            return None
        return self.path.parent.parent / self.spec.prompt

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "path": str(self.path),
                **self.spec.model_dump(mode="json")}


def _where(loc: tuple[int | str, ...]) -> str:
    keys = [str(part) for part in loc]
    if len(keys) >= 2 and keys[0] == "budget":
        return f"[budget] {'.'.join(keys[1:])}"
    return ".".join(keys) or "(the file)"


def _messages(path: Path, exc: ValidationError) -> list[str]:
    out = []
    for error in exc.errors():
        where = _where(tuple(error["loc"]))
        if error["type"] == "extra_forbidden":
            allowed = (", ".join(Budget.model_fields) if where.startswith("[budget]")
                       else ", ".join(RoleSpec.model_fields))
            out.append(f"{path}: unknown key {where} (a role has: {allowed})")
        else:
            out.append(f"{path}: {where}: {error['msg']} (got {error.get('input')!r})")
    return out


def load_role(taskmill_dir: Path, name: str) -> Role:
    """Read and check ``.taskmill/roles/NAME.toml`` (:class:`ConfigError` naming the file and
    key when it is wrong)."""
    path = roles_dir(taskmill_dir) / f"{name}.toml"
    if not ROLE_NAME_RE.fullmatch(name):
        raise ConfigError(f"{path}: {name!r} is not a role name (letters, digits, '_' and '-')",
                          hint="rename the file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        from . import role_problem

        raise ConfigError(role_problem(taskmill_dir, name) or f"no role {name!r}") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the role: {exc}",
                          hint=f"fix the TOML of {ROLES_DIR}/{name}.toml") from None
    try:
        spec = RoleSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("; ".join(_messages(path, exc)),
                          hint="see the role keys in the docs (issue 13); fix the file") from None
    role = Role(name, path, spec)
    prompt = role.prompt_path
    if prompt is not None and not prompt.is_file():
        raise ConfigError(f"{path}: prompt: no template file {prompt}",
                          hint="the prompt is a path relative to .taskmill/")
    return role


def load_roles(taskmill_dir: Path) -> dict[str, Role]:
    """Every role of ``.taskmill/roles/``, by name (the first wrong file raises)."""
    return {name: load_role(taskmill_dir, name) for name in role_names(taskmill_dir)}
