"""Running a task's checks: taskmill decides whether work is done, never the agent."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..cgroups import limit_message
from ..containment import MARKER_VAR, Containment, new_marker, sweep
from ..sandbox import Mounts
from ..sandbox_start import (
    START_ATTEMPTS,
    StartReport,
    never_started,
    sandbox_failure,
    start_pause,
)

TAIL_CHARS = 4000

_TERMINAL_CODES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, erase
    r"|(?:\x1b[]PX^_]|[\x90\x98\x9d-\x9f])[^\x07\x1b\x80-\x9f]*(?:\x07|\x1b\\|\x9c)"  # OSC, DCS...
    r"|\x1b[ -/]*[0-~]"  # other escape sequences (charset, keypad, save cursor)
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"  # any other control character but \n and \t
)


def strip_terminal_codes(text: str) -> str:
    """``text`` without terminal escape sequences (CSI, OSC, ...) and control characters
    other than newline and tab: what check output looks like in a prompt or a page."""
    return _TERMINAL_CODES.sub("", text)


@dataclass
class CheckRun:
    command: str
    exit_code: int | None
    duration_s: float
    output: str
    timed_out: bool = False
    cancelled: bool = False
    """Cut by the run stopping (not a verdict on the work)."""
    limit_hit: dict[str, int] | None = None
    """The ``[sandbox]`` limits the command hit (:mod:`taskmill.cgroups`)."""
    sandbox_failed: str | None = None
    """The sandbox never started the command (:mod:`taskmill.sandbox_start`): why. Not a
    verdict on the work."""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


@dataclass
class ChecksResult:
    runs: list[CheckRun] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.runs)

    @property
    def cancelled(self) -> bool:
        return any(r.cancelled for r in self.runs)

    @property
    def sandbox_failed(self) -> str | None:
        """Why the sandbox never started a check (None: every one started)."""
        return next((r.sandbox_failed for r in self.runs if r.sandbox_failed), None)

    def failure_text(self, limit: int = TAIL_CHARS) -> str:
        """The failing checks' commands and the tail of their output."""
        parts = []
        for run in self.runs:
            if run.ok:
                continue
            status = "timed out" if run.timed_out else f"exit {run.exit_code}"
            hit = limit_message(run.limit_hit)
            parts.append(f"$ {run.command}   ({status})\n" + (f"{hit}\n" if hit else "")
                         + tail(run.output, limit))
        return "\n\n".join(parts)

    def to_json(self) -> list[dict[str, object]]:
        return [{"command": r.command, "exit_code": r.exit_code, "ok": r.ok,
                 "duration_s": round(r.duration_s, 3), "timed_out": r.timed_out,
                 "output_tail": tail(r.output, 2000),
                 **({"limit_hit": r.limit_hit} if r.limit_hit else {}),
                 **({"sandbox_failed": r.sandbox_failed} if r.sandbox_failed else {})}
                for r in self.runs]


def tail(text: str, limit: int = TAIL_CHARS) -> str:
    if len(text) <= limit:
        return text
    return "[...]\n" + text[-limit:]


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=2)
            return
        except subprocess.TimeoutExpired:
            continue


@dataclass
class _Ran:
    """One start of a check command, as it ended."""

    exit_code: int | None
    output: bytes
    timed_out: bool
    cancelled: bool
    limit_hit: dict[str, int] | None
    started: bool
    """False: the sandbox exited before it started the command."""


