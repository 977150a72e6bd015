"""Human output: rich tables and panels. Imported only when not printing JSON."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from ..validation import printable
from . import task_cells

if TYPE_CHECKING:
    from ..audit import VerifyReport
    from ..model import BlockedTask, Event, Task

STATUS_STYLE = task_cells.STATUS_STYLE


def console() -> Console:
    return Console(highlight=False, soft_wrap=False)


def plain(value: object) -> Text:
    """Stored text for a terminal: one line, control characters escaped, no markup."""
    return Text(printable(str(value)))


def safe(value: object) -> str:
    """Stored text inside markup: control characters and markup escaped."""
    return escape(printable(str(value)))


def status_parts(task: Task) -> tuple[str, str, str]:
    """A task's status as shown: (label, its style, the container's "2/5 closed" or "")."""
    return task_cells.status_parts(task.status, task.ready, task.children,
                                   task.children_closed, task.interrupted, task.held)


def grouped(tasks: Iterable[Task]) -> list[tuple[Task, int]]:
    """The tasks with each child right under its parent (when both are listed), and depth."""
    return task_cells.grouped(tasks, lambda t: (t.id, t.parent))


def text(segments: list[task_cells.Segment]) -> Text:
    """Segments (:mod:`.task_cells`) as rich text: literally, no markup or emoji codes."""
    return Text.assemble(*segments)


def show_prints(out: Console, prints: list[task_cells.Print]) -> None:
    """Print what :mod:`.task_cells` shapes, one ``print`` each."""
    for segments, end in prints:
        out.print(text(segments), end=end)


def task_table(tasks: Iterable[Task], *, title: str | None = None,
               extra: dict[str, list[str]] | None = None) -> None:
    table = Table(title=title, show_edge=False, header_style="bold")
    table.add_column("ID", no_wrap=True)
    table.add_column("P", justify="right")
    table.add_column("Type")
    table.add_column("Status")
    table.add_column("Title")
    table.add_column("Labels")
    if extra:
        table.add_column("Waiting on")
    count = 0
    for task, depth in grouped(tasks):
        row: list[Text | str] = [text(cell) for cell in task_cells.table_row(task.to_json(),
                                                                            depth)]
        if extra:
            row.append(plain(", ".join(extra.get(task.id, []))))
        table.add_row(*row)
        count += 1
    out = console()
    if count:
        out.print(table)
    show_prints(out, [task_cells.count_line(count)])


def ready_tables(tasks: list[Task]) -> None:
    """Ready work, then the ready containers apart: they are not work."""
    task_table([t for t in tasks if not t.container], title=task_cells.READY_TITLE)
    groups = [t.to_json() for t in tasks if t.container]
    if groups:
        show_prints(console(), task_cells.container_prints(groups))


def blocked_waits(b: BlockedTask) -> list[str]:
    """What holds a blocked task, as its "Waiting on" cell lists it."""
    return waits_items(b.blockers, b.held_by_parent, b.reasons, b.reason)


def waits_items(blockers: list[str], parents: list[str], reasons: list[str],
                reason: str | None) -> list[str]:
    """The "Waiting on" cell's items of a task waiting on ``blockers``, held by ``parents``
    for ``reasons``, blocked for ``reason`` (see :class:`~taskmill.model.BlockedTask`)."""
    return (blockers + (reasons or [f"parent {p}" for p in parents])
            + ([f"blocked: {_one_line(reason)}"] if reason else []))


def blocked_table(items: list[BlockedTask]) -> None:
    waits = {b.task.id: blocked_waits(b) for b in items}
    task_table([b.task for b in items], extra=waits)
    unblock = [b for b in items if b.unblock]
    if unblock:
        out = console()
        out.print("[dim]unblock (back to open, the mill works it again):[/]")
        for b in unblock:
            out.print(f"  {safe(b.unblock)}")


def _one_line(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 3] + "..."


def task_detail(task: Task) -> None:
    out = console()
    show_prints(out, task_cells.detail_prints(task.to_json(full=True)))
    if task.attempts:
        table = Table(title=task_cells.ATTEMPTS_TITLE, show_edge=False, header_style="bold")
        for col in task_cells.ATTEMPT_HEADERS:
            table.add_column(col, no_wrap=col in ("run", "lap.#", "commit"))
        for a in task.attempts:
            table.add_row(*[text(cell) for cell in task_cells.attempt_row(a)])
        out.print()
        out.print(table)


# How a node of ``dep tree`` relates to the node above it, by dependency type: in the tree
# of what a task depends on, and (``reverse``) in the tree of what depends on it.
RELATION = {"blocks": "waits on", "parent-child": "child of", "related": "related to",
            "discovered-from": "discovered from"}
REVERSE_RELATION = {"blocks": "blocks", "parent-child": "parent of", "related": "related to",
                    "discovered-from": "led to"}


def dep_tree(tree: dict[str, Any], *, reverse: bool = False) -> None:
    words = REVERSE_RELATION if reverse else RELATION

    def label(node: dict[str, Any]) -> str:
        typ = node.get("type")
        kind = f"[dim]{safe(words.get(typ, typ))}[/] " if typ else ""
        cyc = " [red](cycle)[/]" if node.get("cycle") else ""
        style = STATUS_STYLE.get(node["status"], "")
        status = f"[{style}]{safe(node['status'])}[/]" if style else safe(node["status"])
        return f"{kind}{safe(node['id'])} {status} {safe(node.get('title') or '')}{cyc}"

    root = Tree(label(tree))

    def add(parent: Tree, node: dict[str, Any]) -> None:
        for child in node["children"]:
            add(parent.add(label(child)), child)

    add(root, tree)
    console().print(root)


def events_table(events: list[Event]) -> None:
    table = Table(show_edge=False, header_style="bold")
    for col in ("#", "time", "actor", "task", "event", "what"):
        table.add_column(col)
    for ev in events:
        table.add_row(str(ev.seq), plain(ev.ts), plain(ev.actor), plain(ev.task_id or ""),
                      plain(ev.kind), plain(_summary(ev.data)))
    console().print(table)


def _summary(data: dict[str, Any]) -> str:
    if "changes" in data:
        parts = []
        for key, (old, new) in data["changes"].items():
            old_s, new_s = _short(old), _short(new)
            parts.append(f"{key}: {old_s} -> {new_s}")
        if isinstance(data.get("cause"), dict) and data["cause"].get("child"):
            parts.append(f"({data['cause'].get('rule', 'because of')}: {data['cause']['child']})")
        return "; ".join(parts)
    if "new" in data:
        return f"title: {_short(data['new'].get('title'))}"
    return ", ".join(f"{k}={_short(v)}" for k, v in data.items())


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def verify_report(report: VerifyReport) -> None:
    out = console()
    if report.ok:
        out.print(f"[green]ok[/]: {report.events} events (head {report.head[:16]})",
                  highlight=False)
    else:
        out.print(f"[red]FAILED[/]: {escape(report.problems[0])}", highlight=False)
        for problem in report.problems[1:]:
            out.print(f"  [red]problem[/]: {escape(problem)}", highlight=False)
    for warning in report.warnings:
        out.print(f"  [yellow]warning[/]: {escape(warning)}", highlight=False)
    for item in report.proven:
        out.print(f"  proven: {escape(item)}", highlight=False)
    for item in report.unproven:
        out.print(f"  not proven: {escape(item)}", highlight=False)


def stats(data: dict[str, Any]) -> None:
    out = console()
    out.print(f"tasks {data['total']}   ready {data['ready']}   blocked {data['blocked']}"
              f"   events {data['events']}")
    out.print("by status: " + ", ".join(f"{k} {v}" for k, v in sorted(data["by_status"].items())))
    if data["dependencies"]:
        out.print("dependencies: " + ", ".join(f"{k} {v}" for k, v in sorted(data["dependencies"].items())))
    if data["attempts"]:
        out.print(f"attempts {data['attempts']}   tokens in {data['input_tokens']}"
                  f" out {data['output_tokens']}   cost ${data['cost_usd']:.4f}")


def totals_table(by: str, totals: dict[str, dict[str, Any]]) -> None:
    """``stats --by``: the attempts' totals per agent, model or role."""
    table = Table(show_edge=False, header_style="bold")
    for col in (by, "attempts", "passed", "tokens in/out", "cost", "seconds"):
        table.add_column(col)
    budgets = any("today" in row for row in totals.values())
    if budgets:
        table.add_column("today / budget")
    for name, row in sorted(totals.items()):
        cells: list[Text | str] = [
            plain(name), str(row["attempts"]), str(row["passed"]),
            f"{row['input_tokens']}/{row['output_tokens']}", f"${row['cost_usd']:.4f}",
            f"{row['seconds']:.1f}"]
        if budgets:
            today = row.get("today")
            cells.append(_budget_cell(today) if today else "")
        table.add_row(*cells)
    out = console()
    if totals:
        out.print(table)
    else:
        out.print("[dim]no attempts[/]")


def _budget_cell(today: dict[str, Any]) -> str:
    parts = []
    if today.get("tokens_per_day") is not None:
        parts.append(f"{today['tokens']:,} of {today['tokens_per_day']:,} tokens")
    if today.get("cost_per_day") is not None:
        parts.append(f"${today['cost_usd']:.2f} of ${today['cost_per_day']:.2f}")
    return ", ".join(parts)
