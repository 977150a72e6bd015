"""The bodies of ``list`` and ``blocked``, without click.

The click commands (:mod:`taskmill.cli.tasks`) and the fast path (:mod:`taskmill.cli.fast`)
both call these with parsed arguments, so the two print the same bytes. The JSON forms are
each row's text made by the store, streamed; the text forms are tables printed as the rows
are read (:mod:`taskmill.cli.table_stream`), each row's cells read by the store (no
``Task`` made). A long listing is read by two processes (the SQLite store's
:mod:`taskmill.ledger.sqlite.split`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from . import task_ops
from .context import Ctx, collector_paused, emit_json, emit_json_items, emit_json_texts
from .kept_output import kept_json_texts, kept_text

if TYPE_CHECKING:
    from ..model import BlockedTask, Task
    from ..project import Project

PAGE_SIZE = 1000
"""Tasks read from the ledger at a time by ``list`` (its JSON is written as they come)."""


def list_tasks(ctx: Ctx, filters: dict[str, Any]) -> None:
    """``list`` with ``filters`` (:meth:`taskmill.ledger.Ledger.list_json`'s); Python's
    cyclic collector paused meanwhile (:func:`collector_paused`), as for :func:`blocked`."""
    with collector_paused():
        _list_tasks(ctx, filters)


def _list_tasks(ctx: Ctx, filters: dict[str, Any]) -> None:
    from ..ledger.task_filter import check_filter_text

    check_filter_text(**filters)  # (before they key a kept listing)
    if ctx.turn_socket is not None:
        tasks = ctx.remote().list_tasks(**filters)
    else:
        project = ctx.project()
        holds = task_ops.role_holds(project)
        interrupted = task_ops.interrupted_ids(project)
        held = {role: hold.reason for role, hold in holds.items()}
        key = {"filters": filters, "interrupted": sorted(interrupted), "held": held}
        if ctx.json and kept_json_texts(  # each row's JSON from SQL, or as kept
                ctx, project, "list", key,
                lambda: project.ledger.list_json(**filters, interrupted=interrupted,
                                                 held=held)):
            return
        if not ctx.json:
            def table() -> None:  # printed as the rows are read (each row's cells from
                from . import table_stream  # SQL, no Task made), a long table's later
                # stretches laid out by another process meanwhile

                table_stream.laid_rows(project.ledger.list_texts(
                    table_stream.Laying(interrupted=interrupted, held=held), **filters))

            kept_text(ctx, project, "list-table", key, table)
            return
        pages = project.ledger.task_pages(**filters, size=PAGE_SIZE)
        # streamed: a page of tasks at a time
        emit_json_items(t.to_json() for page in pages for t in task_ops.mark_held(
            project, mark_interrupted(project, page), holds))
        return
    if ctx.json:
        emit_json([t.to_json() for t in tasks])
    else:
        from . import render

        render.task_table(tasks)


def blocked(ctx: Ctx, beads_compat: bool) -> None:
    """``blocked`` (``--beads-compat``: as Beads'); Python's cyclic collector paused
    meanwhile (:func:`collector_paused`: at 1M tasks its passes took ~30 ms of each process's
    time)."""
    with collector_paused():
        _blocked(ctx, beads_compat)


def _blocked(ctx: Ctx, beads_compat: bool) -> None:
    compat = beads_compat or None
    if ctx.json and ctx.turn_socket is None:  # streamed: each row's JSON from SQL
        from ..ledger.rows import item_text

        project = ctx.project()
        holding = held_items(project)  # (a role's budget, read against the clock)

        def texts() -> Iterable[str]:
            return itertools.chain(project.ledger.blocked_json(beads_compat=compat),
                                   (item_text(b.to_json()) for b in holding))

        if emit_json_texts(texts()) if holding else kept_json_texts(
                ctx, project, "blocked",
                {"beads_compat": project.ledger.beads_compat if compat is None else compat},
                texts):
            return
        emit_json_items(b.to_json() for b in itertools.chain(
            project.ledger.iter_blocked(beads_compat=compat), held_items(project)))
        return
    if ctx.turn_socket is not None:
        items = ctx.remote().blocked()
    else:
        from . import render, table_stream  # (not JSON here) printed as the tasks are
        # looked at, each row's cells from SQL (no Task made)

        project = ctx.project()
        holding = held_items(project)  # (a role's budget, read against the clock)

        def table() -> None:  # (a long table's later stretches laid out by another
            laying = table_stream.HeldLaying()  # process meanwhile)
            table_stream.laid_rows(project.ledger.blocked_texts(laying, beads_compat=compat))
            table_stream.unblock_lines(laying.unblock)

        if holding:  # (with the tasks whose role spent its budget after the ledger's)
            unblock: list[str] = []
            table_stream.blocked_records(itertools.chain(
                table_stream.blocked_records_of(
                    project.ledger.blocked_cells(beads_compat=compat), unblock),
                (table_stream.record(b.task, render.blocked_waits(b)) for b in holding)),
                unblock)
        else:
            kept_text(ctx, project, "blocked-table",
                      {"beads_compat": project.ledger.beads_compat if compat is None
                       else compat}, table)
        return
    if ctx.json:
        emit_json([b.to_json() for b in items])
    else:
        from . import render

        render.blocked_table(items)


def held_items(project: Project) -> list[BlockedTask]:
    """The ready tasks whose role spent its daily budget: held back until the next day."""
    holds = task_ops.role_holds(project)
    if not holds:
        return []
    from ..model import BlockedTask

    waiting = [t for t in project.ledger.ready(limit=None) if t.role in holds]
    task_ops.mark_held(project, waiting, holds)
    return [BlockedTask(t, [], [], reasons=[t.held or ""]) for t in waiting]


def mark_interrupted(project: Project, tasks: list[Task]) -> list[Task]:
    """Flag the tasks a stopped (or dead) ``taskmill run`` left in progress."""
    task_ops.mark_interrupted(project, tasks)
    return tasks

