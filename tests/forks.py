"""What the listings split across processes are seen to do (:mod:`taskmill.ledger.sqlite.split`):
the forks, and the rows a laying made in this process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from taskmill.ledger.sqlite import split
from taskmill.ledger.sqlite.schema import connect


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


def not_used(failure: str, child: Callable[..., int], where: str) -> Callable[..., int]:
    """A split listing's ``child`` (its ledger's path first) whose output is not used: it
    fails (``failure`` "a failed child"), or begins reading only once another connection
    has committed new titles of the tasks ``where`` says ("a write")."""
    def wrapped(path: Path, *args: Any) -> int:
        if failure == "a failed child":
            raise RuntimeError("the child could not read")
        other = connect(path)  # (another connection commits before the child reads)
        other.execute(f"UPDATE tasks SET title = 'changed' WHERE {where}")
        other.close()
        return child(path, *args)

    return wrapped
