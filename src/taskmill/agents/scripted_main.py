"""The process behind :class:`taskmill.agents.scripted.ScriptedAgent` (a test double).

Run as ``python -m taskmill.agents.scripted_main`` in the task's worktree. It reads the
script named by ``$TASKMILL_SCRIPT`` (JSON, format in :mod:`taskmill.agents.scripted`), finds
the turn for ``$TASKMILL_TASK_ID`` / ``$TASKMILL_TASK_TITLE`` / ``$TASKMILL_ITERATION``, and
carries it out: write/append/delete files, optionally ``git commit``, write the usage file,
print, sleep, exit. It prints one JSON line ``{"type": "scripted", ...}`` describing what it
did, which the adapter parses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from string import Template
from typing import Any

TURN_KEYS = frozenset(
    {"files", "append", "commit", "usage", "sleep", "exit_code", "stdout", "stderr", "error"}
)
GIT_NAME = "taskmill-scripted"
GIT_EMAIL = "scripted@taskmill.invalid"


def _is_turn(value: Mapping[str, Any]) -> bool:
    return any(key in TURN_KEYS for key in value)


def find_turn(
    script: Mapping[str, Any], task_id: str, title: str, iteration: int
) -> tuple[str | None, dict[str, Any] | None]:
    """The (matched key, turn) for a task and iteration; (None, None) when unscripted."""
    tasks = script.get("tasks")
    entry: Any = None
    key: str | None = None
    if isinstance(tasks, dict):
        if task_id in tasks:
            key, entry = task_id, tasks[task_id]
        else:
            lowered = title.lower()
            for name, value in tasks.items():
                if str(name).lower() in lowered and name:
                    key, entry = str(name), value
                    break
    if isinstance(entry, dict):
        if _is_turn(entry):
            return key, entry
        turn = entry.get(str(iteration), entry.get("*"))
        if isinstance(turn, dict):
            return key, turn
    elif isinstance(entry, list) and entry:
        turn = entry[min(iteration, len(entry)) - 1]
        if isinstance(turn, dict):
            return key, turn
    return None, None


def _git(args: Sequence[str], cwd: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=dict(env), capture_output=True, text=True, check=False
    )


def git_commit(message: str, cwd: Path, env: Mapping[str, str]) -> bool:
    """``git add -A`` and commit; False when there was nothing to commit."""
    _git(["add", "-A"], cwd, env)
    if _git(["diff", "--cached", "--quiet"], cwd, env).returncode == 0:
        return False
    identity: list[str] = []
    if not _git(["config", "user.email"], cwd, env).stdout.strip():
        identity = ["-c", f"user.name={GIT_NAME}", "-c", f"user.email={GIT_EMAIL}"]
    done = _git([*identity, "commit", "--no-verify", "-q", "-m", message], cwd, env)
    if done.returncode != 0:
        raise RuntimeError(f"git commit failed: {done.stderr.strip() or done.stdout.strip()}")
    return True


def run(env: Mapping[str, str], cwd: Path) -> int:
    """Carry out the scripted turn; returns the exit code."""
    task_id = env.get("TASKMILL_TASK_ID", "")
    title = env.get("TASKMILL_TASK_TITLE", "")
    iteration = int(env.get("TASKMILL_ITERATION", "1") or "1")
    script: dict[str, Any] = {}
    script_path = env.get("TASKMILL_SCRIPT")
    if script_path:
        script = json.loads(Path(script_path).read_text(encoding="utf-8"))
    values = {"task_id": task_id, "title": title, "iteration": str(iteration)}

    def fill(text: object) -> str:
        return Template(str(text)).safe_substitute(values)

    key, turn = find_turn(script, task_id, title, iteration)
    if turn is None:
        turn = script.get("default") if isinstance(script.get("default"), dict) else None
        default_file = script.get("default_file")
        if turn is None and isinstance(default_file, str) and default_file:
            turn = {"append": {default_file: "$task_id iteration $iteration\n"}}
    turn = turn or {}

    written: list[str] = []
    for path, content in (turn.get("files") or {}).items():
        target = cwd / fill(path)
        if content is None:
            target.unlink(missing_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(fill(content), encoding="utf-8")
        written.append(str(target.relative_to(cwd)))
    for path, content in (turn.get("append") or {}).items():
        target = cwd / fill(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("a", encoding="utf-8") as fh:
            fh.write(fill(content))
        written.append(str(target.relative_to(cwd)))

    committed = False
    commit = turn.get("commit")
    if commit:
        message = fill(commit) if isinstance(commit, str) else f"scripted: {task_id} #{iteration}"
        committed = git_commit(message, cwd, env)

    usage = turn.get("usage")
    usage_file = env.get("TASKMILL_USAGE_FILE")
    if isinstance(usage, dict) and usage_file:
        Path(usage_file).write_text(json.dumps(usage), encoding="utf-8")

    if turn.get("stdout"):
        sys.stdout.write(fill(turn["stdout"]))
    if turn.get("stderr"):
        sys.stderr.write(fill(turn["stderr"]))
    event: dict[str, Any] = {
        "type": "scripted", "task_id": task_id, "iteration": iteration, "matched": key,
        "files": written, "committed": committed,
    }
    if turn.get("error"):
        event["error"] = fill(turn["error"])
    print(json.dumps(event), flush=True)
    sys.stderr.flush()
    sleep = turn.get("sleep")
    if isinstance(sleep, int | float) and sleep > 0:
        time.sleep(float(sleep))
    exit_code = turn.get("exit_code", 0)
    return exit_code if isinstance(exit_code, int) else 0


def main(argv: Sequence[str] | None = None) -> int:
    del argv
    try:
        return run(os.environ, Path.cwd())
    except Exception as exc:
        print(json.dumps({"type": "scripted", "error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
