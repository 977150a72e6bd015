"""The whole mill with the real agent CLIs: ``taskmill run`` on a small repository.

Each test starts the scripted model server (:mod:`taskmill.testing.fake_model`), writes an
``[agents.NAME]`` table that points the installed CLI at it only through ``base_url`` and
``api_key_env`` (plus ``model`` for Codex, and ``command`` = the binary's absolute path),
creates one task whose check is ``check_calc.py``, and runs ``taskmill run`` as a
subprocess. The script makes the CLI's own tools write the code.

- ``test_task_lands``: the task lands on ``main``; the attempt record holds the tokens the
  server reported; the agent ran with its own HOME and a clean environment (it dumped its
  environment with a shell tool, and that file landed too).
- ``test_failing_checks_are_fed_back``: the first turn writes a bug, the checks fail, and
  the second conversation's requests carry the failing check output; the fix lands.
- Failure handling, per CLI (see the README's "Supported agents" table): a stalled stream
  hits ``--turn-timeout`` (process group killed, task blocked); a rate-limited model
  pauses the agent without burning an iteration and the task then lands (not Qwen Code:
  it retries silently); a garbage answer is a failed attempt with the CLI's error, not a
  crash.

aider is not covered: it is not installed in the test cache (PyPI ``aider-chat`` ~700 MB).
Every test is marked ``agents`` and skips, with the install command, when its CLI is
missing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from agent_e2e_helpers import (
    AGENTS,
    BAD_CALC,
    FAILURE_MARKER,
    GOOD_CALC,
    KEY_VALUE,
    PASSED_ENV,
    PASSED_VALUE,
    SECRET_ENV,
    SECRET_VALUE,
    E2ERepo,
    agent_table,
    body_text,
    done,
    git,
    processes_under,
    report,
    require_agent,
    script,
    scripted_tokens,
    usage,
    write_calc,
)
from taskmill.testing.fake_model import FakeModelServer

pytestmark = pytest.mark.agents

TURN_TIMEOUT = "240"
"""For turns that should succeed: generous, opencode and qwen are slow under load."""
FAILED_OUTPUT = f"{FAILURE_MARKER} -1 but 5 was expected"
"""What check_calc.py prints for the buggy add (the marker alone is in its source)."""

def landed_commit(repo: E2ERepo, task: dict[str, object], task_id: str) -> str:
    reason = str(task["close_reason"])
    assert task["status"] == "closed" and reason.startswith("landed "), task
    commit = reason.split()[1]
    assert git(repo.root, "rev-parse", "refs/heads/main").strip() == commit
    assert f"Taskmill-Task: {task_id}" in git(repo.root, "log", "-1", "--format=%B", commit)
    return commit


# -- items 2, 5, 6: the task lands, tokens are recorded, the agent's environment is clean --


@pytest.mark.parametrize("name", AGENTS)
def test_task_lands(name: str, tmp_path: Path) -> None:
    binary = require_agent(name)
    lands = script([
        {"tool": "shell", "command": "env > envdump.txt", "usage": usage(700, 30)},
        write_calc(GOOD_CALC, (1000, 50)),
        done("Done.", (1100, 5)),
    ])
    with FakeModelServer(lands, log_path=tmp_path / "requests.ndjson") as server:
        table = {**agent_table(name, binary, server.url), "pass_env": [PASSED_ENV]}
        repo = E2ERepo(tmp_path, name, table)
        task_id = repo.create_task()
        result = repo.run("--turn-timeout", TURN_TIMEOUT, "--max-iterations", "1")
        scripted = server.model_requests("script")
        logged = server.requests
        info = report(repo, task_id, result, server)

    assert result.returncode == 0, info
    assert result.summary()["landed"] == 1, info
    task = repo.show(task_id)
    landed_commit(repo, task, task_id)
    assert repo.on_target("calc.py") == GOOD_CALC

    # the attempt holds what the server reported for every model call (the scripted ones
    # and the CLI's side calls, e.g. opencode's title), as taskmill's model proxy counted it
    assert [e["served"]["kind"] for e in scripted] == ["tool", "tool", "text"], info
    assert scripted_tokens(scripted) == (2800, 85)
    (attempt,) = task["attempts"]
    assert attempt["outcome"] == "passed" and attempt["iteration"] == 1, info
    assert attempt["agent"] == name
    assert (attempt["input_tokens"], attempt["output_tokens"]) == scripted_tokens(
        [e for e in logged if "usage" in e["served"]]), info
    assert attempt["detail"]["usage_source"] == "proxy", info

    # hygiene: own HOME, clean environment; the key and pass_env reach it, nothing else
    dump = repo.on_target("envdump.txt")
    env = dict(line.split("=", 1) for line in dump.splitlines() if "=" in line)
    assert Path(env["HOME"]).resolve() == repo.agent_home().resolve(), dump
    assert SECRET_VALUE not in dump and SECRET_ENV not in dump, dump
    assert "XDG_CONFIG_HOME" not in env and os.environ["HOME"] not in dump, dump
    assert env.get(PASSED_ENV) == PASSED_VALUE, dump
    # the key stays with taskmill's model proxy (tests/test_proxy.py); the CLI gets a stand-in
    assert KEY_VALUE not in dump and "taskmill-proxy" in dump, dump
    assert not any(SECRET_VALUE in str(e) for e in logged)


# -- item 3: the failing check output is fed back to the next conversation ------------------


@pytest.mark.parametrize("name", AGENTS)
def test_failing_checks_are_fed_back(name: str, tmp_path: Path) -> None:
    binary = require_agent(name)
    fix = script(
        [write_calc(BAD_CALC, (900, 40)), done("Done.", (950, 4))],
        # a shell edit: Claude Code's and opencode's edit tools refuse a file the
        # conversation has not read first
        [{"tool": "shell", "command": "sed -i 's/a - b/a + b/' calc.py",
          "usage": usage(1500, 30)},
         done("Fixed.", (1600, 3))],
    )
    with FakeModelServer(fix, log_path=tmp_path / "requests.ndjson") as server:
        repo = E2ERepo(tmp_path, name, agent_table(name, binary, server.url))
        task_id = repo.create_task()
        result = repo.run("--turn-timeout", TURN_TIMEOUT, "--max-iterations", "3")
        scripted = server.model_requests("script")
        logged = server.requests
        info = report(repo, task_id, result, server)

    assert result.returncode == 0, info
    task = repo.show(task_id)
    landed_commit(repo, task, task_id)
    assert repo.on_target("calc.py") == GOOD_CALC

    assert len(task["attempts"]) == 2, [(a["outcome"], a.get("detail")) for a in task["attempts"]]
    first, second = task["attempts"]
    assert (first["iteration"], first["outcome"]) == (1, "failed"), info
    assert FAILED_OUTPUT in first["detail"]["failure"], info
    assert (second["iteration"], second["outcome"]) == (2, "passed"), info

    by_turn = {t: [e for e in scripted if e["served"]["turn"] == t] for t in (0, 1)}
    assert [e["served"]["kind"] for e in by_turn[0]] == ["tool", "text"], info
    assert [e["served"]["kind"] for e in by_turn[1]] == ["tool", "text"], info
    # the second conversation's requests hold the failing output, the first's do not
    assert all(FAILED_OUTPUT in body_text(e) for e in by_turn[1]), info
    assert not any(FAILED_OUTPUT in body_text(e) for e in by_turn[0]), info
    # each attempt counts its conversation, plus the CLI's side calls (opencode's title);
    # together they are every model call the server answered
    for attempt, turn in ((first, by_turn[0]), (second, by_turn[1])):
        spent, scripted_part = (attempt["input_tokens"], attempt["output_tokens"]), \
            scripted_tokens(turn)
        assert spent[0] >= scripted_part[0] and spent[1] >= scripted_part[1], info
    assert (sum(a["input_tokens"] for a in task["attempts"]),
            sum(a["output_tokens"] for a in task["attempts"])) == scripted_tokens(
        [e for e in logged if "usage" in e["served"]]), info
    assert scripted_tokens(by_turn[1]) == (3100, 33)


# -- item 4: failure handling -----------------------------------------------------------------

STALL_TIMEOUT = {"claude": 12.0, "codex": 12.0, "gemini": 15.0, "opencode": 40.0, "qwen": 30.0}
"""--turn-timeout for the stall: enough for the CLI to start and send its first call, also on
a loaded machine (opencode and Qwen Code are CPU-bound at start-up: up to ~30 s at load 13)."""


LONG_WAIT = pytest.mark.long_wait
"""A real CLI's turn waited out to its limit (30 s or more): the same path as the faster
CLIs' same test, which ``make test`` runs; ``make test-all`` runs these too."""


