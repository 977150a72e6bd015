"""Run one agent turn: start the CLI, stream its output, enforce the wall-clock limit.

:func:`run_turn` is the only place that starts agent processes. For every adapter it:

* writes the prompt to ``request.prompt_file`` and removes a stale ``request.usage_file``;
* calls ``adapter.prepare`` (a configuration error becomes a failed :class:`TurnResult`);
* starts the process in its own session (``start_new_session=True``, so its process group
  id is its pid) with ``cwd``, ``env`` (exactly, nothing inherited) and stdin from the
  :class:`Invocation` (stdin is ``/dev/null`` when it has no text);
* copies stdout verbatim to ``request.log_path`` (so the log stays valid NDJSON) and stderr
  to ``<log_path>.stderr``; stdout is also kept in memory for ``adapter.parse``: all of it up
  to ``max_output_bytes``, beyond that the first ``head_bytes`` plus the last
  ``max_output_bytes``;
* on timeout or ``cancel``: SIGTERM to the whole process group, ``kill_grace_s`` later
  (at once when ``kill_now`` is set) SIGKILL, then reaps it. When the agent exits by
  itself, processes it left behind in its group (servers started with ``&``) get the same
  treatment: a turn leaves nothing running. The leader is only reaped after its group was
  signalled, so the group id cannot be reused by an unrelated process meanwhile.
* under ``containment`` (:mod:`taskmill.containment`; default: the process group only):
  ``pidns`` runs the turn in a PID namespace of its own, so that processes that started
  their own session (``setsid``) die with the turn too; ``group`` sweeps them by the
  turn's ``TASKMILL_TURN_ID`` after the group was killed. ``argv[0]`` is resolved on the
  invocation's PATH before it is wrapped. When the containment has a sandbox
  (:mod:`taskmill.sandbox`) the turn runs in it, seeing ``mounts`` (default: the worktree,
  the agent's HOME and the turn's state directory writable, the proxy and capability
  sockets of the request), and gets ``IS_SANDBOX=1``; nothing else sets that variable.
  When a cgroup holds ``[sandbox]`` limits (:mod:`taskmill.cgroups`) the turn runs in one
  of its own; a limit it hit is in :attr:`TurnResult.limit_hit` and first in
  ``usage.error``, and whatever is left in the group is killed. A sandbox that exits
  before it started the command (bwrap's own setup failed: :mod:`taskmill.sandbox_start`)
  is started again, ``pause`` apart, up to ``START_ATTEMPTS`` times; after the last,
  :attr:`TurnResult.sandbox_failed` says so (and ``usage.error``).
* calls ``adapter.parse`` and merges ``request.usage_file`` (JSON written by the agent,
  e.g. ``{"input_tokens": N, "output_tokens": N, "cost_usd": X}``; its figures win), then
  rejects figures no agent can mean (negative, not finite, absurdly large): they are not
  counted and are listed in ``usage.invalid``.

It never raises because an agent failed: a missing binary gives ``exit_code=127`` and a
``usage.error`` that names the command and how to fix it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from taskmill.agents.base import (
    AgentAdapter,
    AgentConfig,
    Invocation,
    TurnRequest,
    TurnResult,
    Usage,
)
from taskmill.agents.common import (
    TOKEN_FIELDS,
    AgentConfigError,
    as_float,
    short,
    stderr_path,
    usage_cost,
    usage_tokens,
    validate_usage,
)
from taskmill.cgroups import limit_message
from taskmill.containment import MARKER_VAR, Containment, new_marker, resolve_command, sweep
from taskmill.sandbox import Mounts
from taskmill.sandbox_start import (
    START_ATTEMPTS,
    StartReport,
    never_started,
    sandbox_failure,
    start_pause,
)

MAX_OUTPUT_BYTES = 20 * 1024 * 1024
HEAD_BYTES = 256 * 1024
STDERR_TAIL_BYTES = 64 * 1024
KILL_GRACE_S = 3.0
POLL_S = 0.05
POLL_MIN_S = 0.002
EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126

Clock = Callable[[], float]


class OutputBuffer:
    """Bytes of a stream kept in bounded memory: a head, and a tail of at most ``limit``."""

    def __init__(self, limit: int = MAX_OUTPUT_BYTES, head: int = HEAD_BYTES) -> None:
        self.limit = limit
        self.head_limit = head
        self.head = bytearray()
        self.tail: deque[bytes] = deque()
        self.tail_size = 0
        self.total = 0
        self.truncated = False
        self._lock = threading.Lock()

    def add(self, chunk: bytes) -> None:
        with self._lock:
            self._add(chunk)

    def _add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        if len(self.head) < self.head_limit:
            room = self.head_limit - len(self.head)
            self.head += chunk[:room]
        self.tail.append(chunk)
        self.tail_size += len(chunk)
        while self.tail_size > self.limit and self.tail:
            extra = self.tail_size - self.limit
            first = self.tail[0]
            if len(first) <= extra:
                self.tail.popleft()
                self.tail_size -= len(first)
            else:
                self.tail[0] = first[extra:]
                self.tail_size -= extra
            self.truncated = True

    def text(self) -> str:
        """Everything if it fit; otherwise the head, a marker line and the tail, cut at lines.

        The head only covers bytes before the tail, so no line appears twice.
        """
        with self._lock:
            tail = b"".join(self.tail)
            head = bytes(self.head[: max(0, self.total - len(tail))])
            total = self.total
        if len(head) + len(tail) == total:
            return (head + tail).decode("utf-8", errors="replace")
        head = head[: head.rfind(b"\n") + 1]
        newline = tail.find(b"\n")
        tail = tail[newline + 1 :] if newline >= 0 else b""
        marker = f"[taskmill: {total - len(head) - len(tail)} bytes of output omitted]\n"
        return (head + marker.encode() + tail).decode("utf-8", errors="replace")


def _pump(stream: IO[bytes], sink: IO[bytes], buffer: OutputBuffer) -> None:
    """Copy ``stream`` to ``sink`` and ``buffer`` until EOF, then close ``stream``."""
    read = getattr(stream, "read1", stream.read)
    try:
        while True:
            chunk = read(65536)
            if not chunk:
                break
            buffer.add(chunk)
            try:
                sink.write(chunk)
                sink.flush()
            except (OSError, ValueError):
                pass
    except (OSError, ValueError):
        pass
    finally:
        with contextlib.suppress(OSError):
            stream.close()


def _feed(stream: IO[bytes], data: bytes) -> None:
    with contextlib.suppress(OSError, ValueError):
        stream.write(data)
    with contextlib.suppress(OSError, ValueError):
        stream.close()


def _exited(pid: int) -> bool:
    """Whether ``pid`` has exited, without reaping it (it keeps holding its pid/pgid)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_until(done: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    delay = POLL_MIN_S
    while not done():
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 1.5, POLL_S)
    return True


