"""``taskmill mcp``: the ledger over the Model Context Protocol, and its registration with agents.

The server tests start ``python -m taskmill mcp`` as a subprocess and talk to it with the
official SDK's stdio client (``initialize`` handshake, as the agent CLIs do). The adapter
tests read the configuration each adapter writes with ``mcp = true``; one of them starts the
server exactly as that configuration says, with a clean PATH, from outside the repository.
The ``agents`` tests run each installed agent CLI through its adapter with ``mcp = true``
against the scripted fake model: Claude Code, Gemini CLI and opencode call ``create`` (the
new task is linked discovered-from the worked task); Codex announces the server's tools.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp_types import CallToolResult, TextContent

from taskmill.agents.base import AgentConfig, TurnRequest
from taskmill.agents.claude import ClaudeAdapter
from taskmill.agents.codex import CodexAdapter
from taskmill.agents.gemini import GeminiAdapter
from taskmill.agents.opencode import OpencodeAdapter

SERVER = [sys.executable, "-m", "taskmill", "mcp"]
WORKER_TOOLS = {"ready", "list", "show", "create", "update_notes", "comment", "add_dependency",
                "dismiss_finding"}
CALL_TIMEOUT = 60.0


# -- talking to the server -------------------------------------------------------------------


@asynccontextmanager
async def connect(command: list[str], *, cwd: Path, env: Mapping[str, str],
                  errlog: Path) -> AsyncIterator[ClientSession]:
    """An initialised client session with a server subprocess (stopped on exit)."""
    params = StdioServerParameters(command=command[0], args=command[1:], cwd=cwd, env=dict(env))
    with errlog.open("a", encoding="utf-8") as err:
        async with stdio_client(params, errlog=err) as (read, write), \
                ClientSession(read, write, read_timeout_seconds=CALL_TIMEOUT) as session:
            await session.initialize()
            yield session


def run_session(command: list[str], *, cwd: Path, env: Mapping[str, str], errlog: Path,
                scenario: Callable[[ClientSession], Awaitable[None]]) -> None:
    async def main() -> None:
        with anyio.fail_after(120):
            async with connect(command, cwd=cwd, env=env, errlog=errlog) as session:
                await scenario(session)

    try:
        anyio.run(main)
    except BaseException:
        sys.stderr.write(f"server stderr:\n{errlog.read_text(encoding='utf-8')[-4000:]}\n")
        raise


def text(result: CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, TextContent))


async def call(session: ClientSession, name: str, **arguments: Any) -> Any:
    """Call a tool that must succeed; its JSON answer."""
    result = await session.call_tool(name, arguments)
    assert not result.is_error, f"{name}({arguments}) failed: {text(result)}"
    return json.loads(text(result))


async def call_error(session: ClientSession, name: str, **arguments: Any) -> str:
    """Call a tool that must fail; the error text."""
    result = await session.call_tool(name, arguments)
    assert result.is_error, f"{name}({arguments}) should have failed: {text(result)}"
    return text(result)


def server_env(**extra: str) -> dict[str, str]:
    """The (isolated) test environment plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKMILL_")}
    env.update(extra)
    return env


def create_task(cli: Callable[..., Any], repo: Path, title: str) -> str:
    task_id: str = cli("create", title, "--json", cwd=repo).ok().json()["id"]
    return task_id


def deps(task: Mapping[str, Any]) -> set[tuple[str, str]]:
    return {(d["depends_on_id"], d["type"]) for d in task["dependencies"]}


# -- the server --------------------------------------------------------------------------------


