"""The lean path's text forms (``taskmill.cli.lean_table``): ``ready [-n N]`` and ``show ID``
as whole processes print byte for byte what the full path (rich) prints, piped and on a
terminal, at any width; and anything that would need rich's wrapping goes to the full path."""

from __future__ import annotations

import ast
import io
import os
import pty
import shutil
import subprocess
import sys
import termios
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import _LEAKY_ENV, GIT_IDENTITY, invoke_cli
from taskmill.cli import lean, lean_table, task_cells
from taskmill.clock import FixedClock
from taskmill.ledger import Ledger

SRC = Path(__file__).resolve().parents[1] / "src"
MAIN = "import sys; from taskmill.cli import main; sys.exit(main())"


def _open(repo: Path) -> Ledger:
    return Ledger.open(repo / ".taskmill" / "taskmill.db", prefix="tm", clock=FixedClock(),
                       actor="seed")


@pytest.fixture(scope="module")
def isolated(_isolated_home: Path) -> Iterator[None]:
    """What ``conftest._isolate_environment`` does for a test, for this module's shared
    ledger and outcomes."""
    with pytest.MonkeyPatch.context() as mp:
        for name in _LEAKY_ENV:
            mp.delenv(name, raising=False)
        mp.setenv("HOME", str(_isolated_home))
        mp.setenv("XDG_CONFIG_HOME", str(_isolated_home / ".config"))
        mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
        mp.setenv("GIT_CONFIG_GLOBAL", str(_isolated_home / ".gitconfig"))
        mp.setenv("GIT_TERMINAL_PROMPT", "0")
        mp.setenv("USER", "tester")
        for key, value in GIT_IDENTITY.items():
            mp.setenv(key, value)
        yield


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory, isolated: None) -> Path:
    """Labels, dependencies, a container (one with every child closed), long titles,
    CJK, emoji, brackets and emoji codes, comments, checks, a close reason."""
    repo = tmp_path_factory.mktemp("table") / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    invoke_cli(["init", "--prefix", "tm"], cwd=repo).ok()
    with _open(repo) as ledger:
        ledger.create("Epic", task_id="tm-epic", issue_type="epic", labels=["big"])
        ledger.create("First child", task_id="tm-a", parent="tm-epic", labels=["y", "x"],
                      description="line one\nline two", assignee="alice", agent="scripted")
        ledger.create("Second child waits on the first", task_id="tm-b", parent="tm-epic",
                      after=["tm-a"], priority=0)
        ledger.create("漢字のタイトル 😀 and ✓ Élan", task_id="tm-u", checks=["make test"],
                      labels=["ユニ", "🏷"], priority=1)
        ledger.create("[bold]not markup[/] :smile: \\ back", task_id="tm-m",
                      notes="[red]x[/] :+1: end\\", labels=["[x]"])
        ledger.create("A long title " + "that goes on and on " * 6, task_id="tm-long",
                      priority=3, labels=["one", "two"])
        ledger.create("Done container", task_id="tm-box", issue_type="epic")
        ledger.create("closed kid", task_id="tm-kid", parent="tm-box")
        ledger.close("tm-kid", "done\nreally")
        ledger.comment("tm-a", "a comment\nover two lines", author="bob")
        ledger.create("Plain text wraps", task_id="tm-desc", priority=4,
                      description=("Fix the merge queue: the current behaviour is wrong in an"
                                   " edge case;  see the report, reproduce it  " * 4).strip()
                      + "\n\n  indented line " + "and more words " * 9,
                      notes="漢字のノート " * 12 + "\u00a0non-breaking\u00a0spaces " * 3)
        ledger.comment("tm-desc", "a long comment " * 12, author="carol")
        ledger.create("Worked on", task_id="tm-att", priority=4)
        for i, (outcome, commit) in enumerate([("failed", None), ("passed", "abcdef0123456789")]):
            attempt = ledger.start_attempt("tm-att", iteration=i + 1, agent="scripted",
                                           model="m" if i else None, log_path="logs/x.log",
                                           run_id="r1", lap=1, actor="mill",
                                           now=f"2026-01-01T00:0{i}:00Z")
            ledger.finish_attempt("tm-att", attempt, outcome=outcome, input_tokens=10 * i,
                                  output_tokens=5, cost_usd=0.0125 if i else None,
                                  commit=commit, model=None, detail={"checks": "ok"},
                                  seconds=1.5, usage_error=None, actor="mill",
                                  now=f"2026-01-01T00:0{i}:30Z")
    invoke_cli(["list"], cwd=repo).ok()  # the full path: checks the config, caches it
    return repo