def _supervise(
    pid: int,
    deadline: float,
    cancel: threading.Event | None,
    clock: Clock,
    grace: float,
    readers: list[threading.Thread],
    kill_now: threading.Event | None = None,
) -> tuple[bool, bool]:
    """Wait for the agent, stop its group at the deadline or on cancel; (timed_out, cancelled).

    Returns with the group signalled (SIGTERM, then SIGKILL after ``grace``) and the leader
    exited but not reaped, so ``pid`` still names the group throughout.
    """
    timed_out = cancelled = False
    # poll quickly at first (short turns end fast), backing off to POLL_S
    delay = POLL_MIN_S
    while not _exited(pid):
        if cancel is not None and cancel.is_set():
            cancelled = True
            break
        if clock() >= deadline:
            timed_out = True
            break
        if cancel is not None:
            cancel.wait(delay)
        else:
            time.sleep(delay)
        delay = min(delay * 1.5, POLL_S)
    # start_new_session: the leader's pid is the group id
    if kill_now is not None and kill_now.is_set():
        _signal_group(pid, signal.SIGKILL)
        return timed_out, cancelled
    _signal_group(pid, signal.SIGTERM)
    if timed_out or cancelled:
        _wait_until(lambda: _exited(pid) or (kill_now is not None and kill_now.is_set()),
                    grace)
    else:
        # The agent exited by itself; whatever it left in its group got SIGTERM, and the
        # grace period only lasts while something still holds the output pipes open.
        _wait_until(lambda: not any(t.is_alive() for t in readers), grace)
    _signal_group(pid, signal.SIGKILL)
    return timed_out, cancelled


def _failed(
    request: TurnRequest, error: str, exit_code: int | None, start: float, clock: Clock
) -> TurnResult:
    with contextlib.suppress(OSError):
        request.log_path.parent.mkdir(parents=True, exist_ok=True)
        with request.log_path.open("a", encoding="utf-8") as fh:
            fh.write(f"[taskmill] {error}\n")
    return TurnResult(
        exit_code=exit_code,
        timed_out=False,
        duration_s=max(0.0, clock() - start),
        usage=Usage(error=error),
        log_path=request.log_path,
    )


