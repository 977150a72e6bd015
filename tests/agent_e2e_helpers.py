"""Helpers for ``tests/test_agents_e2e.py``: the whole mill with the real agent CLIs.

An :class:`E2ERepo` is a small git repository (branch ``main``) with ``taskmill init`` done
and ``.taskmill/config.toml`` committed. Its one agent table points the real CLI at the
scripted model server only through ``base_url`` and ``api_key_env`` (plus ``model`` where
the CLI needs one, and ``command`` = the absolute path of the installed binary, which is
not on PATH): the same two settings a user sets for a local model server or a gateway.
``taskmill run`` runs as a subprocess, in a session of its own, exactly as a user runs it.

The task asks for ``calc.add``; its check, ``check_calc.py``, prints :data:`FAILURE_MARKER`
(with the wrong result) when ``add(2, 3)`` is not 5, so a test can look for the failing
output in what the agent sent to the model server on the next iteration.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from taskmill.testing import agent_install

PY = sys.executable

AGENTS = ("claude", "codex", "gemini", "opencode", "qwen")
"""The CLIs covered (aider is not: PyPI ``aider-chat`` is ~700 MB, see docs/agents.md)."""

MODELS: dict[str, str | None] = {
    "claude": None,       # any name works; the CLI's default is sent
    "codex": "gpt-5.5",   # a name Codex knows, else it drops its apply_patch tool
    "gemini": None,       # the adapter passes -m gemini-2.5-pro when base_url is set
    "opencode": None,     # the adapter declares provider taskmill with model "default"
    "qwen": None,         # Qwen Code's default model name is sent
}
"""``model`` in each ``[agents.NAME]`` table (None: the key is left out)."""

KEY_ENV = "TASKMILL_E2E_MODEL_KEY"
KEY_VALUE = "sk-taskmill-e2e-key"
SECRET_ENV = "TASKMILL_E2E_SECRET"
SECRET_VALUE = "e2e-secret-never-shown-to-agents-5d81"
PASSED_ENV = "TASKMILL_E2E_PASSED"
PASSED_VALUE = "e2e-passed-through-by-pass_env-0c4e"

GOOD_CALC = "def add(a, b):\n    return a + b\n"
BAD_CALC = "def add(a, b):\n    return a - b\n"
FAILURE_MARKER = "CHECK-FAILED: add(2, 3) returned"
CHECK_SCRIPT = f'''\
import calc

got = calc.add(2, 3)
if got != 5:
    print("{FAILURE_MARKER}", got, "but 5 was expected")
    raise SystemExit(1)
print("check_calc: ok")
'''
TASK_TITLE = "Add calc.add"
TASK_DESCRIPTION = "Create calc.py with a function add(a, b) that returns a + b."


def require_agent(name: str) -> Path:
    """The installed CLI's executable, or skip the test saying how to install it."""
    binary = agent_install.find_agent(name)
    if binary is None:
        pytest.skip(f"{name} CLI not installed in {agent_install.default_cache_dir()}: run "
                    f"`python -m taskmill.testing.agent_install {name}` (or `make agents`)")
    return binary


def agent_table(name: str, binary: Path, base_url: str) -> dict[str, Any]:
    """The ``[agents.NAME]`` table the tests use (and the README documents)."""
    table: dict[str, Any] = {"adapter": name, "command": [str(binary)]}
    if MODELS[name]:
        table["model"] = MODELS[name]
    table["base_url"] = base_url
    table["api_key_env"] = KEY_ENV
    return table


# -- scripts for the fake model ---------------------------------------------------------------


def usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {"input_tokens": input_tokens, "output_tokens": output_tokens}


def write_calc(content: str, tokens: tuple[int, int]) -> dict[str, Any]:
    return {"tool": "write_file", "path": "calc.py", "content": content,
            "usage": usage(*tokens)}


def done(text: str, tokens: tuple[int, int]) -> dict[str, Any]:
    return {"text": text, "usage": usage(*tokens)}


def script(*turns: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A fake-model script: one conversation per item, in order."""
    return {"turn": [{"reply": list(replies)} for replies in turns]}


def scripted_tokens(entries: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    """Input and output tokens the server reported over these logged requests."""
    return (sum(e["served"]["usage"]["input_tokens"] for e in entries),
            sum(e["served"]["usage"]["output_tokens"] for e in entries))


def body_text(entry: Mapping[str, Any]) -> str:
    """A logged request's body as text (JSON-decoded strings, so newlines are real)."""
    body = entry.get("body")
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(body)
    return "\n".join(found)


# -- the repository ---------------------------------------------------------------------------


@dataclass
class RunResult:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.stdout)
        return data

    def describe(self) -> str:
        return (f"taskmill run: exit {self.returncode} after {self.seconds:.1f}s\n--- stdout\n"
                f"{self.stdout[-4000:]}\n--- stderr\n{self.stderr[-4000:]}")


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc.stdout


