"""One task's life in the mill: iterations of agent turn + checks, then the merge queue.

Each iteration starts a fresh agent (a fresh context) whose prompt holds the task, the tail
of what failed last time and the progress notes. After the turn taskmill commits what the
agent left, runs the task's checks itself, and records the attempt. The loop stops, and the
task is marked ``blocked`` with the reason in a comment, when a limit is hit: iterations,
the per-task token or cost budget, or a circuit breaker (no change in N turns, the same
failure M times). Usage-limit answers pause the agent and do not count as iterations.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..agents.base import AgentAdapter, AgentConfig, TurnRequest
from ..agents.common import invalid_usage_message
from ..agents.runner import run_turn
from ..capability import SOCKET_ENV
from ..capability.server import CapabilityServer
from ..clock import Clock, iso
from ..containment import Containment
from ..ledger import Ledger
from ..model import Task
from ..paths import RUN_DIR, RunFiles
from ..proxy import ModelProxy
from ..proxy.turn import proxy_usage, through_proxy
from ..sandbox import Mounts
from .check_env import EXIT_NOT_FOUND, CheckGuard, not_found_in_output, not_found_message
from .checks import ChecksResult, run_checks, strip_terminal_codes, tail
from .events import EventBus
from .git import Git
from .lander import Lander, LandResult
from .prompt import PromptContext, build_prompt
from .settings import RunSettings
from .workspaces import Workspaces
from .worktrees import Workspace

_NOISE = re.compile(r"\d+(\.\d+)?\s*(s|ms|sec|seconds)\b|0x[0-9a-f]+|\b\d{4}-\d\d-\d\d[T ][\d:.]+")


def failure_signature(text: str) -> str:
    """A hash of a failure with timings and addresses removed, to spot repeats."""
    return hashlib.sha256(_NOISE.sub("#", text).encode()).hexdigest()[:16]


REJECTED = {"conflict": "rejected_conflict", "merge_checks": "rejected_checks"}
"""The outcome of an attempt that passed its checks but that the merge queue sent back, by
the reason of the rejection."""

# "CONFLICT (content): Merge conflict in a.py", "CONFLICT (modify/delete): a.py deleted in..."
_CONFLICT_PATH = re.compile(r"^CONFLICT \([^)]*\): (?:Merge conflict in )?(\S+)", re.MULTILINE)


def rejection_summary(kind: str, detail: str) -> str:
    """One line (a few for red checks) saying why the merge queue rejected a branch."""
    if kind == "conflict":
        paths = list(dict.fromkeys(_CONFLICT_PATH.findall(detail)))
        if paths:
            more = f" and {len(paths) - 5} more" if len(paths) > 5 else ""
            return "conflict in " + ", ".join(paths[:5]) + more
        first = detail.strip().splitlines()[0] if detail.strip() else "a conflict"
        return f"conflict: {first[:200]}"
    return "the project checks failed on the merged result:\n" + tail(detail.strip(), 1500)


def unchecked_reason(task_id: str) -> str:
    """Why a task without checks, in a project without checks, is not worked."""
    return (f"{task_id} has no checks and the project has none ([checks] commands), so "
            "nothing would verify its work: it is not run. Give it checks (taskmill update "
            f"{task_id} --check 'COMMAND'), set [checks] commands in .taskmill/config.toml, "
            "or opt in to landing it unverified with `taskmill run --allow-unchecked` or "
            "[run] allow_unchecked = true")


@dataclass
class AgentGate:
    """Pauses all work of one agent while its usage limit lasts."""

    clock: Clock
    paused_until: dict[str, float] = field(default_factory=dict)
    backoff: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait(self, agent: str, stop: threading.Event) -> None:
        while not stop.is_set():
            with self.lock:
                until = self.paused_until.get(agent, 0.0)
            remaining = until - self.clock.monotonic()
            if remaining <= 0:
                return
            stop.wait(min(remaining, 1.0))

    def pause(self, agent: str, retry_after: float | None, base: float) -> float:
        with self.lock:
            if retry_after is None:
                delay = self.backoff.get(agent, base / 2) * 2
                self.backoff[agent] = min(delay, 1800.0)
                delay = self.backoff[agent]
            else:
                delay = max(1.0, retry_after)
            self.paused_until[agent] = max(self.paused_until.get(agent, 0.0),
                                           self.clock.monotonic() + delay)
            return delay

    def succeeded(self, agent: str) -> None:
        with self.lock:
            self.backoff.pop(agent, None)


@dataclass
class Outcome:
    task_id: str
    title: str
    outcome: str
    """landed | satisfied | blocked | interrupted | error (``satisfied``: the task's branch
    had nothing the target lacks, so it was closed without a commit)"""
    iterations: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0
    commit: str | None = None
    reason: str = ""


@dataclass
class WorkerContext:
    """What every task worker shares (built once per run)."""

    run_id: str
    settings: RunSettings
    git: Git
    pool: Workspaces
    queue: Lander
    bus: EventBus
    clock: Clock
    gate: AgentGate
    stop: threading.Event
    ledger_factory: Callable[[], Ledger]
    agents: Callable[[Task], tuple[AgentConfig, AgentAdapter]]
    project_checks: list[str]
    parent_env: Mapping[str, str]
    check_env: Mapping[str, str]
    ledger_dir: Path
    logs_dir: Path
    homes_dir: Path
    agent_git_env: Mapping[str, str] = field(default_factory=dict)
    """Git identity handed to agents (their HOME is isolated, so ~/.gitconfig is not seen)."""
    on_landed: Callable[[str], None] | None = None
    """Called with the task's id as soon as it is closed as landed, before its worktree is
    cleaned, so that the scheduler dispatches what it unblocked at once."""
    check_guard: CheckGuard | None = None
    """Validates check commands before the first turn; warns once per run about the
    checks' Python environment."""
    abort: threading.Event = field(default_factory=threading.Event)
    """Set when the run stops for good: turns and checks still running are cut."""
    kill_now: threading.Event = field(default_factory=threading.Event)
    """Set on a second Ctrl-C: agents are killed without a grace of their own."""
    containment: Containment | None = None
    """How nothing a turn or check starts outlives it (None: the process group only)."""
    capability: CapabilityServer | None = None
    """Serves each turn's ledger socket (None: the agent gets ``TASKMILL_DIR`` instead)."""
    sandbox: dict[str, Any] = field(default_factory=dict)
    """What the sandbox allows (or why there is none): recorded in every attempt."""
    proxy: ModelProxy | None = None
    """The model proxy agents with a ``base_url`` go through (None: they go direct)."""


