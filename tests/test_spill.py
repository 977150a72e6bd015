"""Rows through a temporary file in framed batches (:mod:`taskmill.ledger.spill`)."""

from __future__ import annotations

import tempfile

from taskmill.ledger.spill import read_batches, read_rows, write_batch


def test_batches_come_back_as_written_and_in_order() -> None:
    batches = [[("t-1", "open", "ünï \x01{}\x01")], [], [(str(i), None, (1, "x" * i))
                                                         for i in range(300)], ("a", "b")]
    with tempfile.TemporaryFile() as out:
        for batch in batches:
            write_batch(out, batch)
        assert list(read_batches(out)) == batches
        assert list(read_rows(out)) == [row for batch in batches for row in batch]


def test_nothing_written_is_no_batch() -> None:
    with tempfile.TemporaryFile() as out:
        assert list(read_batches(out)) == []
