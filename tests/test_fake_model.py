"""The scripted fake model server, and the real agent CLIs driven against it.

Unit tests talk to the server with httpx over loopback. The ``agents`` tests run each real
CLI (installed by ``python -m taskmill.testing.agent_install`` into ``.cache/agents``) in a
temporary git repository and check that the file really got written and that the token
figures the server reported come back in the CLI's JSON output.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from taskmill.testing import agent_install
from taskmill.testing.fake_model import (
    FakeModelServer,
    ScriptError,
    ToolSpec,
    build_call,
    find_cwd,
    load_script,
    parse_script,
)
from taskmill.testing.fake_model.script import Reply

WRITE_SCHEMA = {
    "type": "object",
    "properties": {
        "file_path": {"type": "string", "description": "The absolute path to the file"},
        "content": {"type": "string"},
    },
    "required": ["file_path", "content"],
}
BASH_SCHEMA = {
    "type": "object",
    "properties": {"command": {"type": "string"}, "description": {"type": "string"}},
    "required": ["command"],
}
WRITE_THEN_DONE = {
    "turn": [
        {
            "reply": [
                {
                    "tool": "write_file",
                    "path": "calc.py",
                    "content": "def add(a, b):\n    return a + b\n",
                    "usage": {"input_tokens": 1200, "output_tokens": 80},
                },
                {"text": "Done.", "usage": {"input_tokens": 1500, "output_tokens": 9}},
            ]
        }
    ]
}
CWD_SYSTEM = "You are an agent.\nWorking directory: /work/proj\n"


def sse_events(text: str) -> list[tuple[str | None, Any]]:
    """(event name, decoded data) for each server-sent event; ``[DONE]`` stays a string."""
    events: list[tuple[str | None, Any]] = []
    for block in text.strip().split("\n\n"):
        name, data = None, []
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        payload = "\n".join(data)
        events.append((name, payload if payload == "[DONE]" else json.loads(payload)))
    return events


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[Any], FakeModelServer]]:
    """Start a server for a script; every server started is stopped at the end."""
    servers: list[FakeModelServer] = []

    def start(script: Any) -> FakeModelServer:
        server = FakeModelServer(script, log_path=tmp_path / f"log{len(servers)}.ndjson")
        servers.append(server.start())
        return server

    yield start
    for server in servers:
        server.stop()


def anthropic_body(history: list[dict[str, Any]], *, stream: bool = False, **extra: Any) -> Any:
    return {
        "model": "claude-test",
        "max_tokens": 100,
        "system": [{"type": "text", "text": CWD_SYSTEM}],
        "messages": history,
        "tools": [
            {"name": "Write", "input_schema": WRITE_SCHEMA},
            {"name": "Bash", "input_schema": BASH_SCHEMA},
        ],
        "stream": stream,
        **extra,
    }


# -- the script --------------------------------------------------------------------------


def test_script_loads_toml_and_json_alike(tmp_path: Path) -> None:
    toml = tmp_path / "s.toml"
    toml.write_text(
        '[[turn]]\nwhen = "Parse"\n[[turn.reply]]\ntool = "write_file"\npath = "a.py"\n'
        'content = "x = 1\\n"\n[[turn.reply]]\ntext = "Done."\n'
        "usage = { input_tokens = 10, output_tokens = 2 }\n"
        "[[turn.reply]]\nerror = 429\nretry_after = 5\ntimes = 1\n"
        "[[turn.reply]]\nstall = 3\n[[turn.reply]]\ngarbage = true\n",
        encoding="utf-8",
    )
    script = load_script(toml)
    as_json = tmp_path / "s.json"
    as_json.write_text(json.dumps(tomllib_loads(toml.read_text())), encoding="utf-8")
    assert load_script(as_json) == script
    turn = script.turns[0]
    assert turn.when == "Parse"
    assert [r.kind for r in turn.replies] == ["tool", "text", "error", "stall", "garbage"]
    assert turn.replies[1].usage is not None and turn.replies[1].usage.input_tokens == 10
    # a failure with `times` shares its position with the entry after it
    assert [len(p or ()) for p in (turn.position(i) for i in range(4))] == [1, 1, 2, 1]


def tomllib_loads(text: str) -> Any:
    import tomllib

    return tomllib.loads(text)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"turn": [{"reply": [{"txt": "x"}]}]}, "unknown keys"),
        ({"turn": [{"reply": [{"error": 200}]}]}, "HTTP status"),
        ({"turn": [{"reply": []}]}, "at least one reply"),
        ({"turn": [{"reply": [{"tool": "write_file", "path": "a"}]}]}, "needs 'path' and"),
        ({"turn": [{"reply": [{"tool": "Frobnicate"}]}]}, "give its 'args'"),
        ({"turn": [{"reply": [{"text": "a", "times": 2}]}]}, "only applies"),
        ({"turns": [], "extra": 1}, "unknown top-level"),
    ],
)
def test_script_errors_are_clear(document: Any, message: str) -> None:
    with pytest.raises(ScriptError, match=message):
        parse_script(document)


# -- tool calls built from the client's schemas ------------------------------------------


def test_tool_arguments_follow_each_clients_schema() -> None:
    write = Reply(kind="tool", tool="write_file", path="src/a.py", content="x = 1\n")
    claude = [ToolSpec("Bash", BASH_SCHEMA), ToolSpec("Write", WRITE_SCHEMA)]
    call = build_call(write, claude, "/repo")
    assert (call.name, dict(call.arguments)) == (
        "Write",
        {"file_path": "/repo/src/a.py", "content": "x = 1\n"},
    )
    opencode = [
        ToolSpec(
            "write",
            {
                "type": "object",
                "properties": {"filePath": {"type": "string"}, "content": {"type": "string"}},
            },
        )
    ]
    assert dict(build_call(write, opencode, "/repo").arguments) == {
        "filePath": "/repo/src/a.py",
        "content": "x = 1\n",
    }
    edit = Reply(kind="tool", tool="edit_file", path="a.py", old="a - b", new="a + b")
    gemini_replace = ToolSpec(
        "replace",
        {
            "type": "object",
            "properties": {
                "file_path": {"type": "string"},
                "old_string": {"type": "string"},
                "new_string": {"type": "string"},
                "instruction": {"type": "string"},
            },
            "required": ["file_path", "old_string", "new_string", "instruction"],
        },
    )
    args = build_call(edit, [gemini_replace], "/repo").arguments
    assert args["old_string"] == "a - b" and args["new_string"] == "a + b"
    assert isinstance(args["instruction"], str)  # required parameters nothing matched


def test_codex_writes_via_heredoc_or_apply_patch(tmp_path: Path) -> None:
    content = "line 'one'\nline two\n"
    write = Reply(kind="tool", tool="write_file", path="d/f.txt", content=content)
    exec_command = ToolSpec(
        "exec_command",
        {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]},
    )
    call = build_call(write, [exec_command], None)
    assert call.name == "exec_command" and "<<'TASKMILL_EOF'" in call.arguments["cmd"]
    subprocess.run(["bash", "-c", call.arguments["cmd"]], cwd=tmp_path, check=True)
    assert (tmp_path / "d" / "f.txt").read_text() == content
    # the shell edit fallback replaces exactly, like Edit tools do
    edit = Reply(kind="tool", tool="edit_file", path="d/f.txt", old="'one'", new='"1"')
    call = build_call(edit, [exec_command], None)
    subprocess.run(["bash", "-c", call.arguments["cmd"]], cwd=tmp_path, check=True)
    assert (tmp_path / "d" / "f.txt").read_text() == 'line "1"\nline two\n'
    # Codex's free-form apply_patch tool wins for writes when offered
    patch = build_call(write, [exec_command, ToolSpec("apply_patch", kind="custom")], None)
    assert patch.name == "apply_patch" and patch.custom_input is not None
    assert "*** Add File: d/f.txt\n+line 'one'\n+line two\n" in patch.custom_input
    # an array-typed command (older Codex `shell`) gets an argv
    shell = ToolSpec("shell", {"type": "object", "properties": {"command": {"type": "array"}}})
    run = build_call(Reply(kind="tool", tool="shell", command="ls"), [shell], None)
    assert run.arguments["command"] == ["bash", "-lc", "ls"]


@pytest.mark.parametrize(
    ("text", "cwd"),
    [
        ("<env>\n  <cwd>/tmp/x y</cwd>\n</env>", "/tmp/x y"),  # Codex
        ("Working directory: /tmp/a\nIs git", "/tmp/a"),  # Claude Code, opencode
        ("I'm currently working in the directory: /tmp/q\n", "/tmp/q"),  # Qwen Code
        ("- **Workspace Directories:**\n  - /tmp/g\n", "/tmp/g"),  # Gemini CLI
        ("nothing here", None),
    ],
)
def test_working_directory_is_found_in_prompts(text: str, cwd: str | None) -> None:
    assert find_cwd(text) == cwd


# -- the four protocols ------------------------------------------------------------------


def test_anthropic_non_streaming_follows_the_script(serve: Callable[..., FakeModelServer]) -> None:
    server = serve(WRITE_THEN_DONE)
    opening = [{"role": "user", "content": "Please write calc.py"}]
    with httpx.Client(base_url=server.url) as client:
        first = client.post("/v1/messages?beta=true", json=anthropic_body(opening)).json()
        assert first["stop_reason"] == "tool_use"
        assert first["usage"]["input_tokens"] == 1200 and first["usage"]["output_tokens"] == 80
        block = first["content"][0]
        assert block["name"] == "Write"
        assert block["input"] == {
            "file_path": "/work/proj/calc.py",
            "content": "def add(a, b):\n    return a + b\n",
        }
        history = [
            *opening,
            {"role": "assistant", "content": first["content"]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block["id"]}]},
        ]
        second = client.post("/v1/messages", json=anthropic_body(history)).json()
        assert second["content"] == [{"type": "text", "text": "Done."}]
        assert second["stop_reason"] == "end_turn"
        history += [{"role": "assistant", "content": second["content"]}]
        history += [{"role": "user", "content": "and then?"}]
        third = client.post("/v1/messages", json=anthropic_body(history)).json()
        assert third["content"][0]["text"] == "Done."  # past the end: final_text
    served = [e["served"].get("source") for e in server.requests]
    assert served == ["script", "script", "final"]


def test_anthropic_stream_reassembles_to_the_tool_call(
    serve: Callable[..., FakeModelServer],
) -> None:
    server = serve(WRITE_THEN_DONE)
    body = anthropic_body([{"role": "user", "content": "go"}], stream=True)
    response = httpx.post(f"{server.url}/v1/messages?beta=true", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    partial = "".join(
        data["delta"]["partial_json"]
        for name, data in events
        if name == "content_block_delta" and data["delta"]["type"] == "input_json_delta"
    )
    assert json.loads(partial)["file_path"] == "/work/proj/calc.py"
    assert events[0][1]["message"]["usage"]["input_tokens"] == 1200
    delta = next(data for name, data in events if name == "message_delta")
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert delta["usage"]["output_tokens"] == 80


def test_responses_stream_and_custom_apply_patch(serve: Callable[..., FakeModelServer]) -> None:
    server = serve(WRITE_THEN_DONE)
    tools = [
        {"type": "function", "name": "exec_command", "parameters": {"properties": {"cmd": {}}}},
        {"type": "custom", "name": "apply_patch", "format": {"type": "grammar"}},
        {"type": "web_search"},
    ]
    opening = [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "x"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "go"}]},
    ]
    body = {"model": "gpt-5.5", "input": opening, "tools": tools, "stream": True}
    events = sse_events(httpx.post(f"{server.url}/v1/responses", json=body).text)
    assert events[0][0] == "response.created" and events[-1][0] == "response.completed"
    item = next(d["item"] for n, d in events if n == "response.output_item.done")
    assert item["type"] == "custom_tool_call" and item["name"] == "apply_patch"
    assert "*** Add File: calc.py" in item["input"]
    usage = events[-1][1]["response"]["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (1200, 80)
    history = [*opening, item, {"type": "custom_tool_call_output", "call_id": item["call_id"]}]
    done = httpx.post(
        f"{server.url}/v1/responses", json={**body, "input": history, "stream": False}
    )
    output = done.json()["output"]
    assert output[0]["content"][0]["text"] == "Done."
    assert done.json()["usage"]["total_tokens"] == 1509


def test_chat_completions_stream_and_models(serve: Callable[..., FakeModelServer]) -> None:
    server = serve({**WRITE_THEN_DONE, "models": ["fake-model", "other"]})
    tools = [{"type": "function", "function": {"name": "write_file", "parameters": WRITE_SCHEMA}}]
    body = {
        "model": "fake-model",
        "messages": [
            {"role": "system", "content": CWD_SYSTEM},
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": "Got it. Thanks for the context!"},  # Qwen's
            {"role": "user", "content": [{"type": "text", "text": "write it"}]},
        ],
        "tools": tools,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.Client(base_url=server.url) as client:
        events = sse_events(client.post("/v1/chat/completions", json=body).text)
        assert events[-1][1] == "[DONE]"
        calls = [
            d for _, d in events[:-1] if d["choices"] and d["choices"][0]["delta"].get("tool_calls")
        ]
        function = calls[0]["choices"][0]["delta"]["tool_calls"][0]["function"]
        assert function["name"] == "write_file"
        assert json.loads(function["arguments"])["file_path"] == "/work/proj/calc.py"
        finish = [d["choices"][0]["finish_reason"] for _, d in events[:-1] if d["choices"]]
        assert finish[-1] == "tool_calls"
        assert events[-2][1]["usage"]["prompt_tokens"] == 1200
        plain = client.post("/v1/chat/completions", json={**body, "stream": False}).json()
        assert plain["choices"][0]["message"]["tool_calls"][0]["type"] == "function"
        models = client.get("/v1/models").json()
        assert [m["id"] for m in models["data"]] == ["fake-model", "other"]


def test_gemini_stream_generate_and_side_json(serve: Callable[..., FakeModelServer]) -> None:
    server = serve(WRITE_THEN_DONE)
    decls = [{"name": "write_file", "parametersJsonSchema": WRITE_SCHEMA}]
    body = {
        "contents": [{"role": "user", "parts": [{"text": "go"}]}],
        "systemInstruction": {"parts": [{"text": "- **Workspace Directories:**\n  - /g\n"}]},
        "tools": [{"functionDeclarations": decls}],
    }
    url = f"{server.url}/v1beta/models/gemini-2.5-pro"
    with httpx.Client() as client:
        events = sse_events(client.post(f"{url}:streamGenerateContent?alt=sse", json=body).text)
        last = events[-1][1]
        assert last["candidates"][0]["finishReason"] == "STOP"
        call = last["candidates"][0]["content"]["parts"][0]["functionCall"]
        assert call == {
            "name": "write_file",
            "args": {"file_path": "/g/calc.py", "content": "def add(a, b):\n    return a + b\n"},
        }
        assert last["usageMetadata"]["promptTokenCount"] == 1200
        history = [
            *body["contents"],
            {"role": "model", "parts": [{"functionCall": call}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "write_file"}}]},
        ]
        done = client.post(f"{url}:generateContent", json={**body, "contents": history}).json()
        assert done["candidates"][0]["content"]["parts"] == [{"text": "Done."}]
        # a no-tools JSON request (next-speaker check, router) gets schema-shaped JSON
        schema = {
            "type": "object",
            "properties": {
                "reasoning": {"type": "string"},
                "next_speaker": {"type": "string", "enum": ["model", "user"]},
            },
        }
        side = {
            "contents": body["contents"],
            "generationConfig": {
                "responseMimeType": "application/json",
                "responseJsonSchema": schema,
            },
        }
        answer = client.post(f"{url}:generateContent", json=side).json()
        text = answer["candidates"][0]["content"]["parts"][0]["text"]
        assert json.loads(text)["next_speaker"] == "user"
        assert client.post(f"{url}:countTokens", json=body).json()["totalTokens"] > 0
    assert [e["served"].get("source") for e in server.model_requests()] == [
        "script",
        "script",
        "side",
    ]


# -- routing ------------------------------------------------------------------------------


def test_routing_by_when_groups_and_side_requests(serve: Callable[..., FakeModelServer]) -> None:
    script = {
        "turn": [
            {"when": "config", "reply": [{"text": "config 1"}]},
            {"reply": [{"text": "generic"}]},
            {"when": "config", "reply": [{"text": "config 2"}]},
        ],
        "side": {"text": "A title"},
    }
    server = serve(script)

    def ask(prompt: str, tools: bool = True) -> str:
        body = anthropic_body([{"role": "user", "content": prompt}])
        if not tools:
            body["tools"] = []
        response = httpx.post(f"{server.url}/v1/messages", json=body)
        return str(response.json()["content"][0]["text"])

    assert ask("title please", tools=False) == "A title"  # does not consume the script
    assert ask("Parse the config (task A)") == "config 1"
    assert ask("something else") == "generic"
    assert ask("Parse the config (task B)") == "config 2"
    assert ask("Parse the config (task C)") == "config 2"  # exhausted: the last repeats
    assert ask("something else again") == "generic"


def test_failures_error_stall_garbage(serve: Callable[..., FakeModelServer]) -> None:
    script = {
        "turn": [
            {
                "when": "rate",
                "reply": [
                    {"error": 429, "retry_after": 2, "message": "slow down", "times": 1},
                    {"text": "after the retry"},
                ],
            },
            {"when": "stall", "reply": [{"stall": 30}]},
            {"when": "garbage", "reply": [{"garbage": True}]},
            {"when": "overloaded", "reply": [{"error": 529}]},
        ]
    }
    server = serve(script)
    with httpx.Client(base_url=server.url, timeout=5) as client:
        rate = anthropic_body([{"role": "user", "content": "rate"}])
        limited = client.post("/v1/messages", json=rate)
        assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
        assert limited.json() == {
            "type": "error",
            "error": {"type": "rate_limit_error", "message": "slow down"},
        }
        # the client's retry of the same opening stays in its conversation
        assert (
            client.post("/v1/messages", json=rate).json()["content"][0]["text"] == "after the retry"
        )
        over = client.post(
            "/v1/messages", json=anthropic_body([{"role": "user", "content": "overloaded"}])
        )
        assert over.status_code == 529 and over.json()["error"]["type"] == "overloaded_error"
        chat = {
            "messages": [{"role": "user", "content": "overloaded"}],
            "tools": [{"type": "function", "function": {"name": "bash", "parameters": {}}}],
        }
        openai_error = client.post("/v1/chat/completions", json=chat).json()["error"]
        assert set(openai_error) == {"message", "type", "param", "code"}
        gemini = {
            "contents": [{"role": "user", "parts": [{"text": "rate"}]}],
            "tools": [{"functionDeclarations": [{"name": "run_shell_command"}]}],
        }
        limited = client.post("/v1beta/models/m:generateContent", json=gemini)
        assert limited.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
        assert limited.json()["error"]["details"][0]["retryDelay"] == "2s"
        garbage = client.post(
            "/v1/messages", json=anthropic_body([{"role": "user", "content": "garbage"}])
        )
        assert garbage.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            garbage.json()
        stall = anthropic_body([{"role": "user", "content": "stall"}], stream=True)
        started = time.monotonic()
        with client.stream("POST", "/v1/messages", json=stall, timeout=1.0) as response:
            lines = response.iter_lines()
            assert next(lines) == "event: message_start"
            with pytest.raises(httpx.ReadTimeout):
                for _ in lines:
                    pass
        assert time.monotonic() - started < 5
    stopping = time.monotonic()
    server.stop()  # a stalled reply does not hold up the shutdown
    assert time.monotonic() - stopping < 5


def test_request_log_ndjson_endpoint_and_404(serve: Callable[..., FakeModelServer]) -> None:
    server = serve(WRITE_THEN_DONE)
    with httpx.Client(base_url=server.url) as client:
        client.post(
            "/v1/messages",
            json=anthropic_body([{"role": "user", "content": "go"}]),
            headers={"x-api-key": "sk-secret", "authorization": "Bearer sk-secret"},
        )
        missing = client.post("/v2/unknown", json={"a": 1})
        assert missing.status_code == 404 and "no route" in missing.json()["error"]["message"]
        assert client.get("/_taskmill/health").json()["status"] == "ok"
        logged = client.get("/_taskmill/requests").json()
    assert server.log.path is not None
    on_disk = [json.loads(line) for line in server.log.path.read_text().splitlines()]
    assert logged == on_disk == server.requests
    first, second = logged
    assert first["method"] == "POST" and first["path"] == "/v1/messages"
    assert first["headers"]["x-api-key"] == "<redacted>"
    assert first["headers"]["authorization"] == "<redacted>"
    assert "sk-secret" not in json.dumps(logged)
    assert first["body"]["messages"][0]["content"] == "go"
    assert first["served"]["usage"]["input_tokens"] == 1200
    assert second["path"] == "/v2/unknown" and second["served"]["kind"] == "not_found"


def test_server_refuses_non_loopback_hosts() -> None:
    with pytest.raises(ValueError, match="loopback"):
        FakeModelServer(WRITE_THEN_DONE, host="0.0.0.0")


def test_module_entry_point_serves(tmp_path: Path) -> None:
    script = tmp_path / "s.json"
    script.write_text(json.dumps(WRITE_THEN_DONE), encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskmill.testing.fake_model", "--script", str(script),
         "--port", "0", "--log", str(tmp_path / "log.ndjson")],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"listening on (http://\S+)", line)
        assert match, line
        assert httpx.get(f"{match.group(1)}/_taskmill/health").json()["turns"] == 1
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        assert proc.stderr is not None
        proc.stderr.close()
    assert proc.returncode == 0


def test_agent_install_finds_pinned_versions_only(tmp_path: Path) -> None:
    agent = agent_install.AGENTS["codex"]
    assert agent.spec == "@openai/codex@0.169.0"
    assert agent_install.find_agent("codex", tmp_path) is None
    package = tmp_path / "codex" / "node_modules" / "@openai" / "codex"
    package.mkdir(parents=True)
    (package / "package.json").write_text('{"version": "0.1.0"}', encoding="utf-8")
    bin_path = agent_install.bin_path("codex", tmp_path)
    bin_path.parent.mkdir(parents=True)
    bin_path.write_text("#!/bin/sh\n", encoding="utf-8")
    assert agent_install.find_agent("codex", tmp_path) is None  # wrong version
    (package / "package.json").write_text('{"version": "0.169.0"}', encoding="utf-8")
    assert agent_install.find_agent("codex", tmp_path) == bin_path
    # idempotent: already there, so npm is not even looked for
    assert agent_install.install("codex", tmp_path, npm="no-such-npm") == bin_path
    with pytest.raises(KeyError, match="700 MB"):
        agent_install.bin_path("aider", tmp_path)


# -- the real CLIs -------------------------------------------------------------------------

AGENT_TIMEOUT = 120.0
INPUT_TOKENS = (1234, 2345)
OUTPUT_TOKENS = (56, 7)
AGENT_SCRIPT = {
    "turn": [
        {
            "reply": [
                {
                    "text": "I'll write the file.",
                    "tool": "write_file",
                    "path": "src/calc.py",
                    "content": "def add(a, b):\n    return a + b\n",
                    "usage": {"input_tokens": INPUT_TOKENS[0], "output_tokens": OUTPUT_TOKENS[0]},
                },
                {
                    "text": "Done.",
                    "usage": {"input_tokens": INPUT_TOKENS[1], "output_tokens": OUTPUT_TOKENS[1]},
                },
            ]
        }
    ]
}
PROMPT = "Create src/calc.py with an add function."


@dataclass
class AgentRun:
    argv: list[str]
    env: dict[str, str]
    files: dict[str, str] = field(default_factory=dict)
    """Files to write before the run, relative to the test's HOME."""


