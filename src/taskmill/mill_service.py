"""The mill run inside another process (``taskmill serve --mill``): started, stopped and
watched from the dashboard, with the guarantees of ``taskmill run``.

:class:`MillService` runs a mill on a thread of its own. While started it keeps working the
ledger: when there is ready work it runs the mill (:class:`~taskmill.mill.engine.Mill`, the
engine of ``taskmill run``) until nothing is left, then waits for the ledger to change (a
new task, one unblocked) and runs again. Stopping is ``taskmill run``'s Ctrl-C: nothing new
is started, in-flight turns get the grace to finish, then they are cut; a second stop cuts
them at once. Pausing and resuming are the mill's pause file (:mod:`taskmill.control`),
the same as ``taskmill pause``.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any

from .clock import Clock, iso
from .config import Config
from .errors import Conflict
from .ledger import Ledger
from .paths import LedgerPaths

EVENTS_MAX_BYTES = 20_000_000
STOPPED, RUNNING, IDLE, STOPPING = "stopped", "running", "idle", "stopping"


@dataclass
class MillStatus:
    state: str
    """stopped | idle (started, waiting for work) | running (a mill run is working) |
    stopping (draining after a stop)."""
    started_by: str | None
    started_at: str | None
    runs: int
    last_exit: int | None
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "started_by": self.started_by,
                "started_at": self.started_at, "runs": self.runs, "last_exit": self.last_exit,
                "error": self.error}


class MillService:
    """A mill started and stopped on demand, on a thread of this process."""

    def __init__(self, paths: LedgerPaths, config: Config, env: Mapping[str, str], clock: Clock,
                 *, overrides: Mapping[str, Any] | None = None, poll_s: float = 1.0,
                 on_change: Callable[[], None] | None = None) -> None:
        self.paths = paths
        self.config = config
        self.env = env
        self.clock = clock
        self.overrides = dict(overrides or {})
        self.poll_s = poll_s
        self.on_change = on_change
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._mill: Any = None
        self._state = STOPPED
        self._started_by: str | None = None
        self._started_at: str | None = None
        self._runs = 0
        self._last_exit: int | None = None
        self._error: str | None = None

    # -- what the page sees ------------------------------------------------------------------

    def status(self) -> MillStatus:
        with self._lock:
            return MillStatus(self._state, self._started_by, self._started_at, self._runs,
                              self._last_exit, self._error)

    def _set(self, state: str) -> None:
        with self._lock:
            self._state = state
        if self.on_change is not None:
            with contextlib.suppress(Exception):
                self.on_change()

    # -- control -----------------------------------------------------------------------------

    def start(self, by: str) -> MillStatus:
        """Start working the ledger (a :class:`Conflict` when started or still stopping)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                raise Conflict(f"the mill is {self._state}",
                               hint="stop it first" if self._state != STOPPING else
                               "wait until it has stopped")
            self._stop.clear()
            self._wake.clear()
            self._started_by = by
            self._started_at = iso(self.clock.now())
            self._error = None
            self._state = IDLE
            self._thread = threading.Thread(target=self._loop, name="taskmill-mill",
                                            daemon=True)
            self._thread.start()
        return self.status()

    def stop(self, by: str) -> MillStatus:
        """Stop: nothing new starts, running turns get the grace, then are cut. Stopping
        while it stops cuts them now. A :class:`Conflict` when it is not started."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                raise Conflict("the mill is not running", hint="start it first")
            self._stop.set()
            self._wake.set()
            mill = self._mill
            if self._state != STOPPING:
                self._state = STOPPING
        if mill is not None:
            mill.signal(signal.SIGTERM)
        if self.on_change is not None:
            with contextlib.suppress(Exception):
                self.on_change()
        return self.status()

    def wake(self) -> None:
        """Look for work now (the ledger changed)."""
        self._wake.set()

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

    # -- the thread ----------------------------------------------------------------------------

    def _has_work(self, ledger: Ledger) -> bool:
        from .control import interrupted_ids

        if ledger.ready(limit=1, work_only=True):
            return True
        return bool(interrupted_ids(ledger, self.paths.run_dir))

    def _loop(self) -> None:
        ledger = Ledger.open(self.paths.db, prefix=self.config.prefix, clock=self.clock,
                             actor="taskmill")
        seen = -1
        try:
            while not self._stop.is_set():
                seq = ledger.last_seq()
                if seq != seen and self._has_work(ledger):
                    self._set(RUNNING)
                    self._run_once()
                    seen = ledger.last_seq()
                    if not self._stop.is_set():
                        self._set(IDLE)
                    continue
                seen = seq
                self._wake.wait(self.poll_s)
                self._wake.clear()
        except Exception as exc:  # say it on the page; the thread ends
            with self._lock:
                self._error = f"{type(exc).__name__}: {exc}"
        finally:
            ledger.close_db()
            with self._lock:
                self._mill = None
            self._set(STOPPED)

    def _run_once(self) -> None:
        from .mill.engine import Mill
        from .mill.events import EventBus, NdjsonWriter
        from .mill.settings import RunSettings

        settings = RunSettings.from_config(self.config.run, self.overrides)
        bus = EventBus(self.clock)
        self.paths.run_dir.mkdir(parents=True, exist_ok=True)
        events_path = self.paths.run.events
        if events_path.exists() and events_path.stat().st_size > EVENTS_MAX_BYTES:
            events_path.replace(events_path.with_suffix(".ndjson.1"))
        shared: IO[str] = events_path.open("a", encoding="utf-8")
        try:
            bus.subscribe(NdjsonWriter(shared))
            mill = Mill(self.paths, self.config, settings, env=self.env, clock=self.clock,
                        bus=bus)
            with self._lock:
                self._mill = mill
                stopping = self._stop.is_set()
            if stopping:
                return
            summary = mill.run()
            with self._lock:
                self._runs += 1
                self._last_exit = summary.exit_code
                self._mill = None
        finally:
            shared.close()
