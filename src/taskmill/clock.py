"""Time, passed in rather than read from globals, so tests and benchmarks can control it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin, never going backwards."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class FixedClock:
    """A clock for tests: starts at ``start`` and advances only when told (or by ``step``)."""

    def __init__(self, start: datetime | None = None, step: float = 0.0) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._mono = 0.0
        self._step = step

    def now(self) -> datetime:
        from datetime import timedelta

        current = self._now
        if self._step:
            self._now = self._now + timedelta(seconds=self._step)
            self._mono += self._step
        return current

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        from datetime import timedelta

        self._now = self._now + timedelta(seconds=seconds)
        self._mono += seconds


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
