"""The everyday commands as whole processes, beside ``python -c pass``: ``ready``, ``show``,
``create``, ``update`` and ``close`` (each with ``--json``, ``ready`` and ``show`` also as
tables; held to 2x), ``list --status open`` and ``blocked`` (as JSON and as tables: they
print a share of the backlog) and ``--version``; and ``taskmill import`` of each size's backlog as
a Beads file into a fresh repository (time and peak memory), run N times each on a copy of a 10K- and a 100K-task ledger
(1M with ``--sizes 10000,100000,1000000``: built once through a real import). Prints each
median and its ratio to ``python -c pass`` (target: within 2x), and the same commands
through click (``main(fast=False)``), to show what the fast path saves. For ``list`` and
``blocked`` also one run's peak resident memory (at 1M held to 1 s and 150 MiB), and for
each import its CPU time (the steadier figure on a shared machine).

Also floors: the standard-library modules the ledger needs (sqlite3, json, pathlib,
dataclasses, datetime, tomllib) imported and nothing else, ``import taskmill.project``
(the ledger and its modules), the least a write needs (sqlite3, json, hashlib, datetime), and
for each size Python with sqlite3 running the ``ready`` query: what ``ready --json`` and
``show ID --json`` (the lean path, :mod:`taskmill.cli.lean`) cannot beat. ``ready --json``
is measured twice: as the runs before it left its answer kept (the ledger unchanged:
:mod:`taskmill.cli.lean_kept`), and with ``TASKMILL_KEPT=0``, as the first one after a write
makes it.

    python -m benchmarks.cli_startup [--runs 15] [--sizes 10000,100000] [--src PATH]

``--src PATH`` measures another checkout's code (its ``src`` first on PYTHONPATH), e.g. the
code before a change. Byte-code is written on the warm-up runs, as an installed package has it.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .ledger_data import Shape, ensure
from .mill_common import Report, header, main_of, median
from .support import DATA, home_env, load_average, taskmill_argv

TARGET_RATIO = 2.0
BIG_PEAK_MIB = 150  # list / blocked at 1M: resident memory at its peak
BIG_LIMIT_MS = 1000.0  # list / blocked at 1M: whole process
STDLIB_FLOOR = "import sqlite3, json, pathlib, dataclasses, datetime, tomllib"
WRITE_FLOOR = "import sqlite3, json, hashlib, datetime"
"""What a write needs at the least: the audit event's canonical JSON and its chain hash, and
the time (the ledger's write rules, readiness and containers, come on top)."""
C_FLOOR = "import _sqlite3, _json, _sha256, time"
"""The C modules under :data:`WRITE_FLOOR`'s, all the lean write path imports of them
(:mod:`taskmill.lean_rules`: ``sqlite3`` imports ``datetime``, ``hashlib`` loads OpenSSL)."""


def query_floor() -> str:
    """Python, sqlite3 and the ``ready`` query with every row fetched, as a program: no
    command that reads the ready tasks can start faster."""
    from taskmill.ledger.lean import READY_ORDER, READY_SQL

    return ("import sqlite3; sqlite3.connect('.taskmill/taskmill.db')"
            f".execute({READY_SQL + READY_ORDER!r}).fetchall()")


CLICK_PATH = "import sys; from taskmill.cli import main; main(sys.argv[1:], fast=False)"


def _time(argvs: Callable[[int], Sequence[str]], *, cwd: Path, env: dict[str, str],
          runs: int, warmup: int = 2, beside: Sequence[str] | None = None
          ) -> tuple[float, float, float]:
    """Median wall-clock milliseconds of ``runs`` processes (``argvs(i)``: run i's), their
    median CPU milliseconds (user + system), and, when ``beside`` is given, the median of
    that process run right after each one (so both see the same load on a busy machine)."""
    walls: list[float] = []
    cpus: list[float] = []
    others: list[float] = []

    def once(argv: Sequence[str]) -> tuple[float, float]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, check=False)
        took = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n"
                               f"{proc.stderr.decode(errors='replace')}")
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        return took * 1000, cpu * 1000

    for i in range(warmup + runs):
        wall, cpu = once(argvs(i))
        other = once(beside)[0] if beside is not None else 0.0
        if i >= warmup:
            walls.append(wall)
            cpus.append(cpu)
            others.append(other)
    return median(walls), median(cpus), median(others)


