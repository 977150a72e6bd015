"""Helpers for the end-to-end tests of the mill (``taskmill run``).

A :class:`MillRepo` is a real git repository in ``tmp_path`` with ``taskmill init`` done and
``.taskmill/config.toml`` committed (so the user's checkout starts clean). Tasks are created
through the library; the mill runs as a real ``taskmill run`` subprocess (so it can be
killed, and two can run at once). Agents are small executable scripts (``agent_script``)
that talk to taskmill only through its documented interface: the prompt on stdin and in
``$TASKMILL_PROMPT_FILE``, the ``TASKMILL_*`` variables, the usage file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskmill.clock import SystemClock
from taskmill.ledger import Ledger, LedgerStore

PY = sys.executable
TRAILER = "Taskmill-Task"
MAIN_TOML_HEADER = 'prefix = "tm"\n'
SANDBOX_DEFAULT: dict[str, Any] = {"enabled": False}
"""``[sandbox]`` of a MillRepo unless a test gives its own (``{spy}`` in a value: the spy
folder). Off: most mill tests look at their agents from outside (pids, the spy folder, files
outside the worktree); tests of the sandbox turn it on."""

# -- agents --------------------------------------------------------------------------------

AGENT_PRELUDE = '''\
import json, os, pathlib, subprocess, sys, time
PROMPT = sys.stdin.read()
TASK = os.environ["TASKMILL_TASK_ID"]
TITLE = os.environ.get("TASKMILL_TASK_TITLE", "")
ITER = int(os.environ["TASKMILL_ITERATION"])
WT = pathlib.Path(os.environ["TASKMILL_WORKTREE"])
SPY = pathlib.Path({spy!r})
SPY.mkdir(parents=True, exist_ok=True)


def n_calls(name=""):
    """How many turns of this task (or of ``name``) this agent has started, this one included."""
    d = SPY / ("calls-" + (name or TASK))
    d.mkdir(exist_ok=True)
    for i in range(1, 10000):
        try:
            (d / str(i)).mkdir()
            return i
        except FileExistsError:
            continue


def outer_pid(inner=None):
    """A pid of this agent's namespace (default: its own) as the host sees it: turns run in
    a PID namespace of their own (taskmill.containment), where os.getpid() is not the pid
    the tests (and kill) outside see. The namespace keeps the host's /proc."""
    inner = inner or os.getpid()
    mine = os.readlink("/proc/self/ns/pid")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{{entry}}/ns/pid") != mine:
                continue
            with open(f"/proc/{{entry}}/status") as fh:
                for line in fh:
                    if line.startswith("NSpid:") and int(line.split()[-1]) == inner:
                        return int(entry)
        except (OSError, ValueError):
            continue
    return inner


PID = outer_pid()


def usage(**fields):
    pathlib.Path(os.environ["TASKMILL_USAGE_FILE"]).write_text(json.dumps(fields))


def save(name, text):  # whole or not at all: a test may read it the moment it appears
    part = SPY / ("." + name + ".part")
    part.write_text(text)
    os.replace(part, SPY / name)


def log(*words):
    with open(SPY / "events.log", "a") as fh:
        fh.write(" ".join(str(w) for w in (time.time(), *words)) + "\\n")


CALL = n_calls()
save(f"prompt-{{TASK}}-{{CALL}}.stdin", PROMPT)
save(f"prompt-{{TASK}}-{{CALL}}.file",
     pathlib.Path(os.environ["TASKMILL_PROMPT_FILE"]).read_text())
save(f"env-{{TASK}}-{{CALL}}.json", json.dumps({{k: v for k, v in os.environ.items()
                                                if k.startswith("TASKMILL_")}}))
