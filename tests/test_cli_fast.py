"""The fast path (``taskmill.cli.fast``): the everyday commands without click, printing the
same bytes as click would, and falling back to click at any doubt; imports kept lazy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest

from conftest import invoke_cli
from taskmill.cli import fast
from taskmill.cli.context import Ctx
from taskmill.clock import FixedClock
from taskmill.ledger import Ledger

SRC = Path(__file__).resolve().parents[1] / "src"


def _click_command(name: str) -> click.Command:
    from taskmill.cli import cli

    command = cli.get_command(click.Context(cli, info_name="taskmill"), name)
    assert command is not None
    return command


@pytest.mark.parametrize("name", sorted(fast.SPECS))
def test_the_option_tables_match_the_click_commands(name: str) -> None:
    spec, nargs = fast.SPECS[name]
    command = _click_command(name)
    seen: set[str] = set()
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    if nargs == 0:
        assert arguments == []
    else:
        assert len(arguments) == 1
        # create's TITLE is optional (create --template NAME takes its fields instead); the
        # fast path serves only a command line that has one
        required = name != "create"
        assert (arguments[0].nargs, arguments[0].required) == ((-1, True) if nargs < 0
                                                               else (1, required))
    for param in command.params:
        if not isinstance(param, click.Option) or param.name == "help":
            continue
        for opt in (*param.opts, *param.secondary_opts):
            assert opt in spec, f"{name}: {opt} is not in the fast path's table"
            dest, kind = spec[opt]
            assert dest == param.name, (name, opt)
            if param.is_flag:
                assert kind == fast.FLAG, (name, opt)
            elif param.multiple:
                assert kind == fast.MULTIPLE, (name, opt)
            else:
                assert callable(kind), (name, opt)
            seen.add(opt)
    assert set(spec) == seen, f"{name}: the fast path knows options click does not"


# -- the same bytes -----------------------------------------------------------------------------


@pytest.fixture
def seeded(taskmill_repo: Path) -> Path:
    """A ledger with a parent, children, a dependency and a comment."""
    (taskmill_repo / "sub").mkdir()
    ledger = Ledger.open(taskmill_repo / ".taskmill" / "taskmill.db", prefix="tm",
                         clock=FixedClock(), actor="seed")
    with ledger:
        ledger.create("Epic", task_id="tm-epic", issue_type="epic")
        ledger.create("First child", task_id="tm-a", parent="tm-epic", labels=["x", "y"],
                      description="line one\nline two")
        ledger.create("Second child", task_id="tm-b", parent="tm-epic", after=["tm-a"],
                      priority=0)
        ledger.create("Élan ✓ unicode", task_id="tm-u", checks=["true"])
        ledger.create("Closed one", task_id="tm-c")
        ledger.close("tm-c", "done by hand")
        ledger.comment("tm-a", "a comment\nover two lines", author="alice")
    return taskmill_repo


CASES: list[list[str]] = [
    ["ready"], ["ready", "--json"], ["ready", "-n", "1"], ["ready", "--limit=2", "--json"],
    ["ready", "--json", "-n", "3"],
    ["show", "tm-a"], ["show", "tm-a", "--json"], ["show", "--json", "tm-epic"],
    ["show", "tm-u"], ["show", "tm-nope"], ["show", "tm-nope", "--json"], ["show", "a", "--json"],
    ["show", "tm-b", "--json"],
    ["create", "New task", "--id", "tm-new"], ["create", "New task", "--json"],
    ["add", "Via the alias", "--json"],
    ["create", "Full", "-d", "desc", "--design", "des", "--acceptance", "acc", "--notes", "n",
     "-p", "1", "-t", "bug", "-a", "bob", "--external-ref", "gh-1", "--check", "true",
     "--check", "make test", "--metadata", '{"k": [1, 2]}', "--hints", '{"h": "v"}',
     "-l", "one", "--label", "two", "--after", "tm-a", "--parent", "tm-epic",
     "--discovered-from", "tm-u", "--id", "tm-full", "--json"],
    ["create", "Bad metadata", "--metadata", "{nope"], ["create", "Bad", "--metadata=[1]",
                                                        "--json"],
    ["create", "Orphan", "--parent", "tm-nope", "--json"], ["create", "Orphan", "--parent",
                                                             "tm-nope"],
    ["create", "", "--json"], ["create", "Dup", "--id", "tm-a", "--json"],
    ["create", "esc \x1b[31mred\x1b[0m title"], ["create", "Tab\there", "--json"],
    ["create", "agent", "--agent", "no-such-agent", "--json"],
    ["create", "p0", "--priority=0", "--json"],
    ["update", "tm-a", "--title", "Renamed"], ["update", "tm-a", "--title", "Renamed", "--json"],
    ["update", "tm-a", "-s", "in_progress", "--json"], ["update", "tm-epic", "-s", "blocked"],
    ["update", "tm-epic", "--status", "deferred", "--json"],
    ["update", "tm-a", "--claim"], ["update", "tm-a", "--claim", "-a", "carol", "--json"],
    ["update", "tm-b", "--claim", "--json"],
    ["update", "tm-a", "--append-notes", "more"], ["update", "tm-a", "--agent", "", "--json"],
    ["update", "tm-a", "--check", "a", "--check", "b", "--json"],
    ["update", "tm-u", "--clear-checks", "--json"],
    ["update", "tm-a", "--metadata", '{"a": 1}', "--hints", "{bad", "--json"],
    ["update", "tm-nope", "--title", "x"], ["update", "tm-nope", "--title", "x", "--json"],
    ["update", "tm-a", "--priority", "4", "--type", "chore", "--notes", "", "--json"],
    ["close", "tm-a"], ["close", "tm-a", "--json"], ["close", "tm-a", "tm-u", "--json"],
    ["close", "-r", "shipped", "tm-a"], ["close", "tm-a", "--reason=landed abc", "--json"],
    ["close", "tm-nope", "tm-a"], ["close", "tm-c", "--json"], ["close", "tm-epic", "--json"],
    ["-C", "sub", "ready", "--json"], ["--actor", "bob", "create", "By bob", "--json"],
    ["--actor=eve", "update", "tm-a", "--claim", "--json"],
    ["-C", "sub", "--actor", "zed", "close", "tm-b", "--json"],
    ["list"], ["list", "--json"], ["list", "-s", "open", "--json"],
    ["list", "--status=open", "-s", "closed"], ["list", "-l", "x", "--json"],
    ["list", "--type", "epic"], ["list", "-a", "nobody", "--json"],
    ["list", "--parent", "tm-epic", "--json"], ["list", "--parent", "tm-nope", "--json"],
    ["list", "--all", "-n", "2", "--json"], ["list", "--limit=1"],
    ["blocked"], ["blocked", "--json"], ["blocked", "--beads-compat", "--json"],
    ["-C", "sub", "blocked", "--beads-compat"],
]
"""Command lines the fast path serves: their bytes must be click's."""

