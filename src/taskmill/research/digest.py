"""What an experiment's prompt holds, and the views of the experiments (status, log, TSV).

The prompt starts from ``program.md``, then the current best, then a compact digest of what
was already tried and how it went (one line per idea, the same description once), so a
fresh agent does not retry it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .config import ResearchConfig
from .records import BASELINE, CRASH, KEEP, Experiment

DIGEST_LINES = 60
TSV_COLUMNS = ("commit", "metric", "memory_gb", "status", "description",
               "experiment", "parent", "runs", "sigma", "reason", "tokens", "cost_usd",
               "seconds", "contributor", "claimed")
"""autoresearch's ``results.tsv`` columns, then taskmill's."""


def one_line(text: str, limit: int = 160) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit - 1] + "…"


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, int | float) else "-"


def digest(experiments: Sequence[Experiment], limit: int = DIGEST_LINES) -> list[str]:
    """One line per distinct idea tried (newest last), at most ``limit``."""
    seen: dict[str, str] = {}
    for exp in experiments:
        if exp.verdict in (None, BASELINE):
            continue
        desc = one_line(exp.data.get("description") or "(no description)")
        figure = _fmt(exp.data.get("verified", exp.metric))
        line = f"- #{exp.n} {exp.verdict} metric {figure}: {desc}"
        if exp.verdict != KEEP and exp.data.get("reason"):
            line += f" [{one_line(str(exp.data['reason']), 80)}]"
        seen.pop(desc, None)
        seen[desc] = line
    return list(seen.values())[-limit:]


def prompt(program: str, config: ResearchConfig, n: int, best: str, best_value: float,
           sigma: float, experiments: Sequence[Experiment]) -> str:
    tried = digest(experiments)
    parts = [program.rstrip(), "",
             "## The current best",
             f"commit {best[:12]} on {config.branch}: metric {best_value:.6g} "
             f"({config.direction}; noise sigma {sigma:.3g}; a change is kept only when it "
             f"improves the metric by more than {config.threshold(sigma):.3g}, re-measured).",
             f"The metric is measured with: {config.metric}",
             f"Editable paths (anything else is discarded): {', '.join(config.editable)}",
             "", "## Already tried (do not repeat these ideas)"]
    parts += tried or ["- nothing yet"]
    parts += ["", f"## This experiment (#{n})",
              "Make one focused change in the working tree. Write one line saying what you "
              "tried to the file named by $TASKMILL_DESCRIPTION_FILE (or commit it as your "
              "commit's subject). taskmill commits, measures and decides."]
    return "\n".join(parts) + "\n"


def status(experiments: Sequence[Experiment], *, branch: str, tip: str | None,
           best_value: float | None, config: ResearchConfig) -> dict[str, Any]:
    done = [e for e in experiments if e.n > 0 and e.done]
    kept = [e for e in done if e.verdict == KEEP]
    baseline = next((e for e in experiments if e.n == 0), None)
    return {
        "branch": branch,
        "best_commit": tip,
        "best_metric": best_value,
        "direction": config.direction,
        "baseline": baseline.data.get("metric") if baseline else None,
        "sigma": baseline.data.get("sigma") if baseline else None,
        "threshold": (config.threshold(float(baseline.data.get("sigma") or 0.0))
                      if baseline else None),
        "experiments": len(done),
        "running": sum(1 for e in experiments if e.n > 0 and not e.done),
        "kept": len(kept),
        "discarded": sum(1 for e in done if e.verdict not in (KEEP, CRASH)),
        "crashed": sum(1 for e in done if e.verdict == CRASH),
        "keep_rate": round(len(kept) / len(done), 4) if done else None,
        "cost_usd": round(sum(e.cost for e in experiments), 6),
        "tokens": sum(int(e.data.get("tokens") or 0) for e in experiments),
        "seconds": round(sum(float(e.data.get("seconds") or 0.0) for e in experiments), 3),
    }


def tsv_status(verdict: str | None) -> str:
    return {KEEP: "keep", CRASH: "crash", BASELINE: "keep", None: "running"}.get(verdict,
                                                                                "discard")


def tsv(experiments: Sequence[Experiment]) -> str:
    """autoresearch's ``results.tsv`` (commit, metric, memory_gb, status, description) plus
    taskmill's columns."""
    rows = ["\t".join(TSV_COLUMNS)]
    for e in experiments:
        d = e.data
        commit = str(d.get("kept_commit") or d.get("commit") or "")[:7]
        metric = d.get("verified", d.get("metric"))
        figures = d.get("figures") or {}
        memory = figures.get("memory_gb", figures.get("peak_memory_gb"))
        cells = [commit, _fmt(metric) if metric is not None else "0.000000",
                 _fmt(memory) if memory is not None else "0.0",
                 tsv_status(e.verdict),
                 one_line(d.get("description") or ("baseline" if e.n == 0 else ""), 300),
                 str(e.n), str(d.get("parent") or "")[:7],
                 ",".join(_fmt(v) for v in d.get("runs") or []),
                 _fmt(d.get("sigma")) if d.get("sigma") is not None else "",
                 one_line(str(d.get("reason") or ""), 300),
                 str(d.get("tokens") or 0), _fmt(d.get("cost_usd") or 0.0),
                 _fmt(d.get("seconds") or 0.0), str(d.get("contributor") or ""),
                 _fmt(d.get("claimed")) if d.get("claimed") is not None else ""]
        rows.append("\t".join(c.replace("\t", " ") for c in cells))
    return "\n".join(rows) + "\n"
