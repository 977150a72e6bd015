"""``[executor]`` and the Temporal executor's flags: bad input gets a clear error, before
anything runs."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import CliResult, run_git

pytest.importorskip("temporalio")


def set_executor(repo: Path, table: str) -> None:
    config = repo / ".taskmill" / "config.toml"
    config.write_text(config.read_text() + "\n[executor]\n" + table + "\n")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(("table", "wanted"), [
    ('kind = "kubernetes"', "executor.kind"),
    ("heartbeat_timeout = 0", "executor.heartbeat_timeout"),
    ('adress = "h:1"', "executor has an unknown key 'adress' (did you mean 'address'?)"),
])
def test_a_bad_executor_table_is_refused(taskmill_repo: Path, cli: Callable[..., CliResult],
                                         table: str, wanted: str) -> None:
    set_executor(taskmill_repo, table)
    result = cli("ready", cwd=taskmill_repo)
    assert result.exit_code != 0
    assert wanted in result.stderr, result.stderr


def test_executor_table_is_read(taskmill_repo: Path) -> None:
    from taskmill.config import load_config

    set_executor(taskmill_repo, 'kind = "temporal"\naddress = "tm.example:7233"\n'
                                "heartbeat-timeout = 5")
    table = load_config(taskmill_repo / ".taskmill" / "config.toml").executor
    assert (table.kind, table.address, table.heartbeat_timeout, table.task_queue) == \
        ("temporal", "tm.example:7233", 5.0, "taskmill")


def _committed(repo: Path) -> None:
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-qm", "init", "--allow-empty")


@pytest.mark.parametrize(("args", "message"), [
    (["--executor", "temporal"], "--executor temporal needs the Temporal frontend"),
    (["--temporal", "no port"], "is not HOST:PORT"),
    (["--executor", "temporal", "--temporal", "127.0.0.1:{port}"],
     "cannot reach the Temporal cluster at 127.0.0.1:{port}"),
])
def test_run_with_the_temporal_executor_says_what_is_missing(
        taskmill_repo: Path, cli: Callable[..., CliResult], args: list[str],
        message: str) -> None:
    _committed(taskmill_repo)
    port = str(closed_port())
    result = cli("run", "--agent-cmd", "true", *[a.replace("{port}", port) for a in args],
                 cwd=taskmill_repo)
    assert result.exit_code != 0
    assert message.replace("{port}", port) in result.stderr, result.stderr


def test_worker_needs_the_shared_ledger(taskmill_repo: Path, tmp_path: Path,
                                       cli: Callable[..., CliResult]) -> None:
    """The repository names no ``[ledger] url`` and no ledger is on this machine."""
    _committed(taskmill_repo)
    result = cli("worker", "--temporal", "127.0.0.1:7233", "--repo", str(taskmill_repo),
                 "--workdir", str(tmp_path / "w"), cwd=tmp_path,
                 env={"TASKMILL_DIR": "", "TASKMILL_DATABASE_URL": ""})
    assert result.exit_code != 0
    assert "taskmill worker needs the shared ledger" in result.stderr, result.stderr
    assert "[ledger] url" in result.stderr and "TASKMILL_DIR" in result.stderr


@pytest.mark.parametrize("where", ["config", "env"])
def test_worker_says_which_ledger_server_it_cannot_reach(
        taskmill_repo: Path, tmp_path: Path, cli: Callable[..., CliResult],
        where: str) -> None:
    """``[ledger] url`` (committed, read from the worker's clone) or
    ``TASKMILL_DATABASE_URL`` names a server that does not answer: the worker says which
    host and port, never the password, before it polls for work."""
    pytest.importorskip("psycopg")
    from taskmill.config import set_ledger_url

    port = closed_port()
    url = f"postgresql://mill:s3cret@127.0.0.1:{port}/ledger"
    env = {"TASKMILL_DIR": "", "TASKMILL_DATABASE_URL": ""}
    if where == "config":
        set_ledger_url(taskmill_repo / ".taskmill" / "config.toml", url)
    else:
        env["TASKMILL_DATABASE_URL"] = url
    _committed(taskmill_repo)
    result = cli("worker", "--temporal", "127.0.0.1:7233", "--repo", str(taskmill_repo),
                 "--workdir", str(tmp_path / "w"), cwd=tmp_path, env=env)
    assert result.exit_code != 0
    assert f"cannot connect to the ledger database ledger at 127.0.0.1:{port}" in \
        result.stderr, result.stderr
    assert "s3cret" not in result.stderr + result.stdout
