"""``taskmill watch`` end to end: real git repositories, a real ``taskmill watch`` process.

- an event order (on task.landed of tasks labelled api) pours a formula whose steps the
  scripted agent then works and lands, all in one ``taskmill watch``, which stops cleanly on
  SIGTERM;
- an interval order keeps its one-second slots across a kill -9 and a restart: no slot twice,
  none lost (catch_up = "all").
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path

from mill_helpers import MillRepo, agent_script, kill_group, wait_for
from taskmill.clock import parse_iso

FOLLOWUP = '''\
formula = "followup"
description = "Document and review what landed"
[vars.source]
description = "the task that landed"
[[steps]]
id = "docs"
title = "Document {{ source }}"
[[steps]]
id = "review"
needs = ["docs"]
title = "Review the docs of {{ source }}"
'''
DOCS_ORDER = '''\
[order]
pour = "followup"
vars = { source = "{{ event.task }}" }
trigger = "event"
on = "task.landed"
filter = { label = "api" }
'''


def spawn_watch(repo: MillRepo, *args: str, events: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(repo.command("watch", "--allow-unchecked", "--quiet", *args,
                                         "--json-events", str(events)),
                            cwd=repo.root, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)


def read_events(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def test_an_event_order_pours_a_formula_that_is_worked_and_landed_in_one_watch(
        tmp_path: Path) -> None:
    repo = MillRepo(tmp_path, files={".taskmill/formulas/followup.toml": FOLLOWUP,
                                     ".taskmill/orders/docs.toml": DOCS_ORDER})
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / f"out-{TASK}.txt").write_text(TITLE + "\\n")
    """, spy=repo.spy)
    repo.ledger.create("change the api", task_id="tm-api", labels=["api"])
    repo.ledger.create("change the cli", task_id="tm-cli")
    events = tmp_path / "events.ndjson"
    proc = spawn_watch(repo, "--agent-cmd", cmd, events=events)
    try:
        def poured_and_closed() -> bool:
            epics = repo.ledger.list_tasks(issue_type="epic")
            return bool(epics) and all(t.status == "closed" for t in epics)

        assert wait_for(poured_and_closed, timeout=90, interval=0.2), (
            repo.ledger.list_tasks(), read_events(events)[-10:])
        assert proc.poll() is None  # still up: it watches for more
        # one more task, created while it idles, is worked too; it triggers nothing
        repo.ledger.create("later work", task_id="tm-later")
        assert wait_for(lambda: repo.ledger.get("tm-later").status == "closed", timeout=60,
                        interval=0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    [epic] = repo.ledger.list_tasks(issue_type="epic")
    assert epic.metadata["formula"] == "followup" and epic.metadata["order"] == "docs"
    steps = repo.ledger.list_tasks(parent=epic.id)
    assert sorted(t.title for t in steps) == ["Document tm-api", "Review the docs of tm-api"]
    ids = [t.id for t in steps] + ["tm-api", "tm-cli", "tm-later"]
    repo.assert_all_landed_once(ids)
    kinds = [e["event"] for e in read_events(events)]
    assert kinds.count("order_fired") == 1 and "watch_started" in kinds
    rows = repo.ledger.store.order_slots("docs", outcomes=["fired"])
    assert [r.task_id for r in rows] == [epic.id]
    repo.verify_ok()


def test_interval_slots_survive_a_kill_9_and_restart_each_fired_once(tmp_path: Path) -> None:
    order = ('[order]\ncreate = { title = "tick {{ slot }}" }\ntrigger = "interval"\n'
             'interval = "1s"\ncatch_up = "all"\n')
    repo = MillRepo(tmp_path, files={".taskmill/orders/tick.toml": order})
    assert repo.cli("pause").returncode == 0  # fire the orders, work nothing
    events = tmp_path / "events.ndjson"
    first = spawn_watch(repo, events=events)
    assert wait_for(lambda: len(repo.ledger.store.order_slots("tick", outcomes=["fired"])) >= 3,
                    timeout=30, interval=0.1)
    kill_group(first)
    time.sleep(2.5)  # down for two slots or more
    second = spawn_watch(repo, events=events)
    before = len(repo.ledger.store.order_slots("tick", outcomes=["fired"]))
    assert wait_for(lambda: len(repo.ledger.store.order_slots("tick", outcomes=["fired"]))
                    >= before + 4, timeout=30, interval=0.1)
    second.send_signal(signal.SIGINT)
    second.communicate(timeout=60)
    assert second.returncode == 128 + signal.SIGINT
    rows = repo.ledger.store.order_slots("tick")
    armed = [r for r in rows if r.outcome == "armed"]
    fired = sorted(r.slot for r in rows if r.outcome == "fired")
    assert len(armed) == 1 and not [r for r in rows if r.outcome not in ("armed", "fired")]
    times = [parse_iso(s) for s in fired]
    start = parse_iso(armed[0].slot)
    assert start is not None and all(t is not None for t in times)
    # every one-second slot from the arming on, each exactly once: none lost, none twice
    assert times == [start + timedelta(seconds=k) for k in range(1, len(times) + 1)]
    tasks = repo.ledger.list_tasks()
    assert len(tasks) == len(fired) and len({t.title for t in tasks}) == len(fired)
    latencies = [e for e in read_events(events) if e["event"] == "order_fired"
                 and isinstance(e.get("latency"), float)]
    assert latencies and min(float(e["latency"]) for e in latencies) < 1.0  # type: ignore[arg-type]


def test_kill_usr1_writes_every_threads_stack_and_the_watch_goes_on(tmp_path: Path) -> None:
    """What a watch that seems stuck waits on: ``kill -USR1`` writes its threads' stacks to
    its standard error; it goes on, and stops on Ctrl-C as ever."""
    repo = MillRepo(tmp_path)
    events = tmp_path / "events.ndjson"
    proc = spawn_watch(repo, events=events)
    try:
        assert wait_for(lambda: any(e["event"] == "watch_started" for e in read_events(events)),
                        timeout=30, interval=0.05)
        proc.send_signal(signal.SIGUSR1)  # unhandled, it would end the watch (-10)
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT, err
    assert "most recent call first" in err and "in run" in err, err
