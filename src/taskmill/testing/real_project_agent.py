"""The scripted agent of the real-project flow (:mod:`taskmill.testing.real_project`).

A TEST DOUBLE, not a coding agent: it applies prepared, real code changes. taskmill runs it
as an ``exec`` agent, ``python real_project_agent.py CHANGES STATE``, by path (it imports
nothing but the standard library, so it needs no taskmill on the agent's clean PYTHONPATH).
It uses only the documented agent interface: the prompt on stdin, ``TASKMILL_TASK_ID``, the
worktree as its working directory, ``$TASKMILL_USAGE_FILE``.

``CHANGES`` is a JSON file ``{"tasks": {TASK_ID: {"key": K, "turns": [[EDIT...]...],
"hold": BOOL}}}`` (edits as in :mod:`taskmill.testing.real_project_changes`). On each turn:

* a task it has no changes for (an epic handed to it by mistake): logs ``unplanned``, exits 0;
* a prompt that says the branch conflicts: removes the conflict markers of every conflicted
  file, keeping both sides (each task only adds lines), and exits;
* otherwise: applies the edits of its next turn (``STATE/done-ID`` counts the turns done; the
  last turn repeats) and, for a ``hold`` task on its first turn, writes ``STATE/held-ID`` and
  waits until ``STATE/release`` exists (so the flow can interrupt the run while it is
  mid-turn, coordinated through files).

Every step is a JSON line in ``STATE/agent.log``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HOLD_LIMIT_S = 600.0
"""A held turn gives up waiting after this long (nothing hangs forever)."""


def log(state: Path, **fields: Any) -> None:
    fields = {"t": round(time.time(), 3), "pid": os.getpid(), **fields}
    with (state / "agent.log").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(fields) + "\n")


class EditError(Exception):
    pass


def apply_edit(root: Path, edit: dict[str, str]) -> str:
    """Apply one edit; returns ``applied`` or ``already`` (an earlier turn made it)."""
    path = root / edit["path"]
    op = edit["op"]
    if op == "write":
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.read_text(encoding="utf-8") == edit["text"]:
            return "already"
        path.write_text(edit["text"], encoding="utf-8")
        return "applied"
    text = path.read_text(encoding="utf-8")
    if op == "append":
        if text.endswith(edit["text"]):
            return "already"
        path.write_text(text + edit["text"], encoding="utf-8")
        return "applied"
    if op == "replace":
        if edit["new"] in text:
            return "already"
        count = text.count(edit["old"])
        if count != 1:
            raise EditError(f"{edit['path']}: expected the text to replace once, found it "
                            f"{count} times: {edit['old']!r}")
        path.write_text(text.replace(edit["old"], edit["new"]), encoding="utf-8")
        return "applied"
    raise EditError(f"unknown edit {op!r}")


def resolve_union(text: str) -> str:
    """Drop the conflict markers, keeping our side then theirs (and no merge base)."""
    out: list[str] = []
    keep = True
    for line in text.splitlines(keepends=True):
        if line.startswith("||||||| "):
            keep = False  # the merge base, in diff3 style: dropped
        elif line.startswith(("<<<<<<< ", ">>>>>>> ")) or line.rstrip("\r\n") == "=======":
            keep = True
        elif keep:
            out.append(line)
    return "".join(out)


def conflicted_files(root: Path) -> list[str]:
    proc = subprocess.run(["git", "diff", "--name-only", "--diff-filter=U"], cwd=root,
                          capture_output=True, text=True, check=False)
    names = set(proc.stdout.split())
    grep = subprocess.run(["git", "grep", "-l", "-E", "^<<<<<<< "], cwd=root,
                          capture_output=True, text=True, check=False)
    names.update(grep.stdout.split())
    return sorted(names)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: real_project_agent.py CHANGES STATE", file=sys.stderr)
        return 2
    changes, state = json.loads(Path(argv[1]).read_text(encoding="utf-8")), Path(argv[2])
    prompt = sys.stdin.read()
    task = os.environ.get("TASKMILL_TASK_ID", "")
    iteration = os.environ.get("TASKMILL_ITERATION", "")
    root = Path.cwd()
    entry = changes["tasks"].get(task)
    if entry is None:
        log(state, event="unplanned", task=task, iteration=iteration)
        return 0
    key = entry["key"]
    log(state, event="turn", task=task, key=key, iteration=iteration)
    usage = os.environ.get("TASKMILL_USAGE_FILE")
    if usage:
        Path(usage).write_text(json.dumps({"input_tokens": 1200, "output_tokens": 300,
                                           "cost_usd": 0.003}), encoding="utf-8")
    if "conflict" in prompt.lower():
        files = conflicted_files(root)
        for name in files:
            path = root / name
            path.write_text(resolve_union(path.read_text(encoding="utf-8")), encoding="utf-8")
        log(state, event="resolved", task=task, key=key, files=files)
        return 0
    done_file = state / f"done-{task}"
    done = int(done_file.read_text()) if done_file.exists() else 0
    turns = entry["turns"]
    try:
        results = [apply_edit(root, edit) for edit in turns[min(done, len(turns) - 1)]]
    except (EditError, OSError) as exc:
        log(state, event="edit_failed", task=task, key=key, error=str(exc))
        print(f"could not apply the change: {exc}", file=sys.stderr)
        return 1
    log(state, event="edited", task=task, key=key, turn=done + 1, results=results)
    held = state / f"held-{task}"
    if entry.get("hold") and not held.exists():
        held.write_text(str(os.getpid()), encoding="utf-8")
        log(state, event="holding", task=task, key=key)
        deadline = time.monotonic() + HOLD_LIMIT_S
        while not (state / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        log(state, event="released", task=task, key=key)
    done_file.write_text(str(done + 1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
