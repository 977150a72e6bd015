"""Rows through a temporary file or a pipe in framed batches (:mod:`taskmill.ledger.spill`)."""

from __future__ import annotations

import io
import os
import tempfile
import threading

from taskmill.ledger.spill import read_batches, read_rows, read_stream, write_batch


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


def test_batches_through_a_pipe_come_as_written_and_one_cut_short_ends_them() -> None:
    batches = [[("t-1", "ünï")], [(str(i), "x" * i) for i in range(2000)], []]
    ready, told = os.pipe()
    with os.fdopen(ready, "rb") as pipe:
        with os.fdopen(told, "wb") as out:
            def write() -> None:
                for batch in batches:
                    write_batch(out, batch)
                    out.flush()

            writer = threading.Thread(target=write)
            writer.start()  # (a batch bigger than the pipe holds: read as it comes)
            got = read_stream(pipe)
            assert [next(got) for _ in batches] == batches
            writer.join()
            whole = io.BytesIO()
            write_batch(whole, ["cut short"])
            out.write(whole.getvalue()[:-3])  # (its writer died while writing it)
        assert list(got) == []
