"""The fast path: ``ready``, ``show``, ``create``, ``update``, ``close``, ``list`` and
``blocked`` without click.

Importing click costs more than the ledger work of these commands, so their command lines are
parsed here directly, and the same bodies (:mod:`taskmill.cli.task_ops`,
:mod:`taskmill.cli.listing_ops`) run as under click.
Anything else, and any doubt (an unknown or repeated option, a value that looks like an
option, ``--help``, a usage error, an agent turn, a stream that is not UTF-8) is handed to
click untouched: :func:`run` returns and nothing has been done. The tables below mirror the
click commands' options; a test checks they agree, and another runs both paths over many
command lines and compares their bytes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import ALIASES
from .context import Ctx, echo
from .option_loop import DOUBT, FLAG, MULTIPLE, read_options

Converter = Callable[[str], Any]
"""A value as click would convert it, or :data:`DOUBT` when the fast path should not guess."""


def _text(value: str) -> Any:
    return value


def _priority(value: str) -> Any:
    return int(value) if len(value) == 1 and value in "01234" else DOUBT


def _limit(value: str) -> Any:
    return int(value) if value.isascii() and value.isdigit() and value[0] != "0" else DOUBT


_STATUSES = ("open", "in_progress", "blocked", "deferred", "closed")


def _status(value: str) -> Any:
    return value if value in _STATUSES else DOUBT


def _click_only(value: str) -> Any:
    """An option only click serves (``create --template``)."""
    return DOUBT


# option string -> (parameter, converter, or MULTIPLE / FLAG)
Spec = dict[str, tuple[str, Converter | str]]

_JSON: Spec = {"--json": ("as_json", FLAG)}
_TASK_OPTIONS: Spec = {
    "-d": ("description", _text), "--description": ("description", _text),
    "--design": ("design", _text),
    "--acceptance": ("acceptance_criteria", _text),
    "--notes": ("notes", _text),
    "-p": ("priority", _priority), "--priority": ("priority", _priority),
    "-t": ("issue_type", _text), "--type": ("issue_type", _text),
    "-a": ("assignee", _text), "--assignee": ("assignee", _text),
    "--external-ref": ("external_ref", _text),
    "--agent": ("agent", _text),
    "--check": ("checks", MULTIPLE),
    "--metadata": ("metadata", _text),
    "--hints": ("hints", _text),
    "--role": ("role", _text),
}
SPECS: dict[str, tuple[Spec, int]] = {
    # command -> (options, arguments: the exact count, or -1 for one or more)
    "ready": ({"-n": ("limit", _limit), "--limit": ("limit", _limit),
               "--beads-compat": ("beads_compat", FLAG), **_JSON}, 0),
    "show": (dict(_JSON), 1),
    "create": ({**_TASK_OPTIONS,
                "-l": ("labels", MULTIPLE), "--label": ("labels", MULTIPLE),
                "--after": ("after", MULTIPLE), "--parent": ("parent", _text),
                "--discovered-from": ("discovered_from", _text), "--id": ("task_id", _text),
                "--template": ("template", _click_only), "--field": ("fields", MULTIPLE),
                **_JSON}, 1),
    "update": ({"--title": ("title", _text), **_TASK_OPTIONS,
                "-s": ("status", _status), "--status": ("status", _status),
                "--append-notes": ("append_notes", _text),
                "--clear-checks": ("clear_checks", FLAG), "--claim": ("claim", FLAG),
                **_JSON}, 1),
    "close": ({"-r": ("reason", _text), "--reason": ("reason", _text), **_JSON}, -1),
    "list": ({"-s": ("statuses", MULTIPLE), "--status": ("statuses", MULTIPLE),
              "-l": ("label", _text), "--label": ("label", _text),
              "-t": ("issue_type", _text), "--type": ("issue_type", _text),
              "-a": ("assignee", _text), "--assignee": ("assignee", _text),
              "--parent": ("parent", _text), "--all": ("include_hidden", FLAG),
              "-n": ("limit", _limit), "--limit": ("limit", _limit), **_JSON}, 0),
    "blocked": ({"--beads-compat": ("beads_compat", FLAG), **_JSON}, 0),
}


def _convert(kind: Any, raw: str) -> Any:
    assert callable(kind)
    return kind(raw)


def parse(tokens: list[str], spec: Spec, nargs: int) -> tuple[dict[str, Any], list[str]] | None:
    """A command's options and arguments as click would parse them, or ``None`` when in
    any doubt (click then parses them, and reports any error)."""
    found = read_options(tokens, spec, _convert)
    if found is None:
        return None
    values, args = found
    if (nargs >= 0 and len(args) != nargs) or (nargs < 0 and not args):
        return None
    return values, args


def _globals(argv: list[str], ctx: Ctx) -> list[str] | None:
    """The group's own options (``-C DIR``, ``--actor NAME``) applied to ``ctx``; the rest
    of the command line, or ``None`` when in doubt."""
    directory: str | None = None
    actor: str | None = None
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        token = argv[i]
        if token == "-C" and directory is None and i + 1 < len(argv):
            directory = argv[i + 1]
            i += 2
        elif token == "--actor" and actor is None and i + 1 < len(argv):
            actor = argv[i + 1]
            i += 2
        elif token.startswith("--actor=") and actor is None:
            actor = token.partition("=")[2]
            i += 1
        else:
            return None
    if actor is not None and actor.startswith("-"):
        return None
    if directory is not None:
        if not directory or directory.startswith("-"):
            return None
        try:  # click.Path(file_okay=False): an existing path must be a readable directory
            if os.path.exists(directory) and not (
                    os.path.isdir(directory) and os.access(directory, os.R_OK)):
                return None
        except (OSError, ValueError):
            return None
        ctx.cwd = (ctx.cwd / Path(directory)).resolve()
    if actor:
        ctx.actor = actor
    return argv[i:]


def run(argv: list[str], ctx: Ctx) -> None:
    """Serve ``argv`` and exit, or return having done nothing (click takes over)."""
    if ctx.turn_socket is not None or ctx.env.get("_TASKMILL_COMPLETE"):
        return
    if not all(_encodable(a) for a in argv):
        return
    if sys.stdout is None or sys.stderr is None:
        return
    from .context import utf8

    if not (utf8(sys.stdout) and utf8(sys.stderr)):
        return
    rest = _globals(list(argv), Ctx(cwd=ctx.cwd, env=ctx.env))
    if not rest:
        return
    name = ALIASES.get(rest[0], rest[0])
    if name not in SPECS:
        return
    spec, nargs = SPECS[name]
    parsed = parse(rest[1:], spec, nargs)
    if parsed is None:
        return
    values, args = parsed
    if name == "update" and not _update_has_changes(values):
        return  # click says "nothing to change"
    if name == "create" and "fields" in values:
        return  # --field is for --template (click)
    _globals(list(argv), ctx)
    ctx.command = name
    _serve(name, values, args, ctx)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _update_has_changes(values: dict[str, Any]) -> bool:
    """Whether ``update`` has something to do (else click reports "nothing to change")."""
    from .task_ops import UPDATE_FIELDS

    fields = (*UPDATE_FIELDS, "checks", "clear_checks", "metadata", "hints")
    return (any(key in values for key in fields) or bool(values.get("append_notes"))
            or bool(values.get("claim")))


def _serve(name: str, values: dict[str, Any], args: list[str], ctx: Ctx) -> None:
    from . import listing_ops, task_ops

    as_json = bool(values.pop("as_json", False))
    body: Callable[[], None]
    if name == "ready":
        def body() -> None:
            task_ops.ready(ctx, values.get("limit"), bool(values.get("beads_compat")))
    elif name == "show":
        def body() -> None:
            task_ops.show(ctx, args[0])
    elif name == "list":
        def body() -> None:
            listing_ops.list_tasks(ctx, {
                "status": list(values.get("statuses", ())) or None,
                "label": values.get("label"), "issue_type": values.get("issue_type"),
                "assignee": values.get("assignee"), "parent": values.get("parent"),
                "include_hidden": bool(values.get("include_hidden")),
                "limit": values.get("limit")})
    elif name == "blocked":
        def body() -> None:
            listing_ops.blocked(ctx, bool(values.get("beads_compat")))
    elif name == "close":
        def body() -> None:
            task_ops.close(ctx, tuple(args), values.get("reason"))
    elif name == "create":
        def body() -> None:
            task_ops.create(
                ctx, args[0], **{k: values.get(k) for k in (
                    "description", "design", "acceptance_criteria", "notes", "priority",
                    "issue_type", "assignee", "external_ref", "agent", "metadata", "hints",
                    "parent", "discovered_from", "task_id", "role")},
                checks=tuple(values.get("checks", ())), labels=tuple(values.get("labels", ())),
                after=tuple(values.get("after", ())))
    else:
        def body() -> None:
            changes = task_ops.update_changes(
                {k: values.get(k) for k in task_ops.UPDATE_FIELDS},
                checks=tuple(values.get("checks", ())),
                clear_checks=bool(values.get("clear_checks")),
                metadata=values.get("metadata"), hints=values.get("hints"))
            task_ops.update(ctx, args[0], changes, agent=values.get("agent"),
                            assignee=values.get("assignee"),
                            append_notes=values.get("append_notes"),
                            claim=bool(values.get("claim")))
    _exit(ctx, as_json, body)


def _exit(ctx: Ctx, as_json: bool, body: Callable[[], None]) -> None:
    """Run ``body`` as click's standalone mode runs a command, and exit as it does."""
    import errno

    from .task_ops import guarded

    try:
        guarded(ctx, as_json, body)
    except (EOFError, KeyboardInterrupt):
        echo(err=True)
        echo("Aborted!", err=True)
        sys.exit(1)
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        sys.stdout = _Pacified(sys.stdout)
        sys.stderr = _Pacified(sys.stderr)
        sys.exit(1)
    sys.exit(0)


class _Pacified:
    """click's ``_PacifyFlushWrapper``: a closed pipe's flush at exit raises nothing."""

    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped

    def flush(self) -> None:
        try:
            self.wrapped.flush()
        except OSError as exc:
            if exc.errno != 32:  # EPIPE
                raise

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.wrapped, attr)
