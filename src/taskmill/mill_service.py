"""The mill run inside another process (``taskmill serve --mill``): started, stopped and
watched from the dashboard, with the guarantees of ``taskmill watch``.

:class:`MillService` runs, on a thread of its own, what ``taskmill watch`` runs: the mill
(:class:`~taskmill.mill.engine.Mill`) with the repository's watch
(:func:`~taskmill.mill.watch.project_watch`). While started it works ready tasks as they
appear (created from the page, by agents, by orders), fires the orders of
``.taskmill/orders`` on time, and sleeps in between; :meth:`MillService.wake` ends that
sleep at once (a task created or approved from the page). Stopping is ``taskmill watch``'s
Ctrl-C: nothing new is started, in-flight turns get the grace to finish, then they are cut
(their attempts recorded as interrupted, the tasks resumed by the next start); a second stop
cuts them at once. Pausing and resuming are the mill's pause file (:mod:`taskmill.control`),
the same as ``taskmill pause``.

With ``[executor] kind = "temporal"`` the mill is the Temporal client
(:class:`~taskmill.temporal.mill.TemporalMill`, at ``[executor] address``) with the same watch:
the tasks run on the cluster's ``taskmill worker``s, and a stop leaves the workflows in
flight running (the next start waits on them again).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from .clock import Clock, iso
from .config import Config
from .errors import Conflict
from .paths import LedgerPaths

if TYPE_CHECKING:
    from .agents.base import AgentConfig
    from .ledger import LedgerStore
    from .mill.engine import Mill
    from .mill.events import EventBus
    from .mill.settings import RunSettings
    from .mill.turn_runner import TurnRunner
    from .mill.watch import Watch

EVENTS_MAX_BYTES = 20_000_000
STOPPED, WATCHING, RUNNING, STOPPING = "stopped", "watching", "running", "stopping"


@dataclass
class MillStatus:
    state: str
    """stopped | watching (started: waiting for work or the next order) | running (working
    tasks now) | stopping (draining after a stop)."""
    started_by: str | None
    started_at: str | None
    runs: int
    last_exit: int | None
    error: str | None
    working: int = 0
    """Tasks being worked now."""
    orders: int = 0
    """The orders the watch fires (``.taskmill/orders``)."""
    next_order: str | None = None
    """When the next order's slot falls (None: no timed order, or not started)."""

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "started_by": self.started_by,
                "started_at": self.started_at, "runs": self.runs, "last_exit": self.last_exit,
                "error": self.error, "working": self.working, "orders": self.orders,
                "next_order": self.next_order}


