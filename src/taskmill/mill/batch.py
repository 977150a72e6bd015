"""The batching, bisecting merge queue: several branches land together, checked once.

:meth:`BatchLander.land_batch` takes branches waiting to land, in order, ``[merge]
batch_max`` at a time:

1. each branch is merged onto the one before it (the first onto the target's tip) with
   ``git merge-tree`` (no working tree); each merged branch becomes its own commit, whose
   parent is the previous one, with the message and trailers of a one-at-a-time landing
   (:func:`taskmill.mill.land.landing_message`: ``Taskmill-Task``, ``Taskmill-Lap``), so a
   task is found on the target after a crash exactly as before. A branch that conflicts is
   left out of the chain (``conflict``, naming the files); one that changes nothing is
   ``satisfied``;
2. the project checks run once, on the last commit of the chain, in the merge queue's own
   checkout (:mod:`taskmill.mill.lander_checkout`);
3. green: the target moves to that commit with one compare-and-swap (the journaled advance
   of :class:`~taskmill.mill.land.MergeQueue`, which also moves the user's checkout when
   that is safe). Red: the same tree is checked again (``[merge] flaky_retries`` times: a
   pass is a flaky failure, and the batch lands), then bisected (Bors style): the first half
   is checked on the tip and lands when green, or is bisected in turn; then the rest is
   checked on the new tip. A single branch red on the tip is a culprit: it comes back
   ``checks_failed`` with the failure, and, when its own tree is known to pass (its
   worker's checks, :meth:`BatchLander.remember`), the tasks it fails in combination with.
   The others land.

With ``[merge] speculate`` on, the next branches waiting are checked on top of a batch
while its own checks run (:mod:`taskmill.mill.speculation`); the result is used only for
the tree it was run on, once the batch ahead landed whole.

Every verdict is a sequential queue's: a branch is checked on exactly the tip a
one-at-a-time queue would have checked it on, or on a tree holding it and branches that
land with it (when that tree is green, every branch of it lands). A conflict or a "nothing
to land" found against a branch that does not land after all is decided again. Check
results are remembered by tree (:mod:`taskmill.mill.check_cache`): bisection never runs the
checks twice on one tree.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from ..errors import GitError
from ..model import Task
from .check_cache import CheckCache, Verdict, cache_key
from .checks import ChecksResult, run_checks
from .git import TRAILER, commit_tree, merge_tree
from .land import ADVANCE_JOURNAL, LandResult, MergeQueue, landing_message, recover_advance
from .lander_checkout import Checkout, LanderCheckout
from .speculation import SLOTS, Speculation, Speculator, speculates

Emit = Callable[..., None]
"""``emit(kind, **data)``, e.g. :meth:`taskmill.mill.events.EventBus.emit`."""

CAS_ATTEMPTS = 5
"""Times a batch starts again when the target moved under it (someone else's commit)."""


@dataclass(frozen=True)
class MergeSettings:
    """``[merge]`` in ``.taskmill/config.toml``."""

    batch_max: int = 5
    """Branches landed together at most."""
    batch_wait: float = 0.0
    """Seconds to wait for a batch to fill when fewer than ``batch_max`` wait to land."""
    flaky_retries: int = 1
    """Times a red batch's tree is checked again before it is bisected (a pass: flaky)."""
    speculate: bool | str = "auto"
    """Check the branches waiting behind a batch on top of it, while its checks run:
    ``"auto"`` (when the machine has more than 2 cores), ``True`` or ``False``."""
    require_approval: bool = False
    """Tasks wait for a person's approval before they land (:mod:`taskmill.review.approval`)."""
    approval_labels: Sequence[str] = ()
    """Tasks with any of these labels wait for approval."""

    def __post_init__(self) -> None:
        if self.batch_max < 1 or self.batch_wait < 0 or self.flaky_retries < 0:
            raise ValueError(f"invalid merge settings {self}: batch_max must be at least 1, "
                             "batch_wait and flaky_retries at least 0")
        if self.speculate not in ("auto", True, False):
            raise ValueError(f"invalid merge settings {self}: speculate must be \"auto\", "
                             "true or false")

    @classmethod
    def from_config(cls, table: Mapping[str, Any]) -> MergeSettings:
        """From a checked ``[merge]`` table (``-`` in names taken for ``_``)."""
        known = {f.name for f in fields(cls)}
        given = {k.replace("-", "_"): v for k, v in table.items()}
        return cls(**{k: v for k, v in given.items() if k in known})


@dataclass(frozen=True)
class LandRequest:
    """A branch waiting to land."""

    task: Task
    commit: str
    """The branch's head."""
    lap: int = 1
    resumed: bool = True
    """The task may have landed already (taken over from a run that died): its trailer is
    looked for on the target first. Only a resumed task can have (claims are exclusive)."""
    urgent: bool = False
    """Other tasks wait for it to land: the landing queue does not wait for a batch to
    fill (``batch_wait``) while it waits."""


@dataclass
class BatchLandResult(LandResult):
    """A :class:`LandResult` (outcome ``landed``, ``satisfied``, ``conflict``,
    ``checks_failed``, ``already_landed``, or ``interrupted`` when the run stopped before a
    verdict), naming its task."""

    task_id: str = ""
    combined_with: list[str] = field(default_factory=list)
    """``checks_failed`` only: when its branch alone passes the checks, the tasks landed
    since the branch was cut, which it fails in combination with (else empty)."""


@dataclass(frozen=True)
class _Merged:
    kind: str
    """merged | conflict | satisfied"""
    commit: str = ""
    tree: str = ""
    detail: str = ""


@dataclass
class _Batch:
    base: str
    tip: str
    landed: list[str] = field(default_factory=list)
    """Task ids landed by this batch so far, in order."""


class _TargetMoved(Exception):
    pass


class _Cancelled(Exception):
    pass


_CONFLICT_FILE = re.compile(r"^[0-7]{6} [0-9a-f]+ [123]\t(.+)$")


def conflict_files(merge_tree_output: str) -> list[str]:
    """The conflicted paths ``git merge-tree --write-tree --messages`` lists."""
    found: list[str] = []
    for line in merge_tree_output.splitlines()[1:]:
        if not line.strip():
            break
        match = _CONFLICT_FILE.match(line)
        if match and match.group(1) not in found:
            found.append(match.group(1))
    return found


class BatchLander:
    """Lands batches of branches on ``queue``'s target (under its merge lock, with its
    checks, check environment, timeout, cancel event and containment)."""

    def __init__(self, queue: MergeQueue, *, checkout: Checkout | None = None,
                 settings: MergeSettings | None = None, cache: CheckCache | None = None,
                 emit: Emit | None = None,
                 speculative_checkouts: Sequence[Checkout] | None = None,
                 cpus: int | None = None) -> None:
        """``cpus``: the machine's cores (``[merge] speculate = "auto"`` speculates with more
        than 2); ``speculative_checkouts``: where speculative checks run (default:
        :data:`~.speculation.SLOTS` more :class:`LanderCheckout` directories)."""
        self.queue = queue
        self.git = queue.git
        self.checkout: Checkout = checkout or LanderCheckout(queue.git)
        self.settings = settings or MergeSettings()
        self.cache = cache or CheckCache()
        self.emit: Emit = emit or (lambda kind, **data: None)
        self.check_runs = 0
        """Times the checks were run (not answered from the cache), speculative runs
        included."""
        self._merges: dict[tuple[str, str, str, int], _Merged] = {}
        self._count_lock = threading.Lock()
        self.speculator: Speculator | None = None
        """Runs the speculative checks (None: ``[merge] speculate`` is off)."""
        self._ahead: tuple[str, list[str]] | None = None
        """While a batch's checks run: its last commit and its tasks (what the branches
        waiting behind it are speculated on)."""
        self._next: list[LandRequest] = []
        """The next part of the requests :meth:`land_batch` is landing, when it has more
        than ``batch_max`` (speculated on before what the :attr:`upcoming` callback gives)."""
        self.upcoming: Callable[[], Sequence[LandRequest]] | None = None
        """The branches waiting behind the batch landing now (the landing queue's)."""
        self._spec_lock = threading.Lock()
        if speculates(self.settings.speculate, cpus):
            main = LanderCheckout(queue.git).path
            checkouts = speculative_checkouts or [
                LanderCheckout(queue.git, path=main.with_name(f"lander-speculative-{slot}"))
                for slot in range(SLOTS)]
            self.speculator = Speculator(self._run_speculative, checkouts,
                                         queue.lock_path.parent, self.emit)

    # -- the batches -----------------------------------------------------------------------

    def land_batch(self, requests: Sequence[LandRequest]) -> list[BatchLandResult]:
        """Land ``requests`` in order, ``batch_max`` at a time; one result each, in order."""
        ids = [r.task.id for r in requests]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"a task can be in a batch once; given twice: {', '.join(twice)}")
        results: dict[int, BatchLandResult] = {}
        with self.queue.locked():
            journal = self.queue.lock_path.with_name(ADVANCE_JOURNAL)
            if journal.exists():
                recover_advance(self.git, journal, self.queue.user_git)
            tip = self.queue.tip()
            pending: list[int] = []
            for i, req in enumerate(requests):
                found = self._landed_before(req, tip) if req.resumed else None
                if found:
                    results[i] = BatchLandResult("already_landed", found, task_id=req.task.id)
                else:
                    pending.append(i)
            size = self.settings.batch_max
            for start in range(0, len(pending), size):
                chunk = pending[start:start + size]
                self._next = [requests[i] for i in pending[start + size:start + 2 * size]]
                self._batch(requests, chunk, results)
                self.emit("batch_finished", outcomes={
                    requests[i].task.id: results[i].outcome for i in chunk})
        return [results[i] for i in range(len(requests))]

    def _landed_before(self, req: LandRequest, tip: str) -> str | None:
        # a landing of the branch is newer than where the branch and the target part
        since = self.git.run("merge-base", tip, req.commit, check=False).stdout.strip()
        return self.git.find_landed(self.queue.ref, req.task.id, lap=req.lap,
                                    since=since or None)

    def _batch(self, requests: Sequence[LandRequest], idx: list[int],
               results: dict[int, BatchLandResult]) -> None:
        for _ in range(CAS_ATTEMPTS):
            if self._cancelled():
                break
            base = self.queue.tip()
            self.emit("batch_started", tasks=[requests[i].task.id for i in idx], base=base)
            try:
                self._settle(_Batch(base, base), requests, idx, results, top=True)
                return
            except _TargetMoved:
                self.discard_speculation("the target moved under the batch ahead")
                idx = [i for i in idx if i not in results]
            except _Cancelled:
                self.discard_speculation("the run stopped")
                break
        else:
            for i in idx:
                if i not in results:
                    results[i] = BatchLandResult(
                        "conflict", detail="the target branch kept moving while landing",
                        task_id=requests[i].task.id)
            return
        for i in idx:
            if i not in results:
                results[i] = BatchLandResult(
                    "interrupted", detail="the run stopped before the landing's checks ended",
                    task_id=requests[i].task.id)

    def _settle(self, batch: _Batch, requests: Sequence[LandRequest], idx: list[int],
                results: dict[int, BatchLandResult], *, top: bool) -> None:
        """Decide ``idx`` (in order) on ``batch.tip`` as a one-at-a-time queue would."""
        if not idx:
            return
        if self._cancelled():
            raise _Cancelled
        links, skipped = self._chain(batch.tip, requests, idx)
        if not links:
            self._decide_skipped(batch, requests, idx, skipped, results)
            return
        last = links[-1][1]
        tested = [requests[i].task.id for i, _ in links]
        retries = self.settings.flaky_retries if top and len(links) > 1 else 0
        claimed = None
        if top:  # what was speculated on this tree is this batch's; then the next one's
            if self.speculator is not None and self.queue.checks:
                claimed = self.speculator.claim(
                    cache_key(last.tree, self.queue.checks, self.queue.check_env))
            self._ahead = (last.commit, tested)
            self.speculate()
        try:
            verdict = self._check(last.tree, last.commit, tested, retries, claimed)
        finally:
            if top:
                with self._spec_lock:
                    self._ahead = None
        if top and not verdict.ok:
            with self._spec_lock:
                self.discard_speculation("the batch ahead failed its checks")
        if not top:
            self.emit("bisect_step", tested=tested, passed=verdict.ok)
        if verdict.ok:
            note = self._advance(batch, last.commit, tested)
            for i, merged in links:
                results[i] = BatchLandResult("landed", merged.commit, checkout_note=note,
                                             task_id=requests[i].task.id)
            self._decide_skipped(batch, requests, idx, skipped, results)
            return
        if len(links) == 1:  # the culprit: red on the tip a sequential queue had
            culprit = links[0][0]
            cut = idx.index(culprit)
            self._decide_skipped(batch, requests, idx[:cut], skipped, results)
            results[culprit] = self._culprit(batch, requests[culprit], verdict)
            self._settle(batch, requests, idx[cut + 1:], results, top=False)
            return
        cut = idx.index(links[len(links) // 2 - 1][0]) + 1
        self._settle(batch, requests, idx[:cut], results, top=False)
        self._settle(batch, requests, idx[cut:], results, top=False)

    def _chain(self, tip: str, requests: Sequence[LandRequest], idx: list[int]
               ) -> tuple[list[tuple[int, _Merged]], dict[int, tuple[_Merged, str]]]:
        """Each branch merged onto the one before; those left out, with the commit they
        were merged with."""
        links: list[tuple[int, _Merged]] = []
        skipped: dict[int, tuple[_Merged, str]] = {}
        parent, parent_tree = tip, self.git.tree_of(tip)
        for i in idx:
            merged = self._merge(parent, parent_tree, requests[i])
            if merged.kind == "merged":
                links.append((i, merged))
                parent, parent_tree = merged.commit, merged.tree
            else:
                skipped[i] = (merged, parent)
        return links, skipped

    def _merge(self, parent: str, parent_tree: str, req: LandRequest) -> _Merged:
        key = (parent, req.commit, req.task.id, req.lap)
        known = self._merges.get(key)
        if known is not None:
            return known
        try:
            tree, conflict = merge_tree(self.git, None, parent, req.commit)
        except GitError as exc:  # e.g. no history in common with the target
            tree, conflict = None, str(exc)
        if tree is None:
            files = conflict_files(conflict)
            where = f" in {', '.join(files)}" if files else ""
            merged = _Merged("conflict", detail=f"the branch conflicts with the target{where}"
                                                f"\n\n{conflict.strip()}")
        elif tree == parent_tree:  # nothing to land: never an empty commit
            merged = _Merged("satisfied")
        else:
            commit = commit_tree(self.git, tree, [parent], landing_message(req.task, req.lap))
            merged = _Merged("merged", commit, tree)
        self._merges[key] = merged
        return merged

    def _decide_skipped(self, batch: _Batch, requests: Sequence[LandRequest], idx: list[int],
                        skipped: Mapping[int, tuple[_Merged, str]],
                        results: dict[int, BatchLandResult]) -> None:
        """Conflicts and "nothing to land" in ``idx``: final now that every branch ahead of
        them landed (they were merged with what the target now holds)."""
        ahead = list(batch.landed)
        for i in idx:
            if i not in skipped:
                continue
            merged, parent = skipped[i]
            task_id = requests[i].task.id
            if merged.kind == "satisfied":
                results[i] = BatchLandResult("satisfied", parent, task_id=task_id)
                continue
            detail = merged.detail
            if ahead:
                detail = (f"(the target included {', '.join(ahead)}, landed just ahead of it "
                          f"in the same batch)\n{detail}")
            results[i] = BatchLandResult("conflict", detail=detail, task_id=task_id)

    def _culprit(self, batch: _Batch, req: LandRequest, verdict: Verdict) -> BatchLandResult:
        """A branch red on the tip. When its own tree is known green (its worker's checks,
        see :meth:`remember`), it fails only in combination with what landed since it was
        cut: those tasks are named. No check is run for that."""
        alone = self._known(self.git.tree_of(req.commit))
        combined: list[str] = []
        if alone is not None and alone.ok:
            since = self.git.run("merge-base", batch.tip, req.commit, check=False).stdout.strip()
            combined = self._tasks_landed(since, batch.tip) if since else []
        detail = verdict.failure
        if combined:
            detail = (f"the project checks pass on this task's branch alone, but fail once it "
                      f"is combined with {', '.join(combined)} (landed on the target since the "
                      f"branch was cut):\n\n{detail}")
        return BatchLandResult("checks_failed", detail=detail, checks=verdict.result,
                               task_id=req.task.id, combined_with=combined)

    def _tasks_landed(self, since: str, tip: str) -> list[str]:
        """The tasks whose landings are in ``since..tip``, oldest first."""
        out = self.git.out("log", "--reverse", f"--format=%(trailers:key={TRAILER},valueonly)%x00",
                           f"{since}..{tip}", "--")
        found: list[str] = []
        for part in out.split("\0"):
            for task_id in part.split():
                if task_id not in found:
                    found.append(task_id)
        return found

    def remember(self, tree: str, commands: Sequence[str], result: ChecksResult) -> None:
        """A check result found elsewhere: a worker's own checks on its branch. When
        ``commands`` are the project checks (and the run was not cut), the merge queue does
        not run them again on ``tree``, and a culprit whose own tree passed is told which
        tasks it fails in combination with."""
        if list(commands) != list(self.queue.checks) or not commands or result.cancelled:
            return
        key = cache_key(tree, self.queue.checks, self.queue.check_env)
        self.cache.put(key, Verdict(result.ok, "" if result.ok else result.failure_text(),
                                    result))

    def _known(self, tree: str) -> Verdict | None:
        if not self.queue.checks:
            return None
        return self.cache.get(cache_key(tree, self.queue.checks, self.queue.check_env))

    # -- checks and the target -------------------------------------------------------------

    def _check(self, tree: str, commit: str, tasks: list[str], retries: int,
               speculated: Speculation | None = None) -> Verdict:
        commands = self.queue.checks
        if not commands:
            return Verdict(True)
        key = cache_key(tree, commands, self.queue.check_env)
        cached = self.cache.get(key)
        if cached is not None:
            self.emit("batch_checks", tree=tree, cached=True, passed=cached.ok, tasks=tasks)
            return replace(cached, cached=True)
        # a speculative run on this very tree counts as the first attempt
        if speculated is None and self.speculator is not None:
            speculated = self.speculator.claim(key)
        found = (self.speculator.wait(speculated, self._cancelled)
                 if self.speculator is not None and speculated is not None else None)
        if self._cancelled():
            raise _Cancelled
        attempt = 0 if found is None else 1
        result = found
        while result is None or (not result.ok and attempt <= retries):
            result = self._run(tree, commit)
            if result.cancelled:
                raise _Cancelled
            with self._count_lock:
                self.check_runs += 1
            self.emit("batch_checks", tree=tree, cached=False, passed=result.ok, tasks=tasks,
                      retry=attempt, seconds=round(sum(r.duration_s for r in result.runs), 3))
            attempt += 1
        verdict = Verdict(result.ok, "" if result.ok else result.failure_text(), result)
        self.cache.put(key, verdict)
        return verdict

    def _run(self, tree: str, commit: str) -> ChecksResult:
        log = self.queue.log_dir / "batches" / f"{tree[:16]}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with self.checkout(commit) as path:
            return run_checks(self.queue.checks, path, self.queue.check_env,
                              timeout_s=self.queue.check_timeout, log_path=log,
                              cancel=self.queue.cancel, containment=self.queue.containment)

    def _advance(self, batch: _Batch, new: str, tasks: list[str]) -> str | None:
        moved, note = self.queue.advance(batch.tip, new)
        if not moved:
            raise _TargetMoved
        batch.tip = new
        batch.landed += tasks
        self.emit("batch_landed", tasks=tasks, commit=new)
        return note

    def _cancelled(self) -> bool:
        return self.queue.cancel is not None and self.queue.cancel.is_set()

    # -- speculation -------------------------------------------------------------------------

    def speculate(self) -> None:
        """While a batch's checks run, check the branches waiting behind it on top of it (in
        the speculative checkout, on a thread of its own): the next part of
        :meth:`land_batch`'s requests, else what :attr:`upcoming` gives. Does nothing when
        speculation is off, no batch is being checked, or that is already speculated on.
        Safe to call from another thread (the landing queue calls it when a branch
        arrives)."""
        speculator = self.speculator
        if speculator is None or not self.queue.checks:
            return
        with self._spec_lock:
            ahead = self._ahead
            if ahead is None:
                return
            base, ahead_tasks = ahead
            waiting = list(self._next) or list(self.upcoming() if self.upcoming else [])
            waiting = waiting[:self.settings.batch_max]
            requested = [r.task.id for r in waiting]
            live = speculator.live
            if not waiting or (live is not None and live.base == base
                               and live.requested == requested):
                return
            links, _ = self._chain(base, waiting, list(range(len(waiting))))
            if not links:
                return
            last = links[-1][1]
            key = cache_key(last.tree, self.queue.checks, self.queue.check_env)
            if self.cache.get(key) is not None:
                return
            speculator.start(Speculation(
                key, base, list(ahead_tasks), [waiting[i].task.id for i, _ in links],
                requested, last.tree, last.commit))

    def speculated(self) -> list[str]:
        """The tasks (in order) of the speculation waiting to be used, when it was made on
        the target's tip (the batch it was made behind landed whole), else []."""
        live = self.speculator.live if self.speculator is not None else None
        if live is None or live.base != self.git.rev(self.queue.ref):
            return []
        return list(live.requested)

    def discard_speculation(self, why: str) -> None:
        if self.speculator is not None:
            self.speculator.discard(why)

    def close(self) -> None:
        """Stop speculating (a speculative run is cut, and waited for)."""
        if self.speculator is not None:
            self.speculator.close()

    def _run_speculative(self, spec: Speculation, checkout: Checkout) -> ChecksResult:
        log = self.queue.log_dir / "batches" / f"{spec.tree[:16]}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with checkout(spec.commit) as path:
            result = run_checks(self.queue.checks, path, self.queue.check_env,
                                timeout_s=self.queue.check_timeout, log_path=log,
                                cancel=spec.cancel, containment=self.queue.containment)
        if not result.cancelled:
            with self._count_lock:
                self.check_runs += 1
            self.emit("batch_checks", tree=spec.tree, cached=False, passed=result.ok,
                      tasks=spec.tasks, retry=0, speculative=True, ahead=spec.ahead,
                      seconds=round(sum(r.duration_s for r in result.runs), 3))
        return result