def test_tools_inside_a_mill_worktree(taskmill_repo: Path, cli: Callable[..., Any],
                                      tmp_path: Path) -> None:
    current = create_task(cli, taskmill_repo, "The task being worked")
    other = create_task(cli, taskmill_repo, "Another task")
    env = server_env(TASKMILL_TASK_ID=current, TASKMILL_ACTOR=f"agent:test/{current}")
    created: dict[str, str] = {}

    async def scenario(session: ClientSession) -> None:
        listed = await session.list_tools()
        names = {t.name for t in listed.tools}
        assert names == WORKER_TOOLS, names
        assert "close" not in names

        task = await call(session, "create", title="Found a flaky test",
                          description="test_x fails one run in ten", priority=1,
                          labels=["bug", "tests"], checks=["pytest -q tests/test_x.py"],
                          after=[other], issue_type="bug")
        created["id"] = task["id"]
        assert task["title"] == "Found a flaky test" and task["priority"] == 1
        assert task["labels"] == ["bug", "tests"] and task["issue_type"] == "bug"
        assert task["checks"] == ["pytest -q tests/test_x.py"]
        assert deps(task) == {(current, "discovered-from"), (other, "blocks")}

        shown = await call(session, "show", task_id=current)
        assert shown["id"] == current
        assert (task["id"], "discovered-from") in {
            (d["issue_id"], d["type"]) for d in shown["dependents"]}

        ready = [t["id"] for t in await call(session, "ready", limit=10)]
        assert current in ready and other in ready and task["id"] not in ready
        assert len(await call(session, "ready", limit=1)) == 1

        note = await call(session, "comment", text="Tests pass locally.")
        assert note["issue_id"] == current and note["text"] == "Tests pass locally."
        note = await call(session, "comment", task_id=other, text="Seen from the worker.")
        assert note["issue_id"] == other

        assert (await call(session, "update_notes", text="step one"))["notes"] == "step one"
        updated = await call(session, "update_notes", text="step two", task_id=current)
        assert updated["notes"] == "step one\nstep two"
        replaced = await call(session, "update_notes", text="fresh", mode="replace")
        assert replaced["notes"] == "fresh"

        dep = await call(session, "add_dependency", task_id=other, depends_on=current,
                         type="related")
        assert (dep["issue_id"], dep["depends_on_id"], dep["type"]) == (other, current, "related")

        listed_open = await call(session, "list", status=["open"])
        assert {current, other, task["id"]} <= {t["id"] for t in listed_open}
        assert [t["id"] for t in await call(session, "list", label="bug")] == [task["id"]]

        missing = await call_error(session, "show", task_id="tm-nope")
        assert "tm-nope" in missing and "not_found" in missing
        missing = await call_error(session, "add_dependency", task_id=task["id"],
                                   depends_on="tm-nope")
        assert "tm-nope" in missing
        cycle = await call_error(session, "add_dependency", task_id=other,
                                 depends_on=task["id"])
        assert "cycle" in cycle
        assert "close" in await call_error(session, "close", task_id=current)

    run_session(SERVER, cwd=taskmill_repo, env=env, errlog=tmp_path / "server.log",
                scenario=scenario)

    # the ledger itself, read through the CLI
    task = cli("show", created["id"], "--json", cwd=taskmill_repo).ok().json()
    assert deps(task) == {(current, "discovered-from"), (other, "blocks")}
    assert {d["created_by"] for d in task["dependencies"]} == {f"agent:test/{current}"}
    worked = cli("show", current, "--json", cwd=taskmill_repo).ok().json()
    assert worked["notes"] == "fresh" and worked["status"] == "open"
    assert [c["text"] for c in worked["comments"]] == ["Tests pass locally."]


def test_tools_outside_a_worktree(taskmill_repo: Path, cli: Callable[..., Any],
                                  tmp_path: Path) -> None:
    first = create_task(cli, taskmill_repo, "First")
    subdir = taskmill_repo / "src"
    subdir.mkdir()
    created: dict[str, str] = {}

    async def scenario(session: ClientSession) -> None:
        names = {t.name for t in (await session.list_tools()).tools}
        assert names == WORKER_TOOLS | {"close"}
        task = await call(session, "create", title="Plain task", parent=first)
        created["id"] = task["id"]
        assert deps(task) == {(first, "parent-child")}
        error = await call_error(session, "comment", text="no task given")
        assert "task_id" in error
        error = await call_error(session, "create", title="Bad", priority=9)
        assert "priority" in error
        closed = await call(session, "close", task_id=task["id"], reason="not needed")
        assert closed["status"] == "closed" and closed["close_reason"] == "not needed"
        error = await call_error(session, "close", task_id=task["id"])
        assert "already closed" in error and "conflict" in error

    run_session(SERVER, cwd=subdir, env=server_env(), errlog=tmp_path / "server.log",
                scenario=scenario)
    assert cli("show", created["id"], "--json", cwd=taskmill_repo).ok().json()["status"] == "closed"


