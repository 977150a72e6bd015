"""Adapters: command lines, environments, config files, and parsing of recorded output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from taskmill.agents import registry
from taskmill.agents.aider import AiderAdapter, aider_count, parse_aider_output
from taskmill.agents.base import AgentConfig, TurnRequest
from taskmill.agents.claude import ClaudeAdapter, parse_claude_stream
from taskmill.agents.codex import CodexAdapter, parse_codex_stream
from taskmill.agents.common import (
    AgentConfigError,
    detect_rate_limit,
    prompt_arg,
    retry_after_from_text,
    stderr_path,
)
from taskmill.agents.envs import api_key, build_env
from taskmill.agents.exec import ExecAdapter
from taskmill.agents.gemini import GeminiAdapter, parse_gemini_stream
from taskmill.agents.opencode import OpencodeAdapter, parse_opencode_stream
from taskmill.agents.qwen import QwenAdapter
from taskmill.agents.registry import (
    UnknownAdapterError,
    agent_config_from_toml,
    get_adapter,
    known_adapter_names,
)
from taskmill.agents.runner import run_turn
from taskmill.agents.scripted import ScriptedAgent

NOW = 1_760_000_000.0


def make_request(tmp_path: Path, **overrides: Any) -> TurnRequest:
    worktree = tmp_path / "wt"
    worktree.mkdir(exist_ok=True)
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    base = TurnRequest(
        task_id="T-7",
        title="Add a greeting",
        iteration=2,
        prompt="Write hello.txt",
        worktree=worktree,
        home=home,
        state_dir=state,
        prompt_file=state / "prompt.md",
        usage_file=state / "usage.json",
        log_path=state / "agent.log",
        parent_env={"PATH": "/usr/bin:/bin", "MY_KEY": "sk-test-123", "OTHER_SECRET": "x"},
        taskmill_env={"TASKMILL_TASK_ID": "T-7", "TASKMILL_LEDGER": "/repo/.taskmill"},
    )
    return replace(base, **overrides)


def cfg(adapter: str, **kw: Any) -> AgentConfig:
    return AgentConfig(name=kw.pop("name", adapter), adapter=adapter, **kw)


def lines(*events: dict[str, Any]) -> str:
    return "".join(json.dumps(e) + "\n" for e in events)


# --------------------------------------------------------------------------- envs / helpers


def test_build_env_order_and_isolation(tmp_path: Path) -> None:
    request = make_request(tmp_path, taskmill_env={"TASKMILL_TASK_ID": "T-7", "A": "mill"})
    config = cfg("exec", env={"A": "config", "B": "config"}, pass_env=("OTHER_SECRET", "NOPE"))
    env = build_env(config, request, {"A": "adapter", "C": "adapter", "B": "adapter"})
    assert env["A"] == "mill" and env["B"] == "config" and env["C"] == "adapter"
    assert env["OTHER_SECRET"] == "x" and "NOPE" not in env and "MY_KEY" not in env
    assert env["HOME"] == str(request.home) and env["PATH"] == "/usr/bin:/bin"


def test_api_key(tmp_path: Path) -> None:
    request = make_request(tmp_path)
    assert api_key(cfg("claude"), request) is None
    assert api_key(cfg("claude", api_key_env="MY_KEY"), request) == "sk-test-123"
    with pytest.raises(AgentConfigError, match=r"\$MISSING is not set.*export MISSING"):
        api_key(cfg("claude", api_key_env="MISSING"), request)


def test_prompt_arg_guards(tmp_path: Path) -> None:
    assert prompt_arg(make_request(tmp_path, prompt="- item")) == "\n- item"
    long = make_request(tmp_path, prompt="x" * 200_000)
    assert str(long.prompt_file) in prompt_arg(long)


@pytest.mark.parametrize(
    ("text", "limited", "retry"),
    [
        ("Claude AI usage limit reached|1760003600", True, 3600.0),
        ("exceeded retry limit, last status: 429 Too Many Requests", True, None),
        ("You've hit your usage limit. Try again in 2 hours 5 minutes.", True, 7500.0),
        ("RESOURCE_EXHAUSTED: Quota exceeded. Please retry in 37.5s.", True, 37.5),
        ('429 {"error": {"details": [{"retryDelay": "12s"}]}}', True, 12.0),
        ("litellm.RateLimitError: Rate limit reached. Please try again in 20s.", True, 20.0),
        ("error_max_turns", False, None),
        ("file not found", False, None),
    ],
)
def test_rate_limit_detection(text: str, limited: bool, retry: float | None) -> None:
    assert detect_rate_limit([text], NOW) == (limited, retry)


def test_retry_after_epoch_in_the_past_is_zero() -> None:
    assert retry_after_from_text("usage limit reached|1700000000", NOW) == 0.0


# --------------------------------------------------------------------------- exec


def test_exec_prepare(tmp_path: Path) -> None:
    request = make_request(tmp_path)
    config = cfg("exec", command=("my-agent", "--go"), args=("--fast",), model="m",
                 base_url="http://127.0.0.1:9/v1", api_key_env="MY_KEY")
    inv = ExecAdapter().prepare(config, request)
    assert inv.argv == ("my-agent", "--go", "--fast")
    assert inv.stdin == "Write hello.txt" and inv.cwd == request.worktree
    assert inv.env["TASKMILL_PROMPT_FILE"] == str(request.prompt_file)
    assert inv.env["TASKMILL_USAGE_FILE"] == str(request.usage_file)
    assert inv.env["TASKMILL_LEDGER"] == "/repo/.taskmill"
    assert inv.env["TASKMILL_MODEL"] == "m" and inv.env["MY_KEY"] == "sk-test-123"
    assert inv.env["TASKMILL_BASE_URL"] == "http://127.0.0.1:9/v1"
    assert "OTHER_SECRET" not in inv.env


# --------------------------------------------------------------------------- claude

CLAUDE_OK = lines(
    {"type": "system", "subtype": "init", "cwd": "/w", "session_id": "9d1e-sess",
     "tools": ["Bash", "Edit", "Write"], "mcp_servers": [], "model": "claude-sonnet-4-5",
     "permissionMode": "bypassPermissions", "apiKeySource": "ANTHROPIC_API_KEY"},
    {"type": "assistant", "session_id": "9d1e-sess", "parent_tool_use_id": None,
     "message": {"id": "msg_01", "type": "message", "role": "assistant",
                 "model": "claude-sonnet-4-5",
                 "content": [{"type": "tool_use", "id": "toolu_01", "name": "Write",
                              "input": {"file_path": "/w/hello.txt", "content": "hi\n"}}],
                 "usage": {"input_tokens": 12, "cache_creation_input_tokens": 3000,
                           "cache_read_input_tokens": 0, "output_tokens": 40}}},
    {"type": "user", "session_id": "9d1e-sess",
     "message": {"role": "user", "content": [{"tool_use_id": "toolu_01", "type": "tool_result",
                                              "content": "File created successfully"}]}},
    {"type": "assistant", "session_id": "9d1e-sess",
     "message": {"id": "msg_02", "model": "claude-sonnet-4-5",
                 "content": [{"type": "text", "text": "Done. No rate limit hit."}],
                 "usage": {"input_tokens": 5, "cache_creation_input_tokens": 50,
                           "cache_read_input_tokens": 3000, "output_tokens": 4}}},
    {"type": "result", "subtype": "success", "is_error": False, "duration_ms": 5230,
     "num_turns": 2, "result": "Done.", "session_id": "9d1e-sess", "total_cost_usd": 0.0123,
     "usage": {"input_tokens": 17, "cache_creation_input_tokens": 3050,
               "cache_read_input_tokens": 3000, "output_tokens": 44,
               "server_tool_use": {"web_search_requests": 0}},
     "modelUsage": {"claude-sonnet-4-5": {"inputTokens": 17, "outputTokens": 44,
                                          "costUSD": 0.0123}},
     "permission_denials": []},
)


def test_claude_prepare(tmp_path: Path) -> None:
    request = make_request(tmp_path)
    config = cfg("claude", model="claude-sonnet-4-5", base_url="http://127.0.0.1:8123/v1/",
                 api_key_env="MY_KEY", args=("--max-budget-usd", "2"))
    inv = ClaudeAdapter().prepare(config, request)
    assert inv.argv == (
        "claude", "-p", "Write hello.txt", "--output-format", "stream-json", "--verbose",
        "--permission-mode", "bypassPermissions", "--model", "claude-sonnet-4-5",
        "--max-budget-usd", "2",
    )
    assert inv.stdin is None and inv.cwd == request.worktree
    assert inv.env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:8123"
    assert inv.env["ANTHROPIC_API_KEY"] == "sk-test-123"
    # IS_SANDBOX=1 comes from the runner, and only when the turn is really sandboxed
    assert "IS_SANDBOX" not in inv.env and inv.env["HOME"] == str(request.home)
    assert inv.env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert "MY_KEY" not in inv.env and "OTHER_SECRET" not in inv.env


def test_claude_prepare_accept_edits_and_mcp(tmp_path: Path) -> None:
    request = make_request(tmp_path)
    config = cfg("claude", command=("/opt/claude/bin/claude",), mcp=True,
                 options={"permission_mode": "acceptEdits", "max_turns": 30,
                          "allowed_tools": ["Bash(git:*)", "Bash(pytest:*)"],
                          "mcp_command": ["taskmill", "mcp", "--stdio"]})
    inv = ClaudeAdapter().prepare(config, request)
    argv = list(inv.argv)
    assert argv[:3] == ["/opt/claude/bin/claude", "-p", "Write hello.txt"]
    assert argv[argv.index("--permission-mode") + 1] == "acceptEdits"
    assert argv[argv.index("--allowedTools") + 1] == "Bash(git:*),Bash(pytest:*),mcp__taskmill"
    assert argv[argv.index("--max-turns") + 1] == "30"
    assert "IS_SANDBOX" not in inv.env
    mcp = json.loads(Path(argv[argv.index("--mcp-config") + 1]).read_text())
    assert mcp["mcpServers"]["taskmill"]["command"] == "taskmill"
    assert mcp["mcpServers"]["taskmill"]["args"] == ["mcp", "--stdio"]
    assert mcp["mcpServers"]["taskmill"]["env"]["TASKMILL_TASK_ID"] == "T-7"


def test_claude_parse_success(tmp_path: Path) -> None:
    usage = ClaudeAdapter(wall_clock=lambda: NOW).parse(
        cfg("claude"), make_request(tmp_path), CLAUDE_OK, 0)
    assert (usage.input_tokens, usage.output_tokens) == (17, 44)
    assert (usage.cache_read_tokens, usage.cache_write_tokens) == (3000, 3050)
    assert usage.cost_usd == 0.0123
    assert usage.session_id == "9d1e-sess" and usage.model == "claude-sonnet-4-5"
    assert usage.error is None and not usage.rate_limited


def test_claude_parse_usage_limit() -> None:
    out = lines(
        {"type": "system", "subtype": "init", "session_id": "s2", "model": "claude-opus-4"},
        {"type": "result", "subtype": "success", "is_error": True,
         "result": "Claude AI usage limit reached|1760003600", "session_id": "s2",
         "total_cost_usd": 0, "usage": {"input_tokens": 0, "output_tokens": 0}},
    )
    usage = parse_claude_stream(out, 1, now=NOW)
    assert usage.rate_limited and usage.retry_after_s == 3600.0
    assert usage.error is not None and "usage limit reached" in usage.error


def test_claude_parse_api_retry_429_then_failure() -> None:
    out = lines(
        {"type": "system", "subtype": "init", "session_id": "s3", "model": "m"},
        {"type": "system", "subtype": "api_retry", "attempt": 1, "max_retries": 10,
         "retry_delay_ms": 500, "error_status": 429, "error": "rate_limit_error"},
        {"type": "result", "subtype": "error_during_execution", "is_error": True,
         "session_id": "s3", "errors": ["API Error: Request failed after retries"]},
    )
    usage = parse_claude_stream(out, 1, now=NOW)
    assert usage.rate_limited and usage.retry_after_s == 0.5  # the last api_retry delay
    assert usage.error is not None and usage.error.startswith("error_during_execution")


def test_claude_parse_retries_that_recovered_are_not_a_limit() -> None:
    retry = {"type": "system", "subtype": "api_retry", "error_status": 429, "error": "rate"}
    out = lines(retry) + CLAUDE_OK
    usage = parse_claude_stream(out, 0, now=NOW)
    assert not usage.rate_limited and usage.error is None


def test_claude_parse_max_turns() -> None:
    out = lines({"type": "result", "subtype": "error_max_turns", "is_error": False,
                 "num_turns": 1, "session_id": "s4", "total_cost_usd": 0.01,
                 "usage": {"input_tokens": 10, "output_tokens": 2}})
    usage = parse_claude_stream(out, 1, now=NOW)
    assert usage.error == "error_max_turns" and not usage.rate_limited
    assert usage.input_tokens == 10


def test_claude_parse_truncated_stream_sums_messages() -> None:
    # the last complete line is cut in half, and msg_01 is repeated (one event per block)
    first, second, *_ = CLAUDE_OK.splitlines()
    third = CLAUDE_OK.splitlines()[1]
    out = "\n".join([first, "not json at all", second, third, CLAUDE_OK.splitlines()[3][:80]])
    usage = parse_claude_stream(out, None, now=NOW)
    assert usage.session_id == "9d1e-sess" and usage.model == "claude-sonnet-4-5"
    assert (usage.input_tokens, usage.output_tokens, usage.cache_write_tokens) == (12, 40, 3000)
    assert usage.error == "the output ended without a result event"


def test_claude_parse_rate_limit_on_stderr(tmp_path: Path) -> None:
    request = make_request(tmp_path)
    stderr_path(request.log_path).write_text("API Error: 429 rate_limit_error retry-after: 30\n")
    usage = ClaudeAdapter(wall_clock=lambda: NOW).parse(cfg("claude"), request, "", 1)
    assert usage.rate_limited and usage.retry_after_s == 30.0


# --------------------------------------------------------------------------- codex

CODEX_OK = lines(
    {"type": "thread.started", "thread_id": "0199a213-81c0-7800-8aa1-bbab2a035a53"},
    {"type": "turn.started"},
    {"type": "item.completed", "item": {"id": "item_0", "type": "reasoning", "text": "**Plan**"}},
    {"type": "item.started", "item": {"id": "item_1", "type": "command_execution",
                                      "command": "bash -lc ls", "aggregated_output": "",
                                      "exit_code": None, "status": "in_progress"}},
    {"type": "item.completed", "item": {"id": "item_1", "type": "command_execution",
                                        "command": "bash -lc ls",
                                        "aggregated_output": "README.md\n", "exit_code": 0,
                                        "status": "completed"}},
    {"type": "item.completed", "item": {"id": "item_2", "type": "file_change",
                                        "changes": [{"path": "hello.txt", "kind": "add"}],
                                        "status": "completed"}},
    {"type": "item.completed", "item": {"id": "item_3", "type": "agent_message",
                                        "text": "Done."}},
    {"type": "turn.completed", "usage": {"input_tokens": 24763, "cached_input_tokens": 24448,
                                         "output_tokens": 122, "reasoning_output_tokens": 64}},
)


def test_codex_prepare_with_provider(tmp_path: Path) -> None:
    request = make_request(tmp_path)
    config = cfg("codex", model="gpt-5-codex", base_url="http://127.0.0.1:8124",
                 api_key_env="MY_KEY", mcp=True,
                 options={"codex_config": {"model_reasoning_effort": "low"}})
    inv = CodexAdapter().prepare(config, request)
    assert inv.argv == (
        "codex", "exec", "--json", "--skip-git-repo-check",
        "--dangerously-bypass-approvals-and-sandbox", "-m", "gpt-5-codex", "Write hello.txt",
    )
    assert inv.stdin is None
    codex_home = request.home / ".codex"
    assert inv.env["CODEX_HOME"] == str(codex_home)
    assert inv.env["MY_KEY"] == "sk-test-123" and "OPENAI_API_KEY" not in inv.env
    doc = tomllib.loads((codex_home / "config.toml").read_text())
    assert doc["model"] == "gpt-5-codex" and doc["model_provider"] == "taskmill"
    assert doc["model_reasoning_effort"] == "low"
    assert doc["model_providers"]["taskmill"] == {
        "name": "taskmill", "base_url": "http://127.0.0.1:8124/v1", "env_key": "MY_KEY",
        "wire_api": "responses", "supports_websockets": False,
    }
    assert doc["mcp_servers"]["taskmill"]["args"][-2:] == ["taskmill", "mcp"]


def test_codex_prepare_plain_key_and_sandbox(tmp_path: Path) -> None:
    request = make_request(tmp_path)
    config = cfg("codex", api_key_env="MY_KEY", options={"sandbox": "workspace-write"})
    inv = CodexAdapter().prepare(config, request)
    assert "--sandbox" in inv.argv and "workspace-write" in inv.argv
    assert "--dangerously-bypass-approvals-and-sandbox" not in inv.argv
    assert inv.env["OPENAI_API_KEY"] == inv.env["CODEX_API_KEY"] == "sk-test-123"
    doc = tomllib.loads((request.home / ".codex" / "config.toml").read_text())
    assert doc == {"check_for_update_on_startup": False, "analytics": {"enabled": False}}


def test_codex_parse_success() -> None:
    usage = parse_codex_stream(CODEX_OK, 0, now=NOW)
    assert usage.session_id == "0199a213-81c0-7800-8aa1-bbab2a035a53"
    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens) == (
        24763, 24448, 122)
    assert usage.cost_usd is None and usage.error is None


def test_codex_parse_reconnect_then_success_is_fine() -> None:
    out = lines({"type": "thread.started", "thread_id": "t0"}, {"type": "turn.started"},
                {"type": "error", "message": "Reconnecting... 1/5 (stream disconnected)"},
                {"type": "turn.completed", "usage": {"input_tokens": 5, "output_tokens": 1}})
    usage = parse_codex_stream(out, 0, now=NOW)
    assert usage.error is None and not usage.rate_limited


def test_codex_parse_429_failure() -> None:
    out = lines(
        {"type": "thread.started", "thread_id": "t1"}, {"type": "turn.started"},
        {"type": "error", "message": "Reconnecting... 1/5 (last status: 429 Too Many Requests)"},
        {"type": "error", "message": "exceeded retry limit, last status: 429 Too Many Requests"},
        {"type": "turn.failed",
         "error": {"message": "exceeded retry limit, last status: 429 Too Many Requests"}},
    )
    usage = parse_codex_stream(out, 1, now=NOW)
    assert usage.rate_limited and usage.retry_after_s is None
    assert usage.session_id == "t1" and "429" in (usage.error or "")


def test_codex_parse_usage_limit_with_reset() -> None:
    out = lines({"type": "thread.started", "thread_id": "t2"},
                {"type": "turn.failed", "error": {
                    "message": "You've hit your usage limit. Upgrade to Pro or try again in "
                               "1 day 2 hours."}})
    usage = parse_codex_stream(out, 1, now=NOW)
    assert usage.rate_limited and usage.retry_after_s == 93600.0


def test_codex_parse_item_error_alone_is_not_fatal() -> None:
    out = CODEX_OK.replace('"type": "turn.started"}', '"type": "turn.started"}\n' + json.dumps(
        {"type": "item.completed", "item": {"id": "e", "type": "error", "message": "warn"}}))
    assert parse_codex_stream(out, 0, now=NOW).error is None


# --------------------------------------------------------------------------- gemini

GEMINI_OK = lines(
    {"type": "init", "timestamp": "2025-10-10T12:00:00.000Z",
     "session_id": "c25acda3-b51d-4bb1", "model": "gemini-2.5-pro"},
    {"type": "message", "role": "user", "content": "Write hello.txt"},
    {"type": "tool_use", "tool_name": "write_file", "tool_id": "write_file-1",
     "parameters": {"file_path": "hello.txt", "content": "hi"}},
    {"type": "tool_result", "tool_id": "write_file-1", "status": "success"},
    {"type": "message", "role": "assistant", "content": "Done.", "delta": True},
    {"type": "result", "status": "success",
     "stats": {"total_tokens": 1540, "input_tokens": 1500, "output_tokens": 40, "cached": 200,
               "duration_ms": 3000, "tool_calls": 1}},
)


def test_gemini_prepare_proxy(tmp_path: Path) -> None:
    request = make_request(tmp_path)
    settings = request.home / ".gemini" / "settings.json"
    settings.parent.mkdir()
    settings.write_text(json.dumps({"ui": {"theme": "x"}, "security": {"folderTrust": {}}}))
    config = cfg("gemini", base_url="http://127.0.0.1:8125/", api_key_env="MY_KEY")
    inv = GeminiAdapter().prepare(config, request)
    assert inv.argv == ("gemini", "-p", "Write hello.txt", "-o", "stream-json", "--skip-trust",
                        "--yolo", "-m", "gemini-2.5-pro")
    assert inv.env["GOOGLE_GEMINI_BASE_URL"] == "http://127.0.0.1:8125"
    assert inv.env["GEMINI_API_KEY"] == "sk-test-123"
    doc = json.loads(settings.read_text())
    assert doc["security"]["auth"]["selectedType"] == "gemini-api-key"
    assert doc["security"]["folderTrust"] == {} and doc["ui"] == {"theme": "x"}


def test_gemini_prepare_model_and_no_proxy(tmp_path: Path) -> None:
    request = make_request(tmp_path)
    inv = GeminiAdapter().prepare(cfg("gemini", model="gemini-2.5-flash"), request)
    assert inv.argv[-2:] == ("-m", "gemini-2.5-flash")
    assert "GOOGLE_GEMINI_BASE_URL" not in inv.env and "GEMINI_API_KEY" not in inv.env
    assert inv.env["GEMINI_CLI_NO_RELAUNCH"] == "true"
    doc = json.loads((request.home / ".gemini" / "settings.json").read_text())
    assert "security" not in doc
    assert doc["privacy"] == {"usageStatisticsEnabled": False}


def test_gemini_parse() -> None:
    usage = parse_gemini_stream(GEMINI_OK, 0, now=NOW)
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens) == (1500, 40, 200)
    assert usage.session_id == "c25acda3-b51d-4bb1" and usage.model == "gemini-2.5-pro"
    assert usage.error is None and usage.cost_usd is None


def test_gemini_parse_quota() -> None:
    message = ("[API Error: You exceeded your current quota. RESOURCE_EXHAUSTED. "
               "Please retry in 37.5s.]")
    out = lines(
        {"type": "init", "session_id": "g2", "model": "gemini-2.5-pro"},
        {"type": "error", "severity": "warning", "message": "Loop detected? no"},
        {"type": "error", "severity": "error", "message": message},
        {"type": "result", "status": "error",
         "error": {"type": "FatalTurnError", "message": message},
         "stats": {"input_tokens": 100, "output_tokens": 0}},
    )
    usage = parse_gemini_stream(out, 1, now=NOW)
    assert usage.rate_limited and usage.retry_after_s == 37.5
    assert usage.input_tokens == 100 and "RESOURCE_EXHAUSTED" in (usage.error or "")


# --------------------------------------------------------------------------- opencode

OPENCODE_OK = lines(
    {"type": "step_start", "timestamp": 1760000000000, "sessionID": "ses_6a1b2c3d",
     "part": {"id": "prt_1", "sessionID": "ses_6a1b2c3d", "type": "step-start"}},
    {"type": "tool_use", "timestamp": 1760000000100, "sessionID": "ses_6a1b2c3d",
     "part": {"id": "prt_2", "type": "tool", "tool": "write", "callID": "call_1",
              "state": {"status": "completed", "input": {"filePath": "/w/hello.txt"}}}},
    {"type": "step_finish", "timestamp": 1760000000200, "sessionID": "ses_6a1b2c3d",
     "part": {"id": "prt_3", "type": "step-finish", "reason": "tool-calls", "cost": 0.0021,
              "tokens": {"input": 1200, "output": 30, "reasoning": 0,
                         "cache": {"read": 0, "write": 100}}}},
    {"type": "step_start", "sessionID": "ses_6a1b2c3d", "part": {"type": "step-start"}},
    {"type": "text", "sessionID": "ses_6a1b2c3d", "part": {"type": "text", "text": "Done."}},
    {"type": "step_finish", "sessionID": "ses_6a1b2c3d",
     "part": {"type": "step-finish", "reason": "stop", "cost": 0.0009,
              "tokens": {"input": 1300, "output": 5, "reasoning": 0,
                         "cache": {"read": 1000, "write": 0}}}},
)


def test_opencode_prepare_provider(tmp_path: Path) -> None:
    request = make_request(tmp_path)
    config = cfg("opencode", model="qwen3-coder", base_url="http://127.0.0.1:8126/v1",
                 api_key_env="MY_KEY", options={"model_cost": {"input": 1.0, "output": 2.0}})
    inv = OpencodeAdapter().prepare(config, request)
    assert inv.argv == ("opencode", "run", "--format", "json", "--auto", "--print-logs",
                        "--log-level", "WARN", "-m", "taskmill/qwen3-coder", "Write hello.txt")
    path = request.home / ".config" / "opencode" / "opencode.json"
    assert inv.env["OPENCODE_CONFIG"] == str(path)
    assert inv.env["OPENCODE_DISABLE_MODELS_FETCH"] == "1"
    assert inv.env["MY_KEY"] == "sk-test-123"
    doc = json.loads(path.read_text())
    provider = doc["provider"]["taskmill"]
    assert provider["npm"] == "@ai-sdk/openai-compatible"
    assert provider["options"] == {"baseURL": "http://127.0.0.1:8126/v1", "apiKey": "{env:MY_KEY}"}
    assert provider["models"]["qwen3-coder"]["cost"] == {"input": 1.0, "output": 2.0}
    assert doc["model"] == "taskmill/qwen3-coder"
    assert "sk-test-123" not in path.read_text()


def test_opencode_prepare_plain_model(tmp_path: Path) -> None:
    inv = OpencodeAdapter().prepare(cfg("opencode", model="anthropic/claude-sonnet-4"),
                                    make_request(tmp_path))
    assert inv.argv[-3:] == ("-m", "anthropic/claude-sonnet-4", "Write hello.txt")
    assert "OPENCODE_DISABLE_MODELS_FETCH" not in inv.env


def test_opencode_parse() -> None:
    usage = parse_opencode_stream(OPENCODE_OK, 0, now=NOW)
    assert (usage.input_tokens, usage.output_tokens) == (2500, 35)
    assert (usage.cache_read_tokens, usage.cache_write_tokens) == (1000, 100)
    assert usage.cost_usd == pytest.approx(0.003)
    assert usage.session_id == "ses_6a1b2c3d" and usage.error is None


def test_opencode_parse_rate_limit_error() -> None:
    out = lines({"type": "error", "sessionID": "ses_x", "error": {
        "name": "APIError", "data": {"message": "Rate limit exceeded", "statusCode": 429}}})
    usage = parse_opencode_stream(out, 1, now=NOW)
    assert usage.rate_limited and usage.error == "Rate limit exceeded (HTTP 429)"
    assert usage.cost_usd is None


# --------------------------------------------------------------------------- qwen

QWEN_OK = lines(
    {"type": "system", "subtype": "init", "session_id": "qs-1", "cwd": "/w",
     "model": "qwen3-coder-plus", "permission_mode": "yolo", "qwen_code_version": "0.15.10"},
    {"type": "assistant", "session_id": "qs-1", "parent_tool_use_id": None,
     "message": {"id": "m1", "type": "message", "role": "assistant", "model": "qwen3-coder-plus",
                 "content": [{"type": "text", "text": "Done"}],
                 "usage": {"input_tokens": 900, "output_tokens": 12}}},
    {"type": "result", "subtype": "success", "session_id": "qs-1", "is_error": False,
     "num_turns": 1, "result": "Done",
     "usage": {"input_tokens": 900, "output_tokens": 12, "total_tokens": 912}},
)


def test_qwen_prepare(tmp_path: Path) -> None:
    request = make_request(tmp_path)
    config = cfg("qwen", model="qwen3-coder", base_url="http://127.0.0.1:8127",
                 api_key_env="MY_KEY", args=("--max-session-turns", "20"))
    inv = QwenAdapter().prepare(config, request)
    assert inv.argv == ("qwen", "--auth-type", "openai", "Write hello.txt", "-o", "stream-json",
                        "--yolo", "--max-session-turns", "20")
    assert inv.env["OPENAI_BASE_URL"] == "http://127.0.0.1:8127/v1"
    assert inv.env["OPENAI_API_KEY"] == "sk-test-123"
    assert inv.env["OPENAI_MODEL"] == "qwen3-coder"
    settings = json.loads((request.home / ".qwen" / "settings.json").read_text())
    assert settings["memory"] == {"enableManagedAutoMemory": False}
    assert settings["privacy"] == {"usageStatisticsEnabled": False}


def test_qwen_parse(tmp_path: Path) -> None:
    usage = QwenAdapter().parse(cfg("qwen"), make_request(tmp_path), QWEN_OK, 0)
    assert (usage.input_tokens, usage.output_tokens) == (900, 12)
    assert usage.session_id == "qs-1" and usage.model == "qwen3-coder-plus"
    assert usage.cost_usd is None and usage.error is None


# --------------------------------------------------------------------------- aider

AIDER_OK = """\
Aider v0.86.1
Model: openai/gpt-4o with diff edit format
Git repo: .git with 3 files
Repo-map: using 1024 tokens, auto refresh
I will add a rate limiter note.

