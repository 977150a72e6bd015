"""The turn runner: process groups, timeouts, cancel, missing binaries, usage file, clean env."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from taskmill.agents.base import AgentConfig, Invocation, TurnRequest, Usage
from taskmill.agents.common import stderr_path
from taskmill.agents.exec import ExecAdapter
from taskmill.agents.runner import OutputBuffer, merge_usage_file, run_turn

PY = sys.executable


def make_request(tmp_path: Path, **overrides: Any) -> TurnRequest:
    worktree = tmp_path / "wt"
    worktree.mkdir(exist_ok=True)
    turn = tmp_path / "turn"
    base = TurnRequest(
        task_id="T-1",
        title="Do the thing",
        iteration=1,
        prompt="hello agent\n",
        worktree=worktree,
        home=tmp_path / "home",
        state_dir=turn / "state",
        prompt_file=turn / "prompt.md",
        usage_file=turn / "usage.json",
        log_path=turn / "agent.log",
        parent_env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SECRET_TOKEN": "s3cr3t"},
        taskmill_env={"TASKMILL_TASK_ID": "T-1", "TASKMILL_ITERATION": "1"},
        timeout_s=30.0,
    )
    return replace(base, **overrides)


def exec_config(*command: str, **kw: Any) -> AgentConfig:
    return AgentConfig(name="bot", adapter="exec", command=command, **kw)


def py(code: str) -> tuple[str, ...]:
    return (PY, "-c", code)


def process_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def wait_gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not process_alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_success_streams_stdout_to_log_and_stderr_aside(tmp_path: Path) -> None:
    request = make_request(tmp_path)
    code = (
        "import sys; data = sys.stdin.read(); print('{\"got\": %r}' % data.strip());"
        "print('oops', file=sys.stderr)"
    )
    result = run_turn(ExecAdapter(), exec_config(*py(code)), request)
    assert result.ok, result
    assert result.exit_code == 0 and not result.timed_out and not result.cancelled
    assert request.prompt_file.read_text() == "hello agent\n"
    assert request.log_path.read_text() == "{\"got\": 'hello agent'}\n"
    assert stderr_path(request.log_path).read_text() == "oops\n"
    assert result.usage.error is None
    assert result.log_path == request.log_path


def test_nonzero_exit_reports_last_stderr_line(tmp_path: Path) -> None:
    request = make_request(tmp_path)
    code = "import sys; print('first', file=sys.stderr); print('boom: bad', file=sys.stderr); sys.exit(3)"
    result = run_turn(ExecAdapter(), exec_config(*py(code)), request)
    assert result.exit_code == 3 and not result.ok
    assert result.usage.error == "exited with code 3: boom: bad"


def test_timeout_kills_whole_process_group_including_grandchild(tmp_path: Path) -> None:
    request = make_request(tmp_path, timeout_s=1.0)
    pid_file = tmp_path / "grandchild.pid"
    script = f"sleep 300 & echo $! > {pid_file}; wait"
    start = time.monotonic()
    result = run_turn(ExecAdapter(), exec_config("sh", "-c", script), request, kill_grace_s=1.0)
    assert time.monotonic() - start < 10
    assert result.timed_out and not result.ok
    assert result.usage.error is not None and "timed out after 1s" in result.usage.error
    grandchild = int(pid_file.read_text())
    assert wait_gone(grandchild), "the grandchild sleep survived the timeout"


def test_timeout_escalates_to_sigkill_when_sigterm_is_ignored(tmp_path: Path) -> None:
    request = make_request(tmp_path, timeout_s=0.5)
    pid_file = tmp_path / "stubborn.pid"
    script = f"trap '' TERM; sleep 300 & echo $! > {pid_file}; wait; wait"
    result = run_turn(ExecAdapter(), exec_config("sh", "-c", script), request, kill_grace_s=0.5)
    assert result.timed_out
    assert result.exit_code is not None and result.exit_code < 0  # killed by a signal
    assert wait_gone(int(pid_file.read_text()))


def test_timeout_uses_the_injected_clock(tmp_path: Path) -> None:
    ticks = iter(range(0, 10_000, 100))

    def clock() -> float:
        return float(next(ticks))

    request = make_request(tmp_path, timeout_s=250.0)
    start = time.monotonic()
    result = run_turn(ExecAdapter(), exec_config("sleep", "60"), request, clock=clock,
                      kill_grace_s=1.0)
    assert result.timed_out
    assert time.monotonic() - start < 10
    assert result.duration_s >= 250


def test_cancel_stops_the_turn(tmp_path: Path) -> None:
    request = make_request(tmp_path)
    pid_file = tmp_path / "child.pid"
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    start = time.monotonic()
    result = run_turn(
        ExecAdapter(),
        exec_config("sh", "-c", f"sleep 300 & echo $! > {pid_file}; wait"),
        request,
        cancel=cancel,
        kill_grace_s=1.0,
    )
    timer.cancel()
    assert time.monotonic() - start < 10
    assert result.cancelled and not result.timed_out and not result.ok
    assert result.usage.error == "cancelled"
    assert wait_gone(int(pid_file.read_text()))


def test_background_leftovers_are_killed_after_a_normal_exit(tmp_path: Path) -> None:
    request = make_request(tmp_path)
    pid_file = tmp_path / "server.pid"
    script = f"sleep 300 > /dev/null 2>&1 & echo $! > {pid_file}; echo done"
    start = time.monotonic()
    result = run_turn(ExecAdapter(), exec_config("sh", "-c", script), request, kill_grace_s=2.0)
    assert result.ok
    assert time.monotonic() - start < 5
    assert wait_gone(int(pid_file.read_text()))


def test_leftover_holding_stdout_does_not_hang_the_runner(tmp_path: Path) -> None:
    request = make_request(tmp_path)
    start = time.monotonic()
    result = run_turn(ExecAdapter(), exec_config("sh", "-c", "sleep 300 & echo hi"), request,
                      kill_grace_s=0.5)
    assert result.exit_code == 0
    assert time.monotonic() - start < 5
    assert request.log_path.read_text() == "hi\n"


def test_missing_binary_gives_127_and_a_fix(tmp_path: Path) -> None:
    request = make_request(tmp_path)
    result = run_turn(ExecAdapter(), exec_config("no-such-agent-cli-xyz", "--go"), request)
    assert result.exit_code == 127 and not result.ok
    error = result.usage.error or ""
    assert "command not found: 'no-such-agent-cli-xyz'" in error
    assert "[agents.bot]" in error and "command = " in error
    assert "no-such-agent-cli-xyz" in request.log_path.read_text()


def test_prepare_error_is_a_failed_turn_not_an_exception(tmp_path: Path) -> None:
    request = make_request(tmp_path)
    result = run_turn(ExecAdapter(), AgentConfig(name="bot", adapter="exec"), request)
    assert result.exit_code is None and not result.ok
    assert "sets no command" in (result.usage.error or "")


def test_missing_api_key_is_a_failed_turn(tmp_path: Path) -> None:
    request = make_request(tmp_path)
    config = exec_config("true", api_key_env="NOT_SET_ANYWHERE")
    result = run_turn(ExecAdapter(), config, request)
    assert result.exit_code is None and not result.ok
    assert "export NOT_SET_ANYWHERE" in (result.usage.error or "")


def test_usage_file_is_merged_and_stale_one_removed(tmp_path: Path) -> None:
    request = make_request(tmp_path)
    request.usage_file.parent.mkdir(parents=True)
    request.usage_file.write_text(json.dumps({"input_tokens": 999}))
    result = run_turn(ExecAdapter(), exec_config("true"), request)
    assert result.usage.input_tokens == 0  # the previous turn's file was removed

    code = (
        "import json, os; json.dump({'input_tokens': 120, 'output_tokens': 30, "
        "'cost_usd': 0.25, 'session_id': 'abc'}, open(os.environ['TASKMILL_USAGE_FILE'], 'w'))"
    )
    result = run_turn(ExecAdapter(), exec_config(*py(code), model="m1"), request)
    usage = result.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cost_usd) == (120, 30, 0.25)
    assert usage.session_id == "abc" and usage.model == "m1"


def test_merge_usage_file_figures_win(tmp_path: Path) -> None:
    path = tmp_path / "u.json"
    usage = Usage(input_tokens=5, output_tokens=6, cost_usd=1.0, session_id="s")
    path.write_text(json.dumps({"output_tokens": 60, "cost_usd": 2.5, "rate_limited": True,
                                "retry_after_s": 30}))
    merge_usage_file(usage, path)
    assert usage == Usage(input_tokens=5, output_tokens=60, cost_usd=2.5, session_id="s",
                          rate_limited=True, retry_after_s=30.0)
    path.write_text("{not json")
    merge_usage_file(usage, path)
    assert usage.error is not None and "unreadable usage file" in usage.error


def dump_env_code(target: Path) -> tuple[str, ...]:
    return py(f"import json, os; json.dump(dict(os.environ), open({str(target)!r}, 'w'))")


def test_clean_env_hides_parent_secrets_unless_passed(tmp_path: Path) -> None:
    request = make_request(tmp_path)
    dump = tmp_path / "env.json"
    result = run_turn(ExecAdapter(), exec_config(*dump_env_code(dump), env={"FOO": "bar"}),
                      request)
    assert result.ok, result.usage.error
    env = json.loads(dump.read_text())
    assert "SECRET_TOKEN" not in env
    assert env["HOME"] == str(request.home)
    assert env["PATH"] == request.parent_env["PATH"]
    assert env["FOO"] == "bar"
    assert env["TASKMILL_PROMPT_FILE"] == str(request.prompt_file)
    assert env["TASKMILL_USAGE_FILE"] == str(request.usage_file)
    assert env["TASKMILL_TASK_ID"] == "T-1" and env["TASKMILL_ITERATION"] == "1"
    unexpected = set(env) - {
        "PATH", "HOME", "LANG", "TERM", "NO_COLOR", "CI", "USER", "FOO", "LC_ALL", "TMPDIR",
        "TASKMILL_PROMPT_FILE", "TASKMILL_USAGE_FILE", "TASKMILL_TASK_ID", "TASKMILL_ITERATION",
        "TASKMILL_TURN_ID",  # the turn's containment marker (taskmill.containment)
        "PWD", "SHLVL", "_", "LC_CTYPE",
    }
    assert not unexpected, unexpected

    config = exec_config(*dump_env_code(dump), pass_env=("SECRET_TOKEN", "ABSENT_VAR"))
    assert run_turn(ExecAdapter(), config, request).ok
    env = json.loads(dump.read_text())
    assert env["SECRET_TOKEN"] == "s3cr3t"
    assert "ABSENT_VAR" not in env


def test_runs_in_the_worktree(tmp_path: Path) -> None:
    request = make_request(tmp_path)
    result = run_turn(ExecAdapter(), exec_config("pwd"), request)
    assert request.log_path.read_text().strip() == str(request.worktree)
    assert result.ok


def test_missing_worktree_is_reported(tmp_path: Path) -> None:
    request = make_request(tmp_path, worktree=tmp_path / "nope")
    result = run_turn(ExecAdapter(), exec_config("true"), request)
    assert result.exit_code is None and "does not exist" in (result.usage.error or "")


def test_large_prompt_on_stdin_is_fed_fully(tmp_path: Path) -> None:
    prompt = "x" * 1_000_000
    request = make_request(tmp_path, prompt=prompt)
    code = "import sys; print(len(sys.stdin.read()))"
    result = run_turn(ExecAdapter(), exec_config(*py(code)), request)
    assert result.ok and request.log_path.read_text().strip() == "1000000"


def test_agent_that_ignores_stdin_does_not_block(tmp_path: Path) -> None:
    request = make_request(tmp_path, prompt="y" * 2_000_000)
    result = run_turn(ExecAdapter(), exec_config("true"), request)
    assert result.exit_code == 0


class ExplodingParser(ExecAdapter):
    def parse(self, config: AgentConfig, request: TurnRequest, output: str,
              exit_code: int | None) -> Usage:
        raise RuntimeError("parser bug")


def test_parser_crash_does_not_lose_the_turn(tmp_path: Path) -> None:
    result = run_turn(ExplodingParser(), exec_config("true"), make_request(tmp_path))
    assert result.exit_code == 0
    assert "parser bug" in (result.usage.error or "")


def test_large_output_is_bounded_in_memory_but_complete_in_the_log(tmp_path: Path) -> None:
    seen: list[str] = []

    class Recording(ExecAdapter):
        def parse(self, config: AgentConfig, request: TurnRequest, output: str,
                  exit_code: int | None) -> Usage:
            seen.append(output)
            return Usage()

    code = "import sys\nfor i in range(20000): print('{\"line\": %d}' % i)"
    request = make_request(tmp_path)
    result = run_turn(Recording(), exec_config(*py(code)), request, max_output_bytes=10_000)
    assert result.ok
    assert request.log_path.read_text().count("\n") == 20000
    output = seen[0]
    assert len(output) < 300_000
    assert output.rstrip().endswith('{"line": 19999}')
    assert output.startswith('{"line": 0}')
    assert "bytes of output omitted" in output


@pytest.mark.parametrize(
    ("chunks", "start", "end"),
    [([b"abc\n" * 10], "abc\n", "abc\n"), ([b"a" * 7, b"b\n" * 20, b"tail\n"], "", "b\ntail\n")],
)
def test_output_buffer_keeps_head_and_tail(chunks: list[bytes], start: str, end: str) -> None:
    buf = OutputBuffer(limit=16, head=8)
    for chunk in chunks:
        buf.add(chunk)
    text = buf.text()
    assert buf.total == sum(map(len, chunks)) and buf.truncated
    assert buf.tail_size <= 16
    assert text.startswith(start) and text.endswith(end)
    assert "bytes of output omitted]" in text


def test_output_buffer_small_is_verbatim() -> None:
    buf = OutputBuffer(limit=100)
    buf.add(b"one\n")
    buf.add(b"two")
    assert buf.text() == "one\ntwo"


def fake_adapter(prepare: Callable[[AgentConfig, TurnRequest], Invocation]) -> Any:
    class Fake:
        name = "fake"

        def prepare(self, config: AgentConfig, request: TurnRequest) -> Invocation:
            return prepare(config, request)

        def parse(self, config: AgentConfig, request: TurnRequest, output: str,
                  exit_code: int | None) -> Usage:
            return Usage()

    return Fake()


def test_not_executable_gives_126(tmp_path: Path) -> None:
    script = tmp_path / "agent.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    adapter = fake_adapter(lambda c, r: Invocation(argv=(str(script),), env={"PATH": "/bin"},
                                                   cwd=r.worktree))
    result = run_turn(adapter, exec_config("x"), make_request(tmp_path))
    assert result.exit_code == 126
    assert "cannot execute" in (result.usage.error or "")


def test_interrupt_while_waiting_kills_the_group_and_reraises(tmp_path: Path) -> None:
    calls = 0

    def clock() -> float:
        nonlocal calls
        calls += 1
        if calls > 20:
            raise KeyboardInterrupt
        return 0.0

    pid_file = tmp_path / "child.pid"
    config = exec_config("sh", "-c", f"sleep 300 & echo $! > {pid_file}; wait")
    with pytest.raises(KeyboardInterrupt):
        run_turn(ExecAdapter(), config, make_request(tmp_path), clock=clock)
    assert wait_gone(int(pid_file.read_text()))


class BuggyPrepare(ExecAdapter):
    def prepare(self, config: AgentConfig, request: TurnRequest) -> Invocation:
        raise KeyError("oops")


def test_adapter_bug_in_prepare_is_a_failed_turn(tmp_path: Path) -> None:
    result = run_turn(BuggyPrepare(), exec_config("true"), make_request(tmp_path))
    assert result.exit_code is None and "failed to prepare: KeyError('oops')" in (
        result.usage.error or "")


def test_process_escaping_the_group_does_not_hang_the_runner(tmp_path: Path) -> None:
    pid_file = tmp_path / "escaped.pid"
    config = exec_config("sh", "-c", f"setsid sleep 60 & echo $! > {pid_file}; echo hi")
    start = time.monotonic()
    try:
        result = run_turn(ExecAdapter(), config, make_request(tmp_path), kill_grace_s=0.5)
        assert result.exit_code == 0
        assert time.monotonic() - start < 10
    finally:
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_output_buffer_head_and_tail_never_overlap() -> None:
    buf = OutputBuffer(limit=16, head=8)
    buf.add(b"0123456789\n")
    buf.add(b"abcdefghi\n")
    assert buf.truncated
    assert buf.text() == "0123456789\nabcdefghi\n"  # contiguous: nothing omitted or repeated
    buf.add(b"ABCDEFGHIJKLMNOPQRS\n")
    text = buf.text()
    assert text.count("0123") <= 1 and "omitted" in text
