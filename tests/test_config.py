"""``.taskmill/config.toml`` is checked whole, at load, by every command that loads it; task
agents are checked where they are set (create, update, plan import)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from taskmill.agents import registry
from taskmill.config import AGENT_KEYS, BUILTIN_AGENTS, config_from_toml, load_config
from taskmill.config_schema import ADAPTER_TABLES, AgentTable, RunTable
from taskmill.errors import ConfigError
from taskmill.mill.settings import RunSettings

HEADER = 'prefix = "tm"\n'

# (name, config text after the prefix line, words the message must contain: table, key, ...)
BAD_CONFIGS = [
    ("unknown adapter", '[agents.x]\nadapter = "cluade"\n',
     ["[agents.x]", "adapter", "'cluade'", "did you mean 'claude'", "known adapters: exec"]),
    ("workers many", '[run]\nworkers = "many"\n',
     ["[run]", "workers", "must be an integer", "'many'"]),
    ("agent table misspelled", '[agent.x]\nadapter = "claude"\n',
     ["[agent]", "not a known table", "did you mean [agents.NAME]"]),
    ("bogus table", "[bogus]\nx = 1\n",
     ["[bogus]", "not a known table", "prefix, [checks], [run], [sandbox], [agents.NAME]"]),
    ("run key typo", "[run]\nmax_iteration = 3\n",
     ["[run]", "'max_iteration'", "did you mean 'max_iterations'", "valid keys: target"]),
    ("agent key wrong type", '[agents.c]\nadapter = "claude"\nmcp = "yes"\n',
     ["[agents.c]", "mcp", "must be true or false", "'yes'"]),
]


def write_config(repo: Path, body: str) -> Path:
    path = repo / ".taskmill" / "config.toml"
    path.write_text(HEADER + body, encoding="utf-8")
    return path


def problem(tmp_path: Path, body: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(HEADER + body, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.code == "config_invalid"
    assert info.value.message.startswith(f"{path}: ")
    assert "\n" not in info.value.message
    return info.value.message


# -- the CLI: every command that loads the config refuses a bad one --------------------------


@pytest.mark.parametrize(("name", "body", "words"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
@pytest.mark.parametrize("command", [["run", "--agent-cmd", "true"], ["ready"], ["list"]],
                         ids=["run", "ready", "list"])
def test_a_bad_config_is_one_clear_error_for_every_command(
        cli: Callable[..., Any], taskmill_repo: Path, name: str, body: str, words: list[str],
        command: list[str]) -> None:
    path = write_config(taskmill_repo, body)
    result = cli(*command, "--json", cwd=taskmill_repo)
    assert result.exception is None, result.exception
    assert result.exit_code == 2, (result.stdout, result.stderr)
    error = result.error()
    assert error["code"] == "config_invalid"
    assert error["message"].startswith(f"{path}: ")
    assert "\n" not in error["message"]
    for word in words:
        assert word in error["message"], (word, error["message"])
    plain = cli(*command, cwd=taskmill_repo)
    assert plain.exit_code == 2
    assert plain.stderr.splitlines()[0] == f"error: {error['message']}"
    assert "Traceback" not in plain.stderr


def test_every_problem_of_the_file_is_reported_at_once(tmp_path: Path) -> None:
    message = problem(tmp_path, '[run]\nworkers = 0\nturn_timeout = "1h"\n[agents.x]\n'
                                'adapter = "codex"\npermission_mode = "plan"\n[bogus]\n')
    assert "[run] workers must be at least 1, got 0" in message
    assert "[run] turn_timeout must be a number, got '1h'" in message
    assert ("[agents.x] has an unknown key 'permission_mode' for adapter 'codex' (an option of"
            " adapter claude)") in message
    assert "[bogus] is not a known table" in message


@pytest.mark.parametrize(("body", "words"), [
    ("prefix2 = 1\n", ["prefix2 is not a known table or key", "did you mean prefix"]),
    ('[checks]\ncommand = ["pytest"]\n', ["[checks] has an unknown key 'command'",
                                          "did you mean 'commands'"]),
    ("[checks]\ncommands = [1]\n", ["[checks] commands[0] must be a string, got 1"]),
    ("[checks]\nenv = {A = true}\n", ["[checks] env.A must be a string (or number), got True"]),
    ('[checks]\npass_env = "HOME"\n', ["[checks] pass_env must be a list, got 'HOME'"]),
    ('[run]\nallow_unchecked = "yes"\n', ["[run] allow_unchecked must be true or false"]),
    ("[run]\ngrace = -1\n", ["[run] grace must be at least 0"]),
    ("[run]\ncontain = 3\n", ["[run] contain is invalid", "'auto', 'pidns' or 'group'"]),
    ('[run]\ncontain = "cgroup"\n', ["[run] contain is invalid",
                                     "'auto', 'pidns' or 'group'"]),
    ('[run]\nagent = "cluade"\n', ["[run] agent 'cluade' is neither", "did you mean 'claude'"]),
    ("[agents.x]\nmodel = 'm'\n", ["[agents.x] needs adapter = one of exec, claude"]),
    ("[agents.x]\nadapter = 'exec'\n", ["[agents.x] uses adapter \"exec\" and needs command"]),
    ("[agents.claude]\npermision_mode = 'plan'\n",
     ["[agents.claude] has an unknown key 'permision_mode' for adapter 'claude'",
      "did you mean 'permission_mode'"]),
    ("[agents.claude]\nmax_turns = 'ten'\n", ["[agents.claude] max_turns must be an integer"]),
    ("[agents.claude]\nargs = 'a \"b'\n", ["[agents.claude] args is not a valid command line"]),
    ("[agents.o]\nadapter = 'opencode'\nmodel_cost = {input = 'x'}\n",
     ["[agents.o] model_cost.input must be a number, got 'x'"]),
    ("[agents]\nclaude = 'sonnet'\n", ["[agents.claude] must be a table, got 'sonnet'"]),
    ('prefix = ""\n', ["prefix must be a non-empty string"]),
])
def test_problems_name_table_and_key(tmp_path: Path, body: str, words: list[str]) -> None:
    text = body if body.startswith("prefix =") else HEADER + body
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    for word in words:
        assert word in info.value.message, (word, info.value.message)


def test_a_full_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(HEADER + """
[checks]
commands = ["python -m pytest -q"]
env = {PYTHONPATH = "src", N = 2}
pass_env = ["HOME"]

