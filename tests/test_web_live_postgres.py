"""The dashboard's live feed on PostgreSQL: the watcher ``LISTEN``s, so a commit made by
another process reaches the subscribers at once, with no polling of the ledger (the poll
interval is set far beyond the test's patience)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import pg_helpers
from taskmill.clock import FixedClock
from taskmill.ledger import Ledger
from taskmill.paths import locate
from taskmill.web import live
from taskmill.web.mill_state import MillLog


def test_a_commit_elsewhere_reaches_the_stream_by_notification(
        taskmill_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "POLL_SECONDS", 60.0)
    url = pg_helpers.new_database()
    writer = Ledger(pg_helpers.open_store(url), prefix="tm", clock=FixedClock(), actor="w")
    first = writer.create("before the watcher")
    paths = locate(taskmill_repo, {})
    broadcaster = live.Broadcaster(paths, MillLog(paths.run.events), url=url)

    async def scenario() -> list[dict[str, object]]:
        q = broadcaster.subscribe()
        try:
            await asyncio.sleep(0.3)  # let it LISTEN
            assert q.empty() and broadcaster.seq == 1
            task = await asyncio.to_thread(writer.create, "after")
            message = await asyncio.wait_for(q.get(), timeout=10)
            assert message is not None
            await asyncio.to_thread(writer.update, first.id, {"priority": 0})
            again = await asyncio.wait_for(q.get(), timeout=10)
            assert again is not None
            return [message, again, {"id": task.id}]
        finally:
            await broadcaster.aclose()

    try:
        message, again, made = asyncio.run(scenario())
    finally:
        writer.close_db()
    assert message == {"type": "ledger", "seq": 2, "tasks": [made["id"]], "kinds": ["created"]}
    assert again == {"type": "ledger", "seq": 3, "tasks": [first.id], "kinds": ["updated"]}


def test_the_dashboard_serves_and_streams_a_postgres_ledger(git_repo: Path) -> None:
    """``taskmill serve`` on a repository whose ledger is in PostgreSQL: the API reads it,
    and a change made by the CLI reaches the stream at once."""
    import json
    import subprocess
    import time

    import httpx

    from test_web_api import PY, _start_server, _stop_server

    url = pg_helpers.new_database()
    subprocess.run([PY, "-m", "taskmill", "init", "--prefix", "tm", "--database", url],
                   cwd=git_repo, check=True, capture_output=True)
    made = json.loads(subprocess.run([PY, "-m", "taskmill", "create", "served", "--json"],
                                     cwd=git_repo, check=True, capture_output=True,
                                     text=True).stdout)["id"]
    proc, info = _start_server(git_repo)
    try:
        base = info["url"].rstrip("/")
        with httpx.Client(timeout=10) as http:
            tasks = http.get(f"{base}/api/tasks").json()
            assert made in json.dumps(tasks)
            with http.stream("GET", f"{base}/api/stream") as stream:
                lines = stream.iter_lines()

                def next_message() -> dict[str, object]:
                    for line in lines:
                        if line.startswith("data: "):
                            return dict(json.loads(line[6:]))
                    raise AssertionError("the stream ended")

                assert next_message()["type"] == "hello"
                subprocess.run([PY, "-m", "taskmill", "update", made, "--priority", "0"],
                               cwd=git_repo, check=True, capture_output=True)
                done = time.monotonic()
                message = next_message()
                assert (message["type"], message["tasks"]) == ("ledger", [made])
                assert time.monotonic() - done < 1.0
    finally:
        _stop_server(proc)
