"""``taskmill review eval DATASET``: a reviewer measured on labelled diffs.

A dataset is JSON lines (see :mod:`.dataset`): each case a diff and the bugs known to be in
it (``file``, ``line``, ``severity``); a case without bugs is a negative. The reviewer reviews
every diff (in an empty scratch repository: it sees the diff only) and its findings are
matched to the labels: a finding is *true* when it names a labelled bug's file and its line
range holds the bug's line (give or take :data:`TOLERANCE` lines); a label is *found* when
a finding matches it.

Per severity: precision is the share of the findings of that severity that are true, recall
the share of the labels of that severity that were found, F1 their harmonic mean; ``all``
pools every severity. Per confidence threshold: the findings at or above it, the share of
them that are true (the hit rate a user would see with ``min_confidence`` there), and the
recall that is left, to choose ``[review] block_at`` / ``min_confidence`` from data.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..agents.base import TurnRequest
from ..errors import InvalidInput
from .findings import SEVERITIES, Finding
from .reviewer import Reviewer, ReviewInput

TOLERANCE = 3
THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(10))
SHIPPED = ("humanize",)


@dataclass(frozen=True)
class Bug:
    file: str
    line: int
    severity: str
    kind: str = ""


@dataclass(frozen=True)
class Case:
    id: str
    title: str
    diff: str
    bugs: tuple[Bug, ...]


def load_dataset(name_or_path: str) -> list[Case]:
    """A JSON lines file, or the name of a shipped dataset (``humanize``)."""
    if name_or_path in SHIPPED and not Path(name_or_path).exists():
        text = (resources.files("taskmill.review") / "datasets" / f"{name_or_path}.jsonl"
                ).read_text(encoding="utf-8")
    else:
        try:
            text = Path(name_or_path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(f"cannot read the dataset {name_or_path}: {exc.strerror or exc}",
                               hint=f"give a JSON lines file, or one of: {', '.join(SHIPPED)}"
                               ) from None
    cases = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            cases.append(Case(str(data["id"]), str(data.get("title", "")), str(data["diff"]),
                              tuple(Bug(str(b["file"]), int(b["line"]), str(b["severity"]),
                                        str(b.get("kind", ""))) for b in data.get("bugs", []))))
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"{name_or_path}, line {number}: not a dataset case ({exc})",
                               hint="each line is {\"id\", \"diff\", \"bugs\": [{\"file\", "
                                    "\"line\", \"severity\"}]}") from None
    return cases


def matches(finding: Finding, bug: Bug, tolerance: int = TOLERANCE) -> bool:
    return (finding.file == bug.file
            and finding.line_start - tolerance <= bug.line <= finding.line_end + tolerance)


@dataclass
class Row:
    name: str
    findings: int = 0
    true_findings: int = 0
    labels: int = 0
    found: int = 0

    @property
    def precision(self) -> float | None:
        return self.true_findings / self.findings if self.findings else None

    @property
    def recall(self) -> float | None:
        return self.found / self.labels if self.labels else None

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        if p is None or r is None or p + r == 0:
            return None if p is None or r is None else 0.0
        return 2 * p * r / (p + r)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "findings": self.findings,
                "true_findings": self.true_findings, "labels": self.labels,
                "found": self.found, "precision": self.precision, "recall": self.recall,
                "f1": self.f1}


@dataclass
class EvalReport:
    cases: int
    severities: list[Row]
    thresholds: list[Row]
    failed: dict[str, str] = field(default_factory=dict)
    """Cases the reviewer gave no valid answer for (counted as no findings)."""

    def to_json(self) -> dict[str, Any]:
        return {"cases": self.cases, "severities": [r.to_json() for r in self.severities],
                "thresholds": [{**r.to_json(), "threshold": float(r.name)}
                               for r in self.thresholds], "failed": self.failed}


def score(cases: Sequence[Case], answers: dict[str, list[Finding]],
          failed: dict[str, str] | None = None) -> EvalReport:
    """The figures of ``answers`` (findings by case id) against the labels."""
    rows = {s: Row(s) for s in (*reversed(SEVERITIES), "all")}
    thresholds = {t: Row(f"{t:.1f}") for t in THRESHOLDS}
    for case in cases:
        found = answers.get(case.id, [])
        for bug in case.bugs:
            for name in (bug.severity, "all"):
                rows[name].labels += 1
            if any(matches(f, bug) for f in found):
                for name in (bug.severity, "all"):
                    rows[name].found += 1
            for t, row in thresholds.items():
                row.labels += 1
                if any(matches(f, bug) for f in found if f.confidence >= t - 1e-9):
                    row.found += 1
        for finding in found:
            true = any(matches(finding, bug) for bug in case.bugs)
            for name in (finding.severity, "all"):
                rows[name].findings += 1
                rows[name].true_findings += int(true)
            for t, row in thresholds.items():
                if finding.confidence >= t - 1e-9:
                    row.findings += 1
                    row.true_findings += int(true)
    return EvalReport(len(cases), list(rows.values()), list(thresholds.values()),
                      dict(failed or {}))


def evaluate(cases: Sequence[Case], reviewer: Reviewer, frame: Callable[[Path, str], TurnRequest],
             *, progress: Callable[[int, str], None] | None = None) -> EvalReport:
    """Run ``reviewer`` on every case; ``frame(scratch, case_id)`` makes the turn's frame
    (HOME, logs...) for a scratch repository the reviewer runs in."""
    answers: dict[str, list[Finding]] = {}
    failed: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="taskmill-review-eval-") as tmp:
        scratch = Path(tmp) / "repo"
        scratch.mkdir()
        subprocess.run(["git", "init", "-q", str(scratch)], check=False, capture_output=True)
        for n, case in enumerate(cases, 1):
            result = reviewer.review(ReviewInput(subject=case.id, title=case.title,
                                                 diff=case.diff), frame(scratch, case.id))
            answers[case.id] = result.findings
            if result.failed is not None:
                failed[case.id] = result.failed
            if progress is not None:
                progress(n, case.id)
    return score(cases, answers, failed)