[run]
agent = "fast"
max-iterations = 3
workers = 2
turn_timeout = 600
allow_unchecked = true
grace = 5
contain = "auto"

[agents.fast]
adapter = "claude"
model = "sonnet"
args = "--verbose 'a b'"
env = {X = "1", N = 2}
permission_mode = "acceptEdits"
allowed_tools = ["Bash"]
max_turns = 10
mcp = true
mcp_command = ["taskmill", "mcp"]

[agents.cx]
adapter = "codex"
codex_config = {model_reasoning_effort = "low"}
sandbox = "workspace-write"
base_url = "http://127.0.0.1:1/v1"
api_key_env = "KEY"
codex_provider = {wire_api = "chat"}

[agents.oc]
adapter = "opencode"
model_cost = {input = 3, output = 15.0}
provider_npm = "@ai-sdk/openai-compatible"

[agents.sh]
adapter = "exec"
command = ["./agent.sh", "--fast"]
pass_env = ["HTTPS_PROXY"]

[agents.robot]
adapter = "scripted"
script = "script.json"
python = "python3"

[agents.gemini]
[agents.qwen]
[agents.aider]
""", encoding="utf-8")
    config = load_config(path)
    assert config.checks == ["python -m pytest -q"]
    assert config.check_env == {"PYTHONPATH": "src", "N": "2"}
    assert config.check_pass_env == ["HOME"]
    assert config.run == {"agent": "fast", "max_iterations": 3, "workers": 2,
                          "turn_timeout": 600, "allow_unchecked": True, "grace": 5,
                          "contain": "auto"}
    settings = RunSettings.from_config(config.run, {"workers": 5})
    assert (settings.workers, settings.max_iterations, settings.grace) == (5, 3, 5)
    fast = config.agents["fast"]
    assert (fast.adapter, fast.args, fast.env, fast.mcp) == (
        "claude", ("--verbose", "a b"), {"X": "1", "N": "2"}, True)
    assert fast.options == {"permission_mode": "acceptEdits", "allowed_tools": ["Bash"],
                            "max_turns": 10, "mcp_command": ["taskmill", "mcp"]}
    assert config.agents["sh"].command == ("./agent.sh", "--fast")
    assert config.agents["oc"].options["model_cost"] == {"input": 3, "output": 15.0}
    assert config.agents["gemini"].adapter == "gemini"
    # the adapters take what the file gives them
    assert registry.agent_config_from_toml("fast", config.raw["agents"]["fast"]) == fast


def test_old_spellings_still_load(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(HEADER + 'checks = ["make test"]\n[run]\nmax-iterations = 2\n',
                    encoding="utf-8")
    config = load_config(path)
    assert (config.checks, config.run) == (["make test"], {"max_iterations": 2})


def test_a_third_party_adapter_takes_any_key(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    ep = metadata.EntryPoint(name="mycli", value="mypkg:Adapter", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "_entry_points", lambda: [ep])
    path = tmp_path / "config.toml"
    path.write_text(HEADER + '[agents.m]\nadapter = "mycli"\nflavour = "x"\nmodel = "m1"\n',
                    encoding="utf-8")
    agent = load_config(path).agents["m"]
    assert (agent.adapter, agent.model, agent.options) == ("mycli", "m1", {"flavour": "x"})
    path.write_text(HEADER + '[agents.m]\nadapter = "mycli"\nmodel = 1\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[agents.m\] model must be a string, got 1"):
        load_config(path)


# -- the schema stays in step with what it describes -----------------------------------------


def test_run_table_has_every_run_setting() -> None:
    assert set(RunTable.model_fields) == {f.name for f in dataclasses.fields(RunSettings)}


def test_agent_tables_match_the_adapters() -> None:
    assert set(ADAPTER_TABLES) == set(registry.BUILTIN)
    assert set(BUILTIN_AGENTS) <= set(registry.BUILTIN)
    assert tuple(AgentTable.model_fields) == AGENT_KEYS


# -- skipping the check of an unchanged file -------------------------------------------------


def test_an_unchanged_file_is_not_checked_again(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    stamp = tmp_path / "run" / "config.checked"
    path.write_text(HEADER + "[run]\nworkers = 2\n", encoding="utf-8")
    assert load_config(path, stamp=stamp).run == {"workers": 2}
    assert stamp.is_file()
    # any change is checked again, whatever the stamp says
    path.write_text(HEADER + '[run]\nworkers = "many"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="workers must be an integer"):
        load_config(path, stamp=stamp)
    # a file naming an installed (third-party) adapter is always checked
    path.write_text(HEADER + '[agents.m]\nadapter = "mycli"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="'mycli' is not a known adapter"):
        load_config(path, stamp=stamp)
    assert config_from_toml({"prefix": "tm"}).prefix == "tm"


def test_read_commands_do_not_import_pydantic_for_an_unchanged_config(
        taskmill_repo: Path) -> None:
    def imported() -> set[str]:
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "taskmill", "ready",
                               "--json"], capture_output=True, text=True, check=True,
                              cwd=taskmill_repo)
        return {line.rsplit("|", 1)[-1].strip().split(".")[0]
                for line in proc.stderr.splitlines() if line.startswith("import time:")}

    write_config(taskmill_repo, "[run]\nworkers = 3\n")
    assert "pydantic" in imported()  # checked once
    assert "pydantic" not in imported()  # then remembered


# -- agents named by tasks ------------------------------------------------------------------


def test_create_and_update_refuse_an_unknown_agent(cli: Callable[..., Any],
                                                   taskmill_repo: Path) -> None:
    write_config(taskmill_repo, '[agents.robot]\nadapter = "exec"\ncommand = ["true"]\n')
    result = cli("create", "A task", "--agent", "robto", "--json", cwd=taskmill_repo)
    assert result.exit_code == 2
    error = result.error()
    assert error["code"] == "invalid"
    assert "agent 'robto' is neither an [agents.robto] table" in error["message"]
    assert "did you mean 'robot'?" in error["message"]
    assert "robot, claude, codex" in error["message"]
    assert cli("list", "--json", cwd=taskmill_repo).ok().json() == []  # nothing created

    for agent in ("robot", "claude"):
        created = cli("create", f"by {agent}", "--agent", agent, "--json",
                      cwd=taskmill_repo).ok().json()
        assert created["agent"] == agent
    tid = created["id"]
    result = cli("update", tid, "--agent", "nosuch", "--json", cwd=taskmill_repo)
    assert result.exit_code == 2 and "agent 'nosuch' is neither" in result.error()["message"]
    assert cli("show", tid, "--json", cwd=taskmill_repo).ok().json()["agent"] == "claude"
    cli("update", tid, "--agent", "robot", cwd=taskmill_repo).ok()
    cli("update", tid, "--agent", "", cwd=taskmill_repo).ok()
    assert cli("show", tid, "--json", cwd=taskmill_repo).ok().json()["agent"] is None


def test_plan_import_refuses_an_unknown_agent(cli: Callable[..., Any],
                                              taskmill_repo: Path) -> None:
    plan = taskmill_repo / "plan.toml"
    plan.write_text('[[task]]\nkey = "a"\ntitle = "A"\nagent = "claude"\n\n'
                    '[[task]]\nkey = "b"\ntitle = "B"\nagent = "codx"\n', encoding="utf-8")
    result = cli("import", str(plan), "--json", cwd=taskmill_repo)
    assert result.exit_code == 2
    error = result.error()
    assert error["code"] == "plan_invalid"
    assert error["message"].startswith(f"{plan}, line 9: task 'b': agent 'codx' is neither")
    assert "did you mean 'codex'?" in error["message"]
    assert cli("list", "--json", cwd=taskmill_repo).ok().json() == []  # nothing imported

    plan.write_text('[defaults]\nagent = "nosuch"\n\n[[task]]\nkey = "a"\ntitle = "A"\n',
                    encoding="utf-8")
    result = cli("import", str(plan), "--json", cwd=taskmill_repo)
    assert result.exit_code == 2
    assert "line 2: [defaults]: agent 'nosuch' is neither" in result.error()["message"]

    plan.write_text('[defaults]\nagent = "claude"\n\n[[task]]\nkey = "a"\ntitle = "A"\n',
                    encoding="utf-8")
    keys = cli("import", str(plan), "--json", cwd=taskmill_repo).ok().json()
    assert cli("show", keys["a"], "--json", cwd=taskmill_repo).ok().json()["agent"] == "claude"


def test_run_refuses_an_unknown_default_agent(cli: Callable[..., Any],
                                              taskmill_repo: Path) -> None:
    result = cli("run", "--agent", "cluade", "--json", cwd=taskmill_repo)
    assert result.exit_code == 2
    assert "did you mean 'claude'?" in json.dumps(result.error())
