"""``taskmill run``: claim ready work, hand it to workers, dispatch what becomes ready at once.

The scheduler runs in the calling thread; each claimed task's worker (see :mod:`.worker`)
runs on the run's :class:`~.executor.Executor` (threads of this process by default), and a
worker that finishes, or a task that lands, wakes the scheduler at once, so a dependent
task starts as soon as its blocker lands (no polling interval). Among ready tasks
of equal priority the one with the longest chain of work waiting on it goes first, and while
a parked branch on which a longer chain waits than on any ready task is landing, a worker is
kept free for the task it unblocks (the critical path does not wait for a whole turn of
other work).

Landing: a worker whose task passed its checks parks the branch in the run's landing queue
(:mod:`.landing_queue`: one thread lands parked branches in batches with a
:class:`~.batch.BatchLander`) and takes the next ready task at once; the scheduler acts on
the queue's verdict (closes the task, or hands it back to the next free worker ahead of new
work). ``[merge] batch_max = 1`` lands one branch at a time.

Stopping: :meth:`Mill.signal` (the CLI's SIGINT/SIGTERM/SIGHUP handler) asks the run to
stop. The first one dispatches nothing new and lets in-flight turns (and their checks and
landing) finish for ``grace`` seconds, then cuts them; a second one kills the agents at
once. Parked branches go on landing during the grace; a landing whose checks are cut by it
lands nothing. Interrupted tasks stay ``in_progress`` under this run, whose lock is gone when
it exits: the next run takes them over like those of a run that died, branch and all (a
parked one goes straight back to the landing queue).

Crash safety: every run holds a lock file for its lifetime. A task left ``in_progress`` by a
run whose lock is free (the process died) is recovered at start: if its commit is already on
the target it is closed, otherwise its attempts are marked interrupted and it is worked
again, resuming its branch.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..agents.base import AgentAdapter, AgentConfig
from ..agents.registry import UnknownAdapterError, get_adapter
from ..audit_anchor import open_store
from ..capability.server import CapabilityServer, TurnScope
from ..cgroups import ROOT as CGROUP_ROOT
from ..cgroups import Limiter, Limits, limits_info
from ..cgroups import limiter as cgroup_limiter
from ..clock import Clock, iso
from ..config import Config
from ..containment import Containment, containment
from ..control import MILL_PREFIX, interrupted_ids, is_paused, mark_interrupted, run_alive
from ..errors import InvalidInput
from ..kinds import SUCCESS, MillEvent, TaskOutcome
from ..ledger import Ledger, LedgerStore, database_url
from ..locks import FileLock
from ..model import Task
from ..netproxy import NetProxy, NetProxyError
from ..paths import EVENTS_FILE, PAUSE_FILE, LedgerPaths, git_common_dir
from ..proxy import ModelProxy, PriceTable, ProxyError
from ..proxy.turn import uses_proxy
from ..review.approval import ApprovalRule
from ..review.gate import ReviewSettings, ReviewSetup
from ..roles.book import RoleBook
from ..sandbox import Layout, Sandbox, SandboxSettings, choose, unsandboxed_warning
from .anchoring import Anchorer
from .batch import BatchLander, MergeSettings
from .batch_trail import BatchTrail
from .check_cache import CACHE_FILE, CheckCache
from .check_env import CheckGuard, check_env
from .events import EventBus
from .executor import Executor, ExecutorFactory
from .executor_threads import ThreadExecutor
from .gate import AgentGate
from .git import Git, ensure_identity, git_env, identity_env
from .land import MergeQueue, recover_interrupted_advance
from .lander import Lander
from .lander_checkout import LanderCheckout
from .landing_queue import LandingQueue
from .settings import RunSettings
from .speculation import SLOTS
from .turn_runner import TurnRunner, default_turn_runner
from .watch import Watch
from .worker import Outcome, TaskWorker, WorkerContext, unchecked_reason
from .workspaces import Workspaces
from .worktrees import WorktreePool

__all__ = ["EVENTS_FILE", "MILL_PREFIX", "PAUSE_FILE", "interrupted_ids", "mark_interrupted",
           "run_alive"]  # at home in paths and control, still importable from here
NO_AGENT_HINT = ("give each an agent (taskmill update ID --agent NAME), or give the run a "
                 "default: [run] agent in .taskmill/config.toml, --agent NAME or --agent-cmd CMD")


def stop_orphaned_agents(run_id: str) -> int:
    """Kill the agents (and what they started) of a run that died: they run in sessions of
    their own, so a ``kill -9`` of taskmill leaves them working. They are found by the
    ``TASKMILL_RUN_ID`` in their environment (Linux ``/proc``; elsewhere nothing is done).
    Returns how many process groups were killed."""
    marker = f"TASKMILL_RUN_ID={run_id}".encode()
    groups: set[int] = set()
    proc = Path("/proc")
    for entry in proc.iterdir() if proc.is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                groups.add(os.getpgid(int(entry.name)))
        except (OSError, ProcessLookupError):
            continue
    groups.discard(os.getpgid(0))
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    return len(groups)




def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


@dataclass
class RunSummary:
    run_id: str
    target: str
    outcomes: list[Outcome] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    """Ready tasks the run did not work, each ``{"task", "reason"}`` (e.g. no agent)."""
    refused: dict[str, str] = field(default_factory=dict)
    """Tasks not dispatched, with why (no checks anywhere, without --allow-unchecked)."""
    held: list[dict[str, str]] = field(default_factory=list)
    """Ready tasks that waited because their role spent its daily budget, each
    ``{"task", "role", "reason", "until"}`` (not a failure: they are worked another day)."""
    stopped_by: int | None = None
    """The signal that stopped the run (its exit status is then 128 + the signal)."""

    @property
    def exit_code(self) -> int:
        if self.stopped_by is not None:
            return 128 + self.stopped_by
        success = all(o.outcome in SUCCESS | {TaskOutcome.HELD} for o in self.outcomes)
        return 0 if success and not self.skipped and not self.refused else 1

    def exit_reasons(self) -> list[str]:
        """Why :attr:`exit_code` is not 0, as lines for the user (none when it is 0): the
        rule that applied, then every task that made it so, with its reason."""
        code = self.exit_code
        if code == 0:
            return []
        if self.stopped_by is not None:
            return [f"exit {code} (128 + {self.stopped_by}): the run was stopped by "
                    f"{signal_name(self.stopped_by)}"]
        done = SUCCESS | {TaskOutcome.HELD}
        failed = [o for o in self.outcomes if o.outcome not in done]
        lines = [f"exit {code}: {len(failed)} of {len(self.outcomes)} task"
                 f"{'s' if len(self.outcomes) != 1 else ''} worked did not end landed, "
                 f"satisfied, checked or held; {len(self.skipped)} ready task"
                 f"{'s' if len(self.skipped) != 1 else ''} not worked (skipped), "
                 f"{len(self.refused)} refused"]
        lines += [f"  {o.task_id}: {o.outcome}: {o.reason or 'no reason was given'}"
                  for o in failed]
        lines += [f"  {s['task']}: not worked: {s['reason']}" for s in self.skipped]
        lines += [f"  {tid}: refused: {reason}" for tid, reason in self.refused.items()]
        return lines

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes if o.outcome == outcome)

    def to_json(self) -> dict[str, object]:
        stopped = None if self.stopped_by is None else signal_name(self.stopped_by)
        return {
            "run_id": self.run_id, "target": self.target, "exit_code": self.exit_code,
            "tasks": [{**o.__dict__, "seconds": round(o.seconds, 3)} for o in self.outcomes],
            "landed": self.count("landed"),
            "satisfied": self.count("satisfied"),
            "checked": self.count("checked"),
            "blocked": sum(1 for o in self.outcomes
                           if o.outcome not in SUCCESS | {"interrupted", "error", "held"}),
            "interrupted": self.count("interrupted"),
            "errors": self.count("error"),
            "skipped": self.skipped,
            "refused": [{"task": t, "reason": r} for t, r in self.refused.items()],
            "held": self.held,
            "stopped_by": stopped,
        }


class Mill:
    def __init__(self, paths: LedgerPaths, config: Config, settings: RunSettings, *,
                 env: Mapping[str, str], clock: Clock, bus: EventBus,
                 agent_override: AgentConfig | None = None,
                 turn_runner: TurnRunner | None = None,
                 executor: ExecutorFactory[Outcome] | None = None,
                 store: Callable[[], LedgerStore] | None = None,
                 watch: Watch | None = None) -> None:
        self.paths = paths
        self.watch = watch
        """Set for ``taskmill watch``: stay up when idle, fire the orders (see :mod:`.watch`)."""
        self._store = store
        """Opens the ledger's store (default: the repository's database; a test may run the
        mill on another store)."""
        self.config = config
        self.settings = settings
        self.env = env
        self.clock = clock
        self.bus = bus
        self.agent_override = agent_override
        self.turn_runner = turn_runner or default_turn_runner()
        """Runs each agent turn (the real runner; tests hand an in-process one)."""
        self.executor_factory: ExecutorFactory[Outcome] = executor or ThreadExecutor
        """Where the task workers run (threads of this process by default)."""
        self._executor: Executor[Outcome] | None = None
        self.run_id = secrets.token_hex(4)
        self.actor = f"{MILL_PREFIX}{self.run_id}"
        base_env = git_env(env)
        self.git = Git(paths.root, base_env)
        self.git = Git(paths.root, {**base_env, **ensure_identity(self.git)})
        self.stop = threading.Event()
        """Set: dispatch nothing new, start no new turn (the first signal)."""
        self.abort = threading.Event()
        """Set: cut the turns and checks still running (grace over, or a second signal)."""
        self.kill_now = threading.Event()
        """Set: SIGKILL the agents without a grace of their own (a second signal)."""
        self.stopped_by: int | None = None
        self._signals: list[int] = []
        self._signals_seen = 0
        self._deadline: float | None = None
        self.containment: Containment | None = None
        self.limits_warning = ""
        """Given once per run when ``[sandbox]`` limits have no cgroup to hold them."""
        self.check_env = check_env(env, env=config.check_env, pass_env=config.check_pass_env)
        """What every check command gets (the task's and the merge queue's)."""
        self.refused: dict[str, str] = {}
        self._run_lock: FileLock | None = None
        self._services_lock = False
        """The run lock was taken by :meth:`worker_context` (a worker's), released by
        :meth:`stop_services`."""
        self._agent_cache: dict[str, tuple[AgentConfig, AgentAdapter]] = {}
        self.skipped: list[dict[str, str]] = []
        self._skipped_at: dict[str, str] = {}
        """Tasks left alone (no agent, no checks, claimed elsewhere) -> their ``updated_at``
        then: ``taskmill watch`` looks at them again once they change."""
        self.capability: CapabilityServer | None = None
        """Serves each turn's ledger socket (started and stopped with the run)."""
        self.anchorer: Anchorer | None = None
        """Anchors the audit chain in git at every landing and at the end of the run."""
        self.proxy: ModelProxy | None = None
        """The model proxy (started with the run when an agent has a ``base_url``)."""
        self.netproxy: NetProxy | None = None
        """The network allowlist proxy (started with a sandboxed run when ``[sandbox]
        network`` is set)."""
        self.landing: LandingQueue | None = None
        """Where workers park passed branches; one thread lands them in batches."""
        self._landing_thread: threading.Thread | None = None
        self._trail: BatchTrail | None = None
        self._working = 0
        """Workers busy now (the landing queue waits for a batch to fill only then)."""
        self.roles = RoleBook({})
        """The roles (``.taskmill/roles/``), read and checked when the run starts."""
        self.held: dict[str, dict[str, str]] = {}
        """Tasks that waited for their role's budget in this run (said once each)."""

    # -- stopping ------------------------------------------------------------------------

    def signal(self, signum: int) -> None:
        """Ask the run to stop (first call: drain; second: kill the agents now). Safe to call
        from a signal handler: it only records the request; the scheduler acts on it."""
        self._signals.append(signum)
        if self.watch is not None:
            self.watch.wake.set()

    def _take_signals(self) -> None:
        """Act on stop requests (in the scheduler's thread) and on the end of the grace."""
        while self._signals_seen < len(self._signals):
            signum = self._signals[self._signals_seen]
            self._signals_seen += 1
            name = signal_name(signum)
            if not self.stop.is_set():
                self.stopped_by = signum
                self._deadline = self.clock.monotonic() + self.settings.grace
                self.stop.set()
                self.bus.emit("stopping", signal=name, grace=self.settings.grace)
            elif not self.kill_now.is_set():
                self._cancel()
                self.kill_now.set()
                self.bus.emit("stopping_now", signal=name)
        if (self._deadline is not None and not self.abort.is_set()
                and self.clock.monotonic() >= self._deadline):
            self._cancel()
            self.bus.emit("grace_over", grace=self.settings.grace)

    def _cancel(self) -> None:
        """Cut the turns and checks still running (through the executor, when it runs)."""
        if self._executor is not None:
            self._executor.cancel()
        self.abort.set()

    def _stop_pending(self) -> bool:
        return self._signals_seen < len(self._signals) or (
            self._deadline is not None and not self.abort.is_set()
            and self.clock.monotonic() >= self._deadline)

    # -- set-up --------------------------------------------------------------------------

    def ledger(self) -> Ledger:
        if self._store is not None:
            return Ledger(self._store(), prefix=self.config.prefix, clock=self.clock,
                          actor=self.actor)
        return Ledger.open(self.paths.db, prefix=self.config.prefix, clock=self.clock,
                           actor=self.actor, url=database_url(self.config.ledger_url, self.env))

    def _hold_run_lock(self) -> None:
        self._run_lock = FileLock(self.paths.run.run_lock(self.run_id))
        self._run_lock.acquire()
        os.write(self._run_lock.fd, f"{os.getpid()}\n".encode())

    def _release_run_lock(self) -> None:
        if self._run_lock is not None:
            self._run_lock.path.unlink(missing_ok=True)
            self._run_lock.release()
            self._run_lock = None

    def _run_alive(self, run_id: str) -> bool:
        """:func:`run_alive`, removing a dead run's lock file (run ids are never reused)."""
        if run_id == self.run_id or run_alive(self.paths.run_dir, run_id):
            return True
        self.paths.run.run_lock(run_id).unlink(missing_ok=True)
        return False

    def lacks_agent(self, task: Task) -> bool:
        """True when ``task`` names no agent (nor does its role) and the run has no default
        for it."""
        return (not self._named_agent(task) and self.agent_override is None
                and self.settings.agent is None)

    def _named_agent(self, task: Task) -> str | None:
        """The agent ``task`` names, or its role does (the task's own wins)."""
        if task.agent:
            return task.agent
        try:
            role = self.roles.role(task)
        except InvalidInput:
            return None
        return role.spec.agent if role is not None else None

    def resolve_agent(self, task: Task) -> tuple[AgentConfig, AgentAdapter]:
        """The agent that works ``task``: the one it names, else its role's; for a task
        naming none, ``--agent-cmd``, else the default agent (``--agent`` / ``[run] agent``).
        Its role's ``model`` overrides the agent's. Raises :class:`InvalidInput` saying why
        there is none (or that the task's role has no file)."""
        role = self.roles.role(task)
        named = task.agent or (role.spec.agent if role is not None else None)
        if not named and self.agent_override is not None:
            key, config = "\0--agent-cmd", self.agent_override
        else:
            name = named or self.settings.agent
            if name is None:
                raise InvalidInput(f"{task.id} names no agent and the run has no default",
                                   hint=NO_AGENT_HINT)
            key, found = name, self.config.agent(name)
            if found is None:
                where = (f" (the agent of role {role.name!r})"
                         if role is not None and not task.agent else "")
                raise InvalidInput(f"{task.id}: {self.config.agent_problem(name)}{where}",
                                   hint=f"add [agents.{name}] to .taskmill/config.toml, or "
                                        f"give the task another: taskmill update {task.id} "
                                        "--agent NAME")
            config = found
        if role is not None and role.spec.model and role.spec.model != config.model:
            key, config = f"{key}\0model={role.spec.model}", replace(config, model=role.spec.model)
        if key not in self._agent_cache:
            try:
                adapter = get_adapter(config.adapter)
            except UnknownAdapterError as exc:
                raise InvalidInput(f"{task.id}: agent {config.name!r}: {exc}") from None
            self._agent_cache[key] = (config, adapter)
        return self._agent_cache[key]

    def _review_setup(self) -> ReviewSetup | None:
        """``[review]``: its reviewer resolved (an agent that does not exist stops the run
        before it starts)."""
        settings = ReviewSettings.from_raw(self.config.raw)
        if settings is None:
            return None
        problem = self.config.agent_problem(settings.agent)
        if problem is not None:
            raise InvalidInput(f"[review] agent: {problem}",
                               hint=f"add [agents.{settings.agent}] (any adapter) to "
                                    ".taskmill/config.toml, or set [review] agent")
        config = self.config.agent(settings.agent)
        assert config is not None
        try:
            adapter = get_adapter(config.adapter)
        except UnknownAdapterError as exc:
            raise InvalidInput(f"[review] agent {config.name!r}: {exc}") from None
        return ReviewSetup(settings, config, adapter, self.paths.root.name)

    def _target(self) -> str:
        if self.settings.target:
            target = self.settings.target
        else:
            branch = self.git.current_branch()
            if branch is None:
                raise InvalidInput("the repository's HEAD is detached",
                                   hint="check out a branch, or pass --target BRANCH")
            target = branch
        if self.git.rev(f"refs/heads/{target}") is None:
            raise InvalidInput(f"the target branch {target!r} does not exist or has no commit",
                               hint="commit something first, or pass --target BRANCH")
        return target

    # -- recovery ------------------------------------------------------------------------

    def recover(self, ledger: Ledger, target_ref: str) -> list[str]:
        """Take over tasks left in progress by runs that died. Returns their ids."""
        recovered = []
        rows = ledger.claims(MILL_PREFIX)
        stopped: set[str] = set()
        for task_id, assignee in rows:
            run_id = assignee[len(MILL_PREFIX):]
            if self._run_alive(run_id):
                continue
            if run_id not in stopped:  # its agents live on; they must not touch the redo
                stopped.add(run_id)
                if stop_orphaned_agents(run_id):
                    self.bus.emit("orphans_stopped", from_run=run_id)
            if not ledger.recover_orphan(task_id, assignee, actor=self.actor,
                                         now=iso(self.clock.now()), from_run=run_id):
                continue
            recovered.append(task_id)
            self.bus.emit("recovered", task=task_id, from_run=run_id)
        return recovered

    # -- scheduling ----------------------------------------------------------------------

    def _chain_lengths(self, ledger: Ledger) -> dict[str, float]:
        """For each unfinished task, the longest chain of work waiting on it (incl. itself)."""
        waiting: dict[str, list[str]] = defaultdict(list)
        weight, edges = ledger.chain_weights()
        for issue, blocker in edges:
            if issue in weight and blocker in weight:
                waiting[blocker].append(issue)
        memo: dict[str, float] = {}

        def chain(start: str) -> float:
            stack: list[tuple[str, int]] = [(start, 0)]
            on_path = {start}
            while stack:
                node, i = stack[-1]
                nexts = waiting.get(node, [])
                if i < len(nexts):
                    stack[-1] = (node, i + 1)
                    nxt = nexts[i]
                    if nxt not in memo and nxt not in on_path:
                        on_path.add(nxt)
                        stack.append((nxt, 0))
                    continue
                memo[node] = weight[node] + max((memo.get(n, 0.0) for n in nexts), default=0.0)
                on_path.discard(node)
                stack.pop()
            return memo[start]

        return {tid: chain(tid) for tid in weight if tid not in memo} | memo

    def _candidates(self, ledger: Ledger, skip: set[str]) -> list[Task]:
        # a container (a task with children) is never work: it closes when its children do
        ready = [t for t in ledger.ready(limit=len(skip) + 500, work_only=True)
                 if t.id not in skip]
        if self.settings.only:
            ready = [t for t in ready if t.id in self.settings.only]
        if not ready:
            return []
        chains = self._chain_lengths(ledger) if len(ready) > 1 else {}
        order = {t.id: i for i, t in enumerate(ready)}
        return sorted(ready, key=lambda t: (t.priority, -chains.get(t.id, 1.0), order[t.id]))

    def _lap_for(self, ledger: Ledger, task_id: str, resumed: bool) -> int:
        last = ledger.last_lap(task_id)
        if not resumed:
            return last + 1
        # a run that died before the first attempt of a new lap (a reopened task's): its
        # claim is newer than the last attempt, and the lap it began is the next one
        if last and ledger.claimed_after_last_attempt(task_id):
            return last + 1
        return max(last, 1)

    # -- the run -------------------------------------------------------------------------

    def _capability_refused(self, scope: TurnScope, op: str, message: str) -> None:
        self.bus.emit("capability_refused", task=scope.task_id, agent=scope.agent, op=op,
                      message=message)

    def _capability_dir(self) -> Path:
        """This run's directory of turn sockets (``run/cap/<run id>``); those of runs that
        died are removed."""
        base = self.paths.run.cap_dir
        for stale in base.iterdir() if base.is_dir() else []:
            if stale.is_dir() and not run_alive(self.paths.run_dir, stale.name):
                shutil.rmtree(stale, ignore_errors=True)
        return base / self.run_id

    def run(self) -> RunSummary:
        self._hold_run_lock()
        ledger = self.ledger()
        try:
            # a run killed while moving the user's checkout may have left it detached
            recover_interrupted_advance(self.git, self.paths.run.merge_lock,
                                        self.paths.root)
            target = self._target()
            summary = RunSummary(self.run_id, target)
            self.containment = containment(self.settings.contain, self.env)
            sandbox_info, unsandboxed = self.choose_sandbox()
            queue_ = MergeQueue(
                self.git, target=target, lock_path=self.paths.run.merge_lock,
                checks=self.config.checks, check_env=self.check_env,
                check_timeout=self.settings.check_timeout, user_checkout=self.paths.root,
                log_dir=self.paths.logs)
            pool = WorktreePool(self.git, self.paths.worktrees, repo_root=self.paths.root,
                                include_file=self.paths.include,
                                clean_ignored=self.settings.clean_ignored,
                                legacy_root=self.paths.legacy_worktrees, clock=self.clock,
                                warn=self._pool_warning)
            pool.prune()
            self._drop_landed_branches(ledger, pool)
            landing = self._landing_queue(queue_, pool)
            ctx = self.worker_context(self.git, pool, queue_, sandbox=sandbox_info,
                                      landing=landing)
            queue_.cancel = self.abort
            queue_.containment = self.containment
            self.bus.emit("run_started", run_id=self.run_id, target=target,
                          workers=self.settings.workers, containment=self.containment.mode,
                          containment_note=self.containment.describe(), sandbox=sandbox_info)
            if unsandboxed:
                self.bus.emit("warning", about="unsandboxed", message=unsandboxed)
            if self.limits_warning:
                self.bus.emit("warning", about="limits", message=self.limits_warning)
            assert ctx.check_guard is not None
            for warning in ctx.check_guard.new_warnings(self.config.checks):
                self.bus.emit("warning", about="editable_install", message=warning)
            resumed = set(self.recover(ledger, queue_.ref))
            summary.skipped = self.skipped
            self.anchorer = self._anchorer()
            self._start_landing()
            self._watch_start(ledger)
            self._loop(ledger, ctx, resumed, summary)
            self._stop_landing()
            summary.stopped_by = self.stopped_by
            self._drop_landed_branches(ledger, pool)  # those a worker could not delete
            summary.refused = dict(self.refused)
            summary.held = list(self.held.values())
            if self.anchorer is not None:  # the run's last anchor, before it says it is done
                self.anchorer.close()
            self.bus.emit("run_finished", **{k: v for k, v in summary.to_json().items()
                                             if k != "tasks"})
            return summary
        finally:
            self._stop_landing()
            self.stop_services()
            if self.anchorer is not None:
                self.anchorer.close()
            ledger.close_db()
            self._release_run_lock()

    def worker_context(self, git: Git, pool: Workspaces, queue: Lander, *,
                       sandbox: dict[str, Any], landing: LandingQueue | None = None,
                       ledger_dir: Path | None = None,
                       agent_git_env: dict[str, str] | None = None) -> WorkerContext:
        """What every task worker of this run shares, its services started: the roles
        (``.taskmill/roles/``; a wrong role file stops the run here), the review gate
        (``[review]``), the approval rule (``[merge]``), the capability server (each turn's
        ledger socket) and the model proxy. The one place a run's context is built: the
        local run (:meth:`run`) and a ``taskmill worker`` (for each run it works for, on its
        own clone, pool and remote merge queue) both call it, so their turns get the same
        services and rules. :meth:`stop_services` stops what it started.

        ``sandbox``: what :meth:`choose_sandbox` allows; ``landing``: the landing queue
        (None: workers land through ``queue`` themselves); ``ledger_dir``: where the progress
        notes live (default: this repository's ``.taskmill``); ``agent_git_env``: the git
        identity agents get (default: read from this repository now)."""
        if self._run_lock is None:  # a worker's: the run's sockets here are live while held
            self._hold_run_lock()
            self._services_lock = True
        self.roles = RoleBook.load(self.paths.dir)
        ctx = WorkerContext(
            run_id=self.run_id, settings=self.settings, git=git, pool=pool,
            queue=queue, bus=self.bus, clock=self.clock, gate=AgentGate(self.clock),
            stop=self.stop, ledger_factory=self.ledger, agents=self.resolve_agent,
            project_checks=list(self.config.checks), parent_env=self.env,
            check_env=self.check_env, ledger_dir=ledger_dir or self.paths.dir,
            logs_dir=self.paths.logs, homes_dir=self.paths.run.homes,
            turn_runner=self.turn_runner,
            agent_git_env=(agent_git_env if agent_git_env is not None
                           else identity_env(Git(self.paths.root, git_env(self.env)))),
            abort=self.abort, kill_now=self.kill_now, containment=self.containment,
            sandbox=sandbox, landing=landing, roles=self.roles,
            review=self._review_setup(), approval=ApprovalRule.of(self.config.merge))
        self.capability = CapabilityServer(
            self._capability_dir(), self.ledger, run_dir=self.paths.run_dir,
            on_refused=self._capability_refused)
        self.capability.start()
        ctx.capability = self.capability
        ctx.proxy = self.proxy = self._start_proxy()
        ctx.check_guard = CheckGuard(self.check_env, self.paths.root,
                                     worktrees=[self.paths.worktrees])
        return ctx

    def stop_services(self) -> None:
        """Stop the services of :meth:`worker_context` (and the network proxy of
        :meth:`choose_sandbox`): turns still registered lose their sockets."""
        if self.capability is not None:
            self.capability.stop()
            self.capability = None
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None
        if self.netproxy is not None:
            self.netproxy.stop()
            self.netproxy = None
        if self._services_lock:
            self._services_lock = False
            self._release_run_lock()

    def _landing_queue(self, queue_: MergeQueue, pool: WorktreePool) -> LandingQueue:
        """The run's landing queue: the batching merge queue (``[merge]``), checking batches
        in its own checkout, remembering check results by tree in the run directory, and
        saying what it does on the bus and in the audit trail."""
        checkout = LanderCheckout(self.git, prepare=pool.copy_includes,
                                  clean_ignored=self.settings.clean_ignored)
        self._trail = BatchTrail(self.bus, self.ledger, actor=self.actor, run_id=self.run_id)
        speculative = [LanderCheckout(self.git, prepare=pool.copy_includes,
                                      path=checkout.path.with_name(f"lander-speculative-{slot}"),
                                      clean_ignored=self.settings.clean_ignored)
                       for slot in range(SLOTS)]
        lander = BatchLander(queue_, checkout=checkout,
                             settings=MergeSettings.from_config(self.config.merge),
                             cache=CheckCache(self.paths.run_dir / CACHE_FILE),
                             emit=self._trail, speculative_checkouts=speculative,
                             cpus=os.cpu_count())
        self.landing = LandingQueue(lander, clock=self.clock,
                                    more_coming=lambda: self._working > 0)
        return self.landing

    def _start_landing(self) -> None:
        if self.landing is not None and self._landing_thread is None:
            self._landing_thread = threading.Thread(target=self.landing.run,
                                                    name="taskmill-landing", daemon=True)
            self._landing_thread.start()

    def _stop_landing(self) -> None:
        """Stop taking batches (a branch still waiting is answered ``interrupted``: nothing
        of it landed, and the next run lands it) and wait for the batch landing now: it
        lands, or its checks are cut by the run's abort and nothing of it lands."""
        if self.landing is not None:
            self.landing.close()
        if self._landing_thread is not None:
            self._landing_thread.join()
            self._landing_thread = None
        if self._trail is not None:
            self._trail.close()

    def _start_proxy(self) -> ModelProxy | None:
        """The run's model proxy, when an agent table sends its turns through it (sockets of
        runs that died are removed)."""
        for run_id, stale in self.paths.run.sockets("proxy"):
            if not run_alive(self.paths.run_dir, run_id):
                stale.unlink(missing_ok=True)
        if not any(uses_proxy(agent) for agent in self.config.agents.values()):
            return None
        proxy = ModelProxy(self.paths.run.proxy_socket(self.run_id),
                           PriceTable.from_config(self.config.raw.get("pricing")), env=self.env)
        try:
            proxy.start()
        except ProxyError as exc:
            raise InvalidInput(str(exc), hint="agents with a base_url reach it through the "
                               "model proxy; set proxy = false in their [agents.NAME] table "
                               "to hand them the key instead") from None
        self.bus.emit("proxy_started", port=proxy.port, socket=str(proxy.socket_path))
        return proxy

    def _anchorer(self) -> Anchorer | None:
        store, why = open_store(self.paths.root, self.env)
        if store is None:
            self.bus.emit("warning", about="audit_anchor",
                          message=f"the audit chain will not be anchored: {why}")
            return None
        return Anchorer(store, lambda: self.ledger().store, clock=self.clock, bus=self.bus)

    def choose_sandbox(self) -> tuple[dict[str, Any], str]:
        """Put the sandbox (``[sandbox]``) into the containment, and the checks' HOME into
        their environment. Returns what the sandbox allows (for ``run_started`` and each
        attempt) and the warning to give when the run is unsandboxed ('' for none)."""
        assert self.containment is not None
        settings = SandboxSettings.from_table(self.config.sandbox)
        home = self.env.get("HOME")
        check_home = self.paths.run.check_home
        layout = Layout(repo_root=self.paths.root, ledger_dir=self.paths.dir,
                        pool_root=self.paths.worktrees,
                        git_common_dir=git_common_dir(self.paths.root),
                        home=Path(home) if home else None, check_home=check_home)
        sandbox, why = choose(settings, layout, self.env)
        limiter = self._limiter(settings)
        if sandbox is None:
            info: dict[str, Any] = {"enabled": False, "why": why}
            if limiter is not None and limiter.cgroup:
                info.update(limits_info(limiter))
            elif limiter is not None:
                info.update(limits=limiter.limits.as_dict(),
                            limits_via=f"none: no sandbox and no cgroup ({limiter.note})")
                self.limits_warning = ("[sandbox] limits are not applied: no sandbox and no "
                                       f"cgroup to hold them ({limiter.note})")
            return info, (unsandboxed_warning(why) if settings.enabled == "auto" else "")
        if settings.network:
            sandbox = self._start_netproxy(sandbox)
        if limiter is not None and limiter.cgroup:
            sandbox = replace(sandbox, limits_via=limiter.describe())
        self.containment = replace(self.containment, sandbox=sandbox)
        if "HOME" not in self.config.check_env:  # the user's HOME is hidden in the sandbox
            self.check_env = {**self.check_env, "HOME": str(check_home)}
        return sandbox.describe(), ""

    def _limiter(self, settings: SandboxSettings) -> Limiter | None:
        """How ``[sandbox] memory_mb`` / ``max_processes`` are held (None: not set), put into
        the containment; groups a killed run left are removed. Sets the run's one warning
        when no cgroup can hold them."""
        assert self.containment is not None
        limits = Limits(settings.memory_mb, settings.max_processes)
        try:
            proc_cgroup = Path("/proc/self/cgroup").read_text(encoding="utf-8")
        except OSError:
            proc_cgroup = ""
        found = cgroup_limiter(limits, root=CGROUP_ROOT, proc_cgroup=proc_cgroup, env=self.env)
        if found is None:
            return None
        found.sweep_stale()
        self.containment = replace(self.containment, limiter=found)
        if not found.cgroup:
            self.limits_warning = found.warning()
        return found

    def _start_netproxy(self, sandbox: Sandbox) -> Sandbox:
        """Start the allowlist proxy of ``[sandbox] network`` (its socket under the run
        directory; those of runs that died are removed) and return the sandbox that
        bridges a loopback port to it."""
        for run_id, stale in self.paths.run.sockets("net"):
            if not run_alive(self.paths.run_dir, run_id):
                stale.unlink(missing_ok=True)
        netproxy = NetProxy(self.paths.run.net_socket(self.run_id),
                            sandbox.settings.network, on_refused=self._network_refused)
        try:
            netproxy.start()
        except NetProxyError as exc:
            raise InvalidInput(str(exc), hint="remove [sandbox] network from "
                               ".taskmill/config.toml to run without it") from None
        self.netproxy = netproxy
        return replace(sandbox, allowlist_socket=netproxy.socket_path)

    def _network_refused(self, target: str, reason: str) -> None:
        self.bus.emit("network_refused", target=target, reason=reason)

    def _pool_warning(self, message: str, task_id: str | None) -> None:
        if task_id is None:
            self.bus.emit("warning", message=message)
        else:
            self.bus.emit("warning", task=task_id, message=message)

    def _drop_landed_branches(self, ledger: Ledger, pool: Workspaces) -> None:
        """Branches of landed tasks that a killed run did not get to delete."""
        out = self.git.out("for-each-ref", "--format=%(refname:short)", "refs/heads/taskmill/")
        for branch in out.split():
            task_id = branch[len("taskmill/"):]
            task = ledger.find(task_id)
            if task and task.status == "closed" and (task.close_reason or "").startswith(
                    ("landed ", "already satisfied at ")):
                pool.drop_branch(task_id)

    def _loop(self, ledger: Ledger, ctx: WorkerContext, resumed: set[str],
              summary: RunSummary) -> None:
        """Dispatch ready tasks to workers until there is nothing left to do.

        A worker whose task's branch is parked in the landing queue hands its slot back at
        once (its outcome is not final): the task waits in ``parked``, holding no worker,
        until the queue's verdict. A verdict that ends the task's stay (landed, satisfied,
        interrupted) is recorded here at once; a rejection waits in ``rejoin`` for the next
        free worker, ahead of any new task."""
        anchorer = self.anchorer
        in_flight: set[str] = set()
        roles_of: dict[str, str | None] = {}
        """The role of each task dispatched (``max_parallel`` counts those in flight)."""
        skip: set[str] = set()
        workers: dict[str, TaskWorker] = {}
        parked: dict[str, TaskWorker] = {}
        rejoin: deque[TaskWorker] = deque()
        self._skip_agentless(ledger, skip)
        dispatched = 0
        with self.executor_factory(self.settings.workers, self.abort) as executor:
            self._executor = executor

            # a task that lands wakes the scheduler at once, not only when its worker is
            # done cleaning its worktree
            def landed(_task_id: str) -> None:
                if anchorer is not None:
                    anchorer.request()  # one anchor per landing, written off the landing's path
                executor.notify()

            ctx.on_landed = landed

            def failed_for(task: Task) -> Callable[[BaseException], Outcome]:
                def failed(exc: BaseException) -> Outcome:
                    return Outcome(task.id, task.title, TaskOutcome.ERROR, reason=(
                        f"taskmill error (not the task's fault): {exc!r}; the next "
                        "`taskmill run` retries it"))
                return failed

            def submit(task: Task, lap: int, resumed: bool = False) -> None:
                task = self.roles.effective(task)  # its role's checks, when it has none
                in_flight.add(task.id)
                roles_of[task.id] = task.role
                skip.add(task.id)
                self.bus.emit(MillEvent.DISPATCHED, task=task.id, title=task.title, lap=lap,
                              in_flight=len(in_flight))
                def work() -> Outcome:  # the worker (and its ledger) lives on its thread
                    worker = workers[task.id] = TaskWorker(ctx, task, lap, resumed=resumed)
                    return worker.run()

                executor.submit(task.id, work, failed_for(task))

            def finished(outcome: Outcome) -> None:
                workers.pop(outcome.task_id, None)
                # an error is left for the next run to retry; a task given back to wait for
                # its role's budget is not taken again by this run
                if outcome.outcome not in (TaskOutcome.ERROR, TaskOutcome.HELD):
                    skip.discard(outcome.task_id)
                summary.outcomes.append(outcome)
                self.bus.emit(MillEvent.TASK_FINISHED, task=outcome.task_id,
                              outcome=outcome.outcome, iterations=outcome.iterations,
                              in_flight=len(in_flight))

            def settle_landings() -> None:
                """Act on the verdicts the landing queue reached (in the order parked)."""
                for task_id, worker in list(parked.items()):
                    future = worker.parked
                    if future is None or not future.done():
                        continue
                    del parked[task_id]
                    error = future.exception()
                    if worker.landing_decided(error if error is not None else future.result()):
                        finished(worker.out)
                    else:
                        rejoin.append(worker)

            try:
                self._take_signals()
                for task_id in sorted(resumed):
                    if self.stop.is_set() or (self.settings.only
                                              and task_id not in self.settings.only):
                        continue
                    submit(ledger.get(task_id), self._lap_for(ledger, task_id, True), True)
                was_paused = False
                while True:
                    self._take_signals()
                    settle_landings()
                    self._watch_tick(ledger)
                    paused = self.paused()
                    if paused != was_paused:
                        self.bus.emit(MillEvent.PAUSED if paused else MillEvent.RESUMED)
                        was_paused = paused
                    # a task sent back by the merge queue goes first: it is not new work
                    # (within its role's max_parallel)
                    for again in list(rejoin):
                        if len(in_flight) >= self.settings.workers:
                            break
                        if self.roles.at_capacity(again.task,
                                                  (roles_of.get(t) for t in in_flight)):
                            continue
                        rejoin.remove(again)
                        in_flight.add(again.task.id)
                        executor.submit(again.task.id, again.resume, failed_for(again.task))
                    # a worker is kept free for the next task of the critical path, which
                    # a parked branch unblocks when it lands
                    held = (self._held_for_landings(ledger, parked, skip, in_flight)
                            if parked and len(in_flight) < self.settings.workers else 0)
                    while (not paused and not self.stop.is_set()
                           and len(in_flight) + held < self.settings.workers
                           and (self.settings.max_tasks is None
                                or dispatched < self.settings.max_tasks)):
                        claimed = self._claim_next(ledger, skip,
                                                   [roles_of.get(t) for t in in_flight])
                        if claimed is None:
                            break
                        dispatched += 1
                        submit(claimed, self._lap_for(ledger, claimed.id, False))
                    if (not in_flight and not parked and not rejoin
                            and not (paused and not self.stop.is_set())):
                        if not self._watch_idle(ledger, skip):
                            break
                        continue
                    # a finishing worker, a landing or a verdict of the landing queue wakes
                    # us at once; the timeout only notices outside changes (new or unblocked
                    # tasks, pause and resume), and a stop request is looked at every 0.1 s,
                    # so a Ctrl-C is answered at once
                    self._working = len(in_flight)
                    outcome = executor.wait_any(self._wait_timeout(), until=self._stop_pending)
                    if outcome is None:
                        continue
                    in_flight.discard(outcome.task_id)
                    self._working = len(in_flight)
                    suspended = workers.get(outcome.task_id)
                    if suspended is not None and suspended.parked is not None:
                        parked[outcome.task_id] = suspended
                        suspended.parked.add_done_callback(lambda _verdict: executor.notify())
                        continue
                    finished(outcome)
            finally:
                self._executor = None

    def _held_for_landings(self, ledger: Ledger, parked: Mapping[str, TaskWorker],
                           skip: set[str], in_flight: set[str]) -> int:
        """How many free workers wait for what parked branches unblock: one per parked
        branch on which a longer chain of work waits than on the task that would be
        dispatched now (of no higher priority), when that chain is the critical path (the
        work not started yet, spread over the workers, is no longer). So the critical
        path's next task starts the moment its blocker lands, not when a worker is next
        free: a worker idles for one landing rather than the chain waiting for a whole turn
        of other work."""
        candidates = self._candidates(ledger, skip)
        if not candidates:
            return 0
        chains = self._chain_lengths(ledger)
        weights, _ = ledger.chain_weights()
        first = candidates[0]
        ahead = chains.get(first.id, 1.0)
        unstarted = sum(w for tid, w in weights.items()
                        if tid not in in_flight and tid not in parked)
        held = 0
        for task_id, worker in parked.items():
            if worker.parked is None or worker.parked.done():
                continue
            after = chains.get(task_id, 0.0) - weights.get(task_id, 1.0)
            if (after > ahead and after * self.settings.workers >= unstarted
                    and worker.task.priority <= first.priority):
                held += 1
        return held

    def _note_held(self, task: Task, hold: dict[str, str]) -> None:
        """Say (once per task and day) that ``task`` waits for its role's budget."""
        key = f"{task.id}\0{hold['until']}"
        if key in self.held:
            return
        self.held[key] = {"task": task.id, **hold}
        self.bus.emit("held", task=task.id, role=hold["role"], reason=hold["reason"],
                      until=hold["until"])
    # -- taskmill watch (the steps every scheduling loop shares) ---------------------------

    def _watch_start(self, ledger: Ledger) -> None:
        """``taskmill watch``: arm the orders before the first dispatch."""
        if self.watch is not None:
            self.watch.start(ledger)

    def _watch_tick(self, ledger: Ledger) -> None:
        """``taskmill watch``: fire the orders due (none once stopping)."""
        if self.watch is not None and not self.stop.is_set():
            self.watch.tick(ledger)

    def _watch_idle(self, ledger: Ledger, skip: set[str]) -> bool:
        """Nothing in flight and nothing to start: False when the loop is done (a run, or a
        watch asked to stop); for a watch, sleep until an order slot, a ledger change, a stop
        or the recheck, look again at the tasks it left alone, and say go on (True)."""
        if self.watch is None or self.stop.is_set():
            return False
        self.watch.idle(ledger, self._stop_pending)
        self._readmit(ledger, skip)
        return True

    def _wait_timeout(self) -> float:
        """How long the scheduler waits for a worker: 0.5 s, less when an order's slot
        (``taskmill watch``) falls sooner."""
        due = self.watch.seconds_to_next() if self.watch is not None else None
        return 0.5 if due is None else max(0.0, min(0.5, due))

    def paused(self) -> bool:
        """``taskmill run`` dispatches nothing new while ``.taskmill/run/paused`` exists."""
        return is_paused(self.paths.run)

    def _skip_agentless(self, ledger: Ledger, skip: set[str]) -> None:
        """At start: the ready tasks that name no agent when the run has no default are not
        worked; one warning names them all and says how to give them one."""
        agentless = [t for t in self._candidates(ledger, skip) if self.lacks_agent(t)]
        lacking = [t.id for t in agentless]
        if not lacking:
            return
        skip.update(lacking)
        self._skipped_at.update({t.id: t.updated_at for t in agentless})
        reason = "names no agent and the run has no default"
        self.skipped += [{"task": tid, "reason": reason} for tid in lacking]
        self.bus.emit("warning", tasks=lacking,
                      message=f"not working {len(lacking)} ready task"
                              f"{'s' if len(lacking) != 1 else ''} that name no agent "
                              f"({', '.join(lacking)}): the run has no default agent; "
                              f"{NO_AGENT_HINT}")

    def _claim_next(self, ledger: Ledger, skip: set[str],
                    running: list[str | None] | None = None) -> Task | None:
        """The next ready task, claimed; None when there is none to start now. ``running``:
        the role of each task being worked (a role's ``max_parallel``)."""
        from ..errors import ClaimConflict

        candidates = self._candidates(ledger, skip)
        held = (self.roles.holds(ledger, self.clock.now())
                if candidates and self.roles.budgets() else {})
        for task in candidates:
            try:
                self.resolve_agent(task)
            except InvalidInput as exc:  # said once: the task stays skipped for this run
                skip.add(task.id)
                self._skipped_at[task.id] = task.updated_at
                self.skipped.append({"task": task.id, "reason": exc.message})
                self.bus.emit("skipped", task=task.id, reason=exc.message, hint=exc.hint)
                continue
            if task.role in held:  # its role spent its daily budget: it waits, said once
                self._note_held(task, held[task.role].to_json())
                continue
            if self.roles.at_capacity(task, running or ()):
                continue  # its role's max_parallel: it starts when one of them is done
            checks = self.roles.effective(task).checks
            if (not checks and not self.config.checks and not self.settings.allow_unchecked
                    and self.roles.lands(task)):
                skip.add(task.id)  # it would land whatever the agent did, unverified
                self._skipped_at[task.id] = task.updated_at
                self.refused[task.id] = unchecked_reason(task.id)
                self.bus.emit("refused", task=task.id, title=task.title,
                              reason=self.refused[task.id])
                continue
            try:
                return ledger.claim(task.id, self.actor, actor=self.actor, work_only=True)
            except ClaimConflict:
                skip.add(task.id)
                self._skipped_at[task.id] = task.updated_at
        return None

    def _readmit(self, ledger: Ledger, skip: set[str]) -> None:
        """``taskmill watch``: a task left alone (no agent, no checks, claimed elsewhere) is
        looked at again once it changed (given an agent or checks, released...)."""
        for tid, seen in list(self._skipped_at.items()):
            task = ledger.find(tid)
            if task is not None and task.updated_at == seen:
                continue
            del self._skipped_at[tid]
            skip.discard(tid)
            self.refused.pop(tid, None)
            self.skipped[:] = [s for s in self.skipped if s["task"] != tid]

