"""``taskmill worker`` (one machine's share of a Temporal-executed mill) and ``taskmill
status`` (what runs where)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .common import emit_json, get_ctx, json_option
from .context import stacks_on_request


@click.command()
@click.option("--temporal", "address", required=True, metavar="HOST:PORT",
              help="The Temporal frontend the mill's task workflows run on.")
@click.option("--repo", "origin", required=True, metavar="ORIGIN",
              help="The shared remote (URL or path) this worker clones, pushes task "
                   "branches to and lands on.")
@click.option("--workdir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="This worker's own directory (its clone, worktrees and logs).")
@click.option("--slots", type=click.IntRange(min=1), default=2, show_default=True,
              help="Tasks this worker works at once.")
@click.option("--name", help="How this worker is shown (default HOST:PID).")
@click.option("--namespace", help="Temporal namespace (default: [executor] namespace).")
@click.option("--allow-agent-cmd", is_flag=True,
              help="Run the command a run gives with `taskmill run --agent-cmd` (off: only "
                   "the agents of the repository's committed config).")
@json_option
def worker(address: str, origin: str, workdir: Path, slots: int, name: str | None,
           namespace: str | None, allow_agent_cmd: bool) -> None:
    """Run turns, checks and landings for `taskmill run --executor temporal`, in a clone of
    ORIGIN under DIR, until stopped (Ctrl-C or SIGTERM). Agent CLIs and their secrets are
    this machine's own; the ledger is the shared one: the repository's committed [ledger] url
    (TASKMILL_DATABASE_URL overrides it), else TASKMILL_DIR (a ledger on this machine).
    It prints what it does as NDJSON events (--json or not)."""
    import asyncio
    import signal

    from ..clock import SystemClock
    from ..mill.events import EventBus, NdjsonWriter
    from ..temporal.spec import parse_address
    from ..temporal.worker import WorkerServices, default_identity, serve

    stacks_on_request()
    ctx = get_ctx()
    address = parse_address(address)
    ctx.hard_exit = True
    clock = SystemClock()
    bus = EventBus(clock)
    bus.subscribe(NdjsonWriter(sys.stdout))
    workdir.mkdir(parents=True, exist_ok=True)
    # the shared ledger: [ledger] url as committed (read from the clone), or TASKMILL_DIR
    services = WorkerServices(origin, workdir, env=ctx.env, clock=clock, bus=bus,
                              allow_agent_cmd=allow_agent_cmd)
    table = services.config.executor  # the committed [executor] of the shared repository

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, stop.set)
        await serve(address, services, slots=slots, identity=name or default_identity(),
                    stop=stop, namespace=namespace or table.namespace,
                    task_queue=table.task_queue)

    asyncio.run(main())


@click.command()
@click.option("--temporal", "address", metavar="HOST:PORT",
              help="Also show the Temporal executor's workers (default: [executor] address "
                   "when [executor] kind is temporal).")
@json_option
def status(address: str | None) -> None:
    """Tasks in progress (with the run that holds each) and, under the Temporal executor,
    which worker runs which task and each worker's last heartbeat."""
    from ..control import MILL_PREFIX

    ctx = get_ctx()
    project = ctx.project()
    claims = project.ledger.claims(MILL_PREFIX)
    executor = project.config.executor
    if address is None and executor.kind == "temporal":
        address = executor.address
    cluster = None
    if address:
        from ..temporal.cluster import cluster_view
        from ..temporal.spec import parse_address

        ctx.hard_exit = True
        cluster = cluster_view(parse_address(address), namespace=executor.namespace,
                               task_queue=executor.task_queue)
    where = {t["task"]: t for t in (cluster or {}).get("tasks", [])}
    rows = [{"task": tid, "run": assignee[len(MILL_PREFIX):],
             "worker": where.get(tid, {}).get("worker"),
             "activity": where.get(tid, {}).get("activity"),
             "last_heartbeat": where.get(tid, {}).get("last_heartbeat")}
            for tid, assignee in claims]
    if ctx.json:
        emit_json({"in_progress": rows, "executor": "temporal" if cluster else "threads",
                   "workers": (cluster or {}).get("workers", []),
                   **({"error": cluster["error"]} if cluster and "error" in cluster else {})})
        return
    if not rows:
        click.echo("nothing in progress")
    for row in rows:
        place = (f"  on {row['worker']} ({row['activity']}, heartbeat {row['last_heartbeat']})"
                 if row["worker"] else "")
        click.echo(f"{row['task']}  run {row['run']}{place}")
    if cluster is not None:
        if "error" in cluster:
            click.echo(f"warning: {cluster['error']}", err=True)
        click.echo(f"workers ({cluster['address']}):" if cluster["workers"]
                   else f"no worker polls {cluster['address']}")
        for w in cluster["workers"]:
            click.echo(f"  {w['worker']}  last seen {w['last_seen']}")
