"""The lean write path: ``create``, ``update`` and ``close`` in their common forms, in a
process that imports :mod:`sqlite3` and C modules, not the ledger's package.

The writes are :mod:`taskmill.ledger.lean_write`'s (the statements the SQLite store runs
for every write) under :mod:`taskmill.lean_rules` (the event's JSON and chain hash, the id,
the diff, the field limits: what :class:`taskmill.ledger.Ledger` calls too); the output is
the read path's (:mod:`taskmill.cli.lean`). Served here, before anything is written, only:

- ``create TITLE [-p N] [-t TYPE] [-d TEXT] [--design TEXT] [--acceptance TEXT]
  [--notes TEXT] [-l LABEL]... [--json]``;
- ``update ID [--title T] [-d TEXT] [--design TEXT] [--acceptance TEXT] [--notes TEXT]
  [-p N] [-t TYPE] [-a NAME] [--external-ref REF] [--json]`` (no status, claim, JSON
  field, agent or role);
- ``close ID [-r REASON] [--json]`` of an open, blocked or deferred task whose parent does
  not close with it (its dependents' readiness follows by the store's own functions,
  :mod:`taskmill.ledger.lean_readiness`).

Everything else goes to the full path with nothing written: any other option or form, a
value the ledger would refuse (it then says why), an id that is not exactly a task's, an
agent turn or any ``$TASKMILL_*`` setting but ``TASKMILL_ACTOR``, a config not checked, roles,
a ledger to migrate or locked for longer than the busy timeout, an output stream that is
not UTF-8, a close whose parent would close too (an epic's last child).
``TASKMILL_LEAN=0`` turns it off (as the read path).
"""

from __future__ import annotations

import os
import sys

from .. import lean_rules as rules
from . import lean, option_loop

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Mapping
    from types import ModuleType
    from typing import Any

    Spec = dict[str, tuple[str, str]]

_ENV_OK = frozenset({"TASKMILL_ACTOR", lean.SWITCH_ENV})
"""The ``$TASKMILL_*`` settings a lean write follows (any other: the full path)."""

# option -> (field, kind): "text" (one value), "multiple" (repeatable), "priority", "flag"
_TEXTS: Spec = {
    "-d": ("description", "text"), "--description": ("description", "text"),
    "--design": ("design", "text"), "--acceptance": ("acceptance_criteria", "text"),
    "--notes": ("notes", "text"),
    "-p": ("priority", "priority"), "--priority": ("priority", "priority"),
    "-t": ("issue_type", "text"), "--type": ("issue_type", "text"),
    "--json": ("json", "flag"),
}
SPECS: dict[str, Spec] = {
    "create": {**_TEXTS, "-l": ("labels", "multiple"), "--label": ("labels", "multiple")},
    "update": {**_TEXTS, "--title": ("title", "text"), "-a": ("assignee", "text"),
               "--assignee": ("assignee", "text"), "--external-ref": ("external_ref", "text")},
    "close": {"-r": ("close_reason", "text"), "--reason": ("close_reason", "text"),
              "--json": ("json", "flag")},
}
"""The options served (each a subset of :data:`taskmill.cli.fast.SPECS`'s: a test holds it)."""
COMMANDS = frozenset(SPECS)

_LINE_FIELDS = {"title": rules.TITLE_MAX, "issue_type": rules.NAME_MAX,
                "assignee": rules.NAME_MAX, "external_ref": rules.NAME_MAX}
"""The one-line fields and their longest (:func:`taskmill.ledger.validate.validate_field`)."""


def serve(argv: list[str], env: Mapping[str, str], cwd: str | None, *,
          whole_process: bool = False) -> None:
    """Run ``argv`` and exit, or return having written nothing (the full path runs it;
    ``whole_process``: see :func:`taskmill.cli.lean.emit`)."""
    out = answer(argv, env, cwd)
    if out is not None:
        lean.emit(out, whole_process=whole_process)


def answer(argv: list[str], env: Mapping[str, str], cwd: str | None) -> bytes | None:
    """Make the change ``argv`` asks for and return what the command prints, or return
    ``None`` having written nothing. Once the change is committed an error is not
    swallowed (the full path would make the change a second time)."""
    try:
        parsed = parse(argv, env)
        if parsed is None:
            return None
        found = lean.find_ledger(os.getcwd() if cwd is None else cwd)
        if found is None:
            return None
        db, settings = found
        prefix = settings.get("prefix")
        if argv[0] == "create" and not prefix:
            return None
        _module()
        conn = lean.sql_module().connect(db)
        if conn is None:
            return None
    except Exception:  # the full path runs it, and reports any error itself
        return None
    try:
        return _write(conn, argv[0], parsed, env, prefix or "")
    finally:
        conn.close()


