"""What the mill says while it works: events to subscribers (NDJSON, the live view)."""

from __future__ import annotations

import json
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
        self._lock = threading.Lock()

    def subscribe(self, fn: Subscriber) -> None:
        with self._lock:
            self._subs.append(fn)

    def emit(self, kind: str, **data: Any) -> None:
        event: Event = {"ts": iso(self._clock.now()), "event": kind, **data}
        with self._lock:
            subs = list(self._subs)
        for fn in subs:
            fn(event)


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
