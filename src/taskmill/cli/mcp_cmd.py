"""``taskmill mcp``: serve the ledger to agents over the Model Context Protocol (stdio)."""

from __future__ import annotations

import click

from .common import get_ctx, json_option


@click.command()
@json_option
def mcp() -> None:
    """Serve the ledger to agents over the Model Context Protocol (stdio).

    Speaks MCP on standard input/output until the client closes it. Tools: ready, list,
    show, create, update_notes, comment, add_dependency, and close (only when not working a
    task: with $TASKMILL_TASK_ID set, create links new tasks discovered-from that task and
    close is not offered). The ledger is the one of this repository, or of $TASKMILL_DIR;
    inside an agent turn ($TASKMILL_SOCKET set by the mill) only the mill's socket for the
    turn, which signs changes as the agent and refuses (and records) what is not its to do.
    """
    from ..mcp_server import main

    ctx = get_ctx()
    env = dict(ctx.env)
    if ctx.actor:
        env["TASKMILL_ACTOR"] = ctx.actor
    main(ctx.cwd, env)
