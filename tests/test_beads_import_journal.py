"""A bulk import into an empty SQLite ledger writes in rollback-journal mode when no other
connection has the file open (its pages straight into the file, not through the WAL and a
checkpoint), and leaves the file in WAL mode again; all or nothing as ever, a crash in the
middle included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from taskmill.audit_verify import verify_ledger
from taskmill.beads import import_beads
from taskmill.beads.importer import ImportProgress
from taskmill.errors import InvalidInput
from taskmill.ledger import Ledger


def _file(path: Path, n: int, *, bad_last: bool = False) -> Path:
    lines = [json.dumps({"id": f"bd-{i}", "title": f"task {i}", "status": "open",
                         "priority": 2, "issue_type": "task",
                         "created_at": "2023-01-01T00:00:00Z",
                         "updated_at": "2023-01-01T00:00:00Z"}) for i in range(n)]
    if bad_last:
        lines.append("{not json")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _mode(ledger: Ledger) -> str:
    return str(ledger.store.conn.execute(  # type: ignore[attr-defined]
        "PRAGMA journal_mode").fetchone()[0])


def _importing_mode(ledger: Ledger, source: Path) -> list[str]:
    modes: list[str] = []

    def progress(_p: ImportProgress) -> None:
        modes.append(_mode(ledger))

    import_beads(ledger, source, workers=0, batch=10, progress=progress)
    return modes


def test_an_import_into_an_empty_ledger_alone_writes_past_the_wal(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "db", prefix="bd") as ledger:
        modes = _importing_mode(ledger, _file(tmp_path / "a.jsonl", 30))
        assert set(modes) == {"delete"}
        assert _mode(ledger) == "wal"
        assert len(ledger.list_tasks()) == 30
        assert verify_ledger(ledger.store).ok
    assert not (tmp_path / "db-journal").exists()


def test_with_another_connection_open_it_stays_in_wal(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "db", prefix="bd") as ledger, \
            Ledger.open(tmp_path / "db", prefix="bd") as other:
        assert other.list_tasks() == []
        modes = _importing_mode(ledger, _file(tmp_path / "a.jsonl", 30))
        assert set(modes) == {"wal"}
        assert len(other.list_tasks()) == 30


def test_into_a_ledger_with_tasks_it_stays_in_wal(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "db", prefix="bd") as ledger:
        ledger.create("already here")
        modes = _importing_mode(ledger, _file(tmp_path / "a.jsonl", 30))
        assert set(modes) == {"wal"}


def test_a_bad_line_at_the_end_leaves_nothing_and_wal_mode(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "db", prefix="bd") as ledger:
        with pytest.raises(InvalidInput, match="line 31"):
            _importing_mode(ledger, _file(tmp_path / "a.jsonl", 30, bad_last=True))
        assert _mode(ledger) == "wal"
        assert ledger.list_tasks() == []
        assert verify_ledger(ledger.store).ok
    assert not (tmp_path / "db-journal").exists()


CRASH = """
import os, sys
from taskmill.audit_verify import verify_ledger
from taskmill.beads import import_beads
from taskmill.ledger import Ledger
ledger = Ledger.open(sys.argv[1], prefix="bd")
seen = []
def progress(p):
    seen.append(p)
    if len(seen) == 3:  # rows written (and pages spilled), nothing committed
        ledger.store.conn.execute("PRAGMA cache_spill = 1")
        os._exit(9)
import_beads(ledger, sys.argv[2], workers=0, batch=200, progress=progress)
"""


def test_a_crash_in_the_middle_leaves_the_ledger_as_it_was(tmp_path: Path) -> None:
    db = tmp_path / "db"
    Ledger.open(db, prefix="bd").close_db()
    env: dict[str, Any] = {**os.environ}
    done = subprocess.run([sys.executable, "-c", CRASH, str(db),
                           str(_file(tmp_path / "a.jsonl", 2000))], env=env, check=False)
    assert done.returncode == 9
    with Ledger.open(db, prefix="bd") as ledger:  # (the journal left is rolled back)
        assert ledger.list_tasks() == []
        assert _mode(ledger) == "wal"
        assert verify_ledger(ledger.store).ok
        import_beads(ledger, tmp_path / "a.jsonl", workers=0)
        assert len(ledger.list_tasks()) == 2000
