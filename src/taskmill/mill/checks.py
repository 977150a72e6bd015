"""Running a task's checks: taskmill decides whether work is done, never the agent."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

TAIL_CHARS = 4000


@dataclass
class CheckRun:
    command: str
    exit_code: int | None
    duration_s: float
    output: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


@dataclass
class ChecksResult:
    runs: list[CheckRun] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.runs)

    def failure_text(self, limit: int = TAIL_CHARS) -> str:
        """The failing checks' commands and the tail of their output."""
        parts = []
        for run in self.runs:
            if run.ok:
                continue
            status = "timed out" if run.timed_out else f"exit {run.exit_code}"
            parts.append(f"$ {run.command}   ({status})\n{tail(run.output, limit)}")
        return "\n\n".join(parts)

    def to_json(self) -> list[dict[str, object]]:
        return [{"command": r.command, "exit_code": r.exit_code, "ok": r.ok,
                 "duration_s": round(r.duration_s, 3), "timed_out": r.timed_out,
                 "output_tail": tail(r.output, 2000)} for r in self.runs]


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


def run_checks(commands: Sequence[str], cwd: Path, env: Mapping[str, str], *,
               timeout_s: float, log_path: Path | None = None,
               stop_on_failure: bool = True) -> ChecksResult:
    """Run each command with ``bash -c`` in ``cwd``; a timeout kills its process group."""
    result = ChecksResult()
    log = log_path.open("ab") if log_path else None
    try:
        for command in commands:
            start = time.monotonic()
            proc = subprocess.Popen(["bash", "-c", command], cwd=cwd, env=dict(env),
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            timed_out = False
            try:
                out, _ = proc.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc)
                out, _ = proc.communicate()
            text = out.decode("utf-8", errors="replace")
            if log:
                log.write(f"$ {command}\n".encode() + out + f"[exit {proc.returncode}]\n".encode())
            run = CheckRun(command, proc.returncode, time.monotonic() - start, text, timed_out)
            result.runs.append(run)
            if not run.ok and stop_on_failure:
                break
    finally:
        if log:
            log.close()
    return result
