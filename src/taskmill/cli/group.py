"""The click command group behind ``taskmill``: commands are loaded lazily by name.

Imported only when the fast path (:mod:`taskmill.cli.fast`) hands a command line over, so
the few commands it serves never pay for click.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

import click

from .. import __version__
from . import ALIASES, COMMANDS, TURN_COMMANDS
from .context import Ctx


class JsonUsageError(click.UsageError):
    """A usage error of a command run with ``--json``: reported as a JSON error object."""

    def show(self, file: Any = None) -> None:
        import json

        error = {"code": "invalid", "message": self.format_message()}
        sys.stderr.write(json.dumps({"error": error}, ensure_ascii=False) + "\n")


class LazyGroup(click.Group):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["taskmill.json"] = "--json" in args
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # bad options or arguments of a subcommand
            if ctx.meta.get("taskmill.json") and not isinstance(exc, JsonUsageError):
                raise JsonUsageError(exc.format_message(), exc.ctx) from exc
            raise

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if self._available(name)]

    @staticmethod
    def _available(name: str) -> bool:
        module = COMMANDS[name][0]
        return importlib.util.find_spec(f"{__package__}.{module}") is not None

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        name = ALIASES.get(cmd_name, cmd_name)
        if name not in COMMANDS or not self._available(name):
            return None
        obj = ctx.find_object(Ctx)
        if obj is not None and obj.turn_socket is not None and name not in TURN_COMMANDS:
            return _refused_in_turn(name)
        module_name, attr, _ = COMMANDS[name]
        module = importlib.import_module(f"{__package__}.{module_name}")
        command: click.Command = getattr(module, attr)
        command.name = name
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        rows.append(("add", "Alias of create."))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _refused_in_turn(name: str) -> click.Command:
    """A command an agent may not run inside a turn: it fails (and the mill records it)."""

    @click.command(name=name, add_help_option=False,
                   context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def refused(args: tuple[str, ...]) -> None:
        from .common import fail

        obj = click.get_current_context().find_object(Ctx)
        assert obj is not None
        try:
            obj.refuse(name)
        except Exception as exc:
            fail(exc, "--json" in args)
        finally:
            obj.close()

    return refused


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-C", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="Run as if started in this directory.")
@click.option("--actor", help="Who is making the changes (default: $TASKMILL_ACTOR or $USER).")
@click.version_option(__version__, prog_name="taskmill")
@click.pass_context
def cli(ctx: click.Context, directory: Path | None, actor: str | None) -> None:
    """taskmill: a work ledger that lives with your git repository, and a mill that works it
    with coding agents.

    Every command takes --json. Exit codes: 0 ok, 2 bad input, 3 not found, 4 conflict,
    5 audit chain broken, 6 git error.
    """
    obj = ctx.find_object(Ctx)
    assert obj is not None
    if directory is not None:
        obj.cwd = (obj.cwd / directory).resolve()
    if actor:
        obj.actor = actor
