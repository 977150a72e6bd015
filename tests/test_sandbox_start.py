"""A sandbox whose bwrap fails before the command starts (taskmill.sandbox_start): started
again, and after the last try reported as the sandbox's failure, not the agent's or the
check's. A fake bwrap fails the first starts, then runs what the real one would run (the
init and the command; with ``real``, the real bwrap)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from taskmill.agents.base import AgentConfig
from taskmill.agents.exec import ExecAdapter
from taskmill.agents.runner import run_turn
from taskmill.containment import Containment
from taskmill.mill.checks import run_checks
from taskmill.sandbox import Sandbox
from taskmill.sandbox_init import INIT
from taskmill.sandbox_start import START_ATTEMPTS, START_PAUSES_S, StartReport, never_started
from test_sandbox import bwrap as real_bwrap
from test_sandbox import sandbox_of, turn_request, why_not

BWRAP_ERROR = "bwrap: Can't find source path /repo/.git/ORIG_HEAD: No such file or directory"


CLOSE_FDS = "import os, sys; os.closerange(3, 4096); os.execvp(sys.argv[1], sys.argv[1:])"


def fake_bwrap(tmp_path: Path, fails: int, real: str | None = None,
               close_fds: bool = False) -> tuple[Path, Path]:
    """A bwrap that fails its first ``fails`` starts as bwrap does on a setup error, then
    runs the real bwrap (``real``) or, without one, what follows its ``--`` (``close_fds``:
    closing every file descriptor but 0-2 first, as a wrapper might). Returns it and the
    file counting its starts."""
    count = tmp_path / "bwrap-starts"
    script = tmp_path / "fake-bwrap"
    closer = f"{sys.executable} -c {CLOSE_FDS!r} " if close_fds else ""
    then = f'exec {real} "$@"' if real else ('while [ "$1" != "--" ]; do shift; done\n'
                                             f'shift\nexec {closer}"$@"')
    script.write_text(f"""#!/bin/sh
n=$(cat "{count}" 2>/dev/null || echo 0)
echo $((n + 1)) > "{count}"
if [ "$n" -lt {fails} ]; then
  echo "{BWRAP_ERROR}" >&2
  exit 1
