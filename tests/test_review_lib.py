"""The review library: the findings schema, reading answers, the reviewer's retry, the
findings' fates in the ledger, the hit rate and its tuning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from taskmill.agents.base import AgentAdapter, AgentConfig, TurnRequest, TurnResult, Usage
from taskmill.clock import FixedClock
from taskmill.errors import InvalidInput, NotFound
from taskmill.ledger import Ledger
from taskmill.ledger.memory import MemoryStore
from taskmill.review.book import dismiss, findings, record_review
from taskmill.review.findings import BlockAt, Finding, InvalidAnswer, parse_answer
from taskmill.review.gate import parse_hunks
from taskmill.review.reviewer import Reviewer, ReviewInput, answer_text, structured_config
from taskmill.review.stats import hit_rates, next_threshold, tune

ONE = {"file": "a.py", "line_start": 3, "line_end": 4, "severity": "major",
       "confidence": 0.8, "title": "t", "explanation": "e"}


def test_an_answer_is_read_bare_fenced_or_among_other_lines() -> None:
    bare = json.dumps({"findings": [ONE]})
    assert parse_answer(bare).findings[0].file == "a.py"
    assert parse_answer(f"Here you go:\n```json\n{bare}\n```\nbye").findings[0].line_end == 4
    assert parse_answer(f"thinking...\n{bare}\n").findings[0].suggested_fix is None
    assert parse_answer('{"findings": []}').findings == []


@pytest.mark.parametrize(("text", "says"), [
    ("", "answered nothing"),
    ("looks good to me", "no JSON object"),
    ('{"findings": [{"file": "a.py"}]}', "findings.0.line_start: Field required"),
    (json.dumps({"findings": [{**ONE, "severity": "huge"}]}), "findings.0.severity"),
    (json.dumps({"findings": [{**ONE, "confidence": 1.5}]}), "findings.0.confidence"),
    (json.dumps({"findings": [{**ONE, "line_end": 1}]}), "line_end 1 is before line_start 3"),
    (json.dumps({"findings": [{**ONE, "extra": 1}]}), "findings.0.extra"),
])
def test_an_invalid_answer_says_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(InvalidAnswer, match=says.replace(".", r"\.")):
        parse_answer(text)


def test_block_at_needs_both_severity_and_confidence() -> None:
    block = BlockAt(severity="major", confidence=0.7)
    f = Finding.model_validate(ONE)
    assert block.blocks(f)
    assert not block.blocks(f.model_copy(update={"severity": "minor"}))
    assert not block.blocks(f.model_copy(update={"confidence": 0.6}))
    assert block.blocks(f.model_copy(update={"severity": "blocker"}))
    assert not block.blocks(f, min_confidence=0.9)


def test_the_answer_of_each_cli() -> None:
    claude = "\n".join(json.dumps(e) for e in (
        {"type": "system", "subtype": "init"},
        {"type": "result", "subtype": "success", "result": "",
         "structured_output": {"findings": [ONE]}}))
    assert parse_answer(answer_text("claude", claude)).findings[0].title == "t"
    codex = "\n".join(json.dumps(e) for e in (
        {"type": "item.completed", "item": {"type": "agent_message", "text": "first"}},
        {"type": "item.completed", "item": {"type": "agent_message",
                                            "text": '{"findings": []}'}},
        {"type": "turn.completed", "usage": {}}))
    assert answer_text("codex", codex) == '{"findings": []}'
    assert answer_text("exec", "raw") == "raw"


def test_structured_output_modes(tmp_path: Path) -> None:
    claude = structured_config(AgentConfig(name="r", adapter="claude"), tmp_path)
    assert claude.args[0] == "--json-schema" and "findings" in json.loads(claude.args[1])["properties"]
    codex = structured_config(AgentConfig(name="r", adapter="codex", args=("-x",)), tmp_path)
    assert codex.args[:2] == ("-x", "--output-schema")
    assert json.loads(Path(codex.args[2]).read_text())["required"] == ["findings"]


class Scripted:
    """A run_turn that prints the next scripted answer."""

    def __init__(self, *answers: str | None) -> None:
        self.answers = list(answers)
        self.prompts: list[str] = []

    def __call__(self, adapter: AgentAdapter, config: AgentConfig,
                 request: TurnRequest) -> TurnResult:
        self.prompts.append(request.prompt)
        answer = self.answers.pop(0)
        request.log_path.parent.mkdir(parents=True, exist_ok=True)
        request.log_path.write_text(answer or "")
        return TurnResult(exit_code=0 if answer is not None else 1, timed_out=False,
                          duration_s=2.0, usage=Usage(error=None if answer is not None
                                                      else "it crashed"),
                          log_path=request.log_path)


def frame(tmp_path: Path) -> TurnRequest:
    return TurnRequest(task_id="tm-a", title="t", iteration=1, prompt="", worktree=tmp_path,
                       home=tmp_path / "home", state_dir=tmp_path / "state",
                       prompt_file=tmp_path / "p", usage_file=tmp_path / "u",
                       log_path=tmp_path / "logs" / "review.log", parent_env={})


def run_reviewer(tmp_path: Path, *answers: str | None) -> tuple[Any, Scripted]:
    turns = Scripted(*answers)
    reviewer = Reviewer(AgentConfig(name="r", adapter="exec"), object(), turns)  # type: ignore[arg-type]
    inp = ReviewInput(subject="tm-a", title="t", diff="+x", checks_output="ok")
    return reviewer.review(inp, frame(tmp_path)), turns


def test_an_invalid_answer_is_asked_for_once_more(tmp_path: Path) -> None:
    result, turns = run_reviewer(tmp_path, "nope", json.dumps({"findings": [ONE]}))
    assert result.failed is None and result.tries == 2 and len(result.findings) == 1
    assert "previous answer was not valid" in turns.prompts[1]
    assert "no JSON object" in turns.prompts[1]
    assert result.model_seconds == 4.0


def test_two_invalid_answers_or_a_failed_turn_are_a_failed_review(tmp_path: Path) -> None:
    result, _ = run_reviewer(tmp_path, "nope", '{"findings": 3}')
    assert result.failed is not None and "invalid twice" in result.failed
    assert result.findings == []
    result, _ = run_reviewer(tmp_path, None)
    assert result.failed == "the reviewer exited with 1: it crashed" and result.tries == 1


# -- fates, hit rate, tuning --------------------------------------------------------------------


def ledger() -> Ledger:
    return Ledger(MemoryStore(), prefix="tm", clock=FixedClock(step=1.0), actor="tester")


def finding(**changes: Any) -> Finding:
    return Finding.model_validate({**ONE, **changes})


def review(led: Ledger, commit: str, found: list[Finding], hunks: dict[str, Any] | None = None,
           *, task: str = "tm-a", reviewer: str = "r") -> Any:
    return record_review(led, subject=task, task_id=task, reviewer=reviewer, repo="repo",
                         commit=commit, found=found, block_at=BlockAt(), min_confidence=0.0,
                         changed_since=lambda old: hunks or {}, actor="mill:x")


def test_a_finding_no_longer_reported_whose_lines_changed_is_resolved() -> None:
    led = ledger()
    led.create("a", task_id="tm-a")
    first = review(led, "c1", [finding(title="bug"), finding(file="b.py", title="other",
                                                                 severity="nit")])
    assert [r.finding.title for r in first.blocking] == ["bug"]
    assert [r.finding.title for r in first.comments] == ["other"]
    # c2 changed a.py lines 3-3 only: "bug" is resolved, "other" (untouched) stays open
    second = review(led, "c2", [], {"a.py": [(3, 3)]})
    assert second.resolved == [first.blocking[0].id]
    fates = {r.finding.title: r.fate for r in findings(led, task_id="tm-a")}
    assert fates == {"bug": "resolved", "other": "open"}
    # reported again (same file and title): the same finding, still open, one comment
    third = review(led, "c3", [finding(file="b.py", title="Other ", severity="nit")])
    assert third.comments == [] and third.resolved == []
    assert len(findings(led)) == 2
    assert len([c for c in led.show("tm-a").comments if c.author == "review:r"]) == 1


def test_a_finding_reported_again_is_not_resolved_even_if_its_lines_changed() -> None:
    led = ledger()
    led.create("a", task_id="tm-a")
    first = review(led, "c1", [finding(title="bug")])
    second = review(led, "c2", [finding(title="bug", line_start=5, line_end=5)],
                    {"a.py": [(1, 100)]})
    assert second.resolved == [] and second.blocking[0].id == first.blocking[0].id


def test_dismissing_lowers_the_hit_rate() -> None:
    led = ledger()
    led.create("a", task_id="tm-a")
    first = review(led, "c1", [finding(title="x"), finding(title="y", file="b.py")])
    review(led, "c2", [finding(title="y", file="b.py")], {"a.py": [(4, 4)]})
    [rate] = hit_rates(findings(led))
    assert (rate.resolved, rate.dismissed, rate.hit_rate) == (1, 0, 1.0)
    y = next(r.id for r in first.blocking if r.finding.title == "y")
    dismiss(led, y, reason="not a bug: b.py is generated", actor="agent:w/tm-a")
    [rate] = hit_rates(findings(led))
    assert (rate.resolved, rate.dismissed, rate.hit_rate) == (1, 1, 0.5)
    event = next(e for e in led.events("tm-a") if e.kind == "finding_dismissed")
    assert event.actor == "agent:w/tm-a" and "generated" in event.data["reason"]
    with pytest.raises(InvalidInput, match="already dismissed"):
        dismiss(led, y, reason="again", actor="me")
    with pytest.raises(NotFound):
        dismiss(led, "F-nothing", reason="?", actor="me")


def test_a_dismissed_finding_reported_again_stays_dismissed_and_does_not_block() -> None:
    led = ledger()
    led.create("a", task_id="tm-a")
    first = review(led, "c1", [finding(title="x")])
    dismiss(led, first.blocking[0].id, reason="wrong", actor="me")
    again = review(led, "c2", [finding(title="x")])
    assert again.blocking == [] and again.comments == []
    assert [r.id for r in again.quiet] == [first.blocking[0].id]
    [record] = findings(led)
    assert record.fate == "dismissed"


def test_hit_rates_group_by_repo_reviewer_and_severity() -> None:
    led = ledger()
    led.create("a", task_id="tm-a")
    review(led, "c1", [finding(title="x"), finding(title="n", severity="nit", file="n.py")])
    review(led, "c1", [finding(title="z", file="z.py")], reviewer="other", task="tm-a")
    groups = {(g.reviewer, g.severity): g.reported for g in hit_rates(findings(led))}
    assert groups == {("r", "major"): 1, ("r", "nit"): 1, ("other", "major"): 1}


def test_next_threshold_moves_toward_the_target() -> None:
    assert next_threshold(0.5, floor=0.0, target=0.8, resolved=3, dismissed=1) is None  # few
    up = next_threshold(0.5, floor=0.0, target=0.8, resolved=3, dismissed=3)
    assert up is not None and up.new == 0.55 and "under the target 0.80" in up.why
    down = next_threshold(0.5, floor=0.3, target=0.8, resolved=10, dismissed=0)
    assert down is not None and down.new == 0.45
    assert next_threshold(0.3, floor=0.3, target=0.8, resolved=10, dismissed=0) is None
    assert next_threshold(0.5, floor=0.0, target=0.8, resolved=17, dismissed=3) is None


def test_tuning_raises_the_threshold_on_a_stream_where_low_confidence_findings_are_wrong() -> None:
    """A synthetic stream: findings at confidence c are right with probability ~c. With a
    target of 0.8 the threshold must climb from 0 and settle where the hit rate holds."""
    led = ledger()
    led.create("a", task_id="tm-a")
    threshold = 0.0
    changes = []
    for n in range(200):
        confidence = (n * 37 % 100) / 100
        right = (n * 61 % 100) / 100 < confidence
        verdict = record_review(
            led, subject=f"r{n}", task_id=None, reviewer="r", repo="repo", commit=f"c{n}",
            found=[finding(confidence=confidence, title=f"f{n}")], block_at=BlockAt(),
            min_confidence=threshold, changed_since=lambda old: {}, actor="mill:x")
        records = verdict.blocking + verdict.comments
        if records:
            fid = records[0].id
            if right:
                with led.transaction():
                    led.record("finding_resolved", None, {"finding": fid}, actor="mill:x")
            else:
                dismiss(led, fid, reason="wrong", actor="me")
        tuned = tune(led, configured=0.0, target=0.8, actor="mill:x")
        if tuned is not None:
            changes.append(tuned)
            threshold = tuned.new
    assert changes and all(c.new > c.old for c in changes[:3])
    assert 0.5 <= threshold <= 0.95
    events = led.events_of_kinds(("review_threshold_changed",))
    assert len(events) == len(changes) and "hit rate" in events[0].data["why"]
    # shown findings above the final threshold are mostly right
    shown = [r for r in findings(led) if not r.quiet and r.finding.confidence >= threshold
             and r.fate != "open"]
    assert sum(r.fate == "resolved" for r in shown) / len(shown) >= 0.7


def test_parse_hunks() -> None:
    diff = "\n".join([
        "diff --git a/a.py b/a.py", "--- a/a.py", "+++ b/a.py",
        "@@ -3,2 +3,2 @@", "-x", "+y", "@@ -10,0 +11 @@", "+z",
        "diff --git a/gone.py b/gone.py", "--- a/gone.py", "+++ /dev/null", "@@ -1,3 +0,0 @@",
        "diff --git a/new.py b/new.py", "--- /dev/null", "+++ b/new.py", "@@ -0,0 +1 @@"])
    assert parse_hunks(diff) == {"a.py": [(3, 4), (10, 11)],
                                 "gone.py": [(1, 10**9), (1, 3)]}
