"""Where the mill's AI review of an attempt logs: beside the attempt's own log, one file per
try. Light (no agent code), so the dashboard can find the logs without loading a reviewer."""

from __future__ import annotations

from pathlib import Path

MILL_REVIEW_SUFFIX = ".review.log"
"""The mill's review of an attempt logs beside the attempt's log, with this suffix."""
TRIES = (1, 2)


def try_log(log_path: Path, attempt: int) -> Path:
    """The log of the reviewer's ``attempt``-th try at a review logged at ``log_path``."""
    return log_path.with_name(f"{log_path.stem}-try{attempt}.log")


def mill_review_log(attempt_log: Path) -> Path | None:
    """The last try's log of the mill's review of the attempt logged at ``attempt_log``
    (None: it was not reviewed)."""
    review = attempt_log.with_suffix(MILL_REVIEW_SUFFIX)
    found = [log for log in (try_log(review, n) for n in reversed(TRIES)) if log.is_file()]
    return found[0] if found else None
