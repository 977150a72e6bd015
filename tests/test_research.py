"""Research mode (issue 14): the config, the metric's figures, the loop on the shipped example,
noise, several workers, contributions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from research_helpers import (
    KNOB_METRIC,
    PY,
    ResearchRepo,
    example_edits,
    example_files,
    verdicts,
)
from taskmill.errors import ConfigError, InvalidInput
from taskmill.research.config import ResearchConfig, load_research_config, parse_duration
from taskmill.research.digest import TSV_COLUMNS
from taskmill.research.gitops import matches, outside
from taskmill.research.measure import parse_output
from taskmill.research.records import BASELINE, CRASH, DISCARD, EXPERIMENT, KEEP

EXAMPLE_RESEARCH = {
    "branch": "research/sort", "metric": f"{PY} bench.py", "direction": "minimize",
    "editable": ["sortlib.py"], "experiment_timeout": "60s", "workers": 1,
    "agent": "scripted-research", "program": "program.md", "baseline_runs": 2,
    "accept": "2sigma", "verify_runs": 1, "stop": {"experiments": 6},
}


# -- the config ----------------------------------------------------------------------------


def test_config_takes_exactly_the_issue_keys(tmp_path: Path) -> None:
    path = tmp_path / "research.toml"
    path.write_text('metric = "python bench.py"\nexperiment_timeout = "5m"\naccept = 0.001\n'
                    'stop = { experiments = 200, hours = 8, cost = 50.0, no_improvement = 40 }\n')
    config = load_research_config(path)
    assert config.experiment_timeout == 300.0
    assert config.threshold(sigma=5.0) == 0.001
    assert config.stop.no_improvement == 40
    assert set(ResearchConfig.model_fields) == {
        "branch", "metric", "direction", "editable", "experiment_timeout", "workers", "agent",
        "program", "baseline_runs", "accept", "verify_runs", "stop"}
    path.write_text('metric = "x"\nworkerz = 4\n')
    with pytest.raises(ConfigError, match=r"unknown key 'workerz' \(did you mean 'workers'"):
        load_research_config(path)
    path.write_text('metric = "x"\nstop = { experimentz = 3 }\n')
    with pytest.raises(ConfigError, match=r"stop\.experimentz"):
        load_research_config(path)
    path.write_text('metric = "x"\naccept = "two sigma"\n')
    with pytest.raises(ConfigError, match="accept"):
        load_research_config(path)


def test_durations_and_sigma_threshold() -> None:
    assert parse_duration("90s") == 90 and parse_duration("1.5h") == 5400
    assert parse_duration("250ms") == 0.25 and parse_duration(12) == 12
    with pytest.raises(ValueError):
        parse_duration("soon")
    config = ResearchConfig(metric="x", accept="3sigma")
    assert config.threshold(2.0) == 6.0
    assert config.better(93.9, 100.0, 2.0) and not config.better(94.0, 100.0, 2.0)
    up = ResearchConfig(metric="x", direction="maximize", accept=0.5)
    assert up.better(10.6, 10.0, 9.0) and not up.better(10.4, 10.0, 0.0)


def test_metric_output_lines_and_json() -> None:
    assert parse_output("loss: 1.5\nmetric: 0.25\nnot a figure\nval_bpb = 3e-2\n") == {
        "loss": 1.5, "metric": 0.25, "val_bpb": 0.03}
    assert parse_output('noise\n{"metric": 2, "memory_gb": 1.5, "name": "x"}\n') == {
        "metric": 2.0, "memory_gb": 1.5}
    assert "metric" not in parse_output("metric: nan\n")


def test_editable_globs() -> None:
    assert matches("src/a/b.py", ["src/**/*.py"]) and matches("src/b.py", ["src/**/*.py"])
    assert not matches("src/b.txt", ["src/**/*.py"]) and not matches("bench.py", ["src/*.py"])
    assert outside(["sortlib.py", "bench.py", "a/sortlib.py"], ["sortlib.py"]) == [
        "bench.py", "a/sortlib.py"]


# -- the loop on the shipped example -------------------------------------------------------


def test_example_known_effects_are_decided_and_recorded(tmp_path: Path) -> None:
    repo = ResearchRepo(tmp_path, example_files(), EXAMPLE_RESEARCH, script=example_edits())
    res, experiments = repo.run()
    assert verdicts(experiments) == {0: BASELINE, 1: DISCARD, 2: KEEP, 3: CRASH, 4: DISCARD,
                                     5: DISCARD, 6: KEEP}
    by_n = {e.n: e for e in experiments}
    assert "not better" in by_n[1].data["reason"]
    assert "outside `editable`: bench.py" in by_n[5].data["reason"]
    assert "RuntimeError" in by_n[3].data["reason"]
    assert by_n[2].data["verified"] < by_n[0].data["metric"]
    assert by_n[6].data["verified"] < by_n[2].data["verified"]
    assert by_n[2].data["figures"]["n"] == 600  # the other printed values are recorded
    assert all(e.data.get("cost_usd") == 0.01 for e in experiments if e.n)
    # the branch holds exactly the kept commits, in order; the user's branch never moved
    assert repo.branch_commits("research/sort") == [by_n[2].data["kept_commit"],
                                                    by_n[6].data["kept_commit"]]
    assert repo.git("rev-parse", "main") == repo.start
    assert repo.git("status", "--porcelain") == ""
    # every experiment's commit stays reachable under refs/taskmill/research
    refs = repo.git("for-each-ref", "--format=%(refname)", "refs/taskmill/research").split()
    assert len(refs) == 6
    # records are ledger tasks of type experiment, never ready, with their audit trail
    with repo.project() as project:
        tasks = project.ledger.list_tasks(issue_type=EXPERIMENT)
        assert {t.status for t in tasks} == {"closed"} and len(tasks) == 7
        assert project.ledger.ready() == []
        events = project.ledger.events(by_n[2].id)
        assert events[0].kind == "created"
        assert events[-1].data["changes"]["status"] == ["in_progress", "closed"]
    # the prompt carried program.md, the best and what was tried
    turns = res.s.turn_runner.turns  # type: ignore[union-attr]
    last = turns[-1].prompt
    assert last.startswith("Make the metric smaller.")
    assert "#1 discard" in last and "bubble sort" in last and "#2 keep" in last


def test_noise_band_nothing_inside_kept_real_improvement_kept(tmp_path: Path) -> None:
    cosmetic = {"append": {"sortlib.py": "\n# idea $n: cosmetic\n"},
                "description": "cosmetic $n"}
    edits = {str(n): cosmetic for n in range(1, 13)}
    edits["7"] = example_edits()["edits"]["2"]  # merge sort: a real improvement
    state = tmp_path / "noise-state"
    research = {**EXAMPLE_RESEARCH, "metric":
                f"BENCH_NOISE=0.03 BENCH_NOISE_STATE={state} {PY} bench.py",
                "baseline_runs": 5, "verify_runs": 2, "stop": {"experiments": 12}}
    repo = ResearchRepo(tmp_path, example_files(), research, script={"edits": edits})
    _res, experiments = repo.run()
    by_n = {e.n: e for e in experiments}
    sigma = by_n[0].data["sigma"]
    assert sigma > 0 and len(by_n[0].data["runs"]) == 5
    assert {n for n, v in verdicts(experiments).items() if v == KEEP} == {7}
    # the noise really moved the cosmetic ones' figures, yet none was kept
    cosmetic_values = {by_n[n].data["metric"] for n in range(1, 7)}
    assert len(cosmetic_values) == 6
    assert repo.branch_commits("research/sort") == [by_n[7].data["kept_commit"]]


def test_four_workers_keep_history_linear_and_every_kept_commit_good(tmp_path: Path) -> None:
    knobs = {f"knobs/k{i}.txt": "100\n" for i in range(6)}
    files = {"metric.py": KNOB_METRIC, **knobs}
    edits: dict[str, dict[str, object]] = {}
    for n in range(1, 17):
        knob = n % 6
        value = 100 - 5 * n if n % 3 else 100 + n  # two in three improve, one regresses
        edits[str(n)] = {"files": {f"knobs/k{knob}.txt": f"{value}\n"},
                         "description": f"knob {knob} -> {value}"}
    research = {"branch": "research/knobs", "metric": f"KNOB_SLEEP=0.05 {PY} metric.py",
                "editable": ["knobs/*.txt"], "agent": "scripted-research", "workers": 4,
                "baseline_runs": 2, "accept": 0.5, "verify_runs": 1,
                "stop": {"experiments": 16}}
    repo = ResearchRepo(tmp_path, files, research, script={"edits": edits})
    _res, experiments = repo.run()
    assert sorted(e.n for e in experiments) == list(range(17))
    assert all(e.done for e in experiments)
    kept = [e for e in experiments if e.verdict == KEEP]
    commits = repo.branch_commits("research/knobs")
    assert len(commits) == len(kept) >= 3
    assert set(commits) == {e.data["kept_commit"] for e in kept}
    assert repo.git("rev-list", "--merges", "refs/heads/research/knobs") == ""
    metric = [PY, "metric.py"]
    previous = repo.measure_commit(repo.start, metric)
    for commit in commits:
        value = repo.measure_commit(commit, metric)
        assert value < previous, f"{commit} measures {value}, its parent {previous}"
        previous = value
    replayed = [e for e in kept if e.data["decided_on"] != e.data["parent"]]
    regressions = [e for e in experiments if e.n and e.n % 3 == 0]
    assert all(e.verdict != KEEP for e in regressions)
    assert replayed, "with 4 workers some candidate was cut from an older best"


# -- contributions ---------------------------------------------------------------------------


def _patch(repo: ResearchRepo, changes: dict[str, str]) -> str:
    for name, text in changes.items():
        (repo.root / name).write_text(text, encoding="utf-8")
    diff = repo.git("diff")
    repo.git("checkout", "--", ".")
    return diff + "\n"


def test_contributions_are_verified_before_being_believed(tmp_path: Path) -> None:
    research = {**EXAMPLE_RESEARCH, "stop": {"experiments": 1}}
    edits = {"1": {"append": {"sortlib.py": "\n# nothing\n"}, "description": "no-op"}}
    repo = ResearchRepo(tmp_path, example_files(), research, script={"edits": edits})
    repo.run()
    merge = example_edits()["edits"]["2"]["files"]["sortlib.py"]
    good = _patch(repo, {"sortlib.py": merge})
    outside_patch = _patch(repo, {"bench.py": "print('metric: 1')\n"})
    cosmetic = _patch(repo, {"sortlib.py": (repo.root / "sortlib.py").read_text() + "# x\n"})
    before = repo.git("rev-parse", "refs/heads/research/sort")

    # a false claim: the change does nothing, the claim says 10x better
    false = repo.cli("research", "submit", "-", "--claimed", "8000", "--contributor", "mallory",
                     "--json", input_text=cosmetic)
    assert false.returncode == 1, false.stderr
    data = json.loads(false.stdout)
    assert data["verdict"] == DISCARD and data["claimed"] == 8000
    assert data["contributor"] == "mallory" and data["verified"] > 80000
    assert "did not reproduce" in data["reason"] and "89222" in data["reason"]
    # outside editable: rejected before measuring
    out = repo.cli("research", "submit", "-", "--json", input_text=outside_patch)
    assert out.returncode == 1
    assert "outside `editable`: bench.py" in json.loads(out.stdout)["reason"]
    assert repo.git("rev-parse", "refs/heads/research/sort") == before
    # a true one (its claim reproduces): kept on taskmill's own measurement
    (tmp_path / "good.patch").write_text(good)
    ok = repo.cli("research", "submit", str(tmp_path / "good.patch"), "--claimed", "4800",
                  "--contributor", "alice", "--json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    kept = json.loads(ok.stdout)
    assert kept["verdict"] == KEEP and kept["verified"] == 4800 and kept["claimed"] == 4800
    assert repo.git("rev-parse", "refs/heads/research/sort") == kept["kept_commit"]
    # a claim better than what the change does is rejected with both figures
    binary = example_edits()["edits"]["6"]["files"]["sortlib.py"]
    overclaim = _patch(repo, {"sortlib.py": binary})
    repo.git("checkout", "-q", "--detach", kept["kept_commit"])  # patch made on the best
    overclaim = _patch(repo, {"sortlib.py": binary})
    repo.git("checkout", "-q", "main")
    over = repo.cli("research", "submit", "-", "--claimed", "100", "--json",
                    input_text=overclaim)
    assert over.returncode == 1
    reason = json.loads(over.stdout)["reason"]
    assert "claim does not reproduce: claimed 100, measured 4708" in reason
    # a patch that does not apply is refused with why
    bad = repo.cli("research", "submit", "-", input_text="--- a/nope\n+++ b/nope\n@@ -1 +1 @@\n-x\n+y\n")
    assert bad.returncode == 1 and "does not apply" in bad.stdout
    log = repo.cli("research", "log", "--tsv")
    header, *rows = log.stdout.splitlines()
    assert tuple(header.split("\t")) == TSV_COLUMNS
    assert header.startswith("commit\tmetric\tmemory_gb\tstatus\tdescription")
    assert len(rows) == 7 and [r.split("\t")[3] for r in rows].count("keep") == 2


def test_submit_without_a_baseline_says_what_to_do(tmp_path: Path) -> None:
    repo = ResearchRepo(tmp_path, example_files(), EXAMPLE_RESEARCH)
    with repo.project() as project, pytest.raises(InvalidInput, match="no baseline"):
        repo.research(project).submit("x")


def test_cli_init_status_and_errors(tmp_path: Path) -> None:
    repo = ResearchRepo(tmp_path, example_files(), EXAMPLE_RESEARCH)
    (repo.root / "research.toml").unlink()
    (repo.root / "program.md").unlink()
    missing = repo.cli("research", "status")
    assert missing.returncode == 2 and "research init" in missing.stderr
    done = repo.cli("research", "init")
    assert done.returncode == 0, done.stderr
    text = (repo.root / "research.toml").read_text()
    for key in ResearchConfig.model_fields:
        assert f"\n{key} =" in "\n" + text
    assert (repo.root / "program.md").is_file()
    again = repo.cli("research", "init")
    assert again.returncode == 2 and "already exist" in again.stderr
    repo.write_research({**EXAMPLE_RESEARCH, "branch": "main"})
    refused = repo.cli("research", "run")
    assert refused.returncode == 2 and "never moves your branch" in refused.stderr
    status = repo.cli("research", "status", "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["experiments"] == 0


def test_json_api_research_view_and_submit(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from taskmill.web.app import create_app

    research = {**EXAMPLE_RESEARCH, "stop": {"experiments": 2}}
    edits = example_edits()["edits"]
    repo = ResearchRepo(tmp_path, example_files(), research,
                        script={"edits": {"1": edits["1"], "2": edits["2"]}})
    repo.run()
    binary = edits["6"]["files"]["sortlib.py"]
    with repo.project() as project:
        tip = project.ledger.get(repo.research(project).log.id_of(2)).metadata
    assert tip is not None
    repo.git("checkout", "-q", "--detach", tip["research"]["kept_commit"])
    patch = _patch(repo, {"sortlib.py": binary})
    repo.git("checkout", "-q", "main")
    app = create_app(repo.root, repo.env, token="t", allowed_hosts=None)
    with TestClient(app, headers={"Authorization": "Bearer t"}) as http:
        view = http.get("/api/research").json()
        assert view["status"]["kept"] == 1 and view["status"]["experiments"] == 2
        assert [e["verdict"] for e in view["experiments"]] == [BASELINE, DISCARD, KEEP]
        diff = http.get("/api/research/experiments/2/diff").json()
        assert diff["diff"].startswith("diff --git a/sortlib.py") and "Merge sort" in diff["diff"]
        bad = http.post("/api/research/submit", json={"patch": patch, "claimed": "fast"})
        assert bad.status_code == 400
        lie = http.post("/api/research/submit",
                        json={"patch": patch, "claimed": 10.0, "contributor": "eve"}).json()
        assert lie["verdict"] == DISCARD and lie["contributor"] == "eve"
        assert lie["verified"] == 4708 and "claimed 10" in lie["reason"]
        true = http.post("/api/research/submit",
                         json={"patch": patch, "claimed": 4708, "contributor": "bob"}).json()
        assert true["verdict"] == KEEP and true["verified"] == 4708
    assert repo.git("rev-parse", "refs/heads/research/sort") == true["kept_commit"]


SLOW_METRIC = """\
import pathlib, time
if pathlib.Path("slow.txt").exists():
    time.sleep(30)
