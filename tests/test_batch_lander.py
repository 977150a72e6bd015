"""The batching, bisecting merge queue (:mod:`taskmill.mill.batch`) on real git repositories.

The project check is ``check.sh`` (see :mod:`batch_helpers`): red when a ``t*.txt`` holds
BAD, or when two marker files ``mKa`` and ``mKb`` are both there.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batch_helpers import (
    CHECK,
    SHARED,
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
from taskmill.config import DEFAULT_CONFIG, config_from_toml
from taskmill.config_schema import MergeTable, check_config
from taskmill.mill.batch import MergeSettings, conflict_files
from taskmill.mill.check_cache import CheckCache, Verdict, cache_key
from taskmill.mill.checks import CheckRun, ChecksResult

_TEMPLATE: dict[str, Path] = {}


@pytest.fixture
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with check.sh on main, made once (and copied by each test)."""
    if "repo" not in _TEMPLATE:
        _TEMPLATE["repo"] = make_template(tmp_path_factory.mktemp("batch") / "template")
    return _TEMPLATE["repo"]


def outcomes(results: list[Any]) -> dict[str, str]:
    return {r.task_id: r.outcome for r in results}


# -- batches -----------------------------------------------------------------------------------


def test_clean_branches_land_together_with_one_check_run_per_batch(template: Path,
                                                                   tmp_path: Path) -> None:
    """10 clean branches: one at a time runs the checks 10 times; batches of 5 twice (5x
    fewer). One commit per task, each with its trailer; the user's checkout follows."""
    runs = {}
    for batch_max in (1, 5):
        repo = copy_repo(template, tmp_path / f"repo{batch_max}")
        base = git(repo, "rev-parse", "main")
        commits = make_branches(repo, [{f"t{i}.txt": f"ok {i}\n"} for i in range(10)])
        events: list[dict[str, Any]] = []
        lander = make_lander(repo, tmp_path / f"run{batch_max}", batch_max=batch_max,
                             events=events)
        results = lander.land_batch(requests(commits))
        assert [r.outcome for r in results] == ["landed"] * 10
        assert landed_trailers(repo, base) == [f"tm-{i}" for i in range(10)]
        assert [r.commit for r in results] == target_commits(repo, base)
        assert git(repo, "status", "--porcelain") == ""  # the checkout moved with main
        assert (repo / "t9.txt").read_text() == "ok 9\n"
        runs[batch_max] = lander.check_runs
        if batch_max == 5:
            assert [e["tasks"] for e in events if e["event"] == "batch_landed"] == [
                [f"tm-{i}" for i in range(5)], [f"tm-{i}" for i in range(5, 10)]]
            assert [e["base"] for e in events if e["event"] == "batch_started"] == [
                base, results[4].commit]
            assert not [e for e in events if e["event"] == "bisect_step"]
    assert runs == {1: 10, 5: 2}
    assert runs[1] / runs[5] >= 3


def test_a_red_batch_is_bisected_and_only_the_culprit_goes_back(template: Path,
                                                                 tmp_path: Path) -> None:
    repo = copy_repo(template, tmp_path / "repo")
    base = git(repo, "rev-parse", "main")
    commits = make_branches(repo, [{"t0.txt": "ok\n"}, {"t1.txt": "ok\n"},
                                   {"t2.txt": "BAD\n"}, {"t3.txt": "ok\n"}])
    events: list[dict[str, Any]] = []
    lander = make_lander(repo, tmp_path / "run", batch_max=5, flaky_retries=1, events=events)
    results = lander.land_batch(requests(commits))
    assert outcomes(results) == {"tm-0": "landed", "tm-1": "landed", "tm-2": "checks_failed",
                                 "tm-3": "landed"}
    culprit = results[2]
    assert "BAD in t2.txt" in culprit.detail and culprit.combined_with == []
    assert culprit.checks is not None and not culprit.checks.ok
    assert landed_trailers(repo, base) == ["tm-0", "tm-1", "tm-3"]
    assert all(is_green(tree_files(repo, c)) for c in target_commits(repo, base))
    # runs: the batch (red), its retry (red), [0,1] (green, lands), [2,3] is the batch's tree
    # (cached red), [2] on 0+1 (red: the culprit), [3] on 0+1 (green) -- 5 runs for 4
    assert lander.check_runs == 5
    checks = [(e["cached"], e["passed"]) for e in events if e["event"] == "batch_checks"]
    assert checks == [(False, False), (False, False), (False, True), (True, False),
                      (False, False), (False, True)]
    assert [(e["tested"], e["passed"]) for e in events if e["event"] == "bisect_step"] == [
        (["tm-0", "tm-1"], True), (["tm-2", "tm-3"], False), (["tm-2"], False),
        (["tm-3"], True)]
    assert [e["tasks"] for e in events if e["event"] == "batch_landed"] == [
        ["tm-0", "tm-1"], ["tm-3"]]


