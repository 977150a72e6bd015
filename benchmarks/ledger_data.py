"""Benchmark ledgers: a git repository with ``taskmill init`` done and a database filled
with bulk SQL, cached under ``benchmarks/.data/ledger-<name>/``.

The shape is meant to look like a long-lived project: every 20th task is an epic; about half
the other tasks are children of a recent epic (parent-child); each task waits on about one
earlier task nearby (blocks). Every edge points from a task to an older one, so the graph
is acyclic. The oldest 90% are almost all closed; the newest 10% are mostly open, with some
in progress, blocked and deferred. Dependencies are ~1.5 per task.

Rows go in with ``executemany`` inside one transaction, then
``taskmill.readiness.recompute_all`` sets ``open_blockers`` and ``gated`` as incremental
maintenance would have. No audit events are written (the audit head is kept in ``meta``,
so the length of the log does not enter ``ready``, ``create`` or ``close``).

    python -m benchmarks.ledger_data [--tasks 1000000] [--name big] [--rebuild]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from taskmill import readiness
from taskmill.clock import SystemClock
from taskmill.db import write_tx
from taskmill.ids import hash_length
from taskmill.ledger import Ledger

from .mill_common import git
from .support import DATA, home_env

BUILD_VERSION = 1
PREFIX = "bench"
MARKER = "bench-build.json"
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_MULTIPLIER = 1_000_003  # coprime to 36: i -> i * M + C (mod 36^L) is a bijection


@dataclass(frozen=True)
class Shape:
    tasks: int
    seed: int = 20260101
    epic_every: int = 20
    parent_share: float = 0.5
    window: int = 500
    recent_share: float = 0.10

    def key(self) -> dict[str, Any]:
        return {"version": BUILD_VERSION, **asdict(self)}


@dataclass
class BuiltLedger:
    name: str
    repo: Path
    db: Path
    shape: Shape
    counts: dict[str, Any]

    def scratch_copy(self, label: str) -> Path:
        """A private copy of the database for benchmarks that change it."""
        scratch = DATA / "scratch"
        scratch.mkdir(parents=True, exist_ok=True)
        target = scratch / f"{self.name}-{label}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(self.db, target)
        return target


def repo_path(name: str) -> Path:
    return DATA / f"ledger-{name}"


def _base36(n: int, length: int) -> str:
    out = []
    for _ in range(length):
        n, r = divmod(n, 36)
        out.append(_ALPHABET[r])
    return "".join(reversed(out))


def make_ids(n: int) -> list[str]:
    length = hash_length(n)
    space = 36 ** length
    return [f"{PREFIX}-{_base36((i * _MULTIPLIER + 7919) % space, length)}" for i in range(n)]


_VERBS = ("Add", "Fix", "Refactor", "Document", "Speed up", "Remove", "Test", "Port", "Review",
          "Split")
_NOUNS = ("the parser", "login flow", "cache layer", "CLI output", "merge queue", "exporter",
          "retry logic", "config loader", "web view", "audit trail", "scheduler", "importer")
_DESCRIPTIONS = tuple(
    f"{verb} {noun}: the current behaviour is wrong in edge case {k}; see the linked report, "
    f"reproduce it with the attached steps and cover it with a test before changing code."
    for k, (verb, noun) in enumerate((v, n) for v in _VERBS for n in _NOUNS)
)
_LABELS = ("backend", "frontend", "cli", "docs", "perf", "security", "tests", "infra", "ux",
           "api", "db", "ci", "flaky", "good-first-issue", "needs-design", "tech-debt")
_ASSIGNEES = ("ana", "bo", "chen", "dita", "eli", "agent-1", "agent-2", "agent-3")


def _statuses(rng: random.Random, n: int, recent_share: float) -> list[str]:
    old_end = int(n * (1 - recent_share))
    out = []
    for i in range(n):
        r = rng.random()
        if i < old_end:
            out.append("closed" if r < 0.98 else ("open" if r < 0.993 else "deferred"))
        elif r < 0.55:
            out.append("open")
        elif r < 0.85:
            out.append("closed")
        elif r < 0.92:
            out.append("in_progress")
        elif r < 0.96:
            out.append("blocked")
        else:
            out.append("deferred")
    return out


def build(db: Path, shape: Shape, log: Any = print) -> dict[str, Any]:
    """Fill the (freshly migrated, empty) ledger at ``db``; returns counts."""
    rng = random.Random(shape.seed)
    n = shape.tasks
    started = time.perf_counter()
    ledger = Ledger.open(db, prefix=PREFIX, clock=SystemClock(), actor="bench")
    conn = ledger.store.conn  # type: ignore[attr-defined]
    try:
        if conn.execute("SELECT count(*) FROM tasks").fetchone()[0]:
            raise RuntimeError(f"{db} is not empty")
        conn.execute("PRAGMA cache_size = -1048576")  # 1 GiB while building
        ids = make_ids(n)
        base = datetime(2023, 1, 1, tzinfo=UTC)
        step = (3 * 365 * 86400) / max(n, 1)
        stamps = [(base + timedelta(seconds=i * step)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                  for i in range(n)]
        statuses = _statuses(rng, n, shape.recent_share)
        prio_weights = (0.05, 0.25, 0.75, 0.9, 1.0)

        def task_rows() -> Any:
            for i in range(n):
                status = statuses[i]
                r = rng.random()
                priority = next(p for p, w in enumerate(prio_weights) if r < w)
                epic = i % shape.epic_every == 0
                closed_at = close_reason = None
                updated = stamps[i]
                if status == "closed":
                    closed_at = updated = stamps[min(n - 1, i + rng.randint(5, 3000))]
                    close_reason = "done"
                assignee = (_ASSIGNEES[i % len(_ASSIGNEES)]
                            if status in ("in_progress", "closed") else None)
                yield (i + 1, ids[i], f"{_VERBS[i % 10]} {_NOUNS[i % 12]} #{i}",
                       _DESCRIPTIONS[i % len(_DESCRIPTIONS)], status, priority,
                       "epic" if epic else ("bug" if i % 7 == 0 else "task"), assignee,
                       stamps[i], updated, closed_at, close_reason)

        deps: list[tuple[str, str, str, str, str, int]] = []
        for i in range(1, n):
            targets: dict[tuple[int, str], None] = {}
            r = rng.random()
            count = 0 if r < 0.10 else (1 if r < 0.85 else 2)
            for _ in range(count):
                targets[(i - rng.randint(1, min(shape.window, i)), "blocks")] = None
            if i % shape.epic_every and rng.random() < shape.parent_share:
                epic = ((i - 1) // shape.epic_every - rng.randint(0, 4)) * shape.epic_every
                if epic >= 0:
                    targets[(epic, "parent-child")] = None
            for pos, (j, typ) in enumerate(targets):
                deps.append((ids[i], ids[j], typ, stamps[i], "bench", pos))
        deps.sort()
        labels = []
        for i in range(n):
            if rng.random() < 0.3:
                for pos, label in enumerate(sorted(set(rng.sample(_LABELS, rng.randint(1, 2))))):
                    labels.append((ids[i], label, pos))
        labels.sort()
        log(f"   generated {n:,} tasks, {len(deps):,} dependencies, {len(labels):,} labels"
            f" in {time.perf_counter() - started:.1f} s; writing...")
        with write_tx(conn):
            conn.executemany(
                "INSERT INTO tasks (seq, id, title, description, status, priority, issue_type,"
                " assignee, created_at, updated_at, closed_at, close_reason)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", task_rows())
            conn.executemany(
                "INSERT INTO deps (issue_id, depends_on_id, type, created_at, created_by, pos)"
                " VALUES (?,?,?,?,?,?)", deps)
            conn.executemany("INSERT INTO labels (task_id, label, pos) VALUES (?,?,?)", labels)
            readiness.recompute_all(conn)
            counts = {
                "tasks": n,
                "dependencies": len(deps),
                "blocks": sum(1 for d in deps if d[2] == "blocks"),
                "parent_child": sum(1 for d in deps if d[2] == "parent-child"),
                "labels": len(labels),
                "by_status": dict(conn.execute(
                    "SELECT status, count(*) FROM tasks GROUP BY status ORDER BY status")),
                "ready": conn.execute(
                    "SELECT count(*) FROM tasks WHERE status = 'open' AND gated = 0"
                ).fetchone()[0],
            }
            conn.execute("INSERT INTO meta (key, value) VALUES ('bench_build', ?)",
                         (json.dumps(shape.key()),))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        ledger.close_db()
    counts["build_seconds"] = round(time.perf_counter() - started, 1)
    return counts


def ensure(name: str, shape: Shape, *, rebuild: bool = False, log: Any = print) -> BuiltLedger:
    """The cached ledger ``name`` of ``shape``, built first if missing or different."""
    from taskmill.project import init

    repo = repo_path(name)
    marker = repo / ".taskmill" / MARKER
    db = repo / ".taskmill" / "taskmill.db"
    if not rebuild and marker.is_file() and db.is_file():
        cached = json.loads(marker.read_text(encoding="utf-8"))
        if cached.get("shape") == shape.key():
            return BuiltLedger(name, repo, db, shape, cached["counts"])
    log(f"   building ledger {name!r} ({shape.tasks:,} tasks) under {repo} ...")
    env = home_env()
    if not (repo / ".git").exists():
        repo.mkdir(parents=True, exist_ok=True)
        git(repo, "init", "-q", "-b", "main", env=env)
        (repo / "README.md").write_text("# taskmill benchmark ledger\n", encoding="utf-8")
        git(repo, "add", "README.md", env=env)
        git(repo, "commit", "-q", "-m", "initial commit", env=env)
    marker.unlink(missing_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    init(repo, env, prefix=PREFIX).close()
    counts = build(db, shape, log)
    marker.write_text(json.dumps({"shape": shape.key(), "counts": counts}, indent=2),
                      encoding="utf-8")
    log(f"   built in {counts['build_seconds']} s: {counts}")
    return BuiltLedger(name, repo, db, shape, counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--name", default="big")
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()
    built = ensure(args.name, Shape(args.tasks), rebuild=args.rebuild)
    print(json.dumps({"repo": str(built.repo), **built.counts}, indent=2))


if __name__ == "__main__":
    main()
