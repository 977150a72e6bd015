"""The review step in the mill (``[review]``): a real ``taskmill run`` with a scripted worker
and a scripted reviewer (exec agents), between the task's checks and the merge queue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mill_helpers import MillRepo, agent_script
from taskmill.review.book import findings
from taskmill.review.log_names import mill_review_log

BAD = "def add(a, b):\n    return a - b\n"
GOOD = "def add(a, b):\n    return a + b\n"

WORKER = """
(WT / "calc.py").write_text({bad!r} if ITER == 1 else {good!r})
"""

REVIEWER = """
import re
diff = PROMPT.split("## The diff against the target", 1)[1].split("## How to answer", 1)[0]
found = []
if "return a - b" in diff:
    found.append({{"file": "calc.py", "line_start": 2, "line_end": 2, "severity": "blocker",
                  "confidence": 0.9, "title": "add subtracts",
                  "explanation": "add returns a - b", "suggested_fix": "return a + b"}})
found.append({{"file": "calc.py", "line_start": 1, "line_end": 1, "severity": "nit",
              "confidence": 0.6, "title": "no docstring", "explanation": "add has none"}})
print({prefix!r} + json.dumps({{"findings": found}}))
"""


def review_repo(tmp_path: Path, review: str, *, reviewer: str = REVIEWER,
                prefix: str = "") -> tuple[MillRepo, str]:
    repo = MillRepo(tmp_path, checks=["python -c 'import calc'"])
    worker = agent_script(tmp_path / "worker.py", WORKER.format(bad=BAD, good=GOOD),
                          spy=repo.spy)
    rev = agent_script(tmp_path / "reviewer.py", reviewer.format(prefix=prefix),
                       spy=tmp_path / "rspy")
    config = repo.root / ".taskmill" / "config.toml"
    config.write_text(config.read_text() + "\n[agents.worker]\nadapter = \"exec\"\n"
                      f"command = {json.dumps([worker])}\n\n[agents.reviewer]\n"
                      f"adapter = \"exec\"\ncommand = {json.dumps([rev])}\n\n[review]\n"
                      + review, encoding="utf-8")
    repo.git("commit", "-qam", "review on")
    return repo, "worker"


def prompts(repo: MillRepo, task: str) -> list[str]:
    return [p.read_text() for p in sorted(repo.spy.glob(f"prompt-{task}-*.stdin"))]


def test_a_blocker_sends_the_task_back_and_the_fixed_iteration_lands(tmp_path: Path) -> None:
    repo, agent = review_repo(tmp_path, 'block_at = { severity = "major", confidence = 0.5 }\n')
    repo.create("tm-a", "add calc.add")

    result = repo.run("--agent", agent)

    assert result.returncode == 0, result.describe()
    assert repo.task("tm-a")["status"] == "closed"
    assert (repo.root / "calc.py").read_text() == GOOD
    attempts = repo.attempts("tm-a")
    assert [a["outcome"] for a in attempts] == ["failed", "passed"]
    assert attempts[0]["detail"]["failure_kind"] == "review"
    assert attempts[0]["detail"]["review"]["blocking"]
    assert attempts[1]["detail"]["review"]["blocking"] == []
    # the second turn was told what the reviewer found
    second = prompts(repo, "tm-a")[1]
    assert "## The reviewer found problems in your change" in second
    assert "add subtracts" in second and "calc.py:2" in second
    # the blocker was fixed and not reported again: resolved; the nit did not block
    fates = {r.finding.title: r for r in findings(repo.ledger, task_id="tm-a")}
    assert fates["add subtracts"].fate == "resolved"
    assert fates["no docstring"].fate == "open" and not fates["no docstring"].blocking
    # the nit is a review comment on the task (once, though reported twice)
    comments = [c for c in repo.task("tm-a")["comments"]
                if c["author"] == "review:reviewer"]
    assert len(comments) == 1 and "no docstring" in comments[0]["text"]
    kinds = [e.kind for e in repo.ledger.events("tm-a")]
    assert kinds.count("review_finished") == 2 and kinds.count("finding_resolved") == 1
    assert len(result.events_of("review_finished", "tm-a")) == 2
    repo.verify_ok()


def test_a_nit_does_not_block(tmp_path: Path) -> None:
    repo, agent = review_repo(tmp_path, 'block_at = { severity = "blocker", confidence = 0.95 }\n')
    repo.create("tm-a", "add calc.add")

    result = repo.run("--agent", agent)

    assert result.returncode == 0, result.describe()
    # the blocker's confidence (0.9) is under block_at's: a comment, it lands at once
    assert [a["outcome"] for a in repo.attempts("tm-a")] == ["passed"]
    assert (repo.root / "calc.py").read_text() == BAD
    comments = [c["text"] for c in repo.task("tm-a")["comments"]
                if c["author"] == "review:reviewer"]
    assert len(comments) == 2 and any("add subtracts" in c for c in comments)


def test_invalid_reviewer_output_is_retried_once(tmp_path: Path) -> None:
    reviewer = """