def test_a_culprit_that_fails_only_in_combination_names_the_others(template: Path,
                                                                   tmp_path: Path) -> None:
    """Its worker found its branch green (handed over with ``remember``): the culprit is told
    it fails only in combination, with the tasks landed since its branch was cut; no check
    runs for that. Without it, the culprit is told of the failure only."""
    for known in (True, False):
        repo = copy_repo(template, tmp_path / f"repo{known}")
        commits = make_branches(repo, [{"m0a": "x\n"}, {"t1.txt": "ok\n"}, {"m0b": "y\n"}])
        lander = make_lander(repo, tmp_path / f"run{known}", batch_max=3)
        if known:
            for commit in commits:  # what the workers' own checks found
                result = ChecksResult([CheckRun(CHECK, 0, 0.1, "")])
                lander.remember(git(repo, "rev-parse", f"{commit}^{{tree}}"), [CHECK], result)
        results = lander.land_batch(requests(commits))
        assert outcomes(results) == {"tm-0": "landed", "tm-1": "landed",
                                     "tm-2": "checks_failed"}
        assert "m0a and m0b together" in results[2].detail
        # the batch (red), [0] (green: tm-0's own tree, known when remembered), [1 2] is the
        # batch's tree (red), [1] on 0 (green), [2] on 0 1 is the batch's tree again (red)
        assert lander.check_runs == (2 if known else 3)
        if known:
            assert results[2].combined_with == ["tm-0", "tm-1"]
            assert "pass on this task's branch alone" in results[2].detail
            assert "tm-0, tm-1" in results[2].detail
        else:
            assert results[2].combined_with == []


def test_a_task_whose_own_checks_were_the_project_checks_is_not_checked_again(
        template: Path, tmp_path: Path) -> None:
    repo = copy_repo(template, tmp_path / "repo")
    commit = make_branches(repo, [{"t0.txt": "ok\n"}])[0]
    lander = make_lander(repo, tmp_path / "run", batch_max=3)
    tree = git(repo, "rev-parse", f"{commit}^{{tree}}")
    lander.remember(tree, ["other check"], ChecksResult([CheckRun("other check", 0, 0.1, "")]))
    lander.remember(tree, [CHECK], ChecksResult([CheckRun(CHECK, None, 0.1, "", cancelled=True)]))
    assert lander.cache.get(cache_key(tree, [CHECK], lander.queue.check_env)) is None
    lander.remember(tree, [CHECK], ChecksResult([CheckRun(CHECK, 0, 0.1, "")]))
    # the branch was cut from the target's tip: landing it checks the very same tree
    assert lander.land_batch(requests([commit]))[0].outcome == "landed"
    assert lander.check_runs == 0


def test_a_conflict_removes_just_that_branch_and_names_the_files(template: Path,
                                                                 tmp_path: Path) -> None:
    repo = copy_repo(template, tmp_path / "repo")
    commits = make_branches(repo, [{"shared0.txt": "zero\n", "t0.txt": "ok\n"},
                                   {"shared0.txt": "one\n", "shared1.txt": "one\n"},
                                   {"t2.txt": "ok\n"}, {"t0.txt": "ok\n"}])
    lander = make_lander(repo, tmp_path / "run", batch_max=5)
    results = lander.land_batch(requests(commits))
    assert outcomes(results) == {"tm-0": "landed", "tm-1": "conflict", "tm-2": "landed",
                                 "tm-3": "satisfied"}
    assert "conflicts with the target in shared0.txt" in results[1].detail
    assert "tm-0" in results[1].detail  # landed just ahead of it
    assert results[3].commit == results[2].commit  # satisfied by what the target holds
    assert lander.check_runs == 1


