"""The review step of a task's workflow (``[review]``): after its checks passed, before the
merge queue, the configured reviewer reviews the branch's diff against the target.

The reviewer's turn runs like any agent turn of the mill (through the model proxy, under
the run's containment, in the task's worktree, which is put back as the commit was
afterwards: a reviewer only answers). What it found is recorded by
:func:`taskmill.review.gate.review_and_record`; this module only gathers the input and
turns the verdict into the policy's :class:`~.policy.ChangeReviewed`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..agents.base import AgentAdapter, AgentConfig, TurnRequest, TurnResult
from ..ledger import Ledger
from ..proxy.turn import through_proxy
from ..review.gate import ReviewSetup, review_and_record
from ..review.log_names import MILL_REVIEW_SUFFIX
from ..review.reviewer import Reviewer, ReviewInput
from ..sandbox import Mounts
from .checks import ChecksResult, tail
from .context import WorkerContext
from .policy import ChangeReviewed
from .worktrees import Workspace


def checks_summary(checks: ChecksResult | None) -> str:
    if checks is None:
        return ""
    return "\n".join(f"$ {r.command}  (exit {r.exit_code})\n{tail(r.output, 1500)}"
                     for r in checks.runs)


def review_change(ctx: WorkerContext, setup: ReviewSetup, *, attempt_log: Path,
                  ws: Workspace, task_id: str, title: str, description: str, iteration: int,
                  checks: ChecksResult | None, ledger: Ledger,
                  actor: str) -> tuple[ChangeReviewed, dict[str, Any]]:
    """Review the task's branch in ``ws``; returns the policy's result and the summary kept
    in the attempt's detail. The reviewer's log and state sit beside ``attempt_log`` (the
    worker turn's log, named for its lap, iteration and start): each review round keeps its
    own, a round after a send-back too."""
    git = ws.git
    head = git.out("rev-parse", "HEAD")
    base = ctx.queue.tip()
    diff = git.run("diff", "--no-color", "--no-ext-diff", f"{base}...{head}",
                   check=False).stdout
    state = attempt_log.with_suffix(".review.state")
    state.mkdir(parents=True, exist_ok=True)
    home = ctx.homes_dir / setup.config.name
    home.mkdir(parents=True, exist_ok=True)
    timeout = setup.settings.timeout or ctx.settings.turn_timeout
    request = TurnRequest(
        task_id=task_id, title=title, iteration=iteration, prompt="", worktree=ws.path,
        home=home, state_dir=state, prompt_file=state / "prompt.md",
        usage_file=state / "usage.json",
        log_path=attempt_log.with_suffix(MILL_REVIEW_SUFFIX), parent_env=ctx.parent_env,
        taskmill_env={"TASKMILL_TASK_ID": task_id, "TASKMILL_TASK_TITLE": title,
                      "TASKMILL_ITERATION": str(iteration), "TASKMILL_WORKTREE": str(ws.path),
                      "TASKMILL_REVIEW": "1", **ctx.agent_git_env},
        timeout_s=timeout)

    def run(adapter: AgentAdapter, config: AgentConfig, req: TurnRequest) -> TurnResult:
        turn = through_proxy(ctx.proxy, config, adapter, req)
        mounts = None
        if ctx.containment is not None and ctx.containment.sandbox is not None:
            mounts = Mounts.for_worktree(
                ws.path, admin=ws.admin, writable=(turn.request.home, turn.request.state_dir),
                proxy_port=turn.request.proxy_port, proxy_socket=turn.request.proxy_socket)
        try:
            return ctx.turn_runner(turn.adapter, turn.config, turn.request, cancel=ctx.abort,
                                   kill_now=ctx.kill_now, containment=ctx.containment,
                                   mounts=mounts)
        finally:
            if turn.route is not None and ctx.proxy is not None:
                ctx.proxy.unregister(turn.route.token)

    reviewer = Reviewer(setup.config, setup.adapter, run)
    inp = ReviewInput(subject=task_id, title=title, description=description, diff=diff,
                      checks_output=checks_summary(checks), round=iteration)
    try:
        reviewed = review_and_record(ledger, reviewer, setup.settings, inp, request,
                                     task_id=task_id, repo=setup.repo, commit=head, git=git,
                                     actor=actor, clock=ctx.clock)
    finally:  # a reviewer only answers: whatever it left in the worktree goes
        if git.out("rev-parse", "HEAD") != head or git.status_porcelain().strip():
            git.run("reset", "-q", "--hard", head, check=False)
            git.run("clean", "-fdq", check=False)
    verdict = reviewed.verdict
    summary = reviewed.summary()
    ctx.bus.emit("review_finished", task=task_id, reviewer=setup.config.name,
                 blocking=len(verdict.blocking), comments=len(verdict.comments),
                 resolved=len(verdict.resolved), failed=verdict.failed,
                 overhead_ms=summary["overhead_ms"])
    return ChangeReviewed(
        blocking=verdict.prompt_text() if verdict.blocking else "", failed=verdict.failed,
        wait=verdict.failed is not None and setup.settings.on_failure == "wait"), summary
