"""The run's terminal output: a live view (one line per worker, totals, merge queue), plain
lines when not on a terminal, and the closing summary table."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from ..mill.engine import RunSummary


class LiveView:
    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._lock = threading.Lock()
        self._active: dict[str, dict[str, Any]] = {}
        self._merge: list[str] = []
        self._totals = {"landed": 0, "satisfied": 0, "blocked": 0, "interrupted": 0,
                        "in_tokens": 0, "out_tokens": 0, "cost": 0.0}
        self._messages: list[str] = []
        self._stopping = ""
        self._live = Live(self._render(), refresh_per_second=4, transient=False,
                          get_renderable=self._render)

    def __enter__(self) -> LiveView:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.__exit__(None, None, None)

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        task = event.get("task")
        with self._lock:
            if kind == "dispatched" and task:
                self._active[task] = {"title": event.get("title", ""), "iteration": 0,
                                      "start": time.monotonic(), "tokens": 0, "cost": 0.0,
                                      "state": "starting"}
            elif task and task in self._active:
                row = self._active[task]
                if kind == "turn_started":
                    row["iteration"] = event["iteration"]
                    row["state"] = f"agent {event.get('agent', '')}"
                elif kind == "turn_finished":
                    row["tokens"] += event.get("input_tokens", 0) + event.get("output_tokens", 0)
                    row["cost"] += event.get("cost_usd") or 0.0
                    self._totals["in_tokens"] += event.get("input_tokens", 0)
                    self._totals["out_tokens"] += event.get("output_tokens", 0)
                    self._totals["cost"] += event.get("cost_usd") or 0.0
                    row["state"] = "checks"
                elif kind == "merge_queued":
                    row["state"] = "merge queue"
                    self._merge.append(task)
                elif kind == "interrupted":
                    row["state"] = "interrupted"
                    self._totals["interrupted"] += 1
                elif kind == "internal_error":
                    row["state"] = "taskmill error"
                    self._messages.append(f"{task}: taskmill error (retried by the next run): "
                                          f"{str(event.get('error', ''))[:100]}")
                elif kind in ("merge_rejected", "landed", "satisfied", "blocked",
                              "task_finished"):
                    if task in self._merge:
                        self._merge.remove(task)
                    if kind in ("landed", "satisfied"):
                        self._totals[kind] += 1
                    elif kind == "blocked":
                        self._totals["blocked"] += 1
                        self._messages.append(f"{task} blocked: {event.get('reason', '')[:100]}")
                    if kind == "task_finished" and event.get("outcome") in (
                            "interrupted", "error"):
                        row["done"] = True  # kept in view, frozen, until the run ends
                    elif kind == "task_finished":
                        self._active.pop(task, None)
                    elif kind == "merge_rejected":
                        row["state"] = f"back to agent ({event.get('reason')})"
            if kind == "batch_started":  # parked branches checked and landed together
                tasks = [t for t in event.get("tasks") or [] if t in self._active]
                for t in tasks:
                    self._active[t]["state"] = f"landing (batch of {len(event['tasks'])})"
            if kind in ("checkout_not_moved", "warning", "agent_paused", "usage_invalid") or (
                    kind == "landed" and event.get("unverified")):
                self._messages.append(f"{task or ''} {event.get('message') or event}".strip())
            elif kind == "skipped":
                self._messages.append(f"{task} not worked: {event.get('reason', '')}")
            elif kind == "refused":
                self._messages.append(f"{task} refused: {event.get('reason', '')}")
            elif kind == "stopping":
                self._stopping = (f"stopping ({event.get('signal')}): nothing new starts; "
                                  f"turns get {event.get('grace', 0):g}s; Ctrl-C again stops "
                                  "the agents now")
            elif kind == "stopping_now":
                self._stopping = "stopping now: killing the agents"
            elif kind == "grace_over":
                self._stopping = "grace over: cutting the turns still running"

    def _render(self) -> Group:
        table = Table(show_edge=False, header_style="bold", expand=False)
        for col in ("task", "title", "iter", "elapsed", "tokens", "cost", "doing"):
            table.add_column(col)
        now = time.monotonic()
        with self._lock:
            for task, row in list(self._active.items()):
                if row.get("done"):
                    row.setdefault("end", now)
                state = row["state"]
                if self._stopping and not row.get("done") and state != "interrupted":
                    state += " (stopping)"
                table.add_row(task, row["title"][:40], str(row["iteration"]),
                              f"{row.get('end', now) - row['start']:.0f}s", str(row["tokens"]),
                              f"${row['cost']:.4f}", state)
            t = self._totals
            satisfied = f"satisfied {t['satisfied']}  " if t["satisfied"] else ""
            totals = Text(f"landed {t['landed']}  {satisfied}blocked {t['blocked']}  "
                          + (f"interrupted {t['interrupted']}  " if t["interrupted"] else "") +
                          f"tokens {t['in_tokens']}/{t['out_tokens']}  cost ${t['cost']:.4f}  "
                          f"merge queue: {', '.join(self._merge) or '-'}")
            messages = [Text(m, style="yellow") for m in self._messages[-5:]]
            if self._stopping:
                messages.append(Text(self._stopping, style="bold yellow"))
        return Group(table, totals, *messages)


def line_printer(event: dict[str, Any]) -> None:
    kind = event["event"]
    task = event.get("task", "")
    if kind == "dispatched":
        click.echo(f"start    {task}  {event.get('title', '')}")
    elif kind == "turn_finished":
        click.echo(f"turn     {task}  {event['outcome']}  tokens {event.get('input_tokens', 0)}"
                   f"/{event.get('output_tokens', 0)}  {event.get('seconds', 0)}s")
    elif kind == "merge_rejected":
        click.echo(f"rejected {task}  {event.get('summary') or event.get('reason')}")
    elif kind == "landed":
        unverified = "  (unverified: no checks)" if event.get("unverified") else ""
        click.echo(f"landed   {task}  {str(event.get('commit', ''))[:10]}{unverified}")
    elif kind == "satisfied":
        click.echo(f"satisfied {task}  already at {str(event.get('commit', ''))[:10]}")
    elif kind == "refused":
        click.echo(f"refused  {task}  {event.get('reason', '')}")
    elif kind == "blocked":
        click.echo(f"blocked  {task}  {event.get('reason', '')}")
    elif kind == "interrupted":
        click.echo(f"stopped  {task}  {event.get('reason', '')}")
    elif kind == "internal_error":
        click.echo(f"error    {task}  taskmill error (retried by the next run): "
                   f"{event.get('error', '')}")
    elif kind == "watch_started":
        nxt = event.get("next_firing")
        click.echo(f"watching {len(event.get('orders') or [])} orders"
                   + (f"; next firing {nxt}" if nxt else ""))
    elif kind.startswith("order_"):
        click.echo(f"order    {event.get('order', '')}  {kind[6:]}  {event.get('slot', '')}  "
                   f"{event.get('task') or event.get('reason') or ''}")
    elif kind in ("checkout_not_moved", "warning", "agent_paused", "recovered", "skipped",
                  "usage_invalid"):
        click.echo(f"note     {task}  {event.get('message') or event.get('reason') or kind}")


def summary_table(summary: RunSummary) -> None:
    console = Console(highlight=False)
    table = Table(title=f"taskmill run {summary.run_id} -> {summary.target}", show_edge=False,
                  header_style="bold")
    for col in ("task", "iterations", "outcome", "tokens in/out", "cost", "time"):
        table.add_column(col)
    for o in summary.outcomes:
        style = {"landed": "green", "satisfied": "green", "interrupted": "yellow",
                 "error": "yellow"}.get(o.outcome, "red")
        table.add_row(o.task_id, str(o.iterations), f"[{style}]{o.outcome}[/]",
                      f"{o.input_tokens}/{o.output_tokens}", f"${o.cost_usd:.4f}",
                      f"{o.seconds:.1f}s")
    if summary.outcomes:
        console.print(table)
    landed, satisfied = summary.count("landed"), summary.count("satisfied")
    line = ""
    if summary.outcomes or summary.skipped or not summary.refused:
        line = (f"{landed} landed, " + (f"{satisfied} satisfied (nothing to land), "
                                        if satisfied else "")
                + f"{len(summary.outcomes) - landed - satisfied} not landed"
                if summary.outcomes else "no task was worked" if summary.skipped
                else "nothing was ready to run")
    interrupted, errors = summary.count("interrupted"), summary.count("error")
    if interrupted:
        line += f"; {interrupted} interrupted (the next `taskmill run` resumes them)"
    if errors:
        line += (f"; {errors} hit a taskmill error, not their fault (the next `taskmill run` "
                 "retries them)")
    if summary.stopped_by is not None:
        from ..mill.engine import signal_name

        line = f"stopped by {signal_name(summary.stopped_by)}: " + (line or "nothing ran")
    if line:
        console.print(line, markup=False)
    for o in summary.outcomes:
        if o.outcome not in ("landed", "satisfied") and o.reason:
            console.print(f"  {o.task_id}: {o.reason[:300]}", markup=False)
    for skipped in summary.skipped:
        console.print(f"  not worked: {skipped['task']}: {skipped['reason'][:300]}", markup=False)
    if summary.refused:
        console.print(f"{len(summary.refused)} refused, not run because they have no checks and "
                      f"the project has none: {', '.join(summary.refused)}. Give them checks "
                      "(taskmill update ID --check 'COMMAND'), set [checks] commands in "
                      ".taskmill/config.toml, or opt in to landing them unverified with "
                      "`taskmill run --allow-unchecked` or [run] allow_unchecked = true",
                      markup=False)
