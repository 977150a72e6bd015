"""What ``ready``'s table and ``show``'s view of a task say, as text and styles: one
implementation for the two renderers, rich (:mod:`taskmill.cli.render`) and the lean path's
(:mod:`taskmill.cli.lean_table`), so the two cannot drift.

A task is read as its JSON (:meth:`taskmill.model.Task.to_json`, which is also what the lean
path reads from the ledger). Output is a list of *prints*: each is what one
``Console.print`` call of the full path printed, a list of (text, style) segments and the
``end`` written after them. Stored text is shown literally (control characters escaped;
never read as markup or emoji codes).

This module imports nothing: the lean path loads it without the package's modules.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from typing import Any, TypeVar

    T = TypeVar("T")

Segment = tuple[str, str]
"""Text and its rich style (``""``: none)."""
Print = tuple[list[Segment], str]
"""One ``Console.print``: its segments and its ``end``."""

STATUS_STYLE = {
    "open": "green",
    "in_progress": "cyan",
    "blocked": "red",
    "deferred": "yellow",
    "closed": "dim",
    "tombstone": "dim strike",
    "hooked": "magenta",
}
HEADERS = ("ID", "P", "Type", "Status", "Title", "Labels")
"""``ready``'s table's columns (``blocked`` adds "Waiting on")."""
READY_TITLE = "Ready"
ATTEMPT_HEADERS = ("run", "lap.#", "agent", "outcome", "tokens in/out", "cost", "started",
                   "commit")
"""``show``'s table of a task's attempts."""
ATTEMPTS_TITLE = "Attempts"


def _shown(code: int) -> str:
    char = chr(code)
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(
        char, f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


_CONTROL = {code: _shown(code) for code in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)}
_CONTROL_BUT_LINES = {code: shown for code, shown in _CONTROL.items() if code not in (0x09, 0x0A)}


def printable(value: str, *, multiline: bool = False) -> str:
    """:func:`taskmill.validation.printable` (a test holds them equal) without :mod:`re`:
    control characters escaped (``\\n`` and ``\\t`` kept when ``multiline``)."""
    if multiline:
        return value.replace("\r\n", "\n").translate(_CONTROL_BUT_LINES)
    return value.translate(_CONTROL)


def status_parts(status: str, ready: bool, children: int, children_closed: int,
                 interrupted: bool = False, held: str | None = None) -> tuple[str, str, str]:
    """A task's status as shown: (label, its style, the container's "2/5 closed" or "")."""
    label = printable(status) + ("" if status != "open" or ready else " (waiting)")
    if interrupted:
        label = "interrupted (resumed by the next taskmill run)"
    if held:
        label = "open (held: its role's daily budget is spent)"
    closed = f"{children_closed}/{children} closed" if children > 0 else ""
    return label, STATUS_STYLE.get(status, ""), closed


def status_segments(task: Mapping[str, Any]) -> list[Segment]:
    """The status of a task (its JSON) in its colour, and a container's count dimmed."""
    label, style, closed = status_parts(task["status"], task["ready"], task["children"],
                                        task["children_closed"],
                                        bool(task.get("interrupted")), task.get("held"))
    return [(label, style)] + ([(" ", ""), (closed, "dim")] if closed else [])


def grouped(items: Iterable[T], key: Callable[[T], tuple[str, str | None]]
            ) -> list[tuple[T, int]]:
    """The items with each child right under its parent (when both are listed), and depth;
    ``key``: an item's id and its parent's."""
    listed_items = list(items)
    keys = [key(item) for item in listed_items]
    listed = {tid for tid, _ in keys}
    kids: dict[str, list[tuple[T, str]]] = {}
    for item, (tid, parent) in zip(listed_items, keys, strict=True):
        if parent in listed and parent != tid:
            assert parent is not None
            kids.setdefault(parent, []).append((item, tid))
    out: list[tuple[T, int]] = []
    seen: set[str] = set()
    # depth first, each child right after its parent and its earlier siblings' subtrees (a
    # stack, not a recursive closure: no reference cycle left for the collector)
    stack: list[tuple[T, str, int]] = []

    def visit(item: T, tid: str) -> None:
        stack.append((item, tid, 0))
        while stack:
            node, nid, depth = stack.pop()
            if nid in seen:
                continue
            seen.add(nid)
            out.append((node, depth))
            below = kids.get(nid)
            if below:
                stack.extend((child, cid, depth + 1) for child, cid in reversed(below))

    for item, (tid, parent) in zip(listed_items, keys, strict=True):
        if tid not in seen and parent not in listed:
            if tid in kids:
                visit(item, tid)
            else:  # (the usual: no child listed)
                seen.add(tid)
                out.append((item, 0))
    for item, (tid, _parent) in zip(listed_items, keys, strict=True):  # loops: flat
        if tid not in seen:
            visit(item, tid)
    return out


def id_cell(task_id: str, depth: int) -> str:
    """The ID cell: a child indented under its parent."""
    return printable(("  " * (depth - 1) + "└ " if depth else "") + task_id)


def table_row(task: Mapping[str, Any], depth: int) -> list[list[Segment]]:
    """A task's cells in the task table (:data:`HEADERS`), each a list of segments."""
    return [[(id_cell(task["id"], depth), "")], [(str(task["priority"]), "")],
            [(printable(str(task["issue_type"])), "")], status_segments(task),
            [(printable(task["title"]), "")], [(printable(", ".join(task["labels"])), "")]]