def test_a_conflict_with_a_culprit_is_decided_again(template: Path, tmp_path: Path) -> None:
    """B conflicts with A, but A does not land: a one-at-a-time queue lands B."""
    repo = copy_repo(template, tmp_path / "repo")
    commits = make_branches(repo, [{"shared0.txt": "a\n", "t0.txt": "BAD\n"},
                                   {"shared0.txt": "b\n"}])
    results = make_lander(repo, tmp_path / "run", batch_max=2).land_batch(requests(commits))
    assert outcomes(results) == {"tm-0": "checks_failed", "tm-1": "landed"}


def test_a_flaky_failure_is_retried_and_the_batch_lands(template: Path, tmp_path: Path) -> None:
    repo = copy_repo(template, tmp_path / "repo")
    commits = make_branches(repo, [{"t0.txt": "ok\n"}, {"t1.txt": "ok\n"}])
    flag = tmp_path / "failed-once"
    flaky = f'if [ ! -e {flag} ]; then touch {flag}; echo flaky; exit 1; fi'
    events: list[dict[str, Any]] = []
    lander = make_lander(repo, tmp_path / "run", batch_max=5, flaky_retries=1,
                         checks=[flaky, "sh check.sh"], events=events)
    results = lander.land_batch(requests(commits))
    assert outcomes(results) == {"tm-0": "landed", "tm-1": "landed"}
    assert [(e["retry"], e["passed"]) for e in events if e["event"] == "batch_checks"] == [
        (0, False), (1, True)]
    flag.unlink()
    # without retries the red verdict is taken at its word: the batch is bisected, tm-0
    # lands, and tm-1 on tm-0 is the batch's tree (red): tm-1 goes back
    repo = copy_repo(template, tmp_path / "repo2")
    commits = make_branches(repo, [{"t0.txt": "ok\n"}, {"t1.txt": "ok\n"}])
    lander = make_lander(repo, tmp_path / "run2", batch_max=5, flaky_retries=0,
                         checks=[flaky, "sh check.sh"])
    results = lander.land_batch(requests(commits))
    assert outcomes(results) == {"tm-0": "landed", "tm-1": "checks_failed"}
    assert "flaky" in results[1].detail
    assert lander.check_runs == 2


def test_a_tree_already_checked_is_not_checked_again(template: Path, tmp_path: Path) -> None:
    """The check cache: a batch whose combined tree a previous lander found green (kept on
    disk) lands without a run; a red verdict is kept in memory only."""
    cache_file = tmp_path / "run" / "check-cache.json"
    first = copy_repo(template, tmp_path / "first")
    second = copy_repo(template, tmp_path / "second")
    specs = [{"t0.txt": "ok\n"}, {"t1.txt": "ok\n"}]
    lander = make_lander(first, tmp_path / "run", batch_max=5, cache=CheckCache(cache_file))
    lander.land_batch(requests(make_branches(first, specs)))
    assert lander.check_runs == 1
    events: list[dict[str, Any]] = []
    again = make_lander(second, tmp_path / "run", batch_max=5, cache=CheckCache(cache_file),
                        events=events)
    assert outcomes(again.land_batch(requests(make_branches(second, specs)))) == {
        "tm-0": "landed", "tm-1": "landed"}
    assert again.check_runs == 0
    assert [(e["cached"], e["passed"]) for e in events if e["event"] == "batch_checks"] == [
        (True, True)]


