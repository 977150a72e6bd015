"""``[review]`` as the mill and the dashboard read it (no agent module is loaded for it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .findings import BlockAt


@dataclass(frozen=True)
class ReviewSettings:
    """``[review]`` of ``.taskmill/config.toml`` (see :class:`taskmill.config_schema.ReviewTable`)."""

    agent: str = "reviewer"
    block_at: BlockAt = field(default_factory=BlockAt)
    min_confidence: float = 0.0
    on_failure: str = "proceed"
    target_hit_rate: float | None = None
    window_days: float = 30.0
    timeout: float | None = None

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> ReviewSettings | None:
        """From the whole config file (checked); None when there is no ``[review]`` table or
        it says ``enabled = false``."""
        table = raw.get("review")
        if not isinstance(table, Mapping):
            return None
        table = {str(k).replace("-", "_"): v for k, v in table.items()}
        if table.get("enabled", True) is False:
            return None
        block = table.get("block_at") or {}
        return cls(agent=str(table.get("agent", "reviewer")),
                   block_at=BlockAt(**block),
                   min_confidence=float(table.get("min_confidence", 0.0)),
                   on_failure=str(table.get("on_failure", "proceed")),
                   target_hit_rate=(float(table["target_hit_rate"])
                                    if table.get("target_hit_rate") is not None else None),
                   window_days=float(table.get("window_days", 30.0)),
                   timeout=float(table["timeout"]) if table.get("timeout") else None)
