"""``taskmill run --executor temporal``: the mill's scheduler, dispatching to Temporal.

The scheduling is the local mill's (:class:`~taskmill.mill.engine.Mill`: ready work ordered
by priority and chain length, claimed atomically in the ledger, at most ``--workers`` tasks
at once, a landing's dependents dispatched the moment its workflow ends); what runs a task is
its workflow on the cluster (:mod:`.workflow`), on ``taskmill worker`` machines. This process
holds no worktree, runs no agent and never lands: the user's checkout is not touched.

A client that dies leaves its workflows running: the next ``taskmill run`` finds each task
it had in flight still claimed by the dead run, and waits on its workflow again instead of
recovering the task (which is what it does when the workflow is gone).

``taskmill watch`` (a :class:`~taskmill.mill.watch.Watch`) keeps it up, with the local
watch's steps (:meth:`Mill._watch_tick`, :meth:`Mill._watch_idle`): the orders fire on time,
new or approved work is dispatched as it appears, the idle client sleeps on the ledger's
change feed, and a stop drains as ``run`` does (nothing new is started; the workflows in
flight are waited on for the grace, then left running for the next client).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..agents.base import AgentConfig
from ..clock import Clock, iso
from ..config import Config
from ..control import MILL_PREFIX
from ..kinds import MillEvent, TaskOutcome
from ..ledger import Ledger, LedgerStore
from ..mill.engine import Mill, RunSummary
from ..mill.events import EventBus
from ..mill.settings import RunSettings
from ..mill.watch import Watch
from ..mill.worker import Outcome
from ..model import Task
from ..paths import LedgerPaths
from ..roles.book import RoleBook
from .executor import TemporalExecutor
from .payloads import pack
from .spec import DEFAULT_HEARTBEAT_S, TASK_QUEUE, Payload, RunSpec, TaskSpec


class TemporalMill(Mill):
    def __init__(self, paths: LedgerPaths, config: Config, settings: RunSettings, *,
                 env: Mapping[str, str], clock: Clock, bus: EventBus, address: str,
                 namespace: str = "default", task_queue: str = TASK_QUEUE,
                 heartbeat_timeout: float = DEFAULT_HEARTBEAT_S,
                 agent_override: AgentConfig | None = None,
                 store: Callable[[], LedgerStore] | None = None,
                 watch: Watch | None = None) -> None:
        super().__init__(paths, config, settings, env=env, clock=clock, bus=bus,
                         agent_override=agent_override, store=store, watch=watch)
        self.address = address
        self.namespace = namespace
        self.task_queue = task_queue
        self.heartbeat_timeout = heartbeat_timeout

    def run(self) -> RunSummary:
        self._hold_run_lock()
        ledger = self.ledger()
        try:
            # the rules the workers apply: read and checked here too (a task's role picks
            # its agent; a wrong role file or [review] agent: nothing starts)
            self.roles = RoleBook.load(self.paths.dir)
            self._review_setup()
            target = self._target()
            summary = RunSummary(self.run_id, target)
            with TemporalExecutor(self.address, namespace=self.namespace,
                                  task_queue=self.task_queue) as executor:
                spec = pack(RunSpec(self.run_id, target, self.settings, self.agent_override))
                self.bus.emit("run_started", run_id=self.run_id, target=target,
                              workers=self.settings.workers, executor="temporal",
                              address=self.address)
                attach = self._recover_remote(ledger, executor)
                summary.skipped = self.skipped
                self._watch_start(ledger)
                self._loop_remote(ledger, executor, spec, attach, summary)
            summary.stopped_by = self.stopped_by
            summary.refused = dict(self.refused)
            self.bus.emit("run_finished", **{k: v for k, v in summary.to_json().items()
                                             if k != "tasks"})
            return summary
        finally:
            ledger.close_db()
            self._release_run_lock()

    def _recover_remote(self, ledger: Ledger, executor: TemporalExecutor
                        ) -> list[tuple[str, int, bool]]:
        """Tasks left in progress by runs that died: (task, lap, resumed) to dispatch. A task
        whose workflow still runs is only waited on again (its worker goes on); the others
        are taken over as the local mill does (their unfinished attempts end interrupted)."""
        found: list[tuple[str, int, bool]] = []
        for task_id, assignee in ledger.claims(MILL_PREFIX):
            run_id = assignee[len(MILL_PREFIX):]
            if self._run_alive(run_id):
                continue
            lap = self._lap_for(ledger, task_id, True)
            if executor.running(task_id, lap):
                found.append((task_id, lap, True))
                self.bus.emit("reattached", task=task_id, from_run=run_id)
                continue
            if ledger.recover_orphan(task_id, assignee, actor=self.actor,
                                     now=iso(self.clock.now()), from_run=run_id):
                found.append((task_id, lap, True))
                self.bus.emit("recovered", task=task_id, from_run=run_id)
        return found

    def _loop_remote(self, ledger: Ledger, executor: TemporalExecutor, run: Payload,
                     attach: list[tuple[str, int, bool]], summary: RunSummary) -> None:
        in_flight: set[str] = set()
        roles_of: dict[str, str | None] = {}
        """The role of each task in flight (a role's ``max_parallel``)."""
        skip: set[str] = set()
        self._skip_agentless(ledger, skip)
        dispatched = 0

        def failed_for(task: Task) -> Callable[[BaseException], Outcome]:
            def failed(exc: BaseException) -> Outcome:
                return Outcome(task.id, task.title, TaskOutcome.ERROR, reason=(
                    f"taskmill error (not the task's fault): {exc!r}; the next "
                    "`taskmill run` retries it"))
            return failed

        def submit(task: Task, lap: int, resumed: bool) -> None:
            in_flight.add(task.id)
            roles_of[task.id] = task.role
            skip.add(task.id)
            self.bus.emit(MillEvent.DISPATCHED, task=task.id, title=task.title, lap=lap,
                          in_flight=len(in_flight))
            executor.start(TaskSpec(task.id, lap, resumed, run, self.heartbeat_timeout,
                                    self.settings.turn_timeout, self.settings.check_timeout),
                           failed_for(task))

        for task_id, lap, resumed in attach:
            if self.settings.only and task_id not in self.settings.only:
                continue
            submit(ledger.get(task_id), lap, resumed)
        was_paused = False
        while True:
            self._take_signals()
            if self.abort.is_set():  # the workflows go on: the next run waits on them
                break
            self._watch_tick(ledger)
            paused = self.paused()
            if paused != was_paused:
                self.bus.emit(MillEvent.PAUSED if paused else MillEvent.RESUMED)
                was_paused = paused
            while (not paused and not self.stop.is_set()
                   and len(in_flight) < self.settings.workers
                   and (self.settings.max_tasks is None or dispatched < self.settings.max_tasks)):
                claimed = self._claim_next(ledger, skip,
                                           [roles_of.get(t) for t in in_flight])
                if claimed is None:
                    break
                dispatched += 1
                submit(claimed, self._lap_for(ledger, claimed.id, False), False)
            if not in_flight and not (paused and not self.stop.is_set()):
                if not self._watch_idle(ledger, skip):  # taskmill watch: sleep, go on
                    break
                continue
            # a workflow ending wakes us at once; the timeout notices new work and the
            # next order's slot (taskmill watch)
            outcome = executor.wait_any(self._wait_timeout(), until=self._stop_pending)
            if outcome is None:
                continue
            in_flight.discard(outcome.task_id)
            roles_of.pop(outcome.task_id, None)
            if outcome.outcome != TaskOutcome.ERROR:
                skip.discard(outcome.task_id)
            summary.outcomes.append(outcome)
            self.bus.emit(MillEvent.TASK_FINISHED, task=outcome.task_id,
                          outcome=outcome.outcome, iterations=outcome.iterations,
                          in_flight=len(in_flight))
