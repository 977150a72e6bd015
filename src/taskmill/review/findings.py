"""What a reviewer answers: findings in a fixed JSON schema, and how an answer is read.

A reviewer (any configured agent) must answer with one JSON object::

    {"findings": [
      {"file": "src/calc.py", "line_start": 12, "line_end": 14,
       "severity": "blocker", "confidence": 0.9,
       "title": "add() subtracts",
       "explanation": "add returns a - b, so every caller gets the wrong sum.",
       "suggested_fix": "return a + b"}
    ]}

``severity`` is one of ``blocker | major | minor | nit``; ``confidence`` is 0-1;
``suggested_fix`` may be null or left out. ``{"findings": []}`` means nothing was found.
:func:`parse_answer` reads such an object out of what an agent printed (bare, in a fenced
block, or on one line among others) and raises :class:`InvalidAnswer` saying what is wrong.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Severity = Literal["blocker", "major", "minor", "nit"]
SEVERITIES: tuple[str, ...] = ("nit", "minor", "major", "blocker")
"""Least to most severe."""


def severity_rank(severity: str) -> int:
    """0 for ``nit`` ... 3 for ``blocker``."""
    return SEVERITIES.index(severity)


class Finding(BaseModel):
    """One problem a reviewer reports."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str = Field(min_length=1)
    """The path, relative to the repository's root."""
    line_start: int = Field(ge=1)
    line_end: int = Field(ge=1)
    """The lines (1-based, inclusive) of the file *after* the change."""
    severity: Severity
    confidence: float = Field(ge=0.0, le=1.0)
    title: str = Field(min_length=1)
    explanation: str
    suggested_fix: str | None = None

    @model_validator(mode="after")
    def _range(self) -> Finding:
        if self.line_end < self.line_start:
            raise ValueError(f"line_end {self.line_end} is before line_start {self.line_start}")
        return self

    def where(self) -> str:
        lines = (str(self.line_start) if self.line_end == self.line_start
                 else f"{self.line_start}-{self.line_end}")
        return f"{self.file}:{lines}"


class ReviewAnswer(BaseModel):
    """The whole answer of a reviewer."""

    model_config = ConfigDict(extra="forbid")

    findings: list[Finding]


class InvalidAnswer(ValueError):
    """The reviewer's answer is not a findings object (the message says what is wrong)."""


def answer_schema() -> dict[str, Any]:
    """The JSON schema handed to CLIs with a structured-output mode (Claude Code's
    ``--json-schema``, Codex's ``--output-schema``). Written out by hand in the strict form
    OpenAI's structured outputs need: every property required, none extra, the optional fix
    nullable."""
    finding = {
        "type": "object",
        "additionalProperties": False,
        "required": ["file", "line_start", "line_end", "severity", "confidence", "title",
                     "explanation", "suggested_fix"],
        "properties": {
            "file": {"type": "string"},
            "line_start": {"type": "integer"},
            "line_end": {"type": "integer"},
            "severity": {"type": "string", "enum": list(reversed(SEVERITIES))},
            "confidence": {"type": "number"},
            "title": {"type": "string"},
            "explanation": {"type": "string"},
            "suggested_fix": {"type": ["string", "null"]},
        },
    }
    return {"type": "object", "additionalProperties": False, "required": ["findings"],
            "properties": {"findings": {"type": "array", "items": finding}}}


_FENCE = re.compile(r"```(?:json)?\s*\n(.*?)```", re.DOTALL)


def _candidates(text: str) -> list[str]:
    """Pieces of ``text`` that may be the JSON answer, most likely first."""
    found = [text.strip()]
    found += [m.group(1).strip() for m in reversed(list(_FENCE.finditer(text)))]
    found += [line.strip() for line in reversed(text.splitlines())
              if line.strip().startswith("{") and '"findings"' in line]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        found.append(text[start:end + 1])
    return [c for c in dict.fromkeys(found) if c]


def parse_answer(text: str) -> ReviewAnswer:
    """The findings in ``text`` (see the module docstring). Raises :class:`InvalidAnswer`."""
    if not text.strip():
        raise InvalidAnswer("the reviewer answered nothing")
    problem = "no JSON object with a \"findings\" list was found in the answer"
    for candidate in _candidates(text):
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if not isinstance(data, dict) or "findings" not in data:
            continue
        try:
            return ReviewAnswer.model_validate(data)
        except ValidationError as exc:
            problem = "the findings do not match the schema: " + "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
    raise InvalidAnswer(problem)


class BlockAt(BaseModel):
    """``[review] block_at``: the findings that send a task back to its agent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    severity: Severity = "major"
    confidence: float = Field(default=0.5, ge=0.0, le=1.0)

    def blocks(self, finding: Finding, *, min_confidence: float = 0.0) -> bool:
        """At or above both the severity and the confidence (and the confidence threshold
        the hit-rate tuning chose, when it is higher)."""
        return (severity_rank(finding.severity) >= severity_rank(self.severity)
                and finding.confidence >= max(self.confidence, min_confidence))
