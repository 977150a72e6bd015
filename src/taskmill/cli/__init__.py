"""The ``taskmill`` command: a thin layer over the library.

Commands are loaded lazily by name so that ``taskmill --help`` and quick commands do not pay
for modules they do not use.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from .common import Ctx

# name -> (module, attribute, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "init": ("tasks", "init", "Create the ledger (.taskmill/) in this git repository."),
    "create": ("tasks", "create", "Create a task."),
    "show": ("tasks", "show", "Show a task with its dependencies, comments and attempts."),
    "list": ("tasks", "list_cmd", "List tasks."),
    "ready": ("tasks", "ready", "Open tasks with nothing blocking them."),
    "blocked": ("tasks", "blocked", "Tasks held back, with what holds each."),
    "update": ("tasks", "update", "Change a task's fields, or --claim it."),
    "close": ("tasks", "close", "Close tasks."),
    "reopen": ("tasks", "reopen", "Reopen tasks."),
    "label": ("tasks", "label", "Add or remove labels."),
    "comment": ("tasks", "comment", "Add a comment to a task."),
    "dep": ("records", "dep", "Add, remove and inspect dependencies."),
    "log": ("records", "log", "The audit trail."),
    "verify": ("records", "verify", "Check the audit chain, the tables and the anchors."),
    "audit": ("records", "audit", "Anchor the audit chain in git (audit anchor)."),
    "stats": ("records", "stats", "Counts, tokens and cost."),
    "import": ("records", "import_cmd", "Import Beads JSONL or a TOML plan file."),
    "export": ("records", "export", "Export as Beads JSONL or JSON."),
    "run": ("mill", "run", "Work the backlog with parallel agents until checks pass."),
    "pause": ("control_cmd", "pause", "Dispatch no new task until resume."),
    "resume": ("control_cmd", "resume", "Let taskmill run dispatch tasks again."),
    "agents": ("control_cmd", "agents", "The agent adapters: built in and from plugins."),
    "serve": ("serve_cmd", "serve", "The web dashboard (task graph, attempts, live view)."),
    "fake-model": ("extras", "fake_model", "Serve a scripted model API (for trying agents offline)."),
    "mcp": ("mcp_cmd", "mcp", "Serve the ledger to agents over MCP (stdio)."),
}
ALIASES = {"add": "create"}
TURN_COMMANDS = frozenset({"show", "list", "ready", "blocked", "create", "comment", "update",
                           "dep", "mcp"})
"""What an agent may run inside a turn ($TASKMILL_SOCKET set): through the mill's socket."""


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
        return importlib.util.find_spec(f"{__name__}.{module}") is not None

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        name = ALIASES.get(cmd_name, cmd_name)
        if name not in COMMANDS or not self._available(name):
            return None
        obj = ctx.find_object(Ctx)
        if obj is not None and obj.turn_socket is not None and name not in TURN_COMMANDS:
            return _refused_in_turn(name)
        module_name, attr, _ = COMMANDS[name]
        module = importlib.import_module(f"{__name__}.{module_name}")
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
@click.version_option(package_name="taskmill")
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


def main(argv: Sequence[str] | None = None, *, env: Mapping[str, str] | None = None,
         cwd: Path | None = None) -> Any:
    """Entry point. ``env`` and ``cwd`` default to the process's own."""
    args = list(sys.argv[1:] if argv is None else argv)
    obj = Ctx(cwd=cwd or Path.cwd(), env=dict(os.environ if env is None else env), argv=args)
    return cli.main(args=args, obj=obj, prog_name="taskmill")


if __name__ == "__main__":  # pragma: no cover
    main()
