"""``taskmill pour``, ``taskmill formula list|show`` and ``taskmill orders list|fire``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import click

from .common import emit_json, get_ctx, json_option

if TYPE_CHECKING:
    from ..orders import OrderScheduler
    from ..project import Project


def parse_vars(pairs: tuple[str, ...]) -> dict[str, Any]:
    from ..errors import InvalidInput

    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise InvalidInput(f"--var {pair!r} is not NAME=VALUE",
                               hint='e.g. --var issue="crash on start"')
        out[name.strip()] = value
    return out


def _shown(name: str) -> str:
    return f".taskmill/formulas/{name}.toml"


@click.command()
@click.argument("name")
@click.option("--var", "pairs", multiple=True, metavar="NAME=VALUE",
              help="A variable of the formula (repeatable).")
@click.option("--key", help="Pour once per key: pouring the same key again creates nothing.")
@click.option("--dry-run", is_flag=True, help="Print what it would create; create nothing.")
@json_option
def pour(name: str, pairs: tuple[str, ...], key: str | None, dry_run: bool) -> None:
    """Pour formula NAME (.taskmill/formulas/NAME.toml): an epic and one task per step, in
    one transaction."""
    from ..formulas import ROLES_DIR, find_formula, load_formula
    from ..formulas import pour as pour_formula

    ctx = get_ctx()
    project = ctx.project()
    directory = project.paths.dir / "formulas"
    loaded = load_formula(find_formula(directory, name), shown=_shown(name))
    report = pour_formula(project.ledger, loaded, parse_vars(pairs), key=key, dry_run=dry_run,
                          roles_dir=project.paths.dir / ROLES_DIR)
    if ctx.json:
        emit_json(report.to_json())
        return
    plan = report.plan
    if dry_run:
        click.echo(f"would pour {plan.formula}: an epic {plan.title!r} and "
                   f"{len(plan.tasks)} task{'s' if len(plan.tasks) != 1 else ''}")
    elif report.existing:
        click.echo(f"{plan.formula} was poured with key {key!r} already: {report.epic} "
                   "(nothing created)")
        for step_key, tid in report.tasks.items():
            found = project.ledger.find(tid)
            click.echo(f"  {step_key:<12} {tid:<12} {found.title if found else ''}")
        return
    else:
        click.echo(f"poured {plan.formula} as {report.epic}: {len(report.tasks)} tasks")
    for task in plan.tasks:
        tid = report.tasks.get(task.key, "")
        needs = f"  (after {', '.join(task.needs)})" if task.needs else ""
        role = f" [{task.role}]" if task.role else ""
        click.echo(f"  {task.key:<12} {tid:<12} {task.title}{role}{needs}")
    for step in plan.skipped:
        click.echo(f"  {step:<12} skipped (condition false or nothing to fan out over)")


@click.group()
def formula() -> None:
    """Formulas: reusable workflows in .taskmill/formulas/NAME.toml."""


@formula.command("list")
@json_option
def formula_list() -> None:
    """The formulas, with their variables and steps."""
    from ..formulas import formula_names, load_formula

    ctx = get_ctx()
    project = ctx.project()
    directory = project.paths.dir / "formulas"
    items = []
    for name in formula_names(directory):
        loaded = load_formula(directory / f"{name}.toml",
                              shown=_shown(name))
        items.append({"formula": name, "description": loaded.formula.description,
                      "vars": list(loaded.formula.vars),
                      "steps": [s.id for s in loaded.formula.steps]})
    if ctx.json:
        emit_json(items)
        return
    if not items:
        click.echo("no formulas: write one in .taskmill/formulas/NAME.toml")
    for item in items:
        click.echo(f"{item['formula']:<20} {len(item['steps'])} steps  "
                   f"vars: {', '.join(item['vars']) or '-'}  {item['description']}")


@formula.command("show")
@click.argument("name")
@json_option
def formula_show(name: str) -> None:
    """A formula: its variables (required or default) and its steps."""
    from ..formulas import find_formula, load_formula

    ctx = get_ctx()
    project = ctx.project()
    loaded = load_formula(find_formula(project.paths.dir / "formulas", name),
                          shown=_shown(name))
    data = loaded.formula.model_dump(exclude_none=True)
    if ctx.json:
        emit_json(data)
        return
    found = loaded.formula
    click.echo(f"{found.formula}: {found.description}")
    for var, spec in found.vars.items():
        need = "required" if spec.default is None else f"default {spec.default!r}"
        click.echo(f"  var {var} ({need}) {spec.description}")
    for step in found.steps:
        extras = [f"{k}={getattr(step, k)!r}" for k in
                  ("role", "needs", "max_iterations", "for_each", "condition", "checks")
                  if getattr(step, k)]
        click.echo(f"  step {step.id}: {step.title}  {' '.join(extras)}")


def scheduler_for(project: Project, env: Mapping[str, str] | None = None) -> OrderScheduler:
    """The project's orders, checked (a bad order file is an error naming its line)."""
    from ..clock import SystemClock
    from ..orders import project_scheduler

    return project_scheduler(project.paths, env or {}, clock=SystemClock())


@click.group()
def orders() -> None:
    """Orders: work created by itself (.taskmill/orders/NAME.toml), fired by taskmill watch."""


@orders.command("list")
@json_option
def orders_list() -> None:
    """Each order: its trigger, last and next firing, and why it did not fire."""
    ctx = get_ctx()
    project = ctx.project()
    items = scheduler_for(project, ctx.env).status(project.ledger)
    if ctx.json:
        emit_json(items)
        return
    if not items:
        click.echo("no orders: write one in .taskmill/orders/NAME.toml")
    for item in items:
        last = item["last"]
        click.echo(f"{item['order']}: {item['what']}, {item['when']}")
        click.echo(f"  last: {last['slot'] + ' -> ' + str(last['task']) if last else 'never'}"
                   f"   next: {item['next'] or '-'}")
        if item["why_not"]:
            click.echo(f"  not fired: {item['why_not']}")


@orders.command("fire")
@click.argument("name")
@json_option
def orders_fire(name: str) -> None:
    """Fire order NAME now (any trigger; skip_if_open still holds)."""
    ctx = get_ctx()
    project = ctx.project()
    firing = scheduler_for(project, ctx.env).fire_manual(project.ledger, name)
    if ctx.json:
        emit_json(firing.to_json())
        return
    if firing.outcome == "fired":
        click.echo(f"fired {name}: {firing.task_id}")
    else:
        click.echo(f"{name} {firing.outcome}: {firing.reason}")
        if firing.outcome == "failed":
            raise SystemExit(1)
