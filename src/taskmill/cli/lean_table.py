"""The lean path's text forms: ``ready [-n N]`` and ``show ID`` as the full path prints them
with rich, without importing rich's console (~40 ms).

What is printed is shaped once, for both renderers, by :mod:`taskmill.cli.task_cells`;
here it is laid out as rich lays it out, for the cases simple enough to reproduce exactly:
every table column at its natural width (rich would otherwise narrow columns, wrap and
cut), plain text (a description, a comment) wrapped at spaces as rich wraps it, styled text
that needs no wrapping, no word wider than the terminal (rich folds it), no tab (rich
expands tabs), a terminal whose colours are rich's standard ones. Anything else returns ``None`` before anything is
written, and the full path prints it. The width and colours are decided as rich's
``Console`` decides them (``COLUMNS``, ``LINES``, the terminal size of stdin, stdout or
stderr, 80 otherwise; ``TTY_COMPATIBLE``, ``FORCE_COLOR``, whether stdout is a terminal,
``TERM``); ``NO_COLOR`` on a terminal goes to the full path. Cells are measured with rich's
own :func:`rich.cells.cell_len` for text outside the ranges rich itself counts as one cell
a character (imported only then).
"""

from __future__ import annotations

import os
import sys

from . import task_cells

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

SINGLE_CELL_RANGES = ((0x20, 0x7E), (0xA0, 0xAC), (0xAE, 0x2FF), (0x370, 0x482),
                      (0x2500, 0x25FC), (0x2800, 0x28FF))
"""What rich counts as one cell a character without its tables
(``rich.cells._SINGLE_CELL_UNICODE_RANGES``; a test holds them equal)."""
_ATTRIBUTES = ("bold", "dim", "italic", "underline", "blink", "blink2", "reverse", "conceal",
               "strike")
"""SGR 1-9, in the order rich writes them."""
_COLOURS = {"black": 30, "red": 31, "green": 32, "yellow": 33, "blue": 34, "magenta": 35,
            "cyan": 36, "white": 37}
RESET = "\x1b[0m"
TITLE_STYLE = "italic"
"""rich's ``table.title``."""


def cell_len(text: str) -> int:
    """The terminal cells ``text`` takes, as rich counts them."""
    if text.isascii() and text.isprintable():
        return len(text)
    if all(any(low <= o <= high for low, high in SINGLE_CELL_RANGES) for o in map(ord, text)):
        return len(text)
    from rich.cells import cell_len as rich_cell_len

    return rich_cell_len(text)


def sgr(style: str) -> str:
    """The escape sequence rich writes before text in ``style`` (a few words: attributes
    and one of the eight standard colours, the same codes in every colour system)."""
    words = style.split()
    codes = [str(i + 1) for i, name in enumerate(_ATTRIBUTES) if name in words]
    colours = [str(_COLOURS[w]) for w in words if w in _COLOURS]
    if len(codes) + len(colours) != len(words) or len(colours) > 1:
        raise ValueError(f"a style the lean path does not write: {style!r}")
    return "\x1b[" + ";".join(codes + colours) + "m"


def screen(env: Mapping[str, str]) -> tuple[int, bool] | None:
    """The width rich's console would use on this standard output, and whether it would
    write colours; ``None`` where it would do something else (NO_COLOR on a terminal,
    Windows, an IDE's shell)."""
    import builtins

    if sys.platform == "win32" or hasattr(builtins, "get_ipython") or \
            str(getattr(sys.stdin, "__module__", "")).startswith("idlelib"):
        return None
    compatible = env.get("TTY_COMPATIBLE", "")
    force = env.get("FORCE_COLOR")
    if compatible in ("0", "1"):
        terminal = compatible == "1"
    elif force is not None:
        terminal = force != ""
    else:
        try:
            terminal = sys.stdout.isatty()
        except ValueError:
            terminal = False
    dumb = terminal and env.get("TERM", "").lower() in ("dumb", "unknown")
    colour = terminal and not dumb
    if colour and env.get("NO_COLOR", "") != "":
        return None  # rich keeps bold and dim, drops colours: the full path's
    columns, lines = env.get("COLUMNS"), env.get("LINES")
    fixed = int(columns) if columns is not None and columns.isascii() and \
        columns.isdigit() else None
    if any(v is not None and v.isdigit() and not v.isascii() for v in (columns, lines)):
        return None
    if fixed is not None and lines is not None and lines.isdigit():
        return fixed, colour
    if dumb:
        return 80, colour
    if fixed is not None:
        return fixed, colour
    width = None
    for fd in (0, 1, 2):
        try:
            width = os.get_terminal_size(fd).columns
        except (AttributeError, ValueError, OSError):
            continue
        break
    return width or 80, colour


