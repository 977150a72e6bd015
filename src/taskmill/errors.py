"""taskmill's exception hierarchy.

Every error a user can cause is a :class:`TaskmillError` with a stable ``code`` (used in
``--json`` error objects) and an exit status. Errors from git, SQLite and subprocesses are
converted into this hierarchy where they are caught::

    TaskmillError                 exit 1   code "error"
    ├── UserError                 exit 2   code "invalid"       bad arguments or input
    │   ├── NotInitialized        exit 2   code "not_initialized"
    │   ├── NotARepository        exit 2   code "not_a_repository"
    │   ├── InvalidInput          exit 2   code "invalid"
    │   │   ├── PlanError         exit 2   code "plan_invalid"
    │   │   └── ConfigError       exit 2   code "config_invalid"   .taskmill/config.toml
    │   │       ├── AgentTableError    (config_schema; also a ValueError) an [agents.NAME] table
    │   │       └── AgentConfigError   (agents.common; also a ValueError) an agent's options
    │   │                              or the environment they need
    │   └── CycleError            exit 2   code "cycle"
    ├── NotFound                  exit 3   code "not_found"
    │   └── UnknownAdapterError    (agents.registry; also a LookupError) no such agent adapter
    ├── Conflict                  exit 4   code "conflict"
    │   └── ClaimConflict         exit 4   code "claim_conflict"
    ├── Forbidden                 exit 1   code "forbidden"      not this caller's to do
    ├── IntegrityError            exit 5   code "integrity"      the audit chain does not verify
    ├── GitError                  exit 6   code "git"
    └── ServiceError              exit 1   code "service"   a service of the run cannot start
        ├── ProxyError             (proxy.server) the model proxy
        └── NetProxyError          (netproxy) the network allowlist proxy

Errors defined next to the code that raises them keep the builtin exception they were
before (``ValueError``, ``LookupError``) as a second base, so ``except ValueError`` still
catches them; everything taskmill raises on purpose is a :class:`TaskmillError`, shown by
the CLI the same way (``error: ...``, ``hint: ...``, or a ``--json`` error object).

:func:`read_text_input` reads a file the user named, its failures turned into the hierarchy.
"""

from __future__ import annotations

from pathlib import Path


class TaskmillError(Exception):
    code = "error"
    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {"code": self.code, "message": self.message}
        if self.hint:
            data["hint"] = self.hint
        return {"error": data}

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class UserError(TaskmillError):
    code = "invalid"
    exit_code = 2


class NotInitialized(UserError):
    code = "not_initialized"


class NotARepository(UserError):
    code = "not_a_repository"


class InvalidInput(UserError):
    code = "invalid"


class PlanError(InvalidInput):
    code = "plan_invalid"


class ConfigError(InvalidInput):
    code = "config_invalid"


class CycleError(UserError):
    code = "cycle"

    def __init__(self, message: str, cycle: list[str], *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.cycle = cycle

    def to_json(self) -> dict[str, object]:
        data = super().to_json()
        err = data["error"]
        assert isinstance(err, dict)
        err["cycle"] = self.cycle
        return data


class NotFound(TaskmillError):
    code = "not_found"
    exit_code = 3


class Conflict(TaskmillError):
    code = "conflict"
    exit_code = 4


class ClaimConflict(Conflict):
    code = "claim_conflict"


class Forbidden(TaskmillError):
    """The caller may not do this (an agent inside a turn closing a task, a comment signed
    ``mill:`` from outside the mill, a dashboard change without its token)."""

    code = "forbidden"


class IntegrityError(TaskmillError):
    code = "integrity"
    exit_code = 5


class GitError(TaskmillError):
    code = "git"
    exit_code = 6


class ServiceError(TaskmillError):
    """A service the run needs (a proxy, a socket server) could not start."""

    code = "service"


def read_text_input(
    path: Path, name: str, *, not_text: type[InvalidInput] = InvalidInput
) -> str:
    """The text of a file the user named (UTF-8, a leading BOM dropped).

    A missing or unreadable file is :class:`InvalidInput`, one that is not UTF-8 is
    ``not_text``; the messages call the file ``name``.
    """
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InvalidInput(f"no such file: {name}") from None
    except UnicodeDecodeError as exc:
        raise not_text(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {name}: {exc.strerror or exc}") from None
