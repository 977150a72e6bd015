"""What a check sees and what taskmill believes (issue 8, items 11-14): check output without
terminal escape codes in prompts and the dashboard, a clean environment for checks (not
taskmill's, not its virtualenv), check commands validated before the first turn, tasks
without any checks refused unless the user opts in, and agent-reported usage validated so
that budgets hold."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mill_helpers import MillRepo, agent_script
from taskmill.agents.base import Usage
from taskmill.agents.claude import parse_claude_stream
from taskmill.agents.codex import parse_codex_stream
from taskmill.agents.common import invalid_usage_message, validate_usage
from taskmill.agents.envs import clean_path
from taskmill.agents.runner import merge_usage_file
from taskmill.mill.check_env import (
    CheckGuard,
    check_env,
    command_name,
    editable_installs_of_checkout,
    not_found_in_output,
)
from taskmill.mill.checks import run_checks, strip_terminal_codes

VARYING_FAILURE = "echo \"not yet, nonce $(date +%N)$$\"; exit 1"
APP_JS = Path(__file__).resolve().parent.parent / "src" / "taskmill" / "web" / "static" / "app.js"


def configure(repo: MillRepo, *, commands: list[str] | None = None,
              env: dict[str, str] | None = None, pass_env: list[str] | None = None,
              run: dict[str, Any] | None = None) -> None:
    """Rewrite and commit .taskmill/config.toml with a [checks] table."""
    lines = ['prefix = "tm"', "", "[checks]", f"commands = {json.dumps(commands or [])}"]
    if env is not None:
        lines.append("env = { " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in env.items())
                     + " }")
    if pass_env is not None:
        lines.append(f"pass_env = {json.dumps(pass_env)}")
    lines += ["", "[run]"] + [f"{k} = {json.dumps(v)}" for k, v in (run or {}).items()]
    lines += ["", "[sandbox]"] + [f"{k} = {json.dumps(v)}" for k, v in repo.sandbox.items()]
    (repo.root / ".taskmill" / "config.toml").write_text("\n".join(lines) + "\n",
                                                        encoding="utf-8")
    repo.git("commit", "-q", "-am", "config")


def blocked_comment(repo: MillRepo, task_id: str) -> str:
    task = repo.task(task_id)
    assert task["status"] == "blocked", task
    texts = [c["text"] for c in task["comments"] if "taskmill blocked" in c["text"]]
    assert len(texts) == 1, task["comments"]
    return str(texts[0])


def calls(repo: MillRepo, task_id: str) -> int:
    folder = repo.spy / f"calls-{task_id}"
    return len(list(folder.iterdir())) if folder.exists() else 0


def read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


# -- 11. terminal escape codes ------------------------------------------------------------------

ESCAPED = ("\x1b[1m\x1b[31mFAILED\x1b[0m test_x\r\n\x1b]0;window title\x07ok "
           "\x1b]8;;http://example.com\x1b\\link\x1b]8;;\x1b\\ \x9b32mgreen\x1b(B\tend\x00\x07\x1b")
PLAIN = "FAILED test_x\nok link green\tend"


def test_strip_terminal_codes() -> None:
    assert strip_terminal_codes(ESCAPED) == PLAIN
    assert strip_terminal_codes("plain\ttext\nline two\n") == "plain\ttext\nline two\n"
    assert strip_terminal_codes("a\x1b[38;2;255;0;0mb\x1b[Kc\x1b[2Jd") == "abcd"
    # unterminated sequences and lone C1 controls do not take the text with them
    assert strip_terminal_codes("x\x1b]unterminated\nrest") == "xunterminated\nrest"
    assert strip_terminal_codes("\x9d" * 10_000 + "end") == "end"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_page_strips_the_same_codes() -> None:
    """The dashboard's own regular expression (app.js), run by node on the same input."""
    source = next(line for line in APP_JS.read_text(encoding="utf-8").splitlines()
                  if line.startswith("const TERMINAL_CODES = "))
    script = (source + "\nconst input = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
              "\nprocess.stdout.write(JSON.stringify(input.replace(TERMINAL_CODES, '')));")
    proc = subprocess.run(["node", "-e", script], input=json.dumps(ESCAPED),
                          capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout) == PLAIN