def _styled(segments: Sequence[task_cells.Segment], colour: bool) -> str:
    if not colour:
        return "".join(text for text, _ in segments)
    out = []
    for text, style in segments:
        if not style:
            out.append(text)
            continue
        start = sgr(style)
        out.append("\n".join(start + part + RESET if part else ""
                             for part in text.split("\n")))
    return "".join(out)


def _words(text: str) -> list[tuple[int, str]]:
    """``text``'s words with the spaces after them (and the first with the spaces before
    it), where each starts: what rich's ``_wrap.words`` finds (``\\s*\\S+\\s*``)."""
    found: list[tuple[int, str]] = []
    start, end = 0, len(text)
    while True:
        i = start
        while i < end and text[i].isspace():
            i += 1
        if i == end:
            return found
        while i < end and not text[i].isspace():
            i += 1
        while i < end and text[i].isspace():
            i += 1
        found.append((start, text[start:i]))
        start = i


def wrapped(line: str, width: int) -> list[str] | None:
    """An unstyled line (no tab, no line break) as rich's ``Text.wrap`` breaks it at
    ``width`` (justify "default", overflow "fold": ``_wrap.divide_line``, then each piece's
    spaces beyond the width dropped), or ``None`` where a word is wider than the line
    (rich folds it) or a piece still would not fit."""
    breaks: list[int] = []
    offset = 0
    for start, word in _words(line):
        size = cell_len(word.rstrip())
        if width - offset >= size:
            offset += cell_len(word)
        elif size > width:
            return None
        elif offset and start:
            breaks.append(start)
            offset = cell_len(word)
    lines = []
    for begin, stop in zip([0, *breaks], [*breaks, len(line)], strict=True):
        piece = line[begin:stop]
        if len(piece) > width:  # (rich counts characters here, not cells)
            spaces = len(piece) - len(piece.rstrip())
            piece = piece[:len(piece) - min(spaces, len(piece) - width)]
        while cell_len(piece) > width and piece[-1:].isspace() and cell_len(piece[-1]) == 1:
            piece = piece[:-1]  # (then rich cuts the line to its width: the spaces go)
        if cell_len(piece) > width:
            return None
        lines.append(piece)
    return lines


def prints(items: list[task_cells.Print], width: int, colour: bool) -> str | None:
    """What rich prints for ``items``: unstyled text wrapped as rich wraps it, styled text
    only where no line needs wrapping; else ``None``."""
    out = []
    for segments, end in items:
        plain = "".join(text for text, _ in segments)
        if "\t" in plain:
            return None
        if all(not style for _, style in segments):
            lines: list[str] = []
            for line in plain.split("\n"):
                pieces = wrapped(line, width)
                if pieces is None:
                    return None
                lines.extend(pieces)
            out.append("\n".join(lines) + end)
            continue
        if any(len(line) > width or cell_len(line) > width for line in plain.split("\n")):
            return None
        out.append(_styled(segments, colour) + end)
    return "".join(out)


