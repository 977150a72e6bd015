"""The activities of a task's workflow: what the mill *does* for one task (git, agent turns,
checks, the merge queue), each returning a :mod:`.policy` result and deciding nothing.

:class:`TaskActivities` holds what they share for one task in one run (its worktree, the
attempt in flight); the worker (:mod:`.worker`) calls one per action of the policy. The
records they and the worker write are in :mod:`.records`.
"""

from __future__ import annotations

import shutil
from concurrent.futures import Future
from pathlib import Path

from ..agents.base import TurnRequest
from ..capability import SOCKET_ENV
from ..kinds import LandOutcome, LedgerEvent, MillEvent
from ..ledger import DATABASE_URL_ENV, Ledger
from ..model import BLOCKS, CLOSED, Task
from ..paths import RUN_DIR, RunFiles
from ..proxy.turn import proxy_usage, through_proxy
from ..sandbox import Mounts
from .batch import BatchLandResult, LandRequest
from .check_env import EXIT_NOT_FOUND, not_found_in_output, not_found_message
from .checks import ChecksResult, run_checks
from .context import WorkerContext
from .git import Git
from .land import LandResult
from .policy import (
    AgentReady,
    BranchRead,
    ChangeReviewed,
    ChecksDone,
    CommandsChecked,
    Failure,
    LandDone,
    LandingFound,
    Paused,
    Reviewed,
    TargetMerged,
    TurnDone,
    WorkspaceAcquired,
)
from .prompt import PromptContext, build_prompt
from .records import Attempt, TaskRecords, unchecked_reason
from .review_step import review_change
from .worktrees import Workspace, branch_for


