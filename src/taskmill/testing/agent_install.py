"""Install the real coding-agent CLIs, at pinned versions, into a cache folder.

Each CLI goes into its own npm prefix, ``<cache>/<name>``, with
``npm install --prefix <cache>/<name> <package>@<version>``; its executable is then
``<cache>/<name>/node_modules/.bin/<bin>``. Installing is idempotent: a CLI whose pinned
version is already there is skipped. The default cache is ``$TASKMILL_AGENTS_CACHE``, else
``.cache/agents`` under the project root (ignored by git).

aider is not installed here: it is a PyPI package of about 700 MB (``aider-chat``), too
heavy for a test cache; install it by hand with pip if needed.

Run as ``python -m taskmill.testing.agent_install [--cache DIR] [names...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class AgentPackage:
    name: str
    """Short name: claude, codex, gemini, opencode, qwen."""
    package: str
    """npm package."""
    version: str
    """Pinned version (the one known to work on node 20 and against the fake model)."""
    bin: str
    """Executable name in ``node_modules/.bin``."""

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}"


AGENTS: dict[str, AgentPackage] = {
    a.name: a
    for a in (
        AgentPackage("claude", "@anthropic-ai/claude-code", "2.1.197", "claude"),
        AgentPackage("codex", "@openai/codex", "0.169.0", "codex"),
        AgentPackage("gemini", "@google/gemini-cli", "0.61.0", "gemini"),
        AgentPackage("opencode", "opencode-ai", "1.18.33", "opencode"),
        AgentPackage("qwen", "@qwen-code/qwen-code", "0.15.10", "qwen"),
    )
}
NOT_INSTALLED = {"aider": "PyPI aider-chat is ~700 MB; install it by hand if needed"}
INSTALL_TIMEOUT = 600.0


class AgentInstallError(RuntimeError):
    """npm failed, or the CLI was not where it should be afterwards."""


def project_root(start: Path | None = None) -> Path:
    """The nearest folder above ``start`` (default: this file) with a ``pyproject.toml``
    naming the taskmill project; the current directory when there is none."""
    here = (start or Path(__file__)).resolve()
    for folder in [here, *here.parents]:
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and 'name = "taskmill"' in pyproject.read_text(encoding="utf-8"):
            return folder
    return Path.cwd()


CACHE_ENV = "TASKMILL_AGENTS_CACHE"


def default_cache_dir() -> Path:
    """``$TASKMILL_AGENTS_CACHE`` if set, else ``.cache/agents`` under the project root."""
    override = os.environ.get(CACHE_ENV)
    return Path(override) if override else project_root() / ".cache" / "agents"


def _agent(name: str) -> AgentPackage:
    try:
        return AGENTS[name]
    except KeyError:
        known = ", ".join(AGENTS)
        hint = f" ({NOT_INSTALLED[name]})" if name in NOT_INSTALLED else ""
        raise KeyError(f"unknown agent CLI {name!r}{hint}; known: {known}") from None


def agent_prefix(name: str, cache: Path | None = None) -> Path:
    """The npm prefix the CLI is installed into."""
    return (cache or default_cache_dir()) / _agent(name).name


def bin_path(name: str, cache: Path | None = None) -> Path:
    """Where the CLI's executable is (or will be) once installed."""
    return agent_prefix(name, cache) / "node_modules" / ".bin" / _agent(name).bin


def installed_version(name: str, cache: Path | None = None) -> str | None:
    """The version of the CLI's package in the cache, if any."""
    agent = _agent(name)
    manifest = agent_prefix(name, cache) / "node_modules" / agent.package / "package.json"
    try:
        version = json.loads(manifest.read_text(encoding="utf-8")).get("version")
    except (OSError, ValueError):
        return None
    return version if isinstance(version, str) else None


def find_agent(name: str, cache: Path | None = None) -> Path | None:
    """The executable if the pinned version is installed, else ``None``."""
    path = bin_path(name, cache)
    if installed_version(name, cache) == _agent(name).version and path.exists():
        return path
    return None


def install(
    name: str,
    cache: Path | None = None,
    *,
    npm: str = "npm",
    force: bool = False,
    timeout: float = INSTALL_TIMEOUT,
) -> Path:
    """Install one CLI at its pinned version (skipped when already there); returns its bin."""
    agent = _agent(name)
    if not force and (found := find_agent(name, cache)) is not None:
        return found
    npm_path = shutil.which(npm)
    if npm_path is None:
        raise AgentInstallError(f"{npm!r} not found on PATH: node and npm are needed")
    prefix = agent_prefix(name, cache)
    prefix.mkdir(parents=True, exist_ok=True)
    command = [npm_path, "install", "--prefix", str(prefix), "--no-audit", "--no-fund",
               "--no-save", "--loglevel=error", agent.spec]  # fmt: skip
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        raise AgentInstallError(f"npm install {agent.spec} timed out after {timeout:g}s") from exc
    found = find_agent(name, cache)
    if proc.returncode != 0 or found is None:
        raise AgentInstallError(
            f"npm install {agent.spec} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}"
        )
    return found


def install_all(
    names: Sequence[str] | None = None, cache: Path | None = None, *, force: bool = False
) -> dict[str, Path]:
    """Install several CLIs (default: all of :data:`AGENTS`); returns name -> bin."""
    return {name: install(name, cache, force=force) for name in names or list(AGENTS)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m taskmill.testing.agent_install",
        description="Install pinned coding-agent CLIs into a cache folder with npm.",
    )
    parser.add_argument("names", nargs="*", help=f"CLIs to install (default: {' '.join(AGENTS)})")
    parser.add_argument("--cache", type=Path, default=None, help="cache folder")
    parser.add_argument("--force", action="store_true", help="reinstall even if present")
    args = parser.parse_args(argv)
    cache = args.cache or default_cache_dir()
    failed = 0
    for name in args.names or list(AGENTS):
        if name in NOT_INSTALLED:
            print(f"{name}: skipped ({NOT_INSTALLED[name]})")
            continue
        try:
            already = find_agent(name, cache) is not None and not args.force
            path = install(name, cache, force=args.force)
        except (KeyError, AgentInstallError) as exc:
            print(f"{name}: FAILED: {exc}", file=sys.stderr)
            failed += 1
            continue
        state = "already installed" if already else "installed"
        print(f"{name}: {state} {_agent(name).spec} -> {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
