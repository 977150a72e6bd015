"""Ambient review: ``taskmill review REV_RANGE`` reviews any change, outside the mill.

``A..B`` reviews what B has that A has not (``git diff A...B``); a single revision or branch
``B`` means ``HEAD..B`` (or, when B is HEAD, ``HEAD~1..HEAD``). The reviewer runs in a
detached worktree of B made for it (the user's checkout is never touched), and the findings
are recorded as the mill's are (:func:`~.book.record_review`), on no task, with the range as
their subject: reviewing the same range again resolves the findings whose lines changed.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from ..agents.base import AgentAdapter, AgentConfig, TurnRequest
from ..agents.registry import UnknownAdapterError, get_adapter
from ..clock import Clock, iso
from ..errors import InvalidInput
from ..mill.git import Git, git_env
from ..mill.turn_runner import TurnRunner, default_turn_runner
from ..project import Project
from .gate import Reviewed, ReviewSettings, review_and_record
from .reviewer import Reviewer, ReviewInput


def resolve_range(git: Git, rev_range: str) -> tuple[str, str]:
    """``(base, head)`` commits of ``rev_range`` (see the module docstring)."""
    if "..." in rev_range:
        base_name, head_name = rev_range.split("...", 1)
    elif ".." in rev_range:
        base_name, head_name = rev_range.split("..", 1)
    else:
        base_name, head_name = "HEAD", rev_range
    head = git.rev(head_name or "HEAD")
    base = git.rev(base_name or "HEAD")
    if head is None or base is None:
        missing = head_name if head is None else base_name
        raise InvalidInput(f"{rev_range!r}: {missing!r} is not a commit of this repository",
                           hint="give a revision range (main..my-branch), a branch or a commit")
    if base == head:
        parent = git.rev(f"{head}~1")
        if parent is None:
            raise InvalidInput(f"{rev_range!r} holds no change to review")
        base = parent
    merge_base = git.run("merge-base", base, head, check=False).stdout.strip()
    return merge_base or base, head


def resolve_reviewer(project: Project) -> tuple[ReviewSettings, AgentConfig, AgentAdapter]:
    """``[review]`` (its defaults when the table is missing) and its agent."""
    settings = ReviewSettings.from_raw(project.config.raw) or ReviewSettings()
    config = project.config.agent(settings.agent)
    if config is None:
        raise InvalidInput(f"[review] agent: {project.config.agent_problem(settings.agent)}",
                           hint=f"add [agents.{settings.agent}] to .taskmill/config.toml, or "
                                "set [review] agent")
    try:
        adapter = get_adapter(config.adapter)
    except UnknownAdapterError as exc:
        raise InvalidInput(f"[review] agent {config.name!r}: {exc}") from None
    return settings, config, adapter


def review_range(project: Project, rev_range: str, *, env: Mapping[str, str], clock: Clock,
                 turn_runner: TurnRunner | None = None) -> Reviewed:
    """Review ``rev_range`` with ``[review] agent`` and record the findings."""
    settings, config, adapter = resolve_reviewer(project)
    paths = project.paths
    git = Git(paths.root, git_env(env))
    base, head = resolve_range(git, rev_range)
    diff = git.out("diff", "--no-color", "--no-ext-diff", base, head)
    if not diff.strip():
        raise InvalidInput(f"{rev_range!r} changes nothing")
    title = git.out("log", "-1", "--format=%s", head).strip()
    runner = turn_runner or default_turn_runner()
    stamp = iso(clock.now()).replace(":", "")
    logs = paths.logs / "review" / f"{head[:12]}-{stamp}"
    logs.mkdir(parents=True, exist_ok=True)
    home = paths.run.homes / config.name
    home.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="taskmill-review-"))
    tree = scratch / "tree"
    git.run("worktree", "add", "-q", "--detach", str(tree), head)
    try:
        request = TurnRequest(
            task_id=rev_range, title=title, iteration=1, prompt="", worktree=tree, home=home,
            state_dir=logs / "state", prompt_file=logs / "prompt.md",
            usage_file=logs / "usage.json", log_path=logs / "review.log", parent_env=env,
            taskmill_env={"TASKMILL_REVIEW": "1", "TASKMILL_WORKTREE": str(tree)},
            timeout_s=settings.timeout or 1800.0)
        reviewer = Reviewer(config, adapter, lambda a, c, r: runner(a, c, r))
        inp = ReviewInput(subject=rev_range, title=title, diff=diff)
        return review_and_record(project.ledger, reviewer, settings, inp, request,
                                 task_id=None, repo=paths.root.name, commit=head, git=git,
                                 actor=project.ledger.actor, clock=clock)
    finally:
        git.run("worktree", "remove", "--force", str(tree), check=False)
        shutil.rmtree(scratch, ignore_errors=True)