def test_check_cache_keys_and_persistence(tmp_path: Path) -> None:
    env = {"PATH": "/bin"}
    assert cache_key("t", ["a"], env) != cache_key("t", ["a", "b"], env)
    assert cache_key("t", ["a"], env) != cache_key("t", ["a"], {"PATH": "/usr/bin"})
    assert cache_key("t", ["ab"], env) != cache_key("t", ["a", "b"], env)
    path = tmp_path / "cache.json"
    cache = CheckCache(path)
    cache.put("green", Verdict(True))
    cache.put("red", Verdict(False, "boom"))
    assert cache.get("red") == Verdict(False, "boom")
    reloaded = CheckCache(path)
    assert reloaded.get("green") == Verdict(True) and reloaded.get("red") is None
    path.write_text("{not json", encoding="utf-8")
    assert CheckCache(path).get("green") is None  # a damaged cache is an empty one


def test_a_stopped_run_leaves_the_batch_undecided(template: Path, tmp_path: Path) -> None:
    import threading

    repo = copy_repo(template, tmp_path / "repo")
    base = git(repo, "rev-parse", "main")
    commits = make_branches(repo, [{"t0.txt": "ok\n"}, {"t1.txt": "ok\n"}])
    lander = make_lander(repo, tmp_path / "run", batch_max=5)
    lander.queue.cancel = threading.Event()
    lander.queue.cancel.set()
    results = lander.land_batch(requests(commits))
    assert [r.outcome for r in results] == ["interrupted", "interrupted"]
    assert git(repo, "rev-parse", "main") == base


def test_a_task_in_a_batch_twice_is_refused(template: Path, tmp_path: Path) -> None:
    repo = copy_repo(template, tmp_path / "repo")
    commit = make_branches(repo, [{"t0.txt": "ok\n"}])[0]
    lander = make_lander(repo, tmp_path / "run", batch_max=5)
    with pytest.raises(ValueError, match="given twice: tm-0"):
        lander.land_batch([*requests([commit]), *requests([commit])])


def test_the_lander_checkout_is_rebuilt_when_broken(template: Path, tmp_path: Path) -> None:
    repo = copy_repo(template, tmp_path / "repo")
    commits = make_branches(repo, [{"t0.txt": "ok\n"}, {"t1.txt": "BAD\n"}])
    lander = make_lander(repo, tmp_path / "run", batch_max=1)
    assert lander.land_batch(requests(commits[:1]))[0].outcome == "landed"
    checkout = repo / ".git" / "taskmill" / "lander"
    (checkout / ".git").unlink()
    (checkout / "stray.txt").write_text("x", encoding="utf-8")
    assert lander.land_batch(requests(commits)[1:])[0].outcome == "checks_failed"
    assert (checkout / ".git").is_file() and not (checkout / "stray.txt").exists()
    assert git(repo, "status", "--porcelain") == ""


def test_conflict_files_are_read_from_merge_tree_output() -> None:
    out = ("abc\n100644 1111 1\tf\n100644 2222 2\tf\n100644 3333 3\tsub/g h\n\n"
           "CONFLICT (content): Merge conflict in f\n")
    assert conflict_files(out) == ["f", "sub/g h"]


# -- [merge] in the config -------------------------------------------------------------------


def test_merge_table_has_every_merge_setting() -> None:
    import dataclasses

    assert set(MergeTable.model_fields) == {f.name for f in dataclasses.fields(MergeSettings)}


