"""The real-project flow: taskmill on a real third-party repository, start to finish.

::

    python -m taskmill.testing.real_project [--cache .cache/real-project] [--keep DIR]

(``make real-project`` does the same.) It takes python-humanize's sdist from the cache
(downloaded on first use, see :mod:`.real_project_cache`) and:

1. makes it a git repository with one commit, runs ``taskmill init`` and commits the config:
   checks are the project's real pytest suite run by the project's own venv, the agent is a
   scripted test double (:mod:`.real_project_agent`) making prepared, real code changes;
2. imports a plan of three epics with ten child tasks (:mod:`.real_project_changes`): two
   tasks that edit the same line (a merge conflict the agent resolves), one whose first turn
   fails its check (a retry), two whose first turn is held open;
3. leaves an uncommitted edit to ``README.md`` and untracked private files (``.envrc``,
   ``.env``, with a fake secret) in the main checkout for the whole flow;
4. starts ``taskmill run``, sends it SIGINT (to its process group, as Ctrl-C does) once the
   held agents are mid-turn, then runs ``taskmill run`` again;
5. checks the outcome and prints a report: every child landed exactly once, epics were never
   given to the agent and are closed, no empty commit, the project's suite passes on the
   final ``main``, the user's files are intact and in no commit, ``taskmill verify`` is ok,
   the first run exited 130 with a summary, the second 0.

Exit status 0 when every check passes, 1 when one fails, 2 when the cache cannot be made.
The work folder is removed afterwards unless ``--keep DIR`` names it, or a check failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .real_project_cache import Cache, PrepareError, default_cache_dir, prepare
from .real_project_checks import Outcome, check_outcome
from .real_project_setup import RealProject, set_up


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class FlowReport:
    work: Path
    checks: list[Check] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def add(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append(Check(name, ok, detail))

    def render(self) -> str:
        lines = [f"real-project flow in {self.work}"]
        for check in self.checks:
            lines.append(f"  {'ok  ' if check.ok else 'FAIL'}  {check.name}")
            if not check.ok and check.detail:
                lines += [f"          {line}" for line in check.detail.splitlines()[:40]]
        lines.append("  time: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items()))
        passed = sum(c.ok for c in self.checks)
        lines.append(f"{passed} of {len(self.checks)} checks passed")
        return "\n".join(lines)


HOLD_WAIT_S = 180.0
"""How long the first run may take to get the held agents mid-turn."""
STOP_WAIT_S = 90.0
"""How long the first run may take to exit after SIGINT (taskmill's grace is 30 s)."""
RUN_WAIT_S = 300.0
"""How long the second run may take."""


@dataclass
class RunRecord:
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    events: Path | None = None
    sigint_at: float | None = None
    """Wall-clock time the SIGINT was sent (first run only)."""
    held: list[str] = field(default_factory=list)
    """The held tasks that were mid-turn when it was sent."""
    killed: bool = False
    """It did not end in time and was killed."""


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    try:
        proc.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return False


def run_mill(project: RealProject, name: str, *, interrupt: bool) -> RunRecord:
    """``taskmill run`` in the repository, in a session of its own; with ``interrupt``,
    SIGINT to its process group once the held agents are mid-turn, then they are released."""
    record = RunRecord(events=project.work / f"events-{name}.ndjson")
    out_path, err_path = project.work / f"{name}.stdout", project.work / f"{name}.stderr"
    start = time.monotonic()
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            project.taskmill("run", "--target", "main", "--json-events", str(record.events)),
            cwd=project.repo, env=dict(project.env), stdout=out, stderr=err,
            stdin=subprocess.DEVNULL, start_new_session=True)
        if interrupt:
            deadline = time.monotonic() + HOLD_WAIT_S
            while proc.poll() is None and time.monotonic() < deadline:
                record.held = project.held()
                if len(record.held) == len(project.hold_ids):
                    break
                time.sleep(0.05)
            if proc.poll() is None:
                record.sigint_at = time.time()
                os.killpg(proc.pid, signal.SIGINT)
            project.release()
            record.killed = not _wait(proc, STOP_WAIT_S)
        else:
            record.killed = not _wait(proc, RUN_WAIT_S)
    record.seconds = time.monotonic() - start
    record.returncode = proc.returncode
    record.stdout = out_path.read_text(encoding="utf-8", errors="replace")
    record.stderr = err_path.read_text(encoding="utf-8", errors="replace")
    return record


SUMMARY = re.compile(r"taskmill run \w+ -> |\d+ landed, \d+ not landed|nothing was ready to run")
SIGNAL_SLACK_S = 0.25
"""A task the scheduler was dispatching at the very moment the signal came is not "after"."""


