"""The ``taskmill`` command: every command has help and ``--json``; ``--json`` output is one
JSON document (an object for one record, an array for lists); errors are JSON on stderr with
a stable ``code``; exit codes 2 (bad input), 3 (not found), 4 (conflict)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import pytest

import pg_helpers
from conftest import CliResult, invoke_cli, make_git_repo
from taskmill.cli import ALIASES, COMMANDS
from taskmill.cli import cli as root_group

Cli = Callable[..., CliResult]

# Commands that serve until stopped: their --help and --json option are checked, not a run.
SERVERS = {("serve",), ("mcp",), ("fake-model",), ("watch",), ("worker",)}


def leaf_commands() -> Iterator[tuple[tuple[str, ...], click.Command]]:
    ctx = click.Context(root_group, info_name="taskmill")

    def walk(group: click.Group, prefix: tuple[str, ...]) -> Iterator[
            tuple[tuple[str, ...], click.Command]]:
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None, f"{' '.join((*prefix, name))} is listed but not loadable"
            if isinstance(command, click.Group):
                assert command.help, f"group {name} has no help"
                yield from walk(command, (*prefix, name))
            else:
                yield (*prefix, name), command

    yield from walk(root_group, ())


LEAVES = dict(leaf_commands())


def test_the_command_table_is_walked() -> None:
    top = {path[0] for path in LEAVES}
    assert {"init", "create", "show", "list", "ready", "blocked", "update", "close", "reopen",
            "label", "comment", "dep", "log", "verify", "stats", "import", "export"} <= top
    assert {("dep", "add"), ("dep", "rm"), ("dep", "tree"), ("dep", "cycles"),
            ("label", "add"), ("label", "rm")} <= set(LEAVES)
    assert top <= set(COMMANDS)


@pytest.mark.parametrize("path", sorted(LEAVES), ids=" ".join)
def test_every_command_has_help_and_a_json_flag(cli: Cli, tmp_path: Path,
                                                path: tuple[str, ...]) -> None:
    command = LEAVES[path]
    assert command.help and command.help.strip(), f"{' '.join(path)} has no help text"
    flags = [p for p in command.params if isinstance(p, click.Option) and "--json" in p.opts]
    assert len(flags) == 1, f"{' '.join(path)} has no --json option"
    assert flags[0].is_flag
    result = cli(*path, "--help", cwd=tmp_path).ok()
    assert "--json" in result.stdout
    assert command.help.split("\n")[0].strip()[:40] in " ".join(result.stdout.split())


def test_top_level_help_and_version(cli: Cli, tmp_path: Path) -> None:
    result = cli("--help", cwd=tmp_path).ok()
    for name in {p[0] for p in LEAVES}:
        assert f"  {name} " in result.stdout, name
    assert "add" in result.stdout  # the alias
    assert "Exit codes" in result.stdout
    assert cli("-h", cwd=tmp_path).ok().stdout == result.stdout
    assert "version" in cli("--version", cwd=tmp_path).ok().stdout
    assert ALIASES["add"] == "create"
    unknown = cli("frobnicate", cwd=tmp_path)
    assert unknown.exit_code == 2 and "No such command" in unknown.stderr


# -- --json output -----------------------------------------------------------------------


@pytest.fixture
def repo(taskmill_repo: Path) -> Path:
    return taskmill_repo


def make(cli: Cli, repo: Path, *args: str) -> str:
    return str(cli("create", *args, "--json", cwd=repo).ok().json()["id"])


def test_json_output_of_every_command(cli: Cli, repo: Path, tmp_path: Path) -> None:
    a = make(cli, repo, "first", "-p", "1", "-l", "x")
    b = make(cli, repo, "second", "--after", a)
    c = make(cli, repo, "third", "--parent", b)
    plan = tmp_path / "plan.toml"
    plan.write_text('[[task]]\nkey = "k1"\ntitle = "from a plan"\n'
                    '[[task]]\nkey = "k2"\ntitle = "after k1"\nafter = ["k1"]\n', encoding="utf-8")
    beads = tmp_path / "issues.jsonl"
    beads.write_text(json.dumps({"id": "bd-1", "title": "from beads", "status": "open",
                                 "priority": 2, "issue_type": "task",
                                 "created_at": "2025-01-01T00:00:00Z",
                                 "updated_at": "2025-01-01T00:00:00Z"}) + "\n", encoding="utf-8")
    fresh = make_git_repo(tmp_path / "fresh")
    (repo / ".taskmill" / "templates").mkdir()
    (repo / ".taskmill" / "templates" / "ask.toml").write_text(
        'description = "Ask"\n[task]\ntitle = "a request"\n', encoding="utf-8")
    out_file = tmp_path / "export.jsonl"
    subprocess.run(["git", "init", "-q", "--bare", str(tmp_path / "remote.git")], check=True)
    subprocess.run(["git", "-C", str(repo), "remote", "add", "origin",
                    str(tmp_path / "remote.git")], check=True)
    (repo / ".taskmill" / "formulas").mkdir()
    (repo / ".taskmill" / "formulas" / "two.toml").write_text(
        'formula = "two"\n[vars.x]\n[[steps]]\nid = "a"\ntitle = "A {{ x }}"\n', encoding="utf-8")
    (repo / ".taskmill" / "orders").mkdir()
    (repo / ".taskmill" / "orders" / "byhand.toml").write_text(
        '[order]\npour = "two"\nvars = { x = "1" }\ntrigger = "manual"\n', encoding="utf-8")
    # (command path, arguments after it, expected JSON type, working directory)
    calls: list[tuple[tuple[str, ...], list[str], type, Path]] = [
        (("init",), [], dict, fresh),
        (("create",), ["made", "-d", "desc", "--check", "true", "--metadata", '{"k": 1}'],
         dict, repo),
        (("show",), [b], dict, repo),
        (("list",), [], list, repo),
        (("ready",), ["--limit", "5"], list, repo),
        (("blocked",), [], list, repo),
        (("update",), [a, "--priority", "0", "--append-notes", "n"], dict, repo),
        (("label", "add"), [a, "y", "z"], dict, repo),
        (("label", "rm"), [a, "z"], dict, repo),
        (("comment",), [a, "a comment"], dict, repo),
        (("dep", "add"), [c, a, "-t", "related"], dict, repo),
        (("dep", "rm"), [c, a], list, repo),
        (("dep", "tree"), [c], dict, repo),
        (("dep", "cycles"), [], list, repo),
        (("close",), [a, "-r", "done"], dict, repo),
        (("reopen",), [a], dict, repo),
        (("log",), ["-n", "3"], list, repo),
        (("verify",), [], dict, repo),
        (("audit", "anchor"), [], dict, repo),
        (("stats",), [], dict, repo),
        (("import",), [str(plan)], dict, repo),
        (("import",), [str(beads), "--format", "beads"], dict, repo),
        (("export",), [], list, repo),
        (("export",), ["--format", "json"], list, repo),
        (("export",), ["-o", str(out_file)], dict, repo),
        (("pause",), [], dict, repo),
        (("resume",), [], dict, repo),
        (("agents",), [], dict, repo),
        (("sync",), [], dict, repo),
        (("status",), [], dict, repo),
        (("ledger", "remake"), [], dict, repo),
        (("run",), ["--agent-cmd", "true", "--quiet"], dict, fresh),
        (("template", "list"), [], list, repo),
        (("template", "show"), ["ask"], dict, repo),
        *research_calls(tmp_path, fresh),
        (("formula", "list"), [], list, repo),
        (("formula", "show"), ["two"], dict, repo),
        (("pour",), ["two", "--var", "x=1", "--dry-run"], dict, repo),
        (("orders", "list"), [], list, repo),
        (("orders", "fire"), ["byhand"], dict, repo),
        *review_calls(repo),
    ]
    covered = {path for path, *_ in calls}
    # the last: the fresh repository's ledger moves to PostgreSQL (without a server here,
    # not: its own tests say so)
    with contextlib.suppress(pytest.skip.Exception):
        calls.append((("ledger", "migrate"), ["--to", pg_helpers.new_database()], dict, fresh))
    covered.add(("ledger", "migrate"))
    missing = set(LEAVES) - covered - SERVERS
    assert not missing, f"add a --json case here for: {sorted(missing)}"
    for path, args, kind, cwd in calls:
        result = cli(*path, *args, "--json", cwd=cwd)
        assert result.exit_code == 0, (path, result.stderr, result.exception)
        data = result.json()
        assert isinstance(data, kind), (path, data)
        assert result.stderr == "", (path, result.stderr)
    # a few shapes in detail
    assert cli("show", b, "--json", cwd=repo).json()["dependencies"][0]["depends_on_id"] == a
    updated = cli("show", a, "--json", cwd=repo).json()
    assert (updated["priority"], updated["notes"], updated["labels"]) == (0, "n", ["x", "y"])
    assert [t["id"] for t in cli("ready", "--json", cwd=repo).json()][:1] == [a]
    blocked = cli("blocked", "--json", cwd=repo).json()
    assert {t["id"]: t["blocked_by"] for t in blocked}[b] == [a]
    assert {r["id"] for r in cli("export", "--json", cwd=repo).json()} >= {a, b, c, "bd-1"}
    assert out_file.read_text(encoding="utf-8").count("\n") >= 5
    two = cli("close", a, b, "--json", cwd=repo).ok().json()
    assert isinstance(two, list) and [t["id"] for t in two] == [a, b]
    assert isinstance(cli("reopen", a, b, "--json", cwd=repo).ok().json(), list)


def research_calls(tmp_path: Path, repo: Path) -> list[tuple[tuple[str, ...], list[str], type, Path]]:
    """``taskmill research ...`` with a research whose one experiment crashes (no agent
    installed) and a contribution that is kept."""
    config = tmp_path / "research-cli.toml"
    config.write_text('branch = "research/cli"\nmetric = "test -f better.txt && echo metric: 1'
                      ' || echo metric: 2"\nagent = "claude"\nbaseline_runs = 1\n'
                      'verify_runs = 1\nstop = { experiments = 1 }\n', encoding="utf-8")
    (tmp_path / "program.md").write_text("Improve it.\n", encoding="utf-8")
    patch = tmp_path / "better.patch"
    patch.write_text("diff --git a/better.txt b/better.txt\nnew file mode 100644\n"
                     "--- /dev/null\n+++ b/better.txt\n@@ -0,0 +1 @@\n+yes\n", encoding="utf-8")
    given = ["--config", str(config)]
    return [(("research", "init"), [], dict, repo),
            (("research", "run"), given, dict, repo),
            (("research", "status"), given, dict, repo),
            (("research", "submit"), [str(patch), *given], dict, repo),
            (("research", "log"), given, list, repo)]


def review_calls(repo: Path) -> list[tuple[tuple[str, ...], list[str], type, Path]]:
    """``taskmill review ...``, ``approve`` and ``reject`` with a reviewer that finds nothing,
    a finding to dismiss and two tasks awaiting approval."""
    import sys

    from taskmill.ledger import Ledger
    from taskmill.review.approval import request_approval
    from taskmill.review.book import record_review
    from taskmill.review.findings import BlockAt, Finding

    answer = 'print(\'{"findings": []}\')'
    config = repo / ".taskmill" / "config.toml"
    config.write_text(config.read_text(encoding="utf-8") + "\n[agents.reviewer]\n"
                      f'adapter = "exec"\ncommand = {json.dumps([sys.executable, "-c", answer])}\n',
                      encoding="utf-8")
    (repo / "change.txt").write_text("a change\n", encoding="utf-8")
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "a change"], check=True)
    with Ledger.open(repo / ".taskmill" / "taskmill.db", prefix="tm", actor="tester") as led:
        waiting = [led.create(f"awaiting {n}").id for n in (1, 2)]
        for tid in waiting:
            request_approval(led, tid, commit="0" * 40, attempt=None, actor="mill:r")
        verdict = record_review(
            led, subject=waiting[0], task_id=waiting[0], reviewer="reviewer", repo="repo",
            commit="c", found=[Finding(file="a.py", line_start=1, line_end=1,
                                       severity="nit", confidence=0.5, title="t",
                                       explanation="e")],
            block_at=BlockAt(), min_confidence=0.0, changed_since=lambda old: {},
            actor="mill:r")
    return [(("review", "list"), [], list, repo),
            (("review", "stats"), [], dict, repo),
            (("review", "approvals"), [], list, repo),
            (("review", "dismiss"), [verdict.comments[0].id, "-m", "wrong"], dict, repo),
            (("review", "range"), ["HEAD"], dict, repo),
            (("review", "eval"), ["humanize", "--limit", "1"], dict, repo),
            (("approve",), [waiting[0]], dict, repo),
            (("reject",), [waiting[1], "-m", "not like this"], dict, repo)]


def test_human_output_of_every_command(cli: Cli, repo: Path) -> None:
    a = make(cli, repo, "first")
    b = make(cli, repo, "second", "--after", a)
    for args in (["show", b], ["list"], ["ready"], ["blocked"], ["dep", "tree", b],
                 ["dep", "tree", a, "--reverse"], ["dep", "cycles"], ["log"], ["log", a],
                 ["verify"], ["stats"], ["comment", a, "hello"], ["label", "add", a, "q"],
                 ["label", "rm", a, "q"], ["update", a, "--title", "renamed"],
                 ["close", a], ["reopen", a], ["add", "via alias"]):
        result = cli(*args, cwd=repo).ok()
        assert result.stdout.strip(), args
        with pytest.raises(json.JSONDecodeError):
            json.loads(result.stdout)
    assert "renamed" in cli("show", a, cwd=repo).ok().stdout


# -- behaviour through the command -------------------------------------------------------


def test_update_claim_and_append_notes(cli: Cli, repo: Path) -> None:
    a = make(cli, repo, "first", "--notes", "one")
    appended = cli("update", a, "--append-notes", "two", "--json", cwd=repo).ok().json()
    assert appended["notes"] == "one\ntwo"
    claimed = cli("--actor", "agent-7", "update", a, "--claim", "--json", cwd=repo).ok().json()
    assert (claimed["status"], claimed["assignee"]) == ("in_progress", "agent-7")
    again = cli("update", a, "--claim", "--json", cwd=repo)
    assert again.exit_code == 4 and again.error()["code"] == "claim_conflict"
    b = make(cli, repo, "second")
    both = cli("update", b, "--claim", "-a", "bo", "-p", "0", "--json", cwd=repo).ok().json()
    assert (both["assignee"], both["priority"], both["status"]) == ("bo", 0, "in_progress")
    nothing = cli("update", a, cwd=repo)
    assert nothing.exit_code == 2 and "nothing to change" in nothing.stderr


def test_create_inside_an_agent_records_where_it_was_found(cli: Cli, repo: Path) -> None:
    parent = make(cli, repo, "being worked")
    found = cli("create", "found along the way", "--json", cwd=repo,
                env={"TASKMILL_TASK_ID": parent}).ok().json()["id"]
    deps = cli("show", found, "--json", cwd=repo).json()["dependencies"]
    assert [(d["depends_on_id"], d["type"]) for d in deps] == [(parent, "discovered-from")]


def test_actor_from_environment_and_option(cli: Cli, repo: Path) -> None:
    a = make(cli, repo, "x")
    cli("comment", a, "from env", cwd=repo, env={"TASKMILL_ACTOR": "robot"}).ok()
    cli("--actor", "person", "close", a, cwd=repo).ok()
    log = cli("log", a, "--json", cwd=repo).ok().json()
    assert [e["actor"] for e in log] == ["tester", "robot", "person"]


# -- errors ------------------------------------------------------------------------------


def error_of(result: CliResult, exit_code: int, code: str) -> dict[str, Any]:
    assert result.exit_code == exit_code, (result.args, result.exit_code, result.stderr,
                                           result.exception)
    assert result.stdout == ""
    error = result.error()
    assert error["code"] == code, error
    assert error["message"]
    return error


def test_error_json_and_exit_codes(cli: Cli, repo: Path, tmp_path: Path) -> None:
    a = make(cli, repo, "first", "--id", "tm-aaa1")
    b = make(cli, repo, "second", "--id", "tm-aaa2", "--after", a)

    def run(*args: str) -> CliResult:
        return cli(*args, "--json", cwd=repo)

    # 3: not found
    for args in (["show", "tm-zzz"], ["update", "tm-zzz", "-p", "1"], ["close", "tm-zzz"],
                 ["reopen", "tm-zzz"], ["comment", "tm-zzz", "hi"], ["dep", "add", a, "tm-zzz"],
                 ["dep", "rm", b, "tm-zzz"], ["dep", "rm", a, b], ["dep", "tree", "tm-zzz"],
                 ["label", "add", "tm-zzz", "l"], ["label", "rm", a, "nope"], ["log", "tm-zzz"],
                 ["list", "--parent", "tm-zzz"]):
        error_of(run(*args), 3, "not_found")
    # 4: conflict
    cli("close", a, cwd=repo).ok()
    for args in (["close", a], ["dep", "add", b, a], ["create", "dup", "--id", a]):
        error_of(run(*args), 4, "conflict")
    cli("reopen", a, cwd=repo).ok()
    error_of(run("reopen", a), 4, "conflict")
    error_of(run("update", b, "--claim"), 4, "claim_conflict")
    # 2: bad input
    cycle = error_of(run("dep", "add", a, b), 2, "cycle")
    assert cycle["cycle"] == [a, b, a]
    for args in (["show", "tm-aaa"], ["create", "   "], ["create", "x", "--metadata", "[1"],
                 ["create", "x", "--metadata", "[1]"], ["import", str(tmp_path / "none.toml")],
                 ["label", "add", a, " "], ["comment", a, " "]):
        error_of(run(*args), 2, "invalid")
    hint = error_of(run("show", "tm-zzz"), 3, "not_found")
    assert "hint" in hint
    # without --json: a plain message on stderr, same exit code
    human = cli("show", "tm-zzz", cwd=repo)
    assert human.exit_code == 3 and human.stderr.startswith("error: no task")
    assert "hint:" in human.stderr and human.stdout == ""
    # nothing above changed the ledger beyond the two tasks and the close/reopen
    assert cli("verify", "--json", cwd=repo).ok().json()["events"] == 5


@pytest.mark.parametrize("args", [
    ["update", "tm-x", "--priority", "9"],
    ["show"],
    ["dep", "add", "tm-x", "tm-y", "-t", "nonsense"],
    ["list", "--bogus-option"],
])
def test_usage_errors_exit_2(cli: Cli, repo: Path, args: list[str]) -> None:
    result = cli(*args, cwd=repo)
    assert result.exit_code == 2
    assert "Usage:" in result.stderr or "Error:" in result.stderr


@pytest.mark.parametrize("args", [
    ["update", "tm-x", "--priority", "9"],
    ["show"],
    ["dep", "add", "tm-x", "tm-y", "-t", "nonsense"],
    ["list", "--bogus-option"],
    ["update", "tm-x"],
    ["frobnicate"],
])
def test_usage_errors_with_json_are_json(cli: Cli, repo: Path, args: list[str]) -> None:
    result = cli(*args, "--json", cwd=repo)
    error_of(result, 2, "invalid")


# -- the installed command ---------------------------------------------------------------


def test_the_console_script_and_python_dash_m(tmp_path: Path, taskmill_repo: Path) -> None:
    script = Path(sys.executable).with_name("taskmill")
    assert script.is_file(), "the taskmill console script is not installed in the venv"
    env = os.environ.copy()
    help_out = subprocess.run([str(script), "--help"], cwd=tmp_path, capture_output=True,
                              text=True, check=True, env=env)
    assert "Usage: taskmill" in help_out.stdout
    made = subprocess.run([sys.executable, "-m", "taskmill", "create", "via -m", "--json"],
                          cwd=taskmill_repo, capture_output=True, text=True, env=env, check=False)
    assert made.returncode == 0, made.stderr
    missing = subprocess.run([str(script), "show", "tm-nope", "--json"], cwd=taskmill_repo,
                             capture_output=True, text=True, env=env, check=False)
    assert missing.returncode == 3
    assert json.loads(missing.stderr)["error"]["code"] == "not_found"


def test_main_takes_argv_env_and_cwd(taskmill_repo: Path, capsys: pytest.CaptureFixture[str],
                                     tmp_path: Path) -> None:
    from taskmill.cli import main

    with pytest.raises(SystemExit) as info:
        main(["create", "through main", "--json"], env=dict(os.environ), cwd=taskmill_repo)
    assert info.value.code == 0
    assert json.loads(capsys.readouterr().out)["title"] == "through main"
    with pytest.raises(SystemExit) as info:
        main(["list", "--json"], env={}, cwd=tmp_path)
    assert info.value.code == 2
    assert json.loads(capsys.readouterr().err)["error"]["code"] == "not_a_repository"
    assert invoke_cli(["list", "--json"], cwd=taskmill_repo).ok().json()[0]["title"] == (
        "through main")


def test_beads_compat_flag_config_and_import_cycles(cli: Cli, repo: Path, tmp_path: Path) -> None:
    def rec(tid: str, *deps: tuple[str, str], **fields: Any) -> str:
        record = {"id": tid, "title": tid, "status": "open", "priority": 2,
                  "issue_type": "task", "created_at": "2025-01-01T00:00:00Z",
                  "updated_at": "2025-01-01T00:00:00Z", **fields}
        if deps:
            record["dependencies"] = [{"issue_id": tid, "depends_on_id": b, "type": t}
                                      for b, t in deps]
        return json.dumps(record) + "\n"

    beads = tmp_path / "issues.jsonl"
    beads.write_text("".join([
        rec("x-agent", issue_type="agent"), rec("x-parent", status="deferred"),
        rec("x-kid", ("x-parent", "parent-child")), rec("x-marked", status="blocked"),
        rec("x-a", ("x-b", "blocks")), rec("x-b", ("x-a", "blocks"))]), encoding="utf-8")
    text = cli("import", str(beads), cwd=repo).ok().stdout
    assert "dependency cycle x-a -> x-b -> x-a" in text and "taskmill dep rm x-a x-b" in text
    report = cli("import", str(beads), "--json", cwd=repo).ok().json()
    assert report["cycles"] == [["x-a", "x-b", "x-a"]]

    def ids(*args: str) -> set[str]:
        return {t["id"] for t in cli(*args, "--json", cwd=repo).ok().json()}

    assert ids("ready") == set()
    assert ids("ready", "--beads-compat") == {"x-kid"}
    assert ids("blocked") == {"x-kid", "x-marked", "x-a", "x-b"}
    assert ids("blocked", "--beads-compat") == {"x-a", "x-b"}
    cycle = {b["id"]: b["reasons"] for b in cli("blocked", "--json", cwd=repo).ok().json()}
    assert cycle["x-a"] == ["in a dependency cycle: x-a -> x-b -> x-a"]
    config = repo / ".taskmill" / "config.toml"
    config.write_text(config.read_text(encoding="utf-8") + "\n[ledger]\nbeads_compat = true\n",
                      encoding="utf-8")
    assert ids("ready") == {"x-kid"}
    assert ids("blocked") == {"x-a", "x-b"}
    config.write_text(config.read_text(encoding="utf-8").replace("beads_compat = true",
                                                                 "beads_compat = 1"),
                      encoding="utf-8")
    bad = cli("ready", cwd=repo)
    assert bad.exit_code != 0 and "[ledger]" in bad.stderr and "beads_compat" in bad.stderr