log("start", TASK, ITER, CALL, PID)
'''


def agent_script(path: Path, body: str, *, spy: Path) -> str:
    """Write an executable Python agent: the prelude (prompt saved in ``spy``) plus ``body``.

    Returns the command for ``--agent-cmd``. In ``body``: ``PROMPT``, ``TASK``, ``TITLE``,
    ``ITER`` (taskmill's iteration), ``CALL`` (this task's turn count, rate-limited and
    interrupted turns included), ``WT`` (the worktree, also the cwd), ``usage(**fields)``,
    ``save(name, text)``, ``log(*words)``, ``n_calls(name)``, ``PID`` (the agent's pid as
    the host sees it) and ``outer_pid(pid)`` (the same for a pid it got, e.g. a child's).
    """
    code = f"#!{PY}\n" + AGENT_PRELUDE.format(spy=str(spy)) + textwrap.dedent(body) + "\n"
    code += 'log("end", TASK, ITER, CALL)\n'
    path.write_text(code, encoding="utf-8")
    path.chmod(0o755)
    return str(path)


# -- git -----------------------------------------------------------------------------------


def git(repo: Path, *args: str, check: bool = True, input_text: str | None = None) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=False, input=input_text)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc.stdout


def process_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


# -- the repository ------------------------------------------------------------------------


@dataclass
class RunResult:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    events: list[dict[str, Any]] = field(default_factory=list)

    def events_of(self, kind: str, task: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.events
                if e["event"] == kind and (task is None or e.get("task") == task)]

    def describe(self) -> str:
        return (f"exit {self.returncode} after {self.seconds:.1f}s\n--- stdout\n{self.stdout}"
                f"\n--- stderr\n{self.stderr}")


class MillRepo:
    """A git repository (branch ``main``) with a taskmill ledger, for driving ``taskmill run``."""

    def __init__(self, tmp_path: Path, *, checks: Sequence[str] = (),
                 run: Mapping[str, Any] | None = None,
                 agents: Mapping[str, Mapping[str, Any]] | None = None,
                 files: Mapping[str, str] | None = None,
                 gitignore: str = "", allow_unchecked: bool = True,
                 sandbox: Mapping[str, Any] | None = None) -> None:
        self.tmp = tmp_path
        self.sandbox = dict(sandbox) if sandbox is not None else dict(SANDBOX_DEFAULT)
        # most tests give some tasks no checks at all: they opt in (--allow-unchecked)
        self.allow_unchecked = allow_unchecked
        self.root = tmp_path / "repo"
        self.spy = tmp_path / "spy"
        self.spy.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True)
        git(self.root, "init", "-q", "-b", "main")
        (self.root / "README.md").write_text("# test repository\n", encoding="utf-8")
        if gitignore:
            (self.root / ".gitignore").write_text(gitignore, encoding="utf-8")
        for name, text in (files or {}).items():
            target = self.root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        subprocess.run([PY, "-m", "taskmill", "init", "--prefix", "tm"], cwd=self.root,
                       check=True, capture_output=True)
        self.write_config(checks=checks, run=run, agents=agents)
        git(self.root, "add", "-A")
        git(self.root, "commit", "-q", "-m", "initial commit")
        self._open: list[Ledger] = []
        weakref.finalize(self, _close_ledgers, self._open)

    # -- config and tasks --------------------------------------------------------------------

    def write_config(self, *, checks: Sequence[str] = (), run: Mapping[str, Any] | None = None,
                     agents: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        lines = [MAIN_TOML_HEADER, "[checks]", f"commands = {json.dumps(list(checks))}", ""]
        lines.append("[run]")
        for key, value in (run or {}).items():
            lines.append(f"{key} = {json.dumps(value)}")
        sandbox = {k: (v.replace("{spy}", str(self.spy)) if isinstance(v, str) else
                       [x.replace("{spy}", str(self.spy)) for x in v] if isinstance(v, list)
                       else v) for k, v in self.sandbox.items()}
        lines += ["", "[sandbox]"] + [f"{k} = {json.dumps(v)}" for k, v in sandbox.items()]
        for name, table in (agents or {}).items():
            lines += ["", f"[agents.{name}]"]
            lines += [f"{key} = {json.dumps(value)}" for key, value in table.items()]
        (self.root / ".taskmill" / "config.toml").write_text("\n".join(lines) + "\n",
                                                            encoding="utf-8")

    store: LedgerStore | None = None
    """A store to use instead of the database (a run in this process on another store)."""

    @property
    def ledger(self) -> Ledger:
        """The ledger, opened fresh (a run in another process may have changed it)."""
        if self.store is not None:
            return Ledger(self.store, prefix="tm", clock=SystemClock(), actor="tester")
        _close_ledgers(self._open)
        self._open.append(Ledger.open(self.root / ".taskmill" / "taskmill.db", prefix="tm",
                                      actor="tester"))
        return self._open[0]

    def create(self, task_id: str, title: str | None = None, *, checks: Sequence[str] | None = None,
               after: Iterable[str] = (), priority: int = 2, description: str = "") -> str:
        self.ledger.create(title or f"task {task_id}", task_id=task_id,
                           checks=list(checks) if checks else None, after=after,
                           priority=priority, description=description)
        return task_id

    def task(self, task_id: str) -> dict[str, Any]:
        return self.ledger.show(task_id).to_json(full=True)

    def attempts(self, task_id: str) -> list[dict[str, Any]]:
        return self.ledger.attempts(task_id)

    def all_attempts(self) -> list[dict[str, Any]]:
        rows = self.ledger.store.conn.execute(
            "SELECT task_id, iteration, outcome, run_id, lap FROM attempts ORDER BY id").fetchall()
        return [dict(zip(("task_id", "iteration", "outcome", "run_id", "lap"), r, strict=True))
                for r in rows]

    # -- running -----------------------------------------------------------------------------

    def _run_argv(self, args: Sequence[str]) -> list[str]:
        return ["run", *(["--allow-unchecked"] if self.allow_unchecked else []), *args]

    def command(self, *args: str) -> list[str]:
        return [PY, "-m", "taskmill", *args]

    def run(self, *args: str, timeout: float = 90.0, events: bool = True,
            env: Mapping[str, str] | None = None) -> RunResult:
        """``taskmill run ARGS`` as a subprocess; its NDJSON events parsed into the result.

        ``env`` is added to the environment; the run gets a session of its own."""
        events_file = self.tmp / f"events-{time.monotonic_ns()}.ndjson"
        argv = self._run_argv(args)
        if events:
            argv += ["--json-events", str(events_file)]
        start = time.monotonic()
        proc = subprocess.run(self.command(*argv), cwd=self.root, capture_output=True,
                              text=True, timeout=timeout, check=False,
                              env={**os.environ, **(env or {})}, start_new_session=True)
        result = RunResult(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)
        if events and events_file.exists():
            result.events = [json.loads(line) for line in
                             events_file.read_text(encoding="utf-8").splitlines()]
        return result

    def spawn(self, *args: str, events_file: Path | None = None) -> subprocess.Popen[str]:
        """``taskmill run ARGS`` in its own session (kill it with :func:`kill_group`)."""
        argv = self._run_argv(args)
        if events_file is not None:
            argv += ["--json-events", str(events_file)]
        return subprocess.Popen(self.command(*argv), cwd=self.root, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*args), cwd=self.root, capture_output=True,
                              text=True, check=False, timeout=60)

    # -- what landed -----------------------------------------------------------------------

    def git(self, *args: str, check: bool = True) -> str:
        return git(self.root, *args, check=check)

    def tip(self, branch: str = "main") -> str:
        return self.git("rev-parse", f"refs/heads/{branch}").strip()

    def landings(self, branch: str = "main") -> dict[str, list[str]]:
        """Task id -> the commits on ``branch`` whose trailer names exactly that task."""
        out = self.git("log", "--format=%H%x00%B%x01", f"refs/heads/{branch}")
        found: dict[str, list[str]] = {}
        for record in out.split("\x01"):
            if "\x00" not in record:
                continue
            sha, body = record.split("\x00", 1)
            for line in body.splitlines():
                if line.startswith(f"{TRAILER}: "):
                    found.setdefault(line.split(": ", 1)[1].strip(), []).append(sha.strip())
        return found

    def verify_ok(self) -> None:
        proc = self.cli("verify", "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert json.loads(proc.stdout)["ok"] is True

    @property
    def pool(self) -> Path:
        """The mill's worktree pool (inside git's directory)."""
        return self.root / ".git" / "taskmill" / "worktrees"

    def worktrees(self) -> list[str]:
        out = self.git("worktree", "list", "--porcelain")
        return [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("worktree ")]

    def mill_branches(self) -> list[str]:
        out = self.git("for-each-ref", "--format=%(refname:short)", "refs/heads/taskmill/")
        return out.split()

    def assert_all_landed_once(self, task_ids: Iterable[str]) -> None:
        """Every task closed with ``landed <sha>``, that sha on main with the task's trailer,
        and the trailer exactly once on main."""
        landings = self.landings()
        for tid in task_ids:
            task = self.task(tid)
            assert task["status"] == "closed", (tid, task["status"], task.get("comments"))
            reason = task.get("close_reason") or ""
            assert reason.startswith("landed "), (tid, reason)
            sha = reason.split()[1]
            assert landings.get(tid) == [sha], (tid, landings.get(tid), sha)
        unexpected = set(landings) - set(task_ids)
        assert not unexpected, unexpected


def _close_ledgers(ledgers: list[Ledger]) -> None:
    while ledgers:
        ledgers.pop().close_db()


def kill_group(proc: subprocess.Popen[str]) -> None:
    """``kill -9`` of ``taskmill run``'s process group: taskmill and the git commands it is
    running. Agents run in sessions of their own and live on, as after a real kill -9."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def read_spy_log(spy: Path) -> list[list[str]]:
    path = spy / "events.log"
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


# -- crash injection -------------------------------------------------------------------------

GIT_SHIM = """#!/bin/sh
# A git that SIGKILLs the process group of its caller (taskmill run) once, at one chosen
# command: before running it, or right after it did its work.
case " $* " in
  *"$TM_KILL_MATCH"*)
    if mkdir "$TM_KILL_ONCE" 2>/dev/null; then
      if [ "$TM_KILL_WHEN" = after ]; then "$TM_REAL_GIT" "$@"; fi
      kill -9 0
      sleep 5
    fi;;
esac
exec "$TM_REAL_GIT" "$@"
"""


def git_kill_env(tmp_path: Path, match: str, when: str) -> dict[str, str]:
    """Environment for ``taskmill run`` that kills it (``kill -9`` of its process group)
    the first time it runs a git command containing ``match`` (``when``: before/after)."""
    real = shutil.which("git")
    assert real is not None
    shim_dir = tmp_path / "git-shim"
    shim_dir.mkdir(exist_ok=True)
    shim = shim_dir / "git"
    shim.write_text(GIT_SHIM, encoding="utf-8")
    shim.chmod(0o755)
    return {"PATH": f"{shim_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "TM_REAL_GIT": real, "TM_KILL_MATCH": match, "TM_KILL_WHEN": when,
            "TM_KILL_ONCE": str(tmp_path / f"killed-{time.monotonic_ns()}")}
