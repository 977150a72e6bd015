"""The ``exec`` adapter: run any command as the agent.

``[agents.NAME] adapter = "exec"`` with ``command = ["my-agent", "--flag"]`` (plus ``args``).
The command gets the prompt on stdin and in the file ``$TASKMILL_PROMPT_FILE``, runs in the
task's worktree with the clean environment of :mod:`taskmill.agents.envs` (which carries
``TASKMILL_PROMPT_FILE``, ``TASKMILL_USAGE_FILE`` and the mill's ``TASKMILL_TASK_ID``,
``TASKMILL_TASK_TITLE``, ``TASKMILL_ITERATION``, ``TASKMILL_WORKTREE``, ``TASKMILL_LEDGER``),
plus ``TASKMILL_MODEL`` / ``TASKMILL_BASE_URL`` when the table sets ``model`` / ``base_url``,
and the variable named by ``api_key_env`` (copied from taskmill's environment; missing is an
error).

Usage comes only from the JSON file the command may write to ``$TASKMILL_USAGE_FILE``
(``{"input_tokens": N, "output_tokens": N, "cost_usd": X}``), which the runner merges.
"""

from __future__ import annotations

from taskmill.agents.base import AgentConfig, Invocation, TurnRequest, Usage
from taskmill.agents.common import AgentConfigError
from taskmill.agents.envs import api_key
from taskmill.agents.headless import invocation


class ExecAdapter:
    """Runs ``config.command`` + ``config.args``; the prompt on stdin."""

    name = "exec"
    install_hint = "check the `command` of the agent table (it must be on PATH or a path)"

    def prepare(self, config: AgentConfig, request: TurnRequest) -> Invocation:
        if not config.command:
            raise AgentConfigError(
                f'agent {config.name!r} uses adapter "exec" but sets no command; add e.g. '
                f'command = ["my-agent", "--headless"] to [agents.{config.name}]'
            )
        extra: dict[str, str] = {}
        if config.model:
            extra["TASKMILL_MODEL"] = config.model
        if config.base_url:
            extra["TASKMILL_BASE_URL"] = config.base_url
        key = api_key(config, request)
        if key and config.api_key_env:
            extra[config.api_key_env] = key
        return invocation(config, request, (*config.command, *config.args), extra,
                          stdin=request.prompt)

    def parse(
        self, config: AgentConfig, request: TurnRequest, output: str, exit_code: int | None
    ) -> Usage:
        return Usage(model=config.model)
