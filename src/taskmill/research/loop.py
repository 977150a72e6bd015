"""The research loop: workers propose, taskmill measures, the branch keeps only what wins.

Each experiment (:meth:`Research.experiment`): a worktree at the current best, one agent
turn with a fresh prompt (program.md, the best, the digest of what was tried), taskmill's own
commit, the metric in that worktree (with the timeout), and the record. A candidate that
beats the best by more than the acceptance threshold goes to :meth:`Research.decide`: it is
replayed onto the newest best if the branch moved meanwhile, re-measured ``verify_runs``
times in a fresh worktree, and kept only when it still wins -- the branch then advances by
compare-and-swap. Everything else is recorded as discarded (or crashed), its commit kept
under ``refs/taskmill/research/...``.

Crash safety: an experiment is a ledger record under an id derived from its number
(:mod:`.records`), written as it goes (started, committed, measured, verified, decided); a
run killed at any point leaves it in progress and the next run resumes it from what was
recorded (the turn again if nothing was committed, else the measuring), so no experiment is
recorded twice or lost. A kept commit whose record was not closed yet is recognised on the
branch and recorded as kept.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..agents.base import AgentAdapter, AgentConfig, TurnRequest, TurnResult
from ..clock import Clock, iso
from ..containment import Containment
from ..errors import Conflict, InvalidInput
from ..ledger import Ledger
from ..locks import FileLock, try_lock
from ..mill.git import Git
from ..mill.turn_runner import TurnRunner
from ..mill.worktrees import Workspace, WorktreePool
from . import gitops
from .config import ResearchConfig
from .digest import one_line, prompt
from .measure import Measurement, Summary, measure
from .records import BASELINE, CRASH, DISCARD, KEEP, Experiment, ExperimentLog

Emit = Callable[[str, dict[str, Any]], None]
CAS_TRIES = 5


@dataclass
class ResearchSetup:
    """Everything a research run needs, passed in (see :func:`.session.open_research`)."""

    root: Path
    """The user's checkout (never written to)."""
    git: Git
    """git of the repository, with an identity for commits."""
    ledger: Ledger
    config: ResearchConfig
    program: str
    """The text of ``program.md``."""
    pool: WorktreePool
    clock: Clock
    env: Mapping[str, str]
    """taskmill's environment (handed to the agent adapter)."""
    check_env: Mapping[str, str]
    """What the metric command gets (as the checks)."""
    state_dir: Path
    """Locks, logs and agent homes of this research."""
    run_id: str
    agent: tuple[AgentConfig, AgentAdapter] | None = None
    turn_runner: TurnRunner | None = None
    agent_git_env: Mapping[str, str] = field(default_factory=dict)
    containment: Containment | None = None
    turn_timeout: float = 1800.0
    emit: Emit = field(default=lambda _kind, _data: None)


@dataclass
class RunReport:
    started: int = 0
    kept: int = 0
    discarded: int = 0
    crashed: int = 0
    resumed: int = 0
    stopped_by: str | None = None

    def count(self, exp: Experiment) -> None:
        if exp.verdict == KEEP:
            self.kept += 1
        elif exp.verdict == CRASH:
            self.crashed += 1
        elif exp.verdict is not None:
            self.discarded += 1

    def to_json(self) -> dict[str, Any]:
        return {"experiments": self.started, "kept": self.kept, "discarded": self.discarded,
                "crashed": self.crashed, "resumed": self.resumed, "stopped_by": self.stopped_by}


