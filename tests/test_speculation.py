"""Speculation (:mod:`taskmill.mill.speculation`): the next batch is checked on top of the
batch ahead, in parallel with it, and its result is used only when that batch lands whole.

The project check is ``check.sh`` (see :mod:`batch_helpers`); a first command writes when
each run starts and ends, so that the tests see two runs overlap.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from batch_helpers import (
    CHECK,
    copy_repo,
    git,
    is_green,
    landed_trailers,
    make_branches,
    make_lander,
    make_template,
    requests,
    target_commits,
    tree_files,
)
from taskmill.mill.landing_queue import LandingQueue
from taskmill.mill.speculation import speculates

_TEMPLATE: dict[str, Path] = {}


@pytest.fixture
def repo(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Path:
    if "repo" not in _TEMPLATE:
        _TEMPLATE["repo"] = make_template(tmp_path_factory.mktemp("spec") / "template")
    return copy_repo(_TEMPLATE["repo"], tmp_path / "repo")


def _timed(log: Path, meet: Path) -> str:
    """A check command noting when each run starts and ends (the start noted before the run
    says it is there, so a run's start is always before the other's end); a run waits (30 s at most)
    until two runs have started, so two runs at the same time both end at once, and one
    run alone ends only after its wait."""
    return (f'mkdir -p {meet}; echo "start $(date +%s.%N)" >> {log}; touch {meet}/$$; n=0; '
            f'while [ "$(ls {meet} | wc -l)" -lt 2 ] && [ $n -lt 600 ]; do '
            f'sleep 0.05; n=$((n + 1)); done; echo "end $(date +%s.%N)" >> {log}')


def _spans(log: Path) -> list[tuple[float, float]]:
    """(start, end) of each run, paired in order of start (runs that ended)."""
    starts = [float(line.split()[1]) for line in log.read_text().splitlines()
              if line.startswith("start")]
    ends = sorted(float(line.split()[1]) for line in log.read_text().splitlines()
                  if line.startswith("end"))
    return list(zip(sorted(starts), ends, strict=False))


def _of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == kind]


def test_speculate_auto_is_on_with_more_than_two_cores() -> None:
    assert [speculates("auto", n) for n in (None, 1, 2, 3, 16)] == [
        False, False, False, True, True]
    assert speculates(True, 2) and speculates(True, None)
    assert not speculates(False, 64)


def test_the_next_batch_is_checked_on_top_of_the_one_ahead_at_the_same_time(
        repo: Path, tmp_path: Path) -> None:
    base = git(repo, "rev-parse", "main")
    commits = make_branches(repo, [{f"t{i}.txt": f"ok {i}\n"} for i in range(8)])
    log = tmp_path / "runs.log"
    events: list[dict[str, Any]] = []
    lander = make_lander(repo, tmp_path / "run", batch_max=4, events=events,
                         checks=[_timed(log, tmp_path / "meet"), CHECK], speculate=True)
    results = lander.land_batch(requests(commits))
    lander.close()
    assert [r.outcome for r in results] == ["landed"] * 8
    assert landed_trailers(repo, base) == [f"tm-{i}" for i in range(8)]
    assert lander.check_runs == 2  # no more runs than without speculation
    (started,) = _of(events, "speculation_started")
    assert started["tasks"] == ["tm-4", "tm-5", "tm-6", "tm-7"]
    assert started["ahead"] == ["tm-0", "tm-1", "tm-2", "tm-3"]
    assert started["base"] == results[3].commit  # the batch ahead's last commit
    assert [e["tasks"] for e in _of(events, "speculation_used")] == [started["tasks"]]
    # the first batch's run, and the speculative run's own record (whichever ends first)
    assert sorted((e.get("speculative", False), e["tasks"][0])
                  for e in _of(events, "batch_checks")) == [(False, "tm-0"), (True, "tm-4")]
    assert not _of(events, "speculation_discarded")
    (first, second) = _spans(log)
    assert second[0] < first[1]  # the two batches were checked at the same time
    assert git(repo, "status", "--porcelain") == ""


def test_a_red_batch_ahead_discards_the_speculation(repo: Path, tmp_path: Path) -> None:
    base = git(repo, "rev-parse", "main")
    specs = [{"t0.txt": "ok\n"}, {"t1.txt": "BAD\n"}, {"t2.txt": "ok\n"},
             {"t3.txt": "ok\n"}, {"t4.txt": "ok\n"}, {"t5.txt": "ok\n"}]
    commits = make_branches(repo, specs)
    events: list[dict[str, Any]] = []
    lander = make_lander(repo, tmp_path / "run", batch_max=3, events=events,
                         speculate=True)
    results = lander.land_batch(requests(commits))
    lander.close()
    assert [r.outcome for r in results] == [
        "landed", "checks_failed", "landed", "landed", "landed", "landed"]
    assert landed_trailers(repo, base) == ["tm-0", "tm-2", "tm-3", "tm-4", "tm-5"]
    assert all(is_green(tree_files(repo, c)) for c in target_commits(repo, base))
    discarded = _of(events, "speculation_discarded")
    assert discarded[0]["tasks"] == ["tm-3", "tm-4", "tm-5"]
    assert discarded[0]["why"] == "the batch ahead failed its checks"
    # what was speculated on the red batch was never used: tm-3..5 were checked on the tip
    # the bisection left
    assert not any(e["tasks"] == ["tm-3", "tm-4", "tm-5"] for e in _of(events, "speculation_used"))


def test_branches_parked_during_a_batchs_checks_are_speculated_on_and_taken_at_once(
        repo: Path, tmp_path: Path) -> None:
    commits = make_branches(repo, [{f"t{i}.txt": "ok\n"} for i in range(4)])
    hold, holding = tmp_path / "hold", tmp_path / "holding"
    hold.touch()
    # every run waits until the test lets them go (the speculative one too)
    gate = (f"touch {holding}; while [ -e {hold} ]; do sleep 0.02; done")
    events: list[dict[str, Any]] = []
    lander = make_lander(repo, tmp_path / "run", batch_max=5, checks=[gate, CHECK],
                         events=events, speculate=True)
    queue = LandingQueue(lander)
    thread = threading.Thread(target=queue.run)
    thread.start()
    try:
        reqs = requests(commits)
        first = queue.submit(reqs[0])
        deadline = time.monotonic() + 30
        while not holding.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        rest = [queue.submit(r) for r in reqs[1:]]  # each arrival speculates again
        while not any(e["tasks"] == ["tm-1", "tm-2", "tm-3"]
                      for e in _of(events, "speculation_started")):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        hold.unlink()
        assert first.result(timeout=30).outcome == "landed"
        assert [f.result(timeout=30).outcome for f in rest] == ["landed"] * 3
    finally:
        queue.close()
        thread.join(timeout=30)
    assert [e["tasks"] for e in _of(events, "batch_started")] == [
        ["tm-0"], ["tm-1", "tm-2", "tm-3"]]
    assert _of(events, "speculation_used")[-1]["tasks"] == ["tm-1", "tm-2", "tm-3"]
    # the superseded speculations (on tm-1, then tm-1 and tm-2) were cut, not counted
    assert [e["why"] for e in _of(events, "speculation_discarded")] == [
        "superseded by a newer speculation"] * 2
    assert lander.check_runs == 2