class E2ERepo:
    """A repository with one task for one agent, run by ``taskmill run`` in a subprocess."""

    def __init__(self, tmp_path: Path, agent: str, table: Mapping[str, Any], *,
                 run: Mapping[str, Any] | None = None,
                 sandbox: Mapping[str, Any] | None = None) -> None:
        self.tmp = tmp_path
        self.agent = agent
        self.root = tmp_path / "repo"
        self.root.mkdir(parents=True)
        git(self.root, "init", "-q", "-b", "main")
        (self.root / "README.md").write_text("# calc\n", encoding="utf-8")
        (self.root / "check_calc.py").write_text(CHECK_SCRIPT, encoding="utf-8")
        self.taskmill("init", "--prefix", "e2e")
        config: dict[str, Any] = {
            "prefix": "e2e",
            "checks": {"commands": []},
            "run": {"agent": agent, **(run or {})},
            "agents": {agent: dict(table)},
            # the default sandbox (network off): the CLIs reach the scripted model server
            # through taskmill's model proxy, bridged into the sandbox
            "sandbox": dict(sandbox or {}),
        }
        (self.root / ".taskmill" / "config.toml").write_text(tomli_w.dumps(config),
                                                            encoding="utf-8")
        git(self.root, "add", "-A")
        git(self.root, "commit", "-q", "-m", "initial commit")

    @property
    def env(self) -> dict[str, str]:
        """taskmill's own environment: the key the config names, a secret that no agent
        should see, and a variable the config may pass through."""
        return {**os.environ, KEY_ENV: KEY_VALUE, SECRET_ENV: SECRET_VALUE,
                PASSED_ENV: PASSED_VALUE}

    def taskmill(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PY, "-m", "taskmill", *args], cwd=self.root, capture_output=True,
                              text=True, timeout=timeout, check=False,
                              env={**os.environ, SECRET_ENV: SECRET_VALUE})

    def create_task(self) -> str:
        proc = self.taskmill("create", TASK_TITLE, "-d", TASK_DESCRIPTION,
                             "--check", f"{PY} check_calc.py", "--json")
        assert proc.returncode == 0, proc.stderr
        task_id: str = json.loads(proc.stdout)["id"]
        return task_id

    def run(self, *args: str, timeout: float = 240.0) -> RunResult:
        """``taskmill run --json ARGS`` (events also in ``events.ndjson`` next to the repo)."""
        argv = [PY, "-m", "taskmill", "run", "--json", "--json-events",
                str(self.tmp / "events.ndjson"), *args]
        start = time.monotonic()
        proc = subprocess.run(argv, cwd=self.root, capture_output=True, text=True,
                              timeout=timeout, check=False, env=self.env,
                              start_new_session=True)
        return RunResult(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)

    def show(self, task_id: str) -> dict[str, Any]:
        proc = self.taskmill("show", task_id, "--json")
        assert proc.returncode == 0, proc.stderr
        data: dict[str, Any] = json.loads(proc.stdout)
        return data

    def events(self) -> list[dict[str, Any]]:
        path = self.tmp / "events.ndjson"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    def on_target(self, path: str, branch: str = "main") -> str:
        """The file as committed on ``branch``."""
        return git(self.root, "show", f"refs/heads/{branch}:{path}")

    def agent_home(self) -> Path:
        return self.root / ".taskmill" / "run" / "homes" / self.agent

    def agent_logs(self, task_id: str, limit: int = 3000) -> str:
        """The tails of the agent's logs for a failing test's message."""
        folder = self.root / ".taskmill" / "logs" / task_id
        parts = []
        for path in sorted(folder.glob("*")) if folder.exists() else []:
            if path.is_file():
                text = path.read_text(encoding="utf-8", errors="replace")
                parts.append(f"--- {path.name}\n{text[-limit:]}")
        return "\n".join(parts)


def report(repo: E2ERepo, task_id: str, result: RunResult, server: Any = None) -> str:
    """Everything worth seeing when an assertion fails."""
    parts = [result.describe(), json.dumps(repo.show(task_id), indent=1, default=str)[-6000:],
             repo.agent_logs(task_id)]
    if server is not None:
        parts.append("--- model requests: " + json.dumps(
            [{k: e["served"].get(k) for k in ("source", "kind", "turn", "reply", "tool")}
             for e in server.model_requests()]))
    return "\n".join(parts)


def processes_under(root: Path) -> list[str]:
    """Processes (pid and command line) whose working directory is inside ``root``."""
    found = []
    resolved = str(root.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                "utf-8", errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X") and (cwd == resolved or cwd.startswith(resolved + "/")):
            found.append(f"{entry.name}: {cmdline.strip()}")
    return found