FALLBACKS: list[list[str]] = [
    ["ready", "-n", "0"], ["ready", "-n", "x", "--json"], ["ready", "extra"], ["ready", "-h"],
    ["show"], ["show", "a", "b"], ["show", "--help"], ["show", "--json", "--json", "tm-a"],
    ["create", "-p", "9", "x"], ["create", "-p3", "x"], ["create", "x", "--title", "y"],
    ["create", "--", "-x"], ["create", "x", "-d", "-starts-with-dash"],
    ["create", "x", "--id", "tm-1", "--id", "tm-2"],
    ["update", "tm-a"], ["update", "tm-a", "--json"], ["update", "tm-a", "--append-notes", ""],
    ["update", "tm-a", "--status", "tombstone"], ["update", "tm-a", "--claim=yes"],
    ["close"], ["close", "--json"], ["close", "tm-a", "--reason"],
    ["-C"], ["-C", "", "ready"], ["-C", "README.md", "ready"], ["--json", "ready"],
    ["list", "-n", "0"], ["list", "-s"], ["list", "extra"], ["list", "--all=1"],
    ["blocked", "--beads-compat", "--beads-compat"], ["blocked", "x"],
    ["nope"], [], ["--help"], ["-C", "sub"],
    ["--actor", "--json", "ready"],
]
"""Command lines the fast path hands to click untouched."""


