"""The ``taskmill`` command: a thin layer over the library.

Commands are loaded lazily by name so that ``taskmill --help`` and quick commands do not pay
for modules they do not use. This module imports no click: the everyday commands
(``ready``, ``show``, ``create``, ``update``, ``close``, ``list``, ``blocked``) are served
by the fast path (:mod:`taskmill.cli.fast`), ``ready --json`` and ``show ID --json`` even without the
ledger's modules (the lean path, :mod:`taskmill.cli.lean`), and anything else, or any doubt,
goes to the click group (:mod:`taskmill.cli.group`).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # (not typing's: importing typing costs more than the lean path)
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path
    from typing import Any

    from .group import JsonUsageError, LazyGroup, cli

__all__ = ["ALIASES", "COMMANDS", "TURN_COMMANDS", "JsonUsageError", "LazyGroup", "cli", "main"]

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
    "template": ("template_cmd", "template", "Request templates: the kinds of work to ask for."),
    "dep": ("records", "dep", "Add, remove and inspect dependencies."),
    "log": ("records", "log", "The audit trail."),
    "verify": ("records", "verify", "Check the audit chain, the tables and the anchors."),
    "audit": ("records", "audit", "Anchor the audit chain in git (audit anchor)."),
    "stats": ("records", "stats", "Counts, tokens and cost."),
    "import": ("records", "import_cmd", "Import Beads JSONL or a TOML plan file."),
    "export": ("records", "export", "Export as Beads JSONL or JSON."),
    "ledger": ("ledger_cmd", "ledger", "Where the ledger lives: migrate --to postgresql://..."),
    "sync": ("sync_cmd", "sync", "Share the ledger through git remotes (refs/taskmill/ledger)."),
    "run": ("mill", "run", "Work the backlog with parallel agents until checks pass."),
    "watch": ("mill", "watch", "Run until stopped: work ready tasks as they come, fire orders."),
    "pour": ("formula_cmd", "pour", "Pour a formula: an epic and one task per step."),
    "formula": ("formula_cmd", "formula", "List and show the formulas (.taskmill/formulas)."),
    "orders": ("formula_cmd", "orders", "The orders: last and next firing; fire one by hand."),
    "worker": ("worker_cmd", "worker", "Run turns, checks and landings for a Temporal-executed mill."),
    "status": ("worker_cmd", "status", "What is in progress, and (Temporal) on which worker."),
    "pause": ("control_cmd", "pause", "Dispatch no new task until resume."),
    "resume": ("control_cmd", "resume", "Let taskmill run dispatch tasks again."),
    "agents": ("control_cmd", "agents", "The agent adapters: built in and from plugins."),
    "serve": ("serve_cmd", "serve", "The web dashboard (task graph, attempts, live view)."),
    "fake-model": ("extras", "fake_model", "Serve a scripted model API (for trying agents offline)."),
    "mcp": ("mcp_cmd", "mcp", "Serve the ledger to agents over MCP (stdio)."),
    "research": ("research_cmd", "research",
                 "Research mode: agents edit, a metric decides what is kept."),
    "review": ("review_cmd", "review", "Review a change; findings, dismissals, hit rate."),
    "approve": ("review_cmd", "approve", "Approve a task awaiting approval: it lands."),
    "reject": ("review_cmd", "reject", "Send a task awaiting approval back, with a comment."),
}
ALIASES = {"add": "create"}
LEAN_COMMANDS = frozenset({"ready", "show"})
"""Answered by the lean path (:mod:`taskmill.cli.lean`) in their commonest forms."""
LEAN_WRITE_COMMANDS = frozenset({"create", "update", "close"})
"""Written by the lean write path (:mod:`taskmill.cli.lean_write`) in their commonest forms."""
TURN_COMMANDS = frozenset({"show", "list", "ready", "blocked", "create", "comment", "update",
                           "dep", "mcp"})
"""What an agent may run inside a turn ($TASKMILL_SOCKET set): through the mill's socket."""


