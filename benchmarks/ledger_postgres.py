"""The PostgreSQL ledger beside the SQLite one, on a throw-away local server
(:mod:`taskmill.testing.postgres`; durability off, loopback):

- ``create``, ``ready(limit=100)`` and ``close``, in-process, median, on both stores (no
  target: a round trip costs what the network costs; an agent turn takes minutes);
- claims per second with 1 and 4 processes claiming and closing one shared backlog (each
  task claimed exactly once: checked), and ``verify`` after.

Skipped (no figures) when no PostgreSQL server programs or psycopg are here.

    python -m benchmarks.ledger_postgres [--tasks 300] [--backlog 400]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from taskmill.clock import SystemClock
from taskmill.ledger import Ledger

from .mill_common import Report, header, main_of

CLAIMER = textwrap.dedent("""
    import json, sys
    from taskmill.clock import SystemClock
    from taskmill.ledger import Ledger
    from taskmill.ledger.postgres import PostgresStore
    url, schema, name = sys.argv[1:4]
    ledger = Ledger(PostgresStore.open(url, schema=schema), prefix="tm", clock=SystemClock(),
                    actor=name)
    sys.stdout.write("ready\\n"); sys.stdout.flush(); sys.stdin.readline()
    got = []
    while (task := ledger.claim_next("mill:" + name)) is not None:
        ledger.close(task.id, "done")
        got.append(task.id)
    ledger.close_db()
    print(json.dumps(got))
""")


def _ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 3)


def _ops(ledger: Ledger, n: int) -> dict[str, float]:
    created: list[float] = []
    ready: list[float] = []
    closed: list[float] = []
    ids = []
    for i in range(n):
        start = time.perf_counter()
        ids.append(ledger.create(f"task {i}").id)
        created.append(time.perf_counter() - start)
    for _ in range(n):
        start = time.perf_counter()
        ledger.ready(limit=100)
        ready.append(time.perf_counter() - start)
    for tid in ids:
        start = time.perf_counter()
        ledger.close(tid, "done")
        closed.append(time.perf_counter() - start)
    return {"create": _ms(created), "ready(limit=100)": _ms(ready), "close": _ms(closed)}


def _claims_per_second(open_store: Callable[[str], Ledger], url: str, schema: str,
                       processes: int, backlog: int) -> float:
    with open_store(schema) as ledger:
        for i in range(backlog):
            ledger.create(f"work {i}")
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, url, schema, f"c{i}"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for i in range(processes)]
    for proc in procs:
        assert proc.stdout is not None
        proc.stdout.readline()  # connected
    start = time.perf_counter()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outs = [proc.communicate(timeout=600)[0] for proc in procs]
    seconds = time.perf_counter() - start
    import json

    claimed = Counter(t for out in outs for t in json.loads(out.splitlines()[-1]))
    if len(claimed) != backlog or max(claimed.values()) != 1:
        raise RuntimeError("a task was claimed twice, or not at all")
    with open_store(schema) as ledger:
        if not ledger.verify().ok:
            raise RuntimeError("the audit chain does not verify")
    return backlog / seconds


def run(args: argparse.Namespace) -> Report:
    report = header("ledger_postgres", "the PostgreSQL store beside SQLite (local server)")
    try:
        from taskmill.ledger.postgres import PostgresStore
        from taskmill.testing.postgres import PostgresServer, PostgresUnavailable
    except ImportError:
        report.note("psycopg is not installed: skipped (pip install 'taskmill[postgres]')")
        return report
    try:
        server = PostgresServer.start()
    except PostgresUnavailable as exc:
        report.note(f"skipped: {exc}")
        return report
    with server, tempfile.TemporaryDirectory() as tmp:
        url = server.create_database("bench")

        def on_postgres(schema: str) -> Ledger:
            return Ledger(PostgresStore.open(url, schema=schema), prefix="tm",
                          clock=SystemClock(), actor="bench")

        with Ledger.open(Path(tmp) / "bench.db", prefix="tm", clock=SystemClock(),
                         actor="bench") as ledger:
            local = _ops(ledger, args.tasks)
        with on_postgres("ops") as ledger:
            remote = _ops(ledger, args.tasks)
        for name in local:
            report.add(f"{name}, SQLite", local[name], "ms")
            report.add(f"{name}, PostgreSQL", remote[name], "ms")
        for n in (1, 4):
            rate = _claims_per_second(on_postgres, url, f"claims{n}", n, args.backlog)
            report.add(f"claim + close, {n} process{'es' if n > 1 else ''}, PostgreSQL",
                       round(rate, 1), "tasks/s")
        report.note("writers are serialised by the writer lock (one chain): more processes "
                    "add no write throughput, only safety; an agent turn takes minutes")
    return report


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=300, help="tasks created, read and closed")
    p.add_argument("--backlog", type=int, default=400, help="tasks the claimers share")
    return p


if __name__ == "__main__":
    main_of(run, parser())
