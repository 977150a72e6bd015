"""The mill end to end on the in-memory ledger store, in one process: the store seam holds
for the mill too (claims, attempts, recovery bookkeeping, landing all through store verbs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mill_helpers import MillRepo
from taskmill.agents.base import AgentConfig
from taskmill.clock import FixedClock
from taskmill.ledger import Ledger
from taskmill.ledger.memory import MemoryStore
from taskmill.mill.engine import Mill
from taskmill.mill.events import EventBus
from taskmill.mill.settings import RunSettings
from taskmill.project import open_project
from taskmill.testing.turns import ScriptedTurns, write

FAKE_AGENT = AgentConfig(name="fake", adapter="exec", command=("not-run",))


def test_the_mill_runs_on_the_memory_store(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    store = MemoryStore()
    repo.store = store
    turns = ScriptedTurns({
        "tm-a": [write({"a.txt": "bad\n"}, input_tokens=10, output_tokens=2),
                 write({"a.txt": "good\n"}, input_tokens=20, output_tokens=3)],
        "tm-b": [write({"b.txt": "b\n"})],
        "tm-c": [write({"c.txt": "c\n"})],
    })
    repo.create("tm-a", checks=['test "$(cat a.txt)" = good'])
    repo.create("tm-b", checks=["test -f b.txt"], after=["tm-a"])
    repo.create("tm-c", checks=["test -f c.txt"])
    events: list[dict[str, Any]] = []
    clock = FixedClock(step=0.001)
    env = dict(os.environ)
    with open_project(repo.root, env) as project:
        settings = RunSettings.from_config(project.config.run, {
            "contain": "group", "allow_unchecked": True, "workers": 2})
        bus = EventBus(clock)
        bus.subscribe(events.append)
        summary = Mill(project.paths, project.config, settings, env=env, clock=clock, bus=bus,
                       agent_override=FAKE_AGENT, turn_runner=turns,
                       store=lambda: store).run()

    assert summary.exit_code == 0, summary.to_json()
    repo.assert_all_landed_once(["tm-a", "tm-b", "tm-c"])
    assert [a["outcome"] for a in repo.attempts("tm-a")] == ["failed", "passed"]
    order = [(e["event"], e.get("task")) for e in events]
    assert order.index(("landed", "tm-a")) < order.index(("dispatched", "tm-b"))
    ledger = repo.ledger
    assert ledger.verify().ok
    assert ledger.lap_usage("tm-a", 1) == (2, 30, 5, 0.0)
    # the repository's database was never written: the run's ledger was the memory store
    on_disk = Ledger.open(repo.root / ".taskmill" / "taskmill.db", prefix="tm")
    try:
        assert on_disk.list_tasks(include_hidden=True) == []
    finally:
        on_disk.close_db()