def _scratch_repo(source: Path, size: int) -> Path:
    """A private copy of a benchmark ledger's repository (the commands change it)."""
    target = DATA / "scratch" / f"startup-{size}"
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target, symlinks=True,
                    ignore=shutil.ignore_patterns("taskmill.db-wal", "taskmill.db-shm"))
    return target


def _open_ids(repo: Path, count: int) -> list[str]:
    from taskmill.ledger import Ledger

    ledger = Ledger.open(repo / ".taskmill" / "taskmill.db", prefix="bench")
    with ledger:
        ids = [t.id for t in ledger.ready(limit=count * 3) if not t.container]
    if len(ids) < count:
        raise RuntimeError(f"the ledger has only {len(ids)} ready tasks; {count} needed")
    return ids[:count]


def _loose_ids(repo: Path, count: int) -> list[str]:
    """``count`` new tasks without dependencies, parent or children (closing one changes
    nobody else's readiness: the lean write path closes it)."""
    from taskmill.ledger import Ledger

    ledger = Ledger.open(repo / ".taskmill" / "taskmill.db", prefix="bench")
    with ledger:
        return [ledger.create(f"loose {i}").id for i in range(count)]


def _commands(shown: str, updated: list[str], closing: list[str], loose: list[str]
              ) -> list[tuple[str, Callable[[int], list[str]]]]:
    """The measured commands: (what, run i's arguments)."""
    return [
        ("ready --json", lambda i: ["ready", "--json"]),
        ("ready -n 20", lambda i: ["ready", "-n", "20"]),
        ("show ID --json", lambda i: ["show", shown, "--json"]),
        ("show ID", lambda i: ["show", shown]),
        ("create --json", lambda i: ["create", f"startup bench {i}", "--json"]),
        ("update --json", lambda i: ["update", updated[i], "--notes", f"n{i}", "--json"]),
        ("close --json", lambda i: ["close", closing[i], "--json"]),
        ("close --json (no links)", lambda i: ["close", loose[i], "--json"]),
        ("list --status open --json", lambda i: ["list", "--status", "open", "--json"]),
        ("blocked --json", lambda i: ["blocked", "--json"]),
        ("list --status open", lambda i: ["list", "--status", "open"]),  # the text tables
        ("blocked", lambda i: ["blocked"]),
    ]


KEPT_LISTINGS = frozenset({"list --status open --json", "blocked --json",
                           "list --status open", "blocked"})
"""Kept between writes (:mod:`taskmill.cli.lean_kept`, :mod:`taskmill.cli.kept_output`; the
tables too): also measured made afresh, and their peak memory made afresh."""
# the commands held to the 2x target (list and blocked print the whole backlog's worth)
SMALL_COMMANDS = frozenset({"ready --json", "ready -n 20", "show ID --json", "show ID",
                            "create --json", "update --json", "close --json",
                            "close --json (no links)"})
KEPT = KEPT_LISTINGS | {"ready --json"}
"""Every answer kept between writes (`ready --json`'s measured made afresh on its own)."""
WRITE_FLOOR_CODE = ("import os, sys\n"
                    "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
                    "size, at = os.fstat(fd).st_size, 0\n"
                    "while at < size:\n"
                    "    at += os.sendfile(1, fd, at, size - at)")
"""A process that writes a file's bytes to its standard output and does nothing else."""


def _answer_file(script: list[str], repo: Path, env: dict[str, str], size: int) -> Path:
    """``ready --json``'s answer on the ledger in ``repo``, in a file."""
    path = DATA / "scratch" / f"ready-{size}.json"
    path.write_bytes(subprocess.run([*script, "ready", "--json"], cwd=repo, env=env,
                                    capture_output=True, check=True).stdout)
    return path


def _mb(path: Path) -> str:
    size = path.stat().st_size
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} KB"


_WRAP = ("import resource, subprocess, sys, time\n"
         "start = time.perf_counter()\n"
         "proc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
         "took = time.perf_counter() - start\n"
         "use = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
         "print(took, use.ru_maxrss, proc.returncode, use.ru_utime + use.ru_stime)")


