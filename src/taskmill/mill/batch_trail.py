"""What the merge queue's batches did, on the event bus and in the audit trail.

The :class:`~.batch.BatchLander` says what it does through one ``emit(kind, **data)``:
``batch_started`` (the tasks merged onto the target's tip, and that tip), ``batch_checks``
(the project checks on a batch's tree: run or answered from the cache, green or red, which
retry), ``bisect_step`` (part of a red batch checked on its own), ``batch_landed`` (the
target moved to a batch's last commit), ``batch_finished`` (each task's verdict) and, with
``[merge] speculate``, ``speculation_started`` / ``speculation_used`` /
``speculation_discarded`` (a ``batch_checks`` of a speculative run says ``speculative``). :class:`BatchTrail` is that ``emit`` for a run: each
event goes to the run's bus (``--json-events``, the dashboard) and, as a run-level event (no
task), to the ledger's audit trail, where ``taskmill log`` and ``verify`` see it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

from ..kinds import LedgerEvent
from ..ledger import Ledger
from .events import EventBus

BATCH_EVENTS = frozenset({LedgerEvent.BATCH_STARTED, LedgerEvent.BATCH_CHECKS,
                          LedgerEvent.BISECT_STEP, LedgerEvent.BATCH_LANDED,
                          LedgerEvent.BATCH_FINISHED, LedgerEvent.SPECULATION_STARTED,
                          LedgerEvent.SPECULATION_USED, LedgerEvent.SPECULATION_DISCARDED})


class BatchTrail:
    """``emit`` for a :class:`~.batch.BatchLander`: the bus, and the audit trail for the
    batch events (through a ledger of its own, opened when first needed)."""

    def __init__(self, bus: EventBus, ledger_factory: Callable[[], Ledger], *,
                 actor: str, run_id: str) -> None:
        self.bus = bus
        self.ledger_factory = ledger_factory
        self.actor = actor
        self.run_id = run_id
        self._ledger: Ledger | None = None
        self._lock = threading.Lock()

    def __call__(self, kind: str, **data: Any) -> None:
        self.bus.emit(kind, **data)
        if kind not in BATCH_EVENTS:
            return
        with self._lock:
            if self._ledger is None:
                self._ledger = self.ledger_factory()
            with self._ledger.transaction():
                self._ledger.record(kind, None, {"run": self.run_id, **data}, actor=self.actor)

    def close(self) -> None:
        with self._lock:
            if self._ledger is not None:
                with contextlib.suppress(Exception):
                    self._ledger.close_db()
                self._ledger = None
