"""``taskmill worker``: one machine's share of the mill's work under the Temporal executor.

The worker clones the shared remote into its work directory (:mod:`.remote_git`), polls the
shared task queue for task workflows and for tasks to bind (one per free slot), and its own
queue for the activities of the tasks bound to it: each action of the task's policy is
performed by the same :class:`~taskmill.mill.worker.TaskWorker` code the local executor
runs, on a worktree of the clone. Long activities heartbeat; a worker killed mid-turn stops
heartbeating and its task is bound again elsewhere (:mod:`.workflow`). Task branches are
pushed to the remote after every turn, so the next worker finds the work where it was.

The ledger is the shared one (:func:`shared_store`): the PostgreSQL ledger the clone's
committed ``[ledger] url`` names (``TASKMILL_DATABASE_URL`` overrides it), or the
``TASKMILL_DIR`` of a ledger on this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import secrets
import signal
import socket
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    CustomSlotSupplier,
    FixedSizeSlotSupplier,
    SlotMarkUsedContext,
    SlotPermit,
    SlotReleaseContext,
    SlotReserveContext,
    Worker,
    WorkerTuner,
)

from ..agents.base import AgentConfig
from ..clock import Clock, iso
from ..config import load_config
from ..control import MILL_PREFIX
from ..errors import GitError, InvalidInput
from ..kinds import AttemptOutcome, LedgerEvent
from ..ledger import DATABASE_URL_ENV, LedgerStore, database_url, open_store
from ..mill.context import WorkerContext
from ..mill.engine import Mill
from ..mill.events import EventBus
from ..mill.git import Git, ensure_identity, git_env
from ..mill.policy import (
    AcquireWorkspace,
    Action,
    Close,
    Land,
    MergeTarget,
    RunChecks,
    Satisfy,
    Terminal,
    Turn,
)
from ..mill.settings import RunSettings
from ..mill.turn_runner import TurnRunner
from ..mill.worker import TaskWorker
from ..mill.worktrees import WorktreePool, branch_for
from ..paths import DB_FILE, ENV_DIR, LedgerPaths
from .payloads import PayloadRefused, pack, unpack
from .remote_git import (
    PUSH_AFTER_S,
    BranchPush,
    RemoteMergeQueue,
    delete_remote_branch,
    fetch_branch,
    prepare_clone,
    push_branch,
)
from .run_setup import RunSetups, preload
from .spec import TASK_QUEUE, Bound, Payload, RunSpec, Step, TaskSpec
from .workflow import BIND, STEP, TaskWorkflow

T = TypeVar("T")

MAIN = (Turn,)
"""Actions that start an activity of their own (the workspace is taken in the first one):
what comes after each, up to the next of these, runs in the same activity: a turn, then its
checks and the landing (each activity costs a round trip to the cluster, and its own
boundaries add no safety: a task whose worker dies is bound again and resumed from the
ledger and its pushed branch, wherever it was)."""
SETTLES = (Turn, MergeTarget, AcquireWorkspace, Terminal)
"""Actions that change the task's branch (or end its stay): its push after the last turn
is waited for before them."""


def shared_store(env: Mapping[str, str], configured: str | None) -> Callable[[], LedgerStore]:
    """Opens the ledger every worker and the client share: the PostgreSQL one at
    ``$TASKMILL_DATABASE_URL``, else at ``configured`` (the ``[ledger] url`` committed in the
    shared repository, read from this worker's clone); without either, the ledger on this
    machine at ``$TASKMILL_DIR``. Checked now: one that cannot be opened is said at start."""
    url = database_url(configured, env)
    if url:
        open_store(Path(), url).close()  # it answers (a DatabaseError saying where, if not)
        return lambda: open_store(Path(), url)
    ledger_dir = env.get(ENV_DIR)
    if not ledger_dir:
        raise InvalidInput("taskmill worker needs the shared ledger, and the repository's "
                           ".taskmill/config.toml names none ([ledger] url)",
                           hint=f"commit [ledger] url (taskmill init --database URL) to the "
                                f"shared repository, or set {DATABASE_URL_ENV}; or set "
                                f"{ENV_DIR} to the .taskmill directory of a ledger on this "
                                "machine")
    db = Path(ledger_dir) / DB_FILE
    if not db.is_file():
        raise InvalidInput(f"{ENV_DIR}={ledger_dir} holds no ledger ({db} is missing)",
                           hint="point it at the .taskmill directory of `taskmill init`")
    return lambda: open_store(db)


def stop_orphaned_turns(pool: Path) -> int:
    """Kill the agents a killed worker with this work directory left running: they run in
    sessions of their own, and are found by the ``TASKMILL_WORKTREE`` (a slot of ``pool``)
    in their environment (Linux ``/proc``). Returns how many process groups were killed."""
    marker = f"TASKMILL_WORKTREE={pool}{os.sep}".encode()
    groups: set[int] = set()
    proc = Path("/proc")
    for entry in proc.iterdir() if proc.is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            if any(var.startswith(marker) for var in (entry / "environ").read_bytes().split(b"\0")):
                groups.add(os.getpgid(int(entry.name)))
        except (OSError, ProcessLookupError):
            continue
    groups.discard(os.getpgid(0))
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    return len(groups)


def build_id() -> str:
    """This worker's build id for Temporal: taskmill's version and a digest of the code its
    workflows replay (the workflow and the task policy). Given, so that the SDK does not
    make its own by hashing the bytecode of every loaded module (a second and more of the
    worker's start on a loaded machine)."""
    from .. import __version__
    from ..mill import policy
    from . import spec, workflow

    digest = hashlib.sha256()
    for module in (workflow, spec, policy):
        digest.update(Path(module.__file__ or "").read_bytes())
    return f"taskmill-{__version__}-{digest.hexdigest()[:16]}"


def default_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class WorkerServices:
    """What one worker process holds: its clone, its worktree pool, the shared ledger, and
    the context of each run it works for (rebuilt from the run's :class:`RunSpec`)."""

    def __init__(self, origin: str, workdir: Path, *, env: Mapping[str, str], clock: Clock,
                 bus: EventBus, store: Callable[[], LedgerStore] | None = None,
                 turn_runner: TurnRunner | None = None, allow_agent_cmd: bool = False) -> None:
        self.began = clock.monotonic()
        self.allow_agent_cmd = allow_agent_cmd
        """Run the command a run gives with ``taskmill run --agent-cmd`` (``taskmill worker
        --allow-agent-cmd``). Off, a worker runs only the agents of the repository's committed
        config: whoever can start workflows in the namespace cannot make it run anything."""
        """When this worker began to start (``worker_started`` says how long it took)."""
        self.env = env
        self.clock = clock
        self.bus = bus
        self.turn_runner = turn_runner
        self.clone = workdir.resolve() / "clone"
        preload("taskmill.config_schema")  # while the clone is fetched (its config's schema)
        base = Git(workdir, git_env(env))
        git = prepare_clone(origin, self.clone, base)
        self.git = Git(self.clone, {**git.env, **ensure_identity(git)})
        self.paths = LedgerPaths(root=self.clone, checkout=self.clone)
        if not self.paths.config.is_file():
            raise InvalidInput(f"{origin} has no .taskmill/config.toml on its default branch",
                               hint="commit the ledger's config (taskmill init) and push it")
        self.config = load_config(self.paths.config)
        self.ledger_url = database_url(self.config.ledger_url, env)
        self.store = store or shared_store(env, self.config.ledger_url)
        shared = env.get(ENV_DIR)
        self.ledger_dir = Path(shared) if shared and not self.ledger_url else self.paths.dir
        """Where agents find the ledger (``TASKMILL_DIR``) and the progress notes live: the
        shared ledger's directory when it is on this machine; the clone's, whose config
        names the PostgreSQL ledger, when it is there."""
        self.pool = WorktreePool(self.git, self.paths.worktrees, repo_root=self.clone,
                                 include_file=self.paths.include, clock=clock,
                                 legacy_root=self.paths.legacy_worktrees)
        if stop_orphaned_turns(self.paths.worktrees):
            bus.emit("orphans_stopped", pool=str(self.paths.worktrees))
        self.pool.prune()
        self._runs: dict[str, WorkerContext] = {}
        self._mills: dict[str, Mill] = {}
        """The mill of each run this worker works for: it holds the run's services."""
        self._lock = threading.Lock()
        self.setups = RunSetups(self.git)
        """What its runs share, made once (:meth:`warm`)."""

    def warm(self) -> None:
        """Make what every run needs (probes, imports, the default run's sandbox choice) on a
        thread, while the worker waits for its first task: started once it polls, so that
        it does not slow the start itself."""
        self.setups.start(self.config, self._mill)

    def context(self, run: RunSpec) -> WorkerContext:
        with self._lock:
            ctx = self._runs.get(run.run_id)
            if ctx is None:
                ctx = self._runs[run.run_id] = self._context(run)
            return ctx

    def _mill(self, settings: RunSettings, agent_override: AgentConfig | None = None) -> Mill:
        return Mill(self.paths, self.config, settings, env=self.env, clock=self.clock,
                    bus=self.bus, agent_override=agent_override,
                    turn_runner=self.turn_runner, store=self.store)

    def _context(self, run: RunSpec) -> WorkerContext:
        """The run's context, built as the local mill builds it
        (:meth:`~taskmill.mill.engine.Mill.worker_context`: roles, review gate, approval,
        capability socket and model proxy, their sockets under this worker's clone), on this
        worker's clone, pool and remote merge queue."""
        began = self.clock.monotonic()
        settings = run.settings
        mill = self._mill(settings, run.agent_override)
        mill.run_id, mill.actor = run.run_id, f"{MILL_PREFIX}{run.run_id}"
        sandbox_info, unsandboxed = self.setups.sandbox(mill)
        if unsandboxed:
            self.bus.emit("warning", about="unsandboxed", message=unsandboxed)
        queue = RemoteMergeQueue(
            self.git, target=run.target, lock_path=self.paths.run.merge_lock,
            checks=self.config.checks, check_env=mill.check_env,
            check_timeout=settings.check_timeout, user_checkout=self.clone,
            log_dir=self.paths.logs)
        queue.containment = mill.containment
        queue.worktrees = self.pool
        self.paths.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            ctx = mill.worker_context(self.git, self.pool, queue, sandbox=sandbox_info,
                                      ledger_dir=self.ledger_dir,
                                      agent_git_env=self.setups.agent_git_env())
        except BaseException:
            mill.stop_services()
            raise
        self._mills[run.run_id] = mill
        self.bus.emit("run_joined", run=run.run_id,
                      setup_ms=round((self.clock.monotonic() - began) * 1000, 1))
        return ctx

    def close(self) -> None:
        """Stop the services of every run this worker worked for (the worker stops)."""
        with self._lock:
            mills = list(self._mills.values())
            self._mills.clear()
            self._runs.clear()
        for mill in mills:
            with contextlib.suppress(Exception):
                mill.stop_services()


class TaskSlots(CustomSlotSupplier):
    """The shared queue's activity slots are this worker's free task slots: it polls for a
    task to bind only while it has room for one (a bound task holds its slot until it ends,
    long after the ``bind`` activity that took it)."""

    def __init__(self, slots: int, live: Mapping[str, object]) -> None:
        self.slots = slots
        self.live = live
        self.reserved = 0

    def _free(self) -> bool:
        return self.reserved + len(self.live) < self.slots

    async def reserve_slot(self, ctx: SlotReserveContext) -> SlotPermit:
        while not self._free():
            await asyncio.sleep(0.02)
        self.reserved += 1
        return SlotPermit()

    def try_reserve_slot(self, ctx: SlotReserveContext) -> SlotPermit | None:
        if not self._free():
            return None
        self.reserved += 1
        return SlotPermit()

    def mark_slot_used(self, ctx: SlotMarkUsedContext) -> None:
        pass

    def release_slot(self, ctx: SlotReleaseContext) -> None:
        self.reserved -= 1


class WorkerActivities:
    """The activities of :class:`~.workflow.TaskWorkflow`, on this worker."""

    def __init__(self, services: WorkerServices, *, queue: str, identity: str,
                 slots: int) -> None:
        self.services = services
        self.queue = queue
        self.identity = identity
        self.slots = slots
        self.live: dict[str, TaskWorker] = {}
        self._next: dict[str, Action] = {}
        """What each bound task's policy (this worker's copy) asks for next."""
        self._pushing: dict[str, BranchPush] = {}
        """Task branches being pushed after a turn, by task key."""
        self._busy: set[str] = set()
        """Task keys whose ``step`` runs now."""
        self._stale: dict[str, TaskWorker] = {}
        """Bound tasks dropped while a step of theirs ran: given back when it ends."""
        self._acquiring = threading.Lock()
        """Slots are made one at a time (two ``git worktree add`` at once race)."""
        self._threads = ThreadPoolExecutor(max_workers=3 * slots + 2,
                                           thread_name_prefix="taskmill-activity")
        self._pushes = ThreadPoolExecutor(max_workers=2 * slots + 2,
                                          thread_name_prefix="taskmill-push")
        """Task branches' pushes: threads of their own, as activities wait on them (on the
        activities' threads, a push queued behind activities that all wait on pushes
        would never run)."""

    async def _heartbeating(self, key: str, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on a thread, heartbeating while it runs. Cancelled (the cluster took
        this worker for dead: a heartbeat came too late on a loaded machine; or the worker
        stops), the task ``key``'s stay here is over: its workflow binds it again. It is
        dropped when the thread is done, else it would hold its slot for good."""
        timeout = activity.info().heartbeat_timeout
        every = max(0.1, (timeout.total_seconds() if timeout else 30.0) / 4)
        running = self._threads.submit(fn, *args)
        future = asyncio.wrap_future(running)
        try:
            while True:
                done, _ = await asyncio.wait({future}, timeout=every)
                if done:
                    return future.result()
                activity.heartbeat()
        except asyncio.CancelledError:
            running.add_done_callback(lambda _: self.drop(key))  # (on its thread)
            raise

    # -- bind ----------------------------------------------------------------------------

    @activity.defn(name=BIND)
    async def bind(self, spec: TaskSpec, resumed: bool, binding: int) -> Bound:
        """Take the task (:class:`TaskSlots` let this worker poll for it: it has a free
        slot), and its workspace."""
        info = activity.info()  # (a retry of this binding is another stay: its own key)
        key = f"{info.workflow_id}/{binding}.{info.attempt}"
        return await self._heartbeating(key, self._bind, spec, resumed, binding, key)

    def _bind(self, spec: TaskSpec, resumed: bool, binding: int, key: str) -> Bound:
        workflow_prefix = key.rpartition("/")[0] + "/"
        for stale in [k for k in self.live if k.startswith(workflow_prefix) and k != key]:
            self.drop(stale)  # its workflow bound the task again: the old stay here is over
        run = unpack(spec.run, RunSpec)
        if run.agent_override is not None and not self.services.allow_agent_cmd:
            raise PayloadRefused(
                f"worker {self.identity} does not run commands given with `taskmill run"
                " --agent-cmd` (start it with `taskmill worker --allow-agent-cmd` to allow"
                " them, or name an agent of the committed config with --agent)")
        ctx = self.services.context(run)
        ledger = ctx.ledger_factory()
        try:
            task = ctx.roles.effective(ledger.get(spec.task_id))  # its role's checks, too
            if binding:  # its worker died: the attempt it had in flight ends here
                now = iso(ctx.clock.now())
                with ledger.transaction():
                    ledger.end_open_attempts(task.id, outcome=AttemptOutcome.INTERRUPTED,
                                             ended_at=now)
                    ledger.record(LedgerEvent.WORKER_LOST, task.id,
                                  {"run": run.run_id, "worker": self.identity},
                                  actor=f"{MILL_PREFIX}{run.run_id}", ts=now)
        finally:
            ledger.close_db()
        worker = TaskWorker(ctx, task, spec.lap, resumed=resumed)
        worker.base_commit = ctx.queue.tip()
        worker.policy = worker.make_policy()  # the local mill's rules (approval, review, role)
        if resumed or worker.policy.approved is not None:
            # its branch, as the last worker pushed it (or as a person approved it)
            fetch_branch(self.services.git, branch_for(task.id), self.services.pool)
        packed = pack(worker.policy)
        first = self._next[key] = worker.policy.first()  # the workflow's starts the same way
        self.live[key] = worker
        ctx.bus.emit("bound", task=task.id, worker=self.identity, resumed=resumed)
        # the workspace, and what comes before the first turn, in this activity
        return Bound(queue=self.queue, worker=self.identity, key=key, policy=packed,
                     step=self._run(key, worker, first))

    # -- the policy's actions --------------------------------------------------------------

    def _worker(self, key: str) -> TaskWorker:
        worker = self.live.get(key)
        if worker is None:
            raise ApplicationError(f"task {key} is not bound to this worker",
                                   type="NotBound", non_retryable=True)
        return worker

    @activity.defn(name=STEP)
    async def step(self, key: str, action: Payload) -> Step:
        worker = self._worker(key)
        try:
            act = unpack(action, Action)
        except PayloadRefused as exc:  # its workflow ends the task: nothing more comes
            await asyncio.get_running_loop().run_in_executor(self._threads, self.drop, key, exc)
            raise
        self._busy.add(key)
        try:
            return await self._heartbeating(key, self._step, key, worker, act)
        finally:
            self._busy.discard(key)
            stale = self._stale.pop(key, None)
            if stale is not None:
                self._threads.submit(self._give_back, key, stale)

    def drop(self, key: str, exc: Exception | None = None) -> None:
        """End a bound task's stay on this worker that its workflow went on without (a
        refused payload, a step out of step, the task bound again): its slot is free at once,
        and its worktree is given back (after its step, when one runs), its branch pushed
        first. ``exc``: recorded as a taskmill error of the task."""
        worker = self.live.pop(key, None)
        self._next.pop(key, None)
        if worker is None:
            return
        if exc is not None:
            with contextlib.suppress(Exception):
                worker.internal_error(exc)
        if key in self._busy:
            self._stale[key] = worker
        else:
            self._give_back(key, worker)

    def _give_back(self, key: str, worker: TaskWorker) -> None:
        pushing = self._pushing.pop(key, None)
        try:
            if pushing is not None:
                with contextlib.suppress(GitError):  # it stays in this clone
                    pushing.settle()
        finally:
            worker.end(False)

    def _step(self, key: str, worker: TaskWorker, action: Action) -> Step:
        """Perform ``action``, then the quick actions the policy asks for after it (its
        copy here follows the workflow's, result by result), up to the next turn, checks or
        landing; a terminal action ends the task here. The workflow feeds every result to
        its own policy, which must ask for the same actions."""
        if action != self._next.get(key):
            error = ApplicationError(f"task {key}: the workflow asks for {action!r}, its "
                                     f"policy here for {self._next.get(key)!r}",
                                     type="OutOfStep", non_retryable=True)
            self._busy.discard(key)  # nothing of it runs: give its worktree back now
            self.drop(key, error)
            raise error
        return self._run(key, worker, action)

    def _run(self, key: str, worker: TaskWorker, action: Action) -> Step:
        results: list[Payload] = []
        try:
            while True:
                # checks run, and the landing merges (and checks), while the branch is pushed
                if isinstance(action, Land):
                    self._hand_push(key, worker)
                elif isinstance(action, SETTLES):
                    self._settle_push(key, worker, action)
                if isinstance(action, Terminal):
                    return Step(results=results, outcome=self._finish(key, worker, action))
                if isinstance(action, AcquireWorkspace):
                    with self._acquiring:
                        result = worker.perform(action)
                else:
                    result = worker.perform(action)
                if isinstance(action, RunChecks):
                    self._remember_checks(worker)
                if isinstance(action, Turn) and worker.acts.attempt is not None:
                    worker.acts.attempt.detail["worker"] = self.identity
                ws = worker.acts.ws
                if isinstance(action, Turn | MergeTarget) and ws is not None:
                    # the next worker starts here, should this one die: pushed a second
                    # later (while the checks run), unless the landing comes first and
                    # pushes instead; waited for before the branch changes again
                    self._pushing[key] = BranchPush(
                        functools.partial(push_branch, self.services.git, ws.branch),
                        PUSH_AFTER_S, self._pushes.submit)
                results.append(pack(result))
                action = self._next[key] = worker.policy.next(result)
                if isinstance(action, MAIN):
                    return Step(results=results)
        except Exception as exc:  # a bug or a git failure: never the task's fault
            self._pushing.pop(key, None)
            worker.internal_error(exc)
            self.live.pop(key, None)
            self._next.pop(key, None)
            worker.end(False)
            return Step(results=results, outcome=asdict(worker.out), error=True)

    def _hand_push(self, key: str, worker: TaskWorker) -> None:
        """The branch's push after the last turn, to the merge queue: waited for only
        before the landing's own push (which deletes the branch there)."""
        pushing = self._pushing.pop(key, None)
        ws, queue = worker.acts.ws, worker.ctx.queue
        if pushing is None:
            return
        if ws is not None and isinstance(queue, RemoteMergeQueue):
            queue.pushing[ws.branch] = pushing
        else:
            pushing.settle()

    @staticmethod
    def _remember_checks(worker: TaskWorker) -> None:
        """The task's checks passed on its tree: when they are the project checks, the
        landing does not run them again on the same tree (as the local lander does)."""
        ws, result, queue = worker.acts.ws, worker.acts.checks, worker.ctx.queue
        commands = worker.task.checks or worker.ctx.project_checks
        if (ws is None or result is None or not result.ok
                or not isinstance(queue, RemoteMergeQueue) or list(commands) != queue.checks):
            return
        queue.remember(ws.git.out("rev-parse", "HEAD^{tree}"), commands, result)

    def _settle_push(self, key: str, worker: TaskWorker, action: Action) -> None:
        """Wait for the branch's push after the last turn. When it failed (twice), the
        task goes on where the branch is only a resumption point (the next push carries its
        commits): only a stay that ends with its work on the branch (kept, blocked, waiting
        for approval, interrupted) needs it there, and ends in error without it."""
        pushing = self._pushing.pop(key, None)
        if pushing is None:
            return
        try:
            pushing.settle()
        except GitError as exc:
            if isinstance(action, Terminal) and not isinstance(action, Close | Satisfy):
                raise
            worker.ctx.bus.emit("warning", task=worker.task.id,
                                message=f"the task branch's push to the remote failed ({exc});"
                                        " the next push carries its commits")

    def _finish(self, key: str, worker: TaskWorker, action: Terminal) -> dict[str, Any]:
        """How the task's stay ends (recorded). Its outcome goes back at once, so that the
        scheduler dispatches what a landing unblocked; the worktree is given back after."""
        self.live.pop(key, None)
        self._next.pop(key, None)
        landed = False
        try:
            landed = worker.finish(action)
        except Exception as exc:
            worker.internal_error(exc)
        worker.out.seconds = worker.ctx.clock.monotonic() - worker.started_at_mono
        with contextlib.suppress(Exception):
            worker.count_usage(*worker.records.usage())
        outcome = asdict(worker.out)
        self._threads.submit(self._release, worker, landed)
        return outcome

    def _release(self, worker: TaskWorker, landed: bool) -> None:
        worker.acts.release(landed=landed)
        worker.ledger.close_db()
        landing = worker.acts.landing
        if landed and (landing is None or landing.outcome != "landed"):
            # found landed, or satisfied: no landing's push deleted its branch there
            delete_remote_branch(self.services.git, branch_for(worker.task.id))

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        self._pushes.shutdown(wait=False, cancel_futures=True)


async def serve(address: str, services: WorkerServices, *, slots: int, identity: str,
                stop: asyncio.Event, namespace: str = "default", task_queue: str = TASK_QUEUE,
                ready: Callable[[], None] | None = None) -> None:
    """Work for the mill until ``stop`` is set."""
    client = await Client.connect(address, namespace=namespace, identity=identity)
    own = f"taskmill-worker-{identity}-{secrets.token_hex(3)}"
    acts = WorkerActivities(services, queue=own, identity=identity, slots=slots)
    build = build_id()
    tuner = WorkerTuner.create_composite(
        workflow_supplier=FixedSizeSlotSupplier(100),
        activity_supplier=TaskSlots(slots, acts.live),
        local_activity_supplier=FixedSizeSlotSupplier(10),
        nexus_supplier=FixedSizeSlotSupplier(10))
    shared = Worker(client, task_queue=task_queue, workflows=[TaskWorkflow],
                    activities=[acts.bind], tuner=tuner, identity=identity, build_id=build)
    mine = Worker(client, task_queue=own, activities=[acts.step],
                  max_concurrent_activities=3 * slots + 2, identity=identity,
                  build_id=build)
    try:
        async with shared, mine:
            services.bus.emit("worker_started", worker=identity, queue=own, slots=slots,
                              clone=str(services.clone), start_ms=round(
                                  (services.clock.monotonic() - services.began) * 1000, 1))
            services.warm()
            if ready is not None:
                ready()
            await stop.wait()
    finally:
        acts.close()
        services.close()