hello.py
<<<<<<< SEARCH
=======
print("hi")
>>>>>>> REPLACE

Tokens: 2.3k sent, 1.1k cache write, 500 cache hit, 120 received. Cost: $0.0091 message, $0.0091 session.
Applied edit to hello.py
Tokens: 1,204 sent, 37 received. Cost: $0.0030 message, $0.0121 session.
Commit 1a2b3c4 feat: add hello
"""


def test_aider_prepare(tmp_path: Path) -> None:
    request = make_request(tmp_path)
    config = cfg("aider", model="qwen3-coder", base_url="http://127.0.0.1:8128/v1/",
                 api_key_env="MY_KEY")
    inv = AiderAdapter().prepare(config, request)
    argv = list(inv.argv)
    assert argv[:3] == ["aider", "--message", "Write hello.txt"]
    for flag in ("--yes-always", "--no-pretty", "--no-check-update", "--no-analytics",
                 "--no-gitignore"):
        assert flag in argv
    assert argv[argv.index("--model") + 1] == "openai/qwen3-coder"
    assert argv[argv.index("--openai-api-base") + 1] == "http://127.0.0.1:8128/v1"
    assert argv[argv.index("--chat-history-file") + 1].startswith(str(request.state_dir))
    assert "sk-test-123" not in argv
    assert inv.env["OPENAI_API_KEY"] == "sk-test-123"
    assert inv.env["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"


def test_aider_parse() -> None:
    usage = parse_aider_output(AIDER_OK, 0, now=NOW)
    assert (usage.input_tokens, usage.output_tokens) == (2300 + 1204, 157)
    assert (usage.cache_write_tokens, usage.cache_read_tokens) == (1100, 500)
    assert usage.cost_usd == 0.0121 and usage.model == "openai/gpt-4o"
    assert usage.error is None and not usage.rate_limited


def test_aider_parse_rate_limit() -> None:
    out = ("Model: openai/gpt-4o with whole edit format\n"
           "litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit reached for "
           "gpt-4o. Please try again in 20s.\nRetrying in 0.2 seconds...\n")
    usage = parse_aider_output(out, 1, now=NOW)
    assert usage.rate_limited and usage.retry_after_s == 20.0
    assert "RateLimitError" in (usage.error or "")


def test_aider_count() -> None:
    assert [aider_count(x) for x in ("2.3k", "1,204", "1.5M", "7", "?")] == [
        2300, 1204, 1_500_000, 7, 0]


# --------------------------------------------------------------------------- registry


def test_get_adapter_builtins() -> None:
    for name in ("exec", "claude", "codex", "gemini", "opencode", "qwen", "aider", "scripted"):
        assert get_adapter(name).name == name


def test_get_adapter_unknown_lists_names() -> None:
    with pytest.raises(UnknownAdapterError, match=r"unknown agent adapter 'nope'.*exec, claude"):
        get_adapter("nope")


def test_get_adapter_from_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = [metadata.EntryPoint(name="mycli", value="taskmill.agents.exec:ExecAdapter",
                               group=registry.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(registry, "_entry_points", lambda: eps)
    adapter = get_adapter("mycli")
    assert adapter.name == "exec"
    assert "mycli" in known_adapter_names()
    factory = [metadata.EntryPoint(name="fac", value="taskmill.agents.registry:ExecAdapter",
                                   group=registry.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(registry, "_entry_points", lambda: factory)
    assert get_adapter("fac").name == "exec"
    bad = [metadata.EntryPoint(name="bad", value="taskmill.agents.registry:ENTRY_POINT_GROUP",
                               group=registry.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(registry, "_entry_points", lambda: bad)
    with pytest.raises(UnknownAdapterError, match="not an adapter"):
        get_adapter("bad")
    broken = [metadata.EntryPoint(name="broken", value="no_such_module_xyz:Adapter",
                                  group=registry.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(registry, "_entry_points", lambda: broken)
    with pytest.raises(UnknownAdapterError, match="cannot load agent adapter 'broken'"):
        get_adapter("broken")


def test_builtin_names_do_not_touch_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom() -> list[metadata.EntryPoint]:
        raise AssertionError("entry points loaded for a built-in name")

    monkeypatch.setattr(registry, "_entry_points", boom)
    assert get_adapter("claude").name == "claude"


def test_agent_config_from_toml() -> None:
    table = {
        "adapter": "codex", "model": "gpt-5", "args": "--foo 'a b'", "env": {"X": "1", "N": 2},
        "pass_env": ["HTTPS_PROXY"], "base_url": "http://127.0.0.1:1/v1",
        "api_key_env": "KEY", "mcp": True, "sandbox": "workspace-write",
    }
    config = agent_config_from_toml("fast", table)
    assert config == AgentConfig(
        name="fast", adapter="codex", model="gpt-5", args=("--foo", "a b"),
        env={"X": "1", "N": "2"}, pass_env=("HTTPS_PROXY",), base_url="http://127.0.0.1:1/v1",
        api_key_env="KEY", mcp=True, options={"sandbox": "workspace-write"},
    )
    assert agent_config_from_toml("claude", {}).adapter == "claude"
    assert agent_config_from_toml("x", {"adapter": "exec", "command": "run-it --now"}).command == (
        "run-it", "--now")


@pytest.mark.parametrize(
    ("name", "table", "message"),
    [
        ("x", {}, r"\[agents.x\] needs adapter"),
        ("x", {"adapter": 3}, r"\[agents.x\] adapter must be a non-empty string"),
        ("x", {"adapter": "claude", "model": ""}, r"\[agents.x\] model must be"),
        ("x", {"adapter": "claude", "args": [1]}, r"\[agents.x\] args must be a list of strings"),
        ("x", {"adapter": "claude", "env": ["A"]}, r"\[agents.x\] env must be a table"),
        ("x", {"adapter": "claude", "env": {"A": {}}}, r"\[agents.x\] env.A must be a string"),
        ("x", {"adapter": "claude", "pass_env": "A"}, r"\[agents.x\] pass_env must be a list"),
        ("x", {"adapter": "claude", "base_url": "localhost"}, r"base_url must be an http"),
        ("x", {"adapter": "claude", "mcp": "yes"}, r"\[agents.x\] mcp must be true or false"),
        ("x", {"adapter": "exec"}, r"needs command"),
    ],
)
def test_agent_config_errors(name: str, table: dict[str, Any], message: str) -> None:
    with pytest.raises(AgentConfigError, match=message):
        agent_config_from_toml(name, table)


# --------------------------------------------------------------------------- scripted agent


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "wt"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty",
        "-m", "root")
    return path


SCRIPT = {
    "default_file": "unscripted.log",
    "tasks": {
        "T-7": {
            "1": {"files": {"src/hello.txt": "hello from $task_id\n"}, "commit": True,
                  "usage": {"input_tokens": 100, "output_tokens": 20, "cost_usd": 0.5},
                  "stdout": "working\n", "stderr": "a warning\n"},
            "*": {"append": {"src/hello.txt": "iteration $iteration\n"},
                  "commit": "fix: iteration $iteration", "exit_code": 0},
        },
        "greeting": [{"files": {"g.txt": "x"}}],
        "limit": {"usage": {"rate_limited": True, "retry_after_s": 60}, "exit_code": 1,
                  "error": "usage limit reached"},
        "slow": {"sleep": 30},
    },
}


def scripted_turn(tmp_path: Path, repo: Path, **kw: Any) -> tuple[TurnRequest, Any]:
    script = tmp_path / "script.json"
    script.write_text(json.dumps(SCRIPT))
    turn = tmp_path / f"turn-{kw.get('task_id', 'T-7')}-{kw.get('iteration', 1)}"
    request = make_request(
        tmp_path, worktree=repo, state_dir=turn, prompt_file=turn / "prompt.md",
        usage_file=turn / "usage.json", log_path=turn / "agent.log",
        parent_env={"PATH": os.environ["PATH"]}, taskmill_env={}, **kw)
    config = cfg("scripted", options={"script": str(script)})
    return request, run_turn(ScriptedAgent(), config, request, kill_grace_s=1.0)


def test_scripted_agent_end_to_end(tmp_path: Path, repo: Path) -> None:
    request, result = scripted_turn(tmp_path, repo, task_id="T-7", iteration=1)
    assert result.ok, result.usage.error
    assert (repo / "src" / "hello.txt").read_text() == "hello from T-7\n"
    assert git(repo, "status", "--porcelain") == ""
    assert "scripted: T-7 #1" in git(repo, "log", "-1", "--format=%s")
    assert (result.usage.input_tokens, result.usage.output_tokens) == (100, 20)
    assert result.usage.cost_usd == 0.5
    assert result.usage.session_id == "scripted-T-7-1" and result.usage.model == "scripted"
    assert request.log_path.read_text().startswith("working\n")
    assert stderr_path(request.log_path).read_text() == "a warning\n"

    _, result = scripted_turn(tmp_path, repo, task_id="T-7", iteration=3)
    assert result.ok
    assert (repo / "src" / "hello.txt").read_text() == "hello from T-7\niteration 3\n"
    assert git(repo, "log", "-1", "--format=%s").strip() == "fix: iteration 3"


def test_scripted_agent_title_match_default_and_limits(tmp_path: Path, repo: Path) -> None:
    _, result = scripted_turn(tmp_path, repo, task_id="T-9", title="Add a Greeting page")
    assert result.ok and (repo / "g.txt").read_text() == "x"

    _, result = scripted_turn(tmp_path, repo, task_id="T-10", title="Something else",
                              iteration=4)
    assert result.ok
    assert (repo / "unscripted.log").read_text() == "T-10 iteration 4\n"

    _, result = scripted_turn(tmp_path, repo, task_id="T-11", title="hit the limit")
    assert result.exit_code == 1 and result.usage.rate_limited
    assert result.usage.retry_after_s == 60.0
    assert result.usage.error == "usage limit reached"


def test_scripted_agent_sleep_times_out(tmp_path: Path, repo: Path) -> None:
    _, result = scripted_turn(tmp_path, repo, task_id="T-12", title="slow one", timeout_s=1.0)
    assert result.timed_out and not result.ok


def test_scripted_agent_prepare(tmp_path: Path) -> None:
    request = make_request(tmp_path, parent_env={"PATH": "/bin", "TASKMILL_SCRIPT": "/s.json"})
    inv = ScriptedAgent(python="/usr/bin/python3").prepare(cfg("scripted"), request)
    assert inv.argv == ("/usr/bin/python3", "-m", "taskmill.agents.scripted_main")
    assert inv.env["TASKMILL_SCRIPT"] == "/s.json"
    assert inv.env["TASKMILL_ITERATION"] == "2" and inv.env["TASKMILL_TASK_TITLE"] == (
        "Add a greeting")
    assert inv.stdin == "Write hello.txt"
    assert sys.executable == ScriptedAgent().python


# --------------------------------------------------------------------------- recorded output
# Trimmed from real runs of the pinned CLIs through these adapters and run_turn against
# taskmill.testing.fake_model (one write-file tool call, then "Done."; or HTTP 429 forever).

CLAUDE_REAL_429 = "\n".join([
    '{"type":"system","subtype":"init","cwd":"/w","session_id":"3c0e9bbb","tools":["Bash","Edit"'
    ',"Write"],"mcp_servers":[],"model":"claude-sonnet-4-5","permissionMode":"bypassPermissions",'
    '"apiKeySource":"ANTHROPIC_API_KEY","claude_code_version":"2.1.197"}',
    '{"type":"system","subtype":"api_retry","attempt":1,"max_retries":1,"retry_delay_ms":30000,'
    '"error_status":429,"error":"rate_limit","session_id":"3c0e9bbb"}',
    '{"type":"assistant","message":{"id":"5e1b2a34","model":"<synthetic>","role":"assistant",'
    '"stop_reason":"stop_sequence","type":"message","usage":{"input_tokens":0,"output_tokens":0,'
    '"cache_creation_input_tokens":0,"cache_read_input_tokens":0},"content":[{"type":"text","text"'
    ':"API Error: Request rejected (429) \\u00b7 Rate limit exceeded, slow down"}]},'
    '"parent_tool_use_id":null,"session_id":"3c0e9bbb","error":"rate_limit"}',
    '{"type":"result","subtype":"success","is_error":true,"api_error_status":429,"duration_ms":'
    '30232,"num_turns":1,"result":"API Error: Request rejected (429) \\u00b7 Rate limit exceeded,'
    ' slow down","session_id":"3c0e9bbb","total_cost_usd":0,"usage":{"input_tokens":0,'
    '"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0},'
    '"modelUsage":{},"permission_denials":[],"terminal_reason":"completed"}',
]) + "\n"


def test_claude_real_429_transcript() -> None:
    usage = parse_claude_stream(CLAUDE_REAL_429, 1, now=NOW)
    assert usage.rate_limited and usage.retry_after_s == 30.0
    assert usage.model == "claude-sonnet-4-5"  # not "<synthetic>"
    assert usage.error is not None and "Rate limit exceeded" in usage.error
    assert not usage.error.startswith("success")


CODEX_REAL = "\n".join([
    '{"type":"thread.started","thread_id":"01a1fe5c-7b57-7992-a8bf-2295f173df83"}',
    '{"type":"item.completed","item":{"id":"item_0","type":"error","message":"Model metadata for'
    ' `gpt-5-codex` not found. Defaulting to fallback metadata; this can degrade performance and'
    ' cause issues."}}',
    '{"type":"turn.started"}',
    '{"type":"item.started","item":{"id":"item_1","type":"command_execution","command":"/bin/bash'
    ' -lc \\"cat > hello.txt\\"","aggregated_output":"","exit_code":null,"status":"in_progress"}}',
    '{"type":"item.completed","item":{"id":"item_2","type":"agent_message","text":"Done."}}',
    '{"type":"turn.completed","usage":{"input_tokens":2100,"cached_input_tokens":0,'
    '"cache_write_input_tokens":7,"output_tokens":55,"reasoning_output_tokens":0}}',
]) + "\n"

CODEX_REAL_429 = "\n".join([
    '{"type":"thread.started","thread_id":"01a1fe5c-851b"}',
    '{"type":"turn.started"}',
    *[f'{{"type":"error","message":"Reconnecting... {n}/5 (exceeded retry limit, last status:'
      f' 429 Too Many Requests)"}}' for n in (1, 2, 3, 4)],
])  # killed at the deadline: no newline at the end, no turn.failed


def test_codex_real_transcripts() -> None:
    usage = parse_codex_stream(CODEX_REAL, 0, now=NOW)
    assert (usage.input_tokens, usage.output_tokens, usage.cache_write_tokens) == (2100, 55, 7)
    assert usage.error is None and usage.session_id == "01a1fe5c-7b57-7992-a8bf-2295f173df83"
    usage = parse_codex_stream(CODEX_REAL_429, -15, now=NOW)
    assert usage.rate_limited
    assert usage.error == ("Reconnecting... 4/5 (exceeded retry limit, last status: 429 Too "
                           "Many Requests)")


GEMINI_REAL_STDERR_429 = """\
Warning: Basic terminal detected (TERM=dumb). Visual rendering will be limited.
YOLO mode is enabled. All tool calls will be automatically approved.
Attempt 1 failed: Rate limit exceeded, slow down
Suggested retry after 30s.. Retrying after 34118ms...
Attempt 2 failed: Rate limit exceeded, slow down
"""


def test_gemini_real_429_is_only_on_stderr(tmp_path: Path) -> None:
    request = make_request(tmp_path)
    stderr_path(request.log_path).write_text(GEMINI_REAL_STDERR_429)
    out = ('{"type":"init","timestamp":"2026-11-21T13:50:09.739Z","session_id":"df5f6a05",'
           '"model":"gemini-2.5-pro"}\n{"type":"message","role":"user","content":"Create"}\n')
    # Gemini exits 0 on SIGTERM: the runner's timed_out says what happened
    usage = GeminiAdapter(wall_clock=lambda: NOW).parse(cfg("gemini"), request, out, 0)
    assert usage.rate_limited and usage.retry_after_s == 30.0
    assert usage.session_id == "df5f6a05"


OPENCODE_REAL_STDERR_429 = (
    'timestamp=2026-11-21T13:53:53.313Z level=ERROR run=2ded3583 message="stream error" '
    'providerID=taskmill modelID=fake-model session.id=ses_e019d8275ffe small=false agent=build '
    'mode=primary error.error="AI_APICallError: Rate limit exceeded, slow down"\n'
)


def test_opencode_real_429_is_only_in_the_logs(tmp_path: Path) -> None:
    request = make_request(tmp_path)
    stderr_path(request.log_path).write_text(OPENCODE_REAL_STDERR_429)
    usage = OpencodeAdapter(wall_clock=lambda: NOW).parse(cfg("opencode"), request, "", -15)
    assert usage.rate_limited
    assert usage.error == "the output ended without a step_finish event"


QWEN_REAL = "\n".join([
    '{"type":"system","subtype":"init","uuid":"07024559","session_id":"07024559","cwd":"/w",'
    '"tools":["write_file","run_shell_command"],"mcp_servers":[],"model":"fake-model",'
    '"permission_mode":"yolo","qwen_code_version":"0.15.10"}',
    '{"type":"assistant","uuid":"5f36029d","session_id":"07024559","parent_tool_use_id":null,'
    '"message":{"id":"5f36029d","type":"message","role":"assistant","model":"fake-model",'
    '"content":[{"type":"tool_use","id":"call_1","name":"write_file","input":{"file_path":'
    '"/w/hello.txt","content":"hello\\n"}}],"stop_reason":"tool_use","usage":{"input_tokens":1000,'
    '"output_tokens":50,"cache_read_input_tokens":0,"total_tokens":1050}}}',
    '{"type":"result","subtype":"success","uuid":"dd730dde","session_id":"07024559","is_error":'
    'false,"duration_ms":1161,"num_turns":2,"result":"Done.","usage":{"input_tokens":2100,'
    '"output_tokens":55,"cache_read_input_tokens":0,"total_tokens":2155},"permission_denials":[]}',
]) + "\n"


def test_qwen_real_transcript(tmp_path: Path) -> None:
    usage = QwenAdapter().parse(cfg("qwen"), make_request(tmp_path), QWEN_REAL, 0)
    assert (usage.input_tokens, usage.output_tokens) == (2100, 55)
    assert usage.session_id == "07024559" and usage.model == "fake-model"
    assert usage.error is None and usage.cost_usd is None


# --------------------------------------------------------------------------- real CLIs

REAL_SCRIPT = {"turn": [{"reply": [
    {"tool": "write_file", "path": "hello.txt", "content": "hello from the fake model\n",
     "usage": {"input_tokens": 1000, "output_tokens": 50}},
    {"text": "Done.", "usage": {"input_tokens": 1100, "output_tokens": 5}},
]}]}
REAL_MODELS = {"claude": "claude-sonnet-4-5", "codex": "gpt-5.5", "gemini": None,
               "opencode": "fake-model", "qwen": "fake-model"}


def unsandboxed_root_env(name: str) -> dict[str, str]:
    """Claude Code refuses its bypass mode as root unless IS_SANDBOX=1, which taskmill sets
    only for sandboxed turns; this test runs the CLI through run_turn alone (no sandbox), on
    a throw-away test machine, so it says so itself."""
    return {"IS_SANDBOX": "1"} if name == "claude" and os.geteuid() == 0 else {}


@pytest.mark.agents
@pytest.mark.slow
@pytest.mark.parametrize("name", list(REAL_MODELS))
def test_real_cli_through_adapter_and_runner(name: str, tmp_path: Path, repo: Path) -> None:
    """The adapter's command line, env and config files drive the real CLI through run_turn."""
    from taskmill.testing import agent_install
    from taskmill.testing.fake_model import FakeModelServer

    binary = agent_install.find_agent(name)
    if binary is None:
        pytest.skip(f"{name} not installed: python -m taskmill.testing.agent_install {name}")
    turn = tmp_path / "turn"
    request = make_request(
        tmp_path, worktree=repo, prompt="Create hello.txt.", state_dir=turn / "state",
        prompt_file=turn / "prompt.md", usage_file=turn / "usage.json",
        log_path=turn / "agent.log", timeout_s=120.0,
        parent_env={"PATH": os.environ["PATH"], "FAKE_KEY": "sk-fake"})
    with FakeModelServer(REAL_SCRIPT, log_path=tmp_path / "requests.ndjson") as server:
        config = AgentConfig(name=name, adapter=name, command=(str(binary),),
                             model=REAL_MODELS[name], base_url=server.url,
                             api_key_env="FAKE_KEY", env=unsandboxed_root_env(name))
        result = run_turn(get_adapter(name), config, request)
    report = f"{result}\n{request.log_path.read_text()[-3000:]}\n" + stderr_path(
        request.log_path).read_text()[-3000:]
    assert result.ok, report
    assert (repo / "hello.txt").read_text() == "hello from the fake model\n", report
    usage = result.usage
    assert (usage.input_tokens, usage.output_tokens) == (2100, 55), report
    assert usage.session_id and usage.error is None and not usage.rate_limited, report