def _claude(url: str, home: Path) -> AgentRun:
    env = {
        "ANTHROPIC_BASE_URL": url,
        "ANTHROPIC_API_KEY": "sk-fake",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
    }
    if os.geteuid() == 0:
        env["IS_SANDBOX"] = "1"  # --dangerously-skip-permissions refuses root otherwise
    argv = ["claude", "-p", PROMPT, "--output-format", "stream-json", "--verbose",
            "--dangerously-skip-permissions"]  # fmt: skip
    return AgentRun(argv, env)


def _codex(url: str, home: Path) -> AgentRun:
    config = (
        'model = "gpt-5.5"\nmodel_provider = "fake"\ncheck_for_update_on_startup = false\n\n'
        "[analytics]\nenabled = false\n\n"
        f'[model_providers.fake]\nname = "fake"\nbase_url = "{url}/v1"\n'
        'env_key = "FAKE_MODEL_API_KEY"\nwire_api = "responses"\nsupports_websockets = false\n'
    )
    # Codex's own sandbox is bypassed, as taskmill's adapter does: with bubblewrap installed
    # (taskmill's sandbox needs it), `--sandbox workspace-write` runs Codex's tools under bwrap
    # and their writes fail here ("Failed to write file")
    argv = ["codex", "exec", "--json", "--skip-git-repo-check",
            "--dangerously-bypass-approvals-and-sandbox", PROMPT]  # fmt: skip
    env = {"CODEX_HOME": str(home / ".codex"), "FAKE_MODEL_API_KEY": "sk-fake"}
    return AgentRun(argv, env, {".codex/config.toml": config})


