"""How far a long ``taskmill import`` is, on one line of a terminal's standard error:
rewritten in place at most every :data:`EVERY` seconds and cleared at the end, so what the
import prints after it is as without it. Shown only where standard error is a terminal and
the output is not JSON."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from ..beads import ImportProgress

EVERY = 0.25
"""Seconds between two updates of the line."""


class ImportMeter:
    """A ``progress`` for :func:`taskmill.beads.import_beads` that draws the line on
    ``stream``; ``clock``: seconds, monotonic."""

    def __init__(self, stream: TextIO, name: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream
        self._name = name
        self._clock = clock
        self._last: float | None = None
        self._drawn = False

    def __call__(self, at: ImportProgress) -> None:
        now = self._clock()
        if not at.finishing and self._last is not None and now - self._last < EVERY:
            return
        self._last = now
        self._draw(line(self._name, at))

    def _draw(self, text: str) -> None:
        self._stream.write(f"\r\x1b[K{text}")
        self._stream.flush()
        self._drawn = True

    def clear(self) -> None:
        """Take the line away (the import's own output follows)."""
        if self._drawn:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._drawn = False


def line(name: str, at: ImportProgress) -> str:
    """``importing issues.jsonl: 250,000 records (37%)``; then ``..., building indexes``."""
    share = (f" ({min(100, at.bytes_read * 100 // at.size)}%)" if at.size else "")
    text = f"importing {name}: {at.records:,} records{share}"
    return f"{text}, building indexes" if at.finishing else text
