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


def test_worker_needs_the_shared_ledger(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    result = cli("worker", "--temporal", "127.0.0.1:7233", "--repo", str(tmp_path / "none"),
                 "--workdir", str(tmp_path / "w"), cwd=tmp_path, env={"TASKMILL_DIR": ""})
    assert result.exit_code != 0
    assert "taskmill worker needs the shared ledger" in result.stderr, result.stderr