def _gemini(url: str, home: Path) -> AgentRun:
    settings = {
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
        "privacy": {"usageStatisticsEnabled": False},
    }
    argv = ["gemini", "-p", PROMPT, "-o", "stream-json", "--skip-trust", "--yolo",
            "-m", "gemini-2.5-pro"]  # fmt: skip
    env = {"GOOGLE_GEMINI_BASE_URL": url, "GEMINI_API_KEY": "fake"}
    return AgentRun(argv, env, {".gemini/settings.json": json.dumps(settings)})


def _opencode(url: str, home: Path) -> AgentRun:
    config = {
        "provider": {
            "fake": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Fake model",
                "options": {"baseURL": f"{url}/v1", "apiKey": "sk-fake"},
                "models": {"fake-model": {"name": "Fake model", "cost": {"input": 1, "output": 2}}},
            }
        }
    }
    env = {
        "OPENCODE_CONFIG_CONTENT": json.dumps(config),
        "OPENCODE_DISABLE_MODELS_FETCH": "1",
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
        "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
        "OPENCODE_DISABLE_SHARE": "1",
        "npm_config_offline": "true",  # its background plugin install fails fast, harmlessly
    }
    argv = ["opencode", "run", "--format", "json", "-m", "fake/fake-model", PROMPT]
    return AgentRun(argv, env)


