"""Nothing an agent turn or a check starts outlives it: a PID namespace per turn (``pidns``)
or, where that is not available, the process group plus a sweep by the turn's marker
(``group``). ``setsid`` daemons included."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from mill_helpers import MillRepo, agent_script
from taskmill.agents.exec import ExecAdapter
from taskmill.agents.runner import run_turn
from taskmill.containment import Containment, containment, sweep
from taskmill.errors import InvalidInput
from taskmill.mill.checks import run_checks
from test_agents_runner import exec_config, make_request

PIDNS = containment("auto")
MODES = [pytest.param(Containment("group"), id="group"),
         pytest.param(PIDNS, id="pidns", marks=pytest.mark.skipif(
             PIDNS.mode != "pidns", reason=f"no PID namespaces here: {PIDNS.note}"))]

# starts a daemon in a session of its own that writes a file a second later, and exits
LATE = "setsid sh -c 'sleep 1; echo late > {path}' > /dev/null 2>&1 < /dev/null &"


@pytest.mark.parametrize("contain", MODES)
def test_a_setsid_daemon_does_not_outlive_the_turn(tmp_path: Path, contain: Containment) -> None:
    late = tmp_path / "late.txt"
    config = exec_config("sh", "-c", LATE.format(path=late) + " echo started")
    result = run_turn(ExecAdapter(), config, make_request(tmp_path), containment=contain)
    assert result.ok and request_log(tmp_path) == "started\n"
    time.sleep(1.5)
    assert not late.exists(), "a process the agent left behind wrote after its turn"


@pytest.mark.parametrize("contain", MODES)
def test_a_setsid_daemon_does_not_outlive_a_timed_out_turn(tmp_path: Path,
                                                            contain: Containment) -> None:
    late = tmp_path / "late.txt"
    config = exec_config("sh", "-c", LATE.format(path=late) + " sleep 60")
    result = run_turn(ExecAdapter(), config, make_request(tmp_path, timeout_s=0.3),
                      containment=contain, kill_grace_s=0.5)
    assert result.timed_out
    time.sleep(1.5)
    assert not late.exists()


@pytest.mark.parametrize("contain", MODES)
def test_a_setsid_daemon_does_not_outlive_its_check(tmp_path: Path, contain: Containment) -> None:
    late = tmp_path / "late.txt"
    result = run_checks([LATE.format(path=late) + " true"], tmp_path, dict(os.environ),
                        timeout_s=30, containment=contain)
    assert result.ok
    time.sleep(1.5)
    assert not late.exists()


@pytest.mark.parametrize("contain", MODES)
def test_runner_contract_holds_under_containment(tmp_path: Path, contain: Containment) -> None:
    request = make_request(tmp_path, prompt="the prompt\n")
    missing = run_turn(ExecAdapter(), exec_config("no-such-agent-cli-xyz"), request,
                       containment=contain)
    assert missing.exit_code == 127
    assert "command not found: 'no-such-agent-cli-xyz'" in (missing.usage.error or "")
    assert "Fix: " in (missing.usage.error or "")
    script = tmp_path / "agent.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    denied = run_turn(ExecAdapter(), exec_config(str(script)), request, containment=contain)
    assert denied.exit_code == 126
    # stdin is piped, stdout captured, the exit status passed through
    echo = run_turn(ExecAdapter(), exec_config("sh", "-c", "cat; exit 3"), request,
                    containment=contain)
    assert echo.exit_code == 3 and request_log(tmp_path) == "the prompt\n"


def test_pidns_turn_gets_sigterm_first_on_cancel(tmp_path: Path) -> None:
    if PIDNS.mode != "pidns":
        pytest.skip(PIDNS.note)
    import threading

    got = tmp_path / "got-term"
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    config = exec_config("sh", "-c", f"trap 'echo term > {got}; exit 0' TERM; sleep 60 & wait")
    result = run_turn(ExecAdapter(), config, make_request(tmp_path), cancel=cancel,
                      containment=PIDNS, kill_grace_s=5)
    timer.cancel()
    assert result.cancelled
    assert got.read_text() == "term\n"  # forwarded by the namespace's init, not SIGKILLed


def test_pidns_asked_for_where_it_cannot_work_is_a_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    with pytest.raises(InvalidInput) as info:
        containment("pidns", {"PATH": str(empty)})
    assert "unshare" in str(info.value)
    fallback = containment("auto", {"PATH": str(empty)})
    assert fallback.mode == "group" and "unshare" in fallback.note
    with pytest.raises(InvalidInput):
        containment("cgroup")


def test_sweep_kills_processes_by_marker(tmp_path: Path) -> None:
    import subprocess

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                            env={**os.environ, "TASKMILL_TURN_ID": "sweep-me"},
                            start_new_session=True)
    try:
        time.sleep(0.2)
        assert sweep("sweep-me") == 1
        assert proc.wait(timeout=5) == -9
    finally:
        if proc.poll() is None:
            proc.kill()


def request_log(tmp_path: Path) -> str:
    return (tmp_path / "turn" / "agent.log").read_text()


@pytest.mark.parametrize("contain", ["auto", "group"])
def test_nothing_late_lands_from_a_daemon_an_agent_left(tmp_path: Path, contain: str) -> None:
    """The defect: a process the agent left behind with setsid wrote files after its turn
    ended, and they landed in another task's commit."""
    repo = MillRepo(tmp_path, run={"contain": contain})
    cmd = agent_script(tmp_path / "agent.py", """
        if TASK == "tm-a":
            # setsid: a session of its own, out of the turn's process group
            subprocess.Popen(["sh", "-c", 'sleep 1; echo late > "$1/late.txt"', "sh", str(WT)],
                             start_new_session=True, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            time.sleep(1.5)  # tm-b works in the slot tm-a left, while the daemon would write
        (WT / f"{TASK}.txt").write_text(TASK)
    """, spy=repo.spy)
    repo.create("tm-a", priority=1)
    repo.create("tm-b", priority=2)

    result = repo.run("--agent-cmd", cmd, "-j", "1")

    assert result.returncode == 0, result.describe()
    (started,) = result.events_of("run_started")
    assert started["containment"] == (PIDNS.mode if contain == "auto" else "group")
    time.sleep(1)
    repo.assert_all_landed_once(["tm-a", "tm-b"])
    assert "late.txt" not in repo.git("ls-tree", "-r", "--name-only", "main").split()
    for wt in repo.worktrees():
        assert not (Path(wt) / "late.txt").exists()