def count_line(count: int) -> Print:
    """The "N tasks" line under a table."""
    return [(f"{count} task{'s' if count != 1 else ''}", "dim")], "\n"


def progress(task: Mapping[str, Any]) -> str:
    """"3 of 5 closed" for a container."""
    return f"{task['children_closed']} of {task['children']} closed"


def container_prints(containers: Sequence[Mapping[str, Any]]) -> list[Print]:
    """After ``ready``'s table: the ready containers, apart (they are not work)."""
    if not containers:
        return []
    prints: list[Print] = [([("\n", ""), ("Containers", "bold"), (" ", ""),
                             ("(not work: each closes when its children do)", "dim")], "\n")]
    for task in containers:
        prints.append(([(f"  {printable(task['id'])}  ", "")], ""))
        prints.append(([(printable(task["title"]), "")], ""))
        prints.append(([("  ", ""), (f"({printable(str(task['issue_type']))}, {progress(task)})",
                                      "dim")], "\n"))
        if task["children_closed"] == task["children"]:
            prints.append(([(f"    every child is closed: `taskmill close {task['id']}`,"
                             " or add a child", "")], "\n"))
    return prints


def _line(*segments: Segment) -> Print:
    return list(segments), "\n"


def detail_prints(task: Mapping[str, Any]) -> list[Print]:
    """``show``'s view of a task (its full JSON), all but the attempts' table."""
    p = printable
    out = [_line((p(task["id"]), "bold"), ("  " + p(task["title"]), ""))]
    out.append(_line(("  status ", ""), *status_segments(task), (
        f"   priority P{task['priority']}   type {p(str(task['issue_type']))}"
        + (f"   assignee {p(task['assignee'])}" if task["assignee"] else ""), "")))
    if task["labels"]:
        out.append(_line((f"  labels {p(', '.join(task['labels']))}", "")))
    out.append(_line((f"  created {p(task['created_at'])}   updated {p(task['updated_at'])}"
                      + (f"   closed {p(task['closed_at'])}" if task["closed_at"] else ""),
                      "")))
    if task["close_reason"]:
        out.append(_line(("  close reason: " + p(task["close_reason"], multiline=True), "")))
    for key, word in (("agent", "agent"), ("role", "role"), ("held", "held:")):
        if task.get(key):
            out.append(_line((f"  {word} {p(task[key])}", "")))
    for name in ("description", "design", "acceptance_criteria", "notes"):
        if task[name]:
            out.append(_heading(name.replace("_", " ").capitalize()))
            out.append(_line((p(task[name], multiline=True), "")))
    if task["checks"]:
        out.append(_heading("Checks"))
        out.extend(_line((f"  $ {p(check, multiline=True)}", "")) for check in task["checks"])
    if task["dependencies"]:
        out.append(_heading("Depends on"))
        out.extend(_line((f"  {p(d['depends_on_id'])} ({p(d['type'])})", ""))
                   for d in task["dependencies"])
    if task["dependents"]:
        out.append(_heading("Needed by"))
        out.extend(_line((f"  {p(d['issue_id'])} ({p(d['type'])})", ""))
                   for d in task["dependents"])
    if task["child_tasks"]:
        out.append(_line(("\n", ""), ("Children", "bold"), (f" {progress(task)} ", ""), (
            "(a container: never handed to an agent; closes when they all close)", "dim")))
        for child in task["child_tasks"]:
            out.append(([(f"  {p(child['id'])} ", ""), *status_segments(child), (" ", "")],
                        ""))
            out.append(_line((p(child["title"]), "")))
    if task["comments"]:
        out.append(_heading("Comments"))
        for c in task["comments"]:
            out.append(_line((f"  {p(c['created_at'])} {p(c['author'])}", "dim")))
            out.append(_line(("  " + p(c["text"], multiline=True), "")))
    return out


def _heading(text: str) -> Print:
    return _line(("\n", ""), (text, "bold"))


def attempt_row(attempt: Mapping[str, Any]) -> list[list[Segment]]:
    """An attempt's cells in ``show``'s table of attempts (:data:`ATTEMPT_HEADERS`).
    Iterations count from 1 in each lap (a reopened task starts a new one) and go on across
    runs: the run and the lap tell attempts apart."""
    a = attempt
    cost = "" if a.get("cost_usd") is None else f"${a['cost_usd']:.4f}"
    agent = (a.get("agent") or "") + (f"/{a['model']}" if a.get("model") else "")
    cells = [printable(str(a.get("run_id") or "")), f"{a.get('lap') or 1}.{a['iteration']}",
             printable(agent), printable(str(a.get("outcome") or "running")),
             f"{a['input_tokens']}/{a['output_tokens']}", cost,
             printable(str(a.get("started_at") or "")), attempt_commit(a)]
    return [[(cell, "")] for cell in cells]


def attempt_commit(attempt: Mapping[str, Any]) -> str:
    """The commit an attempt made, or "no change" when a finished turn made none."""
    sha = attempt.get("commit_sha")
    if sha:
        return printable(str(sha)[:10])
    return "" if attempt.get("outcome") in (None, "interrupted", "rate_limited") else "no change"