def _qwen(url: str, home: Path) -> AgentRun:
    settings = {
        "memory": {"enableManagedAutoMemory": False},
        "privacy": {"usageStatisticsEnabled": False},
        "general": {"enableAutoUpdate": False},
    }
    env = {
        "OPENAI_BASE_URL": f"{url}/v1",
        "OPENAI_API_KEY": "sk-fake",
        "OPENAI_MODEL": "fake-model",
    }
    argv = ["qwen", "--auth-type", "openai", "-p", PROMPT, "-o", "stream-json", "--yolo"]
    return AgentRun(argv, env, {".qwen/settings.json": json.dumps(settings)})


def _events(stdout: str) -> list[dict[str, Any]]:
    events = []
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events


def _claude_tokens(events: list[dict[str, Any]]) -> tuple[int, int]:
    usage = next(e for e in events if e.get("type") == "result")["usage"]
    return usage["input_tokens"], usage["output_tokens"]


def _codex_tokens(events: list[dict[str, Any]]) -> tuple[int, int]:
    usage = next(e for e in events if e.get("type") == "turn.completed")["usage"]
    return usage["input_tokens"], usage["output_tokens"]


def _gemini_tokens(events: list[dict[str, Any]]) -> tuple[int, int]:
    stats = next(e for e in events if e.get("type") == "result")["stats"]
    return stats["input_tokens"], stats["output_tokens"]