def _env(**extra: str) -> dict[str, str]:
    drop = ("TASKMILL_SOCKET", "TASKMILL_DIR", "TASKMILL_DATABASE_URL", "TASKMILL_LEAN",
            "COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE",
            "COLORTERM", "TERM")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def _process(argv: list[str], repo: Path, env: dict[str, str]) -> tuple[int, bytes, bytes]:
    proc = subprocess.run([sys.executable, "-c", MAIN, *argv], cwd=repo, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def _on_terminal(argv: list[str], repo: Path, env: dict[str, str], width: int
                 ) -> tuple[int, bytes, bytes]:
    """``taskmill ARGV`` with its standard output a terminal ``width`` columns wide."""
    master, slave = pty.openpty()
    tty.setraw(slave)  # (no "\r\n" for "\n")
    termios.tcsetwinsize(slave, (24, width))
    proc = subprocess.Popen([sys.executable, "-c", MAIN, *argv], cwd=repo, env=env,
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the other end is closed
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.stderr is not None
    err = proc.stderr.read()
    proc.stderr.close()
    return proc.wait(), out, err


ARGVS = [["ready"], ["ready", "-n", "2"], ["ready", "--limit=1"], ["show", "tm-a"],
         ["show", "tm-b"], ["show", "tm-epic"], ["show", "tm-u"], ["show", "tm-m"],
         ["show", "tm-box"], ["show", "tm-kid"], ["show", "tm-long"], ["show", "tm-desc"],
         ["show", "tm-att"]]
WIDTHS = [40, 66, 67, 74, 75, 80, 120, 200]
"""The widths asked for (and at 66/67, 74/75 the widest lines of some here: one cell
less than a line wraps it)."""
COLOURS = {"piped": {}, "FORCE_COLOR": {"FORCE_COLOR": "1"},
           "TTY_COMPATIBLE": {"TTY_COMPATIBLE": "1", "TERM": "xterm-256color",
                              "COLORTERM": "truecolor"}}
WIDE = 1000
"""Wide enough for anything here: what the full path prints then shows whether a width
needs rich's wrapping (a line wider than it)."""

RUNNER = """
import io, json, os, sys
from taskmill.cli import main
base = dict(os.environ)
results = []
for argv, env in json.loads(sys.argv[1]):
    os.environ.clear()
    os.environ.update(base)
    os.environ.update(env)
    out, err = io.BytesIO(), io.BytesIO()
    sys.stdout = io.TextIOWrapper(out, encoding="utf-8")
    sys.stderr = io.TextIOWrapper(err, encoding="utf-8")
    try:
        main(argv)
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    sys.stdout.flush()
    sys.stderr.flush()
    results.append([code, out.getvalue().hex(), err.getvalue().hex()])
sys.__stdout__.write(json.dumps(results))
"""
"""Many command lines in one process (Python's start-up is most of a run): each as
``main`` runs it, its output piped, with its own environment; status, stdout, stderr."""

Outcome = tuple[int, bytes, bytes]


def _batch(repo: Path, cases: list[tuple[list[str], dict[str, str]]], env: dict[str, str]
           ) -> list[Outcome]:
    import json

    proc = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(cases)], cwd=repo, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, check=True)
    return [(code, bytes.fromhex(out), bytes.fromhex(err))
            for code, out, err in json.loads(proc.stdout)]


