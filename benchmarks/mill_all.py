"""Run every mill benchmark, one after the other, and print a summary of their verdicts.

    python -m benchmarks.mill_all [--quick] [--only dispatch_latency,workspace,...]

``--quick`` runs smaller versions (fewer tasks, shorter sleeps) for a smoke test; the targets
are only meaningful for the full run. Exits 1 when a benchmark misses its target or fails.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from types import ModuleType

from . import (
    mill_dispatch_latency,
    mill_memory,
    mill_pipeline,
    mill_scheduling,
    mill_workspace,
)
from .mill_common import Report

BENCHMARKS: dict[str, ModuleType] = {
    "dispatch_latency": mill_dispatch_latency,
    "workspace": mill_workspace,
    "pipeline": mill_pipeline,
    "scheduling": mill_scheduling,
    "memory": mill_memory,
}

QUICK: dict[str, list[str]] = {
    "dispatch_latency": ["--tasks", "8", "--runs", "1"],
    "workspace": ["--rounds", "5", "--fresh", "1"],
    "pipeline": ["--tasks", "100"],
    "scheduling": ["--dags", "chains", "--tasks", "40", "--min", "0.05", "--max", "0.3"],
    "memory": ["--agents", "10", "--sleep", "1"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small versions, for a smoke test")
    parser.add_argument("--only", default="", help="comma-separated names: "
                        + ", ".join(BENCHMARKS))
    parser.add_argument("--keep", action="store_true", help="keep the temporary repositories")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    results: list[tuple[str, Report | None, float]] = []
    for name in names:
        module = BENCHMARKS[name]
        extra = (QUICK[name] if args.quick else []) + (["--keep"] if args.keep else [])
        start = time.monotonic()
        try:
            report = module.run(module.parser().parse_args(extra))
            report.verdict()
        except Exception:
            traceback.print_exc()
            report = None
        results.append((name, report, time.monotonic() - start))
    print("\n== mill benchmarks: summary ==")
    failed = False
    for name, report, seconds in results:
        if report is None:
            failed = True
            print(f"  {name:<18} ERROR ({seconds:.0f} s)")
            continue
        failed = failed or not report.passed
        print(f"  {name:<18} {'PASS' if report.passed else 'FAIL'} ({seconds:.0f} s)")
        for fig in report.figures:
            if fig.ok is not None:
                print("  " + fig.line())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