def test_check_output_keeps_colours_in_the_log_only(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / "n.txt").write_text(str(ITER))
        if ITER == 2:
            (WT / "done.txt").write_text("x")
    """, spy=repo.spy)
    check = ("printf '\\033[1m\\033[31mFAILED\\033[0m test_value: n is %s\\r\\n' \"$(cat n.txt)\"; "
             "test -f done.txt")
    repo.create("tm-c", checks=[check])

    result = repo.run("--agent-cmd", cmd)

    assert result.returncode == 0, result.describe()
    second = (repo.spy / "prompt-tm-c-2.stdin").read_text()
    assert "FAILED test_value: n is 1" in second
    assert "\x1b" not in second and "\r" not in second
    first = repo.attempts("tm-c")[0]
    assert first["outcome"] == "failed"
    assert "FAILED test_value: n is 1" in first["detail"]["failure"]
    for stored in (first["detail"]["failure"], first["detail"]["checks"][0]["output_tail"]):
        assert "\x1b" not in stored and "\r" not in stored, stored
    # the raw log file is as the check wrote it
    log = Path(first["log_path"]).with_suffix(".checks.log").read_bytes()
    assert b"\x1b[31mFAILED\x1b[0m test_value: n is 1\r\n" in log


# -- 12. the checks' environment -------------------------------------------------------------


def test_clean_path_drops_taskmills_virtualenv(tmp_path: Path) -> None:
    parent = {"PATH": f"/venvs/tm/bin:/usr/local/bin:{tmp_path}/active/bin:/usr/bin:/bin",
              "VIRTUAL_ENV": f"{tmp_path}/active"}
    assert clean_path(parent, prefix="/venvs/tm", base_prefix="/usr") == "/usr/local/bin:/usr/bin:/bin"
    # not in a virtualenv: only $VIRTUAL_ENV goes
    assert clean_path(parent, prefix="/usr", base_prefix="/usr") == \
        "/venvs/tm/bin:/usr/local/bin:/usr/bin:/bin"
    env = check_env(parent, env={"SET": "1"}, pass_env=["VIRTUAL_ENV", "PATH", "HOME"])
    assert "VIRTUAL_ENV" not in env and env["SET"] == "1"
    assert f"{tmp_path}/active/bin" not in env["PATH"].split(":")


def test_checks_and_agents_get_a_clean_environment_not_taskmills(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    dump = f"env > {repo.spy}/check-env-$CHECK_WHERE.txt"
    configure(repo, commands=[dump.replace("$CHECK_WHERE", "merge")],
              env={"FROM_CONFIG": "yes"}, pass_env=["PASSED_ON", "NOT_SET_ANYWHERE"])
    cmd = agent_script(tmp_path / "agent.py", """
        save("agent-env.json", json.dumps(dict(os.environ)))
        (WT / "out.txt").write_text("x")
    """, spy=repo.spy)
    repo.create("tm-e", checks=[dump.replace("$CHECK_WHERE", "task")])
    fake_venv = tmp_path / "active-venv"
    (fake_venv / "bin").mkdir(parents=True)
    own_bin = str(Path(sys.prefix) / "bin")  # the interpreter taskmill runs in (a venv here)
    assert sys.prefix != sys.base_prefix, "these tests run taskmill from a virtualenv"
    parent_env = {"SECRET_TOKEN": "s3cr3t", "PASSED_ON": "passed", "VIRTUAL_ENV": str(fake_venv),
                  "PATH": f"{fake_venv}/bin:{own_bin}:{os.environ['PATH']}"}

    result = repo.run("--agent-cmd", cmd, env=parent_env)

    assert result.returncode == 0, result.describe()
    for where in ("task", "merge"):  # the task's checks and the merge queue's
        env = read_env(repo.spy / f"check-env-{where}.txt")
        assert "SECRET_TOKEN" not in env and "VIRTUAL_ENV" not in env, (where, env)
        path = env["PATH"].split(":")
        assert f"{fake_venv}/bin" not in path and own_bin not in path, (where, path)
        assert "/usr/bin" in path
        assert env["FROM_CONFIG"] == "yes" and env["PASSED_ON"] == "passed"
        assert "NOT_SET_ANYWHERE" not in env
        assert env["HOME"] == os.environ["HOME"] and env["NO_COLOR"] == "1"
    agent_env = json.loads((repo.spy / "agent-env.json").read_text())
    assert "VIRTUAL_ENV" not in agent_env and "SECRET_TOKEN" not in agent_env
    agent_path = agent_env["PATH"].split(":")
    assert f"{fake_venv}/bin" not in agent_path and own_bin not in agent_path


def test_a_same_size_edit_is_seen_by_the_next_check_and_no_bytecode_is_left(
        tmp_path: Path) -> None:
    """Python's .pyc check compares mtime (whole seconds) and size: without
    PYTHONDONTWRITEBYTECODE a check would write __pycache__ into the worktree (committed with
    the agent's work) and the next check, within the same second, could import the stale
    bytecode of a same-size edit (``a - b`` -> ``a + b``)."""
    from taskmill.mill.check_env import check_env

    (tmp_path / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    check = f"{sys.executable} -c 'import calc; assert calc.add(2, 3) == 5, calc.add(2, 3)'"
    env = check_env({"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
    first = run_checks([check], tmp_path, env, timeout_s=30)
    assert not first.ok
    (tmp_path / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    assert run_checks([check], tmp_path, env, timeout_s=30).ok
    assert not (tmp_path / "__pycache__").exists()


def test_config_refuses_to_pass_virtual_env(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    configure(repo, pass_env=["VIRTUAL_ENV"])
    proc = repo.cli("run", "--agent-cmd", "true")
    assert proc.returncode != 0
    assert "pass_env may not contain VIRTUAL_ENV" in proc.stderr + proc.stdout


def fake_venv_with_editable(venv: Path, project: Path) -> None:
    """A virtualenv (pyvenv.cfg, bin/python) with ``myproj`` installed editable from
    ``project`` (PEP 610 direct_url.json, as pip and uv write it)."""
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n", encoding="utf-8")
    (venv / "bin" / "python").symlink_to(sys.executable)
    dist = venv / "lib" / "python3.11" / "site-packages" / "myproj-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "direct_url.json").write_text(json.dumps(
        {"url": project.as_uri(), "dir_info": {"editable": True}}), encoding="utf-8")


def test_warns_once_when_the_checks_python_installs_the_main_checkout(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    venv = tmp_path / "project-venv"
    fake_venv_with_editable(venv, repo.root)
    configure(repo, env={"PATH": f"{venv}/bin:/usr/bin:/bin"})
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / f"{TASK}.txt").write_text("x")
    """, spy=repo.spy)
    repo.create("tm-a", checks=["python -c 'import sys; print(sys.prefix)'"])
    repo.create("tm-b", checks=["python -c pass"])

    result = repo.run("--agent-cmd", cmd)

    assert result.returncode == 0, result.describe()
    warnings = [e for e in result.events
                if e["event"] == "warning" and e.get("about") == "editable_install"]
    assert len(warnings) == 1, warnings
    message = warnings[0]["message"]
    assert str(venv) in message and str(repo.root) in message and "myproj" in message
    assert message in result.stdout  # a line of the run's output