def test_mcp_without_a_ledger_fails_at_once(git_repo: Path, cli: Callable[..., Any]) -> None:
    result = cli("mcp", "--json", cwd=git_repo)
    assert result.exit_code == 2
    assert result.error()["code"] == "not_initialized"


def test_mcp_is_listed_and_the_sdk_is_not_imported_for_help(
    cli: Callable[..., Any], tmp_path: Path
) -> None:
    assert "mcp" in cli("--help", cwd=tmp_path).ok().stdout
    assert "Model Context Protocol" in cli("mcp", "--help", cwd=tmp_path).ok().stdout
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "taskmill", "--help"],
                          capture_output=True, text=True, check=True, cwd=tmp_path)
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert "click" in imported
    assert not {m for m in imported if m.split(".")[0] in ("mcp", "mcp_types", "pydantic")}


# -- the adapters ------------------------------------------------------------------------------


def make_request(tmp_path: Path, repo: Path, task_id: str = "tm-1") -> TurnRequest:
    state = tmp_path / "state"
    state.mkdir(parents=True, exist_ok=True)
    home = tmp_path / "agent-home"
    home.mkdir(parents=True, exist_ok=True)
    return TurnRequest(
        task_id=task_id, title="A task", iteration=1, prompt="Do the task.", worktree=repo,
        home=home, state_dir=state, prompt_file=state / "prompt.md",
        usage_file=state / "usage.json", log_path=tmp_path / "turn.log",
        parent_env={"PATH": os.environ.get("PATH", os.defpath)},
        taskmill_env={"TASKMILL_TASK_ID": task_id,
                      "TASKMILL_DIR": str(repo / ".taskmill"),
                      "TASKMILL_ACTOR": f"agent:test/{task_id}"},
    )


def assert_registered(command: list[str], env: Mapping[str, str], request: TurnRequest) -> None:
    assert command == SERVER
    assert Path(command[0]).is_absolute()
    for key in ("TASKMILL_TASK_ID", "TASKMILL_DIR"):
        assert env[key] == request.taskmill_env[key]


def claude_server(tmp_path: Path, request: TurnRequest, **options: Any) -> tuple[list[str],
                                                                                  dict[str, Any]]:
    config = AgentConfig(name="claude", adapter="claude", mcp=True, options=options)
    argv = list(ClaudeAdapter().prepare(config, request).argv)
    doc = json.loads(Path(argv[argv.index("--mcp-config") + 1]).read_text(encoding="utf-8"))
    return argv, doc["mcpServers"]["taskmill"]


def test_claude_registers_the_server_and_allows_its_tools(tmp_path: Path) -> None:
    request = make_request(tmp_path, tmp_path / "repo")
    argv, server = claude_server(tmp_path, request)
    assert_registered([server["command"], *server["args"]], server["env"], request)
    assert server["alwaysLoad"] is True  # the first model call waits for the server
    assert argv[argv.index("--mcp-config") + 1].startswith(str(request.state_dir))
    assert "mcp__taskmill" in argv[argv.index("--allowedTools") + 1].split(",")
    argv, _ = claude_server(tmp_path, request, permission_mode="acceptEdits",
                            allowed_tools=["Bash(git:*)"])
    assert argv[argv.index("--allowedTools") + 1] == "Bash(git:*),mcp__taskmill"
    plain = ClaudeAdapter().prepare(AgentConfig(name="c", adapter="claude"), request).argv
    assert "--mcp-config" not in plain and "--allowedTools" not in plain


def test_codex_registers_the_server(tmp_path: Path) -> None:
    request = make_request(tmp_path, tmp_path / "repo")
    config = AgentConfig(name="codex", adapter="codex", mcp=True)
    inv = CodexAdapter().prepare(config, request)
    doc = tomllib.loads((Path(inv.env["CODEX_HOME"]) / "config.toml").read_text("utf-8"))
    server = doc["mcp_servers"]["taskmill"]
    assert_registered([server["command"], *server["args"]], server["env"], request)
    assert server["required"] is True  # the first turn waits for the server


