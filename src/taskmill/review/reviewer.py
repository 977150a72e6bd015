"""Running a reviewer: the prompt, the structured-output mode of the CLI, the answer.

A reviewer is any configured agent. :class:`Reviewer` builds its prompt from the change
(:class:`ReviewInput`: the task, the diff against the target, the checks' output), asks the
CLI for the findings schema through its structured-output mode where it has one (Claude
Code: ``--json-schema``; Codex: ``--output-schema FILE``; others are told the schema in the
prompt), reads the answer out of what the CLI printed (:func:`answer_text`) and checks it
(:func:`~.findings.parse_answer`). An answer that does not parse is asked for once more,
with what was wrong; a second bad answer (or a turn that failed) is a failed review
(:attr:`ReviewResult.failed`), which the caller records: it never passes silently.

The turn itself is run by a callable the caller hands in (:data:`RunTurn`), so the mill
runs it like any agent turn (proxy, sandbox, containment) and the CLI commands run it
plainly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..agents.base import AgentAdapter, AgentConfig, TurnRequest, TurnResult
from ..agents.common import iter_json_lines
from .findings import Finding, InvalidAnswer, answer_schema, parse_answer
from .log_names import TRIES, try_log

RunTurn = Callable[[AgentAdapter, AgentConfig, TurnRequest], TurnResult]
"""Runs one turn (see :class:`taskmill.mill.turn_runner.TurnRunner`)."""

DIFF_LIMIT = 60_000
CHECKS_LIMIT = 6_000


@dataclass(frozen=True)
class ReviewInput:
    """What the reviewer is shown."""

    subject: str
    """The task's id, or the revision range of an ambient review."""
    title: str
    diff: str
    description: str = ""
    checks_output: str = ""
    round: int = 1
    """1 for the first review of this change, 2 for the re-review after a fix..."""


@dataclass
class ReviewResult:
    findings: list[Finding] = field(default_factory=list)
    failed: str | None = None
    """Why the review failed (None: it answered, maybe with no findings)."""
    tries: int = 0
    model_seconds: float = 0.0
    """Time spent in the reviewer's turns (the model's time, not taskmill's)."""
    input_tokens: int = 0
    output_tokens: int = 0


SCHEMA_TEXT = json.dumps(answer_schema(), separators=(",", ":"))


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n[... {len(text) - limit} more characters cut]"


def build_review_prompt(inp: ReviewInput, *, invalid: str | None = None) -> str:
    parts = [f"You are reviewing a change: {inp.subject}: {inp.title}", "",
             "Report real defects only: bugs, wrong behaviour, missing checks, security or data "
             "loss. Do not report style preferences. Do not edit any file: only answer.", ""]
    if inp.description:
        parts += ["## What the change is for", inp.description, ""]
    parts += ["## The diff against the target", "```diff", _clip(inp.diff, DIFF_LIMIT), "```", ""]
    if inp.checks_output:
        parts += ["## The checks' output (they passed)", "```",
                  _clip(inp.checks_output, CHECKS_LIMIT), "```", ""]
    parts += ["## How to answer",
              "Answer with ONE JSON object and nothing else, matching this JSON schema:",
              SCHEMA_TEXT,
              "Lines are 1-based line numbers in the file after the change. severity: blocker "
              "(must not land), major, minor, nit. confidence: 0-1, how sure you are that it is "
              "a real defect. No findings: {\"findings\": []}."]
    if invalid:
        parts += ["", "## Your previous answer was not valid",
                  f"{invalid}. Answer again with only the JSON object."]
    return "\n".join(parts) + "\n"


def structured_config(config: AgentConfig, state_dir: Path) -> AgentConfig:
    """``config`` with the CLI's structured-output mode switched on (where it has one)."""
    if config.adapter == "claude":
        return replace(config, args=(*config.args, "--json-schema", SCHEMA_TEXT))
    if config.adapter == "codex":
        path = state_dir / "review-schema.json"
        path.write_text(SCHEMA_TEXT, encoding="utf-8")
        return replace(config, args=(*config.args, "--output-schema", str(path)))
    return config


def answer_text(adapter: str, output: str) -> str:
    """The reviewer's final answer in what its CLI printed: Claude Code's (and Qwen Code's)
    ``result`` event (its ``structured_output`` when the schema was given), Codex's last
    ``agent_message``; anything else as printed."""
    if adapter in ("claude", "qwen"):
        for event in reversed(list(iter_json_lines(output))):
            if event.get("type") == "result":
                structured = event.get("structured_output")
                if isinstance(structured, dict):
                    return json.dumps(structured)
                text = event.get("result")
                return text if isinstance(text, str) else ""
    if adapter == "codex":
        for event in reversed(list(iter_json_lines(output))):
            item = event.get("item")
            if (event.get("type") == "item.completed" and isinstance(item, dict)
                    and item.get("type") == "agent_message"):
                text = item.get("text")
                return text if isinstance(text, str) else ""
    return output


class Reviewer:
    """One configured reviewer agent."""

    def __init__(self, config: AgentConfig, adapter: AgentAdapter, run_turn: RunTurn) -> None:
        self.config = config
        self.adapter = adapter
        self.run_turn = run_turn

    @property
    def name(self) -> str:
        return self.config.name

    def review(self, inp: ReviewInput, request: TurnRequest) -> ReviewResult:
        """Run the reviewer on ``inp``. ``request`` is the turn's frame (worktree, HOME,
        state directory, log path, environment); its prompt is replaced. At most two turns:
        the second when the first answer was invalid."""
        result = ReviewResult()
        invalid: str | None = None
        for attempt in TRIES:
            log = try_log(request.log_path, attempt)
            state = request.state_dir / f"try{attempt}"
            state.mkdir(parents=True, exist_ok=True)
            turn_request = replace(
                request, prompt=build_review_prompt(inp, invalid=invalid), iteration=inp.round,
                log_path=log, state_dir=state, prompt_file=state / "prompt.md",
                usage_file=state / "usage.json")
            config = structured_config(self.config, state)
            turn = self.run_turn(self.adapter, config, turn_request)
            result.tries = attempt
            result.model_seconds += turn.duration_s
            result.input_tokens += turn.usage.input_tokens
            result.output_tokens += turn.usage.output_tokens
            if not turn.ok:
                what = ("timed out" if turn.timed_out else "was cancelled" if turn.cancelled
                        else f"exited with {turn.exit_code}")
                result.failed = f"the reviewer {what}: {turn.usage.error or 'no answer'}"
                return result
            output = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
            try:
                result.findings = parse_answer(answer_text(self.config.adapter, output)).findings
                result.failed = None
                return result
            except InvalidAnswer as exc:
                invalid = str(exc)
                result.failed = f"the reviewer's answer was invalid twice: {invalid}"
        return result
