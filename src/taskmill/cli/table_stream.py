"""The task tables of ``list`` and ``blocked``, printed as the rows are read.

A light formatter draws what rich's table draws (the same bytes: borders, bold header,
right-aligned priority, columns narrowed and text wrapped as rich does when the terminal is
too narrow, colours only on a terminal), a stretch of :data:`SMALL` rows at a time. The
column widths are worked out on the first stretch and kept: a later row's longer cell wraps
inside its column (an id is folded, never cut), and a child is listed under its parent when
both are in the same stretch. Memory is one stretch of rows, whatever the length of the
list; a list of up to :data:`SMALL` rows comes out exactly as rich laid it out before.

A row is a :data:`Record`, its cells as shown: made from the store's cells
(:func:`records`, :func:`blocked_records_of`: no ``Task`` made) or from a task
(:func:`record`). A cell that repeats (a priority, a type, a status, labels) is laid out once
and kept."""

from __future__ import annotations

import io
import itertools
import operator
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import IO, TYPE_CHECKING, Any, Generic, TypeVar

from rich._ratio import ratio_reduce
from rich.cells import cell_len, chop_cells, set_cell_size
from rich.console import COLOR_SYSTEMS, Console
from rich.style import Style
from rich.table import Table

from ..validation import printable
from . import render, task_cells

if TYPE_CHECKING:
    from ..ledger.store import CellRow, HeldItem
    from ..model import BlockedTask, Task

SMALL = 500  # rows: the stretch the column widths are worked out on
LAYOUTS_KEPT = 1000
"""Of each column whose cells repeat (priority, type, status, labels, waits), how many
cells' lines are kept (laid out once)."""
HEADERS = ("ID", "P", "Type", "Status", "Title", "Labels", "Waiting on")

Row = tuple["Task", "list[str] | None"]
R = TypeVar("R")
Record = tuple[str, "str | None", str, str, str, str, str, str, str, str, str]
"""A row as the table shows it: the task's id and its parent's (for the grouping), then
the cells, each printable: the id, the priority, the type, the status's label, its style and
the container's "2/5 closed" (or ""), the title, the labels and the "Waiting on" items (""
when none or not shown)."""


def record(task: Task, waits: list[str] | None) -> Record:
    """A task (with its "Waiting on" items) as a :data:`Record`."""
    label, style, closed = render.status_parts(task)
    return (task.id, task.parent, printable(task.id), str(task.priority),
            printable(task.issue_type), label, style, closed, printable(task.title),
            printable(", ".join(task.labels)), printable(", ".join(waits or [])))


def _shown(text: str) -> str:
    """:func:`printable`, at once for the usual text (ASCII, no control character)."""
    return text if text.isascii() and text.isprintable() else printable(text)


def records(rows: Iterable[CellRow], interrupted: Collection[str] = (),
            held: Mapping[str, str] | None = None) -> Iterator[Record]:
    """The store's :data:`~taskmill.ledger.store.CellRow` as :data:`Record` (no ``Task``
    made): ``interrupted`` the tasks so marked, ``held`` role -> why its open tasks are held
    (:func:`taskmill.cli.task_ops.mark_held`)."""
    labels: dict[tuple[str, bool], tuple[str, str]] = {}
    if interrupted or held:
        for row in rows:
            yield _record(row, "", labels, interrupted, held)
        return
    for row in rows:  # (the usual row, no mark, all its text printable ASCII: at once)
        tid, parent, priority, issue_type, status, ready, closed, title, tags, _role = row
        text = f"{tid}{issue_type}{title}{tags}" if tags else f"{tid}{issue_type}{title}"
        found = labels.get((status, ready))
        if found is None or not (text.isascii() and text.isprintable()):
            yield _record(row, "", labels, (), None)
            continue
        yield (tid, parent, tid, str(priority), issue_type, found[0], found[1], closed or "",
               title, tags or "", "")


def blocked_records_of(rows: Iterable[HeldItem], unblock: list[str]) -> Iterator[Record]:
    """:meth:`taskmill.ledger.Ledger.blocked_cells` as :data:`Record` (each with its
    "Waiting on" items, :func:`render.waits_items`), the unblock commands added to
    ``unblock`` as the rows are read."""
    labels: dict[tuple[str, bool], tuple[str, str]] = {}
    for row, blockers, held in rows:
        if held is None:
            waits = ", ".join(blockers)
        else:
            waits = ", ".join(render.waits_items(blockers, held.parents, held.reasons,
                                                 held.reason))
            if held.unblock:
                unblock.append(held.unblock)
        yield _record(row, _shown(waits) if waits else "", labels, (), None)


