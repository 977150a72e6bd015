"""``taskmill sync``: the ledger shared through the repository's remotes."""

from __future__ import annotations

import sys

import click

from .common import emit_json, get_ctx, json_option


@click.command()
@click.option("--remote", default="origin", show_default=True,
              help="The git remote to sync with.")
@click.option("--no-push", is_flag=True, help="Fetch, merge and import, but push nothing.")
@json_option
def sync(remote: str, no_push: bool) -> None:
    """Share the ledger through git: export it to refs/taskmill/ledger, fetch the remote's,
    merge the two field by field, import, push.

    A fresh clone loads the shared ledger this way. Conflicts that cannot be merged are
    listed (and kept in the audit trail); the exit status is then 4."""
    from ..paths import locate
    from ..sync import open_ledger
    from ..sync import sync as do_sync
    from ..validation import printable

    ctx = get_ctx()
    paths = locate(ctx.cwd, ctx.env)
    ledger = open_ledger(paths, ctx.env, clock=ctx.clock, actor=ctx.actor)
    try:
        report = do_sync(ledger, paths, ctx.env, remote=remote, push=not no_push)
    finally:
        ledger.close_db()
    if ctx.json:
        emit_json(report.to_json())
    else:
        click.echo(f"synced with {remote}: {len(report.exported)} tasks changed here went out,"
                   f" {len(report.imported)} came in, {report.events_in} audit events came in")
        if not report.remote_had_ledger:
            click.echo(f"  {remote} had no synced ledger: this one is the first")
        click.echo(f"  refs/taskmill/ledger is {report.commit[:12]}"
                   + (f", pushed to {remote}" if report.pushed else
                      "" if no_push is False else " (not pushed: --no-push)"))
        for conflict in report.conflicts:
            click.echo(f"conflict: {printable(conflict.message)}", err=True)
    if report.conflicts:
        sys.exit(4)
