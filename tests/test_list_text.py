"""The text tables of ``list`` and ``blocked`` past a few hundred rows: printed as the rows
are read (the first row is out before the last is read, memory does not grow with the
list), in the same look as rich's table, long and wide text wrapped inside its column."""

from __future__ import annotations

import io
import re
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.cells import cell_len

from conftest import invoke_cli, make_git_repo
from taskmill.cli import render, table_stream
from taskmill.model import Task
from taskmill.project import open_project

ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _Sink(io.TextIOBase):
    """A stdout that keeps only how much was written and the first lines."""

    def __init__(self) -> None:
        self.size = 0
        self.start = ""

    def write(self, text: str) -> int:
        self.size += len(text)
        if len(self.start) < 4000:
            self.start += text
        return len(text)

    def isatty(self) -> bool:
        return False


def _tasks(n: int, title: str = "task number {i} with a title") -> Iterator[Task]:
    for i in range(n):
        yield Task(id=f"t-{i:06d}", title=title.format(i=i), priority=i % 5,
                   labels=["a", "b"] if i % 3 else [], ready=bool(i % 2))


def _table(text: str) -> list[str]:
    """The table's lines (header, rule, rows), without the "N tasks" line and what follows."""
    lines = text.splitlines()
    return lines[:next(i for i, line in enumerate(lines) if line.endswith(" tasks")
                       or line.endswith(" task"))]


def test_the_first_row_is_printed_before_the_last_is_read(
        monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    seen_at_end: list[str] = []

    def rows() -> Iterator[tuple[Task, None]]:
        for task in _tasks(3000):
            yield task, None
        seen_at_end.append(out.getvalue())

    assert table_stream.task_rows(rows(), extra=False) == 3000
    assert "t-000000" in seen_at_end[0] and "t-002500" in seen_at_end[0]
    assert out.getvalue().endswith("3000 tasks\n")


def test_memory_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """20,000 rows take no more memory at the peak than 2,000 (one stretch of rows)."""
    peaks = []
    for n in (2_000, 20_000):
        sink = _Sink()
        monkeypatch.setattr("sys.stdout", sink)
        tracemalloc.start()
        try:
            table_stream.task_rows(((t, None) for t in _tasks(n)), extra=False)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert sink.size > n * 60
    assert peaks[1] < peaks[0] * 1.5, peaks


@pytest.mark.parametrize("colour", [False, True])
def test_the_look_is_rich_tables(monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str], colour: bool) -> None:
    """The light formatter draws what rich draws, colours too: for a list that fits the
    terminal (which it then draws) and for a streamed one whose first stretch holds the
    widest cells."""
    monkeypatch.setenv("COLUMNS", "100")
    if colour:
        monkeypatch.setenv("FORCE_COLOR", "1")
        monkeypatch.setenv("TERM", "xterm-256color")
    tasks = [Task(id="t-box", title="a container 漢字", children=3, children_closed=1,
                  priority=12, labels=["ラベル", "b"]), *_tasks(11)]
    render.task_table(tasks)
    rich_out = capsys.readouterr().out
    assert ("\x1b[" in rich_out) is colour
    rows = [(t, None) for t in tasks]
    assert table_stream.task_rows(rows, extra=False, small=20) == 12
    assert capsys.readouterr().out == rich_out
    table_stream.task_rows(rows, extra=False, small=11)
    assert capsys.readouterr().out == rich_out
    assert ANSI.sub("", rich_out).splitlines()[0].startswith(" ID ")


