"""One error hierarchy: errors raised next to the code they concern are TaskmillErrors in the
right branch, still the builtin exceptions they were, and the CLI shows them all alike."""

from __future__ import annotations

import json

import pytest

from taskmill.agents.common import AgentConfigError
from taskmill.agents.registry import UnknownAdapterError, get_adapter
from taskmill.cli.common import fail
from taskmill.config_schema import AgentTableError, agent_table
from taskmill.errors import ConfigError, NotFound, ServiceError, TaskmillError
from taskmill.netproxy import NetProxyError
from taskmill.proxy import ProxyError


@pytest.mark.parametrize(("error", "branch", "builtin", "code", "exit_code"), [
    (AgentConfigError("agent 'x': option 'y' must be a string"), ConfigError, ValueError,
     "config_invalid", 2),
    (AgentTableError(["[agents.x] adapter must be a non-empty string"]), ConfigError,
     ValueError, "config_invalid", 2),
    (UnknownAdapterError("unknown agent adapter 'nope'"), NotFound, LookupError,
     "not_found", 3),
    (NetProxyError("cannot start the network allowlist proxy"), ServiceError, Exception,
     "service", 1),
    (ProxyError("cannot start the model proxy"), ServiceError, Exception, "service", 1),
])
def test_each_error_has_its_branch(error: TaskmillError, branch: type[TaskmillError],
                                   builtin: type[Exception], code: str, exit_code: int,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert isinstance(error, TaskmillError) and isinstance(error, branch)
    assert isinstance(error, builtin)  # callers' `except ValueError` / `LookupError` still work
    with pytest.raises(SystemExit) as exited:
        fail(error, as_json=True)
    assert exited.value.code == exit_code
    assert json.loads(capsys.readouterr().err) == {
        "error": {"code": code, "message": error.message}}
    with pytest.raises(SystemExit):
        fail(error, as_json=False)
    assert capsys.readouterr().err == f"error: {error.message}\n"


def test_raised_where_they_were() -> None:
    with pytest.raises(UnknownAdapterError) as unknown:
        get_adapter("nope")
    assert unknown.value.message.startswith("unknown agent adapter 'nope'")
    with pytest.raises(AgentTableError) as table:
        agent_table("x", {"adapter": ""})
    assert table.value.problems == ["[agents.x] adapter must be a non-empty string, got ''"]
    assert str(table.value) == table.value.message == table.value.problems[0]
