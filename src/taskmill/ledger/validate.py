"""What the ledger accepts: task fields checked (see :mod:`taskmill.validation`), and the
forms only the mill may write (its comment authors and close reasons)."""

from __future__ import annotations

from typing import Any

from .. import validation as check
from ..errors import Forbidden, InvalidInput
from ..lean_rules import mill_close_form
from ..model import DEP_TYPES, STATUSES


def validate_priority(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 4:
        raise InvalidInput(f"priority must be an integer from 0 (highest) to 4, not {value!r}")
    return value


def validate_status(value: Any) -> str:
    if value not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}, not {value!r}")
    return str(value)


def validate_dep_type(value: str) -> str:
    if value not in DEP_TYPES:
        raise InvalidInput(f"dependency type must be one of {', '.join(DEP_TYPES)}, not {value!r}")
    return value


def validate_checks(value: Any) -> list[str] | None:
    return check.checks(value)


def validate_table(name: str, value: Any) -> dict[str, Any] | None:
    return check.table(name, value)


MILL_AUTHOR_PREFIX = "mill:"
"""Comments (and events) signed ``mill:<run>`` are the mill's own."""


def refuse_mill_author(author: str | None) -> None:
    """Refuse a comment author that claims to be the mill (only its own code path signs so)."""
    if author is not None and author.strip().lower().startswith(MILL_AUTHOR_PREFIX):
        raise Forbidden(f"the author {author!r} is refused: authors starting with "
                        f"{MILL_AUTHOR_PREFIX!r} are the mill's own",
                        hint="comment under your own name (--author NAME, or none)")


def refuse_mill_close_reason(reason: Any) -> None:
    """Refuse a close reason in the mill's own forms (``landed ...``, ``already satisfied
    ...``): those say the mill verified and merged the work, so only the mill writes them."""
    form = mill_close_form(reason)
    if form is not None:
        assert isinstance(reason, str)
        raise Forbidden(f"the close reason {reason[:80]!r} is refused: reasons starting "
                        f"with {form!r} are the mill's own (it writes them when it lands "
                        "a task's checked work)",
                        hint="say it another way, e.g. 'done by hand in <commit>'")


def validate_field(key: str, value: Any) -> Any:
    """``value`` checked for the task field ``key`` (see :mod:`taskmill.validation`)."""
    if key == "priority":
        return validate_priority(value)
    if key == "status":
        return validate_status(value)
    if key == "checks":
        return check.checks(value)
    if key in ("metadata", "hints"):
        return check.table(key, value)
    if key == "title":
        return check.one_line("the title", value, max_chars=check.TITLE_MAX)
    if key == "issue_type":
        return check.one_line("issue_type", value)
    if key in ("assignee", "external_ref", "agent"):
        return check.optional_one_line(key, value)
    if key == "role":
        return check.role_name(value)
    if key == "close_reason":
        return check.optional_text(key, value)
    if key in ("description", "design", "acceptance_criteria", "notes"):
        return check.text(key, value)
    return value