def measure_peak(argv: list[str], cwd: Path, env: dict[str, str]
                 ) -> tuple[float, float, float]:
    """Seconds, peak MiB (resident) and CPU seconds of one run of ``argv``, through the
    wrapper."""
    proc = subprocess.run([sys.executable, "-c", _WRAP, *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, check=True)
    took, peak_kib, code, cpu = proc.stdout.split()
    if code != "0":
        raise RuntimeError(f"{' '.join(argv)} exited {code}: {proc.stderr}")
    return float(took), int(peak_kib) / 1024, float(cpu)


def measure_import(size: int, env: dict[str, str], script: list[str]
                   ) -> tuple[float, float, float]:
    """Seconds, peak MiB and CPU seconds of ``taskmill import backlog.jsonl`` into a fresh
    repository, as a whole process (its peak resident memory through a wrapper that waits
    for it)."""
    from taskmill.project import init

    from .ledger_data import jsonl
    from .mill_common import git

    source = jsonl(Shape(size))
    repo = DATA / "scratch" / f"import-{size}"
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main", env=env)
    init(repo, env, prefix="bench").close()
    took, peak, cpu = measure_peak([*script, "import", str(source)], repo, env)
    shutil.rmtree(repo, ignore_errors=True)
    return took, peak, cpu


def _size_label(size: int) -> str:
    return f"{size // 1_000_000}M" if size >= 1_000_000 else f"{size // 1000}K"


def run(args: argparse.Namespace) -> Report:
    report = header("cli_startup", "whole-process `taskmill` commands beside `python -c pass`")
    env = home_env()
    env["COLUMNS"] = "120"
    if args.src:
        env["PYTHONPATH"] = os.pathsep.join(
            [str(Path(args.src).resolve()), *filter(None, [env.get("PYTHONPATH")])])
    script = taskmill_argv()
    python = [sys.executable]
    runs = args.runs
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    DATA.mkdir(parents=True, exist_ok=True)

    base = [*python, "-c", "pass"]
    baseline, base_cpu, _ = _time(lambda i: base, cwd=DATA, env=env, runs=runs)
    report.add("`python -c pass`", baseline, "ms")
    report.add("`python -c pass`, CPU (user+sys)", base_cpu, "ms")

    def measure(label: str, argv: Callable[[int], Sequence[str]], cwd: Path,
                target: bool, limit_ms: float | None = None,
                extra_env: dict[str, str] | None = None) -> None:
        ms, cpu, beside = _time(argv, cwd=cwd, env={**env, **(extra_env or {})}, runs=runs,
                                beside=base)
        ratio = ms / beside
        if limit_ms is None:
            report.add(label, ms, "ms")
        else:
            report.add(label, ms, "ms", f"< {limit_ms:,.0f} ms", ms < limit_ms)
        report.add(f"{label}, CPU (user+sys)", cpu, "ms")
        report.add(f"{label} / `python -c pass` run beside it", ratio, "x",
                   f"< {TARGET_RATIO:.0f}x" if target else "",
                   ratio < TARGET_RATIO if target else None)
        report.add(f"{label}, CPU (user+sys) / `python -c pass`'s", cpu / base_cpu, "x")

    measure("floor: the stdlib modules the ledger needs",
            lambda i: [*python, "-c", STDLIB_FLOOR], DATA, False)
    report.note(f"the stdlib floor is `python -c '{STDLIB_FLOOR}'`")
    measure("floor: `import taskmill.project` (the ledger)",
            lambda i: [*python, "-c", "import taskmill.project"], DATA, False)
    measure("floor: the stdlib modules a write needs at the least",
            lambda i: [*python, "-c", WRITE_FLOOR], DATA, False)
    report.note(f"the write floor is `python -c '{WRITE_FLOOR}'`")
    measure("floor: the C modules a lean write imports",
            lambda i: [*python, "-c", C_FLOOR], DATA, False)
    report.note(f"the C-module floor is `python -c '{C_FLOOR}'`")
    measure("`taskmill --version`", lambda i: [*script, "--version"], DATA, True)

    floor = query_floor()
    for size in sizes:
        label = _size_label(size)
        name = "big" if size == 1_000_000 else f"n{size}"
        built = ensure(name, Shape(size))
        repo = _scratch_repo(built.repo, size)
        ids = _open_ids(repo, 3 * (runs + 2) + 1)
        shown, updated, closing = ids[0], ids[1:runs + 3], ids[runs + 3:]
        commands = _commands(shown, updated, closing, _loose_ids(repo, runs + 2))
        measure(f"{label}: floor: python + sqlite3 + the `ready` query",
                lambda i: [*python, "-c", floor], repo, False)
        answer = _answer_file(script, repo, env, size)
        measure(f"{label}: floor: python writing `ready --json`'s {_mb(answer)} (sendfile)",
                lambda i, answer=answer: [*python, "-c", WRITE_FLOOR_CODE,  # type: ignore[misc]
                                          str(answer)], repo, False)
        # at 1M `ready --json` is a listing of 25,716 tasks (21 MB): held to the listings'
        # targets (made afresh, SQLite reading them is itself ~11x `python -c pass`: the
        # query's floor above); its ratio is reported
        small = SMALL_COMMANDS if size < 1_000_000 else SMALL_COMMANDS - {"ready --json"}
        # the answer kept from the run before (the ledger unchanged in between), and made
        # afresh as the first `ready --json` after a write makes it
        measure(f"{label}: `taskmill ready --json`, nothing kept (the first after a write)",
                lambda i: [*script, "ready", "--json"], repo, "ready --json" in small,
                None if "ready --json" in small else BIG_LIMIT_MS,
                extra_env={"TASKMILL_KEPT": "0"})
        for what, argv in commands:
            limit = BIG_LIMIT_MS if size >= 1_000_000 and what not in small else None
            measure(f"{label}: `taskmill {what}`",
                    lambda i, argv=argv: [*script, *argv(i)], repo,  # type: ignore[misc]
                    what in small, limit)
            if what in KEPT_LISTINGS:  # as the first one after a write makes it
                measure(f"{label}: `taskmill {what}`, nothing kept (the first after a write)",
                        lambda i, argv=argv: [*script, *argv(i)], repo,  # type: ignore[misc]
                        False, limit, extra_env={"TASKMILL_KEPT": "0"})
        for what, argv in commands:
            if what in small:
                continue
            # made afresh: a kept answer is only copied out
            afresh = {**env, "TASKMILL_KEPT": "0"} if what in KEPT else env
            _took, peak, _cpu = measure_peak([*script, *argv(0)], repo, afresh)
            big = size >= 1_000_000
            report.add(f"{label}: `taskmill {what}`, peak memory"
                       + (" (made afresh)" if what in KEPT else ""), peak, "MiB",
                       f"< {BIG_PEAK_MIB} MiB" if big else "", peak < BIG_PEAK_MIB if big else None)
        if args.imports:
            took, peak, cpu = measure_import(size, env, script)
            report.add(f"{label}: `taskmill import` of a {label}-record Beads file", took, "s",
                       "< 60 s" if size >= 1_000_000 else "",
                       took < 60 if size >= 1_000_000 else None)
            report.add(f"{label}: `taskmill import`, CPU (user+sys)", cpu, "s")
            report.add(f"{label}: `taskmill import`, peak memory", peak, "MiB",
                       "< 500 MiB", peak < 500)
        if args.click:
            for what, argv in commands[:3]:  # read-only: the click path on the same state
                measure(f"{label}: `taskmill {what}` through click",
                        lambda i, argv=argv: [*python, "-c", CLICK_PATH, *argv(i)],  # type: ignore[misc]
                        repo, False)
    report.note(f"load average while measuring: {load_average()}")
    return report


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=15, help="timed runs of each (after 2 warm-ups)")
    p.add_argument("--sizes", default="10000,100000", help="ledger sizes, comma-separated")
    p.add_argument("--src", help="measure the code of this src directory instead")
    p.add_argument("--no-click", dest="click", action="store_false",
                   help="leave out the click-path figures")
    p.add_argument("--no-import", dest="imports", action="store_false",
                   help="leave out `taskmill import` of each size's backlog (time, peak memory)")
    return p


if __name__ == "__main__":
    main_of(run, parser())