def _record(row: CellRow, waits: str, labels: dict[tuple[str, bool], tuple[str, str]],
            interrupted: Collection[str], held: Mapping[str, str] | None) -> Record:
    tid, parent, priority, issue_type, status, ready, closed, title, tags, role = row
    found = labels.get((status, ready))
    if found is None:
        label, style, _ = task_cells.status_parts(status, bool(ready), 0, 0)
        found = labels[(status, ready)] = (label, style)
    label, style = found
    if (interrupted and tid in interrupted) or (
            held and role is not None and status == "open" and held.get(role)):
        label, style, _ = task_cells.status_parts(
            status, bool(ready), 0, 0, tid in interrupted,
            held.get(role) if held and role is not None and status == "open" else None)
    return (tid, parent, _shown(tid), str(priority), _shown(issue_type), label, style,
            closed or "", _shown(title), _shown(tags) if tags else "", waits)


def task_rows(rows: Iterable[Row], *, extra: bool, small: int | None = None) -> int:
    """Print the tasks of ``rows`` (each with its "Waiting on" items when ``extra``) as a
    table and the "N tasks" line; returns N. ``small``: the rows the column widths are
    worked out on (:data:`SMALL`)."""
    return record_rows((record(task, waits) for task, waits in rows), extra=extra, small=small)


def record_rows(rows: Iterable[Record], *, extra: bool, small: int | None = None) -> int:
    """:func:`task_rows` of rows already made :data:`Record` (by the store, say)."""
    small = SMALL if small is None else small
    it = iter(rows)
    head = list(itertools.islice(it, small + 1))
    out = render.console()
    table = _Streamed(out, head, extra) if head else None
    if table is None:
        render.task_table([], extra={} if extra else None)  # "0 tasks"
        return 0
    table.file.write(table.header())
    count = 0
    chunk: list[Record] = head
    while chunk:
        count += table.rows(chunk)
        chunk = list(itertools.islice(it, small))
    _count_line(out, count)
    return count


def _count_line(out: Console, count: int) -> None:
    out.print(f"[dim]{count} task{'s' if count != 1 else ''}[/]")


class _Laying(Generic[R]):
    """A task table of the store's rows laid out a stretch at a time: the same bytes as
    :func:`record_rows` of their records, whichever process lays out which stretch. Made in
    this process (the terminal's width and colours decided here) before any child is
    forked."""

    def __init__(self, *, extra: bool, small: int | None,
                 records: Callable[[Iterator[R], bool], Iterator[Record]]) -> None:
        """``records``: the rows as :data:`Record` (its second argument: the listing's
        first rows, for the widths alone)."""
        small = SMALL if small is None else small
        self.first, self.step = small + 1, small
        self.extra = extra
        self.out = render.console()
        self._records = records
        self._table: _Streamed | None = None

    def lay(self, rows: Iterator[R], head: list[R] | None) -> Iterator[tuple[str, int]]:
        found = self._records(rows, False)
        if head is None:  # the listing's start: its widths worked out on the first stretch
            first = list(itertools.islice(found, self.first))
            if not first:
                return
            table = self._table = _Streamed(self.out, first, self.extra)
            yield table.header() + table.text(first), len(first)
        elif self._table is None:
            table = self._table = _Streamed(
                self.out, list(self._records(iter(head), True)), self.extra)
        else:
            table = self._table
        while chunk := list(itertools.islice(found, self.step)):
            yield table.text(chunk), len(chunk)


class Laying(_Laying["CellRow"]):
    """``list``'s table (:class:`taskmill.ledger.store.Laying`): ``interrupted``, ``held``
    as :func:`records` takes them."""

    def __init__(self, *, extra: bool = False, small: int | None = None,
                 interrupted: Collection[str] = (), held: Mapping[str, str] | None = None
                 ) -> None:
        super().__init__(extra=extra, small=small,
                         records=lambda rows, _head: records(rows, interrupted, held))
        self.interrupted, self.held = interrupted, held