def test_merge_config_is_checked_and_read() -> None:
    assert check_config({"prefix": "tm", "merge": {"batch-max": 3, "batch_wait": 0,
                                                   "flaky_retries": 0}}) == []
    problems = check_config({"prefix": "tm", "merge": {"batch_max": 0, "batch_wait": -1,
                                                       "flaky_retries": 1.5, "batchmax": 2}})
    assert "[merge] batch_max must be at least 1, got 0" in problems
    assert "[merge] batch_wait must be at least 0.0, got -1" in problems
    assert "[merge] flaky_retries must be an integer, got 1.5" in problems
    assert any("'batchmax' (did you mean 'batch_max'?)" in p for p in problems)
    config = config_from_toml({"prefix": "tm", "merge": {"batch-max": 3, "batch_wait": 2.5}})
    assert MergeSettings.from_config(config.merge) == MergeSettings(3, 2.5, 1)
    assert MergeSettings.from_config({}) == MergeSettings(batch_max=5, batch_wait=0.0,
                                                          flaky_retries=1, speculate="auto")
    for value in ("auto", True, False):
        assert check_config({"prefix": "tm", "merge": {"speculate": value}}) == []
        config = config_from_toml({"prefix": "tm", "merge": {"speculate": value}})
        assert MergeSettings.from_config(config.merge).speculate == value
    for bad in ("yes", 1, "on"):
        assert any("[merge] speculate" in p
                   for p in check_config({"prefix": "tm", "merge": {"speculate": bad}})), bad
    with pytest.raises(ValueError, match="speculate must be"):
        MergeSettings(speculate="yes")
    # the commented template, uncommented, is a valid [merge] table
    import tomllib

    lines = DEFAULT_CONFIG.split("# [merge]", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    table = tomllib.loads("\n".join(line.removeprefix("# ") for line in lines))
    assert check_config({"prefix": "tm", "merge": table}) == []
    assert set(table) == {"batch_max", "batch_wait", "flaky_retries", "speculate"}


# -- the property: a batching queue lands what a one-at-a-time queue lands -------------------


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[dict[str, str]], int, int, bool]:
    n = draw(st.integers(2, 7))
    index = st.integers(0, n - 1)
    pair = st.tuples(index, index).filter(lambda p: p[0] < p[1])
    bad = draw(st.sets(index, max_size=2))
    together = draw(st.lists(pair, max_size=2))
    conflicting = draw(st.lists(pair, max_size=SHARED))
    copies = draw(st.lists(pair, max_size=1))
    specs: list[dict[str, str]] = [
        {f"t{i}.txt": "BAD\n" if i in bad else f"ok {i}\n"} for i in range(n)]
    for k, (i, j) in enumerate(together):
        specs[i][f"m{k}a"], specs[j][f"m{k}b"] = "a\n", "b\n"
    for k, (i, j) in enumerate(conflicting):
        specs[i][f"shared{k}.txt"], specs[j][f"shared{k}.txt"] = f"from {i}\n", f"from {j}\n"
    for i, j in copies:  # j brings exactly what i brings: nothing to land after i
        specs[j] = dict(specs[i])
    return specs, draw(st.integers(2, 5)), draw(st.integers(0, 1)), draw(st.booleans())


def _run_queue(template: Path, root: Path, specs: list[dict[str, str]], batch_max: int,
               retries: int, speculate: bool = False,
               events: list[dict[str, Any]] | None = None
               ) -> tuple[dict[str, str], int, str, list[str]]:
    repo = copy_repo(template, root / f"repo{batch_max}")
    base = git(repo, "rev-parse", "main")
    commits = make_branches(repo, specs)
    lander = make_lander(repo, root / f"run{batch_max}", batch_max=batch_max,
                         flaky_retries=retries, speculate=speculate, events=events)
    results = lander.land_batch(requests(commits))
    lander.close()
    landed = landed_trailers(repo, base)
    # never a red tree on the target, every task at most once, each landing its result's
    assert all(is_green(tree_files(repo, c)) for c in target_commits(repo, base))
    assert len(landed) == len(set(landed))
    assert landed == [r.task_id for r in results if r.outcome == "landed"]
    assert git(repo, "status", "--porcelain") == ""
    return outcomes(results), lander.check_runs, git(repo, "rev-parse", "main^{tree}"), landed


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(scenario=scenarios())
def test_batching_lands_what_one_at_a_time_lands(
        template: Path, scenario: tuple[list[dict[str, str]], int, int, bool]) -> None:
    """... with speculation too (the next batch checked on top of the one ahead, in
    parallel): the same verdicts, the same target, never a red tree, every task once."""
    specs, batch_max, retries, speculate = scenario
    events: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        root = Path(tmp)
        one, one_runs, one_tree, one_landed = _run_queue(template, root, specs, 1, retries)
        many, many_runs, many_tree, many_landed = _run_queue(template, root, specs, batch_max,
                                                             retries, speculate, events)
    assert many == one  # every task's outcome (landed, satisfied, conflict, checks_failed)
    assert many_landed == one_landed and many_tree == one_tree
    culprits = sum(1 for outcome in one.values() if outcome == "checks_failed")
    batches = math.ceil(len(specs) / batch_max)
    if culprits == 0:  # nothing fails: one run per batch (a speculative one is used)
        assert many_runs <= batches
        assert many_runs <= one_runs
        if speculate:  # every speculation was on a batch that landed whole
            assert not [e for e in events if e["event"] == "speculation_discarded"]
    else:
        # bisection's bound: at most 2m - 1 runs for a batch of m, and its retries; a
        # speculation behind a red batch may have run (at most one per batch)
        wasted = batches if speculate else 0
        assert many_runs <= 2 * len(specs) - batches + retries * batches + wasted
    if not speculate:
        assert not [e for e in events if e["event"].startswith("speculation")]


