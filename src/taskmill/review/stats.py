"""Hit rate, and the confidence threshold tuned to keep it at a target.

The hit rate of a set of findings is resolved / (resolved + dismissed): of the findings
someone acted on, the share that was right. Open and quiet findings do not count.
:func:`hit_rates` groups it per repository, reviewer and severity over a window;
:func:`tune` moves the confidence threshold (findings below it are quiet: recorded, not
shown) up when the measured hit rate is under ``[review] target_hit_rate`` and down when
it is well over, and records a ``review_threshold_changed`` event saying when and why.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..clock import iso
from ..ledger import Ledger
from .book import THRESHOLD_CHANGED, FindingRecord, findings

STEP = 0.05
MAX_THRESHOLD = 0.95
MIN_DECIDED = 5
"""Decided findings needed (since the last change) before the threshold moves again."""
SLACK = 0.1
"""How far above the target the hit rate must be before the threshold comes down."""


@dataclass
class HitRate:
    repo: str
    reviewer: str
    severity: str
    reported: int = 0
    open: int = 0
    resolved: int = 0
    dismissed: int = 0

    @property
    def hit_rate(self) -> float | None:
        decided = self.resolved + self.dismissed
        return self.resolved / decided if decided else None

    def to_json(self) -> dict[str, Any]:
        return {"repo": self.repo, "reviewer": self.reviewer, "severity": self.severity,
                "reported": self.reported, "open": self.open, "resolved": self.resolved,
                "dismissed": self.dismissed, "hit_rate": self.hit_rate}


def hit_rates(records: Iterable[FindingRecord], *, by_severity: bool = True) -> list[HitRate]:
    """Per (repository, reviewer, severity), quiet findings left out."""
    groups: dict[tuple[str, str, str], HitRate] = {}
    for r in records:
        if r.quiet:
            continue
        key = (r.repo, r.reviewer, r.finding.severity if by_severity else "all")
        group = groups.setdefault(key, HitRate(*key))
        group.reported += 1
        setattr(group, r.fate, getattr(group, r.fate) + 1)
    return [groups[k] for k in sorted(groups)]


def since_days(now: datetime, days: float | None) -> str | None:
    return iso(now - timedelta(days=days)) if days else None


def current_threshold(ledger: Ledger, configured: float) -> float:
    """The confidence threshold in force: the last one tuning chose, else ``configured``."""
    changes = ledger.events_of_kinds((THRESHOLD_CHANGED,))
    return float(changes[-1].data["to"]) if changes else configured


@dataclass(frozen=True)
class Tuned:
    old: float
    new: float
    hit_rate: float
    decided: int
    why: str


def next_threshold(current: float, *, floor: float, target: float, resolved: int,
                   dismissed: int) -> Tuned | None:
    """Where the threshold goes given the findings decided since it last moved (pure)."""
    decided = resolved + dismissed
    if decided < MIN_DECIDED:
        return None
    rate = resolved / decided
    if rate < target and current < MAX_THRESHOLD:
        new = round(min(MAX_THRESHOLD, current + STEP), 4)
        return Tuned(current, new, rate, decided,
                     f"hit rate {rate:.2f} over {decided} decided findings is under the "
                     f"target {target:.2f}: only findings with confidence >= {new:.2f} are "
                     "shown now")
    if rate > min(1.0, target + SLACK) - 1e-9 and current > floor:
        new = round(max(floor, current - STEP), 4)
        return Tuned(current, new, rate, decided,
                     f"hit rate {rate:.2f} over {decided} decided findings is well over the "
                     f"target {target:.2f}: findings with confidence >= {new:.2f} are shown "
                     "now")
    return None


def tune(ledger: Ledger, *, configured: float, target: float, actor: str) -> Tuned | None:
    """Move the threshold if the findings decided since it last moved say so; the change
    is a ``review_threshold_changed`` event (old, new, hit rate, why)."""
    changes = ledger.events_of_kinds((THRESHOLD_CHANGED,))
    current = float(changes[-1].data["to"]) if changes else configured
    since = changes[-1].ts if changes else None
    decided = [r for r in findings(ledger) if not r.quiet and r.fate != "open"
               and r.finding.confidence >= current and (since is None or r.decided_at > since)]
    resolved = sum(1 for r in decided if r.fate == "resolved")
    tuned = next_threshold(current, floor=configured, target=target, resolved=resolved,
                           dismissed=len(decided) - resolved)
    if tuned is not None:
        with ledger.transaction():
            ledger.record(THRESHOLD_CHANGED, None, {
                "from": tuned.old, "to": tuned.new, "hit_rate": round(tuned.hit_rate, 4),
                "decided": tuned.decided, "target": target, "why": tuned.why}, actor=actor)
    return tuned
