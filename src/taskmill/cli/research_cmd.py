"""``taskmill research init|run|status|log|submit``: research mode (thin over
:mod:`taskmill.research`)."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from .common import emit_json, get_ctx, json_option
from .context import echo

CONFIG_OPTION = click.option(
    "--config", "config", type=click.Path(dir_okay=False, path_type=Path),
    help="The research config (default: research.toml at the repository's root).")


@click.group()
def research() -> None:
    """Research mode: agents edit, taskmill measures a metric, keeps only what wins."""


@research.command("init")
@click.option("--metric", help='The metric command (default "python bench.py").')
@click.option("--force", is_flag=True, help="Overwrite research.toml and program.md.")
@json_option
def init_cmd(metric: str | None, force: bool) -> None:
    """Write research.toml (every key, commented) and program.md."""
    from ..paths import find_repository
    from ..research.session import init_files

    ctx = get_ctx()
    root = find_repository(ctx.cwd).root
    written = init_files(root, metric=metric, force=force)
    if ctx.json:
        emit_json({"written": [str(p) for p in written]})
    else:
        for path in written:
            echo(f"wrote {path}")
        echo("next: edit research.toml (metric, editable, agent), then `taskmill research run`")


def _printer(as_json: bool) -> Any:
    lock = threading.Lock()

    def emit(kind: str, data: dict[str, Any]) -> None:
        if as_json:
            return
        with lock:
            if kind == "baseline":
                echo(f"measuring the baseline {data['commit'][:12]} ({data['runs']} runs)")
            elif kind == "experiment":
                echo(f"experiment {data['n']} ({data['id']})")
            elif kind == "kept":
                echo(f"kept experiment {data['n']}: {data['commit'][:12]} "
                     f"metric {data['metric']:.6g}")

    return emit


@research.command("run")
@CONFIG_OPTION
@click.option("-j", "--workers", type=click.IntRange(min=1, max=64),
              help="Agents at once (default: workers in research.toml).")
@json_option
def run_cmd(config: Path | None, workers: int | None) -> None:
    """Run experiments until a stop condition. Kill-safe: a re-run resumes.

    Ctrl-C (or SIGTERM) starts no new experiment and lets running ones finish; a second
    one exits at once (the next run resumes what was in flight)."""
    from ..research.session import open_research

    ctx = get_ctx()
    project = ctx.project()
    res = open_research(project, ctx.env, path=config, emit=_printer(ctx.json),
                        workers=workers)
    previous: dict[int, Any] = {}

    def on_signal(signum: int, _frame: Any) -> None:
        if res.stop.is_set():
            os._exit(128 + signum)
        res.stop.set()
        click.echo("taskmill research: stopping after the running experiments (again: "
                   "now; they resume next run)", err=True)

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        report = res.run()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    state = _status(res)
    if ctx.json:
        emit_json({"run": report.to_json(), "status": state})
    else:
        r = report.to_json()
        echo(f"{r['experiments']} experiments: {r['kept']} kept, {r['discarded']} discarded, "
             f"{r['crashed']} crashed ({r['resumed']} resumed); stopped by "
             f"{r['stopped_by'] or 'nothing left'}")
        _print_status(state)
    sys.exit(0)


def _status(res: Any) -> dict[str, Any]:
    from ..research.digest import status

    experiments = res.load()
    tip = res.tip()
    return status(experiments, branch=res.config.branch, tip=tip,
                  best_value=res.value_of(tip) if tip else None, config=res.config)


def _print_status(state: dict[str, Any]) -> None:
    best = state["best_metric"]
    echo(f"branch {state['branch']}: best {best if best is None else f'{best:.6g}'} at "
         f"{(state['best_commit'] or '-')[:12]} (baseline {state['baseline']}, sigma "
         f"{state['sigma']}, {state['direction']})")
    rate = state["keep_rate"]
    echo(f"experiments {state['experiments']} ({state['running']} running): "
         f"{state['kept']} kept, {state['discarded']} discarded, {state['crashed']} crashed; "
         f"keep rate {'-' if rate is None else f'{rate:.0%}'}; spend ${state['cost_usd']:.2f}, "
         f"{state['tokens']} tokens")


@research.command("status")
@CONFIG_OPTION
@json_option
def status_cmd(config: Path | None) -> None:
    """Best so far, experiments, keep rate, spend."""
    from ..research.session import open_research

    ctx = get_ctx()
    res = open_research(ctx.project(), ctx.env, path=config, need_agent=False)
    state = _status(res)
    if ctx.json:
        emit_json(state)
    else:
        _print_status(state)


@research.command("log")
@CONFIG_OPTION
@click.option("--tsv", is_flag=True, help="autoresearch's results.tsv columns, then taskmill's.")
@json_option
def log_cmd(config: Path | None, tsv: bool) -> None:
    """Every experiment of this research."""
    from ..research.digest import one_line
    from ..research.digest import tsv as to_tsv
    from ..research.session import open_research

    ctx = get_ctx()
    res = open_research(ctx.project(), ctx.env, path=config, need_agent=False)
    experiments = res.log.all()
    if tsv:
        sys.stdout.write(to_tsv(experiments))
    elif ctx.json:
        emit_json([e.to_json() for e in experiments])
    else:
        for e in experiments:
            d = e.data
            metric = d.get("verified", d.get("metric"))
            shown = f"{metric:.6g}" if isinstance(metric, int | float) else "-"
            echo(f"#{e.n:<4} {e.verdict or 'running':8} {shown:>12}  "
                 f"{str(d.get('kept_commit') or d.get('commit') or '')[:10]:10}  "
                 f"{one_line(d.get('description') or '', 60)}  {one_line(d.get('reason') or '', 70)}")


@research.command("submit")
@click.argument("patch", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--claimed", type=float, help="The metric the contributor measured.")
@click.option("--contributor", help="Who sent it (default: the actor).")
@CONFIG_OPTION
@json_option
def submit_cmd(patch: Path, claimed: float | None, contributor: str | None,
               config: Path | None) -> None:
    """Take a change from anyone: taskmill applies it to the current best, checks it touches
    only `editable` paths, re-measures it itself and keeps it only on its own figures.

    Exit status 0 when it was kept, 1 when it was rejected (the figures say why)."""
    from ..errors import InvalidInput
    from ..research.records import KEEP
    from ..research.session import open_research

    ctx = get_ctx()
    if str(patch) == "-":
        text = sys.stdin.read()
    else:
        try:
            text = patch.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read the patch {patch}: {exc}") from None
    project = ctx.project()
    res = open_research(project, ctx.env, path=config, need_agent=False)
    exp = res.submit(text, claimed=claimed,
                     contributor=contributor or ctx.actor or project.ledger.actor)
    if ctx.json:
        emit_json(exp.to_json())
    else:
        d = exp.data
        echo(f"{exp.id}: {exp.verdict}: {d.get('reason')}")
        if d.get("claimed") is not None or d.get("verified") is not None:
            echo(f"  claimed {d.get('claimed')}, verified {d.get('verified')}, "
                 f"best {d.get('best_at_decision', d.get('parent_metric'))}")
    ctx.close()
    sys.exit(0 if exp.verdict == KEEP else 1)
