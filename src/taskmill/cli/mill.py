"""``taskmill run``: the mill, with a live view or NDJSON events."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .common import emit_json, get_ctx, json_option
from .context import stacks_on_request

if TYPE_CHECKING:
    from ..mill.engine import Mill


@click.command()
@click.option("--agent", help="The agent (a key of [agents] in config) for tasks without one.")
@click.option("--agent-cmd",
              help="Shorthand for an exec agent running this command, for tasks without one.")
@click.option("--target", help="The branch to land on (default: the branch checked out now).")
@click.option("-j", "--workers", type=click.IntRange(min=1), help="Tasks worked at once.")
@click.option("--max-iterations", type=click.IntRange(min=1),
              help="Agent turns per task before it is marked blocked (default 5).")
@click.option("--turn-timeout", type=click.FloatRange(min=0.1),
              help="Wall-clock seconds per agent turn (default 1800).")
@click.option("--check-timeout", type=click.FloatRange(min=0.1),
              help="Wall-clock seconds per check command (default 900).")
@click.option("--max-tokens", type=click.IntRange(min=1), help="Per-task token budget.")
@click.option("--max-cost", type=click.FloatRange(min=0), help="Per-task budget in USD.")
@click.option("--only", "only", multiple=True, help="Only work this task id (repeatable).")
@click.option("--max-tasks", type=click.IntRange(min=1), help="Dispatch at most this many tasks.")
@click.option("--allow-unchecked", is_flag=True, default=None,
              help="Also work tasks without checks when the project has none ([checks] "
                   "commands): they land unverified. Without it they are refused.")
@click.option("--json-events", "json_events", type=click.Path(dir_okay=False, allow_dash=True),
              help="Write every event as NDJSON to this file ('-' for standard output).")
@click.option("--grace", type=click.FloatRange(min=0),
              help="Seconds in-flight turns get to finish after the first Ctrl-C or SIGTERM "
                   "(default 30); a second Ctrl-C stops the agents at once.")
@click.option("--quiet", is_flag=True, help="No live view; only the summary.")
@click.option("--executor", "executor_kind", type=click.Choice(["threads", "temporal"]),
              help="Where tasks are worked: threads of this process (default), or "
                   "`taskmill worker`s through Temporal ([executor] kind).")
@click.option("--temporal", "temporal_address", metavar="HOST:PORT",
              help="The Temporal frontend for --executor temporal ([executor] address).")
@json_option
def run(agent: str | None, agent_cmd: str | None, target: str | None, workers: int | None,
        max_iterations: int | None, turn_timeout: float | None, check_timeout: float | None,
        max_tokens: int | None, max_cost: float | None, only: tuple[str, ...],
        max_tasks: int | None, allow_unchecked: bool | None, json_events: str | None,
        grace: float | None,
        quiet: bool, executor_kind: str | None = None,
        temporal_address: str | None = None) -> None:
    """Work every ready task with parallel agents, each in its own worktree, looping until
    the task's checks pass, then land it through the merge queue.

    Ctrl-C (or SIGTERM, SIGHUP) stops it: nothing new is started, in-flight turns get
    --grace seconds to finish, then they are cut; a second Ctrl-C cuts them at once.
    Interrupted tasks stay in progress and the next `taskmill run` resumes them.

    Exit status: 0 when every task it touched landed (or was already satisfied: nothing
    to land), 1 when some are blocked, 128 + the signal when it was stopped (130 for
    Ctrl-C, 143 for SIGTERM).
    """
    from ..clock import SystemClock
    from ..mill.engine import Mill
    from ..mill.events import EventBus, NdjsonWriter
    from ..mill.settings import RunSettings, agent_cmd_config

    stacks_on_request()
    ctx = get_ctx()
    project = ctx.project()
    ledger = project.ledger
    overrides: dict[str, Any] = {
        "target": target, "workers": workers, "max_iterations": max_iterations,
        "turn_timeout": turn_timeout, "check_timeout": check_timeout, "max_tokens": max_tokens,
        "max_cost": max_cost, "agent": agent, "max_tasks": max_tasks, "grace": grace,
        "allow_unchecked": allow_unchecked or None,
        "only": [ledger.resolve(t) for t in only] or None}
    settings = RunSettings.from_config(project.config.run, overrides)
    override = agent_cmd_config(agent_cmd) if agent_cmd else None
    if agent is not None:  # [run] agent was checked with the config
        project.config.check_agent(agent)
    # no default agent is fine: tasks naming their own agent are worked, the others are
    # named at start and left alone (Mill._skip_agentless)
    table = project.config.executor
    kind = executor_kind or ("temporal" if temporal_address else table.kind)
    address = None
    if kind == "temporal":  # checked before anything is opened or started
        from ..errors import InvalidInput
        from ..temporal.spec import parse_address

        given = temporal_address or table.address
        if not given:
            raise InvalidInput("--executor temporal needs the Temporal frontend",
                               hint="pass --temporal HOST:PORT, or set [executor] address")
        address = parse_address(given)
        ctx.hard_exit = True
    clock = SystemClock()
    bus = EventBus(clock)
    stream = None
    if json_events:
        stream = sys.stdout if json_events == "-" else Path(json_events).open("a", encoding="utf-8")  # noqa: SIM115
        bus.subscribe(NdjsonWriter(stream))
    # every run also appends its events to .taskmill/run/events.ndjson, for the dashboard
    project.paths.run_dir.mkdir(parents=True, exist_ok=True)
    events_path = project.paths.run.events
    if events_path.exists() and events_path.stat().st_size > 20_000_000:
        events_path.replace(events_path.with_suffix(".ndjson.1"))
    shared = events_path.open("a", encoding="utf-8")
    bus.subscribe(NdjsonWriter(shared))
    watch = None
    if click.get_current_context().command.name == "watch":  # the same options, staying up
        from ..mill.watch import project_watch

        watch = project_watch(project.paths, ctx.env, clock=clock, bus=bus)
    mill: Mill
    if address is not None:
        from ..temporal.mill import TemporalMill

        mill = TemporalMill(project.paths, project.config, settings, env=ctx.env, clock=clock,
                            bus=bus, address=address, namespace=table.namespace,
                            task_queue=table.task_queue,
                            heartbeat_timeout=table.heartbeat_timeout, agent_override=override,
                            watch=watch)
    else:
        mill = Mill(project.paths, project.config, settings, env=ctx.env, clock=clock, bus=bus,
                    agent_override=override, watch=watch)
    live = None
    if not quiet and not ctx.json and json_events != "-" and sys.stdout.isatty():
        from .live import LiveView

        live = LiveView(settings.workers)
        bus.subscribe(live.on_event)
    elif not quiet and not ctx.json and json_events != "-":
        from .live import line_printer

        bus.subscribe(line_printer)
    bus.subscribe(stop_notice)
    previous = _handle_stop_signals(mill)
    try:
        try:
            if live is not None:
                with live:
                    summary = mill.run()
            else:
                summary = mill.run()
        finally:
            # mill.run returns only once every worker is done: nothing emits any more
            if stream is not None and stream is not sys.stdout:
                stream.close()
            shared.close()
        with contextlib.suppress(OSError):  # the terminal may be gone (SIGHUP)
            if ctx.json:
                emit_json(summary.to_json())
            elif json_events != "-":
                from .live import summary_table

                summary_table(summary)
            # a non-zero exit always says why on stderr (--json and --quiet too)
            for n, line in enumerate(summary.exit_reasons()):
                click.echo(line if n else f"taskmill: {line}", err=True)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    sys.exit(summary.exit_code)


watch = click.Command(
    "watch", callback=run.callback, params=run.params,
    help="""The long-running form of `taskmill run`: work ready tasks as they appear (created
    by people, agents or orders), fire the orders of .taskmill/orders on time, and stay up
    until stopped. When idle it sleeps until the next order slot or a ledger change.

    Crash safe like run: after a kill -9, the next `taskmill watch` resumes the tasks in
    progress, and no order slot is fired twice nor lost (each is recorded in the ledger with
    the work it created; catch_up says what happens to slots that passed while it was down).

    With --executor temporal (or [executor] kind = "temporal") it schedules onto the
    `taskmill worker`s the same way; a stop leaves the workflows in flight running, and
    the next `taskmill run` or `watch` waits on them.

    Ctrl-C (or SIGTERM, SIGHUP) stops it as it stops run. Exit status: 128 + the signal.
    """)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _handle_stop_signals(mill: Mill) -> dict[int, Any]:
    """SIGINT, SIGTERM and SIGHUP ask the mill to stop (it prints that it does) instead of
    raising KeyboardInterrupt under its workers. Returns the handlers they replace."""
    previous: dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous
    for signum in STOP_SIGNALS:
        previous[signum] = signal.signal(signum, lambda sig, _frame: mill.signal(sig))
    return previous


def stop_notice(event: dict[str, Any]) -> None:
    """Say at once, on standard error, that the run is stopping and how to stop it now."""
    kind = event["event"]
    if kind == "stopping":
        again = "Ctrl-C again" if event.get("signal") == "SIGINT" else \
            f"{event.get('signal')} again (or Ctrl-C)"
        click.echo(f"taskmill: {event.get('signal')}: stopping. Nothing new is started; "
                   f"running turns get {event.get('grace', 0):g}s to finish, then they are "
                   f"cut. {again} stops the agents now. Interrupted tasks are resumed by "
                   "the next `taskmill run`.", err=True)
    elif kind == "stopping_now":
        click.echo("taskmill: stopping now: killing the agents and checks; every task stays "
                   "resumable.", err=True)
    elif kind == "grace_over":
        click.echo(f"taskmill: the {event.get('grace', 0):g}s grace is over: cutting the "
                   "turns still running.", err=True)
