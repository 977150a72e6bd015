"""Several processes writing one PostgreSQL ledger at once (standing in for machines): each
creates tasks, claims ready ones and closes what it claimed. Every task is claimed exactly
once, the audit chain stays one chain (``verify`` holds), and the sequence has no hole."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pg_helpers
from taskmill.clock import SystemClock
from taskmill.ledger import Ledger

WORKERS = 4
TASKS_EACH = 15

WORKER = """
import json, sys
from taskmill.clock import SystemClock
from taskmill.ledger import Ledger
from taskmill.ledger.postgres import PostgresStore

url, schema, name, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ledger = Ledger(PostgresStore.open(url, schema=schema), prefix="tm", clock=SystemClock(),
                actor=name)
made, claimed = [], []
for i in range(count):
    made.append(ledger.create(f"{name} task {i}").id)
    if i % 3 == 2:  # claim while the others are still creating
        got = ledger.claim_next(f"mill:{name}")
        if got is not None:
            claimed.append(got.id)
            ledger.close(got.id, "done")
while (got := ledger.claim_next(f"mill:{name}")) is not None:
    claimed.append(got.id)
    ledger.comment(got.id, f"worked by {name}")
    ledger.close(got.id, "done")
ledger.close_db()
print(json.dumps({"made": made, "claimed": claimed}))
"""


def test_concurrent_writers_claim_once_and_keep_one_chain(tmp_path: Path) -> None:
    url = pg_helpers.database_url()
    schema = pg_helpers.new_schema()
    pg_helpers.open_store(url, schema).close()  # the schema, before the race
    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    procs = [subprocess.Popen([sys.executable, str(script), url, schema, f"w{i}",
                               str(TASKS_EACH)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
             for i in range(WORKERS)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    made = [t for r in results for t in r["made"]]
    claimed = Counter(t for r in results for t in r["claimed"])
    assert len(made) == len(set(made)) == WORKERS * TASKS_EACH
    assert set(claimed) == set(made)
    assert max(claimed.values()) == 1, [t for t, n in claimed.items() if n > 1]
    with Ledger(pg_helpers.open_store(url, schema), prefix="tm", clock=SystemClock(),
                actor="check") as ledger:
        report = ledger.verify()
        assert report.ok, report.problems
        events = ledger.events()
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        kinds = Counter(e.kind for e in events)
        assert kinds["created"] == kinds["claimed"] == kinds["updated"] == len(made)  # closes
        assert {t.status for t in ledger.list_tasks(include_hidden=True)} == {"closed"}
        claims = Counter(e.task_id for e in events if e.kind == "claimed")
        assert set(claims.values()) == {1}
