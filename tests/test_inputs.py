"""Bad input is refused where the ledger is written, whoever writes it: wrong types, values
too large, control characters in one-line fields, ids that do not all resolve. The CLI, the
web API (4xx with the error shape, never 500), the MCP server (a tool error) and the Beads
import (an error naming the line) all get the same checks; what is stored is escaped when
printed to a terminal."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.client.session import ClientSession
from starlette.testclient import TestClient

from conftest import CliResult
from taskmill.beads import import_beads
from taskmill.clock import SystemClock
from taskmill.errors import Conflict, InvalidInput, NotFound
from taskmill.ledger import Ledger
from taskmill.validation import COMMENT_MAX_BYTES, LIMIT_MAX, TEXT_MAX_BYTES, TITLE_MAX
from taskmill.web.app import create_app
from test_mcp import SERVER, call, call_error, run_session, server_env

Cli = Callable[..., CliResult]


def counts(ledger: Ledger) -> tuple[int, ...]:
    return tuple(ledger.store.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                 for table in ("tasks", "deps", "labels", "comments", "events"))


# -- the ledger ------------------------------------------------------------------------------


@pytest.mark.parametrize("title", ["red \x1b[31malert\x1b[0m", "nul\x00byte", "two\nlines",
                                   "bell\x07", "csi \x9b2J", "sep\u2028arator"])
def test_control_characters_refused_in_one_line_fields(ledger: Ledger, title: str) -> None:
    task = ledger.create("fine")
    before = counts(ledger)
    with pytest.raises(InvalidInput, match="control character"):
        ledger.create(title)
    with pytest.raises(InvalidInput, match="control character"):
        ledger.update(task.id, {"title": title})
    with pytest.raises(InvalidInput, match="control character"):
        ledger.create("ok", labels=["good", title])
    with pytest.raises(InvalidInput, match="control character"):
        ledger.add_labels(task.id, [title])
    with pytest.raises(InvalidInput, match="control character"):
        ledger.update(task.id, {"assignee": title})
    with pytest.raises(InvalidInput, match="control character"):
        ledger.claim(task.id, title)
    assert counts(ledger) == before
    # multi-line fields keep line breaks and tabs; only NUL is refused there
    assert ledger.update(task.id, {"description": "a\n\tb \x1b[1m"}).description == "a\n\tb \x1b[1m"
    with pytest.raises(InvalidInput, match="NUL"):
        ledger.comment(task.id, "a\x00b")


def test_half_a_surrogate_pair_is_refused_as_not_text(ledger: Ledger) -> None:
    """A lone ``\\ud800`` (from JSON) or a non-UTF-8 argument (read as ``\\udcff``) is no
    text SQLite can store: refused with the field's name, not a UnicodeEncodeError."""
    task = ledger.create("fine")
    before = counts(ledger)
    for bad in ("x\ud800", "bad \udcff arg"):
        writes: list[tuple[Callable[..., Any], tuple[Any, ...]]] = [
            (ledger.create, (bad,)), (ledger.update, (task.id, {"title": bad})),
            (ledger.update, (task.id, {"description": bad})), (ledger.comment, (task.id, bad)),
            (ledger.add_labels, (task.id, [bad])),
            (ledger.update, (task.id, {"metadata": {"k": [bad]}}))]
        for write, args in writes:
            with pytest.raises(InvalidInput, match="surrogate pair"):
                write(*args)
        with pytest.raises(InvalidInput, match="not a task id"):
            ledger.get(bad)
        with pytest.raises(InvalidInput, match="label is not valid text"):
            ledger.list_tasks(label=bad)
    assert counts(ledger) == before
    assert ledger.create("emoji \U0001f600").title == "emoji \U0001f600"  # a whole pair is