fi
{then}
""")
    script.chmod(0o755)
    return script, count


def starts(count: Path) -> int:
    return int(count.read_text()) if count.exists() else 0


def plain_sandbox(bwrap: Path) -> Sandbox:
    """A sandbox for the fake bwrap that runs the command as it is (no real one needed)."""
    return Sandbox(bwrap=str(bwrap), python=sys.executable, hidden=(), read_only=(),
                   writable=())


def agent(script: str) -> AgentConfig:
    return AgentConfig(name="x", adapter="exec", command=(sys.executable, "-c", script))


RUNS = 'open("runs.txt", "a").write("ran\\n")'


# -- the report --------------------------------------------------------------------------------


def test_the_init_reports_before_the_command_starts() -> None:
    for argv in (["true"], ["no-such-command-anywhere"]):  # exec failing is the command's
        with StartReport() as report:
            proc = subprocess.run([sys.executable, "-I", "-S", "-c", INIT,
                                   json.dumps({"started_fd": report.write_fd}), *argv],
                                  pass_fds=(report.write_fd,), capture_output=True,
                                  check=False)
            report.spawned()
            assert report.started(), proc.stderr
    with StartReport() as report:  # what failed before the init ran reported nothing
        subprocess.run(["sh", "-c", "exit 1"], pass_fds=(report.write_fd,), check=False)
        assert not report.started()


def test_never_started_needs_no_report_and_bwraps_own_error() -> None:
    with StartReport() as report:
        assert never_started(report, 1, "some output\n" + BWRAP_ERROR + "\n")
        assert not never_started(report, 1, BWRAP_ERROR + "\nthen the command's line\n")
        assert not never_started(report, 2, BWRAP_ERROR)
        assert not never_started(None, 1, BWRAP_ERROR)  # not sandboxed
    with StartReport() as report:
        os.write(report.write_fd, b"1")
        assert not never_started(report, 1, BWRAP_ERROR)  # the command said it, not bwrap


def test_a_report_still_open_elsewhere_counts_as_started() -> None:
    with StartReport() as report:
        held = os.dup(report.write_fd)  # a process of the sandbox still holding it
        try:
            assert report.started()
        finally:
            os.close(held)


# -- a turn ------------------------------------------------------------------------------------


@pytest.mark.parametrize("real", [False, True])
def test_a_turn_whose_sandbox_failed_to_set_up_is_started_again_and_runs_once(
        tmp_path: Path, real: bool) -> None:
    if real:
        if real_bwrap is None:
            pytest.skip(f"no sandbox here: {why_not}")
        sandbox, slot = sandbox_of(tmp_path)
        bwrap, count = fake_bwrap(tmp_path, fails=1, real=sandbox.bwrap)
        sandbox = replace(sandbox, bwrap=str(bwrap))
    else:
        slot = tmp_path / "slot"
        slot.mkdir()
        bwrap, count = fake_bwrap(tmp_path, fails=1)
        sandbox = plain_sandbox(bwrap)
    pauses: list[float] = []
    result = run_turn(ExecAdapter(), agent(RUNS), turn_request(tmp_path, slot),
                      containment=Containment("pidns", sandbox=sandbox), pause=pauses.append)
    assert result.ok and result.sandbox_failed is None, result.usage.error
    assert (slot / "runs.txt").read_text() == "ran\n"
    assert starts(count) == 2 and pauses == [START_PAUSES_S[0]]


def test_a_sandbox_that_never_starts_is_its_failure_not_the_agents(tmp_path: Path) -> None:
    slot = tmp_path / "slot"
    slot.mkdir()
    bwrap, count = fake_bwrap(tmp_path, fails=99)
    pauses: list[float] = []
    result = run_turn(ExecAdapter(), agent(RUNS), turn_request(tmp_path, slot),
                      containment=Containment("pidns", sandbox=plain_sandbox(bwrap)),
                      pause=pauses.append)
    assert not result.ok and result.exit_code == 1
    assert result.sandbox_failed is not None and BWRAP_ERROR in result.sandbox_failed
    assert f"{START_ATTEMPTS} tries" in result.sandbox_failed
    assert result.usage.error == result.sandbox_failed
    assert not (slot / "runs.txt").exists()
    assert starts(count) == START_ATTEMPTS and pauses == list(START_PAUSES_S)


def test_an_agent_that_fails_like_bwrap_is_not_started_again(tmp_path: Path) -> None:
    slot = tmp_path / "slot"
    slot.mkdir()
    bwrap, count = fake_bwrap(tmp_path, fails=0)
    script = RUNS + f"; import sys; sys.stderr.write({BWRAP_ERROR!r} + '\\n'); sys.exit(1)"
    pauses: list[float] = []
    result = run_turn(ExecAdapter(), agent(script), turn_request(tmp_path, slot),
                      containment=Containment("pidns", sandbox=plain_sandbox(bwrap)),
                      pause=pauses.append)
    assert result.exit_code == 1 and result.sandbox_failed is None
    assert (slot / "runs.txt").read_text() == "ran\n"
    assert starts(count) == 1 and pauses == []


@pytest.mark.parametrize("exit_code", [0, 1])
def test_a_report_lost_on_the_way_starts_nothing_twice(tmp_path: Path, exit_code: int) -> None:
    slot = tmp_path / "slot"
    slot.mkdir()
    bwrap, count = fake_bwrap(tmp_path, fails=0, close_fds=True)
    pauses: list[float] = []
    result = run_turn(ExecAdapter(), agent(RUNS + f"; raise SystemExit({exit_code})"),
                      turn_request(tmp_path, slot),
                      containment=Containment("pidns", sandbox=plain_sandbox(bwrap)),
                      pause=pauses.append)
    assert result.exit_code == exit_code and result.sandbox_failed is None
    assert (slot / "runs.txt").read_text() == "ran\n"
    assert starts(count) == 1 and pauses == []


# -- checks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fails", [1, 99])
def test_checks_whose_sandbox_failed_to_set_up(tmp_path: Path, fails: int) -> None:
    slot = tmp_path / "slot"
    slot.mkdir()
    bwrap, count = fake_bwrap(tmp_path, fails=fails)
    pauses: list[float] = []
    result = run_checks(["echo one >> runs.txt", "echo two >> runs.txt"], slot,
                        {"PATH": os.environ["PATH"]}, timeout_s=30,
                        containment=Containment("pidns", sandbox=plain_sandbox(bwrap)),
                        pause=pauses.append)
    if fails == 1:
        assert result.ok and result.sandbox_failed is None
        assert (slot / "runs.txt").read_text() == "one\ntwo\n"
        assert starts(count) == 3 and pauses == [START_PAUSES_S[0]]
        return
    assert not result.ok and len(result.runs) == 1  # the checks stop there
    assert result.sandbox_failed is not None and BWRAP_ERROR in result.sandbox_failed
    assert result.to_json()[0]["sandbox_failed"] == result.sandbox_failed
    assert not (slot / "runs.txt").exists()
    assert starts(count) == START_ATTEMPTS and pauses == list(START_PAUSES_S)


def test_a_failing_check_is_not_started_again(tmp_path: Path) -> None:
    slot = tmp_path / "slot"
    slot.mkdir()
    bwrap, count = fake_bwrap(tmp_path, fails=0)
    result = run_checks([f"echo {BWRAP_ERROR!r} >&2; exit 1"], slot,
                        {"PATH": os.environ["PATH"]}, timeout_s=30,
                        containment=Containment("pidns", sandbox=plain_sandbox(bwrap)),
                        pause=lambda s: None)
    assert not result.ok and result.sandbox_failed is None
    assert starts(count) == 1


# -- the mill ----------------------------------------------------------------------------------


@pytest.mark.parametrize("what", ["turn", "checks"])
def test_the_mill_blocks_a_task_whose_sandbox_never_starts_and_counts_no_failure(
        tmp_path: Path, what: str) -> None:
    """bwrap works (the mill's probe passes), but every sandbox of a turn (or of a check)
    fails its setup: the task is blocked saying so, its attempt an error, not a failure."""
    from mill_helpers import MillRepo, agent_script
    if real_bwrap is None:
        pytest.skip(f"no sandbox here: {why_not}")
    shims = tmp_path / "shims"
    shims.mkdir()
    fails_on = "agent.py" if what == "turn" else "bash"  # the turn's or a check's
    (shims / "bwrap").write_text(f"""#!/bin/sh
case "$*" in *started_fd*{fails_on}*|*{fails_on}*started_fd*)
  echo "{BWRAP_ERROR}" >&2
  exit 1 ;;
esac
exec {real_bwrap} "$@"
""")
    (shims / "bwrap").chmod(0o755)
    repo = MillRepo(tmp_path, sandbox={"writable": ["{spy}"]})
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / "done.txt").write_text("done")
    """, spy=repo.spy)
    repo.create("tm-s", "sandboxed", checks=["test -f done.txt"])
    result = repo.run("--agent-cmd", cmd, "-j", "1",
                      env={"PATH": f"{shims}{os.pathsep}{os.environ['PATH']}"})
    assert result.returncode == 1, result.describe()
    task = repo.task("tm-s")
    assert task["status"] == "blocked", task
    said = " ".join(c["text"] for c in task["comments"])
    assert f"the {what} did not run: the sandbox could not start" in said, said
    assert BWRAP_ERROR in said
    assert [a["outcome"] for a in repo.attempts("tm-s")] == ["error"]
