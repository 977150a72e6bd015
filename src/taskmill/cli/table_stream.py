"""The task tables of ``list`` and ``blocked``, printed as the rows are read.

A light formatter draws rich's table (same borders, header, right-aligned priority, colours
only on a terminal) a stretch of rows at a time: the column widths are measured on the
first :data:`SMALL` rows and kept, a later row's longer cell wraps inside its column
(nothing is cut), and a child is listed under its parent when both are in the same stretch.
Memory is one stretch of rows, whatever the length of the list. A list of up to
:data:`SMALL` rows that does not fit the terminal is laid out by rich itself, as before
(it shrinks and wraps columns its own way)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from typing import IO, TYPE_CHECKING

from rich.cells import cell_len, chop_cells
from rich.console import COLOR_SYSTEMS, Console
from rich.style import Style

from ..validation import printable
from . import render

if TYPE_CHECKING:
    from ..model import BlockedTask, Task

SMALL = 500  # rows: up to this many, rich lays the table out as before
HEADERS = ("ID", "P", "Type", "Status", "Title", "Labels", "Waiting on")
_FIXED_CAPS = (40, 3, 16, 60)  # ID, P, Type, Status: widest kept from the first rows
_FLEX_MIN = 8

Row = tuple["Task", "list[str] | None"]


def task_rows(rows: Iterable[Row], *, extra: bool, small: int | None = None) -> int:
    """Print the tasks of ``rows`` (each with its "Waiting on" items when ``extra``) as a
    table and the "N tasks" line; returns N. ``small``: rows rich lays out (:data:`SMALL`)."""
    small = SMALL if small is None else small
    it = iter(rows)
    head = list(itertools.islice(it, small + 1))
    out = render.console()
    table = _Streamed(out, head, extra) if head else None
    if table is None or (len(head) <= small and not table.fits):
        render.task_table([t for t, _ in head],  # rich's layout: it shrinks columns to fit
                          extra={t.id: w or [] for t, w in head} if extra else None)
        return len(head)
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


def _wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` cells: at spaces where it can, else folded."""
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
        else:
            *whole, line = chop_cells(word, width)
            lines.extend(whole)
            size = measure(line)
    lines.append(line)
    return lines


def _pad(text: str, width: int) -> str:
    return text.ljust(width) if text.isascii() else text + " " * (width - cell_len(text))


def _widths(natural: Sequence[int], total: int) -> list[int]:
    """The columns' widths: ID, P, Type and Status as measured (capped), the rest sharing
    what the terminal has left (a column narrower than its share keeps its own width)."""
    fixed = [min(w, cap) for w, cap in zip(natural[:4], _FIXED_CAPS, strict=False)]
    flex = list(natural[4:])
    room = total - sum(fixed) - (3 * len(natural) - 1)
    widths = list(flex)
    if sum(flex) > room:
        left, open_ = room, list(range(len(flex)))
        while open_:  # share evenly; give what a narrow column leaves to the others
            share = max(left // len(open_), _FLEX_MIN)
            narrow = [i for i in open_ if flex[i] <= share]
            if not narrow:
                for i in open_:
                    widths[i] = share
                widths[open_[0]] += max(left - share * len(open_), 0)  # the title: the rest
                break
            for i in narrow:
                widths[i] = flex[i]
                left -= flex[i]
                open_.remove(i)
    return fixed + widths


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
        self.fits = sum(natural) + 3 * ncols - 1 <= out.width
        """Every cell of the first rows fits on one line: drawn as rich draws the table."""
        self.color = out.is_terminal and out.color_system is not None

    def header(self) -> None:
        """The header and the rule under it, as rich draws them (bold on a terminal)."""
        cells = [_pad(h, w) for h, w in zip(HEADERS, self.widths, strict=False)]
        cells[1] = HEADERS[1].rjust(self.widths[1])
        bold = _ansi("bold", self.out.color_system if self.color else None)
        line = "┃".join(bold(" ") + bold(cell) + bold(" ") for cell in cells) if self.color \
            else " " + " ┃ ".join(cells) + " "
        self.file.write(line + "\n━" + "━╇━".join("━" * w for w in self.widths) + "━\n")

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
            columns = [[_pad(line, w) for line in _wrap(c, w)]
                       for c, w in zip(cells, widths, strict=True)]
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