class HeldLaying(_Laying["HeldItem"]):
    """``blocked``'s table (:class:`taskmill.ledger.store.HeldLaying`), as
    :func:`blocked_records` prints it; the commands that unblock the tasks laid out kept in
    :attr:`unblock`."""

    def __init__(self, *, small: int | None = None) -> None:
        super().__init__(extra=True, small=small, records=lambda rows, head:
                         blocked_records_of(rows, [] if head else self.unblock))
        self.unblock: list[str] = []


def laid_rows(texts: Iterable[tuple[str, int]]) -> int:
    """Print a table laid out by :class:`Laying` (its stretches' text, in order) and the "N
    tasks" line, as :func:`record_rows` prints it; returns N."""
    out = render.console()
    count = 0
    for text, n in texts:
        out.file.write(text)
        out.file.flush()
        count += n
    if not count:
        render.task_table([], extra=None)  # "0 tasks"
        return 0
    _count_line(out, count)
    return count


def blocked_rows(items: Iterable[BlockedTask], *, small: int | None = None) -> None:
    """``blocked``'s table, then how to unblock the tasks marked blocked, as
    :func:`render.blocked_table` prints it."""
    unblock: list[str] = []

    def rows() -> Iterator[Record]:
        for b in items:
            if b.unblock:
                unblock.append(b.unblock)
            yield record(b.task, render.blocked_waits(b))

    blocked_records(rows(), unblock, small=small)


def blocked_records(rows: Iterable[Record], unblock: list[str], *,
                    small: int | None = None) -> None:
    """:func:`blocked_rows` of rows already made :data:`Record`; ``unblock``: the commands
    that unblock them, filled in as the rows are read."""
    record_rows(rows, extra=True, small=small)
    unblock_lines(unblock)


def unblock_lines(unblock: list[str]) -> None:
    """How to unblock the tasks marked blocked, under ``blocked``'s table."""
    if unblock:
        out = render.console()
        out.print("[dim]unblock (back to open, the mill works it again):[/]")
        out.file.write("".join(f"  {printable(line)}\n" for line in unblock))


def _cells(rec: Record, depth: int, extra: bool) -> list[str]:
    cells = [("  " * (depth - 1) + "└ " + rec[2]) if depth else rec[2], rec[3], rec[4],
             rec[5] + " " + rec[7] if rec[7] else rec[5], rec[8], rec[9]]
    if extra:
        cells.append(rec[10])
    return cells


def _cut_short(text: str, width: int) -> str:
    """``text`` on one line of ``width`` cells, cut short with "…" where it is wider, as
    rich cuts a cell that may not wrap."""
    if _cell_len(text) <= width:
        return _pad(text, width)
    return _pad(set_cell_size(text, width - 1) + "…", width) if width > 0 else ""


def _cell_len(text: str) -> int:
    """Terminal cells ``text`` takes (wide characters take two)."""
    return len(text) if text.isascii() else cell_len(text)


def _wrap(text: str, width: int, fold: bool = False) -> list[str]:
    """``text`` in lines of at most ``width`` cells, broken at spaces as rich breaks them; a
    word wider than the line on a line of its own, cut short with "…" as rich cuts it (or,
    with ``fold``, folded over as many lines as it needs). Text of wide characters, or with
    spaces leading, trailing or two together, is wrapped by rich itself (:func:`_rich_wrap`).
    A column of no width (a terminal narrower than the table's borders) holds one empty
    line, as rich's."""
    if width < 1:
        return [""]
    if not text.isascii():
        return [text] if cell_len(text) <= width else _rich_wrap(text, width, fold)
    if len(text) <= width:
        return [text]
    if text.startswith(" ") or text.endswith(" ") or "  " in text:
        return _rich_wrap(text, width, fold)
    lines: list[str] = []
    line, size = "", -1  # size -1: nothing on the line yet
    for word in text.split(" "):
        n = len(word)
        if size >= 0 and size + 1 + n <= width:
            line, size = f"{line} {word}", size + 1 + n
            continue
        if size >= 0:
            lines.append(line)
        if n <= width:
            line, size = word, n
        elif fold and width > 0:
            *whole, line = chop_cells(word, width)
            lines.extend(whole)
            size = len(line)
        else:
            line, size = (word[:width - 1] + "…" if width > 0 else ""), width
    lines.append(line)
    return lines