def _waits_long(names: dict[str, Any], slow: tuple[str, ...]) -> list[Any]:
    return [pytest.param(n, marks=LONG_WAIT) if n in slow else n for n in names]


@pytest.mark.parametrize("name", _waits_long(STALL_TIMEOUT, ("opencode", "qwen")))
def test_stalled_stream_hits_the_turn_timeout(name: str, tmp_path: Path) -> None:
    """Every call stalls (the stream starts, then nothing for 10 minutes; every CLI waits or
    retries into another stall): the turn limit kills the agent's process group, the task
    is blocked and the run ends."""
    binary = require_agent(name)
    turn_timeout = STALL_TIMEOUT[name]
    with FakeModelServer(script([{"stall": 600}]),
                         log_path=tmp_path / "requests.ndjson") as server:
        repo = E2ERepo(tmp_path, name, agent_table(name, binary, server.url))
        task_id = repo.create_task()
        result = repo.run("--turn-timeout", str(turn_timeout), "--max-iterations", "3",
                          timeout=turn_timeout + 120)
        left = processes_under(repo.root)
        kinds = [e["served"]["kind"] for e in server.model_requests("script")]
        info = report(repo, task_id, result, server)

    assert result.returncode == 1, info
    assert "stall" in kinds, info
    assert result.seconds < turn_timeout + 60, info
    assert left == [], info
    task = repo.show(task_id)
    assert task["status"] == "blocked", info
    (attempt,) = task["attempts"]
    assert attempt["outcome"] == "timeout" and attempt["detail"]["timed_out"], info
    assert any("--turn-timeout" in c["text"] for c in task["comments"]), info
    assert "Traceback" not in result.stderr