if "previous answer was not valid" not in PROMPT:
    print("I think it looks fine! {{not json")
else:
    print(json.dumps({{"findings": []}}))
"""
    repo, agent = review_repo(tmp_path, "", reviewer=reviewer)
    repo.create("tm-a", "add calc.add")

    result = repo.run("--agent", agent)

    assert result.returncode == 0, result.describe()
    review: dict[str, Any] = repo.attempts("tm-a")[0]["detail"]["review"]
    assert review["tries"] == 2 and review["reviewer_failed"] is None


def test_a_failed_review_waits_when_configured(tmp_path: Path) -> None:
    reviewer = """
print("no JSON here")
"""
    repo, agent = review_repo(tmp_path, 'on_failure = "wait"\n', reviewer=reviewer)
    repo.create("tm-a", "add calc.add")
    before = repo.tip()

    result = repo.run("--agent", agent)

    task = repo.task("tm-a")
    assert task["status"] == "blocked", result.describe()
    assert "the review failed" in result.stdout + json.dumps(task)
    assert repo.tip() == before  # nothing landed
    assert not (repo.root / "calc.py").exists()
    event = [e for e in repo.ledger.events("tm-a") if e.kind == "review_finished"][-1]
    assert event.data["failed"].startswith("the reviewer's answer was invalid twice")


def test_a_failed_review_proceeds_by_default_and_says_so(tmp_path: Path) -> None:
    repo, agent = review_repo(tmp_path, "", reviewer='\nprint("no JSON here")\n')
    repo.create("tm-a", "add calc.add")

    result = repo.run("--agent", agent)

    assert result.returncode == 0, result.describe()
    assert repo.task("tm-a")["status"] == "closed"
    attempt = repo.attempts("tm-a")[0]
    assert "invalid twice" in attempt["detail"]["review_failed"]


def test_each_review_round_keeps_its_log_after_a_send_back(tmp_path: Path) -> None:
    reviewer = """
print(f"review call {{CALL}}")
print(json.dumps({{"findings": []}}))
"""
    repo, agent = review_repo(tmp_path, "", reviewer=reviewer)
    agent_script(tmp_path / "worker.py", '(WT / "calc.py").write_text(f"X = {CALL}\\n")\n',
                 spy=repo.spy)
    config = repo.root / ".taskmill" / "config.toml"
    config.write_text(config.read_text() + "\n[merge]\nrequire_approval = true\n",
                      encoding="utf-8")
    repo.git("commit", "-qam", "approval on")
    repo.create("tm-a", "set X")

    repo.run("--agent", agent)
    assert repo.task("tm-a")["status"] == "blocked"
    sent = repo.cli("reject", "tm-a", "-m", "Make it bigger.")
    assert sent.returncode == 0, sent.stderr
    result = repo.run("--agent", agent)
    assert repo.task("tm-a")["status"] == "blocked", result.describe()

    attempts = repo.attempts("tm-a")
    assert [(a["lap"], a["iteration"]) for a in attempts] == [(1, 1), (2, 1)]
    # each round's review log is beside its attempt's log (where the dashboard's attempt
    # view looks), and the first one is still there
    for n, attempt in enumerate(attempts, start=1):
        log = Path(attempt["log_path"])
        log = log if log.is_absolute() else repo.root / log
        review_log = log.with_name(f"{log.stem}.review-try1.log")
        assert mill_review_log(log) == review_log
        assert f"review call {n}" in review_log.read_text(), review_log
