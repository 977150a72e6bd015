"""Shared CLI plumbing: the context object, the ``--json`` option and error reporting.

Commands are thin: they parse options, open the project and call one library function.
Heavy modules (rich, the ledger) are imported inside functions so ``taskmill --help``
stays fast.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

if TYPE_CHECKING:
    from ..capability.client import CapabilityClient, RemoteTasks
    from ..project import Project

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Ctx:
    cwd: Path
    env: Mapping[str, str]
    actor: str | None = None
    json: bool = False
    argv: list[str] = field(default_factory=list)
    """The command line (without the program name)."""
    _project: Project | None = field(default=None, repr=False)
    _client: CapabilityClient | None = field(default=None, repr=False)

    @property
    def turn_socket(self) -> str | None:
        """The capability socket of the agent turn this runs in (``$TASKMILL_SOCKET``):
        set, the ledger is reached only through it."""
        return self.env.get("TASKMILL_SOCKET") or None

    def client(self) -> CapabilityClient:
        if self._client is None:
            from ..capability.client import CapabilityClient

            assert self.turn_socket is not None
            self._client = CapabilityClient(self.turn_socket)
        return self._client

    def remote(self) -> RemoteTasks:
        """The ledger calls an agent has, through the turn's capability socket."""
        from ..capability.client import RemoteTasks

        return RemoteTasks(self.client())

    def refuse(self, op: str) -> NoReturn:
        """Inside a turn: this command is not the agent's to run. The mill records the
        attempt; the error says what it would have done."""
        import shlex

        raise self.client().refuse(op, shlex.join(["taskmill", *self.argv]))

    def project(self) -> Project:
        if self.turn_socket is not None:  # the ledger is not the agent's to open
            command = click.get_current_context().command_path.split(" ", 1)
            self.refuse(command[1] if len(command) > 1 else command[0])
        if self._project is None:
            from ..project import open_project

            self._project = open_project(self.cwd, self.env)
            if self.actor:
                self._project.ledger.actor = self.actor
        return self._project

    def close(self) -> None:
        if self._project is not None:
            self._project.close()
            self._project = None
        if self._client is not None:
            self._client.close()
            self._client = None


def get_ctx() -> Ctx:
    obj = click.get_current_context().find_object(Ctx)
    assert obj is not None
    return obj


def dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2, default=str)


def emit_json(data: Any) -> None:
    click.echo(dumps(data))


def fail(exc: Exception, as_json: bool) -> None:
    from ..errors import TaskmillError

    if isinstance(exc, TaskmillError):
        if as_json:
            sys.stderr.write(json.dumps(exc.to_json(), ensure_ascii=False) + "\n")
        else:
            from ..validation import printable

            click.echo(f"error: {printable(exc.message, multiline=True)}", err=True)
            if exc.hint:
                click.echo(f"  hint: {exc.hint}", err=True)
        sys.exit(exc.exit_code)
    raise exc


def json_option(fn: F) -> F:
    """Add ``--json`` and turn taskmill errors into messages and exit codes."""

    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
    @functools.wraps(fn)
    def wrapper(*args: Any, as_json: bool, **kwargs: Any) -> Any:
        ctx = get_ctx()
        ctx.json = as_json or ctx.json
        try:
            return fn(*args, **kwargs)
        except click.exceptions.Exit:
            raise
        except click.ClickException:
            raise
        except Exception as exc:
            from ..errors import TaskmillError

            if isinstance(exc, TaskmillError):
                fail(exc, ctx.json)
            raise
        finally:
            ctx.close()

    return wrapper  # type: ignore[return-value]


def parse_json_option(name: str, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        from ..errors import InvalidInput

        raise InvalidInput(f"--{name} must be JSON: {exc}") from exc