RATE_LIMIT = {
    # Claude Code retries a 429 itself, 10 times, after 1 s (retry-after), then ~1, 2, 4, 8,
    # 16 s: five 429s cannot all be retried within a 14 s turn, so the turn is killed while
    # it waits, and its api_retry events make it a rate-limited turn.
    "claude": (5, 14.0),
    # Codex reconnects 5 times (~6 s) and then fails the turn: six 429s fail exactly one turn.
    "codex": (6, 60.0),
    # Gemini CLI retries after >= 5 s, then 11 s...: killed at 15 s while it waits; the
    # "Attempt N failed ... Retrying" lines on stderr make it a rate-limited turn.
    "gemini": (2, 15.0),
    # opencode tries ~6 times (~14 s), then an error event with statusCode 429 and exit 1.
    "opencode": (6, 60.0),
    # Qwen Code is not here: it retries 429s silently for minutes (nothing on stdout or
    # stderr), so a turn it spends retrying ends as a timeout, not a rate-limited turn.
}


@pytest.mark.parametrize("name", list(RATE_LIMIT))
def test_rate_limit_pauses_and_resumes(name: str, tmp_path: Path) -> None:
    binary = require_agent(name)
    times, turn_timeout = RATE_LIMIT[name]
    limited = script(
        [{"error": 429, "retry_after": 1, "times": times},
         write_calc(GOOD_CALC, (1000, 50)), done("Done.", (1100, 5))],
        # in case the next turn does not resend the same opening (then it is a new conversation)
        [write_calc(GOOD_CALC, (1000, 50)), done("Done.", (1100, 5))],
    )
    with FakeModelServer(limited, log_path=tmp_path / "requests.ndjson") as server:
        # Codex's give-up message has no reset time: the mill backs off [run] rate_limit_backoff
        repo = E2ERepo(tmp_path, name, agent_table(name, binary, server.url),
                       run={"rate_limit_backoff": 2})
        task_id = repo.create_task()
        result = repo.run("--turn-timeout", str(turn_timeout), "--max-iterations", "1")
        served = server.model_requests("script")
        logged = server.requests
        info = report(repo, task_id, result, server)

    assert result.returncode == 0, info
    task = repo.show(task_id)
    landed_commit(repo, task, task_id)
    assert repo.on_target("calc.py") == GOOD_CALC
    attempts = task["attempts"]
    assert attempts[0]["outcome"] == "rate_limited", info
    assert attempts[-1]["outcome"] == "passed", info
    # no iteration burnt: every attempt is iteration 1, and --max-iterations 1 was enough
    assert {a["iteration"] for a in attempts} == {1}, info
    assert all(a["outcome"] == "rate_limited" for a in attempts[:-1]), info
    assert sum(e["served"]["kind"] == "error" for e in served) <= times, info
    assert any(e["event"] == "agent_paused" for e in repo.events()), info
    tokens = scripted_tokens([e for e in served if e["served"]["kind"] != "error"])
    assert tokens == (2100, 55)
    # what the proxy counted: every answer that was not an error (side calls included)
    answered = scripted_tokens([e for e in logged if "usage" in e["served"]
                                and e["served"].get("kind") != "error"])
    assert (sum(a["input_tokens"] for a in attempts),
            sum(a["output_tokens"] for a in attempts)) == answered, info
    assert attempts[-1]["input_tokens"] >= 2100 and attempts[-1]["output_tokens"] >= 55, info


