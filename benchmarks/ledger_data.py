"""Benchmark ledgers: a git repository with ``taskmill init`` done and a database filled
with bulk SQL, cached under ``benchmarks/.data/ledger-<name>/``.

The shape is meant to look like a long-lived project: every 20th task is an epic; about half
the other tasks are children of a recent epic (parent-child); each task waits on about one
earlier task nearby (blocks). Every edge points from a task to an older one, so the graph
is acyclic. The oldest 90% are almost all closed; the newest 10% are mostly open, with some
in progress, blocked and deferred. Dependencies are ~1.5 per task.

The backlog is written once as a Beads JSONL file (``benchmarks/.data/backlog-*.jsonl``,
also what the import benchmark reads) and loaded through the real import
(``taskmill.beads.import_beads``), so the ledger's audit trail verifies as a user's would.

    python -m benchmarks.ledger_data [--tasks 1000000] [--name big] [--rebuild]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from taskmill.beads import encode_record, import_beads
from taskmill.clock import SystemClock
from taskmill.ids import hash_length
from taskmill.ledger import Ledger

from .mill_common import git
from .support import DATA, home_env

BUILD_VERSION = 2
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


def records(shape: Shape) -> Iterator[dict[str, Any]]:
    """The benchmark backlog as Beads records, oldest first."""
    rng = random.Random(shape.seed)
    n = shape.tasks
    ids = make_ids(n)
    base = datetime(2023, 1, 1, tzinfo=UTC)
    step = (3 * 365 * 86400) / max(n, 1)

    def stamp(i: int) -> str:
        return (base + timedelta(seconds=i * step)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    statuses = _statuses(rng, n, shape.recent_share)
    prio_weights = (0.05, 0.25, 0.75, 0.9, 1.0)
    for i in range(n):
        status = statuses[i]
        r = rng.random()
        priority = next(p for p, w in enumerate(prio_weights) if r < w)
        epic = i % shape.epic_every == 0
        rec: dict[str, Any] = {
            "id": ids[i], "title": f"{_VERBS[i % 10]} {_NOUNS[i % 12]} #{i}",
            "description": _DESCRIPTIONS[i % len(_DESCRIPTIONS)], "status": status,
            "priority": priority, "issue_type": "epic" if epic else ("bug" if i % 7 == 0
                                                                    else "task")}
        if status in ("in_progress", "closed"):
            rec["assignee"] = _ASSIGNEES[i % len(_ASSIGNEES)]
        rec["created_at"] = rec["updated_at"] = stamp(i)
        if status == "closed":
            rec["updated_at"] = rec["closed_at"] = stamp(min(n - 1, i + rng.randint(5, 3000)))
            rec["close_reason"] = "done"
        if rng.random() < 0.3:
            rec["labels"] = sorted(set(rng.sample(_LABELS, rng.randint(1, 2))))
        targets: dict[tuple[int, str], None] = {}
        if i:
            r = rng.random()
            count = 0 if r < 0.10 else (1 if r < 0.85 else 2)
            for _ in range(count):
                targets[(i - rng.randint(1, min(shape.window, i)), "blocks")] = None
            if i % shape.epic_every and rng.random() < shape.parent_share:
                parent = ((i - 1) // shape.epic_every - rng.randint(0, 4)) * shape.epic_every
                if parent >= 0:
                    targets[(parent, "parent-child")] = None
        if targets:
            rec["dependencies"] = [
                {"issue_id": ids[i], "depends_on_id": ids[j], "type": typ,
                 "created_at": stamp(i), "created_by": "bench"} for j, typ in targets]
        yield rec


def jsonl(shape: Shape, log: Any = print) -> Path:
    """The backlog of ``shape`` as a Beads JSONL file, written once and cached."""
    path = DATA / f"backlog-{shape.tasks}-v{BUILD_VERSION}-{shape.seed}.jsonl"
    if path.is_file():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    started = time.perf_counter()
    with tmp.open("w", encoding="utf-8") as out:
        for rec in records(shape):
            out.write(encode_record(rec))
            out.write("\n")
    tmp.replace(path)
    log(f"   wrote {path.name} ({path.stat().st_size / 2**20:.0f} MiB) in"
        f" {time.perf_counter() - started:.1f} s")
    return path


def build(db: Path, shape: Shape, log: Any = print) -> dict[str, Any]:
    """Fill the (freshly migrated, empty) ledger at ``db`` through the real Beads import
    (so the audit trail verifies); returns counts."""
    source = jsonl(shape, log)
    started = time.perf_counter()
    ledger = Ledger.open(db, prefix=PREFIX, clock=SystemClock(), actor="bench")
    try:
        if ledger.store.task_count():
            raise RuntimeError(f"{db} is not empty")
        report = import_beads(ledger, source)
        conn = ledger.store.conn  # type: ignore[attr-defined]
        counts = {
            "tasks": report.created,
            "dependencies": conn.execute("SELECT count(*) FROM deps").fetchone()[0],
            "blocks": conn.execute(
                "SELECT count(*) FROM deps WHERE type = 'blocks'").fetchone()[0],
            "parent_child": conn.execute(
                "SELECT count(*) FROM deps WHERE type = 'parent-child'").fetchone()[0],
            "labels": conn.execute("SELECT count(*) FROM labels").fetchone()[0],
            "by_status": dict(conn.execute(
                "SELECT status, count(*) FROM tasks GROUP BY status ORDER BY status")),
            "ready": conn.execute(
                "SELECT count(*) FROM tasks WHERE status = 'open' AND gated = 0"
            ).fetchone()[0],
        }
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
