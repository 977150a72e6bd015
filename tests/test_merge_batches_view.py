"""The dashboard's view of the merge queue's batches (``/api/now``'s ``merge_batches``), from
the batch events the mill streams."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from taskmill.web.mill_state import MillLog
from taskmill.web.responses import Now


def _write(path: Path, events: list[dict[str, Any]]) -> None:
    with path.open("a", encoding="utf-8") as fh:
        for i, event in enumerate(events):
            fh.write(json.dumps({"ts": f"2026-01-01T10:00:{i:02d}Z", **event}) + "\n")


def test_batches_show_their_checks_bisection_and_landings(tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    log = MillLog(path)
    _write(path, [
        {"event": "run_started", "run_id": "r1"},
        {"event": "batch_started", "tasks": ["tm-a", "tm-b", "tm-c"], "base": "b0"},
        {"event": "batch_checks", "tree": "t1", "cached": False, "passed": False,
         "tasks": ["tm-a", "tm-b", "tm-c"], "retry": 0},
        {"event": "batch_checks", "tree": "t1", "cached": False, "passed": False,
         "tasks": ["tm-a", "tm-b", "tm-c"], "retry": 1},
    ])
    log.refresh()
    (batch,) = log.snapshot()["batches"]
    assert batch["state"] == "checking" and batch["base"] == "b0"
    assert [(c["passed"], c["retry"]) for c in batch["checks"]] == [(False, 0), (False, 1)]
    assert not any(c["speculative"] for c in batch["checks"])

    _write(path, [
        {"event": "batch_checks", "tree": "t2", "cached": False, "passed": True,
         "tasks": ["tm-a"]},
        {"event": "bisect_step", "tested": ["tm-a"], "passed": True},
        {"event": "batch_landed", "tasks": ["tm-a"], "commit": "c1"},
        {"event": "bisect_step", "tested": ["tm-b"], "passed": False},
        {"event": "batch_checks", "tree": "t3", "cached": True, "passed": True,
         "tasks": ["tm-c"]},
        {"event": "bisect_step", "tested": ["tm-c"], "passed": True},
        {"event": "batch_landed", "tasks": ["tm-c"], "commit": "c2"},
    ])
    log.refresh()
    (batch,) = log.snapshot()["batches"]
    assert batch["state"] == "bisecting"
    assert batch["bisect"] == [{"tested": ["tm-a"], "passed": True},
                               {"tested": ["tm-b"], "passed": False},
                               {"tested": ["tm-c"], "passed": True}]
    assert batch["landed"] == ["tm-a", "tm-c"]
    assert batch["checks"][-1]["cached"] is True

    _write(path, [  # the next batch checked on top of this one, while it is
        {"event": "batch_checks", "tree": "t4", "cached": False, "passed": True,
         "tasks": ["tm-d"], "retry": 0, "speculative": True},
    ])
    log.refresh()
    (checks,) = [c for c in log.snapshot()["batches"][0]["checks"] if c["speculative"]]
    assert checks["tasks"] == ["tm-d"]
    _write(path, [
        {"event": "batch_finished",
         "outcomes": {"tm-a": "landed", "tm-b": "checks_failed", "tm-c": "landed"}},
        {"event": "batch_started", "tasks": ["tm-d"], "base": "c2"},
    ])
    log.refresh()
    first, second = log.snapshot()["batches"]
    assert first["state"] == "done" and first["outcomes"]["tm-b"] == "checks_failed"
    assert second["state"] == "checking" and second["tasks"] == ["tm-d"]
    _write(path, [{"event": "run_finished"}])
    log.refresh()
    assert [b["state"] for b in log.snapshot()["batches"]] == ["done", "done"]


def test_the_now_response_schema_holds_batches() -> None:
    batch = {"started_at": "t", "base": "b", "tasks": ["tm-a"], "state": "done",
             "checks": [{"tree": "t", "tasks": ["tm-a"], "cached": False, "passed": True,
                         "retry": 0}],
             "bisect": [], "landed": ["tm-a"], "outcomes": {"tm-a": "landed"}}
    fields = Now.model_fields
    assert "merge_batches" in fields
    annotation = fields["merge_batches"].annotation
    assert annotation is not None
    model = annotation.__args__[0]
    assert model.model_validate(batch).landed == ["tm-a"]


def test_the_terminal_view_says_a_parked_task_is_landing_in_a_batch() -> None:
    from taskmill.cli.live import LiveView

    view = LiveView(workers=2)
    for tid in ("tm-a", "tm-b"):
        view.on_event({"event": "dispatched", "task": tid, "title": tid})
        view.on_event({"event": "merge_queued", "task": tid})
    view.on_event({"event": "batch_started", "tasks": ["tm-a", "tm-b"], "base": "b"})
    assert {row["state"] for row in view._active.values()} == {"landing (batch of 2)"}
