"""Hearing about commits: a connection that ``LISTEN``s on the channel every commit with
events notifies (:data:`~.events.CHANNEL`), for the dashboard's live feed."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import psycopg

from .events import CHANNEL


class CommitListener:
    """``async with CommitListener(url, schema) as heard: await heard.wait(timeout)``."""

    def __init__(self, url: str, schema: str) -> None:
        self.url = url
        self.mine = f"{schema}:"
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def __aenter__(self) -> CommitListener:
        self._conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        await self._conn.execute(f"LISTEN {CHANNEL}")
        return self

    async def wait(self, timeout: float) -> bool:
        """Whether a commit to this ledger was notified within ``timeout`` seconds."""
        assert self._conn is not None
        async for note in self._conn.notifies(timeout=timeout):
            if note.payload.startswith(self.mine):
                return True
        return False

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