@pytest.fixture(scope="module")
def outcomes(seeded: Path, isolated: None) -> dict[tuple[str, int, str, str], Outcome]:
    """(command line, width, colours, lean or full) -> what it printed."""
    keys = [(" ".join(argv), width, colour) for argv in ARGVS for width in [*WIDTHS, WIDE]
            for colour in COLOURS]
    cases = [(key[0].split(" "), {"COLUMNS": str(key[1]), **COLOURS[key[2]]}) for key in keys]
    found: dict[tuple[str, int, str, str], Outcome] = {}
    for path, switch in (("full", "0"), ("lean", "1")):
        for key, outcome in zip(keys, _batch(seeded, cases, _env(TASKMILL_LEAN=switch)),
                                strict=True):
            found[(*key, path)] = outcome
    return found


def _widest(out: bytes) -> int:
    from rich.cells import cell_len

    return max(cell_len(line) for line in out.decode().split("\n"))


@pytest.mark.parametrize("colour", list(COLOURS))
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("argv", ARGVS, ids=" ".join)
def test_the_text_forms_print_what_the_full_path_prints(
        argv: list[str], width: int, colour: str, seeded: Path,
        outcomes: dict[tuple[str, int, str, str], Outcome],
        monkeypatch: pytest.MonkeyPatch) -> None:
    key = (" ".join(argv), width, colour)
    full = outcomes[(*key, "full")]
    assert full[0] == 0 and full[2] == b"" and full[1]
    assert outcomes[(*key, "lean")] == full
    env = _env(COLUMNS=str(width), **COLOURS[colour])
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BytesIO(), encoding="utf-8"))
    answered = lean.answer(argv, env, str(seeded))
    if answered is not None:
        assert answered == full[1]
    # the lean path answers all that rich does not wrap, and plain text it wraps
    natural = outcomes[(key[0], WIDE, "piped", "full")][1]
    if _widest(natural) <= width or argv == ["show", "tm-desc"]:
        assert answered is not None
    if colour != "piped":
        assert b"\x1b[" in full[1]


@pytest.mark.parametrize("argv", ARGVS, ids=" ".join)
def test_as_whole_processes(argv: list[str], seeded: Path) -> None:
    env = _env(COLUMNS="200", **COLOURS["FORCE_COLOR" if len(argv) % 2 else "piped"])
    full = _process(argv, seeded, {**env, "TASKMILL_LEAN": "0"})
    assert full[0] == 0 and full[2] == b""
    assert _process(argv, seeded, env) == full


@pytest.mark.parametrize("argv", [["ready", "-n", "2"], ["show", "tm-epic"]], ids=" ".join)
@pytest.mark.parametrize("extra", [{}, {"TERM": "xterm-256color"}, {"NO_COLOR": "1"},
                                   {"TERM": "dumb"}, {"COLUMNS": "70"}],
                         ids=lambda e: " ".join(f"{k}={v}" for k, v in e.items()) or "plain")
def test_on_a_terminal_too(argv: list[str], extra: dict[str, str], seeded: Path) -> None:
    """Standard output a real terminal: its size, colours as rich decides them."""
    env = _env(**extra)
    full = _on_terminal(argv, seeded, {**env, "TASKMILL_LEAN": "0"}, 120)
    assert full[0] == 0 and full[2] == b""
    assert _on_terminal(argv, seeded, env, 120) == full
    assert (b"\x1b[" in full[1]) == (extra.get("TERM") != "dumb")


def test_an_empty_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    invoke_cli(["init", "--prefix", "tm"], cwd=repo).ok()
    invoke_cli(["list"], cwd=repo).ok()
    for colour in COLOURS.values():
        env = _env(COLUMNS="80", **colour)
        full = _process(["ready"], repo, {**env, "TASKMILL_LEAN": "0"})
        assert full[1].endswith(b"0 tasks" + (b"\x1b[0m" if colour else b"") + b"\n")
        assert _process(["ready"], repo, env) == full
        monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BytesIO(), encoding="utf-8"))
        assert lean.answer(["ready"], env, str(repo)) == full[1]