def _run_once(command: str, cwd: Path, env: Mapping[str, str], *, deadline: float,
              cancel: threading.Event | None, contain: Containment,
              view: Mounts | None) -> _Ran:
    """Start ``command`` once (in the sandbox when ``view``) and wait for it."""
    marker = new_marker()
    full_env = {**env, MARKER_VAR: marker}
    argv = ["bash", "-c", command]
    sandbox = contain.sandbox
    group = contain.open_group()  # the limits, when a cgroup holds them
    prelude = group.prelude if group is not None else ""
    with contextlib.ExitStack() as stack:
        report = stack.enter_context(StartReport()) if sandbox is not None else None
        if sandbox is not None and view is not None and report is not None:
            argv = sandbox.command(argv, view, cwd=cwd, env=full_env, prelude=prelude,
                                   started_fd=report.write_fd)
        else:
            argv = contain.command(argv, prelude)
        try:
            proc = subprocess.Popen(group.wrap(argv) if group is not None else argv,
                                    cwd=cwd, env=full_env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    pass_fds=(report.write_fd,) if report is not None else ())
            if report is not None:
                report.spawned()
            timed_out = cancelled = False
            while True:
                try:
                    # short slices only so that a stop is noticed; the output is
                    # collected across them
                    out, _ = proc.communicate(
                        timeout=min(0.2, max(0.0, deadline - time.monotonic())))
                    break
                except subprocess.TimeoutExpired:
                    if cancel is not None and cancel.is_set():
                        cancelled = True
                    elif time.monotonic() >= deadline:
                        timed_out = True
                    else:
                        continue
                    _kill_group(proc)
                    out, _ = proc.communicate()
                    break
            if contain.mode == "group":
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)  # what it left in its group
                sweep(marker)
        finally:  # what hit a limit, then whatever is left in the cgroup is killed
            limit_hit = group.close() if group is not None else None
        started = not never_started(report, proc.returncode,
                                    out.decode("utf-8", errors="replace"))
    return _Ran(proc.returncode, out, timed_out, cancelled, limit_hit, started)


def run_checks(commands: Sequence[str], cwd: Path, env: Mapping[str, str], *,
               timeout_s: float, log_path: Path | None = None,
               stop_on_failure: bool = True, cancel: threading.Event | None = None,
               containment: Containment | None = None,
               mounts: Mounts | None = None,
               pause: Callable[[float], None] = time.sleep) -> ChecksResult:
    """Run each command with ``bash -c`` in ``cwd``; a timeout, or ``cancel`` (the run
    stopping), kills its process group. Under ``containment`` (default: the process group
    only) nothing a check starts outlives it (see :mod:`taskmill.containment`); when it has
    a sandbox, each command runs in it seeing ``mounts`` (default: ``cwd`` and the checks'
    HOME writable, see :meth:`taskmill.sandbox.Sandbox.check_mounts`). When a cgroup holds
    the ``[sandbox]`` limits each command runs in one of its own (:mod:`taskmill.cgroups`):
    a limit it hit is in :attr:`CheckRun.limit_hit` and its failure text. A sandbox that
    exits before it started the command (:mod:`taskmill.sandbox_start`) is started again,
    ``pause`` apart; after the last try the run says so (:attr:`CheckRun.sandbox_failed`)
    and the checks stop there.

    The log file gets the output as it was; :attr:`CheckRun.output` has terminal escape
    sequences and control characters stripped (it goes into prompts and the dashboard)."""
    contain = containment or Containment("group")
    sandbox = contain.sandbox
    view = (mounts or sandbox.check_mounts(cwd)) if sandbox is not None else None
    attempts = START_ATTEMPTS if sandbox is not None else 1
    result = ChecksResult()
    log = log_path.open("ab") if log_path else None
    try:
        for command in commands:
            if cancel is not None and cancel.is_set():
                result.runs.append(CheckRun(command, None, 0.0, "", cancelled=True))
                break
            start = time.monotonic()
            for attempt in range(1, attempts + 1):
                if attempt > 1:  # the sandbox never started the command: start it again
                    pause(start_pause(attempt))
                ran = _run_once(command, cwd, env, deadline=start + timeout_s, cancel=cancel,
                                contain=contain, view=view)
                if log:
                    log.write(f"$ {command}\n".encode() + ran.output
                              + f"[exit {ran.exit_code}]\n".encode())
                if ran.started or ran.timed_out or ran.cancelled:
                    break
            text = strip_terminal_codes(ran.output.decode("utf-8", errors="replace"))
            failed = None if ran.started else sandbox_failure(attempts, ran.exit_code, text)
            run = CheckRun(command, ran.exit_code, time.monotonic() - start, text,
                           ran.timed_out, ran.cancelled, ran.limit_hit, failed)
            result.runs.append(run)
            if ran.cancelled or failed is not None or (not run.ok and stop_on_failure):
                break
    finally:
        if log:
            log.close()
    return result