@pytest.mark.parametrize("colour", [False, True])
@pytest.mark.parametrize("columns", [9, 12, 20, 26, 28, 33, 40, 60, 80, 200])
def test_narrow_terminals_wrap_as_rich_does(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str],
                                            columns: int, colour: bool) -> None:
    """Columns narrowed, text wrapped, a word too long cut with "…", a wrapped header: the
    same bytes as rich's table, with wide (CJK) characters too; on a terminal too narrow
    for the table's padding (under 28 columns here), columns cut into it and ids cut short
    as rich cuts them; in colour too (a blank header cell one bold span, as rich's)."""
    monkeypatch.setenv("COLUMNS", str(columns))
    if colour:
        monkeypatch.setenv("FORCE_COLOR", "1")
        monkeypatch.setenv("TERM", "xterm-256color")
    tasks = [*_tasks(3), Task(id="t-long", title=" ".join(f"word{i}" for i in range(40))),
             Task(id="t-wide", title="漢字の タイトル " * 5 + "ünïcode " + "long" * 40,
                  labels=["ラベル", "good-first-issue"], status="in_progress"),
             Task(id="t-kid", title="a child", parent="t-long")]
    render.task_table(tasks, extra={"t-wide": ["t-long", "parent t-000001 is blocked"]})
    rich_out = capsys.readouterr().out
    rows = [(t, ["t-long", "parent t-000001 is blocked"] if t.id == "t-wide" else [])
            for t in tasks]
    table_stream.task_rows(rows, extra=True)
    assert capsys.readouterr().out == rich_out
    assert "└ t-kid" in rich_out or columns < 20  # (narrower: ids cut short, as rich cuts)