def test_what_needs_rich_goes_to_the_full_path(
        seeded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seeded = Path(shutil.copytree(seeded, tmp_path / "repo"))
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BytesIO(), encoding="utf-8"))
    wide, narrow = _env(COLUMNS="200"), _env(COLUMNS="60")
    assert lean.answer(["ready"], wide, str(seeded)) is not None
    assert lean.answer(["ready"], narrow, str(seeded)) is None  # the long title: wrapped
    full = _process(["ready"], seeded, {**narrow, "TASKMILL_LEAN": "0"})
    assert _process(["ready"], seeded, narrow) == full
    assert max(len(line) for line in full[1].decode().splitlines()) <= 60
    with _open(seeded) as ledger:
        ledger.create("tabbed", task_id="tm-tab", description="a\tb")
        attempt = ledger.start_attempt("tm-tab", iteration=1, agent="scripted", model="m",
                                       log_path="logs/x.log", run_id="r1", lap=1,
                                       actor="mill", now="2026-01-01T00:00:00Z")
        ledger.finish_attempt("tm-tab", attempt, outcome="failed", input_tokens=1,
                              output_tokens=1, cost_usd=0.5, commit=None, model=None,
                              detail=None, seconds=1.0, usage_error=None, actor="mill",
                              now="2026-01-01T00:01:00Z")
        ledger.create("tabbed without attempts", task_id="tm-tab2", description="a\tb")
    assert lean.answer(["show", "tm-tab"], wide, str(seeded)) is None  # a tab, attempts
    assert lean.answer(["show", "tm-tab2"], wide, str(seeded)) is None  # a tab
    for task_id in ("tm-tab", "tm-tab2"):
        full = _process(["show", task_id], seeded, {**wide, "TASKMILL_LEAN": "0"})
        assert full[0] == 0 and _process(["show", task_id], seeded, wide) == full
    assert lean.answer(["show", "tm-a"], wide, str(seeded)) is not None
    assert lean.answer(["show", "tm-long"], narrow, str(seeded)) is None  # a styled line
    with _open(seeded) as ledger:
        ledger.create("one long word", task_id="tm-word", description="x" * 70)
    assert lean.answer(["show", "tm-word"], narrow, str(seeded)) is None  # folded by rich
    assert lean.answer(["show", "tm-word"], wide, str(seeded)) is not None
    for argv, env in ((["show", "tm-word"], narrow), (["show", "tm-long"], narrow)):
        full = _process(argv, seeded, {**env, "TASKMILL_LEAN": "0"})
        assert full[0] == 0 and _process(argv, seeded, env) == full
    assert lean.answer(["show", "tm-a"], {**wide, "TTY_COMPATIBLE": "1", "NO_COLOR": "1"},
                       str(seeded)) is None


def test_stored_text_is_shown_literally(seeded: Path) -> None:
    """Neither markup nor emoji codes in stored text are read (the full path printed
    ``:smile:`` as an emoji)."""
    for switch in ("0", "1"):
        code, out, _err = _process(["show", "tm-m"], seeded,
                                   _env(COLUMNS="200", TASKMILL_LEAN=switch))
        assert code == 0
        text = out.decode()
        assert "[bold]not markup[/] :smile: \\ back" in text
        assert "[red]x[/] :+1: end\\" in text and "[x]" in text


def test_the_text_path_imports_no_rich_console(seeded: Path) -> None:
    code = ("import atexit, sys\n"
            "atexit.register(lambda: sys.stderr.write(repr(sorted(sys.modules))))\n" + MAIN)
    for argv, heavy in ((["show", "tm-epic"], {"rich", "re", "typing"}),  # ASCII: no rich
                        (["show", "tm-u"], {"rich.console", "rich.text"})):  # CJK: rich.cells
        proc = subprocess.run([sys.executable, "-c", code, *argv], cwd=seeded,
                              env=_env(COLUMNS="200"), capture_output=True, check=False)
        assert proc.returncode == 0 and proc.stdout
        loaded = set(ast.literal_eval(proc.stderr.decode()))
        assert "taskmill.cli.lean_table" in loaded
        assert heavy.isdisjoint(loaded), sorted(heavy & loaded)
        assert not {"click", "pydantic", "taskmill.model", "taskmill.cli.render"} & loaded


# -- what keeps it equal to rich ----------------------------------------------------------