def _write(conn: sqlite3.Connection, name: str, parsed: tuple[dict[str, Any], str],
           env: Mapping[str, str], prefix: str) -> bytes | None:
    import time

    values, arg = parsed
    as_json = bool(values.pop("json", False))
    writes = _module()
    actor = rules.actor_from_env(env)
    try:
        writes.prepare(conn)
        now = rules.iso_from_ns(time.time_ns())
        if name == "create":
            labels = values.pop("labels", [])
            tid = writes.create(conn, prefix=prefix, actor=actor, now=now, title=arg,
                                fields=values, labels=labels)
        else:
            if name == "close":
                values["status"] = "closed"
            done = writes.change(conn, actor=actor, now=now, task_id=arg, changes=values,
                                 close=name == "close", plain_title=not as_json,
                                 status_changed=_load("lean_readiness").status_changed)
            tid = arg if done else None
    except Exception:  # rolled back (locked for longer than the busy timeout, say)
        return None
    if tid is None:
        return None
    # committed: from here on an error is reported, not handed to the full path
    sql = lean.sql_module()
    row = writes.task_row(conn, tid)
    if as_json:
        return lean.encode(sql.task_dicts(conn, [row], lean.loads)[0])
    if name == "create":
        return f"created {tid}: {row[1]}\n".encode()
    if name == "update":
        return f"updated {tid}\n".encode()
    return f"closed {tid}: {row[1]}\n".encode()


def parse(argv: list[str], env: Mapping[str, str]) -> tuple[dict[str, Any], str] | None:
    """The fields ``argv`` sets (checked as the ledger checks them) and its one argument
    (the title, or the id), or ``None`` for anything else."""
    if not argv or argv[0] not in SPECS:
        return None
    if env.get(lean.SWITCH_ENV) == "0" or any(
            key.startswith("TASKMILL_") and key not in _ENV_OK and value
            for key, value in env.items()) or env.get("_TASKMILL_COMPLETE"):
        return None
    encoding = getattr(sys.stdout, "encoding", None)
    if (not isinstance(encoding, str) or encoding.lower().replace("-", "") != "utf8"
            or not hasattr(sys.stdout, "buffer")):
        return None
    found = option_loop.read_options(argv[1:], SPECS[argv[0]], _convert)
    if found is None:
        return None
    values, args = found
    if len(args) != 1 or not _valid(argv[0], values, args[0]):
        return None
    return values, args[0]


def _convert(kind: str, raw: str) -> Any:
    if kind == "priority":
        return int(raw) if len(raw) == 1 and raw in "01234" else option_loop.DOUBT
    return raw


def _valid(name: str, values: dict[str, Any], arg: str) -> bool:
    """Whether the ledger takes ``values`` as they are (else it explains why)."""
    if not all(isinstance(a, str) for a in (arg, *values.get("labels", ()))):
        return False
    if name == "create" and not rules.is_line(arg, rules.TITLE_MAX):
        return False
    if name != "create" and (len(arg) > lean.ID_MAX or not arg.strip()
                             or lean.CONTROL.intersection(arg)):
        return False
    if name == "update" and not (set(values) - {"json"}):
        return False  # "nothing to change"
    for key, value in values.items():
        if key == "json":
            continue
        if key == "labels":
            if not all(rules.is_line(v, rules.LABEL_MAX) for v in value):
                return False
        elif key == "priority":
            continue
        elif key in _LINE_FIELDS:
            if not rules.is_line(value, _LINE_FIELDS[key]):
                return False
        elif not rules.is_text(value):
            return False
    return rules.mill_close_form(values.get("close_reason")) is None


def _module() -> ModuleType:
    """:mod:`taskmill.ledger.lean_write`, with :mod:`taskmill.ledger.lean` (which
    :func:`taskmill.cli.lean.sql_module` then finds loaded); ``close`` loads
    :mod:`taskmill.ledger.lean_readiness` too."""
    _load("lean")
    return _load("lean_write")


def _load(stem: str) -> ModuleType:
    """``taskmill.ledger.<stem>`` (:func:`taskmill.cli.lean.load_ledger_module`)."""
    return lean.load_ledger_module(stem)