class TaskActivities:
    """The activities of one task in one run."""

    def __init__(self, ctx: WorkerContext, task: Task, lap: int, ledger: Ledger,
                 records: TaskRecords) -> None:
        self.ctx = ctx
        self.task = task
        self.lap = lap
        self.ledger = ledger
        self.records = records
        run_files = RunFiles(ctx.ledger_dir / RUN_DIR)
        self.progress_file = run_files.progress(task.id)
        legacy = run_files.legacy_progress(task.id)
        if legacy.is_file() and not self.progress_file.exists():
            self.progress_file.parent.mkdir(parents=True, exist_ok=True)
            legacy.replace(self.progress_file)
        self.ws: Workspace | None = None
        self.attempt: Attempt | None = None
        """The attempt in flight (started by :meth:`run_turn`)."""
        self.unverified = False
        """The attempt passed without checks (there are none, allowed by allow_unchecked)."""
        self.landing: LandResult | None = None
        """What the merge queue said last."""
        self.checks: ChecksResult | None = None
        """The result of the task's own checks in its last attempt (when they ran)."""

    # -- before the first turn -------------------------------------------------------------

    def find_landing(self) -> LandingFound:
        """A task taken over from a run that died may have landed before it was closed (of
        this lap only: a reopened task's earlier landing is not its new work)."""
        return LandingFound(self.ctx.git.find_landed(self.ctx.queue.ref, self.task.id,
                                                     lap=self.lap))

    def _prompt_problem(self) -> str | None:
        """Why the role's prompt template does not render for this task (None: it does)."""
        role = self.ctx.roles.role(self.task)
        if role is None or role.prompt_path is None:
            return None
        from ..roles.template import TemplateError, render_prompt

        try:
            render_prompt(role, self.ledger.show(self.task.id), self._run_vars(1, None))
        except TemplateError as exc:
            return (f"{exc.message}. Fix the template, then: taskmill update {self.task.id} "
                    "--status open")
        return None

    def _run_vars(self, iteration: int, failure: Failure | None) -> dict[str, object]:
        """The ``run`` a role's prompt template sees."""
        return {"id": self.ctx.run_id, "iteration": iteration,
                "max_iterations": self._max_iterations(),
                "failure": failure[1] if failure else "",
                "failure_kind": failure[0] if failure else "",
                "checks": list(self.task.checks or self.ctx.project_checks)}

    def _max_iterations(self) -> int:
        return self.ctx.roles.max_iterations(self.task, self.ctx.settings.max_iterations)

    def check_commands(self) -> CommandsChecked:
        """Why the task's checks (or the project's, run by the merge queue) cannot run: a
        command that does not exist. Also warns, once per run, about the checks' Python."""
        problem = self._prompt_problem()
        if problem is not None:  # the role's template would fail every turn
            return CommandsChecked(problem)
        guard = self.ctx.check_guard
        if guard is None:
            return CommandsChecked(None)
        own = list(self.task.checks or [])
        project = list(self.ctx.project_checks)
        for warning in guard.new_warnings(own):
            self.ctx.bus.emit(MillEvent.WARNING, task=self.task.id, about="editable_install",
                              message=warning)
        if (not own and not project and not self.ctx.settings.allow_unchecked
                and self.ctx.roles.lands(self.task)):
            return CommandsChecked(unchecked_reason(self.task.id))

        problems = guard.problems(own)
        if problems:
            return CommandsChecked(f"{problems[0]}. {self.fix_hint(project=False)}")
        problems = guard.problems(project)
        if problems:
            return CommandsChecked(f"{problems[0]}. {self.fix_hint(project=True)}")
        return CommandsChecked(None)

    def acquire_workspace(self, base: str, *, fresh: bool, read_head: bool,
                          rejoin: bool = False) -> WorkspaceAcquired:
        """The task's worktree. ``rejoin``: taken again in this run, after the landing queue
        sent the parked branch back (its work is this run's: not ``resumed``)."""
        ws = self.ws = self.ctx.pool.acquire(self.task.id, base, fresh=fresh)
        extra = {"rejoined": True} if rejoin else {}
        self.ctx.bus.emit(MillEvent.WORKSPACE, task=self.task.id, path=str(ws.path),
                          branch=ws.branch, resumed=ws.resumed and not rejoin, **extra)
        return WorkspaceAcquired(ws.git.out("rev-parse", "HEAD") if read_head else "")

    def release(self, *, landed: bool) -> None:
        if self.ws is None:
            return
        try:
            self.ctx.pool.release(self.ws, delete_branch=landed)
        except Exception as exc:
            self.ctx.bus.emit(MillEvent.WARNING, task=self.task.id,
                              message=f"could not clean worktree: {exc}")

    # -- the loop ------------------------------------------------------------------------

    def review(self) -> Reviewed:
        stopping = self.ctx.stop.is_set()
        return Reviewed(self.records.history(), stopping, held=self._held())

    def _held(self) -> str | None:
        """Why no further turn may start: the task's role spent its daily budget."""
        roles = self.ctx.roles
        if not self.task.role or not roles.budgets():
            return None
        hold = roles.holds(self.ledger, self.ctx.clock.now()).get(self.task.role)
        return hold.reason if hold is not None else None

    def await_agent(self) -> AgentReady:
        config, _ = self.ctx.agents(self.task)
        self.ctx.gate.wait(config.name, self.ctx.stop)
        return AgentReady(self.ctx.stop.is_set())

    def pause_agent(self, retry_after_s: float | None) -> Paused:
        config, _ = self.ctx.agents(self.task)
        return Paused(self.ctx.gate.pause(config.name, retry_after_s,
                                          self.ctx.settings.rate_limit_backoff))

    def run_turn(self, iteration: int, failure: Failure | None) -> TurnDone:
        """Start an attempt, run the agent's turn, commit what it left on the task's branch."""
        ws = self.ws
        assert ws is not None
        config, adapter = self.ctx.agents(self.task)
        checks = self.task.checks or self.ctx.project_checks
        task = self.ledger.show(self.task.id)
        # a check, or the merge queue's checks, may have broken the slot's .git
        self._settle(ws, ws.base)
        start, before = ws.git.out("rev-parse", "HEAD", "HEAD^{tree}").split()
        attempt = self.attempt = self.records.start_attempt(iteration, config.name,
                                                            config.model, self._log_dir(),
                                                            role=self.task.role)
        request = self._request(task, ws, iteration, checks, failure, attempt.log_path)
        self.ctx.bus.emit(MillEvent.TURN_STARTED, task=task.id, iteration=iteration,
                          agent=config.name, attempt=attempt.id)
        turn = through_proxy(self.ctx.proxy, config, adapter, request)
        try:
            result = self.ctx.turn_runner(
                turn.adapter, turn.config, turn.request, cancel=self.ctx.abort,
                kill_now=self.ctx.kill_now, containment=self.ctx.containment,
                mounts=self._mounts(ws, turn.request))
        finally:  # the turn is over: so are its capability and its way to the model
            if request.capability_socket is not None and self.ctx.capability is not None:
                self.ctx.capability.unregister(request.capability_socket)
            counted = (self.ctx.proxy.unregister(turn.route.token)
                       if turn.route is not None and self.ctx.proxy is not None else None)
        attempt.result = result
        if counted is not None and self.ctx.proxy is not None:
            attempt.usage_detail = proxy_usage(result.usage, counted, self.ctx.proxy.prices)
        usage = result.usage
        if result.sandbox_failed is not None:  # the agent never ran: nothing to commit
            attempt.detail = {"sandbox_failed": result.sandbox_failed,
                              "exit_code": result.exit_code,
                              "duration_s": round(result.duration_s, 3)}
            return TurnDone(ok=False, exit_code=result.exit_code, error=usage.error,
                            changed=False, sandbox_failed=result.sandbox_failed)
        if result.cancelled or usage.rate_limited:
            return TurnDone(ok=False, cancelled=result.cancelled, exit_code=result.exit_code,
                            timed_out=result.timed_out, rate_limited=usage.rate_limited,
                            retry_after_s=usage.retry_after_s, error=usage.error)
        self.ctx.gate.succeeded(config.name)
        # the agent may have broken the slot's .git or moved it off its branch: repaired
        # first (its work stays), then committed through git bound to the slot
        self._settle(ws, start)
        wt = ws.git
        wt.commit_all(f"taskmill: {task.id} iteration {iteration}\n\n{task.title}\n")
        head, after, *parents = wt.out("rev-parse", "HEAD", "HEAD^{tree}", "HEAD^@").split()
        restarted = None
        if head != start and start not in parents \
                and not self.ctx.pool.shares_history(head, ws.base):
            restarted = self.ctx.pool.restart_branch(ws, self.ctx.queue.tip(), task.id)
            self.records.recovered(restarted, LedgerEvent.BRANCH_RESTARTED)
            start = head = ws.base  # the turn's work is not on the branch
            after = wt.out("rev-parse", "HEAD^{tree}")
        changed = after != before
        # the attempt's commit is one it made (taskmill's or the agent's own) on the
        # task's branch, never the commit it started from (the target's, or another's)
        attempt.commit = head if head != start else None
        attempt.head = head
        attempt.detail = {"changed": changed, "exit_code": result.exit_code,
                          "timed_out": result.timed_out,
                          "duration_s": round(result.duration_s, 3), "start": start,
                          "head": head}
        if self.ctx.sandbox:
            attempt.detail["sandbox"] = self.ctx.sandbox
        if usage.error:
            attempt.detail["agent_error"] = usage.error
        if result.limit_hit:  # the line is in usage.error (the failure the agent gets)
            attempt.detail["limit_hit"] = result.limit_hit
        return TurnDone(ok=result.ok, timed_out=result.timed_out, exit_code=result.exit_code,
                        error=usage.error, changed=changed, restarted=restarted)

    def run_checks(self, *, conflict_markers: bool) -> ChecksDone:
        """Run the task's checks (the project's when it has none) in its worktree."""
        ws, attempt = self.ws, self.attempt
        assert ws is not None and attempt is not None
        checks = self.task.checks or self.ctx.project_checks
        env, mounts = self._check_view(ws)
        result = run_checks(checks, ws.path, env,
                            timeout_s=self.ctx.settings.check_timeout,
                            log_path=attempt.log_path.with_suffix(".checks.log"),
                            cancel=self.ctx.abort,
                            containment=self.ctx.containment, mounts=mounts) if checks else None
        self.checks = result
        if result is not None:
            attempt.detail["checks"] = result.to_json()
        else:
            attempt.detail["unverified"] = ("no checks: the task and the project have none, "
                                            "so this work is not verified (allow_unchecked)")
        self.unverified = result is None
        if result is not None and result.cancelled:
            return ChecksDone(ok=False, cancelled=True)
        if result is not None and result.sandbox_failed is not None:
            return ChecksDone(ok=False, sandbox_failed=result.sandbox_failed)
        markers = self._conflict_markers(ws.git) if conflict_markers else ""
        if result is None:
            return ChecksDone(ran=False, conflict_markers=markers)
        return ChecksDone(ok=result.ok, failure_text="" if result.ok else result.failure_text(),
                          not_found=None if result.ok else self.not_found(
                              result, project=not self.task.checks),
                          conflict_markers=markers)

    def _check_home(self) -> Path | None:
        """The HOME of this task's checks in the sandbox: a folder of the task's own (kept
        between its iterations, removed when it lands), so no task's checks see what another
        task's left in HOME. None: unsandboxed, or the config sets the checks' HOME."""
        sandbox = self.ctx.containment.sandbox if self.ctx.containment is not None else None
        if sandbox is None or sandbox.check_home is None \
                or self.ctx.check_env.get("HOME") != str(sandbox.check_home):
            return None
        return sandbox.check_home / "tasks" / self.task.id

    def _check_view(self, ws: Workspace) -> tuple[dict[str, str], Mounts | None]:
        """The checks' environment and what they see (None: the sandbox's default)."""
        home = self._check_home()
        if home is None:
            return dict(self.ctx.check_env), None
        home.mkdir(parents=True, exist_ok=True)
        return ({**self.ctx.check_env, "HOME": str(home)},
                Mounts.for_worktree(ws.path, admin=ws.admin, writable=(home,)))

    def forget_check_home(self) -> None:
        """Remove the task's checks' HOME (it landed: nothing of it is needed again)."""
        home = self._check_home()
        if home is not None:
            shutil.rmtree(home, ignore_errors=True)

    def review_change(self) -> ChangeReviewed:
        """The review step (``[review]``): the reviewer reviews the branch (see
        :mod:`.review_step`)."""
        ws, attempt, setup = self.ws, self.attempt, self.ctx.review
        assert ws is not None and attempt is not None and setup is not None
        result, summary = review_change(
            self.ctx, setup, attempt_log=attempt.log_path, ws=ws, task_id=self.task.id,
            title=self.task.title, description=self.task.description,
            iteration=attempt.iteration, checks=self.checks, ledger=self.ledger,
            actor=self.records.actor)
        attempt.detail["review"] = summary
        return result

    def land(self) -> LandDone:
        """Hand the branch to the merge queue."""
        assert self.ws is not None
        self.ctx.bus.emit(MillEvent.MERGE_QUEUED, task=self.task.id)
        result = self.landing = self.ctx.queue.land(self.task, self.ws, lap=self.lap,
                                                    attempt_log=self._log_dir() / "merge.log")
        return self._land_done(result)

    def _land_done(self, result: LandResult) -> LandDone:
        outcome = LandOutcome(result.outcome)
        landed = outcome in (LandOutcome.LANDED, LandOutcome.ALREADY_LANDED)
        if landed and result.checkout_note:
            self.ctx.bus.emit(MillEvent.CHECKOUT_NOT_MOVED, task=self.task.id,
                              message=result.checkout_note)
        if landed or outcome == LandOutcome.SATISFIED:
            self.forget_check_home()
            return LandDone(outcome, result.commit)
        return LandDone(outcome, result.commit, result.detail,
                        not_found=self.not_found(result.checks, project=True),
                        cut=self.ctx.abort.is_set())

    # -- the landing queue ---------------------------------------------------------------

    def read_branch(self) -> BranchRead:
        """The commit the task's branch is on, read from its ref (no worktree)."""
        return BranchRead(self.ctx.git.rev(f"refs/heads/{branch_for(self.task.id)}") or "")

    def park(self, *, resumed: bool) -> Future[BatchLandResult]:
        """Park the branch: what its own checks found is handed to the merge queue (which
        then does not check that tree again), the worktree is released (the branch stays),
        and the branch joins the landing queue. Returns the queue's verdict to come."""
        landing = self.ctx.landing
        assert landing is not None
        ws = self.ws
        if ws is not None:
            head, tree = ws.git.out("rev-parse", "HEAD", "HEAD^{tree}").split()
            checks = self.task.checks or self.ctx.project_checks
            if self.checks is not None:
                landing.lander.remember(tree, checks, self.checks)
            self.release(landed=False)
            self.ws = None
        else:  # resumed: its branch, as the last attempt left it
            head = self.read_branch().head
        self.ctx.bus.emit(MillEvent.MERGE_QUEUED, task=self.task.id, commit=head,
                          waiting=len(landing.waiting()) + 1)
        return landing.submit(LandRequest(self.task, head, lap=self.lap, resumed=resumed,
                                          urgent=self._blocks_others()))

    def _blocks_others(self) -> bool:
        """Whether an unfinished task waits for this one (``blocks``)."""
        tree = self.ledger.dep_tree(self.task.id, reverse=True, max_depth=1)
        return any(child.get("type") == BLOCKS and child.get("status") != CLOSED
                   for child in tree.get("children", []))

    def landing_done(self, result: BatchLandResult) -> LandDone:
        """The landing queue's verdict on the parked branch."""
        self.landing = result
        if result.outcome == "interrupted":
            return LandDone(LandOutcome.INTERRUPTED, detail=result.detail, cut=True)
        return self._land_done(result)

    def merge_target(self, *, conflict: bool) -> TargetMerged:
        """Bring the target into the branch (sent back by the landing queue), as the merge
        queue does for a branch it lands itself: for a conflict the merge is left
        uncommitted with its conflict markers, for red checks it is committed."""
        ws = self.ws
        assert ws is not None
        tip = self.ctx.queue.tip()
        if conflict:
            ws.git.run("merge", "--no-ff", "--no-commit", tip, check=False)
        else:
            ws.git.run("merge", "-q", "--no-edit", tip, check=False)
        return TargetMerged()

    # -- helpers -------------------------------------------------------------------------

    def fix_hint(self, *, project: bool) -> str:
        reopen = f"taskmill update {self.task.id} --status open"
        if project:
            return ("Fix [checks] commands in .taskmill/config.toml (the project's checks), "
                    f"then: {reopen}")
        return (f"Fix the task's checks: taskmill update {self.task.id} --check 'COMMAND' "
                "(repeat --check for each), then: " + reopen)

    def not_found(self, checks: ChecksResult | None, *, project: bool) -> str | None:
        """The block reason when a check exited 127 because bash found no such command."""
        for run in checks.runs if checks else []:
            name = not_found_in_output(run.output) if run.exit_code == EXIT_NOT_FOUND else None
            if name:
                return (f"{not_found_message(name, run.command, self.ctx.check_env)} "
                        f"(exit 127). {self.fix_hint(project=project)}")
        return None

    @staticmethod
    def _conflict_markers(wt: Git) -> str:
        proc = wt.run("grep", "-l", "-E", "^(<<<<<<<|>>>>>>>) ", check=False)
        return ", ".join(proc.stdout.split()) if proc.returncode == 0 else ""

    def _log_dir(self) -> Path:
        folder = self.ctx.logs_dir / self.task.id
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _settle(self, ws: Workspace, fallback: str) -> None:
        """Make the slot a proper worktree on the task's branch again (see
        :meth:`WorktreePool.settle` and :meth:`WorktreePool.recover_branch`)."""
        self.ctx.pool.settle(ws)
        what = self.ctx.pool.recover_branch(ws, fallback)
        if what is not None:
            self.records.recovered(what, LedgerEvent.BRANCH_RECOVERED)

    def _mounts(self, ws: Workspace, request: TurnRequest) -> Mounts | None:
        """What the turn sees in the sandbox: its worktree, the agent's HOME, the turn's
        state directory and the folder of the task's progress notes writable."""
        if self.ctx.containment is None or self.ctx.containment.sandbox is None:
            return None
        self.progress_file.parent.mkdir(parents=True, exist_ok=True)
        self.progress_file.touch()
        return Mounts.for_worktree(
            ws.path, admin=ws.admin,
            writable=(request.home, request.state_dir, self.progress_file.parent),
            proxy_port=request.proxy_port, proxy_socket=request.proxy_socket,
            capability_socket=request.capability_socket)

    def _request(self, task: Task, ws: Workspace, iteration: int, checks: list[str],
                 failure: Failure | None, log_path: Path) -> TurnRequest:
        self.progress_file.parent.mkdir(parents=True, exist_ok=True)
        notes = self.progress_file.read_text(encoding="utf-8") if self.progress_file.exists() else ""
        role = self.ctx.roles.role(task)
        role_prompt = ""
        if role is not None and role.prompt_path is not None:
            from ..roles.template import render_prompt

            role_prompt = render_prompt(role, task, self._run_vars(iteration, failure))
        prompt = build_prompt(task, PromptContext(
            iteration=iteration, max_iterations=self._max_iterations(),
            failure=failure[1] if failure else None, failure_kind=failure[0] if failure else None,
            progress_notes=notes, progress_file=str(self.progress_file), checks=tuple(checks),
            role=role.name if role is not None else None, role_prompt=role_prompt))
        state = log_path.parent / f"{log_path.stem}.state"
        state.mkdir(parents=True, exist_ok=True)
        config, _ = self.ctx.agents(task)
        home = self.ctx.homes_dir / config.name
        home.mkdir(parents=True, exist_ok=True)
        env = {
            "TASKMILL_TASK_ID": task.id,
            "TASKMILL_TASK_TITLE": task.title,
            "TASKMILL_ITERATION": str(iteration),
            "TASKMILL_WORKTREE": str(ws.path),
            "TASKMILL_ACTOR": f"agent:{config.name}/{task.id}",
            "TASKMILL_PROGRESS_FILE": str(self.progress_file),
            # how a later run finds this agent, should this run be killed (engine.py)
            "TASKMILL_RUN_ID": self.ctx.run_id,
            **self.ctx.agent_git_env,
        }
        socket_path = None
        if self.ctx.capability is not None:  # the ledger only through the mill's socket
            socket_path = self.ctx.capability.register(task.id, config.name)
            env[SOCKET_ENV] = str(socket_path)
        else:
            env["TASKMILL_DIR"] = str(self.ctx.ledger_dir)
            if self.ctx.ledger_url:
                env[DATABASE_URL_ENV] = self.ctx.ledger_url
        return TurnRequest(
            task_id=task.id, title=task.title, iteration=iteration, prompt=prompt,
            worktree=ws.path, home=home, state_dir=state, prompt_file=state / "prompt.md",
            usage_file=state / "usage.json", log_path=log_path,
            parent_env=self.ctx.parent_env, taskmill_env=env,
            timeout_s=self.ctx.settings.turn_timeout, capability_socket=socket_path)