def _copy(repo: Path, dest: Path) -> Path:
    shutil.copytree(repo, dest, symlinks=True)
    return dest


def _served(argv: list[str], repo: Path, capfd: pytest.CaptureFixture[str]
            ) -> tuple[int, str, str] | None:
    """The fast path's result, or None when it handed the command line over."""
    env = {**os.environ, "TASKMILL_ACTOR": "tester", "COLUMNS": "100"}
    ctx = Ctx(cwd=repo, env=env, argv=list(argv), clock=FixedClock(step=0.001))
    capfd.readouterr()
    try:
        fast.run(list(argv), ctx)
    except SystemExit as exc:
        out, err = capfd.readouterr()
        code = exc.code
        return (code if isinstance(code, int) else (0 if code is None else 1)), out, err
    assert capfd.readouterr() == ("", ""), "the fast path printed and then handed over"
    return None


def _clicked(argv: list[str], repo: Path, capfd: pytest.CaptureFixture[str]
             ) -> tuple[int, str, str]:
    from taskmill.cli import cli

    env = {**os.environ, "TASKMILL_ACTOR": "tester", "COLUMNS": "100"}
    ctx = Ctx(cwd=repo, env=env, argv=list(argv), clock=FixedClock(step=0.001))
    capfd.readouterr()
    with pytest.raises(SystemExit) as info:
        cli.main(args=list(argv), obj=ctx, prog_name="taskmill")
    out, err = capfd.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else (0 if code is None else 1)), out, err


def _audit_head(repo: Path) -> list[tuple[Any, ...]]:
    ledger = Ledger.open(repo / ".taskmill" / "taskmill.db", prefix="tm")
    with ledger:
        return [(e.seq, e.ts, e.actor, e.task_id, e.kind, e.hash) for e in ledger.events()]


@pytest.fixture
def fixed_nonce(monkeypatch: pytest.MonkeyPatch) -> None:
    """Generated ids the same on both paths."""
    from taskmill import lean_rules

    monkeypatch.setattr(lean_rules, "random_nonce", lambda: "0123456789abcdef")


@pytest.mark.parametrize("argv", CASES, ids=lambda a: " ".join(a)[:60])
def test_the_fast_path_prints_what_click_prints(
        argv: list[str], seeded: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str],
        fixed_nonce: None) -> None:
    fast_repo = _copy(seeded, tmp_path / "fast")
    click_repo = _copy(seeded, tmp_path / "click")
    by_fast = _served(argv, fast_repo, capfd)
    assert by_fast is not None, f"the fast path handed {argv} to click"
    by_click = _clicked(argv, click_repo, capfd)
    # the two copies' paths (in an error message) are the one difference allowed

    def same(result: tuple[int, str, str], repo: Path) -> tuple[int, str, str]:
        code, out, err = result
        return code, out.replace(str(repo), "<repo>"), err.replace(str(repo), "<repo>")

    assert same(by_fast, fast_repo) == same(by_click, click_repo)
    # the same changes, at the same times, by the same actor: the same audit chain
    assert _audit_head(fast_repo) == _audit_head(click_repo)


@pytest.mark.parametrize("argv", FALLBACKS, ids=lambda a: " ".join(a)[:60] or "(none)")
def test_the_fast_path_hands_doubtful_command_lines_to_click(
        argv: list[str], seeded: Path, capfd: pytest.CaptureFixture[str]) -> None:
    before = _audit_head(seeded)
    assert _served(argv, seeded, capfd) is None
    assert _audit_head(seeded) == before


