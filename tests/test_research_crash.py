"""Research mode is kill -9 safe: a killed `taskmill research run` leaves its experiments in
progress, the next run resumes them; none is recorded twice or lost, the branch holds
exactly the kept commits."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from research_helpers import PY, ResearchRepo, example_edits, example_files, verdicts
from taskmill.research import gitops
from taskmill.research.records import BASELINE, CRASH, DISCARD, KEEP, Experiment

HANG_METRIC = """\
import os, pathlib, subprocess, sys, time
hang = pathlib.Path(sys.argv[1])
if hang.exists() and "Merge sort" in pathlib.Path("sortlib.py").read_text():
    (hang.parent / "measuring").write_text(str(os.getpid()))
    time.sleep(120)
sys.exit(subprocess.call([sys.executable, "bench.py"]))
"""


def _research(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"branch": "research/sort", "metric": f"{PY} bench.py", "editable": ["sortlib.py"],
            "agent": "scripted-research", "baseline_runs": 1, "accept": 0.5,
            "verify_runs": 1, "stop": {"experiments": 4}, **(extra or {})}


def _wait(predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def _kill9(proc: Any) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _consistent(repo: ResearchRepo, experiments: list[Experiment]) -> None:
    """Every number once, all decided, the branch = the kept commits in order."""
    assert [e.n for e in experiments] == list(range(len(experiments)))
    assert len({e.id for e in experiments}) == len(experiments)
    assert all(e.done for e in experiments)
    kept = [e.data["kept_commit"] for e in experiments if e.verdict == KEEP]
    assert repo.branch_commits("research/sort") == kept
    assert repo.git("rev-list", "--merges", "refs/heads/research/sort") == ""


def _calls(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def test_kill9_mid_turn_then_rerun_resumes_it(tmp_path: Path) -> None:
    calls = tmp_path / "calls.log"
    edits = example_edits()["edits"]
    hanging = {**edits["2"], "sleep": 120}
    script = {"edits": {"1": edits["1"], "2": hanging, "3": edits["3"], "4": edits["6"]},
              "calls_log": str(calls)}
    repo = ResearchRepo(tmp_path, example_files(), _research(), script=script)
    proc = repo.spawn("research", "run")
    _wait(lambda: 2 in _calls(calls))
    _kill9(proc)
    repo.write_script({**script, "edits": {**script["edits"], "2": edits["2"]}})
    done = repo.cli("research", "run", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)["run"]
    assert report["resumed"] == 1 and report["stopped_by"] == "experiments"
    with repo.project() as project:
        experiments = repo.research(project).log.all()
    assert verdicts(experiments) == {0: BASELINE, 1: DISCARD, 2: KEEP, 3: CRASH, 4: KEEP}
    _consistent(repo, experiments)
    # the interrupted turn ran again (nothing of it was committed), nothing else did
    assert _calls(calls) == [1, 2, 2, 3, 4]


def test_kill9_mid_measure_resumes_from_the_recorded_commit(tmp_path: Path) -> None:
    calls = tmp_path / "calls.log"
    hang = tmp_path / "hang"
    hang.write_text("1")
    edits = example_edits()["edits"]
    script = {"edits": {"1": edits["1"], "2": edits["2"], "3": edits["4"], "4": edits["6"]},
              "calls_log": str(calls)}
    files = {**example_files(), "hang_metric.py": HANG_METRIC}
    repo = ResearchRepo(tmp_path, files,
                        _research({"metric": f"{PY} hang_metric.py {hang}"}), script=script)
    proc = repo.spawn("research", "run")
    _wait(lambda: (tmp_path / "measuring").exists())
    with repo.project() as project:
        before = repo.research(project).log.get(2)
    assert before is not None and not before.done and before.data["phase"] == "committed"
    committed = before.data["commit"]
    _kill9(proc)
    hang.unlink()
    done = repo.cli("research", "run", "--json")
    assert done.returncode == 0, done.stderr
    with repo.project() as project:
        experiments = repo.research(project).log.all()
    assert verdicts(experiments) == {0: BASELINE, 1: DISCARD, 2: KEEP, 3: DISCARD, 4: KEEP}
    _consistent(repo, experiments)
    by_n = {e.n: e for e in experiments}
    assert by_n[2].data["commit"] == committed  # measured again, not made again
    assert _calls(calls) == [1, 2, 3, 4]


def test_killed_between_advancing_and_recording_is_recorded_as_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    edits = example_edits()["edits"]
    repo = ResearchRepo(tmp_path, example_files(), _research({"stop": {"experiments": 2}}),
                        script={"edits": {"1": edits["2"], "2": edits["6"]}})
    real_advance = gitops.advance

    class Killed(BaseException):
        pass

    def advance_then_die(*args: Any) -> bool:
        assert real_advance(*args)
        raise Killed

    monkeypatch.setattr(gitops, "advance", advance_then_die)
    with repo.project() as project, pytest.raises(Killed):
        repo.research(project).run()
    monkeypatch.setattr(gitops, "advance", real_advance)
    tip = repo.git("rev-parse", "refs/heads/research/sort")
    _res, experiments = repo.run()
    by_n = {e.n: e for e in experiments}
    assert by_n[1].verdict == KEEP and by_n[1].data["kept_commit"] == tip
    assert by_n[1].data["reason"] == "kept (recorded after a restart)"
    assert by_n[2].verdict == KEEP
    _consistent(repo, experiments)
