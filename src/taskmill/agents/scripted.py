"""``ScriptedAgent``: a TEST DOUBLE agent that ships in the package (tests, ``make demo``).

It is an ordinary adapter (``adapter = "scripted"``): its invocation runs
``python -m taskmill.agents.scripted_main`` in the worktree, through the same runner as a
real agent (process group, timeout, usage file). What it does is read from a JSON script,
named by the table option ``script = "/abs/path/script.json"`` (or ``TASKMILL_SCRIPT`` in
``env`` or in taskmill's environment)::

    {
      "default_file": "NOTES.md",
      "default": {"files": {"x.txt": "..."}},
      "tasks": {
        "T-1":         {"1": {TURN}, "2": {TURN}, "*": {TURN}},
        "add parser":  {TURN},
        "flaky":       [{TURN}, {TURN}]
      }
    }

A task is matched by its exact id, else by the first key that is a (case-insensitive)
substring of its title. The entry is one TURN for every iteration, a table keyed by the
iteration number (``"*"`` for the others), or a list (iteration N takes item N, the last one
repeats). A TURN has any of:

* ``files``: ``{path: content}`` written relative to the worktree (``null`` deletes);
* ``append``: ``{path: text}`` appended;
* ``commit``: ``true`` or a message: ``git add -A && git commit`` (an identity is supplied
  when the repository has none; nothing to commit is not an error);
* ``usage``: written as JSON to the usage file, e.g. ``{"input_tokens": 10,
  "output_tokens": 5, "cost_usd": 0.01}``, or ``{"rate_limited": true, "retry_after_s": 30}``;
* ``stdout`` / ``stderr``: text printed; ``error``: reported as the turn's error;
* ``sleep``: seconds to sleep at the end (to exercise timeouts and cancel);
* ``exit_code``: the process's exit code (default 0).

``$task_id``, ``$title`` and ``$iteration`` are substituted in paths, contents and commit
messages. An unscripted task (or iteration) runs ``default`` if the script has one, else
appends ``"<task id> iteration <n>"`` to ``default_file`` if set, else does nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

from taskmill.agents.base import AgentConfig, Invocation, TurnRequest, Usage
from taskmill.agents.common import as_str, iter_json_lines, option_str, short
from taskmill.agents.headless import invocation

SRC_DIR = Path(__file__).resolve().parents[2]
"""The directory holding the ``taskmill`` package (put on PYTHONPATH of the child)."""


class ScriptedAgent:
    """A scripted, deterministic stand-in for a coding agent. Not a real agent."""

    name = "scripted"
    install_hint = "the scripted agent needs a Python that can import taskmill"

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python

    def prepare(self, config: AgentConfig, request: TurnRequest) -> Invocation:
        extra = {
            "TASKMILL_TASK_ID": request.task_id,
            "TASKMILL_TASK_TITLE": request.title,
            "TASKMILL_ITERATION": str(request.iteration),
            "TASKMILL_WORKTREE": str(request.worktree),
            "PYTHONPATH": str(SRC_DIR),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        script = option_str(config, "script") or request.parent_env.get("TASKMILL_SCRIPT")
        if script:
            extra["TASKMILL_SCRIPT"] = script
        python = option_str(config, "python") or self.python
        command = list(config.command) if config.command else [python]
        argv = (*command, "-m", "taskmill.agents.scripted_main", *config.args)
        return invocation(config, request, argv, extra, stdin=request.prompt)

    def parse(
        self, config: AgentConfig, request: TurnRequest, output: str, exit_code: int | None
    ) -> Usage:
        usage = Usage(
            model=config.model or "scripted",
            session_id=f"scripted-{request.task_id}-{request.iteration}",
        )
        for event in iter_json_lines(output):
            if event.get("type") == "scripted":
                error = as_str(event.get("error"))
                if error:
                    usage.error = short(error)
        return usage
