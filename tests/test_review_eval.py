"""``taskmill review eval``: the shipped dataset, a scripted reviewer whose choices are known
(it finds some labelled bugs exactly, misses the others, adds false findings), and the
precision / recall / F1 and hit rates those choices imply, exactly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from taskmill.errors import InvalidInput
from taskmill.review.dataset import added_lines, mutate
from taskmill.review.evaluate import Bug, Case, load_dataset, score
from taskmill.review.findings import Finding

PY = sys.executable

REVIEWER = """#!{py}
import json, os, sys
prompt = sys.stdin.read()
case = prompt.splitlines()[0].split(": ")[1]
answers = json.load(open(os.environ["ANSWERS"]))
print(json.dumps({{"findings": answers.get(case, [])}}))
"""


def finding(file: str, line: int, severity: str, confidence: float) -> dict[str, object]:
    return {"file": file, "line_start": line, "line_end": line, "severity": severity,
            "confidence": confidence, "title": "t", "explanation": "e"}


def test_the_shipped_dataset_is_real_history_with_labelled_mutations() -> None:
    cases = load_dataset("humanize")
    mutated = [c for c in cases if c.bugs]
    assert len(cases) == 40 and len(mutated) == 20
    for case in mutated:
        [bug] = case.bugs
        # the labelled line is an added line of the diff (a dropped check: the line after)
        lines = {(line.file, line.new_line) for line in added_lines(case.diff)}
        assert (bug.file, bug.line) in lines or bug.kind == "dropped_check", case.id
        assert bug.severity in ("blocker", "major")
    assert {c.bugs[0].kind for c in mutated} <= {"inverted_condition", "off_by_one",
                                                   "wrong_variable", "dropped_check"}


def test_a_mutation_changes_one_added_line_and_labels_it() -> None:
    import random

    diff = ("diff --git a/m.py b/m.py\n--- a/m.py\n+++ b/m.py\n@@ -1,2 +1,4 @@\n x = 1\n"
            "+if x == 1:\n+    y = x + 2\n y = 0\n")
    done = mutate("c", diff, random.Random(3))
    assert done is not None
    new, label = done
    assert label["file"] == "m.py" and label["line"] in (2, 3)
    changed = [line for line in new.splitlines() if line.startswith("+")
               and line not in diff.splitlines()]
    assert len(changed) == 1 and changed[0][1:] == label["mutated"]


def test_score_counts_per_severity_and_threshold() -> None:
    cases = [Case("a", "", "", (Bug("x.py", 10, "blocker"),)),
             Case("b", "", "", (Bug("y.py", 5, "major"),)), Case("c", "", "", ())]
    answers = {
        "a": [Finding(file="x.py", line_start=8, line_end=9, severity="blocker",
                      confidence=0.9, title="t", explanation="e"),        # true (within 3)
              Finding(file="x.py", line_start=30, line_end=30, severity="nit",
                      confidence=0.2, title="t", explanation="e")],       # false
        "c": [Finding(file="z.py", line_start=1, line_end=1, severity="blocker",
                      confidence=0.6, title="t", explanation="e")],       # false
    }
    report = score(cases, answers)
    rows = {r.name: r for r in report.severities}
    assert (rows["blocker"].precision, rows["blocker"].recall) == (0.5, 1.0)
    assert rows["major"].recall == 0.0 and rows["major"].precision is None
    assert (rows["all"].precision, rows["all"].recall) == (1 / 3, 0.5)
    assert rows["all"].f1 == pytest.approx(0.4)
    at = {r.name: r for r in report.thresholds}
    assert (at["0.0"].findings, at["0.0"].true_findings) == (3, 1)
    assert (at["0.7"].findings, at["0.7"].precision, at["0.7"].recall) == (1, 1.0, 0.5)


def test_a_bad_dataset_says_which_line() -> None:
    with pytest.raises(InvalidInput, match="line 1: not a dataset case"):
        load_dataset(str(Path(__file__)))


def test_review_eval_reports_what_the_scripted_reviewers_choices_imply(tmp_path: Path) -> None:
    cases = load_dataset("humanize")
    mutated = sorted((c for c in cases if c.bugs), key=lambda c: c.id)
    clean = sorted((c for c in cases if not c.bugs), key=lambda c: c.id)
    found, missed = mutated[:12], mutated[12:]
    answers: dict[str, list[dict[str, object]]] = {}
    for case in found:  # exactly the labelled line
        bug = case.bugs[0]
        answers[case.id] = [finding(bug.file, bug.line, bug.severity, 0.9)]
    for case in found[:3]:  # plus a false finding far from it
        bug = case.bugs[0]
        answers[case.id].append(finding(bug.file, bug.line + 100, "nit", 0.2))
    for case in clean[:5]:  # false findings on clean commits
        answers[case.id] = [finding("src/humanize/time.py", 1, "minor", 0.4)]
    assert missed  # ...and nothing at all for the rest

    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run([PY, "-m", "taskmill", "init", "--prefix", "tm"], cwd=repo, check=True,
                   capture_output=True)
    (tmp_path / "answers.json").write_text(json.dumps(answers))
    script = tmp_path / "reviewer.py"
    script.write_text(REVIEWER.format(py=PY))
    script.chmod(0o755)
    config = repo / ".taskmill" / "config.toml"
    config.write_text(config.read_text() + "\n[agents.reviewer]\nadapter = \"exec\"\n"
                      f"command = [{json.dumps(str(script))}]\n"
                      f"env = {{ANSWERS = {json.dumps(str(tmp_path / 'answers.json'))}}}\n")

    proc = subprocess.run([PY, "-m", "taskmill", "review", "eval", "humanize", "--json"],
                          cwd=repo, capture_output=True, text=True, timeout=300)

    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["cases"] == 40 and out["failed"] == {}
    rows = {r["name"]: r for r in out["severities"]}
    # all: 12 true of 12 + 3 + 5 = 20 findings; 12 of the 20 labelled bugs found
    assert (rows["all"]["findings"], rows["all"]["true_findings"]) == (20, 12)
    assert (rows["all"]["precision"], rows["all"]["recall"]) == (0.6, 0.6)
    assert rows["all"]["f1"] == pytest.approx(0.6)
    for severity in ("blocker", "major"):
        labels = sum(1 for c in mutated if c.bugs[0].severity == severity)
        hits = sum(1 for c in found if c.bugs[0].severity == severity)
        assert rows[severity]["labels"] == labels and rows[severity]["found"] == hits
        assert rows[severity]["precision"] == (1.0 if hits else None)
        assert rows[severity]["recall"] == hits / labels
    assert (rows["minor"]["findings"], rows["minor"]["precision"]) == (5, 0.0)
    assert (rows["nit"]["findings"], rows["nit"]["precision"]) == (3, 0.0)
    at = {r["threshold"]: r for r in out["thresholds"]}
    assert (at[0.0]["findings"], at[0.0]["precision"], at[0.0]["recall"]) == (20, 0.6, 0.6)
    assert (at[0.3]["findings"], at[0.3]["true_findings"]) == (17, 12)
    assert (at[0.5]["findings"], at[0.5]["precision"], at[0.5]["recall"]) == (12, 1.0, 0.6)
    assert (at[0.9]["findings"], at[0.9]["precision"]) == (12, 1.0)

    text = subprocess.run([PY, "-m", "taskmill", "review", "eval", "humanize", "--limit", "3"],
                          cwd=repo, capture_output=True, text=True, timeout=120).stdout
    assert "precision" in text and "hit rate" in text and "humanize: 3 cases" in text