def _rich_wrap(text: str, width: int, fold: bool) -> list[str]:
    """:func:`_wrap` by rich's own :meth:`rich.text.Text.wrap`, as its table wraps a cell
    (each line padded to ``width``)."""
    from rich.text import Text

    return [line.plain for line in Text(text).wrap(
        _WRAPPING, width, justify="left", overflow="fold" if fold else "ellipsis")]


_WRAPPING = Console(file=io.StringIO(), width=1000)
"""What rich's wrapping asks of a console (nothing that depends on the terminal)."""


def _pad(text: str, width: int) -> str:
    return text.ljust(width) if text.isascii() else text + " " * (width - cell_len(text))


def _widths(natural: Sequence[int], total: int) -> list[int]:
    """The columns' widths with their padding (a space each side), as rich's table works
    them out for cells this wide on a terminal ``total`` cells wide: the widest wrappable
    columns (all but the ID) narrowed first, then every column evenly, when the table would
    be wider than the terminal (on a terminal too narrow even then, a column narrower than
    its padding: rich cuts into it)."""
    padded = [w + 2 for w in natural]
    room = total - (len(natural) - 1)  # the borders between the columns
    if sum(padded) > room:
        padded = Table._collapse_widths(padded, [i != 0 for i in range(len(padded))], room)
        if sum(padded) > room:
            padded = ratio_reduce(sum(padded) - room, [1] * len(padded), padded, padded)
    return padded


