"""The names taskmill stores and streams: attempt and task outcomes, landing results, event kinds.

Each is a :class:`enum.StrEnum`, so a member *is* its string: it is written to the ledger,
the audit trail and ``--json-events`` exactly as the bare strings were before (they are a
public interface, read by the web, the CLI and the users' own tools), and compares equal to
them (``AttemptOutcome.PASSED == "passed"``).
"""

from __future__ import annotations

from enum import StrEnum


class AttemptOutcome(StrEnum):
    """How one attempt (an agent turn and the checks after it) ended (``attempts.outcome``)."""

    PASSED = "passed"
    FAILED = "failed"
    """The checks failed (or the turn's work was lost, or conflict markers remain)."""
    TURN_FAILED = "turn_failed"
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"
    """Cut by the run stopping, or left by a run that died: not counted as an iteration."""
    RATE_LIMITED = "rate_limited"
    """The agent hit its usage limit: not counted as an iteration."""
    REJECTED_CONFLICT = "rejected_conflict"
    """It passed its checks, then the merge queue found a conflict with the target."""
    REJECTED_CHECKS = "rejected_checks"
    """It passed its checks, then the project's checks failed on the merged result."""
    ERROR = "error"
    """A taskmill bug or a git failure during the attempt (not the task's fault)."""


UNCOUNTED = frozenset({AttemptOutcome.INTERRUPTED, AttemptOutcome.RATE_LIMITED})
"""Finished attempts that do not count against a task's iterations, tokens and cost."""

REJECTED = {"conflict": AttemptOutcome.REJECTED_CONFLICT,
            "merge_checks": AttemptOutcome.REJECTED_CHECKS}
"""The outcome of an attempt that passed its checks but that the merge queue sent back, by
the reason of the rejection (``conflict``, ``merge_checks``)."""


class TaskOutcome(StrEnum):
    """How a task's stay in one run ended (``taskmill run --json``'s ``tasks[].outcome``)."""

    LANDED = "landed"
    SATISFIED = "satisfied"
    """Its branch had nothing the target lacks: closed without a commit."""
    CHECKED = "checked"
    """Its role does not land (``land = false``): closed once its checks passed, its work
    kept on its branch."""
    BLOCKED = "blocked"
    HELD = "held"
    """Its role spent its daily budget: given back (open) to be worked another day."""
    INTERRUPTED = "interrupted"
    ERROR = "error"


SUCCESS = frozenset({TaskOutcome.LANDED, TaskOutcome.SATISFIED, TaskOutcome.CHECKED})
"""Task outcomes that count as done: landed, already satisfied (nothing to land), or checked
(a role that does not land)."""


class LandOutcome(StrEnum):
    """What the merge queue did with a branch."""

    LANDED = "landed"
    ALREADY_LANDED = "already_landed"
    SATISFIED = "satisfied"
    CONFLICT = "conflict"
    CHECKS_FAILED = "checks_failed"
    INTERRUPTED = "interrupted"
    """The run stopped before the landing queue reached a verdict (nothing landed)."""


