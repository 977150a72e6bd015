"""Run every benchmark and print a table of figures: ``python -m benchmarks``.

    python -m benchmarks                      # all of them
    python -m benchmarks --only cli,ledger    # some of them
    python -m benchmarks --markdown docs/benchmarks.md   # also write the table there

A benchmark module is any ``benchmarks/<name>.py`` with ``parser()`` and
``run(args) -> Report``; each runs with its default arguments. Exit status 1 when a
figure misses its target.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import platform
import sqlite3
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from .mill_common import Report

# the ledger's own benchmarks first, then whatever else lives here (the mill's)
FIRST = ("cli", "cli_startup", "ledger", "beads_import")
# helpers, and runners / profilers that are not benchmarks with figures of their own
NOT_BENCHMARKS = {"support", "ledger_data", "mill_common", "mill_all", "mill_profile"}


# In the --markdown file, everything from this line on is kept when the table is rewritten.
KEEP_MARKER = "<!-- written by hand: kept when python -m benchmarks --markdown rewrites the table -->"


def discover() -> list[str]:
    here = Path(__file__).parent
    names = [m.name for m in pkgutil.iter_modules([str(here)])
             if not m.name.startswith("_") and m.name not in NOT_BENCHMARKS]
    return [n for n in FIRST if n in names] + sorted(n for n in names if n not in FIRST)


def load(name: str) -> ModuleType | None:
    module = importlib.import_module(f"{__package__}.{name}")
    if callable(getattr(module, "run", None)) and callable(getattr(module, "parser", None)):
        return module
    return None


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{cores} cores ({cpu}), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}")


def _value(value: float) -> str:
    return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}"


def summary(reports: list[Report], failures: dict[str, str]) -> str:
    rows = [("benchmark", "what", "figure", "target", "result")]
    for report in reports:
        for fig in report.figures:
            verdict = "" if fig.ok is None else ("PASS" if fig.ok else "FAIL")
            rows.append((report.title, fig.name, f"{_value(fig.value)} {fig.unit}",
                         fig.target or "-", verdict))
    for name, error in failures.items():
        rows.append((name, f"did not run: {error}", "-", "-", "ERROR"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(reports: list[Report], failures: dict[str, str], seconds: float) -> str:
    where = machine()
    cores = where.split(" ", 1)[0]
    took = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
    out = [
        "# Benchmarks",
        "",
        "Measured with `make bench` (`.venv/bin/python -m benchmarks`); each figure is a median"
        " unless its name says otherwise. Every benchmark module also runs alone, e.g."
        " `python -m benchmarks.ledger`; see the docstring of each module for what it does.",
        "",
        f"Machine: {where}. Measured {datetime.now(UTC):%Y-%m-%d}; the run took {took}.",
        "",
        "Whole-process figures (`taskmill --help`, `taskmill ready`) are wall-clock times and"
        " depend on what else the machine is doing; each comes with the CPU time the process"
        " used and the load average at the time (2 cores: a load above 2 means processes wait"
        " for a core). The big ledger is built once with bulk SQL and cached under"
        " `benchmarks/.data/` (`python -m benchmarks.ledger_data` builds it alone, about"
        " 75 s and 640 MB).",
        "",
        "| benchmark | what | figure | target | result | machine |",
        "|---|---|---|---|---|---|",
    ]
    for report in reports:
        for fig in report.figures:
            verdict = "" if fig.ok is None else ("PASS" if fig.ok else "**FAIL**")
            name = fig.name.replace("|", "\\|")
            out.append(f"| {report.title} | {name} | {_value(fig.value)} {fig.unit} |"
                       f" {fig.target or '-'} | {verdict} | {cores} cores |")
    for name, error in failures.items():
        out.append(f"| {name} | did not run: {error} | - | - | ERROR | {cores} cores |")
    notes = [(r.title, n) for r in reports for n in r.notes]
    if notes:
        out += ["", "## Notes", ""]
        out += [f"- {title}: {text}" for title, text in notes]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated benchmark names")
    parser.add_argument("--skip", help="comma-separated benchmark names to leave out")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    names = discover()
    if args.list:
        print("\n".join(names))
        return 0
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in names]
        if unknown:
            parser.error(f"unknown benchmark(s): {', '.join(unknown)}; have {', '.join(names)}")
        names = wanted
    if args.skip:
        names = [n for n in names if n not in {s.strip() for s in args.skip.split(",")}]
    print(f"machine: {machine()}")
    started = time.monotonic()
    reports: list[Report] = []
    failures: dict[str, str] = {}
    for name in names:
        try:
            module = load(name)
            if module is None:
                continue
            report = module.run(module.parser().parse_args([]))
            report.verdict()
            reports.append(report)
        except Exception as exc:  # one broken benchmark does not hide the others' figures
            traceback.print_exc()
            failures[name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    elapsed = time.monotonic() - started
    print("\n" + summary(reports, failures))
    if args.markdown:
        text = markdown(reports, failures, elapsed)
        if args.markdown.is_file():  # hand-written analysis below the marker stays
            old = args.markdown.read_text(encoding="utf-8")
            if KEEP_MARKER in old:
                text += "\n" + old[old.index(KEEP_MARKER):]
        args.markdown.write_text(text, encoding="utf-8")
        print(f"\nwrote {args.markdown}")
    ok = not failures and all(r.passed for r in reports)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
