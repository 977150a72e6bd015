"""Importing a real Beads export: ``/work/shared/data/beads-issues.jsonl`` (5,722 records)
into a fresh, file-backed ledger with ``taskmill.beads.import_beads``; median of 3 runs
(target < 3 s). Skipped, with a message, when the file or ``taskmill.beads`` is missing.

    python -m benchmarks.beads_import [--runs 3] [--file PATH]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from taskmill.clock import SystemClock
from taskmill.ledger import Ledger

from .mill_common import ROOT, Report, header, main_of, median

TARGET_S = 3.0
DEFAULT_FILE = ROOT.parent / "shared" / "data" / "beads-issues.jsonl"


def run(args: argparse.Namespace) -> Report:
    source = Path(args.file)
    report = header("beads_import", f"import_beads({source.name}) into a fresh ledger file")
    try:
        from taskmill.beads import import_beads
    except ImportError as exc:
        report.note(f"skipped: taskmill.beads is not available ({exc})")
        return report
    if not source.is_file():
        report.note(f"skipped: {source} does not exist")
        return report
    lines = sum(1 for line in source.open(encoding="utf-8") if line.strip())
    times = []
    created = 0
    tmp = Path(tempfile.mkdtemp(prefix="taskmill-bench-beads-"))
    try:
        for i in range(args.runs):
            ledger = Ledger.open(tmp / f"run{i}.db", prefix="bd", clock=SystemClock(),
                                 actor="bench")
            try:
                start = time.perf_counter()
                result = import_beads(ledger, source)
                times.append(time.perf_counter() - start)
                created = result.created
                if not ledger.verify().ok:
                    raise RuntimeError("the audit chain does not verify after the import")
            finally:
                ledger.close_db()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report.note(f"{lines:,} records in the file, {created:,} tasks created")
    value = median(times)
    report.add(f"import {source.name}", value, "s", f"< {TARGET_S:.0f} s", value < TARGET_S)
    return report


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--file", default=str(DEFAULT_FILE))
    return p


if __name__ == "__main__":
    main_of(run, parser())
