"""``taskmill pause``, ``taskmill resume`` and ``taskmill agents``: steering the mill from
outside it, and what it can run."""

from __future__ import annotations

import click

from .common import emit_json, get_ctx, json_option


@click.command()
@json_option
def pause() -> None:
    """Dispatch no new task until `taskmill resume` (turns already running go on)."""
    from ..clock import SystemClock
    from ..control import pause as do_pause
    from ..paths import locate

    ctx = get_ctx()
    paths = locate(ctx.cwd, ctx.env)
    changed = do_pause(paths.run, now=SystemClock().now(), by="from the command line")
    if ctx.json:
        emit_json({"paused": True, "changed": changed})
    else:
        click.echo("paused: taskmill run dispatches no new task until `taskmill resume`"
                   if changed else "already paused")


@click.command()
@json_option
def resume() -> None:
    """Let taskmill run dispatch tasks again after `taskmill pause`."""
    from ..control import resume as do_resume
    from ..paths import locate

    ctx = get_ctx()
    changed = do_resume(locate(ctx.cwd, ctx.env).run)
    if ctx.json:
        emit_json({"paused": False, "changed": changed})
    else:
        click.echo("resumed" if changed else "not paused")


@click.command()
@json_option
def agents() -> None:
    """The agent adapters taskmill can run: built in, and added by installed plugins."""
    from ..agents.registry import adapter_sources

    ctx = get_ctx()
    rows, problems = adapter_sources()
    if ctx.json:
        emit_json({"adapters": [{"name": name, "source": source} for name, source in rows],
                   "problems": problems})
        return
    width = max(len(name) for name, _ in rows)
    for name, source in rows:
        click.echo(f"{name:<{width}}  {source}")
    for problem in problems:
        click.echo(f"warning: {problem}", err=True)
