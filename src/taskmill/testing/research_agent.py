"""A scripted research agent (a TEST DOUBLE): experiment N makes the edit scripted for N.

The script is JSON (or a dict, in process)::

    {"edits": {"1": {"files": {"sortlib.py": "..."}, "description": "merge sort",
                     "cost_usd": 0.01, "tokens": 100},
               "2": {"files": {"bench.py": null}, "exit_code": 1, "sleep": 0.5}},
     "default": {"append": {"notes.txt": "tried $n\\n"}, "description": "a no-op idea"}}

An edit has any of ``files`` (path -> content, null deletes), ``append`` (path -> text),
``description`` (written to ``$TASKMILL_DESCRIPTION_FILE``), ``cost_usd`` / ``tokens``
(written to the usage file), ``sleep`` (seconds, before exiting), ``exit_code``. ``$n`` in
paths, contents and descriptions is the experiment's number. An unscripted number gets
``default`` (none: the turn changes nothing).

In process, :func:`research_step` is a :class:`~taskmill.testing.turns.ScriptedTurns` step;
as a process (an ``exec`` agent), ``python -m taskmill.testing.research_agent SCRIPT.json``
reads ``$TASKMILL_EXPERIMENT``, ``$TASKMILL_WORKTREE``, ``$TASKMILL_DESCRIPTION_FILE`` and
``$TASKMILL_USAGE_FILE``; ``"calls_log": PATH`` in the script appends each experiment's
number to that file as its turn starts (how tests see which turns ran).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..agents.base import Usage
from .turns import FakeTurn, Reply, Step


def edit_for(script: Mapping[str, Any], n: int) -> dict[str, Any]:
    edits = script.get("edits") or {}
    found = edits.get(str(n), script.get("default"))
    return dict(found) if isinstance(found, dict) else {}


def _sub(text: str, n: int) -> str:
    return text.replace("$n", str(n))


def apply_edit(edit: Mapping[str, Any], n: int, worktree: Path,
               description_file: Path | None) -> None:
    for name, content in (edit.get("files") or {}).items():
        path = worktree / _sub(name, n)
        if content is None:
            path.unlink(missing_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_sub(content, n), encoding="utf-8")
    for name, text in (edit.get("append") or {}).items():
        path = worktree / _sub(name, n)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(_sub(text, n))
    if description_file is not None and edit.get("description"):
        description_file.parent.mkdir(parents=True, exist_ok=True)
        description_file.write_text(_sub(str(edit["description"]), n), encoding="utf-8")


def research_step(script: Mapping[str, Any]) -> Step:
    """A :class:`~taskmill.testing.turns.ScriptedTurns` step for every research turn."""

    def step(turn: FakeTurn) -> Reply:
        env = turn.request.taskmill_env
        n = int(env["TASKMILL_EXPERIMENT"])
        edit = edit_for(script, n)
        described = env.get("TASKMILL_DESCRIPTION_FILE")
        apply_edit(edit, n, turn.worktree, Path(described) if described else None)
        usage = Usage(input_tokens=int(edit.get("tokens", 0)),
                      cost_usd=edit.get("cost_usd"))
        code = int(edit.get("exit_code", 0))
        if code:
            usage.error = "the scripted agent failed"
        return Reply(exit_code=code, usage=usage)

    return step


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    sys.stdin.read()  # the prompt
    script = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    n = int(os.environ["TASKMILL_EXPERIMENT"])
    if script.get("calls_log"):
        with open(script["calls_log"], "a", encoding="utf-8") as fh:
            fh.write(f"{n}\n")
    edit = edit_for(script, n)
    described = os.environ.get("TASKMILL_DESCRIPTION_FILE")
    apply_edit(edit, n, Path(os.environ.get("TASKMILL_WORKTREE", ".")),
               Path(described) if described else None)
    usage_file = os.environ.get("TASKMILL_USAGE_FILE")
    if usage_file and ("cost_usd" in edit or "tokens" in edit):
        Path(usage_file).write_text(json.dumps({"input_tokens": int(edit.get("tokens", 0)),
                                                "cost_usd": edit.get("cost_usd", 0.0)}))
    if edit.get("sleep"):
        time.sleep(float(edit["sleep"]))
    return int(edit.get("exit_code", 0))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