def test_gemini_registers_the_server(tmp_path: Path) -> None:
    request = make_request(tmp_path, tmp_path / "repo")
    config = AgentConfig(name="gemini", adapter="gemini", mcp=True)
    GeminiAdapter().prepare(config, request)
    settings = json.loads((request.home / ".gemini" / "settings.json").read_text("utf-8"))
    server = settings["mcpServers"]["taskmill"]
    assert_registered([server["command"], *server["args"]], server["env"], request)


def test_opencode_registers_the_server(tmp_path: Path) -> None:
    request = make_request(tmp_path, tmp_path / "repo")
    config = AgentConfig(name="opencode", adapter="opencode", mcp=True)
    inv = OpencodeAdapter().prepare(config, request)
    doc = json.loads(Path(inv.env["OPENCODE_CONFIG"]).read_text("utf-8"))
    server = doc["mcp"]["taskmill"]
    assert server["type"] == "local" and server["enabled"] is True
    assert server["timeout"] >= 10_000
    assert_registered(server["command"], server["environment"], request)


def test_the_registered_command_serves_with_a_clean_environment(
    taskmill_repo: Path, cli: Callable[..., Any], tmp_path: Path
) -> None:
    """What the agent would start: the written command and env, minimal PATH, another cwd."""
    current = create_task(cli, taskmill_repo, "Worked task")
    request = make_request(tmp_path, taskmill_repo, current)
    _, server = claude_server(tmp_path, request)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(request.home), **server["env"]}

    async def scenario(session: ClientSession) -> None:
        assert {t.name for t in (await session.list_tools()).tools} == WORKER_TOOLS
        task = await call(session, "create", title="Follow-up")
        assert deps(task) == {(current, "discovered-from")}

    run_session([server["command"], *server["args"]], cwd=outside, env=env,
                errlog=tmp_path / "server.log", scenario=scenario)
    tasks = cli("list", "--json", cwd=taskmill_repo).ok().json()
    assert {t["title"] for t in tasks} == {"Worked task", "Follow-up"}


# -- a real agent ------------------------------------------------------------------------------


def code_under_test_mcp() -> list[str]:
    """``taskmill mcp`` of the code under test: agents get a clean environment (no
    PYTHONPATH), so the default command would run whatever taskmill is installed."""
    import taskmill

    src = str(Path(taskmill.__file__).resolve().parents[1])
    return [sys.executable, "-c",
            f"import sys; sys.path.insert(0, {src!r}); from taskmill.cli import main; main()",
            "mcp"]


# name -> (adapter, the name the CLI gives the server's ``create`` tool, base_url suffix, model).
# Codex (0.169) defers MCP tools behind its client-side ``tool_search`` tool, which the scripted
# model cannot call: for Codex the test checks that the server's tools are announced to the
# model ("Deferred tool namespaces: mcp__taskmill: <the server's instructions>") instead.
REAL_AGENTS: dict[str, tuple[Any, str | None, str, str | None]] = {
    "claude": (ClaudeAdapter, "mcp__taskmill__create", "", None),
    "codex": (CodexAdapter, None, "", "gpt-5.5"),
    "gemini": (GeminiAdapter, "mcp_taskmill_create", "", None),
    "opencode": (OpencodeAdapter, "taskmill_create", "/v1", None),
}


