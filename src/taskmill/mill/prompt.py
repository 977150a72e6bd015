"""The prompt of one iteration: a fresh context holding everything the agent needs."""

from __future__ import annotations

from dataclasses import dataclass

from ..model import BLOCK_COMMENT_PREFIX, Task
from ..review.approval import AWAITING_REASON

PROMPT_TAIL = 6000
# Comment authors that are not people: the mill (``mill:<run>``) and agents
# (``agent:<name>/<task>``, their TASKMILL_ACTOR).
MILL_AUTHOR = "mill:"
AGENT_AUTHOR = "agent:"
REVIEW_AUTHOR = "review:"
"""Review comments: findings of the reviewer (``review:<reviewer>``) that did not block."""
MACHINE_AUTHORS = (MILL_AUTHOR, AGENT_AUTHOR, REVIEW_AUTHOR)
# what older versions wrote when an internal error blocked a task: noise for an agent
INTERNAL_ERROR = "taskmill blocked this task: taskmill error:"
# the mill's note that a task waits for a person's approval (how to approve or send it
# back): for the person, noise for an agent; a send-back's comment is the person's own
AWAITING_APPROVAL = BLOCK_COMMENT_PREFIX + AWAITING_REASON


@dataclass
class PromptContext:
    iteration: int
    max_iterations: int
    failure: str | None = None
    """Why the previous iteration did not pass (failing checks, a conflict...)."""
    failure_kind: str | None = None
    progress_notes: str = ""
    progress_file: str = ""
    checks: tuple[str, ...] = ()
    role: str | None = None
    """The role the task is worked as (``.taskmill/roles/NAME.toml``)."""
    role_prompt: str = ""
    """The role's prompt template, rendered for this turn: the agent's instructions."""


def build_prompt(task: Task, ctx: PromptContext) -> str:
    parts = [f"You are working on task {task.id}: {task.title}", ""]
    if ctx.role_prompt:
        parts += [f"## Your role: {ctx.role}", ctx.role_prompt.strip(), ""]
    if task.description:
        parts += ["## Description", task.description, ""]
    if task.design:
        parts += ["## Design", task.design, ""]
    if task.acceptance_criteria:
        parts += ["## Acceptance criteria", task.acceptance_criteria, ""]
    if task.notes:
        parts += ["## Notes", task.notes, ""]
    if task.hints:
        parts += ["## Hints", *(f"- {k}: {v}" for k, v in task.hints.items()), ""]
    people = [c for c in task.comments if not c.author.startswith(MACHINE_AUTHORS)]
    mill = [c for c in task.comments if c.author.startswith(MILL_AUTHOR)
            and INTERNAL_ERROR not in c.text and not c.text.startswith(AWAITING_APPROVAL)]
    agents = [c for c in task.comments if c.author.startswith(AGENT_AUTHOR)]
    reviews = [c for c in task.comments if c.author.startswith(REVIEW_AUTHOR)]
    if people:
        parts += ["## Comments from people", *(f"- {c.author}: {c.text}" for c in people), ""]
    if agents:
        parts += ["## Comments left by agents on earlier turns",
                  *(f"- {c.author}: {c.text}" for c in agents), ""]
    if reviews:
        parts += ["## Review comments (they do not block landing; fix what is right)",
                  *(f"- {c.text}" for c in reviews), ""]
    if mill:
        parts += ["## Notes from taskmill on earlier runs", *(f"- {c.text}" for c in mill), ""]
    if ctx.checks:
        parts += ["## How your work is judged",
                  "When your turn ends, taskmill runs these checks in this worktree; the task is "
                  "done only when all of them pass:",
                  *(f"    {c}" for c in ctx.checks), ""]
    parts += [f"This is iteration {ctx.iteration} of at most {ctx.max_iterations}."]
    if ctx.failure:
        heading = {"conflict": "## Your branch conflicts with the target branch",
                   "merge_checks": "## The project checks failed when merging your branch",
                   "turn": "## The previous turn failed",
                   "review": "## The reviewer found problems in your change"}.get(ctx.failure_kind or "",
                                                             "## The checks failed last time")
        text = ctx.failure if len(ctx.failure) <= PROMPT_TAIL else "[...]\n" + ctx.failure[-PROMPT_TAIL:]
        parts += ["", heading, "```", text, "```"]
        if ctx.failure_kind == "conflict":
            parts += ["The target branch has been merged into your branch with conflict markers "
                      "left in the files above. Resolve them (remove every <<<<<<< ======= "
                      ">>>>>>> marker) so that the checks pass."]
    if ctx.progress_notes:
        parts += ["", "## Progress notes from earlier iterations", ctx.progress_notes.strip()]
    if ctx.progress_file:
        parts += ["", f"You may append what you learned to the progress notes file "
                      f"{ctx.progress_file}; the next iteration will see it."]
    parts += ["", "Work in the current directory (a git worktree). You may commit; anything you "
                  "leave uncommitted is committed for you. Do not push."]
    return "\n".join(parts) + "\n"
