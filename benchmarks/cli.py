"""Start-up of the ``taskmill`` command: ``taskmill --help`` as a whole process, median of
10 runs (target < 150 ms).

    python -m benchmarks.cli [--runs 10]
"""

from __future__ import annotations

import argparse

from .mill_common import Report, header, main_of
from .support import DATA, home_env, load_average, ms_median, taskmill_argv, time_process

HELP_TARGET_MS = 150.0


def run(args: argparse.Namespace) -> Report:
    report = header("cli", "whole-process start-up of the installed `taskmill` script")
    DATA.mkdir(parents=True, exist_ok=True)

    def check(out: str) -> None:
        if "Usage:" not in out:
            raise RuntimeError("taskmill --help printed no usage")

    times = time_process([*taskmill_argv(), "--help"], cwd=DATA, env=home_env(),
                         runs=args.runs, check=check)
    help_ms = ms_median(times.wall)
    report.add("`taskmill --help`", help_ms, "ms", f"< {HELP_TARGET_MS:.0f} ms",
               help_ms < HELP_TARGET_MS)
    report.add("`taskmill --help`, CPU (user+sys)", ms_median(times.cpu), "ms")
    report.note(f"load average while measuring: {load_average()}")
    return report


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=10, help="timed runs (after 2 warm-ups)")
    return p


if __name__ == "__main__":
    main_of(run, parser())