def run_flow(cache: Cache, work: Path, *, env: Mapping[str, str],
             python: str = sys.executable, workers: int = 3) -> FlowReport:
    """The whole flow in ``work`` (created; must not exist or be empty)."""
    report = FlowReport(work)
    start = time.monotonic()
    project = set_up(cache, work, env=env, python=python, workers=workers)
    report.seconds["set-up"] = time.monotonic() - start

    first = run_mill(project, "run1", interrupt=True)
    report.seconds["first run"] = first.seconds
    after_first = project.statuses()
    second = run_mill(project, "run2", interrupt=False)
    report.seconds["second run"] = second.seconds

    start = time.monotonic()
    _report_runs(report, project, first, second, after_first)
    outcome: Outcome = check_outcome(project)
    for name, ok, detail in outcome.checks:
        report.add(name, ok, detail)
    report.seconds["checking"] = time.monotonic() - start
    report.seconds["total"] = sum(v for k, v in report.seconds.items() if k != "total")
    return report


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _report_runs(report: FlowReport, project: RealProject, first: RunRecord,
                 second: RunRecord, after_first: Mapping[str, str]) -> None:
    held = ", ".join(project.key_of(t) for t in first.held) or "none"
    report.add("run 1: SIGINT sent while the held agents were mid-turn",
               first.sigint_at is not None and len(first.held) == len(project.hold_ids),
               f"held when signalled: {held}; run exit {first.returncode}\n{_tail(first.stderr)}")
    report.add("run 1: exits 130 after SIGINT",
               first.returncode == 130 and not first.killed,
               f"exit {first.returncode}{' (killed: it did not stop in time)' if first.killed else ''}"
               f"\n--- stdout\n{_tail(first.stdout)}\n--- stderr\n{_tail(first.stderr)}")
    report.add("run 1: prints its summary", bool(SUMMARY.search(first.stdout)),
               f"--- stdout\n{_tail(first.stdout)}\n--- stderr\n{_tail(first.stderr)}")
    late = project.events_after(first.events, first.sigint_at, "dispatched", SIGNAL_SLACK_S)
    report.add("run 1: dispatches nothing after SIGINT", not late,
               "dispatched after SIGINT: " + ", ".join(project.key_of(t) for t in late))
    blocked = {project.key_of(t): s for t, s in after_first.items() if s == "blocked"}
    report.add("run 1: leaves every task resumable (none blocked)", not blocked,
               f"blocked after run 1: {', '.join(blocked)}\n" + project.comments(blocked))
    if shutil.which("bwrap"):  # where bubblewrap works, every turn and check is sandboxed
        started = [e for e in _events(first.events) if e.get("event") == "run_started"]
        sandbox = started[0].get("sandbox") if started else None
        report.add("run 1: agent turns and checks ran in taskmill's sandbox",
                   isinstance(sandbox, dict) and sandbox.get("enabled") is True,
                   f"run_started said: sandbox={sandbox!r}")
    report.add("run 2: exits 0", second.returncode == 0 and not second.killed,
               f"exit {second.returncode}{' (killed: it did not finish in time)' if second.killed else ''}"
               f"\n--- stdout\n{_tail(second.stdout)}\n--- stderr\n{_tail(second.stderr)}")


def _events(path: Path | None) -> list[dict[str, Any]]:
    """The NDJSON events a run wrote (none when it wrote no file)."""
    if path is None or not path.is_file():
        return []
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            found.append(json.loads(line))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m taskmill.testing.real_project",
        description="Run taskmill on a real project (python-humanize, its real test suite as "
                    "checks) with epics, a conflict, a retry, Ctrl-C and a second run; print "
                    "a report. Exit 0 when every check passes.")
    parser.add_argument("--cache", type=Path, default=None,
                        help=f"cache folder (default: {default_cache_dir()})")
    parser.add_argument("--keep", type=Path, default=None,
                        help="work in this folder and keep it (default: a temporary folder, "
                             "removed unless a check fails)")
    parser.add_argument("--prepare-only", action="store_true",
                        help="only download the project and make its venv")
    parser.add_argument("--workers", type=int, default=3, help="taskmill run --workers")
    args = parser.parse_args(argv)
    cache = Cache((args.cache or default_cache_dir()).resolve())  # checks run in worktrees
    try:
        prepare(cache)
    except PrepareError as exc:
        print(f"could not prepare the real project: {exc}", file=sys.stderr)
        return 2
    if args.prepare_only:
        return 0
    if args.keep is not None:
        work = args.keep.resolve()
        if work.exists() and any(work.iterdir()):
            print(f"--keep {work}: the folder is not empty; name a new or empty one",
                  file=sys.stderr)
            return 2
    else:
        work = Path(tempfile.mkdtemp(prefix="taskmill-real-project-"))
    env = {k: v for k, v in os.environ.items() if not _leaky(k)}
    report = run_flow(cache, work, env=env, workers=args.workers)
    print(report.render())
    if args.keep is None and report.ok:
        shutil.rmtree(work, ignore_errors=True)
    elif args.keep is None:
        print(f"kept the work folder for inspection: {work}")
    return 0 if report.ok else 1


def _leaky(name: str) -> bool:
    """Variables that would point taskmill or git elsewhere (e.g. when this runs inside an
    agent's turn)."""
    return name.startswith("TASKMILL_") or name in (
        "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_COMMON_DIR")


if __name__ == "__main__":
    sys.exit(main())
