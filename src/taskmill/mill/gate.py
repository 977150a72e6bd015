"""Pausing an agent's work while its usage limit lasts (a rate limit: not the task's fault).

A turn that reports a rate limit pauses every task of that agent: until the reset time the
agent gave, or, when it gave none, for a back-off that doubles each time (from half of
``[run] rate_limit_backoff``, capped at 30 minutes) and is forgotten after a turn that went
through. Waiting goes through the injected :class:`~taskmill.clock.Clock`, so a test with a
:class:`~taskmill.clock.FixedClock` backs off for minutes in no time.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ..clock import Clock

MAX_BACKOFF_S = 1800.0
WAIT_SLICE_S = 1.0


@dataclass
class AgentGate:
    """Pauses all work of one agent while its usage limit lasts."""

    clock: Clock
    paused_until: dict[str, float] = field(default_factory=dict)
    backoff: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait(self, agent: str, stop: threading.Event) -> None:
        """Return once ``agent`` may work again, or as soon as ``stop`` is set."""
        while not stop.is_set():
            with self.lock:
                until = self.paused_until.get(agent, 0.0)
            remaining = until - self.clock.monotonic()
            if remaining <= 0:
                return
            self.clock.sleep(min(remaining, WAIT_SLICE_S), until=stop)

    def pause(self, agent: str, retry_after: float | None, base: float) -> float:
        """Pause ``agent``: ``retry_after`` seconds (at least 1), or the next back-off when it
        gave no reset time. Returns the delay."""
        with self.lock:
            if retry_after is None:
                delay = self.backoff.get(agent, base / 2) * 2
                self.backoff[agent] = min(delay, MAX_BACKOFF_S)
                delay = self.backoff[agent]
            else:
                delay = max(1.0, retry_after)
            self.paused_until[agent] = max(self.paused_until.get(agent, 0.0),
                                           self.clock.monotonic() + delay)
            return delay

    def succeeded(self, agent: str) -> None:
        """A turn of ``agent`` went through: its back-off starts over."""
        with self.lock:
            self.backoff.pop(agent, None)