class _Streamed:
    """The table's header from the first rows, then rows as they come, in its look."""

    def __init__(self, out: Console, head: list[Record], extra: bool) -> None:
        self.out = out
        self.file: IO[str] = out.file
        self.extra = extra
        ncols = 7 if extra else 6
        natural = [_cell_len(h) for h in HEADERS[:ncols]]
        for rec, depth in _grouped(head):
            for i, cell in enumerate(_cells(rec, depth, extra)):
                natural[i] = max(natural[i], _cell_len(cell))
        padded = _widths(natural, out.width)
        self.widths = [max(w - 2, 0) for w in padded]
        self.cut = padded if min(padded) < 2 else None
        """The padded widths where a column is narrower than its padding (a terminal too
        narrow for the table: every line laid out by :meth:`_cut_lines`), else ``None``."""
        self.color = out.is_terminal and out.color_system is not None
        self.layouts: list[dict[Any, list[str]]] = [{} for _ in range(7)]
        self.middles: dict[Any, Joined] = {}
        self.ends: dict[Any, Joined] = {}
        self.shapes: dict[tuple[int, int, int, int], Callable[..., str]] = {}
        self.blanks = [" " * w for w in self.widths]
        self.around4 = (" " + "".join(blank + " │ " for blank in self.blanks[:4]),
                        "".join(" │ " + blank for blank in self.blanks[5:]) + " \n")

    def header(self) -> str:
        """The header and the rule under it, as rich draws them (bold on a terminal)."""
        bold = _ansi("bold", self.out.color_system if self.color else None)
        columns = [[_pad(line, w) for line in _wrap(h, w)]
                   for h, w in zip(HEADERS, self.widths, strict=False)]
        columns[1] = [line.rjust(self.widths[1]) for line in _wrap("P", self.widths[1])]
        height = max(map(len, columns))
        padded = self.cut or [w + 2 for w in self.widths]
        lines = []
        for i in range(height):  # (a shorter header at the bottom: above it, in colour, its
            parts = []  # padding and all one bold blank, as rich writes an empty cell)
            for column, width in zip(columns, padded, strict=True):
                at = i - (height - len(column))
                if at < 0 or width < 3:  # (nothing or no room for it: the padding, or what
                    # is left of it where the column is narrower)
                    parts.append(bold(" " * width) if self.color and width else " " * width)
                else:
                    parts.append(bold(" ") + bold(column[at]) + bold(" ") if self.color
                                 else f" {column[at]} ")
            lines.append("┃".join(parts) + "\n")
        return "".join(lines) + "╇".join("━" * w for w in padded) + "\n"

    def rows(self, rows: list[Record]) -> int:
        """Write :meth:`text` of ``rows``; returns their number."""
        self.file.write(self.text(rows))
        self.file.flush()
        return len(rows)

    def text(self, rows: list[Record]) -> str:
        """The lines of ``rows`` (a stretch: a child right under its parent when both are
        in it)."""
        if self.cut is not None:
            return self._cut_text(rows)
        lines: list[str] = []
        widths = self.widths
        blanks = self.blanks
        w0, w4 = widths[0], widths[4]
        extra = self.extra
        w6 = widths[6] if extra else 0
        under6 = blanks[5] + " │ "
        # the cells that repeat (priority, type, status; labels and waits): laid out once
        # each, their lines joined
        layouts = self.layouts
        middles, ends = self.middles, self.ends
        before4, after4 = self.around4
        blank0, blank4 = blanks[0], blanks[4]
        blank_middle = " │ ".join(blanks[1:4])
        blank_end = " │ ".join(blanks[5:])
        shapes = self.shapes
        for rec, depth in _grouped(rows):
            title, waits = rec[8], rec[10]
            if extra and not depth and title.isascii() and waits.isascii() and \
                    len(rec[2]) <= w0 and rec[2].isascii():  # (blocked's usual row, of
                # cells on several lines: its shape's lines filled in)
                tl = [title] if len(title) <= w4 else _wrap_ascii(title, w4, False)
                wl = [waits] if len(waits) <= w6 else _wrap_ascii(waits, w6, False)
                middle = middles.get(rec[3:8]) or self._middle(rec)
                labels = layouts[5].get(rec[9]) or self._layout(5, rec[9], rec)
                if len(middle) == 1 and len(labels) == 1 and len(wl) < 2:  # (the title
                    lines.append(f" {rec[2].ljust(w0)} │ {middle[0]} │ {tl[0].ljust(w4)} │"
                                 f" {labels[0]} │ {wl[0].ljust(w6)} \n")  # alone may wrap)
                    for line in tl[1:]:
                        lines.append(before4 + line.ljust(w4) + after4)
                    continue
                heights = (len(middle), len(tl), len(labels), len(wl))
                shape = shapes.get(heights)
                if shape is None:
                    shape = shapes[heights] = self._shape(heights)
                lines.append(shape(rec[2], *middle, *tl, *labels, *wl))
                continue
            c0 = ("  " * (depth - 1) + "└ " + rec[2]) if depth else rec[2]
            col0 = None if len(c0) <= w0 and c0.isascii() else self._column(0, c0)
            col4: list[str] | None = None
            if not title.isascii():
                col4 = self._column(4, title)
                first4, rest4 = col4[0], col4[1:]
            elif len(title) <= w4:  # the title's lines, padded as they are written: on
                first4, rest4 = title.ljust(w4), []  # one line, on two (the usual), or
            else:  # as many as it takes
                cut = title.rfind(" ", 0, w4 + 1)
                if cut > 0 and len(title) - cut - 1 <= w4 and "  " not in title and \
                        title[0] != " " != title[-1]:
                    first4, rest4 = title[:cut].ljust(w4), [title[cut + 1:].ljust(w4)]
                else:
                    first4, *rest4 = [line.ljust(w4) for line in _wrap_ascii(title, w4, False)]
            middle = middles.get(rec[3:8]) or self._middle(rec)
            ekey = rec[9:11] if extra else rec[9]
            end = ends.get(ekey)
            if end is None:
                labels = layouts[5].get(rec[9]) or self._layout(5, rec[9], rec)
                waits = rec[10]
                if extra and len(labels) == 1 and waits.isascii():  # (what a task waits
                    first6, *rest6 = _wrap_ascii(waits, w6, False)  # on: seldom repeated)
                    end = [f"{labels[0]} │ {first6.ljust(w6)}",
                           *[under6 + line.ljust(w6) for line in rest6]]
                else:
                    end = self._joined(
                        [labels, *([layouts[6].get(waits) or self._layout(6, waits, rec)]
                                   if extra else [])], ends, ekey, 5)
            lines.append(f" {c0.ljust(w0) if col0 is None else col0[0]} │ {middle[0]} │"
                         f" {first4} │ {end[0]} \n")
            if col0 is None and len(middle) == 1 and len(end) == 1:  # (the title alone
                for line in rest4:  # wraps)
                    lines.append(before4 + line + after4)
                continue
            if col4 is None:
                col4 = [first4, *rest4]
            n0, n4, nm, ne = len(col0) if col0 else 1, len(col4), len(middle), len(end)
            lines.extend([f" {col0[i] if i < n0 else blank0} │"  # type: ignore[index]
                          f" {middle[i] if i < nm else blank_middle} │"
                          f" {col4[i] if i < n4 else blank4} │"
                          f" {end[i] if i < ne else blank_end} \n"
                          for i in range(1, max(n0, n4, nm, ne))])
        return "".join(lines)

    def _cut_text(self, rows: list[Record]) -> str:
        """:meth:`text` on a terminal too narrow for the table (:attr:`cut`)."""
        lines: list[str] = []
        for rec, depth in _grouped(rows):
            cells = _cells(rec, depth, self.extra)
            columns = [self._layout(3, rec[5:8], rec) if i == 3
                       else [_cut_short(cell, self.widths[0])] if i == 0  # (as rich does
                       else self._column(i, cell)  # there: no room to fold an id into)
                       for i, cell in enumerate(cells)]
            height = max(map(len, columns))
            lines.extend(self._cut_lines([[*column, *[blank] * (height - len(column))]
                                          for column, blank in zip(columns, self.blanks,
                                                                   strict=False)]))
        return "".join(lines)

    def _cut_lines(self, columns: list[list[str]]) -> list[str]:
        """The lines of a row's cells (columns of equal heights), each column cut to its
        width (:attr:`cut`: where that is narrower than its padding, what is left of the
        padding, as rich's table cuts it)."""
        assert self.cut is not None
        return ["│".join(f" {cell} " if width >= 2 else " " * width
                         for cell, width in zip(cells, self.cut, strict=False)) + "\n"
                for cells in zip(*columns, strict=True)]

    def _middle(self, rec: Record) -> Joined:
        """The priority, type and status columns of ``rec``, joined (kept)."""
        layouts = self.layouts
        return self._joined([layouts[1].get(rec[3]) or self._layout(1, rec[3], rec),
                             layouts[2].get(rec[4]) or self._layout(2, rec[4], rec),
                             layouts[3].get(rec[5:8]) or self._layout(3, rec[5:8], rec)],
                            self.middles, rec[3:8], 1)

    def _shape(self, heights: tuple[int, int, int, int]) -> Callable[..., str]:
        """The lines of a row whose id (ASCII) fits, its cells' lines given in order: of
        the middle columns (priority, type, status: joined, padded), the title, the labels
        (padded) and the waits (``heights``: how many of each but the id), as a function
        of the id and those lines that lays them out (the title's and the waits' padded
        here, a shorter column's blank under it)."""
        widths, blanks = self.widths, self.blanks
        middled, titled, labelled, waited = heights
        blank_middle = " │ ".join(blanks[1:4])  # (spaces and borders: no brace)
        lines = []
        for i in range(max(heights)):
            cells = [f"{{0:<{widths[0]}}}" if i == 0 else blanks[0],
                     f"{{{1 + i}}}" if i < middled else blank_middle,
                     f"{{{1 + middled + i}:<{widths[4]}}}" if i < titled else blanks[4],
                     f"{{{1 + middled + titled + i}}}" if i < labelled else blanks[5]]
            if self.extra:
                cells.append(f"{{{1 + middled + titled + labelled + i}:<{widths[6]}}}"
                             if i < waited else blanks[6])
            lines.append(" " + " │ ".join(cells) + " \n")
        return "".join(lines).format

    def _column(self, i: int, cell: str) -> list[str]:
        """The lines of column ``i`` for ``cell``: wrapped to its width, padded."""
        w = self.widths[i]
        if len(cell) <= w and cell.isascii():  # (fits: one line)
            return [cell.rjust(w) if i == 1 else cell.ljust(w)]
        if i == 1:  # the priority, to the right
            return [line.rjust(w) for line in _wrap(cell, w)]
        if cell.isascii():
            return [line.ljust(w) for line in _wrap_ascii(cell, w, i == 0)]
        return [_pad(line, w) for line in _wrap(cell, w, fold=i == 0)]  # (an id folded)

    def _joined(self, columns: list[list[str]], kept: dict[Any, Joined], key: Any,
                first: int) -> Joined:
        """Adjacent columns (the first of them column ``first``): their lines joined (a
        shorter column's blank under it), kept."""
        if len(columns) == 2 and len(columns[0]) == 1:  # (labels on one line, say)
            left, right = columns
            under = self.blanks[first] + " │ "
            joined = [left[0] + " │ " + right[0], *[under + line for line in right[1:]]]
            if len(kept) < LAYOUTS_KEPT:
                kept[key] = joined
            return joined
        height = max(map(len, columns))
        blanks = self.blanks[first:first + len(columns)]
        joined = [" │ ".join([column[i] if i < len(column) else blank
                              for column, blank in zip(columns, blanks, strict=True)])
                  for i in range(height)]
        if len(kept) < LAYOUTS_KEPT:
            kept[key] = joined
        return joined

    def _layout(self, i: int, key: Any, rec: Record) -> list[str]:
        """:meth:`_column` of a cell that repeats, kept (coloured, for the status)."""
        if i == 3:
            column = self._column(3, rec[5] + " " + rec[7] if rec[7] else rec[5])
            if self.color:
                column = [self._status(rec, line) for line in column] if len(column) == 1 \
                    else self._wrapped_status(rec)
        else:
            column = self._column(i, key)
        if len(self.layouts[i]) < LAYOUTS_KEPT:
            self.layouts[i][key] = column
        return column

    def _wrapped_status(self, rec: Record) -> list[str]:
        """The lines of a status cell that wraps, coloured, by rich itself (a line's colour
        takes in the space the line ends on, not the padding after it)."""
        from rich.text import Text

        label, style, closed = rec[5], rec[6], rec[7]
        width = self.widths[3]
        text = Text.assemble((label, style), *([(" ", ""), (closed, "dim")] if closed else []))
        system = COLOR_SYSTEMS[self.out.color_system or "standard"]
        lines = []
        for line in text.wrap(_WRAPPING, width, justify="left", overflow="ellipsis"):
            drawn = "".join(seg.style.render(seg.text, color_system=system) if seg.style
                            else seg.text for seg in line.render(_WRAPPING))
            lines.append(drawn + " " * max(width - line.cell_len, 0))
        return lines

    def _status(self, rec: Record, cell: str) -> str:
        if not cell:  # (a column of no width: nothing to colour, as rich's)
            return cell
        label, style, closed = rec[5], rec[6], rec[7]
        plain = label + (" " + closed if closed else "")
        if cell.rstrip(" ") == plain:  # on one line: the label in its colour, the count dim
            pad = cell[len(plain):]
            return (_ansi(style, self.out.color_system)(label)
                    + (" " + _ansi("dim", self.out.color_system)(closed) if closed else "")
                    + pad)
        return _ansi(style, self.out.color_system)(cell)