def test_editable_installs_found_and_worktrees_excepted(tmp_path: Path) -> None:
    checkout = tmp_path / "repo"
    pool = checkout / ".taskmill" / "worktrees"
    (pool / "slot-1" / "src").mkdir(parents=True)
    venv = tmp_path / "venv"
    fake_venv_with_editable(venv, pool / "slot-1")
    assert editable_installs_of_checkout(venv, checkout, [pool]) == []  # the worktree's own
    site = venv / "lib" / "python3.11" / "site-packages"
    # setuptools' editable forms: a path line, and a finder mapping
    (site / "__editable__.other-1.0.pth").write_text(f"{checkout}/src\n", encoding="utf-8")
    (site / "__editable___third_1_0_finder.py").write_text(
        f"import sys\nMAPPING: dict[str, str] = {{'third': '{checkout}/lib/third'}}\n",
        encoding="utf-8")
    hits = editable_installs_of_checkout(venv, checkout, [pool])
    assert ("other", checkout / "src") in hits
    assert ("third_1_0", checkout / "lib" / "third") in hits
    assert editable_installs_of_checkout(venv, tmp_path / "elsewhere", []) == []


# -- 13. check commands validated; unchecked tasks refused --------------------------------------


def test_command_name() -> None:
    assert command_name("pytest -q") == "pytest"
    assert command_name("FOO=1 BAR='a b' pytets -x") == "pytets"
    assert command_name("! grep -r x .") == "grep"
    assert command_name("./run-tests.sh") == "./run-tests.sh"
    assert command_name("(cd sub && make)") == "("
    assert command_name("echo 'unclosed") is None


