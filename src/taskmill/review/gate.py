"""The review gate: ``[review]`` settings, and one review run and recorded.

:func:`review_and_record` is what the mill's review step and ``taskmill review REV_RANGE``
both call: run the reviewer (:class:`~.reviewer.Reviewer`), then record the review, its
findings and the fates it decides (:func:`~.book.record_review`), then let the hit-rate
tuning move the threshold (:func:`~.stats.tune`) when ``target_hit_rate`` is set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..agents.base import AgentAdapter, AgentConfig, TurnRequest
from ..clock import Clock
from ..ledger import Ledger
from ..mill.git import Git
from .book import Hunks, Verdict, record_review
from .reviewer import Reviewer, ReviewInput, ReviewResult
from .settings import ReviewSettings as ReviewSettings
from .stats import current_threshold, tune

WHOLE_FILE = (1, 10**9)


_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@")


def parse_hunks(diff: str) -> dict[str, list[tuple[int, int]]]:
    """The old-side line ranges of a ``git diff -U0`` (a deleted file: all of it)."""
    hunks: dict[str, list[tuple[int, int]]] = {}
    old: str | None = None
    for line in diff.splitlines():
        if line.startswith("--- "):
            old = line[6:] if line.startswith("--- a/") else None
        elif line.startswith("+++ ") and old is not None:
            if line == "+++ /dev/null":
                hunks.setdefault(old, []).append(WHOLE_FILE)
        elif old is not None and (m := _HUNK.match(line)):
            start, count = int(m.group(1)), int(m.group(2) if m.group(2) is not None else 1)
            # an insertion after line `start` touches the lines on both sides of it
            hunks.setdefault(old, []).append(
                (start, start + 1) if count == 0 else (start, start + count - 1))
    return hunks


def changed_lines(git: Git, old: str, new: str) -> Hunks:
    """What changed from ``old`` to ``new`` (``{}`` when ``old`` is not there any more)."""
    proc = git.run("diff", "-U0", "--no-color", "--no-renames", "--no-ext-diff", old, new,
                   check=False)
    return parse_hunks(proc.stdout) if proc.returncode == 0 else {}


@dataclass(frozen=True)
class ReviewSetup:
    """What the mill's review step needs, resolved once per run."""

    settings: ReviewSettings
    config: AgentConfig
    adapter: AgentAdapter
    repo: str
    """The repository's name, as the hit rate groups it."""


@dataclass
class Reviewed:
    verdict: Verdict
    result: ReviewResult
    overhead_s: float
    """taskmill's own time in the review step, the reviewer's turns left out."""
    threshold: float
    """The confidence threshold applied."""

    def summary(self) -> dict[str, Any]:
        v = self.verdict
        return {"reviewer_failed": v.failed, "blocking": [r.id for r in v.blocking],
                "comments": [r.id for r in v.comments], "quiet": [r.id for r in v.quiet],
                "resolved": v.resolved, "tries": self.result.tries,
                "model_s": round(self.result.model_seconds, 3),
                "overhead_ms": round(self.overhead_s * 1000, 1), "threshold": self.threshold}


def review_and_record(ledger: Ledger, reviewer: Reviewer, settings: ReviewSettings,
                      inp: ReviewInput, request: TurnRequest, *, task_id: str | None,
                      repo: str, commit: str | None, git: Git, actor: str,
                      clock: Clock) -> Reviewed:
    """Run the reviewer on ``inp`` and record what it found (see the module docstring)."""
    started = clock.monotonic()
    threshold = current_threshold(ledger, settings.min_confidence) \
        if settings.target_hit_rate is not None else settings.min_confidence
    result = reviewer.review(inp, request)
    verdict = record_review(
        ledger, subject=inp.subject, task_id=task_id, reviewer=reviewer.name, repo=repo,
        commit=commit, found=result.findings, block_at=settings.block_at,
        min_confidence=threshold, changed_since=lambda old: changed_lines(git, old, commit or "HEAD"),
        actor=actor, round=inp.round, failed=result.failed,
        extra={"tries": result.tries, "model_s": round(result.model_seconds, 3),
               "input_tokens": result.input_tokens, "output_tokens": result.output_tokens})
    if settings.target_hit_rate is not None:
        tune(ledger, configured=settings.min_confidence, target=settings.target_hit_rate,
             actor=actor)
    overhead = clock.monotonic() - started - result.model_seconds
    return Reviewed(verdict, result, max(0.0, overhead), threshold)