def test_the_escaping_is_validations() -> None:
    from taskmill.validation import printable

    sample = "".join(map(chr, range(0x3000))) + "\r\n\U0001f600\u2028\u2029"
    for multiline in (False, True):
        assert task_cells.printable(sample, multiline=multiline) == \
            printable(sample, multiline=multiline)


def test_cells_and_styles_are_richs() -> None:
    from rich import cells
    from rich.color import ColorSystem
    from rich.style import Style

    assert list(lean_table.SINGLE_CELL_RANGES) == cells._SINGLE_CELL_UNICODE_RANGES
    for text in ["plain", "Élan ✓", "漢字", "😀 x", "👍🏽", "❤️", "e\u0301", "└ tm-a", "ユニ, 🏷",
                 "\u200d", "a\u200db"]:
        assert lean_table.cell_len(text) == cells.cell_len(text), text
    styles = {*task_cells.STATUS_STYLE.values(), "bold", "dim", lean_table.TITLE_STYLE}
    for style in styles:
        for system in (ColorSystem.STANDARD, ColorSystem.EIGHT_BIT, ColorSystem.TRUECOLOR):
            assert Style.parse(style).render("x", color_system=system) == \
                f"{lean_table.sgr(style)}x{lean_table.RESET}"


ENVIRONMENTS = [{}, {"COLUMNS": "57"}, {"COLUMNS": "57", "LINES": "9"}, {"TERM": "dumb"},
                {"TERM": "dumb", "COLUMNS": "57"}, {"TERM": "dumb", "COLUMNS": "57", "LINES": "9"},
                {"FORCE_COLOR": ""}, {"FORCE_COLOR": "0"}, {"TTY_COMPATIBLE": "0"},
                {"TTY_COMPATIBLE": "0", "FORCE_COLOR": "1"}, {"TTY_COMPATIBLE": "1"},
                {"TTY_COMPATIBLE": "x", "FORCE_COLOR": "1"}, {"TERM": "UNKNOWN"},
                {"COLUMNS": "abc"}, {"COLUMNS": "0"}]


@pytest.mark.parametrize("isatty", [False, True])
@pytest.mark.parametrize("environ", ENVIRONMENTS, ids=repr)
def test_the_width_and_colours_are_decided_as_rich_decides_them(
        environ: dict[str, str], isatty: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    class Out(io.StringIO):
        encoding = "utf-8"

        def isatty(self) -> bool:
            return isatty

    monkeypatch.setattr(sys, "stdout", Out())
    for name in ("COLUMNS", "LINES", "TERM", "FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    console = Console(highlight=False, soft_wrap=False)  # rich reads os.environ
    found = lean_table.screen(dict(os.environ))
    assert found == (console.width, console.color_system is not None)


def _wrap_samples() -> list[str]:
    import random

    rng = random.Random(12)
    pieces = ["a", "word", "longerword", "x" * 19, " ", "  ", "   ", "漢字", "タイトル", "😀",
              "é", "\u00a0", "\u3000", "e\u0301", "-", ".", "✓"]
    samples = ["", " ", "   ", "fits", " leading", "trailing   ", "two  spaces  here ",
               "x" * 20, "x" * 21 + " y", "a " * 15, "漢字" * 11]
    for _ in range(400):
        samples.append("".join(rng.choice(pieces) for _ in range(rng.randint(1, 30))))
    return samples


@pytest.mark.parametrize("width", [1, 5, 12, 20, 33])
def test_plain_text_is_wrapped_as_rich_wraps_it(width: int) -> None:
    """Where the lean path wraps a line itself, rich's ``Text.wrap`` makes the same lines;
    it declines only where rich folds a word or crops a piece (none of plain words that
    fit the line)."""
    from rich.console import Console
    from rich.text import Text

    console = Console(width=width)
    declined = 0
    for sample in _wrap_samples():
        mine = lean_table.wrapped(sample, width)
        theirs = [line.plain for line in Text(sample).wrap(console, width)]
        if mine is None:  # only where rich folds or crops: never plain words that fit
            declined += 1
            assert not (sample.isascii() and all(
                len(word.rstrip()) <= width for _, word in lean_table._words(sample)))
            continue
        assert mine == theirs, sample
    assert declined < len(_wrap_samples())
