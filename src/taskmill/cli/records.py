"""CLI commands for dependencies, the audit trail and moving records in and out:
dep, log, verify, audit, stats, import, export."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .common import emit_json, get_ctx, json_option

DEP_TYPE = click.Choice(["blocks", "parent-child", "related", "discovered-from"])


@click.group()
def dep() -> None:
    """Add, remove and inspect dependencies."""


@dep.command(name="add")
@click.argument("task_id")
@click.argument("depends_on")
@click.option("-t", "--type", "dep_type", type=DEP_TYPE, default="blocks", show_default=True)
@json_option
def dep_add(task_id: str, depends_on: str, dep_type: str) -> None:
    """TASK_ID depends on DEPENDS_ON (refused if it would close a cycle)."""
    ctx = get_ctx()
    source = ctx.remote() if ctx.turn_socket is not None else ctx.project().ledger
    item = source.add_dep(task_id, depends_on, dep_type)
    if ctx.json:
        emit_json(item.to_json())
    else:
        click.echo(f"{item.issue_id} now depends on {item.depends_on_id} ({item.type})")


@dep.command(name="rm")
@click.argument("task_id")
@click.argument("depends_on")
@click.option("-t", "--type", "dep_type", type=DEP_TYPE, help="Only this type.")
@json_option
def dep_rm(task_id: str, depends_on: str, dep_type: str | None) -> None:
    """Remove the dependency of TASK_ID on DEPENDS_ON."""
    ctx = get_ctx()
    removed = ctx.project().ledger.remove_dep(task_id, depends_on, dep_type)
    if ctx.json:
        emit_json([d.to_json() for d in removed])
    else:
        for item in removed:
            click.echo(f"{item.issue_id} no longer depends on {item.depends_on_id} ({item.type})")


@dep.command(name="tree")
@click.argument("task_id")
@click.option("--reverse", is_flag=True, help="What depends on the task, instead.")
@click.option("--depth", type=click.IntRange(min=1), default=50, show_default=True)
@json_option
def dep_tree(task_id: str, reverse: bool, depth: int) -> None:
    """The tree of what a task depends on."""
    ctx = get_ctx()
    tree = ctx.project().ledger.dep_tree(task_id, reverse=reverse, max_depth=depth)
    if ctx.json:
        emit_json(tree)
    else:
        from . import render

        render.dep_tree(tree, reverse=reverse)


@dep.command(name="cycles")
@json_option
def dep_cycles() -> None:
    """Dependency cycles (only imported data can hold them; new ones are refused)."""
    ctx = get_ctx()
    cycles = ctx.project().ledger.cycles()
    if ctx.json:
        emit_json(cycles)
    elif not cycles:
        click.echo("no cycles")
    else:
        for cycle in cycles:
            click.echo(" -> ".join(cycle))


@click.command()
@click.argument("task_id", required=False)
@click.option("-n", "--limit", type=click.IntRange(min=1), help="Only the last N events.")
@json_option
def log(task_id: str | None, limit: int | None) -> None:
    """The audit trail: every change, all or for one task."""
    ctx = get_ctx()
    events = ctx.project().ledger.events(task_id, limit=limit)
    if ctx.json:
        emit_json([e.to_json() for e in events])
    else:
        from . import render

        render.events_table(events)


@click.command()
@json_option
def verify() -> None:
    """Check the audit trail: the hash chain, every task replayed from its events against
    the tables, and the chain against the signed anchors in git (refs/taskmill/audit).

    Exit 5 when something was tampered with; 0 (with warnings) when events are only not
    anchored yet."""
    from ..audit_anchor import open_store

    ctx = get_ctx()
    project = ctx.project()
    store, note = open_store(project.paths.root, ctx.env)
    report = project.ledger.verify(store, anchors_note=note or None)
    if ctx.json:
        emit_json(report.to_json())
    else:
        from . import render

        render.verify_report(report)
    if not report.ok:
        sys.exit(5)


@click.group()
def audit() -> None:
    """Anchor the audit chain outside the database (signed commits on refs/taskmill/audit)."""


@audit.command(name="anchor")
@json_option
def audit_anchor() -> None:
    """Record the chain's head now as a signed anchor in git (the mill anchors at every
    landing and at the end of each run)."""
    from ..audit_anchor import anchor_ledger, open_store
    from ..errors import TaskmillError

    ctx = get_ctx()
    project = ctx.project()
    store, note = open_store(project.paths.root, ctx.env)
    if store is None:
        raise TaskmillError(note)
    anchor = anchor_ledger(project.ledger.store, store, project.ledger.now())
    last = anchor or store.last()
    if ctx.json:
        emit_json({"anchored": anchor is not None,
                   "anchor": last.to_json() if last else None})
    elif anchor is None:
        click.echo("already anchored: " + (f"anchor {last.number} records events 1..{last.seq}"
                                           if last else "no events"))
    else:
        how = "signed" if anchor.signed else "NOT signed (no ssh-keygen)"
        click.echo(f"anchor {anchor.number}: events 1..{anchor.seq} ({how}),"
                   f" commit {anchor.commit[:12]} on refs/taskmill/audit")


@click.command()
@click.option("--by", "by", type=click.Choice(["agent", "model", "role"]),
              help="The attempts' totals (attempts, passed, tokens, cost, seconds) per agent,"
                   " model or role (with each role's spend today against its budget).")
@json_option
def stats(by: str | None) -> None:
    """Counts of tasks, readiness, dependencies, attempts, tokens and cost."""
    ctx = get_ctx()
    if by is not None:
        _stats_by(ctx, by)
        return
    data = ctx.project().ledger.stats()
    if ctx.json:
        emit_json(data)
    else:
        from . import render

        render.stats(data)


def _stats_by(ctx: Any, by: str) -> None:
    """``stats --by agent|model|role``."""
    from ..roles.budget import day_start, read_budgets

    project = ctx.project()
    ledger = project.ledger
    now = ledger.clock.now()
    totals: dict[str, dict[str, Any]] = ledger.attempt_totals(now)[f"by_{by}"]
    if by == "role":  # and what each role with a budget spent today
        spent = ledger.role_spend(day_start(now))
        for name, budget in read_budgets(project.paths.dir).items():
            tokens, cost = spent.get(name, (0, 0.0))
            totals.setdefault(name, {"attempts": 0, "passed": 0, "input_tokens": 0,
                                     "output_tokens": 0, "cost_usd": 0.0, "seconds": 0.0})
            totals[name]["today"] = {"tokens": tokens, "cost_usd": round(cost, 6),
                                     "tokens_per_day": budget.tokens_per_day,
                                     "cost_per_day": budget.cost_per_day}
    if ctx.json:
        emit_json(totals)
        return
    from . import render

    render.totals_table(by, totals)


@click.command(name="import")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["auto", "beads", "plan"]), default="auto",
              show_default=True, help="beads: Beads JSONL; plan: a TOML plan file.")
@json_option
def import_cmd(path: Path, fmt: str) -> None:
    """Import a Beads JSONL export or a TOML plan file (all or nothing)."""
    from ..errors import InvalidInput

    ctx = get_ctx()
    path = path if path.is_absolute() else ctx.cwd / path
    if not path.is_file():
        raise InvalidInput(f"no such file: {path}")
    if fmt == "auto":
        fmt = "plan" if path.suffix == ".toml" else "beads"
    project = ctx.project()
    if fmt == "plan":
        from ..plan import import_plan_report
        from ..roles import role_problem

        plan = import_plan_report(project.ledger, path,
                                  agent_problem=project.config.agent_problem,
                                  role_problem=lambda name: role_problem(project.paths.dir, name))
        if ctx.json:  # the documented shape: {key: id} (the counts are in the text output)
            emit_json(dict(plan.ids))
        else:
            click.echo(f"imported {path.name}: {plan.created} created, {plan.updated} updated,"
                       f" {plan.unchanged} unchanged")
            for key, tid in plan.ids.items():
                click.echo(f"  {key} -> {tid}")
    else:
        from ..beads import import_beads

        meter = None
        if not ctx.json and sys.stderr.isatty():  # (how far it is, on a line it clears)
            from .import_progress import ImportMeter

            meter = ImportMeter(sys.stderr, path.name)
        try:
            report = import_beads(project.ledger, path, progress=meter)
        finally:
            if meter is not None:
                meter.clear()
        if ctx.json:
            emit_json(report.to_json())
        else:
            click.echo(f"imported {path.name}: {report.created} created, {report.updated} updated,"
                       f" {report.unchanged} unchanged")
            for cycle in report.cycles:  # only an import can bring one in
                click.echo(f"warning: dependency cycle {' -> '.join(cycle)}: its tasks can never"
                           " be ready (`taskmill blocked` lists them; break it with"
                           f" `taskmill dep rm {cycle[0]} {cycle[1]}`)")


@click.command()
@click.option("--format", "fmt", type=click.Choice(["beads", "json"]), default="beads",
              show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file instead of standard output.")
@json_option
def export(fmt: str, output: Path | None) -> None:
    """Export the ledger as Beads JSONL or as taskmill JSON."""
    from .output_file import write_output

    ctx = get_ctx()
    project = ctx.project()
    if output is not None and not output.is_absolute():
        output = ctx.cwd / output
    if fmt == "beads":
        from ..beads import beads_records, export_beads

        if output is None:
            if ctx.json:  # one JSON document (an array of the records), not JSON lines
                emit_json(beads_records(project.ledger))
            else:
                export_beads(project.ledger, sys.stdout)
            return
        count = write_output(output, lambda fh: export_beads(project.ledger, fh))
    else:
        from ..beads import export_json

        data = export_json(project.ledger)
        if output is None:
            emit_json(data)
            return
        from .common import dumps

        write_output(output, lambda fh: fh.write(dumps(data) + "\n"))
        count = len(data)
    if ctx.json:
        emit_json({"output": str(output), "format": fmt, "records": count})