# -- crash safety: kill -9 during a batch's checks and during its landing --------------------

CHILD = """\
import json, os, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from batch_helpers import make_lander, requests
from taskmill.mill import land

args = json.loads(sys.argv[1])
if args["advance"]:
    original = land.MergeQueue._advance_journaled
    seen = [0]

    def advance(self, old, new, checked_out):
        seen[0] += 1
        if seen[0] == args["advance"] and args["when"] == "before_cas":
            os.kill(os.getpid(), 9)
        moved = original(self, old, new, checked_out)
        if seen[0] == args["advance"] and args["when"] == "after_cas":
            os.kill(os.getpid(), 9)
        return moved

    land.MergeQueue._advance_journaled = advance
lander = make_lander(Path(args["repo"]), Path(args["run"]), batch_max=3,
                     checks=args["checks"])
lander.land_batch(requests(args["commits"], resumed=True))
print("finished")
"""

CRASH_SPECS = [{"t0.txt": "ok\n"}, {"t1.txt": "ok\n"}, {"t2.txt": "ok\n"}, {"t3.txt": "ok\n"},
               {"t4.txt": "BAD\n"}, {"t5.txt": "ok\n"}, {"t6.txt": "ok\n"}]
"""Batches of 3: [0 1 2] lands (check run 1, advance 1); [3 4 5] is red (run 2), [3] lands
(run 3, advance 2), [4] is the culprit (run 4), [5] lands (run 5, advance 3); [6] (run 6,
advance 4)."""


@pytest.mark.parametrize(("kill_run", "advance", "when", "before"), [
    (2, 0, "", 3),  # the second batch's checks
    (4, 0, "", 4),  # during its bisection, after [3] landed
    (0, 1, "before_cas", 0),  # landing the first batch: journal written, target not moved
    (0, 2, "after_cas", 4),  # landing a bisected part: target moved, journal still there
    (0, 4, "after_cas", 7),  # the last batch
], ids=["checks", "bisection-checks", "landing-before-cas", "bisect-landing-after-cas",
        "last-landing-after-cas"])