print("metric: " + pathlib.Path("score.txt").read_text().strip())
"""


def _score_repo(tmp_path: Path, edits: dict[str, object], **research: object) -> ResearchRepo:
    config = {"branch": "research/score", "metric": f"{PY} metric.py",
              "editable": ["score.txt", "slow.txt"], "agent": "scripted-research",
              "baseline_runs": 1, "accept": 0.5, "verify_runs": 1, **research}
    return ResearchRepo(tmp_path, {"metric.py": SLOW_METRIC, "score.txt": "100\n"}, config,
                        script={"edits": edits})


def test_a_metric_over_the_timeout_is_killed_and_recorded_as_a_crash(tmp_path: Path) -> None:
    edits = {"1": {"files": {"slow.txt": "x"}, "description": "slow"},
             "2": {"files": {"score.txt": "90\n"}, "description": "better"}}
    repo = _score_repo(tmp_path, edits, experiment_timeout="1s", stop={"experiments": 2})
    _res, experiments = repo.run()
    by_n = {e.n: e for e in experiments}
    assert by_n[1].verdict == CRASH and "timed out after 1s" in by_n[1].data["reason"]
    assert by_n[2].verdict == KEEP and by_n[2].data["verified"] == 90


@pytest.mark.parametrize(("stop", "why", "count"), [
    ({"no_improvement": 2, "experiments": 9}, "no_improvement", 3),
    ({"cost": 0.025, "experiments": 9}, "cost", 3),
    ({"experiments": 2}, "experiments", 2),
])
def test_stop_conditions(tmp_path: Path, stop: dict[str, object], why: str, count: int) -> None:
    edits: dict[str, object] = {
        "1": {"files": {"score.txt": "90\n"}, "description": "better", "cost_usd": 0.01}}
    edits.update({str(n): {"files": {"score.txt": f"{100 + n}\n"}, "description": f"worse {n}",
                           "cost_usd": 0.01} for n in range(2, 10)})
    repo = _score_repo(tmp_path, edits, stop=stop)
    with repo.project() as project:
        res = repo.research(project)
        report = res.run()
        assert report.stopped_by == why
        assert len(res.log.all()) == count + 1


def test_the_loop_runs_on_the_memory_store(tmp_path: Path) -> None:
    """Experiments are records through the Ledger's verbs only: any store holds them."""
    from taskmill.clock import FixedClock
    from taskmill.ledger import Ledger
    from taskmill.ledger.memory import MemoryStore
    from taskmill.project import Project
    from taskmill.research.session import open_research
    from taskmill.testing.research_agent import research_step
    from taskmill.testing.turns import ScriptedTurns

    edits = {"1": {"files": {"score.txt": "90\n"}, "description": "better"},
             "2": {"files": {"score.txt": "95\n"}, "description": "worse"}}
    repo = _score_repo(tmp_path, edits, stop={"experiments": 2})
    with repo.project() as on_disk:
        clock = FixedClock(step=0.001)
        ledger = Ledger(MemoryStore(), prefix="tm", clock=clock, actor="tester")
        project = Project(on_disk.paths, on_disk.config, ledger)
        res = open_research(project, repo.env, clock=clock,
                            turn_runner=ScriptedTurns(research_step(repo.script)))
        res.run()
        assert verdicts(res.log.all()) == {0: BASELINE, 1: KEEP, 2: DISCARD}
        assert on_disk.ledger.list_tasks(issue_type=EXPERIMENT) == []