def _grouped(rows: list[Record]) -> list[tuple[Record, int]]:
    ids = {rec[0] for rec in rows}
    if ids.isdisjoint([rec[1] for rec in rows]):  # (no parent listed with its child: as
        return [(rec, 0) for rec in rows]  # they are)
    return task_cells.grouped(rows, _KEY)


Joined = list[str]
"""Adjacent columns' lines, joined (a shorter column's blank under it)."""

_KEY: Callable[[Record], tuple[str, str | None]] = operator.itemgetter(0, 1)
"""A row's id and its parent's."""


def _wrap_ascii(text: str, width: int, fold: bool) -> list[str]:
    """:func:`_wrap` of ASCII text (a character a cell)."""
    if width < 1:
        return [""]
    if len(text) <= width:
        return [text]
    if not fold and width > 0 and " " not in text:  # one word, cut short (an id waited on)
        return [text[:width - 1] + "…"]
    if text.startswith(" ") or text.endswith(" ") or "  " in text:
        return _rich_wrap(text, width, fold)
    lines: list[str] = []
    start, end = 0, len(text)
    while end - start > width:  # each line up to the last space that fits (the usual case)
        cut = text.rfind(" ", start, start + width + 1)
        if cut < 0:  # a word wider than the line (rare): word by word, as any text
            return _wrap(text, width, fold)
        lines.append(text[start:cut])
        start = cut + 1
    lines.append(text[start:])
    return lines


@lru_cache(maxsize=32)
def _ansi(style: str, system: str | None) -> Callable[[str], str]:
    """A function colouring text in ``style`` as a console of ``system`` colours would."""
    if not style or system is None:
        return lambda text: text
    start, _, end = Style.parse(style).render("\0", color_system=COLOR_SYSTEMS[system]
                                              ).partition("\0")
    return lambda text: f"{start}{text}{end}"