def test_guard_validates_bare_names_only(tmp_path: Path) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "frobnicate").write_text("#!/bin/sh\nexit 0\n")
    (tools / "frobnicate").chmod(0o755)
    guard = CheckGuard({"PATH": f"{tools}:/usr/bin:/bin"}, tmp_path)
    assert guard.problems(["frobnicate", "test -f x", "! grep -q x y", "[ -f x ]",
                           "if true; then :; fi", "./made-by-the-agent.sh", "$TOOL run",
                           "X=1 frobnicate --all"]) == []
    (problem,) = guard.problems(["X=1 frobnicat --all"])
    assert "`frobnicat`" in problem and "did you mean `frobnicate`?" in problem


def tools_env(tmp_path: Path) -> dict[str, str]:
    tools = tmp_path / "tools"
    tools.mkdir(exist_ok=True)
    (tools / "frobnicate").write_text("#!/bin/sh\nexit 0\n")
    (tools / "frobnicate").chmod(0o755)
    return {"PATH": f"{tools}:{os.environ['PATH']}"}


def test_a_check_command_that_does_not_exist_blocks_before_the_first_turn(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / f"{TASK}-{ITER}.txt").write_text("x")
        script = WT / "make-me.sh"
        script.write_text("#!/bin/sh\\nfrobnicate\\n")
        script.chmod(0o755)
    """, spy=repo.spy)
    repo.create("tm-typo", checks=["FROB_LEVEL=2 frobnicat --all"])
    repo.create("tm-path", checks=["./make-me.sh"])  # a path the agent creates: not validated

    result = repo.run("--agent-cmd", cmd, env=tools_env(tmp_path))

    assert result.returncode == 1, result.describe()
    assert repo.attempts("tm-typo") == [] and calls(repo, "tm-typo") == 0
    comment = blocked_comment(repo, "tm-typo")
    assert "`frobnicat`" in comment and "did you mean `frobnicate`?" in comment, comment
    assert "taskmill update tm-typo --check" in comment
    repo.assert_all_landed_once(["tm-path"])


def test_a_check_exiting_127_command_not_found_blocks_at_once(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / f"n-{ITER}.txt").write_text("x")
    """, spy=repo.spy)
    repo.create("tm-127", checks=["true && frobnicat --all"])

    result = repo.run("--agent-cmd", cmd, env=tools_env(tmp_path))

    assert result.returncode == 1, result.describe()
    assert [a["outcome"] for a in repo.attempts("tm-127")] == ["failed"]
    comment = blocked_comment(repo, "tm-127")
    assert "`frobnicat`" in comment and "exit 127" in comment and "frobnicate" in comment