class MillEvent(StrEnum):
    """The ``event`` of what a run streams (``--json-events``, ``run/events.ndjson``)."""

    RUN_STARTED = "run_started"
    RUN_FINISHED = "run_finished"
    DISPATCHED = "dispatched"
    TASK_FINISHED = "task_finished"
    WORKSPACE = "workspace"
    TURN_STARTED = "turn_started"
    TURN_FINISHED = "turn_finished"
    CHECKS_PASSED = "checks_passed"
    CHECKS_FAILED = "checks_failed"
    MERGE_QUEUED = "merge_queued"
    MERGE_REJECTED = "merge_rejected"
    LANDED = "landed"
    SATISFIED = "satisfied"
    CHECKOUT_NOT_MOVED = "checkout_not_moved"
    BLOCKED = "blocked"
    CHECKED = "checked"
    """A task of a role that does not land passed its checks: closed, its branch kept."""
    HELD = "held"
    """A task waits: its role spent its daily budget."""
    INTERRUPTED = "interrupted"
    INTERNAL_ERROR = "internal_error"
    AGENT_PAUSED = "agent_paused"
    USAGE_INVALID = "usage_invalid"
    WARNING = "warning"
    SKIPPED = "skipped"
    REFUSED = "refused"
    RECOVERED = "recovered"
    ORPHANS_STOPPED = "orphans_stopped"
    PAUSED = "paused"
    RESUMED = "resumed"
    STOPPING = "stopping"
    STOPPING_NOW = "stopping_now"
    GRACE_OVER = "grace_over"
    PROXY_STARTED = "proxy_started"
    NETWORK_REFUSED = "network_refused"
    CAPABILITY_REFUSED = "capability_refused"
    AUDIT_ANCHORED = "audit_anchored"
    BATCH_STARTED = "batch_started"
    """The merge queue merged waiting branches onto the target's tip, to check them once."""
    BATCH_CHECKS = "batch_checks"
    """The project checks ran (or were answered from the cache) on a batch's tree."""
    BISECT_STEP = "bisect_step"
    """Part of a red batch was checked on its own."""
    BATCH_LANDED = "batch_landed"
    """The target moved to a batch's last commit (one commit per task)."""
    BATCH_FINISHED = "batch_finished"
    """Every task of a batch has its verdict (``outcomes``: task -> landed, conflict...)."""
    SPECULATION_STARTED = "speculation_started"
    """The branches waiting behind a batch are checked on top of it, in parallel with it."""
    SPECULATION_USED = "speculation_used"
    """The batch ahead landed whole: a speculative check's result is the next batch's."""
    SPECULATION_DISCARDED = "speculation_discarded"
    """The batch ahead did not land whole (``why``): the speculative check is dropped."""
    WATCH_STARTED = "watch_started"
    """``taskmill watch`` armed its orders (``orders``, ``next_firing``)."""
    ORDER_FIRED = "order_fired"
    """An order's slot fired (``order``, ``slot``, ``task``, ``scheduled``, ``latency``)."""
    ORDER_SKIPPED = "order_skipped"
    """A slot was skipped: the order's last instance is unfinished (``skip_if_open``)."""
    ORDER_MISSED = "order_missed"
    """Slots passed while nothing fired them, left unfired as ``catch_up`` says."""
    ORDER_FAILED = "order_failed"
    """Firing a slot failed (a bad formula, say): recorded, not retried."""


class LedgerEvent(StrEnum):
    """The ``kind`` of an audit-trail event (the ledger's ``events`` table)."""

    CREATED = "created"
    UPDATED = "updated"
    CLAIMED = "claimed"
    COMMENTED = "commented"
    DEP_ADDED = "dep_added"
    DEP_REMOVED = "dep_removed"
    LABELS_ADDED = "labels_added"
    LABELS_REMOVED = "labels_removed"
    IMPORTED = "imported"
    CAPABILITY_REFUSED = "capability_refused"
    # written by the mill
    ATTEMPT_STARTED = "attempt_started"
    ATTEMPT_FINISHED = "attempt_finished"
    MERGE_REJECTED = "merge_rejected"
    ALREADY_SATISFIED = "already_satisfied"
    KEPT = "kept"
    """A task of a role that does not land was closed with its work on its branch."""
    HELD = "held"
    """A task was given back (open) because its role spent its daily budget."""
    INTERRUPTED = "interrupted"
    INTERNAL_ERROR = "internal_error"
    RECOVERED = "recovered"
    BRANCH_RECOVERED = "branch_recovered"
    BRANCH_RESTARTED = "branch_restarted"
    WORKER_LOST = "worker_lost"
    """A task's ``taskmill worker`` died (Temporal executor): another took it over."""
    # the merge queue's batches (run-level: no task), as the mill streams them
    BATCH_STARTED = "batch_started"
    BATCH_CHECKS = "batch_checks"
    BISECT_STEP = "bisect_step"
    BATCH_LANDED = "batch_landed"
    BATCH_FINISHED = "batch_finished"
    SPECULATION_STARTED = "speculation_started"
    SPECULATION_USED = "speculation_used"
    SPECULATION_DISCARDED = "speculation_discarded"
    # formulas and orders (taskmill pour, taskmill watch)
    POURED = "poured"
    ORDER_ARMED = "order_armed"
    ORDER_FIRED = "order_fired"
    ORDER_SKIPPED = "order_skipped"
    ORDER_MISSED = "order_missed"
    ORDER_FAILED = "order_failed"
