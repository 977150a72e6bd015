"""``taskmill run`` on a PostgreSQL ledger (``TASKMILL_DATABASE_URL``): the mill claims,
records attempts and lands exactly as on SQLite; no SQLite file is made."""

from __future__ import annotations

from pathlib import Path

import pytest

import pg_helpers
from mill_helpers import MillRepo, agent_script


def test_the_mill_works_a_postgres_ledger(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    url = pg_helpers.new_database()
    monkeypatch.setenv("TASKMILL_DATABASE_URL", url)
    repo = MillRepo(tmp_path)
    repo.store = pg_helpers.open_store(url)
    try:
        cmd = agent_script(tmp_path / "agent.py", """
            (WT / f"out-{TASK}.txt").write_text(f"work of {TASK}\\n")
        """, spy=repo.spy)
        a = repo.create("tm-a", checks=["test -f out-tm-a.txt"])
        b = repo.create("tm-b", checks=["test -f out-tm-b.txt"], after=[a])
        c = repo.create("tm-c", checks=["test -f out-tm-c.txt"])
        result = repo.run("--agent-cmd", cmd, "-j", "2")
        assert result.returncode == 0, result.describe()
        repo.assert_all_landed_once([a, b, c])
        assert [x["outcome"] for x in repo.attempts(b)] == ["passed"]
        repo.verify_ok()
        assert not (repo.root / ".taskmill" / "taskmill.db").exists()
    finally:
        repo.store.close()