def test_a_missing_command_in_the_agents_own_script_is_the_agents_to_fix(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        script = WT / "t.sh"
        script.write_text("#!/bin/bash\\n" + ("frobnicat\\n" if ITER == 1 else "frobnicate\\n"))
        script.chmod(0o755)
    """, spy=repo.spy)
    repo.create("tm-own", checks=["./t.sh"])

    result = repo.run("--agent-cmd", cmd, env=tools_env(tmp_path))

    assert result.returncode == 0, result.describe()
    assert [a["outcome"] for a in repo.attempts("tm-own")] == ["failed", "passed"]
    repo.assert_all_landed_once(["tm-own"])


def test_a_project_check_that_does_not_exist_blocks_before_the_first_turn(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    configure(repo, commands=["pyhtonx -m pytest"])
    cmd = agent_script(tmp_path / "agent.py", "(WT / 'x.txt').write_text('x')", spy=repo.spy)
    repo.create("tm-p", checks=["true"])

    result = repo.run("--agent-cmd", cmd)

    assert result.returncode == 1, result.describe()
    assert repo.attempts("tm-p") == []
    comment = blocked_comment(repo, "tm-p")
    assert "`pyhtonx`" in comment and ".taskmill/config.toml" in comment, comment


def test_a_task_without_any_checks_is_refused_unless_the_user_opts_in(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path, allow_unchecked=False)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / f"{TASK}.txt").write_text("x")
    """, spy=repo.spy)
    repo.create("tm-bare", "No checks at all")
    repo.create("tm-checked", checks=["test -f tm-checked.txt"])

    refused = repo.run("--agent-cmd", cmd)

    assert refused.returncode == 1, refused.describe()
    repo.assert_all_landed_once(["tm-checked"])
    assert repo.task("tm-bare")["status"] == "open"
    assert repo.attempts("tm-bare") == [] and calls(repo, "tm-bare") == 0
    (event,) = refused.events_of("refused", "tm-bare")
    assert "--allow-unchecked" in event["reason"] and "allow_unchecked = true" in event["reason"]
    assert "refused  tm-bare" in refused.stdout and "--allow-unchecked" in refused.stdout

    # opted in with the flag: it lands, and says it was not verified
    allowed = repo.run("--agent-cmd", cmd, "--allow-unchecked")
    assert allowed.returncode == 0, allowed.describe()
    repo.assert_all_landed_once(["tm-checked", "tm-bare"])
    (landed,) = allowed.events_of("landed", "tm-bare")
    assert landed["unverified"] is True
    assert "unverified" in allowed.stdout
    (attempt,) = repo.attempts("tm-bare")
    assert "no checks" in attempt["detail"]["unverified"]

    # or with the config key
    configure(repo, run={"allow_unchecked": True})
    repo.create("tm-bare2", "No checks either")
    by_config = repo.run("--agent-cmd", cmd)
    assert by_config.returncode == 0, by_config.describe()
    assert by_config.events_of("refused") == []
    repo.assert_all_landed_once(["tm-checked", "tm-bare", "tm-bare2"])


def test_project_checks_are_enough(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path, allow_unchecked=False)
    configure(repo, commands=["true"])
    cmd = agent_script(tmp_path / "agent.py", "(WT / 'x.txt').write_text('x')", spy=repo.spy)
    repo.create("tm-p")
    result = repo.run("--agent-cmd", cmd)
    assert result.returncode == 0, result.describe()
    assert result.events_of("refused") == []
    (attempt,) = repo.attempts("tm-p")
    assert "unverified" not in attempt["detail"]


def test_not_found_is_read_from_bashs_own_message(tmp_path: Path) -> None:
    result = run_checks(["true && frobnicat", "./nothing-here.sh"], tmp_path,
                        {"PATH": "/usr/bin:/bin"}, timeout_s=30, stop_on_failure=False)
    first, second = result.runs
    assert first.exit_code == 127 and not_found_in_output(first.output) == "frobnicat"
    assert second.exit_code == 127 and not_found_in_output(second.output) is None


# -- 14. agent-reported usage ----------------------------------------------------------------


@pytest.mark.parametrize("value", [-5, -0.5, "lots", math.inf, 10**11, [1], True])
def test_usage_file_rejects_invalid_token_counts(tmp_path: Path, value: Any) -> None:
    path = tmp_path / "usage.json"
    path.write_text(json.dumps({"input_tokens": value, "output_tokens": 7}), encoding="utf-8")
    usage = Usage(input_tokens=100)  # what the adapter read from the output
    merge_usage_file(usage, path)
    validate_usage(usage)
    assert usage.input_tokens == 100 and usage.output_tokens == 7
    assert usage.invalid and usage.invalid[0].startswith("input_tokens=")
    message = invalid_usage_message(usage)
    assert message and message.startswith("invalid usage reported by the agent: input_tokens=")