def test_later_rows_wrap_inside_the_columns(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Widths come from the first stretch: a later, longer cell wraps in its column (an id
    is folded whole), every line as wide as the header."""
    monkeypatch.setenv("COLUMNS", "80")
    long_title = " ".join(f"word{i}" for i in range(40))
    rows = [*((t, None) for t in _tasks(4)),
            (Task(id="t-long", title=long_title), None),
            (Task(id="t-a-much-longer-id-than-the-first", title="漢字 のタイトル " * 8,
                  labels=["ラベル"]), None)]
    table_stream.task_rows(rows, extra=False, small=3)
    lines = _table(capsys.readouterr().out)
    assert {cell_len(line) for line in lines} == {cell_len(lines[0])}  # every line as wide
    assert all(cell_len(line) <= 80 for line in lines)
    titles = [line.split("│")[4].strip() for line in lines[2:]]
    long_at = next(i for i, line in enumerate(lines[2:]) if "t-long" in line)
    wide_at = next(i for i, line in enumerate(lines[2:]) if "t-a-much" in line)
    assert " ".join(titles[long_at:wide_at]) == long_title  # nothing cut
    assert "".join(line.split("│")[0].strip() for line in lines[2 + wide_at:]) \
        == "t-a-much-longer-id-than-the-first"


def test_colours_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    rows = [(t, None) for t in _tasks(6)]
    table_stream.task_rows(rows, extra=False, small=2)
    plain = capsys.readouterr().out
    assert not ANSI.search(plain)
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TERM", "xterm-256color")
    table_stream.task_rows(rows, extra=False, small=2)
    coloured = capsys.readouterr().out
    assert "\x1b[32mopen" in coloured  # open: green
    assert ANSI.sub("", coloured).replace("\x1b[1m", "") == plain


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = make_git_repo(tmp_path / "repo")
    assert invoke_cli(["init", "--prefix", "bd"], cwd=repo).exit_code == 0
    return repo


def test_list_and_blocked_stream_through_the_cli(repo: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    project = open_project(repo, {})
    try:
        first = project.ledger.create("first, the one the others wait on")
        for i in range(7):
            project.ledger.create(f"waiter {i} 漢字", after=[first.id])
        project.ledger.create("marked", status="blocked")
    finally:
        project.close()
    monkeypatch.setattr(table_stream, "SMALL", 3)
    listed = invoke_cli(["list"], cwd=repo, env={"COLUMNS": "120"})
    assert listed.exit_code == 0, listed.stderr
    assert listed.stdout.endswith("9 tasks\n") and listed.stdout.count("waiter") == 7
    assert invoke_cli(["list", "-n", "5"], cwd=repo).stdout.endswith("5 tasks\n")
    blocked = invoke_cli(["blocked"], cwd=repo, env={"COLUMNS": "120"})
    assert blocked.exit_code == 0, blocked.stderr
    assert "Waiting on" in blocked.stdout and blocked.stdout.count(first.id) == 7
    assert "8 tasks\n" in blocked.stdout
    assert blocked.stdout.rstrip().splitlines()[-1].startswith("  taskmill reopen bd-")


def test_empty_lists(repo: Path) -> None:
    assert invoke_cli(["list"], cwd=repo).stdout == "0 tasks\n"
    assert invoke_cli(["blocked"], cwd=repo).stdout == "0 tasks\n"


def test_grouping_keeps_its_order() -> None:
    """Children under their parents, depth first; a task that is its own parent, or in a
    loop of parents, listed flat after the others (as the recursive grouping did)."""
    from taskmill.cli import task_cells

    items = [("a", None), ("self", "self"), ("k1", "a"), ("b", None), ("k2", "a"),
             ("g", "k1"), ("x", "y"), ("y", "x")]
    assert task_cells.grouped(items, lambda item: item) == [
        (("a", None), 0), (("k1", "a"), 1), (("g", "k1"), 2), (("k2", "a"), 1),
        (("b", None), 0), (("self", "self"), 0), (("x", "y"), 0), (("y", "x"), 1)]


_WORDS = st.text(alphabet="abc-#1 ", min_size=0, max_size=24) | st.text(
    alphabet="aü漢 ", min_size=0, max_size=16)


@settings(max_examples=80, deadline=None)
@given(titles=st.lists(_WORDS, min_size=1, max_size=6),
       waits=st.lists(st.lists(st.text(alphabet="tx-1 ", max_size=18), max_size=4),
                      min_size=6, max_size=6),
       labels=st.lists(st.lists(st.text(alphabet="ab-{}", min_size=1, max_size=14),
                                max_size=3), min_size=6, max_size=6),
       statuses=st.lists(st.sampled_from(["open", "in_progress", "blocked", "deferred"]),
                         min_size=6, max_size=6),
       columns=st.sampled_from([12, 26, 40, 57, 80, 120]), colour=st.booleans())
def test_any_titles_and_waits_are_laid_out_as_rich_does(
        titles: list[str], waits: list[list[str]], labels: list[list[str]],
        statuses: list[str], columns: int, colour: bool) -> None:
    """Titles, "Waiting on" items and labels of every shape (one line, two, more; spaces
    leading, trailing, doubled; a word wider than its column; wide characters; braces),
    statuses of one line or two, on terminals too narrow for the table's padding too, in
    colour or not: the same bytes as rich's table."""
    tasks = [Task(id=f"t-{i}", title=title, labels=labels[i], status=statuses[i],
                  children=i % 3, children_closed=i % 2)
             for i, title in enumerate(titles)]
    extra = {t.id: waits[i] for i, t in enumerate(tasks)}
    with pytest.MonkeyPatch.context() as m:
        m.setenv("COLUMNS", str(columns))
        for name in ("FORCE_COLOR", "TTY_COMPATIBLE"):
            m.delenv(name, raising=False)
        if colour:
            m.setenv("FORCE_COLOR", "1")
            m.setenv("TERM", "xterm-256color")
        out = io.StringIO()
        m.setattr("sys.stdout", out)
        render.task_table(tasks, extra=extra)
        rich_out = out.getvalue()
        assert ("\x1b[" in rich_out) is colour
        out.seek(0)
        out.truncate()
        table_stream.task_rows([(t, extra[t.id]) for t in tasks], extra=True)
        assert out.getvalue() == rich_out
        out.seek(0)
        out.truncate()
        render.task_table(tasks)
        rich_out = out.getvalue()
        out.seek(0)
        out.truncate()
        table_stream.task_rows([(t, None) for t in tasks], extra=False)
        assert out.getvalue() == rich_out


@pytest.mark.parametrize("columns", [5, 8, 12, 20])
def test_a_terminal_too_narrow_for_the_table_lays_it_out_still(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        columns: int) -> None:
    """Narrower than the table's borders (columns of no width: an id cannot be folded into
    none; a child's id, its tree mark not ASCII, neither): the rows are laid out all the
    same, every one counted."""
    monkeypatch.setenv("COLUMNS", str(columns))
    tasks = [Task(id=f"tm-{i}x", title="word " * 5, labels=["abc"]) for i in range(4)]
    tasks[1:1] = [Task(id="tm-kid", title="漢字 " * 4, parent="tm-0x", labels=["ラベル"])]
    table_stream.task_rows([(t, ["tm-1x"]) for t in tasks], extra=True, small=2)
    table_stream.task_rows([(t, None) for t in tasks], extra=False, small=2)
    out = capsys.readouterr().out
    assert len(re.findall(r"5\s+tasks", out)) == 2  # (the count line wraps at 5)