class Research:
    def __init__(self, setup: ResearchSetup) -> None:
        self.s = setup
        self.config = setup.config
        self.log = ExperimentLog(setup.ledger, setup.config.branch,
                                 actor=f"research:{setup.run_id}")
        self.stop = threading.Event()
        self._mutex = threading.Lock()
        self._values: dict[str, float] = {}
        """Commit -> its metric as taskmill established it (baseline, verified keeps)."""
        self.sigma = 0.0
        self._run_lock: FileLock | None = None

    # -- state -----------------------------------------------------------------------------

    @property
    def branch_ref(self) -> str:
        return f"refs/heads/{self.config.branch}"

    def tip(self) -> str | None:
        return self.s.git.rev(self.branch_ref)

    def _lock_path(self, name: str) -> Path:
        return self.s.state_dir / f"{name}.lock"

    def load(self) -> list[Experiment]:
        """Read what is established: the baseline's noise and every kept commit's value."""
        experiments = self.log.all()
        with self._mutex:
            for exp in experiments:
                d = exp.data
                if exp.verdict == BASELINE and exp.metric is not None:
                    self.sigma = float(d.get("sigma") or 0.0)
                    self._values.setdefault(str(d["commit"]), exp.metric)
                elif exp.verdict == KEEP and d.get("kept_commit") \
                        and isinstance(d.get("verified"), int | float):
                    self._values[str(d["kept_commit"])] = float(d["verified"])
        return experiments

    def value_of(self, commit: str) -> float | None:
        with self._mutex:
            return self._values.get(commit)

    def best(self) -> tuple[str, float]:
        """The branch's tip and its value (measured now when nobody established it: the
        branch was moved by hand)."""
        tip = self.tip()
        if tip is None:
            raise InvalidInput(f"the research branch {self.config.branch!r} is gone",
                               hint="`taskmill research run` starts it again")
        value = self.value_of(tip)
        if value is None:  # kept by another process (a contribution)? its record says
            self.load()
            value = self.value_of(tip)
        if value is None:
            summary = self._measure_at(tip, max(1, self.config.baseline_runs), f"tip-{tip[:12]}")
            if isinstance(summary, Measurement):
                raise InvalidInput(f"the research branch's tip {tip[:12]} cannot be measured: "
                                   f"{summary.error}")
            value = summary.mean
            with self._mutex:
                self._values[tip] = value
        return tip, value

    # -- running ---------------------------------------------------------------------------

    def hold(self) -> None:
        """Take the research's run lock (one `research run` per research at a time)."""
        lock = try_lock(self._lock_path("run"))
        if lock is None:
            raise Conflict(f"a `taskmill research run` is already working on "
                           f"{self.config.branch!r}", hint="stop it first, or wait for it")
        self._run_lock = lock

    def release(self) -> None:
        if self._run_lock is not None:
            self._run_lock.release()
            self._run_lock = None

    def start_branch(self) -> str:
        user = self.s.git.current_branch()
        if user == self.config.branch:
            raise InvalidInput(f"the research branch {self.config.branch!r} is the branch "
                               "checked out in your checkout; research never moves your branch",
                               hint="set another `branch` in research.toml")
        head = self.s.git.rev("HEAD")
        return gitops.ensure_branch(self.s.git, self.config.branch, head)

    def baseline(self) -> Experiment:
        """Record 0: the starting point measured ``baseline_runs`` times (once per research)."""
        tip = self.start_branch()
        with FileLock(self._lock_path("alloc")):
            exp = self.log.start(0, "research baseline", {
                "kind": "baseline", "phase": "started", "commit": tip,
                "description": "baseline", "started_at": iso(self.s.clock.now())})
        if exp.done:
            return exp
        self.s.emit("baseline", {"commit": tip, "runs": self.config.baseline_runs})
        commit = str(exp.data["commit"])
        summary = self._measure_at(commit, self.config.baseline_runs, exp.id)
        if isinstance(summary, Measurement):
            self.log.update(exp, error=summary.error)
            raise InvalidInput(f"the metric fails on the starting point {commit[:12]}: "
                               f"{summary.error}", hint="fix `metric` in research.toml (it must "
                               "print `metric: <float>`), then run again")
        exp = self.log.finish(exp, BASELINE, f"{len(summary.runs)} runs",
                              metric=summary.mean, sigma=summary.sigma,
                              runs=list(summary.runs), phase="decided")
        with self._mutex:
            self.sigma = summary.sigma
            self._values[commit] = summary.mean
        return exp

    def run(self) -> RunReport:
        """Work until a stop condition (or :attr:`stop`); resumes what a killed run left."""
        report = RunReport()
        self.hold()
        try:
            self.s.pool.prune()
            self.load()
            self.baseline()
            self.load()
            started = self.s.clock.monotonic()
            pending = [e for e in self.log.all() if e.n > 0 and not e.done]
            report.resumed = len(pending)
            queue = [e.n for e in pending]
            queue_lock = threading.Lock()

            def next_number() -> int | None:
                with queue_lock:
                    if queue:
                        return queue.pop(0)
                    if self.stop.is_set():
                        return None
                    why = self.stop_reason(started)
                    if why is not None:
                        report.stopped_by = report.stopped_by or why
                        return None
                    return self.allocate()

            failures: list[BaseException] = []

            def work() -> None:
                while not self.stop.is_set():
                    n = next_number()
                    if n is None:
                        return
                    exp = self.experiment(n)
                    if exp is None:
                        continue
                    with queue_lock:
                        report.started += 1
                        report.count(exp)

            def worker() -> None:
                try:
                    work()
                except BaseException as exc:  # the run stops; raised again below
                    failures.append(exc)
                    self.stop.set()

            threads = [threading.Thread(target=worker, name=f"research-{i}", daemon=True)
                       for i in range(self.config.workers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if failures:
                raise failures[0]
            if self.stop.is_set() and report.stopped_by is None:
                report.stopped_by = "signal"
            return report
        finally:
            self.release()

    def allocate(self) -> int | None:
        """The next experiment number, recorded as started at once (so no other worker or
        process takes it). None when the experiments limit is reached."""
        with FileLock(self._lock_path("alloc")):
            numbers = [e.n for e in self.log.all()]
            n = max(numbers, default=0) + 1
            limit = self.config.stop.experiments
            if limit is not None and sum(1 for x in numbers if x > 0) >= limit:
                return None
            tip, value = self.best()
            self.log.start(n, f"experiment {n}", {
                "kind": "agent", "phase": "started", "parent": tip, "parent_metric": value,
                "started_at": iso(self.s.clock.now()), "run": self.s.run_id})
            return n

    def stop_reason(self, started: float) -> str | None:
        stop = self.config.stop
        if stop.hours is not None and self.s.clock.monotonic() - started >= stop.hours * 3600:
            return "hours"
        experiments = self.log.all()
        if stop.experiments is not None and \
                sum(1 for e in experiments if e.n > 0) >= stop.experiments:
            return "experiments"
        if stop.cost is not None and sum(e.cost for e in experiments) >= stop.cost:
            return "cost"
        if stop.no_improvement is not None:
            streak = 0
            for e in reversed([e for e in experiments if e.n > 0 and e.done]):
                if e.verdict == KEEP:
                    break
                streak += 1
            if streak >= stop.no_improvement:
                return "no_improvement"
        return None

    # -- one experiment --------------------------------------------------------------------

    def experiment(self, n: int) -> Experiment | None:
        """Run (or resume) experiment ``n``; None when another process holds it."""
        lock = try_lock(self._lock_path(f"exp-{n}"))
        if lock is None:
            return None
        try:
            exp = self.log.get(n)
            if exp is None or exp.done:
                return exp
            self.s.emit("experiment", {"n": n, "id": exp.id})
            if exp.data.get("kind") == "contribution":
                return self.evaluate(exp)
            if not exp.data.get("commit"):
                exp = self._turn(exp)
                if exp.done:
                    return exp
            return self.evaluate(exp)
        except Exception as exc:  # a bug or git failing: recorded, the run goes on
            exp2 = self.log.get(n)
            if exp2 is not None and not exp2.done:
                return self.log.finish(exp2, CRASH, f"taskmill error: {one_line(str(exc), 500)}")
            raise
        finally:
            lock.release()

    def _turn(self, exp: Experiment) -> Experiment:
        parent = str(exp.data["parent"])
        ws = self.s.pool.acquire(exp.id, parent, fresh=True)
        try:
            return self._turn_in(exp, ws, parent)
        finally:
            self.s.pool.release(ws, delete_branch=True)

    def _turn_in(self, exp: Experiment, ws: Workspace, parent: str) -> Experiment:
        if self.s.agent is None or self.s.turn_runner is None:
            raise InvalidInput("research.toml names no agent",
                               hint='set agent = "NAME" (an [agents.NAME] table)')
        config, adapter = self.s.agent
        parent_value = exp.data.get("parent_metric")
        logs = self.s.state_dir / "logs"
        state = logs / f"{exp.n}.state"
        state.mkdir(parents=True, exist_ok=True)
        home = self.s.state_dir / "homes" / config.name
        home.mkdir(parents=True, exist_ok=True)
        note = state / "description.txt"
        note.unlink(missing_ok=True)
        text = prompt(self.s.program, self.config, exp.n, parent,
                      float(parent_value) if isinstance(parent_value, int | float) else 0.0,
                      self.sigma, self.log.all())
        env = {"TASKMILL_TASK_ID": exp.id, "TASKMILL_TASK_TITLE": f"experiment {exp.n}",
               "TASKMILL_ITERATION": "1", "TASKMILL_WORKTREE": str(ws.path),
               "TASKMILL_ACTOR": f"agent:{config.name}/{exp.id}",
               "TASKMILL_EXPERIMENT": str(exp.n), "TASKMILL_DESCRIPTION_FILE": str(note),
               "TASKMILL_RUN_ID": self.s.run_id, **self.s.agent_git_env}
        request = TurnRequest(
            task_id=exp.id, title=f"experiment {exp.n}", iteration=1, prompt=text,
            worktree=ws.path, home=home, state_dir=state, prompt_file=state / "prompt.md",
            usage_file=state / "usage.json", log_path=logs / f"{exp.n}.log",
            parent_env=self.s.env, taskmill_env=env, timeout_s=self.s.turn_timeout)
        result: TurnResult = self.s.turn_runner(adapter, config, request,
                                                containment=self.s.containment)
        self.s.pool.settle(ws)
        usage = result.usage
        spent = {"tokens": usage.input_tokens + usage.output_tokens,
                 "cost_usd": usage.cost_usd or 0.0, "turn_seconds": round(result.duration_s, 3),
                 "agent": config.name}
        if not result.ok:
            why = usage.error or ("timed out" if result.timed_out else
                                  f"exit {result.exit_code}")
            return self.log.finish(exp, CRASH, f"agent turn failed: {one_line(why, 400)}",
                                   **spent)
        described = note.read_text(encoding="utf-8", errors="replace").strip() \
            if note.is_file() else ""
        head = ws.git.rev("HEAD") or parent
        if not described and head != parent:
            described = ws.git.out("log", "-1", "--format=%s", head)
        description = one_line(described or f"experiment {exp.n}", 200)
        ws.git.commit_all(f"research: {description}\n\nTaskmill-Experiment: {exp.id}")
        commit = ws.git.rev("HEAD") or parent
        if commit == parent:
            return self.log.finish(exp, DISCARD, "no change", description=description,
                                   **spent)
        gitops.keep_ref(self.s.git, gitops.experiment_ref(self.log.key, exp.n), commit)
        exp = self.log.update(exp, commit=commit, phase="committed", description=description,
                              **spent)
        # the first measurement, in the experiment's own worktree
        m = measure(self.config.metric, ws.path, self.s.check_env,
                    timeout_s=self.config.experiment_timeout,
                    containment=self.s.containment)
        if m.cancelled:
            return exp  # the run is stopping: resumed by the next one
        return self.log.update(exp, first=m.to_json(), phase="measured")

    def evaluate(self, exp: Experiment) -> Experiment:
        """Decide a committed candidate: editable paths, its measurement, then
        :meth:`decide`."""
        d = exp.data
        commit, parent = str(d["commit"]), str(d["parent"])
        tip = self.tip()
        if d.get("kept_commit") and tip is not None and \
                self.s.git.is_ancestor(str(d["kept_commit"]), tip):
            return self.log.finish(exp, KEEP, "kept (recorded after a restart)", phase="decided")
        bad = gitops.outside(gitops.changed_paths(self.s.git, parent, commit),
                             self.config.editable)
        if bad:
            return self.log.finish(exp, DISCARD, "changes paths outside `editable`: "
                                   + ", ".join(bad[:20]), phase="decided")
        if d.get("kind") == "contribution":
            return self.decide(exp, commit, parent, None)
        first = d.get("first")
        if not isinstance(first, dict):
            m = self._measure_once(commit, exp.id)
            exp = self.log.update(exp, first=m.to_json(), phase="measured")
            first = exp.data["first"]
        if first.get("value") is None:
            return self.log.finish(exp, CRASH, one_line(str(first.get("error")), 800),
                                   figures=first.get("figures") or {},
                                   seconds=first.get("seconds"), phase="decided")
        value = float(first["value"])
        figures = first.get("figures") or {}
        _best_commit, best_value = self.best()
        parent_value = self.value_of(parent)
        against = parent_value if parent_value is not None else best_value
        if not self.config.better(value, against, self.sigma):
            return self.log.finish(
                exp, DISCARD, f"not better: {value:.6g} vs best {against:.6g} (needs more "
                f"than {self.config.threshold(self.sigma):.3g})", metric=value, figures=figures,
                seconds=first.get("seconds"), phase="decided")
        exp = self.log.update(exp, metric=value, figures=figures, seconds=first.get("seconds"))
        return self.decide(exp, commit, parent, value)

    def decide(self, exp: Experiment, commit: str, parent: str,
               value: float | None) -> Experiment:
        """Replay onto the newest best, re-measure in a fresh worktree, keep by CAS."""
        runs = max(self.config.verify_runs, 1 if value is None else 0)
        claimed = exp.data.get("claimed")
        for _ in range(CAS_TRIES):
            tip, best_value = self.best()
            candidate = gitops.replay(self.s.git, commit, parent, tip,
                                      self.s.git.out("log", "-1", "--format=%B", commit))
            if candidate is None:
                return self.log.finish(exp, DISCARD, f"conflicts with the new best {tip[:12]}",
                                       phase="decided")
            if candidate != commit:
                gitops.keep_ref(self.s.git, gitops.experiment_ref(self.log.key, exp.n,
                                                                  "-rebased"), candidate)
            verify_runs = runs if candidate == commit else max(runs, 1)
            if verify_runs:
                summary = self._measure_at(candidate, verify_runs, f"{exp.id}-verify")
                if isinstance(summary, Measurement):
                    return self.log.finish(exp, CRASH, "verification crashed: "
                                           + one_line(str(summary.error), 800), phase="decided")
                verified, verify_list = summary.mean, list(summary.runs)
            else:
                assert value is not None
                verified, verify_list = value, []
            figures = {"verified": verified, "verify_runs": verify_list,
                       "best_at_decision": best_value, "decided_on": tip}
            if value is None:
                figures["metric"] = verified
            if not self.config.better(verified, best_value, self.sigma):
                why = (f"did not reproduce: verified {verified:.6g} vs best {best_value:.6g} "
                       f"(needs more than {self.config.threshold(self.sigma):.3g})")
                return self.log.finish(exp, DISCARD, why, phase="decided", **figures)
            if isinstance(claimed, int | float) and self.config.better(
                    float(claimed), verified, self.sigma):
                return self.log.finish(
                    exp, DISCARD, f"claim does not reproduce: claimed {claimed:.6g}, measured "
                    f"{verified:.6g} (best {best_value:.6g})", phase="decided", **figures)
            exp = self.log.update(exp, kept_commit=candidate, phase="verified", **figures)
            if gitops.advance(self.s.git, self.config.branch, candidate, tip):
                with self._mutex:
                    self._values[candidate] = verified
                self.s.emit("kept", {"n": exp.n, "commit": candidate, "metric": verified})
                return self.log.finish(exp, KEEP, f"{best_value:.6g} -> {verified:.6g}",
                                       phase="decided")
            exp = self.log.update(exp, kept_commit=None, phase="measured")
        return self.log.finish(exp, DISCARD, "the branch kept moving; gave up", phase="decided")

    # -- measuring -------------------------------------------------------------------------

    def _measure_once(self, commit: str, name: str) -> Measurement:
        ws = self.s.pool.acquire(name, commit, fresh=True)
        try:
            return measure(self.config.metric, ws.path, self.s.check_env,
                           timeout_s=self.config.experiment_timeout,
                           containment=self.s.containment)
        finally:
            self.s.pool.release(ws, delete_branch=True)

    def _measure_at(self, commit: str, runs: int, name: str) -> Summary | Measurement:
        """``runs`` measurements of ``commit`` in a fresh worktree: their summary, or the
        first one that failed."""
        ws = self.s.pool.acquire(name, commit, fresh=True)
        try:
            values = []
            for _ in range(runs):
                m = measure(self.config.metric, ws.path, self.s.check_env,
                            timeout_s=self.config.experiment_timeout,
                            containment=self.s.containment)
                if m.value is None:
                    return m
                values.append(m.value)
            return Summary.of(values)
        finally:
            self.s.pool.release(ws, delete_branch=True)

    # -- contributions ---------------------------------------------------------------------

    def submit(self, patch: str, *, claimed: float | None = None,
               contributor: str | None = None) -> Experiment:
        """A change from elsewhere: applied to the current best, checked against
        ``editable``, re-measured by taskmill, kept only on its own measurement."""
        if self.s.git.current_branch() == self.config.branch:
            raise InvalidInput(f"the research branch {self.config.branch!r} is checked out in "
                               "your checkout; research never moves your branch",
                               hint="check out another branch first")
        self.load()
        if not any(e.verdict == BASELINE for e in self.log.all()):
            raise InvalidInput("this research has no baseline yet",
                               hint="`taskmill research run` measures it first")
        tip, value = self.best()
        with FileLock(self._lock_path("alloc")):
            n = max((e.n for e in self.log.all()), default=0) + 1
            exp = self.log.start(n, f"contribution {n}", {
                "kind": "contribution", "phase": "started", "parent": tip,
                "parent_metric": value, "contributor": contributor, "claimed": claimed,
                "started_at": iso(self.s.clock.now()), "run": self.s.run_id,
                "description": f"contribution from {contributor or 'unknown'}"})
            lock = try_lock(self._lock_path(f"exp-{n}"))
        assert lock is not None
        try:
            try:
                commit = gitops.apply_patch(self.s.git, tip, patch,
                                            f"research: contribution {n} from "
                                            f"{contributor or 'unknown'}")
            except InvalidInput as exc:
                return self.log.finish(exp, DISCARD, exc.message, phase="decided")
            gitops.keep_ref(self.s.git, gitops.experiment_ref(self.log.key, n), commit)
            exp = self.log.update(exp, commit=commit, phase="committed")
            return self.evaluate(exp)
        finally:
            lock.release()