@pytest.mark.parametrize("value", ["-1", -0.01, "NaN", "Infinity", 2e6])
def test_usage_file_rejects_invalid_costs(tmp_path: Path, value: Any) -> None:
    path = tmp_path / "usage.json"
    path.write_text(f'{{"cost_usd": {json.dumps(value) if isinstance(value, str) else value}}}',
                    encoding="utf-8")
    usage = Usage()
    merge_usage_file(usage, path)
    validate_usage(usage)
    assert usage.cost_usd is None
    assert usage.invalid and usage.invalid[0].startswith("cost_usd=")


def test_usage_file_nan_and_valid_values(tmp_path: Path) -> None:
    path = tmp_path / "usage.json"
    path.write_text('{"input_tokens": NaN, "output_tokens": "12", "cost_usd": 0.5,'
                    ' "retry_after_s": Infinity}', encoding="utf-8")
    usage = Usage()
    merge_usage_file(usage, path)
    validate_usage(usage)
    assert (usage.input_tokens, usage.output_tokens, usage.cost_usd) == (0, 12, 0.5)
    assert usage.retry_after_s is None
    assert usage.invalid == ["input_tokens=nan", "retry_after_s=inf"]


def test_adapters_reject_invalid_usage() -> None:
    claude = "\n".join(json.dumps(e) for e in [
        {"type": "system", "subtype": "init", "session_id": "s"},
        {"type": "result", "subtype": "success", "is_error": False, "total_cost_usd": -3.5,
         "usage": {"input_tokens": -100, "output_tokens": 20}},
    ])
    usage = parse_claude_stream(claude, 0, now=0.0)
    assert (usage.input_tokens, usage.output_tokens, usage.cost_usd) == (0, 20, None)
    assert usage.invalid == ["input_tokens=-100", "total_cost_usd=-3.5"]
    codex = "\n".join(json.dumps(e) for e in [
        {"type": "turn.completed", "usage": {"input_tokens": 50, "output_tokens": 5}},
        {"type": "turn.completed", "usage": {"input_tokens": -40, "output_tokens": 5}},
    ])
    usage = parse_codex_stream(codex, 0, now=0.0)
    assert (usage.input_tokens, usage.output_tokens) == (50, 10)
    assert usage.invalid == ["input_tokens=-40"]
    # what a parser let through is caught at the end: totals too
    usage = Usage(input_tokens=6 * 10**9, output_tokens=6 * 10**9 * 2, cost_usd=float("nan"))
    validate_usage(usage)
    assert (usage.input_tokens, usage.output_tokens, usage.cost_usd) == (6 * 10**9, 0, None)
    assert usage.invalid == ["output_tokens=12000000000", "cost_usd=nan"]


def test_negative_cost_does_not_defeat_the_cost_budget(tmp_path: Path) -> None:
    repo = MillRepo(tmp_path)
    cmd = agent_script(tmp_path / "agent.py", """
        (WT / "n.txt").write_text(str(ITER))
        if ITER == 1:
            usage(input_tokens=-5, output_tokens=1, cost_usd=-100)
        else:
            usage(input_tokens=1, output_tokens=1, cost_usd=0.6)
    """, spy=repo.spy)
    repo.create("tm-neg", checks=[VARYING_FAILURE])

    result = repo.run("--agent-cmd", cmd, "--max-cost", "1.0")

    assert result.returncode == 1, result.describe()
    attempts = repo.attempts("tm-neg")
    assert len(attempts) == 3, attempts  # 0 (rejected) + 0.6 + 0.6 >= 1.0
    assert "cost budget" in blocked_comment(repo, "tm-neg")
    first = attempts[0]
    assert first["input_tokens"] == 0 and first["cost_usd"] is None
    assert first["detail"]["usage_error"] == \
        "invalid usage reported by the agent: input_tokens=-5, cost_usd=-100"
    (event,) = result.events_of("usage_invalid", "tm-neg")
    assert event["message"] == first["detail"]["usage_error"]
    assert "usage_error" not in attempts[1]["detail"]
