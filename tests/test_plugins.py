"""Plugins (pluggy): the built-ins come through the same hooks as a plugin's, and a package
installed with pip adds an agent adapter that `taskmill agents` lists and a run uses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from mill_helpers import MillRepo, agent_script
from taskmill.agents import registry
from taskmill.mill.land import MergeQueue
from taskmill.plugins import Plugins, hookimpl

FIXTURE = Path(__file__).parent / "fixtures" / "taskmill_hello_plugin"
BUILTIN_AGENTS = ["exec", "claude", "codex", "gemini", "opencode", "qwen", "aider", "scripted"]


class Adapter:
    name = "extra"

    def prepare(self, config: Any, request: Any) -> Any:
        raise NotImplementedError

    def parse(self, config: Any, request: Any, output: str, exit_code: int | None) -> Any:
        raise NotImplementedError


class ByHand:
    @hookimpl
    def register_agents(self, register: Any) -> None:
        register("claude", Adapter)  # a built-in name: not taken over
        register("extra", Adapter)

    @hookimpl
    def register_landers(self, register: Any) -> None:
        raise RuntimeError("broken plugin")


def test_builtins_are_registered_through_the_hooks() -> None:
    plugins = Plugins(entry_points=lambda: pytest.fail("installed plugins looked at"))
    agents = plugins.registered("agents", installed=False)
    assert list(agents) == BUILTIN_AGENTS
    assert {reg.plugin for reg in agents.values()} == {"taskmill"}
    assert agents["exec"].create().name == "exec"
    assert list(registry.BUILTIN) == BUILTIN_AGENTS
    stores = plugins.registered("stores", installed=False)
    assert list(stores) == ["sqlite", "memory", "postgres"]
    assert stores["memory"].create().ready(None, False, now="2026-01-01T00:00:00Z") == []
    executors = plugins.registered("executors", installed=False)
    assert list(executors) == ["threads", "temporal"]
    assert executors["temporal"].load().__name__ == "TemporalExecutor"
    landers = plugins.registered("landers", installed=False)
    assert list(landers) == ["merge-queue"] and landers["merge-queue"].load() is MergeQueue


def test_a_plugin_adds_but_does_not_take_over_and_a_broken_one_is_reported() -> None:
    plugins = Plugins(entry_points=list)
    plugins.register(ByHand(), name="byhand")
    agents = plugins.registered("agents")
    assert list(agents) == [*BUILTIN_AGENTS, "extra"]
    assert agents["claude"].plugin == "taskmill" and agents["extra"].plugin == "byhand"
    assert list(plugins.registered("landers")) == ["merge-queue"]
    assert plugins.problems == [
        "plugin 'byhand' failed in register_landers: RuntimeError('broken plugin')"]


def test_an_installed_plugin_that_fails_to_load_is_reported() -> None:
    broken = metadata.EntryPoint(name="broken", value="no_such_module_xyz", group="taskmill")
    plugins = Plugins(entry_points=lambda: [broken])
    assert list(plugins.registered("agents")) == BUILTIN_AGENTS
    (problem,) = plugins.problems
    assert problem.startswith("plugin 'broken' (no_such_module_xyz) could not be loaded: "
                              "ModuleNotFoundError")


@pytest.fixture(scope="module")
def hello_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture plugin package installed with pip (no index, no network) into a folder
    put on PYTHONPATH by the tests."""
    tmp = tmp_path_factory.mktemp("hello")
    source = tmp / "src"
    shutil.copytree(FIXTURE, source)  # the build writes next to the sources
    site = tmp / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
         "--no-build-isolation", "--disable-pip-version-check", "--target", str(site),
         str(source)], capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert any(site.glob("taskmill_hello_plugin-*.dist-info"))
    return site


def _env(site: Path | None) -> dict[str, str]:
    paths = [p for p in (os.environ.get("PYTHONPATH"), str(site) if site else None) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def _agents(tmp_path: Path, site: Path | None) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "taskmill", "agents", "--json"],
                          cwd=tmp_path, env=_env(site), capture_output=True, text=True,
                          check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def test_an_installed_plugin_adds_an_agent_adapter(tmp_path: Path, hello_site: Path) -> None:
    without = _agents(tmp_path, None)
    assert "hello" not in {row["name"] for row in without["adapters"]}
    listed = _agents(tmp_path, hello_site)
    assert listed["adapters"][:len(BUILTIN_AGENTS)] == [
        {"name": name, "source": "built-in"} for name in BUILTIN_AGENTS]
    assert {"name": "hello", "source": "plugin hello (taskmill-hello-plugin)"} in listed[
        "adapters"]
    assert listed["problems"] == []


def test_a_run_uses_the_plugins_adapter(tmp_path: Path, hello_site: Path) -> None:
    bot = agent_script(tmp_path / "bot.py", """
        assert os.environ.get("HELLO_PLUGIN") == "1", "not started by the hello adapter"
        (WT / "hello.txt").write_text("hello from " + TASK + "\\n")
    """, spy=tmp_path / "spy")
    repo = MillRepo(tmp_path, agents={"hi": {"adapter": "hello", "command": [bot]}})
    repo.ledger.create("say hello", task_id="tm-h", agent="hi", checks=["test -f hello.txt"])

    refused = repo.run()  # without the plugin the config names an unknown adapter
    assert refused.returncode != 0
    assert "adapter 'hello' is not a known adapter" in refused.stderr

    result = repo.run(env=_env(hello_site))

    assert result.returncode == 0, result.describe()
    repo.assert_all_landed_once(["tm-h"])
    assert (repo.root / "hello.txt").read_text() == "hello from tm-h\n"
    (attempt,) = repo.attempts("tm-h")
    assert (attempt["agent"], attempt["model"]) == ("hi", "hello-1")
