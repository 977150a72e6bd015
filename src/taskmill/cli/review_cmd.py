"""``taskmill review``: ambient review of any change, findings, dismissals, hit rate."""

from __future__ import annotations

from typing import Any

import click

from .common import emit_json, get_ctx, json_option


class _ReviewGroup(click.Group):
    """``taskmill review REV_RANGE`` is the ambient review; other words are subcommands."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["range", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_ReviewGroup)
def review() -> None:
    """The review gate. `taskmill review REV_RANGE` (or a branch) reviews a change with the
    [review] agent and records its findings; the subcommands list them, dismiss one and show
    the hit rate."""


def _clock() -> Any:
    from ..clock import SystemClock

    return get_ctx().clock or SystemClock()


def _show(records: list[Any]) -> None:
    for r in records:
        mark = "BLOCKS " if r.blocking and r.fate == "open" else ""
        click.echo(f"{r.id}  {r.fate:<9} {mark}{r.finding.severity} "
                   f"({r.finding.confidence:.2f}) {r.finding.where()}  {r.finding.title}"
                   + (f"  [{r.subject}]" if r.subject else ""))
        if r.reason:
            click.echo(f"    {r.fate} by {r.decided_by}: {r.reason}")


@review.command("range", hidden=True)
@click.argument("rev_range")
@json_option
def review_range_cmd(rev_range: str) -> None:
    """Review REV_RANGE (A..B, or a branch: HEAD..BRANCH)."""
    from ..review.ambient import review_range

    ctx = get_ctx()
    project = ctx.project()
    reviewed = review_range(project, rev_range, env=ctx.env, clock=_clock())
    verdict = reviewed.verdict
    records = verdict.blocking + verdict.comments + verdict.quiet
    if ctx.json:
        emit_json({"range": rev_range, **reviewed.summary(),
                   "findings": [r.to_json() for r in records]})
    else:
        if verdict.failed:
            click.echo(f"the review failed: {verdict.failed}", err=True)
        else:
            click.echo(f"{rev_range}: {len(records)} finding(s), {len(verdict.blocking)} at or "
                       f"above block_at, {len(verdict.resolved)} earlier one(s) resolved")
            _show(records)
    if verdict.failed:
        raise SystemExit(1)


@review.command("list")
@click.option("--task", "task_id", help="Only this task's findings.")
@click.option("--open", "only_open", is_flag=True, help="Only open findings.")
@json_option
def list_cmd(task_id: str | None, only_open: bool) -> None:
    """The findings and their fates (open, resolved, dismissed)."""
    from ..review.book import findings

    ledger = get_ctx().project().ledger
    tid = ledger.resolve(task_id) if task_id else None
    records = [r for r in findings(ledger, task_id=tid) if not only_open or r.fate == "open"]
    if get_ctx().json:
        emit_json([r.to_json() for r in records])
    else:
        _show(records)


@review.command("dismiss")
@click.argument("finding_id")
@click.option("-m", "--reason", default="", help="Why the finding is wrong.")
@json_option
def dismiss_cmd(finding_id: str, reason: str) -> None:
    """Dismiss an open finding (it counts against the reviewer's hit rate)."""
    from ..review.book import dismiss

    ctx = get_ctx()
    ledger = ctx.project().ledger
    record = dismiss(ledger, finding_id, reason=reason, actor=ledger.actor)
    if ctx.json:
        emit_json(record.to_json())
    else:
        click.echo(f"dismissed {record.id}: {record.finding.title}")


@review.command("stats")
@click.option("--days", type=float, help="The window in days (default: [review] window_days).")
@click.option("--all-severities", is_flag=True, help="One row per repository and reviewer.")
@json_option
def stats_cmd(days: float | None, all_severities: bool) -> None:
    """Hit rate (resolved / (resolved + dismissed)) per repository, reviewer and severity."""
    from ..review.book import findings
    from ..review.gate import ReviewSettings
    from ..review.stats import current_threshold, hit_rates, since_days

    ctx = get_ctx()
    project = ctx.project()
    settings = ReviewSettings.from_raw(project.config.raw) or ReviewSettings()
    window = days if days is not None else settings.window_days
    since = since_days(_clock().now(), window)
    rows = hit_rates(findings(project.ledger, since=since), by_severity=not all_severities)
    threshold = current_threshold(project.ledger, settings.min_confidence)
    if ctx.json:
        emit_json({"window_days": window, "since": since, "threshold": threshold,
                   "target_hit_rate": settings.target_hit_rate,
                   "rows": [r.to_json() for r in rows]})
        return
    click.echo(f"findings of the last {window:g} days; confidence threshold {threshold:.2f}"
               + (f" (target hit rate {settings.target_hit_rate:.2f})"
                  if settings.target_hit_rate else ""))
    click.echo(f"{'repo':<16} {'reviewer':<12} {'severity':<9} {'reported':>8} {'open':>5} "
               f"{'resolved':>8} {'dismissed':>9} {'hit rate':>8}")
    for r in rows:
        rate = f"{r.hit_rate:.2f}" if r.hit_rate is not None else "-"
        click.echo(f"{r.repo[:16]:<16} {r.reviewer[:12]:<12} {r.severity:<9} {r.reported:>8} "
                   f"{r.open:>5} {r.resolved:>8} {r.dismissed:>9} {rate:>8}")


@review.command("approvals")
@json_option
def approvals_cmd() -> None:
    """The tasks whose checks and review passed, awaiting a person's approval to land."""
    from ..review.approval import awaiting

    ctx = get_ctx()
    waiting = awaiting(ctx.project().ledger)
    if ctx.json:
        emit_json([{"task": task.to_json(), "commit": state.commit, "attempt": state.attempt,
                    "since": state.at} for task, state in waiting])
        return
    for task, state in waiting:
        click.echo(f"{task.id}  {(state.commit or '?')[:12]}  since {state.at}  {task.title}")


@click.command()
@click.argument("task_id")
@json_option
def approve(task_id: str) -> None:
    """Approve a task awaiting approval: the next `taskmill run` lands its branch as it is."""
    from ..review.approval import approve as do_approve

    ctx = get_ctx()
    ledger = ctx.project().ledger
    state = do_approve(ledger, task_id, actor=ledger.actor)
    if ctx.json:
        emit_json({"task": ledger.resolve(task_id), "status": state.status,
                   "commit": state.commit})
    else:
        click.echo(f"approved {ledger.resolve(task_id)} at {(state.commit or '?')[:12]}: the "
                   "next `taskmill run` lands it")


@click.command()
@click.argument("task_id")
@click.option("-m", "--message", required=True, help="What to change (the agent's next "
              "prompt shows it).")
@json_option
def reject(task_id: str, message: str) -> None:
    """Send a task awaiting approval back to its agent, with a comment."""
    from ..review.approval import reject as do_reject

    ctx = get_ctx()
    ledger = ctx.project().ledger
    state = do_reject(ledger, task_id, message, actor=ledger.actor)
    if ctx.json:
        emit_json({"task": ledger.resolve(task_id), "status": state.status,
                   "comment": state.comment})
    else:
        click.echo(f"sent {ledger.resolve(task_id)} back: the next `taskmill run` works it "
                   "again with your comment")


@review.command("eval")
@click.argument("dataset")
@click.option("--limit", type=int, help="Only the first N cases.")
@json_option
def eval_cmd(dataset: str, limit: int | None) -> None:
    """Run the [review] agent on a labelled DATASET (a JSON lines file, or `humanize`, the
    shipped one) and print precision, recall and F1 per severity, and the hit rate at each
    confidence threshold."""
    from ..agents.base import TurnRequest
    from ..clock import iso
    from ..mill.turn_runner import default_turn_runner
    from ..review.ambient import resolve_reviewer
    from ..review.evaluate import evaluate, load_dataset
    from ..review.reviewer import Reviewer

    ctx = get_ctx()
    project = ctx.project()
    cases = load_dataset(dataset)[:limit] if limit else load_dataset(dataset)
    settings, config, adapter = resolve_reviewer(project)
    runner = default_turn_runner()
    logs = project.paths.logs / "review-eval" / iso(_clock().now()).replace(":", "")
    home = project.paths.run.homes / config.name
    home.mkdir(parents=True, exist_ok=True)

    def frame(scratch: Any, case_id: str) -> TurnRequest:
        folder = logs / case_id
        folder.mkdir(parents=True, exist_ok=True)
        return TurnRequest(task_id=case_id, title=case_id, iteration=1, prompt="",
                           worktree=scratch, home=home, state_dir=folder / "state",
                           prompt_file=folder / "prompt.md", usage_file=folder / "usage.json",
                           log_path=folder / "review.log", parent_env=ctx.env,
                           taskmill_env={"TASKMILL_REVIEW": "1"},
                           timeout_s=settings.timeout or 1800.0)

    def progress(n: int, case_id: str) -> None:
        if not ctx.json:
            click.echo(f"  [{n}/{len(cases)}] {case_id}", err=True)

    reviewer = Reviewer(config, adapter, lambda a, c, r: runner(a, c, r))
    report = evaluate(cases, reviewer, frame, progress=progress)
    if ctx.json:
        emit_json({"dataset": dataset, "reviewer": config.name, **report.to_json()})
        return

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    click.echo(f"{dataset}: {report.cases} cases, reviewer {config.name}"
               + (f", {len(report.failed)} failed reviews" if report.failed else ""))
    click.echo(f"{'severity':<9} {'findings':>8} {'true':>5} {'labels':>6} {'found':>5} "
               f"{'precision':>9} {'recall':>7} {'F1':>6}")
    for r in report.severities:
        click.echo(f"{r.name:<9} {r.findings:>8} {r.true_findings:>5} {r.labels:>6} "
                   f"{r.found:>5} {pct(r.precision):>9} {pct(r.recall):>7} {pct(r.f1):>6}")
    click.echo(f"\n{'confidence >=':<13} {'findings':>8} {'true':>5} {'hit rate':>8} "
               f"{'recall':>7}")
    for r in report.thresholds:
        click.echo(f"{r.name:<13} {r.findings:>8} {r.true_findings:>5} {pct(r.precision):>8} "
                   f"{pct(r.recall):>7}")
