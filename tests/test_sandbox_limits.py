"""``[sandbox] memory_mb`` / ``max_processes`` held by a cgroup per command
(taskmill.cgroups): enforced for checks and turns, sandboxed or only contained, what hit a
limit recorded and told, the group removed afterwards; cgroup v2's file logic on a fake tree."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import pytest

from mill_helpers import MillRepo, agent_script, process_alive
from taskmill.agents.base import AgentConfig, TurnRequest
from taskmill.agents.exec import ExecAdapter
from taskmill.agents.runner import run_turn
from taskmill.cgroups import (
    PREFIX,
    ROOT,
    SETRLIMIT,
    SYSTEMD,
    V1,
    V2,
    CgroupFS,
    Limiter,
    Limits,
    detect,
    limit_message,
)
from taskmill.containment import Containment, containment
from taskmill.mill.checks import run_checks
from taskmill.sandbox import Sandbox, SandboxSettings
from test_sandbox import make_layout, needs_bwrap, sandbox_of


def _real(limits: Limits) -> Limiter:
    return detect(limits, root=ROOT, proc_cgroup=Path("/proc/self/cgroup").read_text(),
                  env=os.environ)


_probe = _real(Limits(64, 20)) if sys.platform.startswith("linux") else None
needs_cgroup = pytest.mark.skipif(
    _probe is None or not _probe.cgroup or _probe.via == SYSTEMD,
    reason="no writable cgroup (v1 memory+pids, or delegated v2) here: "
           + (_probe.note if _probe is not None else "not Linux"))


def _taskmill_groups(limiter: Limiter) -> list[Path]:
    return [e for _, parent in limiter.parents for e in parent.iterdir()
            if e.name.startswith(f"{PREFIX}{limiter.owner}-")]


ALLOCATE = "python3 -c 'block = b\"x\" * (200 * 1024 * 1024); print(len(block))'"
FORKS = ("python3 -c '\nimport os, sys, time\nn = 0\nwhile True:\n    try:\n"
         "        pid = os.fork()\n    except OSError as exc:\n"
         "        print(\"stopped after\", n, exc); sys.exit(1)\n"
         "    if pid == 0:\n        time.sleep(60); os._exit(0)\n    n += 1\n'")


def _contained(tmp_path: Path, limits: Limits, sandboxed: bool) -> tuple[Containment, Path]:
    limiter = _real(limits)
    if sandboxed:
        sandbox, slot = sandbox_of(tmp_path, memory_mb=limits.memory_mb,
                                   max_processes=limits.max_processes)
        sandbox = replace(sandbox, limits_via=limiter.describe())
        return Containment("pidns", sandbox=sandbox, limiter=limiter), slot
    _, slot = make_layout(tmp_path)
    return replace(containment("auto", os.environ), limiter=limiter), slot


def _env() -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/")}


@needs_cgroup
@pytest.mark.parametrize("sandboxed", [
    pytest.param(True, marks=needs_bwrap, id="sandboxed"), pytest.param(False, id="contained")])
def test_a_check_over_the_memory_limit_is_killed_and_says_so(tmp_path: Path,
                                                             sandboxed: bool) -> None:
    contain, slot = _contained(tmp_path, Limits(memory_mb=64), sandboxed)
    assert contain.limiter is not None
    result = run_checks([ALLOCATE], slot, _env(), timeout_s=60, containment=contain)
    run = result.runs[0]
    assert not run.ok and run.exit_code == 137, run.output
    assert str(200 * 1024 * 1024) not in run.output
    assert run.limit_hit is not None and run.limit_hit["memory_mb"] == 64
    assert run.limit_hit["oom_kills"] >= 1
    assert ("the command was killed: it went over the sandbox's memory limit of 64 MB "
            "([sandbox] memory_mb)") in result.failure_text()
    assert result.to_json()[0]["limit_hit"] == run.limit_hit
    assert _taskmill_groups(contain.limiter) == []


@needs_cgroup
@pytest.mark.parametrize("sandboxed", [
    pytest.param(True, marks=needs_bwrap, id="sandboxed"), pytest.param(False, id="contained")])
def test_a_fork_loop_is_stopped_at_max_processes_and_says_so(tmp_path: Path,
                                                             sandboxed: bool) -> None:
    contain, slot = _contained(tmp_path, Limits(max_processes=20), sandboxed)
    assert contain.limiter is not None
    result = run_checks([FORKS], slot, _env(), timeout_s=60, containment=contain)
    run = result.runs[0]
    assert not run.ok and "stopped after" in run.output, run.output
    started = int(run.output.split("stopped after")[1].split()[0])
    assert started < 20  # bash, the init (sandboxed: bwrap too) and python count
    assert run.limit_hit is not None and run.limit_hit["max_processes"] == 20
    assert run.limit_hit["fork_failures"] >= 1
    assert "hit the sandbox's process limit of 20 ([sandbox] max_processes)" in \
        result.failure_text()
    assert run.duration_s < 30  # its sleeping children did not hold the check open
    assert _taskmill_groups(contain.limiter) == []


@needs_cgroup
def test_a_contained_group_mode_check_leaves_nothing_in_its_group(tmp_path: Path) -> None:
    """Without a PID namespace (``[run] contain = "group"``) a ``setsid`` child with an
    empty environment escapes the process group and the marker sweep: the cgroup still
    holds it, and it is killed with the group."""
    limiter = _real(Limits(memory_mb=256))
    _, slot = make_layout(tmp_path)
    contain = Containment("group", limiter=limiter)
    seconds = f"60.{os.getpid()}"
    result = run_checks([f"env -i setsid sleep {seconds} >/dev/null 2>&1 & echo started"],
                        slot, _env(), timeout_s=30, containment=contain)
    assert result.ok and result.runs[0].limit_hit is None, result.runs
    assert _taskmill_groups(limiter) == []
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit()
                and _cmdline(p) == f"sleep\0{seconds}\0" and process_alive(int(p.name))]


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().decode()
    except OSError:
        return ""


@needs_cgroup
@needs_bwrap
def test_a_turn_over_the_memory_limit_is_recorded_and_told(tmp_path: Path) -> None:
    contain, slot = _contained(tmp_path, Limits(memory_mb=64), True)
    assert contain.limiter is not None
    state = tmp_path / "state"
    request = TurnRequest(task_id="t", title="t", iteration=1, prompt="p", worktree=slot,
                          home=tmp_path / "agent-home", state_dir=state,
                          prompt_file=state / "prompt.md", usage_file=state / "usage.json",
                          log_path=tmp_path / "logs" / "turn.log", parent_env=_env(),
                          timeout_s=60)
    config = AgentConfig(name="hog", adapter="exec", command=(
        "python3", "-c", "block = b'x' * (200 * 1024 * 1024)"))
    result = run_turn(ExecAdapter(), config, request, containment=contain)
    assert result.exit_code == 137 and result.limit_hit is not None
    assert result.limit_hit["memory_mb"] == 64
    assert result.usage.error is not None and result.usage.error.startswith(
        "the command was killed: it went over the sandbox's memory limit of 64 MB")
    assert _taskmill_groups(contain.limiter) == []


def test_without_a_cgroup_the_sandbox_keeps_setrlimit_with_one(tmp_path: Path) -> None:
    """RLIMIT_DATA (it breaks runtimes that reserve address space) and RLIMIT_NPROC (per
    user) are off when a cgroup holds the limits; the description says which holds them."""
    sandbox = Sandbox(bwrap="bwrap", python=sys.executable, hidden=(), read_only=(),
                      writable=(), settings=SandboxSettings(memory_mb=64, max_processes=20))
    assert sandbox.rlimits() == {"RLIMIT_DATA": 64 * 1024 * 1024, "RLIMIT_NPROC": 20}
    assert sandbox.describe()["limits_via"].startswith("setrlimit")
    held = replace(sandbox, limits_via=V1)
    assert held.rlimits() == {}
    assert held.describe()["limits"] == {"memory_mb": 64, "max_processes": 20}
    assert held.describe()["limits_via"] == "cgroup v1"


def test_limit_messages() -> None:
    assert limit_message(None) == ""
    assert limit_message({"memory_mb": 512, "oom_kills": 1}) == (
        "the command was killed: it went over the sandbox's memory limit of 512 MB "
        "([sandbox] memory_mb)")
    assert "process limit of 20" in limit_message({"max_processes": 20, "fork_failures": 3})


# -- the file logic on fake cgroup trees -----------------------------------------------------


class FakeFS(CgroupFS):
    """A cgroup file system in a plain folder: a new group gets the kernel's control files;
    removing a group removes them (refused while it has processes, like the kernel)."""

    FILES: ClassVar[dict[str, tuple[str, ...]]] = {"v2": ("cgroup.procs", "cgroup.kill", "memory.max", "memory.swap.max",
                    "memory.events", "pids.max", "pids.events"),
             "v1-memory": ("cgroup.procs", "memory.limit_in_bytes", "memory.oom_control"),
             "v1-pids": ("cgroup.procs", "pids.max", "pids.events")}

    def __init__(self, kind: dict[Path, str]) -> None:
        self.kind = kind
        self.writes: list[tuple[str, str]] = []

    def _kind(self, path: Path) -> str:
        return next(k for root, k in self.kind.items() if root in path.parents)

    def write(self, path: Path, text: str) -> None:
        self.writes.append((path.name, text))
        super().write(path, text)

    def mkdir(self, path: Path) -> None:
        super().mkdir(path)
        for name in self.FILES[self._kind(path)]:
            (path / name).write_text("")

    def rmdir(self, path: Path) -> None:
        if (path / "cgroup.procs").read_text().split():
            raise OSError(16, "Device or resource busy")
        for child in path.iterdir():
            child.unlink()
        path.rmdir()


def _v2_tree(tmp_path: Path, delegated: str) -> tuple[Path, Path, str]:
    root = tmp_path / "cgroup"
    own = root / "user.slice" / "user-1000.slice" / "user@1000.service" / "app.slice"
    own.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu io memory pids\n")
    (own / "cgroup.controllers").write_text("memory pids\n")
    (own / "cgroup.subtree_control").write_text(delegated + "\n")
    text = "0::/user.slice/user-1000.slice/user@1000.service/app.slice\n"
    return root, own, text


def test_v2_delegated_children_get_the_limits_and_are_read_and_removed(
        tmp_path: Path) -> None:
    root, own, text = _v2_tree(tmp_path, "memory pids")
    fs = FakeFS({root: "v2"})
    limiter = detect(Limits(512, 64), root=root, proc_cgroup=text, env={"PATH": ""}, fs=fs,
                     owner="4026531836-4242")
    assert limiter.via == V2 and limiter.parents == (("", own),)
    assert limiter.describe() == "cgroup v2"
    fs.writes.clear()
    group = limiter.open()
    (path,) = [g for _, g in group.groups]
    assert path.parent == own and path.name.startswith(f"{PREFIX}4026531836-4242-")
    assert fs.writes == [("memory.max", str(512 * 1024 * 1024)), ("memory.swap.max", "0"),
                         ("pids.max", "64")]
    assert f"echo $$ > {path / 'cgroup.procs'}" in group.prelude
    assert group.wrap(["sh", "-c", "x"]) == ["sh", "-c", "x"]
    (path / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n")
    (path / "pids.events").write_text("max 3\n")
    assert group.close() == {"memory_mb": 512, "oom_kills": 1, "max_processes": 64,
                             "fork_failures": 3}
    assert ("cgroup.kill", "1") in fs.writes
    assert not path.exists()
    assert group.close() == group.limit_hit  # once


def test_v2_needs_only_the_controllers_of_the_limits_set(tmp_path: Path) -> None:
    root, _, text = _v2_tree(tmp_path, "memory")
    fs = FakeFS({root: "v2"})
    limiter = detect(Limits(memory_mb=100), root=root, proc_cgroup=text, env={"PATH": ""},
                     fs=fs)
    assert limiter.via == V2
    fs.writes.clear()
    group = limiter.open()
    assert [w[0] for w in fs.writes] == ["memory.max", "memory.swap.max"]
    assert group.close() is None


def test_v2_not_delegated_falls_back_to_a_systemd_scope_or_setrlimit(tmp_path: Path) -> None:
    root, own, text = _v2_tree(tmp_path, "")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemd-run").write_text("#!/bin/sh\n")
    (bin_dir / "systemd-run").chmod(0o755)
    env = {"PATH": str(bin_dir)}
    scope = detect(Limits(512, 64), root=root, proc_cgroup=text, env=env,
                   fs=FakeFS({root: "v2"}), systemd_probe=lambda path, env: "")
    assert scope.via == SYSTEMD and scope.cgroup
    group = scope.open()
    assert group.prelude == ""
    assert group.wrap(["/bin/sh", "-c", "x"]) == [
        str(bin_dir / "systemd-run"), "--user", "--scope", "--quiet", "-p", "MemoryMax=512M",
        "-p", "MemorySwapMax=0", "-p", "TasksMax=64", "--", "/bin/sh", "-c", "x"]
    assert group.close() is None
    plain = detect(Limits(512, 64), root=root, proc_cgroup=text, env=env,
                   fs=FakeFS({root: "v2"}), systemd_probe=lambda path, env: "no user bus")
    assert plain.via == SETRLIMIT and not plain.cgroup
    assert "does not delegate memory and pids" in plain.note
    assert "no user bus" in plain.note
    assert "setrlimit only" in plain.warning()
    assert plain.open().prelude == ""
    # nothing was made in the tree
    assert [p.name for p in own.iterdir() if p.is_dir()] == []


def test_v2_stale_groups_of_dead_runs_are_removed(tmp_path: Path) -> None:
    root, own, text = _v2_tree(tmp_path, "memory pids")
    fs = FakeFS({root: "v2"})
    limiter = detect(Limits(512), root=root, proc_cgroup=text, env={"PATH": ""}, fs=fs,
                     owner="77-100")
    names = ["taskmill-77-5-aaaa", "taskmill-77-6-bbbb", "taskmill-88-5-cccc", "other"]
    for name in names:
        fs.mkdir(own / name)
    fs.mkdir(own / "taskmill-77-5-aaaa" / "taskmill-1-2-nested")
    removed = limiter.sweep_stale(alive=lambda pid: pid == 6)
    assert removed == [own / "taskmill-77-5-aaaa"]  # pid 5 of our namespace is gone
    assert sorted(p.name for p in own.iterdir() if p.is_dir()) == sorted(names[1:])


def test_v1_fake_tree_memsw_only_where_swap_is_accounted(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    memory, pids = root / "memory" / "process_api" / "c1", root / "pids"
    memory.mkdir(parents=True)
    pids.mkdir(parents=True)
    text = "8:pids:/\n4:memory:/process_api/c1\n1:cpu,cpuacct:/\n0::/\n"

    class SwapFS(FakeFS):
        FILES: ClassVar[dict[str, tuple[str, ...]]] = {**FakeFS.FILES, "v1-memory": (*FakeFS.FILES["v1-memory"],
                                               "memory.memsw.limit_in_bytes")}

    for fs_class, memsw in ((FakeFS, False), (SwapFS, True)):
        fs = fs_class({root / "memory": "v1-memory", root / "pids": "v1-pids"})
        limiter = detect(Limits(64, 20), root=root, proc_cgroup=text, env={"PATH": ""},
                         fs=fs)
        assert limiter.via == V1
        assert limiter.parents == (("memory", memory), ("pids", pids))
        fs.writes.clear()
        group = limiter.open()
        mem = str(64 * 1024 * 1024)
        assert fs.writes == [("memory.limit_in_bytes", mem)] + (
            [("memory.memsw.limit_in_bytes", mem)] if memsw else []) + [("pids.max", "20")]
        (mem_group, pids_group) = (g for _, g in group.groups)
        assert group.prelude.count("echo $$ >") == 2
        (mem_group / "memory.oom_control").write_text(
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
        assert group.close() == {"memory_mb": 64, "oom_kills": 2}
        assert not mem_group.exists() and not pids_group.exists()


def test_no_cgroup_hierarchy_falls_back_with_the_reason(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    (root / "memory").mkdir(parents=True)
    limiter = detect(Limits(64, 20), root=root, proc_cgroup="4:memory:/\n", env={})
    assert limiter.via == SETRLIMIT
    assert limiter.note == f"no cgroup v1 pids hierarchy under {root}"


# -- end to end ----------------------------------------------------------------------------


@needs_cgroup
@pytest.mark.parametrize("enabled", [
    pytest.param("auto", marks=needs_bwrap, id="sandboxed"),
    pytest.param(False, id="unsandboxed")])
def test_a_mill_turn_over_the_memory_limit_is_recorded_in_its_attempt(
        tmp_path: Path, enabled: str | bool) -> None:
    repo = MillRepo(tmp_path, sandbox={"enabled": enabled, "memory_mb": 64,
                                       "writable": ["{spy}"]})
    cmd = agent_script(tmp_path / "agent.py", """
        save(f"prompt-{CALL}.md", PROMPT)
        if CALL == 1:
            block = b"x" * (200 * 1024 * 1024)
        (WT / "feature.txt").write_text("done")
    """, spy=repo.spy)
    repo.create("tm-m", "a feature", checks=["test -f feature.txt"])
    result = repo.run("--agent-cmd", cmd)
    assert result.returncode == 0, result.describe()
    started = result.events_of("run_started")[0]
    assert started["sandbox"]["limits"] == {"memory_mb": 64}
    assert started["sandbox"]["limits_via"] in (V1, V2)
    assert not result.events_of("warning") or all(
        w.get("about") != "limits" for w in result.events_of("warning"))
    attempts = repo.attempts("tm-m")
    assert [a["outcome"] for a in attempts] == ["turn_failed", "passed"]
    detail = attempts[0]["detail"]
    assert detail["limit_hit"]["memory_mb"] == 64 and detail["limit_hit"]["oom_kills"] >= 1
    line = ("the command was killed: it went over the sandbox's memory limit of 64 MB "
            "([sandbox] memory_mb)")
    assert line in detail["failure"]
    assert line in (repo.spy / "prompt-2.md").read_text()  # the agent was told
    assert repo.task("tm-m")["status"] == "closed"
