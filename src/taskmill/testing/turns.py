"""An in-process turn runner for tests: scripted agent turns that edit the worktree in Python.

:class:`ScriptedTurns` is a :class:`~taskmill.mill.turn_runner.TurnRunner`: handed to
:class:`~taskmill.mill.engine.Mill` (``turn_runner=``), each agent turn of a task runs the
next step scripted for it (a Python function given the turn) instead of an agent process,
so a whole ``taskmill run`` (claims, worktrees, checks, the merge queue) runs in one
process with no agent spawned::

    turns = ScriptedTurns({"tm-a": [write({"a.py": "broken"}), write({"a.py": "fixed"})]})
    Mill(paths, config, settings, ..., turn_runner=turns).run()

A step returns a :class:`Reply` (exit code, usage, a rate limit...) or None (exit 0, no
usage). A task with no step left, or none scripted, gets turns that change nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..agents.base import AgentAdapter, AgentConfig, TurnRequest, TurnResult, Usage
from ..containment import Containment
from ..sandbox import Mounts


@dataclass(frozen=True)
class FakeTurn:
    """What a scripted step is given: the turn's request and where it stands."""

    request: TurnRequest
    call: int
    """This task's turn count in this runner, this one included (rate-limited ones too)."""
    cancel: threading.Event | None = None
    """Set when the mill cuts the turn (a stop's grace over): a step that waits on it is a
    turn still running when the mill stops (see :func:`until_cancelled`)."""

    @property
    def task_id(self) -> str:
        return self.request.task_id

    @property
    def iteration(self) -> int:
        return self.request.iteration

    @property
    def worktree(self) -> Path:
        return self.request.worktree

    @property
    def prompt(self) -> str:
        return self.request.prompt


@dataclass
class Reply:
    """How a scripted turn ends."""

    exit_code: int | None = 0
    usage: Usage = field(default_factory=Usage)
    timed_out: bool = False
    duration_s: float = 0.0
    cancelled: bool = False
    """The mill cut the turn (as the real runner says of an agent it stopped)."""


Step = Callable[[FakeTurn], Reply | None]


def write(files: Mapping[str, str], **usage: int | float) -> Step:
    """A step that writes ``files`` (relative to the worktree) and reports ``usage``."""

    def step(turn: FakeTurn) -> Reply:
        for name, text in files.items():
            path = turn.worktree / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        return Reply(usage=Usage(**usage))  # type: ignore[arg-type]

    return step


def nothing(turn: FakeTurn) -> Reply | None:
    """A step that changes nothing."""
    return None


def until_cancelled(started: threading.Event | None = None, *,
                    timeout: float = 60.0) -> Step:
    """A step that runs until the mill cuts it (a stop): it sets ``started``, then waits for
    the turn's cancel (at most ``timeout`` seconds, so a test never hangs)."""

    def step(turn: FakeTurn) -> Reply:
        if started is not None:
            started.set()
        cut = turn.cancel is not None and turn.cancel.wait(timeout)
        return Reply(exit_code=None if cut else 0, cancelled=cut,
                     usage=Usage(error="cancelled") if cut else Usage())

    return step


def rate_limited(retry_after_s: float | None = None, error: str = "usage limit reached") -> Step:
    """A step whose agent hit its usage limit (exit 1)."""

    def step(turn: FakeTurn) -> Reply:
        return Reply(exit_code=1, usage=Usage(rate_limited=True, retry_after_s=retry_after_s,
                                              error=error))

    return step


def fails(exit_code: int = 1, error: str = "the agent failed") -> Step:
    """A step whose agent exits with ``exit_code``."""

    def step(turn: FakeTurn) -> Reply:
        return Reply(exit_code=exit_code, usage=Usage(error=error))

    return step


class ScriptedTurns:
    """Runs each task's scripted steps in order, in this process (see the module docstring).
    ``script``: the steps by task id, or one function for every turn."""

    def __init__(self, script: Mapping[str, Sequence[Step]] | Step) -> None:
        self.script = script
        self.turns: list[FakeTurn] = []
        """Every turn run, in order."""
        self._lock = threading.Lock()

    def calls(self, task_id: str) -> list[FakeTurn]:
        with self._lock:
            return [t for t in self.turns if t.task_id == task_id]

    def __call__(self, adapter: AgentAdapter, config: AgentConfig, request: TurnRequest, *,
                 cancel: threading.Event | None = None,
                 kill_now: threading.Event | None = None,
                 containment: Containment | None = None,
                 mounts: Mounts | None = None) -> TurnResult:
        for directory in (request.state_dir, request.log_path.parent, request.home):
            directory.mkdir(parents=True, exist_ok=True)
        request.prompt_file.write_text(request.prompt, encoding="utf-8")
        with self._lock:
            call = 1 + sum(1 for t in self.turns if t.task_id == request.task_id)
            turn = FakeTurn(request, call, cancel)
            self.turns.append(turn)
        if cancel is not None and cancel.is_set():
            reply: Reply | None = Reply(exit_code=None, usage=Usage(error="cancelled"))
            cancelled = True
        else:
            reply = self._step(turn)(turn)
            cancelled = reply is not None and reply.cancelled
        reply = reply or Reply()
        request.log_path.write_text(f"[scripted turn {call} of {request.task_id}]\n",
                                    encoding="utf-8")
        return TurnResult(exit_code=reply.exit_code, timed_out=reply.timed_out,
                          duration_s=reply.duration_s, usage=reply.usage,
                          log_path=request.log_path, cancelled=cancelled)

    def _step(self, turn: FakeTurn) -> Step:
        if callable(self.script):
            return self.script
        steps = self.script.get(turn.task_id, ())
        return steps[turn.call - 1] if turn.call <= len(steps) else nothing
