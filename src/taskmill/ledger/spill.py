"""Rows passed through a temporary file or a pipe (from a forked child, or spilled out of
memory): batches of rows, each :mod:`marshal`-led and framed by its length.

``marshal.loads`` of a batch's bytes is read at once; ``marshal.load`` of a file object reads
each value's parts through Python calls to the file (~7x slower: ~3.5 us a 1 KB row)."""

from __future__ import annotations

import marshal
from collections.abc import Iterator
from typing import IO, Any

_LENGTH = 8
"""The bytes of a batch's length (little-endian) before the batch."""


def write_batch(out: IO[bytes], rows: list[Any] | tuple[Any, ...]) -> None:
    """``rows`` (a list or tuple of what :mod:`marshal` writes) as one batch."""
    data = marshal.dumps(rows)
    out.write(len(data).to_bytes(_LENGTH, "little"))
    out.write(data)


def read_batches(out: IO[bytes]) -> Iterator[Any]:
    """The batches written to ``out``, from its start, each as it was written."""
    out.seek(0)
    yield from read_stream(out)


def read_stream(out: IO[bytes]) -> Iterator[Any]:
    """The batches written to ``out`` from where it is (a pipe: each as it comes), until its
    end; a batch cut short (its writer died while writing it) ends them too."""
    while True:
        head = out.read(_LENGTH)
        if len(head) < _LENGTH:
            return
        size = int.from_bytes(head, "little")
        data = out.read(size)
        if len(data) < size:
            return
        yield marshal.loads(data)


def read_rows(out: IO[bytes]) -> Iterator[Any]:
    """The rows of the batches written to ``out``, one at a time."""
    for batch in read_batches(out):
        yield from batch