def _not_found_message(adapter: AgentAdapter, config: AgentConfig, inv: Invocation) -> str:
    command = inv.argv[0] if inv.argv else "<empty command>"
    hint = getattr(adapter, "install_hint", None) or "install it"
    return (
        f"command not found: {command!r} (agent {config.name!r}, adapter {config.adapter!r}, "
        f"PATH={inv.env.get('PATH', '')}). Fix: {hint}, or set command = [\"/path/to/"
        f"{Path(command).name}\"] in [agents.{config.name}] of .taskmill/config.toml"
    )


def merge_usage_file(usage: Usage, path: Path) -> None:
    """Merge the agent-written usage file into ``usage`` (its valid figures win when present;
    invalid ones are recorded in ``usage.invalid``, see :func:`~taskmill.agents.common.usage_tokens`)."""
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return
    except (OSError, ValueError) as exc:
        if usage.error is None:
            usage.error = f"unreadable usage file {path}: {exc}"
        return
    if not isinstance(data, dict):
        return
    # an invalid figure is recorded in usage.invalid and does not win over the adapter's
    for key in TOKEN_FIELDS:
        if data.get(key) is not None:
            before = len(usage.invalid)
            value = usage_tokens(usage, key, data[key])
            if len(usage.invalid) == before:
                setattr(usage, key, value)
    if data.get("cost_usd") is not None:
        cost = usage_cost(usage, "cost_usd", data["cost_usd"])
        if cost is not None:
            usage.cost_usd = cost
    for key in ("session_id", "model", "error"):
        if isinstance(data.get(key), str):
            setattr(usage, key, data[key])
    if isinstance(data.get("rate_limited"), bool):
        usage.rate_limited = data["rate_limited"]
    if "retry_after_s" in data:
        usage.retry_after_s = as_float(data["retry_after_s"])


