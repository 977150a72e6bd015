"""The audit trail: ``verify`` on a big log, and what an anchor costs.

- ``Ledger.verify`` with anchors (the chain, every task replayed from its events against
  the tables, the chain against the anchors and the newest anchor's signature) on a ledger of
  ~100,000 events (target < 5 s);
- one signed anchor (``anchor_ledger``: re-hash the events since the last anchor, a signed
  ``commit-tree``, a compare-and-swap ``update-ref``), median: what the mill's background
  thread spends per landing;
- what a landing itself waits for: asking the background thread for an anchor
  (``Anchorer.request``), median (target < 5 ms).

    python -m benchmarks.audit_verify [--events 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from taskmill.audit_anchor import AnchorStore, anchor_ledger
from taskmill.clock import SystemClock, iso
from taskmill.db import connect
from taskmill.ledger import Ledger
from taskmill.mill.anchoring import Anchorer
from taskmill.mill.events import EventBus
from taskmill.mill.git import Git

from .mill_common import Report, header, main_of, median
from .support import home_env

VERIFY_TARGET_S = 5.0
LANDING_TARGET_MS = 5.0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=100_000, help="events in the big ledger")
    p.add_argument("--runs", type=int, default=3, help="timed verify runs")
    p.add_argument("--anchors", type=int, default=20, help="timed anchors")
    return p


def _fill(ledger: Ledger, events: int) -> None:
    """~``events`` events: per task a create, an update, a label, a comment and a close."""
    per_task = 5
    with ledger.transaction():
        for i in range(events // per_task):
            task = ledger.create(f"task {i}", description="x" * 40, checks=["true"])
            ledger.update(task.id, {"priority": 1, "notes": "n"})
            ledger.add_labels(task.id, ["bench"])
            ledger.comment(task.id, "a comment")
            ledger.close(task.id, "landed 0123456789")


def run(args: argparse.Namespace) -> Report:
    report = header("audit_verify", f"taskmill verify on {args.events:,} events; anchors")
    tmp = Path(tempfile.mkdtemp(prefix="taskmill-bench-audit-"))
    try:
        env = {**home_env(), "XDG_CONFIG_HOME": str(tmp / "config")}
        repo = tmp / "repo"
        subprocess.run(["git", "init", "-q", str(repo)], check=True, env=env)
        db = tmp / "ledger.db"
        ledger = Ledger.open(db, prefix="tm", clock=SystemClock(), actor="bench")
        start = time.perf_counter()
        _fill(ledger, args.events)
        count = ledger.store.conn.execute("SELECT count(*) FROM events").fetchone()[0]
        report.note(f"built {count:,} events in {time.perf_counter() - start:.1f} s")
        store = AnchorStore(Git(repo, env), tmp / "config")
        anchor_ledger(ledger.store, store, iso(SystemClock().now()))
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            result = ledger.verify(store)
            times.append(time.perf_counter() - start)
            if not result.ok or result.warnings:
                raise RuntimeError(f"verify failed: {result.problems or result.warnings}")
        value = median(times)
        report.add(f"verify (chain + replay + anchors), {count:,} events", value, "s",
                   f"< {VERIFY_TARGET_S:.0f} s", value < VERIFY_TARGET_S)

        anchor_times = []
        for i in range(args.anchors):
            ledger.comment(ledger.list_tasks(limit=1)[0].id, f"landing {i}")
            start = time.perf_counter()
            anchor_ledger(ledger.store, store, iso(SystemClock().now()))
            anchor_times.append(time.perf_counter() - start)
        report.add("one signed anchor (background, per landing)", median(anchor_times) * 1000,
                   "ms")
        ledger.close_db()

        bus = EventBus(SystemClock())
        anchorer = Anchorer(store, db, clock=SystemClock(), bus=bus)
        waits = []
        conn = connect(db)
        for _ in range(args.anchors):
            start = time.perf_counter()
            anchorer.request()
            waits.append(time.perf_counter() - start)
            time.sleep(0.02)
        anchorer.close()
        conn.close()
        wait_ms = median(waits) * 1000
        report.add("what a landing waits for (Anchorer.request)", wait_ms, "ms",
                   f"< {LANDING_TARGET_MS:.0f} ms", wait_ms < LANDING_TARGET_MS)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


if __name__ == "__main__":
    main_of(run, parser())