def _opencode_tokens(events: list[dict[str, Any]]) -> tuple[int, int]:
    steps = [e["part"]["tokens"] for e in events if e.get("type") == "step_finish"]
    return sum(t["input"] for t in steps), sum(t["output"] for t in steps)


AGENTS: dict[str, tuple[Callable[[str, Path], AgentRun], Callable[..., tuple[int, int]]]] = {
    "claude": (_claude, _claude_tokens),
    "codex": (_codex, _codex_tokens),
    "gemini": (_gemini, _gemini_tokens),
    "opencode": (_opencode, _opencode_tokens),
    "qwen": (_qwen, _claude_tokens),  # same result event as Claude Code
}


def run_bounded(
    argv: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> tuple[int, str, str]:
    """Run a CLI in its own process group; kill the whole group if it overruns."""
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(
            f"{argv[0]} ran over {timeout:g}s\nstdout:\n{stdout[-3000:]}\nstderr:\n{stderr[-3000:]}"
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # leftover children of a finished CLI
    return proc.returncode, stdout, stderr


@pytest.mark.agents
@pytest.mark.parametrize("name", list(AGENTS))
def test_real_cli_writes_a_file_against_the_fake_model(
    name: str, tmp_path: Path, git_repo: Path
) -> None:
    binary = agent_install.find_agent(name)
    if binary is None:
        pytest.skip(
            f"{name} is not installed in {agent_install.default_cache_dir()}: run "
            f"`python -m taskmill.testing.agent_install {name}`"
        )
    build, tokens = AGENTS[name]
    home = tmp_path / "home"
    home.mkdir()
    with FakeModelServer(AGENT_SCRIPT, log_path=tmp_path / "requests.ndjson") as server:
        run = build(server.url, home)
        for relative, text in run.files.items():
            (home / relative).parent.mkdir(parents=True, exist_ok=True)
            (home / relative).write_text(text, encoding="utf-8")
        path = os.pathsep.join([str(binary.parent), os.environ.get("PATH", os.defpath)])
        env = {"PATH": path, "HOME": str(home), **run.env}
        started = time.monotonic()
        code, stdout, stderr = run_bounded(run.argv, git_repo, env, AGENT_TIMEOUT)
        elapsed = time.monotonic() - started
        scripted = server.model_requests("script")
    report = (
        f"exit {code} after {elapsed:.1f}s\nstdout:\n{stdout[-4000:]}\nstderr:\n{stderr[-4000:]}"
    )
    assert code == 0, report
    assert (git_repo / "src" / "calc.py").read_text() == "def add(a, b):\n    return a + b\n", (
        report
    )
    assert [e["served"]["kind"] for e in scripted] == ["tool", "text"], report
    reported = (
        sum(e["served"]["usage"]["input_tokens"] for e in scripted),
        sum(e["served"]["usage"]["output_tokens"] for e in scripted),
    )
    assert reported == (sum(INPUT_TOKENS), sum(OUTPUT_TOKENS))
    assert tokens(_events(stdout)) == reported, report
