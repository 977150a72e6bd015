"""``taskmill ledger``: where the ledger lives (``ledger migrate --to postgresql://...``), and
what it derives from its rows made again (``ledger remake``)."""

from __future__ import annotations

import click

from .common import emit_json, get_ctx, json_option


@click.group()
def ledger() -> None:
    """Where the ledger lives: move it to a shared PostgreSQL database; remake what it
    derives from its rows."""


@ledger.command(name="remake")
@json_option
def remake() -> None:
    """Make again what the ledger derives from its tasks: their readiness counts and the
    text the listings print (what `taskmill verify` finds wrong after the database was
    written behind taskmill's back). Changes no task and records no event."""
    ctx = get_ctx()
    project = ctx.project()
    project.ledger.remake()
    tasks = project.ledger.store.task_count()
    if ctx.json:
        emit_json({"remade": True, "tasks": tasks})
    else:
        click.echo(f"remade the readiness and the listings' text of {tasks:,} tasks")


@ledger.command(name="migrate")
@click.option("--to", "url", required=True, metavar="URL",
              help="The PostgreSQL database to move the ledger into (postgresql://...); it "
                   "must hold no ledger yet.")
@json_option
def migrate(url: str) -> None:
    """Move this repository's SQLite ledger into PostgreSQL, audit chain intact, and point
    .taskmill/config.toml at it ([ledger] url). The SQLite file stays as it was."""
    from ..clock import SystemClock
    from ..config import load_config, set_ledger_url
    from ..errors import InvalidInput
    from ..ledger import Ledger, check_database_url
    from ..ledger.sqlite import SqliteStore
    from ..paths import locate

    ctx = get_ctx()
    check_database_url(url)
    paths = locate(ctx.cwd, ctx.env)
    config = load_config(paths.config, stamp=paths.run.config_stamp)
    if config.ledger_url is not None:
        raise InvalidInput(f"this repository's ledger is in PostgreSQL already "
                           f"([ledger] url in {paths.config})",
                           hint="nothing to move: the SQLite ledger is not in use")
    if not paths.db.exists():
        raise InvalidInput(f"no SQLite ledger at {paths.db} to move",
                           hint="taskmill init --database URL starts a new one in PostgreSQL")
    try:
        from ..ledger.postgres import PostgresStore
        from ..ledger.postgres.move import move_ledger
    except ImportError as exc:
        raise InvalidInput("psycopg is not installed",
                           hint="pip install 'taskmill[postgres]'") from exc
    source = SqliteStore.open(paths.db)
    try:
        target = PostgresStore.open(url)
        try:
            report = move_ledger(source, target)
            check = Ledger(target, prefix=config.prefix, clock=SystemClock(),
                           actor="taskmill").verify()
        finally:
            target.close()
    finally:
        source.close()
    if not check.ok:  # pragma: no cover - a copy that does not verify is a bug
        raise InvalidInput(f"the moved ledger does not verify: {'; '.join(check.problems)}",
                           hint="the configuration still names the SQLite ledger")
    set_ledger_url(paths.config, url)
    info = {"tasks": report.tasks, "events": report.events, "comments": report.comments,
            "attempts": report.attempts, "head": {"seq": report.head[0], "hash": report.head[1]},
            "verified": check.ok, "config": str(paths.config)}
    if ctx.json:
        emit_json(info)
    else:
        click.echo(f"moved {report.tasks} tasks, {report.events} events, {report.comments} "
                   f"comments and {report.attempts} attempts to PostgreSQL; the audit chain "
                   f"verifies (head {report.head[0]}:{report.head[1][:12]})")
        click.echo(f"  {paths.config} now names it ([ledger] url): commit it; "
                   f"{paths.db.name} is left as it was")