def test_cli_non_utf8_arguments_are_clear_errors(taskmill_repo: Path) -> None:
    import subprocess
    import sys

    made = subprocess.run([sys.executable, "-m", "taskmill", "create", "fine", "--json"],
                          cwd=taskmill_repo, capture_output=True, text=True, check=True)
    tid = json.loads(made.stdout)["id"]
    for argv in (["create", b"bad \xff title"], ["show", b"tm-\xff"],
                 ["list", "--label", b"\xff"], ["update", tid, "--notes", b"\xff"],
                 ["comment", tid, b"\xff"]):
        proc = subprocess.run([sys.executable, "-m", "taskmill", *argv], cwd=taskmill_repo,
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 2, (argv, proc.stderr)
        assert "Traceback" not in proc.stderr and "error:" in proc.stderr, proc.stderr


@pytest.mark.parametrize("changes", [
    {"assignee": {"name": "x"}}, {"assignee": ["x"]}, {"title": 5}, {"description": None},
    {"agent": 3}, {"external_ref": {"a": 1}}, {"issue_type": ""}, {"close_reason": []},
    {"notes": b"bytes"}, {"metadata": [1]}, {"checks": "pytest"},
])
def test_wrong_types_are_invalid_input_not_database_errors(ledger: Ledger,
                                                           changes: dict[str, Any]) -> None:
    task = ledger.create("x")
    before = counts(ledger)
    with pytest.raises(InvalidInput):
        ledger.update(task.id, changes)
    assert counts(ledger) == before


def test_sizes_are_limited(ledger: Ledger) -> None:
    task = ledger.create("x" * TITLE_MAX)
    before = counts(ledger)
    too_big: list[Callable[[], Any]] = [
        lambda: ledger.create("x" * (TITLE_MAX + 1)),
        lambda: ledger.create("t", description="d" * (TEXT_MAX_BYTES + 1)),
        lambda: ledger.update(task.id, {"notes": "é" * (TEXT_MAX_BYTES // 2 + 1)}),
        lambda: ledger.comment(task.id, "c" * (20 * 1024 * 1024)),
        lambda: ledger.comment(task.id, "c" * (COMMENT_MAX_BYTES + 1)),
        lambda: ledger.append_notes(task.id, "n" * (TEXT_MAX_BYTES + 1)),
        lambda: ledger.add_labels(task.id, ["l" * 101]),
        lambda: ledger.update(task.id, {"metadata": {"k": "v" * (64 * 1024)}}),
        lambda: ledger.create("t", checks=["true"] * 101),
    ]
    for fn in too_big:
        with pytest.raises(InvalidInput) as info:
            fn()
        assert "at most" in info.value.message, info.value.message
    deep: Any = {}
    for _ in range(100_000):
        deep = {"k": deep}
    with pytest.raises(InvalidInput, match="levels deep"):
        ledger.update(task.id, {"metadata": deep})
    assert counts(ledger) == before
    # what fits is kept
    ledger.comment(task.id, "c" * COMMENT_MAX_BYTES)
    ledger.update(task.id, {"description": "d" * TEXT_MAX_BYTES})


@pytest.mark.parametrize("limit", [10**23, 1e23, 0, -1, True, "5", LIMIT_MAX + 1])
def test_limits_are_checked(ledger: Ledger, limit: Any) -> None:
    ledger.create("x")
    for fn in (ledger.list_tasks, ledger.ready, ledger.events):
        with pytest.raises(InvalidInput, match="limit must be an integer"):
            fn(limit=limit)


def test_list_filters_must_be_strings(ledger: Ledger) -> None:
    for kwargs in ({"assignee": {"a": 1}}, {"label": ["x"]}, {"issue_type": 3},
                   {"parent": {}}, {"status": [{"a": 1}]}):
        with pytest.raises(InvalidInput):
            ledger.list_tasks(**kwargs)


def test_close_and_reopen_several_are_all_or_nothing(ledger: Ledger) -> None:
    good = ledger.create("good", task_id="tm-good").id
    ledger.create("one", task_id="tm-amb1")
    ledger.create("two", task_id="tm-amb2")
    done = ledger.create("done", task_id="tm-done").id
    ledger.close(done)
    before = counts(ledger)
    with pytest.raises(InvalidInput, match="ambiguous"):
        ledger.close_many([good, "tm-amb"])
    with pytest.raises(NotFound):
        ledger.close_many([good, "tm-nope"])
    with pytest.raises(Conflict, match="already closed"):
        ledger.close_many([good, done])
    assert ledger.get(good).status == "open"
    with pytest.raises(Conflict, match="already open"):
        ledger.reopen_many([done, good])
    assert ledger.get(done).status == "closed"
    assert counts(ledger) == before and ledger.verify().ok
    # the same id twice is closed once
    assert [t.id for t in ledger.close_many([good, "tm-good", "TM-GOOD"])] == [good]
    assert [t.status for t in ledger.reopen_many([good, done])] == ["open", "open"]
    assert ledger.verify().ok


def test_close_children_and_their_epic_together(ledger: Ledger) -> None:
    """Closing the last child closes the epic: naming the epic too is not a conflict."""
    epic = ledger.create("epic", issue_type="epic", task_id="tm-epic").id
    kids = [ledger.create(f"child {i}", parent=epic).id for i in range(2)]
    closed = ledger.close_many([*kids, epic], "done")
    assert [t.status for t in closed] == ["closed"] * 3
    reopened = ledger.reopen_many([kids[0], epic])
    assert [t.status for t in reopened] == ["open", "open"]


# -- the command line ------------------------------------------------------------------------


def test_cli_close_good_and_ambiguous_closes_nothing(cli: Cli, taskmill_repo: Path) -> None:
    repo = taskmill_repo
    good = cli("create", "good", "--id", "tm-good", "--json", cwd=repo).ok().json()["id"]
    for tid in ("tm-amb1", "tm-amb2"):
        cli("create", "x", "--id", tid, cwd=repo).ok()
    result = cli("close", good, "tm-amb", "--json", cwd=repo)
    assert result.exit_code == 2 and result.error()["code"] == "invalid"
    assert "ambiguous" in result.error()["message"]
    assert cli("show", good, "--json", cwd=repo).ok().json()["status"] == "open"
    cli("close", good, cwd=repo).ok()
    result = cli("reopen", good, "tm-amb1", "--json", cwd=repo)  # tm-amb1 is open already
    assert result.exit_code == 4
    assert cli("show", good, "--json", cwd=repo).ok().json()["status"] == "closed"


def test_cli_refuses_control_characters(cli: Cli, taskmill_repo: Path) -> None:
    result = cli("create", "evil \x1b]0;pwned\x07 title", "--json", cwd=taskmill_repo)
    assert result.exit_code == 2 and "control character" in result.error()["message"]
    assert cli("list", "--json", cwd=taskmill_repo).ok().json() == []


def test_list_and_show_escape_what_is_stored(cli: Cli, taskmill_repo: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Older ledgers (and imports) may hold control characters: they are shown escaped, and
    rich markup in stored text is shown as text."""
    monkeypatch.setenv("COLUMNS", "300")
    repo = taskmill_repo
    tid = cli("create", "placeholder", "--json", cwd=repo).ok().json()["id"]
    with Ledger.open(repo / ".taskmill" / "taskmill.db", prefix="tm") as led:
        led.store.conn.execute("UPDATE tasks SET title = ?, description = ?, assignee = ? WHERE id = ?",
                         ("\x1b[2J\x1b[31mred\x00 [bold]x[/bold]", "line 1\nline 2\x1b[0m\r",
                          "bob\x1b[8m", tid))
        led.store.conn.execute("INSERT INTO comments (task_id, author, text, created_at)"
                         " VALUES (?, 'eve\x1b[1m', 'hi\x1b]8;;http://x\x07', 't')", (tid,))
        led.store.conn.execute("INSERT INTO labels (task_id, label) VALUES (?, 'l\x1b')", (tid,))
    for args in (["list"], ["show", tid], ["ready"], ["update", tid, "-p", "1"],
                 ["label", "add", tid, "other"], ["close", tid], ["reopen", tid]):
        out = cli(*args, cwd=repo).ok().stdout
        assert "\x1b" not in out and "\x00" not in out and "\x07" not in out, (args, out)
    listed = cli("list", cwd=repo).ok().stdout
    assert "\\x1b[2J\\x1b[31mred\\x00 [bold]x[/bold]" in listed
    shown = cli("show", tid, cwd=repo).ok().stdout
    assert "line 1\nline 2\\x1b[0m\\r" in shown and "hi\\x1b]8;;http://x\\x07" in shown
    assert "bob\\x1b[8m" in shown and "eve\\x1b[1m" in shown
    # JSON keeps the stored value (JSON escapes control characters itself)
    assert cli("show", tid, "--json", cwd=repo).ok().json()["assignee"] == "bob\x1b[8m"


# -- the web API -----------------------------------------------------------------------------


@pytest.fixture
def api(cli: Cli, taskmill_repo: Path) -> Iterator[tuple[TestClient, str]]:
    tid = cli("create", "a task", "--json", cwd=taskmill_repo).ok().json()["id"]
    app = create_app(taskmill_repo, dict(os.environ), SystemClock())
    # changes need the dashboard's token, on loopback too
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False,
                    headers={"Authorization": f"Bearer {app.state.token}"}) as c:
        yield c, tid


def error_of(resp: httpx.Response, status: int, code: str = "invalid") -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    message: str = body["error"]["message"]
    assert message
    return message


@pytest.mark.parametrize("body", [
    {"assignee": {"name": "x"}}, {"assignee": "a\x00b"}, {"title": "\x1b[31mx"},
    {"priority": "high"}, {"priority": 1e300}, {"metadata": "not an object"},
    {"description": "d" * (TEXT_MAX_BYTES + 1)}, {"checks": [1]}, {"status": "bogus"},
])
def test_web_update_with_bad_values_is_400(api: tuple[TestClient, str],
                                           body: dict[str, Any]) -> None:
    client, tid = api
    error_of(client.patch(f"/api/tasks/{tid}", json=body), 400)
    assert client.get(f"/api/tasks/{tid}").json()["assignee"] is None


def test_web_half_a_surrogate_pair_is_400(api: tuple[TestClient, str]) -> None:
    client, tid = api
    for body in ('{"title": "half \\ud800 a pair"}', '{"description": "\\udfff"}'):
        assert "surrogate pair" in error_of(client.patch(
            f"/api/tasks/{tid}", content=body, headers={"content-type": "application/json"}),
            400)
    assert client.get(f"/api/tasks/{tid}").json()["description"] == ""


@pytest.mark.parametrize("query", [
    "/api/tasks?limit=1e23", "/api/tasks?limit=100000000000000000000000", "/api/tasks?limit=0",
    "/api/tasks?limit=-3", "/api/ready?limit=99999999999999999999", "/api/events?limit=1e23",
    "/api/events?since=100000000000000000000000", "/api/events?since=-1",
    "/api/mill?limit=10000000000000000000000000000000", "/api/tasks?status=bogus",
    "/api/graph?status=bogus", "/api/tasks?limit=" + "9" * 5000,
])
def test_web_bad_query_parameters_are_400(api: tuple[TestClient, str], query: str) -> None:
    client, _ = api
    error_of(client.get(query), 400)


def test_web_comment_too_large_or_malformed(api: tuple[TestClient, str]) -> None:
    client, tid = api
    big = client.post(f"/api/tasks/{tid}/comments", json={"text": "x" * (20 * 1024 * 1024)})
    assert "larger than" in error_of(big, 413, "too_large")
    over = client.post(f"/api/tasks/{tid}/comments", json={"text": "x" * (COMMENT_MAX_BYTES + 1)})
    assert "at most 64 KiB" in error_of(over, 400)
    deep = "[" * 100_000 + "]" * 100_000
    error_of(client.post(f"/api/tasks/{tid}/comments", content=deep,
                         headers={"content-type": "application/json"}), 400)
    error_of(client.post(f"/api/tasks/{tid}/comments", json={"text": "hi", "author": {"a": 1}}),
             400)
    assert client.get(f"/api/tasks/{tid}").json()["comments"] == []
    assert client.post(f"/api/tasks/{tid}/comments", json={"text": "fits"}).status_code == 201


# -- the MCP server --------------------------------------------------------------------------


def test_mcp_tools_refuse_bad_values(taskmill_repo: Path, cli: Cli, tmp_path: Path) -> None:
    tid = cli("create", "a task", "--json", cwd=taskmill_repo).ok().json()["id"]

    async def scenario(session: ClientSession) -> None:
        error = await call_error(session, "comment", task_id=tid,
                                 text="x" * (COMMENT_MAX_BYTES + 1))
        assert "invalid: a comment is" in error and "at most 64 KiB" in error
        error = await call_error(session, "create", title="\x1b[2Jwipe")
        assert "control character" in error
        error = await call_error(session, "create", title="ok", labels=["a\nb"])
        assert "control character" in error
        error = await call_error(session, "update_notes", task_id=tid,
                                 text="n" * (TEXT_MAX_BYTES + 1), mode="replace")
        assert "at most 64 KiB" in error
        assert [t["id"] for t in await call(session, "list")] == [tid]

    run_session(SERVER, cwd=taskmill_repo, env=server_env(), errlog=tmp_path / "server.log",
                scenario=scenario)
    shown = cli("show", tid, "--json", cwd=taskmill_repo).ok().json()
    assert shown["comments"] == [] and shown["notes"] == ""
    assert [t["id"] for t in cli("list", "--json", cwd=taskmill_repo).ok().json()] == [tid]


# -- the Beads import ------------------------------------------------------------------------


def _line(**fields: Any) -> str:
    record = {"id": "bd-1", "title": "ok", "status": "open", "priority": 2,
              "issue_type": "task", "created_at": "2025-01-01T00:00:00Z",
              "updated_at": "2025-01-01T00:00:00Z", **fields}
    return json.dumps(record) + "\n"


@pytest.mark.parametrize(("bad", "fragment"), [
    ('{"id": "bd-9", "metadata": ' + "[" * 100_000 + "]" * 100_000 + "}", "levels deep"),
    ('{"id": "bd-9", "title": "t", "metadata": ' + '{"k":' * 200 + "1" + "}" * 200 + "}",
     "levels deep"),
    (_line(id="bd-9", title="esc \x1b[31m"), "control character"),
    (_line(id="bd-9", title="t" * (TITLE_MAX + 1)), "at most 500"),
    (_line(id="bd-9", description="d" * (TEXT_MAX_BYTES + 1)), "at most 64 KiB"),
    (_line(id="bd-9", comments=[{"id": 1, "author": "a", "text": "c" * (COMMENT_MAX_BYTES + 1),
                                 "created_at": "t"}]), "comment 1 is"),
    (_line(id="bd-9", labels=["\x00"]), "control character"),
    (_line(id="bd-9", assignee="a\nb"), "control character"),
])
def test_beads_bad_lines_are_errors_naming_the_line(tmp_path: Path, bad: str,
                                                    fragment: str) -> None:
    path = tmp_path / "issues.jsonl"
    path.write_text(_line() + bad.rstrip("\n") + "\n", encoding="utf-8")
    ledger = Ledger.memory()
    with pytest.raises(InvalidInput) as info:
        import_beads(ledger, path)
    assert f"{path}, line 2: " in info.value.message and fragment in info.value.message
    assert ledger.list_tasks() == []


def test_beads_line_too_large(tmp_path: Path) -> None:
    path = tmp_path / "issues.jsonl"
    path.write_text(_line() + _line(id="bd-2", notes="n" * (9 * 1024 * 1024)), encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"line 2: the line is 9\.0 MiB; a record may be at"
                                           r" most 8 MiB"):
        import_beads(Ledger.memory(), path)


def test_beads_titles_keep_their_line_breaks(tmp_path: Path) -> None:
    """Real Beads exports hold titles with a line break: they still import (and export)."""
    ledger = Ledger.memory()
    import_beads(ledger, [_line(title="ends with a newline\n")])
    assert ledger.get("bd-1").title == "ends with a newline\n"


def test_cli_beads_import_of_a_deep_line_has_no_traceback(cli: Cli, taskmill_repo: Path,
                                                          tmp_path: Path) -> None:
    path = tmp_path / "deep.jsonl"
    path.write_text(_line() + "[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    result = cli("import", str(path), "--format", "beads", cwd=taskmill_repo)
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert "line 2: the record nests more than" in result.stderr
