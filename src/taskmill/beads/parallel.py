"""A big Beads file parsed on every core: the lines read (and hashed) here, parsed and
checked by forked workers a batch at a time, and the results taken back in the file's order.

Parsing is about half of an import's CPU (JSON, the record's checks, its round-trip check
and its audit digest); the other half, the writes, stays in the importing process. Into an
empty ledger a worker also makes its batch's rows ready for the store (the statements'
values: :meth:`~taskmill.ledger.store.LedgerStore.import_packer`), and the importing process
only passes them on: it, not the workers, was what a big import waited on. A batch's
results come back in order, so what the import sees, and the first bad line it reports,
are those of :func:`~taskmill.beads.parse.iter_beads`: a worker stops at its batch's first
bad line and sends the records before it with the error.
"""

from __future__ import annotations

import contextlib
import gc
import marshal
import os
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from ..audit_import import import_digest
from ..errors import InvalidInput, TaskmillError
from ..ledger.store import ImportItem
from .parse import Parsed, Seen, Source, iter_beads, parse_line, text_of
from .record import MISSING

T = TypeVar("T")
R = TypeVar("R")

PARALLEL_MIN_BYTES = 16 * 2**20
"""A file this big or bigger is parsed by workers (a smaller one is parsed sooner than the
workers start: 16 MiB is about 25,000 records)."""
BATCH_BYTES = 1 << 20
"""About how much of the file a worker parses at a time (~1,400 usual records): whole
lines, sent as they were read (one string of bytes, not a list of lines: the importing
process, which also writes every row, does not split or number the lines)."""
MAX_WORKERS = 3
"""Workers at most: the importing process writes what they parse, and more of them would
wait on it."""

WORKER_NICENESS = 5
"""How much lower the workers' priority is than the importing process's: the writes it does
are what the import waits on, so where the cores are few it is not kept waiting by them."""


def parsed_records(source: Source, *, now: str, keep_records: bool,
                   workers: int | None = None, seen: Seen | None = None,
                   pack: Callable[[Sequence[ImportItem]], Any] | None = None
                   ) -> Iterator[Parsed | Packed]:
    """What :func:`~taskmill.beads.parse.iter_beads` yields, each with its digest made
    (``keep_records``: each with the record as read too; an import into an empty ledger has
    no use for it). Parsed by ``workers`` processes (None: as many as :func:`workers_for`
    says; 0: none) for a file on a system that forks. ``seen``: takes each record's id (see
    :func:`~taskmill.beads.parse.iter_beads`). ``pack``: the store's
    :meth:`~taskmill.ledger.store.LedgerStore.import_packer`, for an import into an empty
    ledger (the workers' records come as :class:`Packed` batches where they can)."""
    if seen is None:
        seen = Seen(source.name)
    if workers is None:
        workers = workers_for(source)
    if not workers or source.path is None or not hasattr(os, "fork"):
        yield from iter_beads(source, now=now, seen=seen)
        return
    import multiprocessing
    from concurrent.futures import Future, ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    name = source.name
    # (an executor, not a multiprocessing Pool: a worker killed meanwhile, by the system
    # out of memory say, fails what it was given instead of leaving it waited for forever)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                               initializer=_ignore_interrupts)
    window: deque[Future[bytes]] = deque()
    try:
        for first, chunk in source.raw_chunks(BATCH_BYTES):
            window.append(pool.submit(_parse_batch, name, first, chunk, now, keep_records,
                                      pack))
            if len(window) > 2 * workers:  # a few batches ahead: memory stays flat
                yield from _taken(window.popleft().result(), seen)
        while window:
            yield from _taken(window.popleft().result(), seen)
    except BrokenProcessPool:
        raise TaskmillError(f"{name}: a process parsing the file ended before it was done"
                            " (killed, or out of memory?)",
                            hint="nothing was imported; import again (with more memory"
                                 " free)") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def workers_for(source: Source, cores: int | None = None) -> int:
    """How many workers parse ``source``: none for lines given in memory, a small file, a
    single core, or a process with threads (a fork copies none of them)."""
    if source.path is None or not hasattr(os, "fork") or threading.active_count() > 1:
        return 0
    try:
        if source.path.stat().st_size < PARALLEL_MIN_BYTES:
            return 0
    except OSError:
        return 0  # (read as usual: the error said there)
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else os.cpu_count() or 1
    return 0 if cores < 2 else min(cores, MAX_WORKERS)


