"""The mill anchors the audit chain at every landing and at the end of each run.

An anchor is a signed commit on ``refs/taskmill/audit`` (see :mod:`taskmill.audit_anchor`);
making one costs a few git and ``ssh-keygen`` processes. So that a landing never waits for
it, a worker only asks (:meth:`Anchorer.request`) and one background thread writes the
anchor of the ledger's head as it is then: landings that come faster than anchors share
one. :meth:`Anchorer.close` writes the last one, at the end of the run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..audit_anchor import AnchorStore, anchor_ledger
from ..clock import Clock, iso
from ..errors import TaskmillError
from ..ledger import LedgerStore
from .events import EventBus


class Anchorer:
    def __init__(self, store: AnchorStore, open_ledger: Callable[[], LedgerStore], *,
                 clock: Clock, bus: EventBus) -> None:
        self.store = store
        self.open_ledger = open_ledger
        self.clock = clock
        self.bus = bus
        self.anchored = 0
        self.seconds = 0.0
        """Time spent writing anchors (in the background thread)."""
        self._wanted = threading.Event()
        self._closing = False
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._thread = threading.Thread(target=self._loop, name="taskmill-anchor", daemon=True)
        self._thread.start()

    def request(self) -> None:
        """Anchor the ledger's head soon (called when a task lands)."""
        self._wanted.set()

    def close(self) -> None:
        """Stop the thread and anchor the head one last time (again: nothing)."""
        if self._closing:
            return
        self._closing = True
        self._wanted.set()
        self._thread.join()
        self.anchor_now()

    def anchor_now(self) -> None:
        with self._lock:
            start = time.perf_counter()
            ledger = self.open_ledger()
            try:
                anchor = anchor_ledger(ledger, self.store, iso(self.clock.now()))
            except TaskmillError as exc:
                if exc.message not in self._warned:
                    self._warned.add(exc.message)
                    self.bus.emit("warning", about="audit_anchor",
                                  message=f"the audit chain was not anchored: {exc.message}")
                return
            finally:
                ledger.close()
                self.seconds += time.perf_counter() - start
            if anchor is not None:
                self.anchored += 1
                self.bus.emit("audit_anchored", anchor=anchor.number, seq=anchor.seq,
                              commit=anchor.commit, signed=anchor.signed)

    def _loop(self) -> None:
        while True:
            self._wanted.wait()
            if self._closing:
                return
            self._wanted.clear()
            self.anchor_now()