def __getattr__(name: str) -> Any:
    """The click group and its classes, imported on first use."""
    if name in ("cli", "LazyGroup", "JsonUsageError"):
        from . import group

        return getattr(group, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


CANNOT_WRITE = frozenset({5, 27, 28, 30, 122})
"""What a write that cannot be made fails with (EIO, EFBIG, ENOSPC, EROFS, EDQUOT): the
output on a full disk, say; said in one line, not a traceback."""


def main(argv: Sequence[str] | None = None, *, env: Mapping[str, str] | None = None,
         cwd: Path | None = None, fast: bool = True) -> Any:
    """Entry point. ``env`` and ``cwd`` default to the process's own. ``fast=False`` sends
    every command line through click (the fast path must print the same bytes). Without
    ``argv`` (the console script: the process's own command line) a lean answer ends the
    process at once (:func:`taskmill.cli.lean.emit`); with it, it raises ``SystemExit``."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(args, argv is None, env=env, cwd=cwd, fast=fast)
    except KeyboardInterrupt:  # (Ctrl-C before a command's own handling: while the modules
        sys.stderr.write("\nAborted!\n")  # load, say) as click says it, status 1, no
        sys.stderr.flush()  # traceback
        sys.exit(1)
    except OSError as exc:
        if exc.errno not in CANNOT_WRITE:
            raise
        _cannot_write(exc, "--json" in args, whole_process=argv is None)


def _cannot_write(exc: OSError, as_json: bool, *, whole_process: bool) -> None:
    """Say that a write failed (the output's, when no file is named) and exit 1; what was
    left unwritten of the output is dropped, in a process of its own (no second complaint
    as it ends)."""
    import json

    where = "the output" if exc.filename is None else str(exc.filename)
    message = f"cannot write {where}: {exc.strerror or exc}"
    hint = "free some space on the disk it goes to, then run the command again" \
        if exc.errno in (28, 122) else None
    if as_json:
        error: dict[str, Any] = {"code": "io", "message": message}
        if hint:
            error["hint"] = hint
        line = json.dumps({"error": error}, ensure_ascii=False)
    else:
        line = f"error: {message}" + (f"\n  hint: {hint}" if hint else "")
    if whole_process:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # (its buffer is not flushed again)
        except (OSError, ValueError):
            pass
    sys.stderr.write(line + "\n")
    sys.exit(1)


def _main(args: list[str], whole_process: bool, *, env: Mapping[str, str] | None,
          cwd: Path | None, fast: bool) -> Any:
    if fast and args == ["--version"]:  # as click prints it
        from .. import __version__

        sys.stdout.write(f"taskmill, version {__version__}\n")
        sys.stdout.flush()
        sys.exit(0)
    if fast and args and args[0] in LEAN_COMMANDS:
        from .lean import serve

        serve(args, os.environ if env is None else env, None if cwd is None else str(cwd),
              whole_process=whole_process)  # exits when it answered
    if fast and args and args[0] in LEAN_WRITE_COMMANDS:
        from .lean_write import serve as write

        write(args, os.environ if env is None else env, None if cwd is None else str(cwd),
              whole_process=whole_process)  # exits when it wrote
    if fast and args and args[0] == "blocked":  # (a big ledger's links read meanwhile)
        from .lean_links import begin

        begin(args, os.environ if env is None else env, None if cwd is None else str(cwd))
    from pathlib import Path

    from .context import Ctx

    obj = Ctx(cwd=cwd or Path.cwd(), env=dict(os.environ if env is None else env), argv=args)
    if fast:
        from .fast import run

        run(args, obj)  # exits when it served the command line
    from .group import cli

    try:
        return cli.main(args=args, obj=obj, prog_name="taskmill")
    except SystemExit as done:
        if obj.hard_exit:  # (never set by commands run in-process: they do not come here)
            _exit_now(done.code)
        raise


def _exit_now(code: object) -> None:
    """End the process at once with ``code`` (as ``sys.exit`` would), output flushed."""
    if isinstance(code, str):
        sys.stderr.write(code + "\n")
        code = 1
    import contextlib

    try:
        sys.stdout.flush()
    except OSError as exc:  # (what was left of the output could not be written: said)
        if exc.errno in CANNOT_WRITE and not code:
            with contextlib.suppress(SystemExit):
                _cannot_write(exc, False, whole_process=True)
            code = 1
    except ValueError:
        pass
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