def test_inside_an_agent_turn_click_decides(seeded: Path,
                                            capfd: pytest.CaptureFixture[str]) -> None:
    ctx = Ctx(cwd=seeded, env={**os.environ, "TASKMILL_SOCKET": str(seeded / "no.sock")},
              argv=["ready", "--json"])
    fast.run(["ready", "--json"], ctx)  # returns: the turn's rules are click's
    assert capfd.readouterr() == ("", "")


def _python(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[bytes]:
    full = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "100", **env}
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, env=full,
                          check=False, timeout=60)


@pytest.mark.parametrize("argv", [["ready"], ["ready", "--json"], ["show", "tm-a"],
                                  ["show", "tm-b", "--json"], ["show", "tm-nope"],
                                  ["show", "tm-nope", "--json"], ["--version"],
                                  ["list", "--json"], ["list", "-s", "open"], ["blocked"],
                                  ["blocked", "--json"]],
                         ids=" ".join)
def test_whole_processes_print_the_same_bytes(argv: list[str], seeded: Path) -> None:
    by_fast = _python(["-m", "taskmill", *argv], seeded)
    by_click = _python(["-c", "from taskmill.cli import main; main(fast=False)", *argv], seeded)
    assert (by_fast.returncode, by_fast.stdout, by_fast.stderr) == (
        by_click.returncode, by_click.stdout, by_click.stderr)


HEAVY = ("click", "rich", "starlette", "pydantic", "mcp", "httpx", "uvicorn",
         "taskmill.agents", "taskmill.mill", "taskmill.web", "taskmill.proxy",
         "taskmill.capability", "taskmill.beads", "taskmill.sync")


def _imported_after(code: str, cwd: Path) -> set[str]:
    probe = (f"import sys\n{code}\n"
             f"print('HEAVY:', *(m for m in {HEAVY!r} if m in sys.modules))")
    result = _python(["-c", probe], cwd)
    assert result.returncode == 0, result.stderr.decode()
    last = result.stdout.decode().splitlines()[-1]
    assert last.startswith("HEAVY:"), result.stdout
    return set(last.split()[1:])


def test_importing_the_cli_imports_nothing_heavy(tmp_path: Path) -> None:
    assert _imported_after("import taskmill.cli", tmp_path) == set()


@pytest.mark.parametrize("argv", [["ready", "--json"], ["show", "tm-a", "--json"],
                                  ["create", "x", "--json"], ["close", "tm-u", "--json"],
                                  ["update", "tm-a", "--claim", "--json"], ["--version"],
                                  ["list", "-s", "open", "--json"], ["blocked", "--json"]],
                         ids=" ".join)
def test_the_fast_commands_stay_lazy(argv: list[str], seeded: Path) -> None:
    code = ("from taskmill.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit as exc:\n"
            "    assert not exc.code, exc.code\n")
    assert _imported_after(code, seeded) == set()


def test_a_task_in_progress_still_shows_interrupted(seeded: Path) -> None:
    """``show`` imports the mill only to look at a task in progress; it still does that."""
    ledger = Ledger.open(seeded / ".taskmill" / "taskmill.db", prefix="tm")
    with ledger:
        ledger.claim("tm-a", "mill:run-1")
    shown = invoke_cli(["show", "tm-a", "--json"], cwd=seeded).ok().json()
    assert shown["status"] == "in_progress"
    assert "interrupted" in shown



@pytest.mark.parametrize("argv", [["list"], ["ready", "--json"], ["blocked"]])
def test_a_ctrl_c_before_the_command_runs_is_aborted_as_click_aborts(
        argv: list[str], taskmill_repo: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C while the modules load (before any command's own handling): "Aborted!",
    status 1, no traceback, as click's standalone mode says it."""
    from taskmill.cli import lean, main

    def interrupted(*_args: Any, **_kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(lean, "find_ledger", interrupted)  # (the lean paths' first look)
    monkeypatch.setattr("taskmill.cli.context.Ctx.__init__", interrupted)
    with pytest.raises(SystemExit) as done:
        main(argv, cwd=taskmill_repo)
    assert done.value.code == 1
    assert capsys.readouterr().err == "\nAborted!\n"