class MillService:
    """``taskmill watch`` started and stopped on demand, on a thread of this process.

    ``poll_s``: how often the idle watch looks at the ledger (a :meth:`wake` looks at once).
    ``turn_runner``, ``store``, ``agent_override``: handed to the mill (tests run agent
    turns in process, on another store). ``on_event``: also given every mill event.
    """

    def __init__(self, paths: LedgerPaths, config: Config, env: Mapping[str, str], clock: Clock,
                 *, overrides: Mapping[str, Any] | None = None, poll_s: float = 1.0,
                 on_change: Callable[[], None] | None = None,
                 turn_runner: TurnRunner | None = None,
                 store: Callable[[], LedgerStore] | None = None,
                 agent_override: AgentConfig | None = None,
                 on_event: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.paths = paths
        self.config = config
        self.env = env
        self.clock = clock
        self.overrides = dict(overrides or {})
        self.poll_s = poll_s
        self.on_change = on_change
        self.turn_runner = turn_runner
        self.store = store
        self.agent_override = agent_override
        self.on_event = on_event
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._mill: Mill | None = None
        self._watch: Watch | None = None
        self._state = STOPPED
        self._started_by: str | None = None
        self._started_at: str | None = None
        self._runs = 0
        self._last_exit: int | None = None
        self._error: str | None = None
        self._working: set[str] = set()
        self._orders = 0
        self._next_order: str | None = None

    # -- what the page sees ------------------------------------------------------------------

    def status(self) -> MillStatus:
        with self._lock:
            return MillStatus(self._state, self._started_by, self._started_at, self._runs,
                              self._last_exit, self._error, len(self._working), self._orders,
                              self._next_order)

    def _changed(self) -> None:
        if self.on_change is not None:
            with contextlib.suppress(Exception):
                self.on_change()

    # -- control -----------------------------------------------------------------------------

    def start(self, by: str) -> MillStatus:
        """Start watching the ledger (a :class:`Conflict` when started or still stopping; a
        bad order file or ``[run]`` setting is an error, and nothing starts)."""
        from .mill.events import EventBus
        from .mill.settings import RunSettings
        from .mill.watch import project_watch

        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                raise Conflict(f"the mill is {self._state}",
                               hint="stop it first" if self._state != STOPPING else
                               "wait until it has stopped")
            settings = RunSettings.from_config(self.config.run, self.overrides)
            self._temporal_address()  # a temporal executor without an address: nothing starts
            bus = EventBus(self.clock)
            watch = project_watch(self.paths, self.env, clock=self.clock, bus=bus,
                                  poll=self.poll_s)
            self._stop.clear()
            self._started_by = by
            self._started_at = iso(self.clock.now())
            self._error = None
            self._state = WATCHING
            self._working = set()
            self._orders = len(watch.scheduler.orders)
            self._next_order = None
            self._watch = watch
            self._thread = threading.Thread(target=self._loop, args=(settings, bus, watch),
                                            name="taskmill-mill", daemon=True)
            self._thread.start()
        self._changed()
        return self.status()

    def stop(self, by: str) -> MillStatus:
        """Stop: nothing new starts, running turns get the grace, then are cut. Stopping
        while it stops cuts them now. A :class:`Conflict` when it is not started."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                raise Conflict("the mill is not running", hint="start it first")
            self._stop.set()
            mill = self._mill
            self._state = STOPPING
        if mill is not None:
            mill.signal(signal.SIGTERM)  # wakes the watch too
        self._changed()
        return self.status()

    def wake(self) -> None:
        """Look at the ledger now (it changed: a task created, approved, unblocked): an idle
        watch picks the new work up at once, and fires an event order it triggers."""
        watch = self._watch
        if watch is not None:
            watch.wake.set()

    def close(self, timeout: float | None = None) -> None:
        """Stop (if started) and wait for the mill to finish (the server shuts down)."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        with contextlib.suppress(Conflict):
            self.stop("shutdown")
        thread.join(timeout)
        if thread.is_alive():  # the grace is over for us: cut the turns now
            mill = self._mill
            if mill is not None:
                mill.signal(signal.SIGTERM)
            thread.join(30)

    def _temporal_address(self) -> str | None:
        """The Temporal frontend when ``[executor] kind = "temporal"`` (checked), else None."""
        table = self.config.executor
        if table.kind != "temporal":
            return None
        from .errors import InvalidInput
        from .temporal.spec import parse_address

        if not table.address:
            raise InvalidInput("[executor] kind = \"temporal\" needs the Temporal frontend",
                               hint="set [executor] address = \"HOST:PORT\" in "
                                    ".taskmill/config.toml")
        return parse_address(table.address)

    def _new_mill(self, settings: RunSettings, bus: EventBus, watch: Watch) -> Mill:
        """The mill of ``taskmill watch`` for this repository's ``[executor]``."""
        address = self._temporal_address()
        if address is None:
            from .mill.engine import Mill

            return Mill(self.paths, self.config, settings, env=self.env, clock=self.clock,
                        bus=bus, agent_override=self.agent_override,
                        turn_runner=self.turn_runner, store=self.store, watch=watch)
        from .temporal.mill import TemporalMill

        table = self.config.executor
        return TemporalMill(self.paths, self.config, settings, env=self.env, clock=self.clock,
                            bus=bus, address=address, namespace=table.namespace,
                            task_queue=table.task_queue,
                            heartbeat_timeout=table.heartbeat_timeout,
                            agent_override=self.agent_override, store=self.store, watch=watch)

    # -- the thread ----------------------------------------------------------------------------

    def _on_event(self, event: dict[str, Any]) -> None:
        """Follow the mill (on its thread): what it works, when the next order falls."""
        kind = str(event.get("event"))
        task = event.get("task")
        with self._lock:
            before = (self._state, len(self._working), self._next_order)
            if kind == "dispatched" and isinstance(task, str):
                self._working.add(task)
            elif kind == "task_finished" and isinstance(task, str):
                self._working.discard(task)
            elif kind == "watch_started":
                nxt = event.get("next_firing")
                self._next_order = nxt if isinstance(nxt, str) else None
            elif kind.startswith("order_") and self._watch is not None:
                due = self._watch.scheduler.next_due()
                self._next_order = iso(due) if due is not None else None
            if self._state != STOPPING:
                self._state = RUNNING if self._working else WATCHING
            changed = before != (self._state, len(self._working), self._next_order)
        if changed:
            self._changed()

    def _loop(self, settings: RunSettings, bus: EventBus, watch: Watch) -> None:
        try:
            self._run(settings, bus, watch)
        except Exception as exc:  # say it on the page; the thread ends
            with self._lock:
                self._error = f"{type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                self._mill = None
                self._watch = None
                self._working = set()
                self._next_order = None
                self._state = STOPPED
            self._changed()

    def _run(self, settings: RunSettings, bus: EventBus, watch: Watch) -> None:
        from .mill.events import NdjsonWriter

        self.paths.run_dir.mkdir(parents=True, exist_ok=True)
        events_path = self.paths.run.events
        if events_path.exists() and events_path.stat().st_size > EVENTS_MAX_BYTES:
            events_path.replace(events_path.with_suffix(".ndjson.1"))
        shared: IO[str] = events_path.open("a", encoding="utf-8")
        try:
            bus.subscribe(NdjsonWriter(shared))
            bus.subscribe(self._on_event)
            if self.on_event is not None:
                bus.subscribe(self.on_event)
            mill = self._new_mill(settings, bus, watch)
            with self._lock:
                self._mill = mill
                stopping = self._stop.is_set()
            if stopping:
                return
            summary = mill.run()  # a watch: until stopped
            with self._lock:
                self._runs += 1
                self._last_exit = summary.exit_code
        finally:
            shared.close()