def test_a_killed_batch_lands_each_task_exactly_once_when_run_again(
        template: Path, tmp_path: Path, kill_run: int, advance: int, when: str,
        before: int) -> None:
    import json
    import subprocess
    import sys

    repo = copy_repo(template, tmp_path / "repo")
    base = git(repo, "rev-parse", "main")
    commits = make_branches(repo, CRASH_SPECS)
    counter = tmp_path / "check-runs"
    killer = (f'n=$(( $(cat {counter} 2>/dev/null || echo 0) + 1 )); echo $n > {counter}; '
              f'if [ $n -eq {kill_run} ]; then kill -9 $PPID; exit 1; fi')
    checks = [killer, "sh check.sh"]
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(Path(__file__).parent)), encoding="utf-8")
    args = {"repo": str(repo), "run": str(tmp_path / "run"), "commits": commits,
            "checks": checks, "advance": advance, "when": when}
    proc = subprocess.run([sys.executable, str(script), json.dumps(args)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == -9, proc.stdout + proc.stderr
    landed_before = landed_trailers(repo, base)
    assert landed_before == [f"tm-{i}" for i in range(before) if i != 4]
    # run again (a new run takes the tasks over): what landed is found by its trailer
    lander = make_lander(repo, tmp_path / "run", batch_max=3, checks=checks)
    results = lander.land_batch(requests(commits, resumed=True))
    assert {r.task_id for r in results if r.outcome == "already_landed"} == set(landed_before)
    assert outcomes(results)["tm-4"] == "checks_failed"
    landed = landed_trailers(repo, base)
    assert sorted(landed) == ["tm-0", "tm-1", "tm-2", "tm-3", "tm-5", "tm-6"]
    assert all(is_green(tree_files(repo, c)) for c in target_commits(repo, base))
    # the user's checkout is on main, at main, clean; no journal is left
    assert git(repo, "symbolic-ref", "HEAD") == "refs/heads/main"
    assert git(repo, "status", "--porcelain") == ""
    assert not (tmp_path / "run" / "advance.json").exists()


# -- the landing queue: workers park branches, one thread lands them in batches ---------------


def test_branches_parked_while_a_batch_lands_form_the_next_batch(template: Path,
                                                                 tmp_path: Path) -> None:
    import threading
    import time

    from taskmill.mill.landing_queue import LandingQueue

    repo = copy_repo(template, tmp_path / "repo")
    commits = make_branches(repo, [{f"t{i}.txt": "ok\n"} for i in range(4)])
    hold, holding = tmp_path / "hold", tmp_path / "holding"
    hold.touch()
    # the first batch's checks wait until the test lets them go
    gate = (f"if [ -e {hold} ]; then touch {holding}; "
            f"while [ -e {hold} ]; do sleep 0.02; done; fi")
    events: list[dict[str, Any]] = []
    lander = make_lander(repo, tmp_path / "run", batch_max=5, checks=[gate, "sh check.sh"],
                         events=events)
    queue = LandingQueue(lander)
    thread = threading.Thread(target=queue.run)
    thread.start()
    try:
        reqs = requests(commits)
        first = queue.submit(reqs[0])
        deadline = time.monotonic() + 30
        while not holding.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        rest = [queue.submit(r) for r in reqs[1:]]  # parked: the workers are free
        assert queue.waiting() == ["tm-1", "tm-2", "tm-3"]
        hold.unlink()
        assert first.result(timeout=30).outcome == "landed"
        assert [f.result(timeout=30).outcome for f in rest] == ["landed"] * 3
    finally:
        queue.close()
        thread.join(timeout=30)
    assert [e["tasks"] for e in events if e["event"] == "batch_started"] == [
        ["tm-0"], ["tm-1", "tm-2", "tm-3"]]
    assert lander.check_runs == 2


def test_a_batch_waits_to_fill_up_to_batch_wait(template: Path, tmp_path: Path) -> None:
    import threading
    import time

    from taskmill.mill.batch import BatchLander
    from taskmill.mill.landing_queue import LandingQueue

    repo = copy_repo(template, tmp_path / "repo")
    commits = make_branches(repo, [{f"t{i}.txt": "ok\n"} for i in range(4)])
    events: list[dict[str, Any]] = []
    made = make_lander(repo, tmp_path / "run", batch_max=3, events=events)
    lander = BatchLander(made.queue, settings=MergeSettings(batch_max=3, batch_wait=60),
                         emit=made.emit)
    queue = LandingQueue(lander)
    thread = threading.Thread(target=queue.run)
    thread.start()
    try:
        start = time.monotonic()
        futures = [queue.submit(r) for r in requests(commits)[:3]]
        # a full batch does not wait for batch_wait
        assert [f.result(timeout=30).outcome for f in futures] == ["landed"] * 3
        assert time.monotonic() - start < 30
        last = queue.submit(requests(commits)[3])
        time.sleep(0.3)
        assert not last.done()  # waiting for the batch to fill
    finally:
        queue.close()
        thread.join(timeout=30)
    assert last.result(timeout=1).outcome == "interrupted"
    assert [e["tasks"] for e in events if e["event"] == "batch_started"] == [
        ["tm-0", "tm-1", "tm-2"]]
