"""The task tables of ``list`` and ``blocked``, printed as the rows are read.

A light formatter draws what rich's table draws (the same bytes: borders, bold header,
right-aligned priority, columns narrowed and text wrapped as rich does when the terminal is
too narrow, colours only on a terminal), a stretch of :data:`SMALL` rows at a time. The
column widths are worked out on the first stretch and kept: a later row's longer cell wraps
inside its column (an id is folded, never cut), and a child is listed under its parent when
both are in the same stretch. Memory is one stretch of rows, whatever the length of the
list; a list of up to :data:`SMALL` rows comes out exactly as rich laid it out before."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from typing import IO, TYPE_CHECKING

from rich._ratio import ratio_reduce
from rich.cells import cell_len, chop_cells, set_cell_size
from rich.console import COLOR_SYSTEMS, Console
from rich.style import Style
from rich.table import Table

from ..validation import printable
from . import render

if TYPE_CHECKING:
    from ..model import BlockedTask, Task

SMALL = 500  # rows: the stretch the column widths are worked out on
HEADERS = ("ID", "P", "Type", "Status", "Title", "Labels", "Waiting on")

Row = tuple["Task", "list[str] | None"]


def task_rows(rows: Iterable[Row], *, extra: bool, small: int | None = None) -> int:
    """Print the tasks of ``rows`` (each with its "Waiting on" items when ``extra``) as a
    table and the "N tasks" line; returns N. ``small``: the rows the column widths are
    worked out on (:data:`SMALL`)."""
    small = SMALL if small is None else small
    it = iter(rows)
    head = list(itertools.islice(it, small + 1))
    out = render.console()
    table = _Streamed(out, head, extra) if head else None
    if table is None:
        render.task_table([], extra={} if extra else None)  # "0 tasks"
        return 0
    table.header()
    count = 0
    chunk: list[Row] = head
    while chunk:
        count += table.rows(chunk)
        chunk = list(itertools.islice(it, small))
    out.print(f"[dim]{count} task{'s' if count != 1 else ''}[/]")
    return count


def blocked_rows(items: Iterable[BlockedTask], *, small: int | None = None) -> None:
    """``blocked``'s table, then how to unblock the tasks marked blocked, as
    :func:`render.blocked_table` prints it."""
    unblock: list[str] = []

    def rows() -> Iterator[Row]:
        for b in items:
            if b.unblock:
                unblock.append(b.unblock)
            yield b.task, render.blocked_waits(b)

    task_rows(rows(), extra=True, small=small)
    if unblock:
        out = render.console()
        out.print("[dim]unblock (back to open, the mill works it again):[/]")
        out.file.write("".join(f"  {printable(line)}\n" for line in unblock))


def _cells(task: Task, depth: int, waits: list[str] | None, extra: bool) -> list[str]:
    shown_id = ("  " * (depth - 1) + "└ " if depth else "") + task.id
    label, _style, closed = render.status_parts(task)
    cells = [printable(shown_id), str(task.priority), printable(task.issue_type),
             label + (" " + closed if closed else ""), printable(task.title),
             printable(", ".join(task.labels))]
    if extra:
        cells.append(printable(", ".join(waits or [])))
    return cells


def _cell_len(text: str) -> int:
    """Terminal cells ``text`` takes (wide characters take two)."""
    return len(text) if text.isascii() else cell_len(text)


def _wrap(text: str, width: int, fold: bool = False) -> list[str]:
    """``text`` in lines of at most ``width`` cells, broken at spaces as rich breaks them; a
    word wider than the line on a line of its own, cut short with "…" as rich cuts it (or,
    with ``fold``, folded over as many lines as it needs)."""
    measure: Callable[[str], int] = len if text.isascii() else cell_len
    if measure(text) <= width:
        return [text]
    lines: list[str] = []
    line, size = "", -1  # size -1: nothing on the line yet
    for word in text.split(" "):
        n = measure(word)
        if size >= 0 and size + 1 + n <= width:
            line, size = f"{line} {word}", size + 1 + n
            continue
        if size >= 0:
            lines.append(line)
        if n <= width:
            line, size = word, n
        elif fold:
            *whole, line = chop_cells(word, width)
            lines.extend(whole)
            size = measure(line)
        else:
            line, size = set_cell_size(word, width - 1) + "…" if width > 0 else "", width
    lines.append(line)
    return lines


def _pad(text: str, width: int) -> str:
    return text.ljust(width) if text.isascii() else text + " " * (width - cell_len(text))


def _widths(natural: Sequence[int], total: int) -> list[int]:
    """The columns' widths, as rich's table works them out for cells this wide on a terminal
    ``total`` cells wide: the widest wrappable columns (all but the ID) narrowed first, then
    every column evenly, when the table would be wider than the terminal."""
    padded = [w + 2 for w in natural]  # a space each side
    room = total - (len(natural) - 1)  # the borders between the columns
    if sum(padded) > room:
        padded = Table._collapse_widths(padded, [i != 0 for i in range(len(padded))], room)
        if sum(padded) > room:
            padded = ratio_reduce(sum(padded) - room, [1] * len(padded), padded, padded)
    return [max(w - 2, 0) for w in padded]


class _Streamed:
    """The table's header from the first rows, then rows as they come, in its look."""

    def __init__(self, out: Console, head: list[Row], extra: bool) -> None:
        self.out = out
        self.file: IO[str] = out.file
        self.extra = extra
        ncols = 7 if extra else 6
        natural = [_cell_len(h) for h in HEADERS[:ncols]]
        for (task, waits), depth in self._grouped(head):
            for i, cell in enumerate(_cells(task, depth, waits, extra)):
                natural[i] = max(natural[i], _cell_len(cell))
        self.widths = _widths(natural, out.width)
        self.color = out.is_terminal and out.color_system is not None

    def header(self) -> None:
        """The header and the rule under it, as rich draws them (bold on a terminal)."""
        bold = _ansi("bold", self.out.color_system if self.color else None)
        columns = [[_pad(line, w) for line in _wrap(h, w)]
                   for h, w in zip(HEADERS, self.widths, strict=False)]
        columns[1] = [line.rjust(self.widths[1]) for line in _wrap("P", self.widths[1])]
        height = max(map(len, columns))
        for column, w in zip(columns, self.widths, strict=True):
            column[:0] = [" " * w] * (height - len(column))  # rich: at the bottom
        for cells in zip(*columns, strict=True):
            self.file.write(("┃".join(bold(" ") + bold(cell) + bold(" ") for cell in cells)
                             if self.color else " " + " ┃ ".join(cells) + " ") + "\n")
        self.file.write("━" + "━╇━".join("━" * w for w in self.widths) + "━\n")

    @staticmethod
    def _grouped(rows: list[Row]) -> list[tuple[Row, int]]:
        waits = {task.id: w for task, w in rows}
        return [((task, waits[task.id]), depth) for task, depth in render.grouped(
            task for task, _ in rows)]

    def rows(self, rows: list[Row]) -> int:
        lines: list[str] = []
        widths = self.widths
        blanks = [" " * w for w in widths]
        for (task, waits), depth in self._grouped(rows):
            cells = _cells(task, depth, waits, self.extra)
            if not self.color and all(
                    len(c) <= w and c.isascii() for c, w in zip(cells, widths, strict=True)):
                parts = [c.ljust(w) for c, w in zip(cells, widths, strict=True)]
                parts[1] = cells[1].rjust(widths[1])  # the priority, to the right
                lines.append(" " + " │ ".join(parts) + " \n")  # most rows: one line each
                continue
            columns = [[c.ljust(w)] if len(c) <= w and c.isascii()  # (fits: one line)
                       else [_pad(line, w) for line in _wrap(c, w, fold=i == 0)]
                       for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
            # (an id in full: folded, never cut; the priority to the right)
            columns[1] = [line.rjust(widths[1]) for line in _wrap(cells[1], widths[1])]
            if self.color:
                columns[3] = [self._status(task, line) for line in columns[3]]
            height = max(map(len, columns))
            for column, blank in zip(columns, blanks, strict=True):
                column.extend([blank] * (height - len(column)))
            lines.extend(" " + " │ ".join(parts) + " \n" for parts in zip(*columns, strict=True))
        self.file.write("".join(lines))
        self.file.flush()
        return len(rows)

    def _status(self, task: Task, cell: str) -> str:
        label, style, closed = render.status_parts(task)
        plain = label + (" " + closed if closed else "")
        if cell.rstrip(" ") == plain:  # on one line: the label in its colour, the count dim
            pad = cell[len(plain):]
            return (_ansi(style, self.out.color_system)(label)
                    + (" " + _ansi("dim", self.out.color_system)(closed) if closed else "")
                    + pad)
        return _ansi(style, self.out.color_system)(cell)


@lru_cache(maxsize=32)
def _ansi(style: str, system: str | None) -> Callable[[str], str]:
    """A function colouring text in ``style`` as a console of ``system`` colours would."""
    if not style or system is None:
        return lambda text: text
    start, _, end = Style.parse(style).render("\0", color_system=COLOR_SYSTEMS[system]
                                              ).partition("\0")
    return lambda text: f"{start}{text}{end}"
