"""What the mill says while it works: events to subscribers (NDJSON, the live view)."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections.abc import Callable
from typing import IO, Any

from ..clock import Clock, iso

Event = dict[str, Any]
Subscriber = Callable[[Event], None]


class EventBus:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._subs: list[Subscriber] = []
        self._failed: set[int] = set()
        self._lock = threading.Lock()

    def subscribe(self, fn: Subscriber) -> None:
        with self._lock:
            self._subs.append(fn)

    def emit(self, kind: str, **data: Any) -> None:
        """Hand the event to every subscriber. A subscriber that fails (a closed stream, a
        full disk, a terminal that went away) is reported once on standard error and
        never fails the caller: the work goes on, only that sink misses events."""
        event: Event = {"ts": iso(self._clock.now()), "event": kind, **data}
        with self._lock:
            subs = list(self._subs)
        for fn in subs:
            try:
                fn(event)
            except Exception as exc:
                self._sink_failed(fn, exc)

    def _sink_failed(self, fn: Subscriber, exc: Exception) -> None:
        with self._lock:
            if id(fn) in self._failed:
                return
            self._failed.add(id(fn))
        with contextlib.suppress(Exception):
            sys.stderr.write(f"taskmill: an event sink failed (reported once; the run goes "
                             f"on): {exc!r}\n")


class NdjsonWriter:
    """Writes every event as one JSON line (``--json-events``)."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        line = json.dumps(event, ensure_ascii=False, default=str)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()