class TaskWorker:
    def __init__(self, ctx: WorkerContext, task: Task, lap: int, *, resumed: bool = False) -> None:
        self.ctx = ctx
        self.resumed = resumed
        self.task = task
        self.lap = lap
        self.ledger = ctx.ledger_factory()
        self.actor = f"mill:{ctx.run_id}"
        self.out = Outcome(task.id, task.title, "error")
        self.progress_file = RunFiles(ctx.ledger_dir / RUN_DIR).progress(task.id)
        self._passed_attempt: int | None = None
        """The attempt whose work is in the merge queue (its outcome says if it is rejected)."""
        self.unverified = False
        self._turn_detail: dict[str, Any] = {}
        """What the attempt of the current turn records besides its outcome (the proxy's
        usage and the agent's own figures)."""

    # -- the whole life ------------------------------------------------------------------

    def run(self) -> Outcome:
        start = self.ctx.clock.monotonic()
        ws: Workspace | None = None
        landed = False
        try:
            base = self.ctx.queue.tip()
            # a task taken over from a run that died may have landed before it was closed
            # (of this lap only: a reopened task's earlier landing is not its new work)
            found = (self.ctx.git.find_landed(self.ctx.queue.ref, self.task.id, lap=self.lap)
                     if self.resumed else None)
            if found:  # landed by an earlier run that died before closing the task
                self._close(found)
                landed = True
                self.ctx.pool.drop_branch(self.task.id)
                return self.out
            problem = self._check_commands_problem()
            if problem:  # a check that cannot run would only burn agent turns
                self._block(problem)
                return self.out
            ws = self.ctx.pool.acquire(self.task.id, base,
                                       fresh=not self.resumed and self.lap == 1)
            self.ctx.bus.emit("workspace", task=self.task.id, path=str(ws.path),
                              branch=ws.branch, resumed=ws.resumed)
            failure: tuple[str, str] | None = self._pending_failure()
            # a run killed after the checks passed: land what passed, no new agent turn
            ready = self.resumed and self._passed_at(ws)
            while True:
                if ready:
                    passed, ready = True, False
                    self._passed_attempt = (self._last_counted_attempt() or {}).get("id")
                else:
                    passed, failure = self._loop(ws, failure)
                if not passed:
                    break
                self.ctx.bus.emit("merge_queued", task=self.task.id)
                result = self.ctx.queue.land(self.task, ws, lap=self.lap,
                                             attempt_log=self._log_path("merge"))
                if result.outcome in ("landed", "already_landed"):
                    assert result.commit
                    if result.checkout_note:
                        self.ctx.bus.emit("checkout_not_moved", task=self.task.id,
                                          message=result.checkout_note)
                    self._close(result.commit)
                    landed = True
                    break
                if result.outcome == "satisfied":
                    assert result.commit
                    self._satisfied(result.commit)
                    landed = True  # nothing of the branch is missing from the target
                    break
                if self.ctx.abort.is_set():  # the landing's checks were cut: not a verdict
                    self._interrupted("its landing was cut by the run stopping")
                    break
                kind = "conflict" if result.outcome == "conflict" else "merge_checks"
                self._rejected(kind, result)
                failure = (kind, result.detail)
                missing = self._not_found(result.checks, project=True)
                if missing:
                    self._block(missing)
                    break
            if self.out.outcome == "interrupted":
                self._record_interrupted()
            return self.out
        except Exception as exc:  # a bug or a git failure: never the task's fault
            self._internal_error(exc)
            return self.out
        finally:
            self.out.seconds = self.ctx.clock.monotonic() - start
            with contextlib.suppress(Exception):
                done, tin, tout, cost = self._counted_iterations()
                self.out.iterations, self.out.input_tokens = done, tin
                self.out.output_tokens, self.out.cost_usd = tout, cost
            if ws is not None:
                try:
                    self.ctx.pool.release(ws, delete_branch=landed)
                except Exception as exc:
                    self.ctx.bus.emit("warning", task=self.task.id,
                                      message=f"could not clean worktree: {exc}")
            self.ledger.close_db()

    def _last_counted_attempt(self) -> dict[str, Any] | None:
        """The last attempt that counted (not interrupted by a crash, not rate-limited)."""
        attempts: list[dict[str, Any]] = self.ledger.attempts(self.task.id)
        for attempt in reversed(attempts):
            if attempt.get("outcome") not in (None, "interrupted", "rate_limited"):
                return dict(attempt)
        return None

    def _pending_failure(self) -> tuple[str, str] | None:
        """The failure of the last finished attempt (when resuming): a turn redone after a
        crash sees what the one it replaces saw."""
        attempt = self._last_counted_attempt()
        detail = (attempt or {}).get("detail") or {}
        if attempt and attempt["outcome"] in ("failed", "turn_failed", "timeout",
                                              *REJECTED.values()) \
                and detail.get("failure"):
            return detail.get("failure_kind") or "checks", str(detail["failure"])
        return None

    def _passed_at(self, ws: Workspace) -> bool:
        """Whether the last attempt passed its checks at the commit the branch is on."""
        attempt = self._last_counted_attempt()
        # a turn that changed nothing has no commit: the head it passed at is in its detail
        at = attempt and (attempt["commit_sha"] or (attempt.get("detail") or {}).get("head"))
        return bool(attempt and attempt["outcome"] == "passed" and at
                    and at == ws.git.out("rev-parse", "HEAD"))

    # -- iterations ----------------------------------------------------------------------

    def _counted_iterations(self) -> tuple[int, int, int, float]:
        return self.ledger.lap_usage(self.task.id, self.lap)

    def _loop(self, ws: Workspace, failure: tuple[str, str] | None) -> tuple[bool, tuple[str, str] | None]:
        settings = self.ctx.settings
        config, adapter = self.ctx.agents(self.task)
        checks = self.task.checks or self.ctx.project_checks
        no_change = 0
        signatures: dict[str, int] = {}
        while True:
            if self.ctx.stop.is_set():
                self._interrupted("the run was stopped before its next turn")
                return False, failure
            done, tin, tout, cost = self._counted_iterations()
            self.out.iterations, self.out.input_tokens = done, tin
            self.out.output_tokens, self.out.cost_usd = tout, cost
            reason = self._limit_reason(done, tin + tout, cost)
            if reason:
                self._block(reason)
                return False, failure
            self.ctx.gate.wait(config.name, self.ctx.stop)
            if self.ctx.stop.is_set():
                continue
            iteration = done + 1
            task = self.ledger.show(self.task.id)
            # a check, or the merge queue's checks, may have broken the slot's .git
            self._settle(ws, ws.base)
            start, before = ws.git.out("rev-parse", "HEAD", "HEAD^{tree}").split()
            attempt_id, log_path = self._start_attempt(iteration, config)
            request = self._request(task, ws, iteration, checks, failure, log_path)
            self.ctx.bus.emit("turn_started", task=task.id, iteration=iteration,
                              agent=config.name, attempt=attempt_id)
            turn = through_proxy(self.ctx.proxy, config, adapter, request)
            self._turn_detail = {}
            try:
                result = run_turn(turn.adapter, turn.config, turn.request, cancel=self.ctx.abort,
                                  kill_now=self.ctx.kill_now, containment=self.ctx.containment,
                                  mounts=self._mounts(ws, turn.request))
            finally:  # the turn is over: so are its capability and its way to the model
                if request.capability_socket is not None and self.ctx.capability is not None:
                    self.ctx.capability.unregister(request.capability_socket)
                counted = (self.ctx.proxy.unregister(turn.route.token)
                           if turn.route is not None and self.ctx.proxy is not None else None)
            if counted is not None and self.ctx.proxy is not None:
                self._turn_detail = proxy_usage(result.usage, counted, self.ctx.proxy.prices)
            usage = result.usage
            if result.cancelled:
                self._finish_attempt(attempt_id, "interrupted", result, None,
                                     {"interrupted": "the run was stopped during the turn"})
                self._interrupted("its turn was cut by the run stopping")
                return False, failure
            if usage.rate_limited:
                delay = self.ctx.gate.pause(config.name, usage.retry_after_s,
                                            settings.rate_limit_backoff)
                self._finish_attempt(attempt_id, "rate_limited", result, None,
                                     {"retry_after_s": delay, "error": usage.error})
                self.ctx.bus.emit("agent_paused", agent=config.name, task=task.id,
                                  seconds=round(delay, 1), reason=usage.error or "rate limit")
                continue
            self.ctx.gate.succeeded(config.name)
            # the agent may have broken the slot's .git or moved it off its branch: repaired
            # first (its work stays), then committed through git bound to the slot
            self._settle(ws, start)
            wt = ws.git
            wt.commit_all(f"taskmill: {task.id} iteration {iteration}\n\n{task.title}\n")
            head, after, *parents = wt.out("rev-parse", "HEAD", "HEAD^{tree}", "HEAD^@").split()
            restarted = None
            if head != start and start not in parents \
                    and not self.ctx.pool.shares_history(head, ws.base):
                restarted = self.ctx.pool.restart_branch(ws, self.ctx.queue.tip(), task.id)
                self._recovered(restarted, "branch_restarted")
                start = head = ws.base  # the turn's work is not on the branch
                after = wt.out("rev-parse", "HEAD^{tree}")
            changed = after != before
            no_change = 0 if changed else no_change + 1
            # the attempt's commit is one it made (taskmill's or the agent's own) on the
            # task's branch, never the commit it started from (the target's, or another's)
            made = head if head != start else None
            check_result: ChecksResult | None = None
            missing: str | None = None
            detail: dict[str, Any] = {"changed": changed, "exit_code": result.exit_code,
                                      "timed_out": result.timed_out, "duration_s": round(result.duration_s, 3),
                                      "start": start, "head": head}
            if self.ctx.sandbox:
                detail["sandbox"] = self.ctx.sandbox
            if usage.error:
                detail["agent_error"] = usage.error
            if result.limit_hit:  # the line is in usage.error (the failure the agent gets)
                detail["limit_hit"] = result.limit_hit
            if restarted is not None:
                failure = ("history", f"{restarted}. The work of this turn is not on the "
                           "branch: do the task again on top of the target's current code, "
                           "and do not delete or replace the task's branch.")
                outcome = "failed"
            elif not result.ok:
                what = "timed out" if result.timed_out else f"exited with {result.exit_code}"
                failure = ("turn", strip_terminal_codes(f"the agent {what}. {usage.error or ''}".strip()))
                outcome = "timeout" if result.timed_out else "turn_failed"
            else:
                check_result = run_checks(checks, ws.path, self.ctx.check_env,
                                          timeout_s=settings.check_timeout,
                                          log_path=log_path.with_suffix(".checks.log"),
                                          cancel=self.ctx.abort,
                                          containment=self.ctx.containment) if checks else None
                if check_result is not None:
                    detail["checks"] = check_result.to_json()
                else:
                    detail["unverified"] = ("no checks: the task and the project have none, "
                                            "so this work is not verified (allow_unchecked)")
                if check_result is not None and check_result.cancelled:
                    detail["interrupted"] = "the run was stopped during the checks"
                    self._finish_attempt(attempt_id, "interrupted", result,
                                         made, detail)
                    self._interrupted("its checks were cut by the run stopping")
                    return False, failure
                conflict_left = self._conflict_markers(wt) if failure and failure[0] == "conflict" else ""
                if conflict_left:
                    failure = ("conflict", "conflict markers remain in: " + conflict_left)
                    outcome = "failed"
                elif check_result is None or check_result.ok:
                    self.unverified = check_result is None
                    self._finish_attempt(attempt_id, "passed", result, made, detail)
                    self._passed_attempt = attempt_id
                    self.ctx.bus.emit("checks_passed", task=task.id, iteration=iteration,
                                      commit=head, tokens=usage.input_tokens + usage.output_tokens,
                                      **({"unverified": True} if self.unverified else {}))
                    return True, None
                else:
                    failure = ("checks", check_result.failure_text())
                    outcome = "failed"
                    missing = self._not_found(check_result, project=not self.task.checks)
            detail["failure"] = failure[1]
            detail["failure_kind"] = failure[0]
            self._finish_attempt(attempt_id, outcome, result, made, detail)
            self.ctx.bus.emit("checks_failed", task=task.id, iteration=iteration, outcome=outcome,
                              detail=tail(failure[1], 500))
            if missing:
                self._block(missing)  # exit 127: no turn of the agent's makes it exist
                return False, failure
            if result.timed_out:  # a limit like the others: the loop stops here
                self._block(f"the agent's turn timed out: it hit the wall-clock limit "
                            f"(--turn-timeout {settings.turn_timeout:g}s) and its process "
                            "group was killed")
                return False, failure
            sig = failure_signature(failure[1])
            signatures[sig] = signatures.get(sig, 0) + 1
            if no_change >= settings.no_change_limit:
                self._block(f"circuit breaker: no change to the worktree in {no_change} "
                            "consecutive turns")
                return False, failure
            if signatures[sig] >= settings.same_failure_limit:
                self._block(f"circuit breaker: the same failure {signatures[sig]} times:\n"
                            + tail(failure[1], 1500))
                return False, failure

    def _mounts(self, ws: Workspace, request: TurnRequest) -> Mounts | None:
        """What the turn sees in the sandbox: its worktree, the agent's HOME, the turn's
        state directory and the task's progress notes writable (the notes file is created
        so that it can be shown alone)."""
        if self.ctx.containment is None or self.ctx.containment.sandbox is None:
            return None
        self.progress_file.touch()
        return Mounts.for_worktree(
            ws.path, admin=ws.admin,
            writable=(request.home, request.state_dir, self.progress_file),
            proxy_port=request.proxy_port, proxy_socket=request.proxy_socket,
            capability_socket=request.capability_socket)

    def _settle(self, ws: Workspace, fallback: str) -> None:
        """Make the slot a proper worktree on the task's branch again (see
        :meth:`WorktreePool.settle` and :meth:`WorktreePool.recover_branch`)."""
        self.ctx.pool.settle(ws)
        what = self.ctx.pool.recover_branch(ws, fallback)
        if what is not None:
            self._recovered(what, "branch_recovered")

    def _recovered(self, message: str, kind: str) -> None:
        """Say (event and audit record) what taskmill did to a task's branch."""
        self.ctx.bus.emit("warning", task=self.task.id, message=message)
        with self.ledger.transaction():
            self.ledger.record(kind, self.task.id, {"message": message}, actor=self.actor)

    def _limit_reason(self, done: int, tokens: int, cost: float) -> str | None:
        s = self.ctx.settings
        if done >= s.max_iterations:
            rejected, last = self._rejections()
            if last is not None:  # its last turn passed its checks: the merge queue said no
                times = "once" if rejected == 1 else f"{rejected} times"
                return (f"the merge queue rejected it {times} (--max-iterations "
                        f"{s.max_iterations} reached): {last}")
            also = (f" (the merge queue also rejected it {rejected} "
                    f"time{'s' if rejected != 1 else ''})" if rejected else "")
            return (f"reached --max-iterations ({s.max_iterations}) without passing its "
                    f"checks{also}")
        if s.max_tokens is not None and tokens >= s.max_tokens:
            return f"token budget spent: {tokens} of {s.max_tokens}"
        if s.max_cost is not None and cost >= s.max_cost:
            return f"cost budget spent: ${cost:.4f} of ${s.max_cost:.4f}"
        return None

    def _check_commands_problem(self) -> str | None:
        """Why the task's checks (or the project's, run by the merge queue) cannot run: a
        command that does not exist. Also warns, once per run, about the checks' Python."""
        guard = self.ctx.check_guard
        if guard is None:
            return None
        own = list(self.task.checks or [])
        project = list(self.ctx.project_checks)
        for warning in guard.new_warnings(own):
            self.ctx.bus.emit("warning", task=self.task.id, about="editable_install",
                              message=warning)
        if not own and not project and not self.ctx.settings.allow_unchecked:
            return unchecked_reason(self.task.id)
        problems = guard.problems(own)
        if problems:
            return f"{problems[0]}. {self._fix_hint(project=False)}"
        problems = guard.problems(project)
        if problems:
            return f"{problems[0]}. {self._fix_hint(project=True)}"
        return None

    def _fix_hint(self, *, project: bool) -> str:
        reopen = f"taskmill update {self.task.id} --status open"
        if project:
            return ("Fix [checks] commands in .taskmill/config.toml (the project's checks), "
                    f"then: {reopen}")
        return (f"Fix the task's checks: taskmill update {self.task.id} --check 'COMMAND' "
                "(repeat --check for each), then: " + reopen)

    def _not_found(self, checks: ChecksResult | None, *, project: bool) -> str | None:
        """The block reason when a check exited 127 because bash found no such command."""
        for run in checks.runs if checks else []:
            name = not_found_in_output(run.output) if run.exit_code == EXIT_NOT_FOUND else None
            if name:
                return (f"{not_found_message(name, run.command, self.ctx.check_env)} "
                        f"(exit 127). {self._fix_hint(project=project)}")
        return None

    @staticmethod
    def _conflict_markers(wt: Git) -> str:
        proc = wt.run("grep", "-l", "-E", "^(<<<<<<<|>>>>>>>) ", check=False)
        return ", ".join(proc.stdout.split()) if proc.returncode == 0 else ""

    def _request(self, task: Task, ws: Workspace, iteration: int, checks: list[str],
                 failure: tuple[str, str] | None, log_path: Path) -> TurnRequest:
        self.progress_file.parent.mkdir(parents=True, exist_ok=True)
        notes = self.progress_file.read_text(encoding="utf-8") if self.progress_file.exists() else ""
        prompt = build_prompt(task, PromptContext(
            iteration=iteration, max_iterations=self.ctx.settings.max_iterations,
            failure=failure[1] if failure else None, failure_kind=failure[0] if failure else None,
            progress_notes=notes, progress_file=str(self.progress_file), checks=tuple(checks)))
        state = log_path.parent / f"{log_path.stem}.state"
        state.mkdir(parents=True, exist_ok=True)
        config, _ = self.ctx.agents(task)
        home = self.ctx.homes_dir / config.name
        home.mkdir(parents=True, exist_ok=True)
        env = {
            "TASKMILL_TASK_ID": task.id,
            "TASKMILL_TASK_TITLE": task.title,
            "TASKMILL_ITERATION": str(iteration),
            "TASKMILL_WORKTREE": str(ws.path),
            "TASKMILL_ACTOR": f"agent:{config.name}/{task.id}",
            "TASKMILL_PROGRESS_FILE": str(self.progress_file),
            # how a later run finds this agent, should this run be killed (engine.py)
            "TASKMILL_RUN_ID": self.ctx.run_id,
            **self.ctx.agent_git_env,
        }
        socket_path = None
        if self.ctx.capability is not None:  # the ledger only through the mill's socket
            socket_path = self.ctx.capability.register(task.id, config.name)
            env[SOCKET_ENV] = str(socket_path)
        else:
            env["TASKMILL_DIR"] = str(self.ctx.ledger_dir)
        return TurnRequest(
            task_id=task.id, title=task.title, iteration=iteration, prompt=prompt,
            worktree=ws.path, home=home, state_dir=state, prompt_file=state / "prompt.md",
            usage_file=state / "usage.json", log_path=log_path,
            parent_env=self.ctx.parent_env, taskmill_env=env,
            timeout_s=self.ctx.settings.turn_timeout, capability_socket=socket_path)

    # -- ledger records ------------------------------------------------------------------

    def _log_path(self, name: str) -> Path:
        folder = self.ctx.logs_dir / self.task.id
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{name}.log"

    def _start_attempt(self, iteration: int, config: AgentConfig) -> tuple[int, Path]:
        now = iso(self.ctx.clock.now())
        log_path = self._log_path(f"lap{self.lap}-iter{iteration}-{now.replace(':', '')}")
        attempt_id = self.ledger.start_attempt(
            self.task.id, iteration=iteration, agent=config.name, model=config.model,
            log_path=str(log_path), run_id=self.ctx.run_id, lap=self.lap, actor=self.actor,
            now=now)
        return attempt_id, log_path

    def _finish_attempt(self, attempt_id: int, outcome: str, result: Any, commit: str | None,
                        detail: dict[str, Any]) -> None:
        usage = result.usage
        now = iso(self.ctx.clock.now())
        detail.update(self._turn_detail)
        if usage.session_id:
            detail["session_id"] = usage.session_id
        if usage.cache_read_tokens or usage.cache_write_tokens:
            detail["cache_read_tokens"] = usage.cache_read_tokens
            detail["cache_write_tokens"] = usage.cache_write_tokens
        usage_error = invalid_usage_message(usage)
        if usage_error:
            detail["usage_error"] = usage_error
        self.ledger.finish_attempt(
            self.task.id, attempt_id, outcome=outcome, input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens, cost_usd=usage.cost_usd, commit=commit,
            model=usage.model, detail=detail, seconds=round(result.duration_s, 3),
            usage_error=usage_error, actor=self.actor, now=now)
        if usage_error:
            self.ctx.bus.emit("usage_invalid", task=self.task.id, attempt=attempt_id,
                              message=usage_error)
        self.ctx.bus.emit("turn_finished", task=self.task.id, attempt=attempt_id, outcome=outcome,
                          input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                          cost_usd=usage.cost_usd, seconds=round(result.duration_s, 3))

    def _rejections(self) -> tuple[int, str | None]:
        """How many attempts of this lap the merge queue rejected, and why the last counted
        attempt was rejected (None when it was not)."""
        rejected = self.ledger.count_attempts(self.task.id, self.lap, REJECTED.values())
        last = self._last_counted_attempt()
        if last is None or last["outcome"] not in REJECTED.values():
            return int(rejected), None
        detail = last.get("detail") or {}
        return int(rejected), str(detail.get("rejection") or last["outcome"])

    def _rejected(self, kind: str, result: LandResult) -> None:
        """The merge queue sent the branch back: the attempt that passed says so, and so does
        the audit trail."""
        summary = rejection_summary(kind, result.detail)
        outcome = REJECTED[kind]
        attempt_id = self._passed_attempt
        now = iso(self.ctx.clock.now())
        with self.ledger.transaction():
            if attempt_id is not None:
                detail: dict[str, Any] = {"failure": result.detail, "failure_kind": kind,
                                          "rejection": summary}
                if result.checks is not None:
                    detail["merge_checks"] = result.checks.to_json()
                self.ledger.amend_attempt(attempt_id, outcome=outcome, detail=detail)
            self.ledger.record("merge_rejected", self.task.id, {
                "attempt": attempt_id, "reason": kind, "summary": summary,
                "detail": tail(result.detail, 1000)}, actor=self.actor, ts=now)
        self._passed_attempt = None
        self.ctx.bus.emit("merge_rejected", task=self.task.id, reason=kind, attempt=attempt_id,
                          summary=summary, detail=tail(result.detail, 1000))

    def _satisfied(self, commit: str) -> None:
        """Closed without a commit: the target already has everything the branch has."""
        with self.ledger.transaction():
            self.ledger.close(self.task.id, f"already satisfied at {commit}", actor=self.actor,
                              system=True)
            self.ledger.record("already_satisfied", self.task.id,
                               {"commit": commit, "lap": self.lap,
                                "attempt": self._passed_attempt}, actor=self.actor)
        self.out.outcome = "satisfied"
        self.out.commit = commit
        self.ctx.bus.emit("satisfied", task=self.task.id, commit=commit)
        if self.ctx.on_landed is not None:
            self.ctx.on_landed(self.task.id)

    def _close(self, commit: str) -> None:
        self.ledger.close(self.task.id, f"landed {commit}", actor=self.actor, system=True)
        self.out.outcome = "landed"
        self.out.commit = commit
        if self.unverified:
            self.ctx.bus.emit("landed", task=self.task.id, commit=commit, unverified=True,
                              message="landed unverified: the task and the project have no "
                                      "checks (allowed by allow_unchecked)")
        else:
            self.ctx.bus.emit("landed", task=self.task.id, commit=commit)
        if self.ctx.on_landed is not None:
            self.ctx.on_landed(self.task.id)

    def _interrupted(self, why: str) -> None:
        self.out.outcome = "interrupted"
        self.out.reason = (f"interrupted: {why}; it stays in progress and the next "
                           "`taskmill run` resumes it")

    def _record_interrupted(self) -> None:
        """The audit trail says the task was interrupted; it stays ``in_progress`` under
        this run, so the next run takes it over (resuming its branch)."""
        with contextlib.suppress(Exception), self.ledger.transaction():
            self.ledger.record("interrupted", self.task.id,
                               {"run": self.ctx.run_id, "reason": self.out.reason},
                               actor=self.actor)
        self.ctx.bus.emit("interrupted", task=self.task.id, reason=self.out.reason)

    def _internal_error(self, exc: Exception) -> None:
        """A taskmill bug or a git failure is not the task's fault: the attempt in flight is
        marked ``error`` (the message in its detail), an audit event says what happened,
        and the task is left for the next run to retry (in progress under this run, which
        the next run takes over). Never blocked, never a comment."""
        import traceback

        message = f"{type(exc).__name__}: {exc}"
        if self.out.outcome == "landed":  # closed already: only the clean-up failed
            self.ctx.bus.emit("warning", task=self.task.id,
                              message=f"taskmill error after landing: {message}")
            return
        self.out.outcome = "error"
        self.out.reason = (f"taskmill error (not the task's fault): {message}; the next "
                           "`taskmill run` retries it")
        detail = {"error": message,
                  "traceback": "".join(traceback.format_exception(exc))[-4000:]}
        try:
            now = iso(self.ctx.clock.now())
            with self.ledger.transaction():
                self.ledger.end_open_attempts(self.task.id, outcome="error", ended_at=now,
                                              detail=detail, run_id=self.ctx.run_id)
                self.ledger.record("internal_error", self.task.id,
                                   {"run": self.ctx.run_id, "error": message},
                                   actor=self.actor, ts=now)
        except Exception as again:  # the ledger itself failed: say so, nothing more to do
            detail["ledger_error"] = repr(again)
        self.ctx.bus.emit("internal_error", task=self.task.id, error=message)

    def _block(self, reason: str) -> None:
        self.ledger.block(self.task.id, reason, actor=self.actor)
        self.out.outcome = "blocked"
        self.out.reason = reason
        self.ctx.bus.emit("blocked", task=self.task.id, reason=reason)
