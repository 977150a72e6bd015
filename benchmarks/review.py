"""The review step's own overhead per landing, the model's time left out (target < 300 ms).

A real repository and ledger (SQLite on disk) with a history of earlier reviews; a task's
worktree on its branch. Each landing commits a change to the branch, then runs the mill's
review step (:func:`taskmill.mill.review_step.review_change`) as the worker does: the diff
against the target, the reviewer's turn, the findings recorded (matched to the open ones,
fates decided, comments left), the worktree checked and put back. The reviewer is an
in-process turn that answers at once with two findings; the time of that turn (the model's
time) is subtracted, so the figure is taskmill's own cost: git, the ledger, parsing.

    python -m benchmarks.review [--landings 30] [--history 300]
"""

from __future__ import annotations

import argparse
import json
import time
from types import SimpleNamespace
from typing import Any

from .mill_common import (
    Report,
    base_parser,
    bench_env,
    git,
    header,
    main_of,
    median,
    percentile,
    workdir,
)

TARGET_MS = 300.0


def run(args: argparse.Namespace) -> Report:
    from taskmill.agents.base import AgentAdapter, AgentConfig, TurnRequest, TurnResult, Usage
    from taskmill.clock import SystemClock
    from taskmill.ledger import Ledger
    from taskmill.mill.git import Git, git_env
    from taskmill.mill.review_step import review_change
    from taskmill.mill.worktrees import Workspace
    from taskmill.review.book import record_review
    from taskmill.review.findings import BlockAt, Finding
    from taskmill.review.gate import ReviewSettings, ReviewSetup

    report = header("review step overhead",
                    f"{args.landings} landings reviewed, {args.history} earlier reviews in "
                    "the ledger; the reviewer's turn (the model's time) left out")
    with workdir("review", keep=args.keep) as tmp:
        env = bench_env(tmp / "home")
        repo = tmp / "repo"
        repo.mkdir()
        git(repo, "init", "-q", "-b", "main", env=env)
        for n in range(40):  # a small project
            (repo / f"mod{n}.py").write_text("".join(f"def f{i}(x):\n    return x + {i}\n"
                                                     for i in range(50)))
        git(repo, "add", "-A", env=env)
        git(repo, "commit", "-qm", "project", env=env)
        tree = tmp / "wt"
        git(repo, "worktree", "add", "-q", "-b", "tm-x", str(tree), "main", env=env)
        clock = SystemClock()
        ledger = Ledger.open(tmp / "taskmill.db", prefix="tm", clock=clock, actor="mill:bench")
        ledger.create("the task", task_id="tm-x")
        for n in range(args.history):  # earlier reviews of other tasks
            tid = ledger.create(f"earlier {n}").id
            record_review(ledger, subject=tid, task_id=tid, reviewer="rev", repo="repo",
                          commit="c", found=[Finding(file="a.py", line_start=1, line_end=2,
                                                     severity="minor", confidence=0.5,
                                                     title=f"t{n}", explanation="e")],
                          block_at=BlockAt(), min_confidence=0.0,
                          changed_since=lambda old: {}, actor="mill:bench")
        answer = json.dumps({"findings": [
            {"file": "mod1.py", "line_start": 2, "line_end": 2, "severity": "minor",
             "confidence": 0.6, "title": "returns x + 0", "explanation": "useless add"},
            {"file": "mod2.py", "line_start": 4, "line_end": 4, "severity": "nit",
             "confidence": 0.4, "title": "name", "explanation": "f1 says nothing"}]})
        model_s: list[float] = []

        def turn(adapter: AgentAdapter, config: AgentConfig, request: TurnRequest, **_: Any
                 ) -> TurnResult:
            start = time.perf_counter()
            request.log_path.parent.mkdir(parents=True, exist_ok=True)
            request.log_path.write_text(answer)
            took = time.perf_counter() - start
            model_s.append(took)
            return TurnResult(0, False, took, Usage(), request.log_path)

        wt_git = Git(tree, git_env(env))
        tip = wt_git.out("rev-parse", "main").strip()
        ctx: Any = SimpleNamespace(
            queue=SimpleNamespace(tip=lambda: tip), homes_dir=tmp / "homes",
            settings=SimpleNamespace(turn_timeout=60.0), parent_env=env, agent_git_env={},
            proxy=None, containment=None, turn_runner=turn, abort=None, kill_now=None,
            bus=SimpleNamespace(emit=lambda *a, **k: None), clock=clock)
        setup = ReviewSetup(ReviewSettings(), AgentConfig(name="rev", adapter="exec"),
                            object(), "repo")  # type: ignore[arg-type]
        ws = Workspace(path=tree, branch="tm-x", base=tip, slot=0, git=wt_git,
                       admin=tmp / "admin")
        overhead: list[float] = []
        for n in range(args.landings):
            target = tree / f"mod{n % 40}.py"
            target.write_text(target.read_text().replace("return x + 1\n",
                                                         f"return x + 1  # {n}\n", 1))
            wt_git.commit_all(f"iteration {n}")
            before = len(model_s)
            start = time.perf_counter()
            review_change(ctx, setup, ledger_dir_task=tmp / "logs", ws=ws, task_id="tm-x",
                          title="the task", description="", iteration=n + 1, checks=None,
                          ledger=ledger, actor="mill:bench")
            total = time.perf_counter() - start
            overhead.append((total - sum(model_s[before:])) * 1000)
        ledger.close_db()
    med, p95 = median(overhead), percentile(overhead, 95)
    report.add("review step overhead per landing, median", med, "ms",
               f"< {TARGET_MS:.0f} ms", med < TARGET_MS)
    report.add("review step overhead per landing, p95", p95, "ms", f"< {TARGET_MS:.0f} ms",
               p95 < TARGET_MS)
    report.note("includes git diff against the target, the findings folded from the audit "
                "trail and recorded in one transaction, the worktree check")
    return report


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__ or "")
    p.add_argument("--landings", type=int, default=30, help="landings reviewed (default 30)")
    p.add_argument("--history", type=int, default=300,
                   help="earlier reviews in the ledger (default 300)")
    return p


if __name__ == "__main__":
    main_of(run, parser())
