"""The bodies of ``create``, ``show``, ``ready``, ``update`` and ``close``, without click.

The click commands (:mod:`taskmill.cli.tasks`) and the fast path (:mod:`taskmill.cli.fast`)
both call these with parsed arguments, so the two print the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .context import (
    Ctx,
    echo,
    emit_json,
    emit_json_items,
    fail,
    known_error,
    parse_json_option,
)

if TYPE_CHECKING:
    from ..model import Task
    from ..project import Project
    from ..roles.budget import Hold


def guarded(ctx: Ctx, as_json: bool, body: Callable[[], None]) -> None:
    """What ``json_option`` does around a command: taskmill errors become a message (or a
    JSON error) and an exit status, and the ledger is closed."""
    ctx.json = as_json or ctx.json
    try:
        body()
    except Exception as exc:
        if known_error(exc) is not None:
            fail(exc, ctx.json)
        raise
    finally:
        ctx.close()


def create(ctx: Ctx, title: str, *, description: str | None, design: str | None,
           acceptance_criteria: str | None, notes: str | None, priority: int | None,
           issue_type: str | None, assignee: str | None, external_ref: str | None,
           agent: str | None, checks: Sequence[str], metadata: str | None, hints: str | None,
           labels: Sequence[str], after: Sequence[str], parent: str | None,
           discovered_from: str | None, task_id: str | None, role: str | None = None) -> None:
    from ..validation import printable

    ledger: Any
    if ctx.turn_socket is not None:  # inside a turn: linked discovered-from its task
        ledger = ctx.remote()
    else:
        project = ctx.project()
        if agent is not None:
            project.config.check_agent(agent)
        if role:
            from ..roles import check_role

            check_role(project.paths.dir, role)
        ledger = project.ledger
    if discovered_from is None and ctx.env.get("TASKMILL_TASK_ID"):
        discovered_from = ctx.env["TASKMILL_TASK_ID"]
    task = ledger.create(
        title, description=description or "", design=design or "",
        acceptance_criteria=acceptance_criteria or "", notes=notes or "",
        priority=2 if priority is None else priority, issue_type=issue_type or "task",
        assignee=assignee, labels=tuple(labels), external_ref=external_ref,
        metadata=parse_json_option("metadata", metadata), checks=list(checks) or None,
        agent=agent, hints=parse_json_option("hints", hints), after=tuple(after),
        parent=parent, discovered_from=discovered_from, task_id=task_id,
        **({"role": role} if role else {}))
    if ctx.json:
        emit_json(task.to_json())
    else:
        echo(f"created {task.id}: {printable(task.title)}")


def show(ctx: Ctx, task_id: str) -> None:
    if ctx.turn_socket is not None:
        task = ctx.remote().show(task_id)
    else:
        project = ctx.project()
        task = project.ledger.show(task_id)
        mark_interrupted(project, [task])
        mark_held(project, [task])
    if ctx.json:
        emit_json(task.to_json(full=True))
    else:
        from . import render

        render.task_detail(task)


def ready(ctx: Ctx, limit: int | None, beads_compat: bool = False) -> None:
    """``beads_compat``: as Beads (else as ``[ledger] beads_compat`` says)."""
    if ctx.turn_socket is not None:
        tasks = ctx.remote().ready(limit=limit)
    else:
        project = ctx.project()
        held = role_holds(project)
        tasks = project.ledger.ready(limit=None if held else limit,
                                     beads_compat=beads_compat or None)
        if held:  # the mill hands none of these out today: `blocked` lists them
            tasks = [t for t in tasks if t.role not in held][:limit]
    if ctx.json:  # the same bytes as emit_json(list), faster for a long list
        emit_json_items(t.to_json() for t in tasks)
    else:
        from . import render

        render.ready_tables(tasks)


UPDATE_FIELDS = ("title", "description", "design", "acceptance_criteria", "notes", "priority",
                 "issue_type", "assignee", "external_ref", "agent", "status", "role")
"""The fields ``update`` sets from options of the same name, in this order."""


def update_changes(fields: dict[str, Any], *, checks: Sequence[str], clear_checks: bool,
                   metadata: str | None, hints: str | None) -> dict[str, Any]:
    """The changes ``update``'s options ask for (``fields``: the options of
    :data:`UPDATE_FIELDS`, ``None`` when not given)."""
    changes: dict[str, Any] = {}
    for key in UPDATE_FIELDS:
        value = fields.get(key)
        if value is not None:
            changes[key] = value
    if fields.get("agent") == "":
        changes["agent"] = None
    if fields.get("role") == "":
        changes["role"] = None
    if checks:
        changes["checks"] = list(checks)
    if clear_checks:
        changes["checks"] = None
    if metadata is not None:
        changes["metadata"] = parse_json_option("metadata", metadata)
    if hints is not None:
        changes["hints"] = parse_json_option("hints", hints)
    return changes


def update(ctx: Ctx, task_id: str, changes: dict[str, Any], *, agent: str | None,
           assignee: str | None, append_notes: str | None, claim: bool) -> None:
    if ctx.turn_socket is not None:  # inside a turn: its own task's notes, nothing else
        task = ctx.remote().update(task_id, changes, append_notes=append_notes, claim=claim)
        if ctx.json:
            emit_json(task.to_json())
        else:
            echo(f"updated {task.id}")
        return
    project = ctx.project()
    if agent:  # --agent "" clears it
        project.config.check_agent(agent)
    if changes.get("role"):  # --role "" clears it
        from ..roles import check_role

        check_role(project.paths.dir, changes["role"])
    ledger = project.ledger
    if changes:
        task = ledger.update(task_id, changes)
    if append_notes:  # read and written in one transaction: concurrent appends all stay
        task = ledger.append_notes(task_id, append_notes)
    if claim:
        task = ledger.claim(task_id, assignee or ledger.actor)
    held = (ledger.held_back(task.id)
            if "status" in changes and task.status in ("deferred", "blocked") else [])
    if ctx.json:
        emit_json({**task.to_json(), "holds_back": held} if held else task.to_json())
    else:
        echo(f"updated {task.id}" + (f" (claimed by {task.assignee})" if claim else ""))
        if held:
            shown = ", ".join(held[:5]) + (", ..." if len(held) > 5 else "")
            echo(f"{task.id} is {task.status}: it holds back {len(held)}"
                 f" task{'s' if len(held) != 1 else ''} under it ({shown});"
                 " `taskmill blocked` lists them")


def close(ctx: Ctx, task_ids: Sequence[str], reason: str | None) -> None:
    from ..validation import printable

    ledger = ctx.project().ledger
    tasks = ledger.close_many(task_ids, reason)
    if ctx.json:
        emit_json(tasks[0].to_json() if len(tasks) == 1 else [t.to_json() for t in tasks])
    else:
        for task in tasks:
            echo(f"closed {printable(task.id)}: {printable(task.title)}")


def role_holds(project: Project) -> dict[str, Hold]:
    """The roles whose daily budget is spent now (their open tasks wait)."""
    from ..roles.budget import current_holds, read_budgets

    budgets = read_budgets(project.paths.dir)
    return current_holds(project.ledger, budgets, project.ledger.clock.now()) if budgets else {}


def mark_held(project: Project, tasks: list[Task],
              holds: dict[str, Hold] | None = None) -> list[Task]:
    """Say on each open task whose role spent its daily budget why it waits (``held``)."""
    found = role_holds(project) if holds is None else holds
    if found:
        from ..roles.budget import mark_held as mark

        mark(tasks, found)
    return tasks


def mark_interrupted(project: Project, tasks: list[Task]) -> None:
    """Flag the tasks a stopped (or dead) ``taskmill run`` left in progress. Only a task in
    progress can be: for the others nothing more is imported."""
    if not any(t.status == "in_progress" for t in tasks):
        return
    from ..control import mark_interrupted as mark

    mark(project.ledger, project.paths.run_dir, tasks)


def interrupted_ids(project: Project) -> set[str]:
    """The tasks a stopped (or dead) ``taskmill run`` left in progress (see
    :func:`mark_interrupted`)."""
    from ..control import MILL_PREFIX
    from ..control import interrupted_ids as found

    claims = project.ledger.claims(MILL_PREFIX)
    if not any(assignee.startswith(MILL_PREFIX) for _tid, assignee in claims):
        return set()
    return found(project.ledger, project.paths.run_dir)