@pytest.mark.agents
@pytest.mark.parametrize("name", list(REAL_AGENTS))
def test_real_agent_uses_the_mcp_server(
    name: str, taskmill_repo: Path, cli: Callable[..., Any], tmp_path: Path
) -> None:
    """The agent CLI, configured by its adapter with ``mcp = true``, calls ``create``: as
    in the mill, the server reaches the ledger only through the turn's capability socket."""
    from taskmill.agents.runner import run_turn
    from taskmill.capability.server import CapabilityServer
    from taskmill.ledger import Ledger
    from taskmill.testing import agent_install
    from taskmill.testing.fake_model import FakeModelServer

    binary = agent_install.find_agent(name)
    if binary is None:
        pytest.skip(f"{name} is not installed: `python -m taskmill.testing.agent_install {name}`")
    adapter, tool, suffix, model = REAL_AGENTS[name]
    current = create_task(cli, taskmill_repo, "Worked task")
    title = f"Follow-up found by {name}"
    replies: list[dict[str, Any]] = [{"text": "Done."}]
    if tool is not None:
        replies.insert(0, {"text": "Recording a follow-up.", "tool": tool,
                           "args": {"title": title, "priority": 1, "labels": ["found"]}})
    path = os.pathsep.join([str(binary.parent), os.environ.get("PATH", os.defpath)])
    db = taskmill_repo / ".taskmill" / "taskmill.db"
    capability = CapabilityServer(tmp_path / "cap", lambda: Ledger.open(db, prefix="tm"))
    capability.start()
    socket_path = capability.register(current, name)
    request = make_request(tmp_path, taskmill_repo, current)
    turn_env = {k: v for k, v in request.taskmill_env.items() if k != "TASKMILL_DIR"}
    request = replace(request, parent_env={"PATH": path}, timeout_s=180.0,
                      taskmill_env={**turn_env, "TASKMILL_SOCKET": str(socket_path)},
                      capability_socket=socket_path)
    with contextlib.ExitStack() as stack:
        stack.callback(capability.stop)
        server = stack.enter_context(FakeModelServer({"turn": [{"reply": replies}]},
                         log_path=tmp_path / "requests.ndjson"))
        config = AgentConfig(name=name, adapter=name, mcp=True, base_url=server.url + suffix,
                             model=model, api_key_env="FAKE_KEY", command=(str(binary),),
                             # run_turn alone: no sandbox, so as root Claude Code needs
                             # IS_SANDBOX=1 (taskmill sets it only for sandboxed turns)
                             env={"FAKE_KEY": "sk-fake",
                                  **({"IS_SANDBOX": "1"} if name == "claude"
                                     and os.geteuid() == 0 else {})},
                             options={"mcp_command": code_under_test_mcp()})
        result = run_turn(adapter(), config, request)
        offered = [e["served"]["tools"] for e in server.requests if e["served"].get("tools")]
        bodies = [json.dumps(e["body"]) for e in server.model_requests("script")]
    log = request.log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
    stderr = Path(f"{request.log_path}.stderr")
    err = stderr.read_text(encoding="utf-8", errors="replace")[-3000:] if stderr.exists() else ""
    report = f"exit {result.exit_code}\noffered tools: {offered[:1]}\nlog:\n{log}\nstderr:\n{err}"
    assert result.ok, report
    if tool is None:
        assert any(f"mcp__taskmill: taskmill's work ledger. You are working task {current}" in b
                   for b in bodies), report
        return
    tasks = cli("list", "--json", cwd=taskmill_repo).ok().json()
    found = [t for t in tasks if t["title"] == title]
    assert len(found) == 1, report
    task = cli("show", found[0]["id"], "--json", cwd=taskmill_repo).ok().json()
    assert deps(task) == {(current, "discovered-from")}
    assert task["priority"] == 1 and task["labels"] == ["found"]
    assert task["dependencies"][0]["created_by"] == f"agent:{name}/{current}"


def test_tool_schemas_come_from_the_model(taskmill_repo: Path) -> None:
    """The statuses, dependency types and limits in the tools' input schemas are the model's
    and the ledger's own (the web API's TaskChanges says the same)."""
    from taskmill.mcp_server import build_server
    from taskmill.model import DEP_TYPES, STATUSES
    from taskmill.validation import CHECKS_MAX, PRIORITY_MAX, PRIORITY_MIN, TITLE_MAX
    from taskmill.web.openapi import schemas

    server = build_server(taskmill_repo, {"HOME": str(taskmill_repo)})
    tools = {t.name: t.input_schema for t in anyio.run(server.list_tools)}
    status = tools["list"]["properties"]["status"]["anyOf"][0]["items"]
    assert tuple(status["enum"]) == STATUSES
    assert tuple(tools["add_dependency"]["properties"]["type"]["enum"]) == DEP_TYPES
    create = tools["create"]["properties"]
    assert (create["priority"]["minimum"], create["priority"]["maximum"]) == (PRIORITY_MIN,
                                                                              PRIORITY_MAX)
    assert create["title"]["maxLength"] == TITLE_MAX
    assert create["checks"]["anyOf"][0]["maxItems"] == CHECKS_MAX
    changes = schemas()["TaskChanges"]["properties"]
    assert tuple(changes["status"]["enum"]) == STATUSES
    assert {k: changes["priority"][k] for k in ("type", "minimum", "maximum")} == {
        k: create["priority"][k] for k in ("type", "minimum", "maximum")}
