"""``taskmill watch``: the mill that stays up. It works ready tasks as they appear (created by
people, agents or orders), fires the orders on time, and sleeps in between.

Idle cost: with nothing in flight, the scheduler sleeps until the next order slot, a ledger
change or a stop request, whichever comes first. A ledger change (any process's write) is
seen through the change feed's head (:meth:`Ledger.last_seq`, one indexed read) looked at
every :attr:`Watch.poll` seconds; a stop signal wakes it at once (:attr:`Watch.wake`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..clock import Clock, iso

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..ledger import Ledger
    from ..orders import Firing, OrderScheduler
    from ..paths import LedgerPaths
    from .events import EventBus

POLL_SECONDS = 1.0
"""How often an idle watch looks at the ledger's change feed."""
RECHECK_SECONDS = 60.0
"""An idle watch looks for ready work at least this often, ledger change or not (work can
become ready with time alone: a ``defer_until`` passing, a role's budget renewed)."""


class Watch:
    def __init__(self, scheduler: OrderScheduler, *, clock: Clock, bus: EventBus,
                 poll: float = POLL_SECONDS, recheck: float = RECHECK_SECONDS) -> None:
        self.scheduler = scheduler
        self.clock = clock
        self.bus = bus
        self.poll = poll
        self.recheck = recheck
        self.wake = threading.Event()
        """Set to end an idle sleep at once (a stop signal)."""
        self._seen = 0
        self.firings: list[Firing] = []

    def start(self, ledger: Ledger) -> None:
        """Arm the orders (once: a restart goes on from the recorded slots)."""
        self.scheduler.arm(ledger)
        self._seen = ledger.last_seq()
        nxt = self.scheduler.next_due()
        self.bus.emit("watch_started", orders=[o.name for o in self.scheduler.orders],
                      next_firing=iso(nxt) if nxt else None)

    def tick(self, ledger: Ledger) -> None:
        """Fire what is due (and the event orders' events since the last look)."""
        for firing in self.scheduler.tick(ledger):
            self.firings.append(firing)
            self.bus.emit(f"order_{firing.outcome}", **{
                k: v for k, v in firing.to_json().items() if v is not None})

    def seconds_to_next(self) -> float | None:
        nxt = self.scheduler.next_due()
        if nxt is None:
            return None
        return (nxt - self.clock.now()).total_seconds()

    def idle(self, ledger: Ledger, stop_pending: Callable[[], bool]) -> None:
        """Sleep until an order slot falls due, the ledger changes, a stop is asked, or
        :attr:`recheck` seconds have passed."""
        until = self.clock.monotonic() + self.recheck
        while not stop_pending() and self.clock.monotonic() < until:
            wait = self.seconds_to_next()
            if wait is not None and wait <= 0:
                return
            timeout = self.poll if wait is None else min(self.poll, wait)
            self.clock.sleep(timeout, until=self.wake)
            self.wake.clear()
            seq = ledger.last_seq()
            if seq != self._seen:
                self._seen = seq
                return


def project_watch(paths: LedgerPaths, env: Mapping[str, str], *, clock: Clock, bus: EventBus,
                  poll: float = POLL_SECONDS) -> Watch:
    """The watch ``taskmill watch`` runs for a repository: its orders, checked (a bad order
    file is an error naming its line). ``taskmill serve --mill`` runs the same."""
    from ..orders import project_scheduler

    return Watch(project_scheduler(paths, env, clock=clock), clock=clock, bus=bus, poll=poll)
