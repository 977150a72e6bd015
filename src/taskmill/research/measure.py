"""Running the metric and reading what it printed, as taskmill runs a check.

The metric command runs with ``bash -c`` in a worktree, under the checks' containment and
clean environment (:func:`taskmill.mill.checks.run_checks`), killed at the experiment
timeout. It prints ``metric: <float>`` (the last such line wins) or a JSON object
``{"metric": x, ...}`` on a line of its own; every other ``name: <number>`` line (and every
other numeric key of the JSON object) is recorded too.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..containment import Containment
from ..mill.checks import run_checks, tail

_PAIR = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*[:=]\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
                   r"\s*$")


def parse_output(text: str) -> dict[str, float]:
    """The figures a metric run printed (``metric`` among them when it printed one)."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("{") and stripped.endswith("}"):
            try:
                data = json.loads(stripped)
            except ValueError:
                data = None
            if isinstance(data, dict):
                for key, value in data.items():
                    if isinstance(value, int | float) and not isinstance(value, bool) \
                            and math.isfinite(value):
                        found[str(key)] = float(value)
                continue
        match = _PAIR.match(line)
        if match:
            value = float(match.group(2))
            if math.isfinite(value):
                found[match.group(1)] = value
    return found


@dataclass
class Measurement:
    """One run of the metric command."""

    value: float | None
    """The metric, None when the run crashed, timed out or printed none."""
    figures: dict[str, float] = field(default_factory=dict)
    """Every ``name: value`` printed (``metric`` included)."""
    seconds: float = 0.0
    error: str | None = None
    """Why there is no value."""
    cancelled: bool = False

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"value": self.value, "figures": self.figures,
                                "seconds": round(self.seconds, 3)}
        if self.error:
            data["error"] = self.error
        return data


def measure(command: str, cwd: Path, env: Mapping[str, str], *, timeout_s: float,
            containment: Containment | None = None,
            cancel: threading.Event | None = None) -> Measurement:
    """Run the metric once in ``cwd`` (never raises because the metric failed)."""
    result = run_checks([command], cwd, env, timeout_s=timeout_s, containment=containment,
                        cancel=cancel)
    run = result.runs[0]
    if run.cancelled:
        return Measurement(None, {}, run.duration_s, "cancelled", cancelled=True)
    if run.timed_out:
        return Measurement(None, {}, run.duration_s,
                           f"timed out after {timeout_s:g}s (experiment_timeout)")
    figures = parse_output(run.output)
    if run.exit_code != 0:
        return Measurement(None, figures, run.duration_s,
                           f"exit {run.exit_code}: {tail(run.output, 1500)}")
    if "metric" not in figures:
        return Measurement(None, figures, run.duration_s,
                           "printed no `metric: <float>` line (nor a JSON object with "
                           f"\"metric\"): {tail(run.output, 1500)}")
    return Measurement(figures["metric"], figures, run.duration_s)


@dataclass(frozen=True)
class Summary:
    """Several runs of the metric on one commit."""

    mean: float
    sigma: float
    runs: tuple[float, ...]

    @staticmethod
    def of(values: Sequence[float]) -> Summary:
        runs = tuple(values)
        sigma = statistics.stdev(runs) if len(runs) > 1 else 0.0
        return Summary(statistics.fmean(runs), sigma, runs)

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "sigma": self.sigma, "runs": list(self.runs)}
