"""The filter of a task listing (``taskmill list``'s options) as the SQL stores write it:
one place for the clause the rows of :class:`~taskmill.model.Task` and the rows of JSON text
are both read with, in SQLite's and PostgreSQL's spelling."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def task_where(*, statuses: Sequence[str] | None, include_hidden: bool, label: str | None,
               issue_type: str | None, assignee: str | None, parent: str | None,
               postgres: bool, alias: str = "") -> tuple[str, list[Any]]:
    """``" WHERE ..."`` (empty when nothing filters) and its arguments; ``alias``: the
    tasks table's, with its dot (``"t."``)."""
    from ..model import HIDDEN_STATUSES

    check_filter_text(statuses=statuses, label=label, issue_type=issue_type,
                      assignee=assignee, parent=parent)
    p = "%s" if postgres else "?"
    where: list[str] = []
    args: list[Any] = []

    def status_in(values: Sequence[str], negate: bool) -> None:
        if postgres:
            clause = f"{alias}status = ANY(%s)"
            where.append(f"NOT ({clause})" if negate else clause)
            args.append(list(values))
        else:
            where.append(f"{alias}status {'NOT IN' if negate else 'IN'} "
                         f"({','.join('?' * len(values))})")
            args.extend(values)

    if statuses:
        status_in(statuses, negate=False)
    elif not include_hidden:
        status_in(sorted(HIDDEN_STATUSES), negate=True)
    if label:
        where.append(f"{alias}id IN (SELECT task_id FROM labels WHERE label = {p})")
        args.append(label)
    if issue_type:
        where.append(f"{alias}issue_type = {p}")
        args.append(issue_type)
    if assignee:
        where.append(f"{alias}assignee = {p}")
        args.append(assignee)
    if parent:
        where.append(f"{alias}id IN (SELECT issue_id FROM deps WHERE depends_on_id = {p}"
                     " AND type = 'parent-child')")
        args.append(parent)
    return (" WHERE " + " AND ".join(where) if where else ""), args


def listing_order(limit: int | None, alias: str = "") -> str:
    """The listings' order (priority, then the ledger's sequence) and limit."""
    return f" ORDER BY {alias}priority, {alias}seq" + (f" LIMIT {int(limit)}" if limit else "")


def check_filter_text(**filters: Any) -> None:
    """Raises InvalidInput when a filter's text is not Unicode (half of a surrogate pair:
    an argument in another encoding than UTF-8), which no task can hold."""
    from .. import validation

    for name, value in filters.items():
        for text in (value if isinstance(value, (list, tuple)) else [value]):
            if isinstance(text, str):
                validation.unicode(name.replace("_", "-"), text)