def run_turn(
    adapter: AgentAdapter,
    config: AgentConfig,
    request: TurnRequest,
    *,
    cancel: threading.Event | None = None,
    kill_now: threading.Event | None = None,
    containment: Containment | None = None,
    mounts: Mounts | None = None,
    clock: Clock = time.monotonic,
    kill_grace_s: float = KILL_GRACE_S,
    max_output_bytes: int = MAX_OUTPUT_BYTES,
    pause: Callable[[float], None] = time.sleep,
) -> TurnResult:
    """Run one turn of ``adapter`` for ``request``; see the module docstring."""
    contain = containment or Containment("group")
    start = clock()
    try:
        for directory in (request.home, request.state_dir, request.log_path.parent,
                          request.prompt_file.parent, request.usage_file.parent):
            directory.mkdir(parents=True, exist_ok=True)
        request.prompt_file.write_text(request.prompt, encoding="utf-8")
        request.usage_file.unlink(missing_ok=True)
        invocation = adapter.prepare(config, request)
    except (AgentConfigError, OSError) as exc:
        return _failed(request, f"cannot prepare agent {config.name!r}: {exc}", None, start, clock)
    except Exception as exc:  # an adapter bug must not take the mill down
        return _failed(request, f"adapter {config.adapter!r} failed to prepare: {exc!r}", None,
                       start, clock)

    if not invocation.cwd.is_dir():
        return _failed(request, f"working directory {invocation.cwd} does not exist", None,
                       start, clock)
    try:
        out_log = request.log_path.open("wb")
        try:
            err_log = stderr_path(request.log_path).open("wb")
        except OSError:
            out_log.close()
            raise
    except OSError as exc:
        return _failed(request, f"cannot write the agent log: {exc}", None, start, clock)
    marker = new_marker()
    env = {**invocation.env, MARKER_VAR: marker}
    sandbox = contain.sandbox
    if sandbox is not None:
        env["IS_SANDBOX"] = "1"
        mounts = mounts or Mounts.for_worktree(
            request.worktree, writable=(request.home, request.state_dir),
            proxy_port=request.proxy_port, proxy_socket=request.proxy_socket,
            capability_socket=request.capability_socket)
    attempts = START_ATTEMPTS if sandbox is not None else 1
    sandbox_failed = None
    with out_log, err_log:
        for attempt in range(1, attempts + 1):
            if attempt > 1:  # the sandbox never started the command: start it again
                pause(start_pause(attempt))
            with contextlib.ExitStack() as stack:
                report = stack.enter_context(StartReport()) if sandbox is not None else None
                try:
                    if not invocation.argv:
                        raise FileNotFoundError("<empty command>")
                    argv0 = resolve_command(invocation.argv[0], env, invocation.cwd)
                    argv = [argv0, *invocation.argv[1:]]
                    group = contain.open_group()  # the limits, when a cgroup holds them
                    prelude = group.prelude if group is not None else ""
                    if sandbox is not None and mounts is not None:
                        argv = sandbox.command(
                            argv, mounts, cwd=invocation.cwd, env=env, prelude=prelude,
                            started_fd=report.write_fd if report is not None else None)
                    else:
                        argv = contain.command(argv, prelude)
                    try:
                        proc = subprocess.Popen(
                            group.wrap(argv) if group is not None else argv,
                            cwd=invocation.cwd,
                            env=env,
                            stdin=(subprocess.PIPE if invocation.stdin is not None
                                   else subprocess.DEVNULL),
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            start_new_session=True,
                            close_fds=True,
                            pass_fds=(report.write_fd,) if report is not None else (),
                        )
                    except BaseException:
                        if group is not None:
                            group.close()
                        raise
                except FileNotFoundError:
                    message = _not_found_message(adapter, config, invocation)
                    return _failed(request, message, EXIT_NOT_FOUND, start, clock)
                except PermissionError as exc:
                    return _failed(request, f"cannot execute {invocation.argv[0]!r}: {exc}",
                                   EXIT_NOT_EXECUTABLE, start, clock)
                except (OSError, ValueError) as exc:
                    return _failed(request, f"cannot start {invocation.argv!r}: {exc}", None,
                                   start, clock)
                if report is not None:
                    report.spawned()

                assert proc.stdout is not None and proc.stderr is not None
                out_buf = OutputBuffer(max_output_bytes)
                err_buf = OutputBuffer(STDERR_TAIL_BYTES, head=0)
                threads = [
                    threading.Thread(target=_pump, args=(proc.stdout, out_log, out_buf),
                                     daemon=True),
                    threading.Thread(target=_pump, args=(proc.stderr, err_log, err_buf),
                                     daemon=True),
                ]
                if invocation.stdin is not None and proc.stdin is not None:
                    data = invocation.stdin.encode("utf-8")
                    threads.append(threading.Thread(target=_feed, args=(proc.stdin, data),
                                                    daemon=True))
                for thread in threads:
                    thread.start()

                try:
                    timed_out, cancelled = _supervise(
                        proc.pid, start + request.timeout_s, cancel, clock, kill_grace_s,
                        threads[:2], kill_now,
                    )
                except BaseException:  # KeyboardInterrupt and the like: leave nothing running
                    _signal_group(proc.pid, signal.SIGKILL)
                    raise
                finally:
                    exit_code = proc.wait()
                    if contain.mode == "group":  # what left the group (setsid) carries the marker
                        sweep(marker)
                    # what hit a limit, then whatever is left in the cgroup is killed
                    limit_hit = group.close() if group is not None else None
                    # Each thread closes its own pipe when done. One still blocked on a pipe
                    # held open by a process that left the group (setsid) is left behind, as a
                    # daemon.
                    for thread in threads:
                        thread.join(timeout=kill_grace_s)
                again = never_started(report, exit_code, err_buf.text())
            if not again or timed_out or cancelled:
                break
            if attempt == attempts:
                sandbox_failed = sandbox_failure(attempts, exit_code, err_buf.text())
    duration = max(0.0, clock() - start)

    output = out_buf.text()
    try:
        usage = adapter.parse(config, request, output, exit_code)
    except Exception as exc:  # a parser bug must not lose the turn
        usage = Usage(error=f"adapter {config.adapter!r} could not parse the output: {exc!r}")
    merge_usage_file(usage, request.usage_file)
    validate_usage(usage)
    if timed_out:
        usage.error = f"timed out after {request.timeout_s:g}s" + (
            f" ({usage.error})" if usage.error else "")
    elif cancelled:
        usage.error = "cancelled"
    elif sandbox_failed is not None:
        usage.error = sandbox_failed
    elif exit_code != 0 and usage.error is None:
        last = [line for line in err_buf.text().splitlines() if line.strip()]
        usage.error = f"exited with code {exit_code}" + (
            f": {short(last[-1], 300)}" if last else "")
    if limit_hit:  # first: what the agent (and the user) should read
        usage.error = limit_message(limit_hit) + (f"; {usage.error}" if usage.error else "")
    return TurnResult(
        exit_code=exit_code,
        timed_out=timed_out,
        duration_s=duration,
        usage=usage,
        log_path=request.log_path,
        cancelled=cancelled,
        limit_hit=limit_hit,
        sandbox_failed=sandbox_failed,
    )