@dataclass(frozen=True)
class Packed:
    """A batch of new tasks' rows made ready for the store by a worker
    (:meth:`~taskmill.ledger.store.LedgerStore.import_packer`), their ids taken already."""

    count: int
    digests: list[bytes]
    """Each record's digest, in order."""
    rows: Any
    """For :meth:`~taskmill.ledger.store.LedgerStore.import_packed`."""


def _taken(outcome: bytes, seen: Seen) -> Iterator[Parsed | Packed]:
    items, packed, error = marshal.loads(outcome)
    if packed is not None:
        for line, tid, deps in items:
            seen.take(tid, line, deps)
        if items:
            yield Packed(len(items), *packed)
    else:
        for line, row, labels, deps, comments, comment_ids, digest, record in items:
            item = Parsed(line, record, row, labels, deps, comments,
                          [c[0] if c else MISSING for c in comment_ids] if comment_ids
                          else [], digest)
            seen.add(item)
            yield item
    if error is not None:
        raise InvalidInput(error[0], hint=error[1])


def _parse_batch(name: str, first: int, chunk: bytes, now: str, keep_records: bool,
                 pack: Callable[[Sequence[ImportItem]], Any] | None = None) -> bytes:
    """In a worker: the lines of ``chunk`` (the first one line ``first`` of the file) parsed,
    each with its digest; the records, and the first bad line's error (message, hint) if
    there was one, as :mod:`marshal` bytes (made and read back several times faster than
    pickled objects). ``pack``: the store's :meth:`~taskmill.ledger.store.LedgerStore.
    import_packer` (an import into an empty ledger): the rows made ready for it here, and of
    each record only its line, id and dependencies (for :class:`~.parse.Seen`), unless a
    record has comments (their ids are chosen in the importing process)."""
    parsed: list[tuple[int, Parsed, bytes]] = []
    error = None
    parts = chunk.split(b"\n")
    last = parts.pop()  # (empty: the chunk ends with a line's end)
    try:
        for number, raw in enumerate([*(p + b"\n" for p in parts), *([last] if last else [])],
                                     start=first):
            item = parse_line(name, number, text_of(name, number, raw), now)
            if item is None:
                continue
            parsed.append((number, item, import_digest(
                item.row, item.labels, [d[:2] for d in item.deps],
                [c[1:3] for c in item.comments])))
    except InvalidInput as exc:
        error = (exc.message, exc.hint)
    if pack is not None and not any(item.comments for _, item, _ in parsed):
        return marshal.dumps((
            [(number, item.row[0], [d[:2] for d in item.deps] if item.deps else ())
             for number, item, _ in parsed],
            ([digest for _, _, digest in parsed],
             pack([ImportItem(item.row, item.labels, item.deps) for _, item, _ in parsed])),
            error))
    return marshal.dumps((
        [(number, item.row, item.labels, item.deps, item.comments,
          [() if c is MISSING else (c,) for c in item.comment_ids], digest,
          item.record if keep_records else None) for number, item, digest in parsed],
        None, error))


def elsewhere(fn: Callable[[T], R], arg: T) -> Callable[[], R]:
    """``fn(arg)`` computed by a forked process meanwhile (``arg`` is its copy of this
    process's memory: nothing is sent), where the system forks and this process has no
    other thread; else here, at once. Returns what waits for and gives the result (raises
    :class:`TaskmillError` if that process ended without one)."""
    import multiprocessing

    if not hasattr(os, "fork") or threading.active_count() > 1:
        value = fn(arg)
        return lambda: value
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_send_result, args=(send, fn, arg), daemon=True)
    try:
        process.start()
    except OSError:  # (no memory or process left for it)
        receive.close()
        send.close()
        value = fn(arg)
        return lambda: value
    send.close()

    def result() -> R:
        try:
            return cast(R, receive.recv())
        except EOFError:
            raise TaskmillError("a process computing the import's digest ended before it"
                                " was done (killed, or out of memory?)",
                                hint="nothing was imported; import again") from None
        finally:
            receive.close()
            process.join()

    return result


def _send_result(send: Any, fn: Callable[[Any], Any], arg: Any) -> None:
    """In a forked process: ``fn(arg)`` sent back, Ctrl-C left to the importing process."""
    _ignore_interrupts()
    send.send(fn(arg))
    send.close()


def _ignore_interrupts() -> None:
    """In a worker, first: Ctrl-C is the importing process's to handle (it rolls the import back
    and ends the workers); a worker printing its own traceback would only be noise. Python's
    cycle collector off: parsing makes no cycles (a bad line ends the worker's batch), and
    the collector scanning the batch in hand cost the workers ~5% of their CPU."""
    gc.disable()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)