def task_table(tasks: Sequence[Mapping[str, Any]], title: str, width: int, colour: bool
               ) -> str | None:
    """The task table (:func:`taskmill.cli.render.task_table`) when each column fits at its
    natural width, else ``None``."""
    rows = [task_cells.table_row(task, depth) for task, depth in task_cells.grouped(
        tasks, lambda t: (t["id"], t["parent"]))]
    return table(task_cells.HEADERS, rows, title, 1, width, colour)


def table(headers: Sequence[str], rows: list[list[list[task_cells.Segment]]], title: str,
          right: int | None, width: int, colour: bool) -> str | None:
    """rich's ``Table(title=..., show_edge=False, header_style="bold")`` of these rows (the
    column ``right`` justified to the right) when each column fits at its natural width,
    else ``None``."""
    plains = [["".join(text for text, _ in cell) for cell in row] for row in rows]
    sizes = [[cell_len(cell) for cell in row] for row in plains]
    widths = [cell_len(h) for h in headers]
    for row_sizes in sizes:
        widths = [max(w, n) for w, n in zip(widths, row_sizes, strict=True)]
    total = sum(w + 2 for w in widths) + len(widths) - 1
    if total > width or cell_len(title) > total or any(
            len(cell) > w for row in plains for cell, w in zip(row, widths, strict=True)):
        return None  # (rich would crop a cell's end spaces where it counts more characters)
    left_pad = (total - cell_len(title)) // 2
    head = " " * left_pad + title + " " * (total - cell_len(title) - left_pad)
    lines = [sgr(TITLE_STYLE) + head + RESET if colour else head]
    cells = [(" " * (w - cell_len(h)) + h) if i == right else h + " " * (w - cell_len(h))
             for i, (h, w) in enumerate(zip(headers, widths, strict=True))]
    if colour:
        bold = sgr("bold")
        lines.append("┃".join(f"{bold} {RESET}{bold}{c}{RESET}{bold} {RESET}" for c in cells))
    else:
        lines.append(" " + " ┃ ".join(cells) + " ")
    lines.append("━" + "━╇━".join("━" * w for w in widths) + "━")
    for row, row_sizes in zip(rows, sizes, strict=True):
        parts = []
        for i, (cell, n, w) in enumerate(zip(row, row_sizes, widths, strict=True)):
            pad = " " * (w - n)
            text = _styled(cell, colour)
            parts.append(pad + text if i == right else text + pad)
        lines.append(" " + " │ ".join(parts) + " ")
    return "\n".join(lines) + "\n"


def ready_text(tasks: Sequence[Mapping[str, Any]], width: int, colour: bool) -> str | None:
    """``ready``'s tables (:func:`taskmill.cli.render.ready_tables`)."""
    work = [t for t in tasks if not t["container"]]
    table = task_table(work, task_cells.READY_TITLE, width, colour) if work else ""
    rest = prints([task_cells.count_line(len(work)),
                   *task_cells.container_prints([t for t in tasks if t["container"]])],
                  width, colour)
    return None if table is None or rest is None else table + rest


def show_text(task: Mapping[str, Any], width: int, colour: bool) -> str | None:
    """``show``'s view of a task (:func:`taskmill.cli.render.task_detail`), its attempts'
    table too."""
    view = prints(task_cells.detail_prints(task), width, colour)
    if view is None or not task["attempts"]:
        return view
    attempts = table(task_cells.ATTEMPT_HEADERS,
                     [task_cells.attempt_row(a) for a in task["attempts"]],
                     task_cells.ATTEMPTS_TITLE, None, width, colour)
    return None if attempts is None else view + "\n" + attempts


def text(command: str, data: Any, env: Mapping[str, str]) -> bytes | None:
    """What the full path prints for ``command`` (``ready`` or ``show``) given its data (as
    JSON), or ``None`` for it to print."""
    found = screen(env)
    if found is None:
        return None
    width, colour = found
    out = ready_text(data, width, colour) if command == "ready" else \
        show_text(data, width, colour)
    return None if out is None else out.encode("utf-8")