GARBAGE = {
    # exit 1 after a retry or a few: a failed turn
    "claude": ("turn_failed", 60.0),
    "codex": ("turn_failed", 60.0),
    "gemini": ("turn_failed", 60.0),
    # opencode turns each garbage answer into an empty step and asks again, forever: only
    # the turn limit stops it
    "opencode": ("timeout", 40.0),
    # Qwen Code exits 0 with "[API Error: ...]" as its result: the adapter records that as
    # the turn's error, and the checks (which fail: no code) decide the attempt
    "qwen": ("failed", 60.0),
}


@pytest.mark.parametrize("name", _waits_long(GARBAGE, ("opencode",)))
def test_garbage_answer_is_a_failed_turn(name: str, tmp_path: Path) -> None:
    """Every answer is HTTP 200 with a body that is not JSON/SSE: the attempt fails with the
    CLI's error recorded, the task is blocked, taskmill does not crash."""
    binary = require_agent(name)
    outcome, turn_timeout = GARBAGE[name]
    with FakeModelServer(script([{"garbage": True}]),
                         log_path=tmp_path / "requests.ndjson") as server:
        repo = E2ERepo(tmp_path, name, agent_table(name, binary, server.url))
        task_id = repo.create_task()
        result = repo.run("--turn-timeout", str(turn_timeout), "--max-iterations", "1",
                          timeout=turn_timeout + 120)
        kinds = [e["served"]["kind"] for e in server.model_requests("script")]
        info = report(repo, task_id, result, server)

    assert result.returncode == 1, info
    assert "Traceback" not in result.stderr, info
    assert kinds and set(kinds) == {"garbage"}, info
    summary = result.summary()
    assert summary["blocked"] == 1 and summary["landed"] == 0, info
    task = repo.show(task_id)
    assert task["status"] == "blocked", info
    (attempt,) = task["attempts"]
    assert attempt["outcome"] == outcome, info
    detail = attempt["detail"]
    assert detail["agent_error"], info
    assert detail["timed_out"] == (outcome == "timeout"), info
    if outcome == "failed":
        assert detail["agent_error"].startswith("[API Error:"), info
        assert detail["failure_kind"] == "checks", info
    else:
        assert detail["failure_kind"] == "turn", info
        what = "timed out" if outcome == "timeout" else "exited with"
        assert detail["failure"].startswith(f"the agent {what}"), info
