"""``taskmill template list|show`` and ``taskmill create --template``: request templates
(:mod:`taskmill.templates`) from the command line."""

from __future__ import annotations

from collections.abc import Sequence

import click

from ..validation import printable
from .common import Ctx, emit_json, get_ctx, json_option


@click.group()
def template() -> None:
    """Request templates (.taskmill/templates/NAME.toml): the kinds of work a person can ask
    for with a few fields (`taskmill create --template NAME --field NAME=VALUE`, or the
    dashboard's New request form)."""


@template.command(name="list")
@json_option
def template_list() -> None:
    """Every template of the repository, with what kind of request it is."""
    from ..templates import load_templates

    ctx = get_ctx()
    templates = load_templates(ctx.project().paths)
    if ctx.json:
        emit_json([t.to_json() for t in templates])
        return
    if not templates:
        click.echo("no templates: define one in .taskmill/templates/NAME.toml")
    for t in templates:
        click.echo(f"{t.name}: {printable(t.description)}")


@template.command(name="show")
@click.argument("name")
@json_option
def template_show(name: str) -> None:
    """A template's fields and the task it makes."""
    from ..templates import get_template

    ctx = get_ctx()
    t = get_template(ctx.project().paths, name)
    if ctx.json:
        emit_json(t.to_json())
        return
    click.echo(f"{t.name}: {printable(t.description)}")
    for f in t.fields:
        flags = ", ".join(x for x in (f.kind, "required" if f.required else "",
                                      f"default {f.default!r}" if f.default is not None else "",
                                      f"one of {', '.join(f.choices)}" if f.choices else "")
                          if x)
        click.echo(f"  --field {f.name}=...  {printable(f.label or f.name)} ({flags})")
        if f.help:
            click.echo(f"      {printable(f.help)}")
    spec = t.task
    click.echo(f"  task: {printable(spec.title)}")
    if spec.role or spec.agent:
        click.echo(f"  worked by: {(spec.role and 'role ' + spec.role) or spec.agent}")
    for command in spec.checks:
        click.echo(f"  check: {printable(command)}")


def parse_fields(pairs: Sequence[str]) -> dict[str, str]:
    """``NAME=VALUE`` pairs (a name given twice is an error)."""
    from ..errors import InvalidInput

    out: dict[str, str] = {}
    for pair in pairs:
        name, eq, value = pair.partition("=")
        name = name.strip()
        if not eq or not name:
            raise InvalidInput(f"--field {pair!r}: write NAME=VALUE")
        if name in out:
            raise InvalidInput(f"--field {name} is given twice")
        out[name] = value
    return out


def create_with_template(ctx: Ctx, name: str, pairs: Sequence[str], *, labels: Sequence[str],
                         after: Sequence[str], priority: int | None) -> None:
    from ..templates import TemplateInputError, create_from_template

    values = parse_fields(pairs)
    project = ctx.project()
    try:
        task = create_from_template(project.ledger, project, name, values,
                                    project.ledger.actor, after=after, labels=labels,
                                    priority=priority)
    except TemplateInputError as exc:
        if not ctx.json and len(exc.fields) > 1:  # every problem, one a line
            exc.message = "; ".join(f"{k}: {v}" for k, v in exc.fields.items())
        raise
    if ctx.json:
        emit_json(task.to_json())
    else:
        click.echo(f"created {task.id}: {printable(task.title)}")
