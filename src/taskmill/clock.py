"""Time, passed in rather than read from globals, so tests and benchmarks can control it."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin, never going backwards."""
        ...

    def sleep(self, seconds: float, *, until: threading.Event | None = None) -> None:
        """Wait ``seconds`` (less when ``until`` is set meanwhile, or was set already)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float, *, until: threading.Event | None = None) -> None:
        if until is not None:
            until.wait(max(0.0, seconds))
        elif seconds > 0:
            time.sleep(seconds)


class FixedClock:
    """A clock for tests: starts at ``start`` and advances only when told (or by ``step``).

    :meth:`sleep` returns at once, having advanced the clock by the time slept, so code that
    backs off for minutes is tested in no time (``slept`` lists every sleep)."""

    def __init__(self, start: datetime | None = None, step: float = 0.0) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._mono = 0.0
        self._step = step
        self._lock = threading.Lock()
        self.slept: list[float] = []

    def now(self) -> datetime:
        with self._lock:
            current = self._now
            if self._step:
                self._now = self._now + timedelta(seconds=self._step)
                self._mono += self._step
            return current

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now = self._now + timedelta(seconds=seconds)
            self._mono += seconds

    def sleep(self, seconds: float, *, until: threading.Event | None = None) -> None:
        if until is not None and until.is_set():
            return
        seconds = max(0.0, seconds)
        self.slept.append(seconds)
        self.advance(seconds)


def iso(dt: datetime) -> str:
    """RFC 3339 in UTC with microseconds, e.g. ``2026-01-01T00:00:00.000000Z``."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str | None) -> datetime | None:
    """A timestamp as the ledger and the mill write it (see :func:`iso`); ``None`` if unreadable."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def elapsed_seconds(start: str | None, end: str | None, now: datetime) -> float | None:
    """Seconds from ``start`` to ``end`` (to ``now`` while there is no end), to the millisecond."""
    began = parse_iso(start)
    if began is None:
        return None
    ended = parse_iso(end) or now
    return round(max(0.0, (ended - began).total_seconds()), 3)
