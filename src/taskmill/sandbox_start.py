"""Telling a sandbox that never started its command from a command that failed.

bubblewrap sets a sandbox up (its mounts, :mod:`taskmill.sandbox`) before it runs the init
(:mod:`taskmill.sandbox_init`), which runs the command. When the host changes a path it
mounts meanwhile (git renaming a file in ``.git``, an entry listed, then removed) bwrap
fails on its own ("bwrap: Can't find source path ...", "bwrap: Unable to mount source on
destination ...") and exits 1 before the command ran: neither the agent's turn nor the check
failed. So the init reports that it is about to start the command, by writing a byte to a
pipe (``started_fd`` of its configuration; :class:`StartReport`); a sandbox that exits
without that report, and with bwrap's own error (exit 1, a last line ``bwrap: ...``), never
ran the command (:func:`never_started`), and the runners (:func:`taskmill.agents.runner.
run_turn`, :func:`taskmill.mill.checks.run_checks`) start it again, up to
:data:`START_ATTEMPTS` times in all, :data:`START_PAUSES_S` apart. After the last, the
result says the sandbox failed (:func:`sandbox_failure`), which the mill reports as such: it
blocks the task instead of counting a failed turn or check.
"""

from __future__ import annotations

import os
from types import TracebackType

START_ATTEMPTS = 3
START_PAUSES_S = (0.05, 0.25)
"""The pause before each start after the first: a rename's window is short."""


class StartReport:
    """The pipe of one start: the init writes a byte to :attr:`write_fd` (passed to the
    sandbox) when the sandbox is set up and the command about to start."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()  # not inherited but where passed (pass_fds)
        os.set_blocking(self.read_fd, False)

    def spawned(self) -> None:
        """The sandbox is started: the runner's copy of the write end is closed, so the
        pipe ends when the sandbox's processes are gone."""
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def started(self) -> bool:
        """Whether the command started (ask once the sandbox has exited). In doubt (the
        write end still open somewhere, no byte) it says yes: a command that may have run
        is never run again."""
        self.spawned()
        try:
            return os.read(self.read_fd, 1) != b""
        except BlockingIOError:
            return True
        except OSError:
            return True

    def close(self) -> None:
        self.spawned()
        if self.read_fd >= 0:
            os.close(self.read_fd)
            self.read_fd = -1

    def __enter__(self) -> StartReport:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def start_pause(attempt: int) -> float:
    """The pause before start number ``attempt`` (2, 3, ...)."""
    return START_PAUSES_S[min(attempt - 2, len(START_PAUSES_S) - 1)]


def bwrap_error(exit_code: int | None, output: str) -> str | None:
    """bwrap's own error, when it failed as bwrap does (exit 1, its last line ``bwrap:
    ...``); else None."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if exit_code != 1 or not lines or not lines[-1].startswith("bwrap:"):
        return None
    return lines[-1]


def never_started(report: StartReport | None, exit_code: int | None, output: str) -> bool:
    """Whether a sandbox exited before it started its command: no start report and bwrap's
    own error in its output (both, so that a report lost on the way, through a wrapper that
    closes file descriptors, cannot start a command twice)."""
    return (report is not None and bwrap_error(exit_code, output) is not None
            and not report.started())


def sandbox_failure(attempts: int, exit_code: int | None, output: str) -> str:
    """What a result says when the sandbox never started the command: bwrap's error."""
    said = bwrap_error(exit_code, output) or "no message"
    return f"the sandbox could not start the command ({attempts} tries): {said[:300]}"
