"""What the listings split across processes are seen to do (:mod:`taskmill.ledger.sqlite.split`):
the forks, and the rows a laying made in this process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from taskmill.ledger.sqlite import split


def count_forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that gets an item at each fork of a split listing (a links' child too)."""
    forks: list[int] = []
    fork = split.os.fork

    def counted() -> int:
        forks.append(1)
        return fork()

    monkeypatch.setattr(split.os, "fork", counted)
    return forks


def count_laid(monkeypatch: pytest.MonkeyPatch, laying: type[Any]) -> list[int]:
    """A list that gets the rows of each stretch ``laying``'s ``lay`` makes in this
    process (not in a child forked after: its list is its own)."""
    here: list[int] = []
    lay = laying.lay

    def counted(self: Any, rows: Any, head: Any) -> Iterator[tuple[str, int]]:
        for text, n in lay(self, rows, head):
            here.append(n)
            yield text, n

    monkeypatch.setattr(laying, "lay", counted)
    return here
