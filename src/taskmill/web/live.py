"""Live updates: a watcher over the ledger, the mill's events file and the pause file, and the
server-sent event stream (``GET /api/stream``) it feeds.

On SQLite the ledger's change feed is polled; on PostgreSQL the watcher ``LISTEN``s on the
channel every commit with events notifies, and reads the feed when told (see
:mod:`taskmill.ledger.postgres.events`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response

from ..control import pause_signature
from ..ledger import STORE_ERRORS, LedgerStore, open_store
from ..paths import LedgerPaths
from .mill_state import MillLog

POLL_SECONDS = 0.2
"""How often the watcher looks at the ledger and the events file."""
HEARTBEAT_SECONDS = 10.0
SEP = "\n"
"""What ends a line of the stream."""


class Broadcaster:
    """Watches the ledger, the events file and the pause file; pushes changes to subscribers.

    The ledger's change feed (:meth:`LedgerStore.changes_since`: the audit events after the
    last one seen) is read on a store of its own: every :data:`POLL_SECONDS` on SQLite; on
    PostgreSQL (``url``) when a commit's notification arrives. The events name the tasks
    that changed. The mill's files are looked at every :data:`POLL_SECONDS` either way.
    """

    def __init__(self, paths: LedgerPaths, mill: MillLog, url: str | None = None) -> None:
        self.paths = paths
        self.mill = mill
        self.url = url
        self._subscribers: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._store: LedgerStore | None = None
        self.seq = 0
        self.paused = False
        self._pause_seen: tuple[int, int] | None = None
        self.closed = False
        self.service: Callable[[], dict[str, Any]] | None = None
        """The state of the mill ``serve --mill`` runs (a ``service`` message when it
        changes)."""
        self._service_seen: dict[str, Any] | None = None

    def _connection(self) -> LedgerStore:
        if self._store is None:
            self._store = open_store(self.paths.db, self.url)
            self.seq = self._store.last_seq()
            self._pause_seen = self._pause_signature()
            self.paused = self._pause_seen is not None
            self.mill.refresh()
        return self._store

    def check(self, *, ledger: bool = True) -> list[dict[str, Any]]:
        """One look at everything watched (the ledger too, ``ledger``); returns the
        messages to send."""
        store = self._connection()
        messages: list[dict[str, Any]] = []
        rows = store.changes_since(self.seq) if ledger else []
        if rows:
            self.seq = rows[-1].seq
            messages.append({
                "type": "ledger", "seq": self.seq,
                "tasks": sorted({r[1] for r in rows if r[1]}),
                "kinds": sorted({r[2] for r in rows}),
            })
        events = self.mill.refresh()
        if events:
            messages.append({"type": "mill", "events": events[-50:], "running": self.mill.running,
                             "tasks": sorted({e["task"] for e in events
                                              if isinstance(e.get("task"), str)})})
        # the file's identity, not only its existence: a resume and a new pause between two
        # looks must still be noticed
        signature = self._pause_signature()
        if signature != self._pause_seen:
            self._pause_seen = signature
            self.paused = signature is not None
            messages.append({"type": "paused", "paused": self.paused})
        if self.service is not None:
            status = self.service()
            if status != self._service_seen:
                self._service_seen = status
                messages.append({"type": "service", "service": status})
        return messages

    def _pause_signature(self) -> tuple[int, int] | None:
        return pause_signature(self.paths.run)

    def publish(self, message: dict[str, Any]) -> None:
        for q in list(self._subscribers):
            q.put_nowait(message)

    async def _run(self) -> None:
        if self.url:
            await self._run_listening(self.url)
            return
        while not self.closed:
            try:
                for message in self.check():
                    self.publish(message)
            except STORE_ERRORS:  # a locked or replaced database: try again next time
                if self._store is not None:
                    with contextlib.suppress(Exception):
                        self._store.close()
                self._store = None
            await asyncio.sleep(POLL_SECONDS)

    async def _run_listening(self, url: str) -> None:
        """PostgreSQL: wait for the commits' notifications (the mill's files still looked
        at every :data:`POLL_SECONDS`); read the feed when one arrives."""
        from ..ledger.postgres import STORE_ERRORS as PG_ERRORS
        from ..ledger.postgres.listen import CommitListener

        while not self.closed:
            try:
                schema = str(getattr(self._connection(), "schema", ""))
                async with CommitListener(url, schema) as heard:
                    told = True  # what committed before LISTEN: read it once
                    while not self.closed:
                        for message in self.check(ledger=told):
                            self.publish(message)
                        told = await heard.wait(POLL_SECONDS)
            except PG_ERRORS:  # the server went away: connect again
                if self._store is not None:
                    with contextlib.suppress(Exception):
                        self._store.close()
                self._store = None
                await asyncio.sleep(POLL_SECONDS)

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._subscribers.add(q)
        self.closed = False
        if self._task is None or self._task.done():
            self._loop = asyncio.get_running_loop()
            self._connection()
            self._task = self._loop.create_task(self._run())
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._subscribers.discard(q)

    def _close(self) -> None:
        self.closed = True
        for q in list(self._subscribers):
            q.put_nowait(None)
        if self._task is not None:
            self._task.cancel()

    async def aclose(self) -> None:
        self._close()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._store is not None:
            self._store.close()
            self._store = None


class LiveHandlers:
    """``/api/stream``: every change the :class:`Broadcaster` sees, as server-sent events
    (sse-starlette frames them, sends a ``: ping`` comment every :data:`HEARTBEAT_SECONDS`,
    notices a client going away, and ends the stream when the server shuts down)."""

    broadcaster: Broadcaster

    async def stream(self, request: Request) -> Response:
        q = self.broadcaster.subscribe()
        hello = {"type": "hello", "seq": self.broadcaster.seq, "paused": self.broadcaster.paused,
                 "running": self.broadcaster.mill.running}

        async def events() -> AsyncIterator[ServerSentEvent]:
            try:
                yield ServerSentEvent(retry=1000, sep=SEP)
                yield ServerSentEvent(json.dumps(hello), sep=SEP)
                while True:
                    message = await q.get()
                    if message is None:
                        return
                    yield ServerSentEvent(json.dumps(message, ensure_ascii=False, default=str),
                                          sep=SEP)
            finally:
                self.broadcaster.unsubscribe(q)

        return EventSourceResponse(events(), sep=SEP, ping=HEARTBEAT_SECONDS,
                                   ping_message_factory=lambda: ServerSentEvent(comment="ping",
                                                                                sep=SEP))
