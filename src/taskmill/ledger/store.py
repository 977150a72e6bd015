"""The seam under the ledger: :class:`LedgerStore`, what a place that keeps tasks must do.

:class:`~taskmill.ledger.Ledger` (the API every other module calls) holds the rules:
validation, id resolution, containers following their children, who may write what. A store
holds the data and answers questions about it, and keeps readiness (``open_blockers``,
``gated``: see :mod:`taskmill.ledger.sqlite.readiness` for the definitions) in step with every
change it makes. Three stores exist: :class:`~taskmill.ledger.sqlite.SqliteStore` (the
embedded default), :class:`~taskmill.ledger.postgres.PostgresStore` (a ledger shared by many
machines; these two packages are the only places SQL is written) and
:class:`~taskmill.ledger.memory.MemoryStore` (dicts; proves the seam, runs fast tests).
``tests/store_contract.py`` holds them all to the same behaviour.

**The unit of work.** Every write happens inside ``with store.transaction():``. Transactions
nest: an inner one is a *savepoint*. An exception leaving the inner block undoes that block's
writes and events only (the outer transaction goes on if the caller handles the exception);
nothing is visible to other readers, nor durable, until the outermost block ends without an
exception. Events appended in a transaction are hash-chained in order and committed with it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

from ..model import Comment, Dependency, Event, Task

IMPORT_ROW_COLUMNS = (
    "id", "title", "description", "design", "acceptance_criteria", "notes", "status", "priority",
    "issue_type", "assignee", "created_at", "updated_at", "closed_at", "close_reason",
    "external_ref", "metadata", "checks", "agent", "hints", "extra",
)
"""A task as a stored row (JSON fields as text; ``extra``: what an import keeps aside)."""

Row = tuple[Any, ...]
"""A task row in :data:`IMPORT_ROW_COLUMNS` order."""


class Change(NamedTuple):
    """One entry of the change feed (:meth:`LedgerStore.changes_since`)."""

    seq: int
    task_id: str | None
    kind: str


class EventRow(NamedTuple):
    """An event as stored (``data`` as the JSON text its hash covers)."""

    seq: int
    ts: str
    actor: str
    task_id: str | None
    kind: str
    data: str
    prev_hash: str
    hash: str


class HeldLinks(NamedTuple):
    """What holds the tasks ``blocked`` lists (:meth:`LedgerStore.held_links`)."""

    waits: dict[str, list[str]]
    """:meth:`~LedgerStore.held_waits`."""
    parents: dict[str, list[str]]
    """Each held task's :meth:`~LedgerStore.holding_parents`, those with none left out."""
    states: dict[str, tuple[str, int, bool]]
    """The :meth:`~LedgerStore.task_state` of holding parents, as far as the store read them
    with the links (possibly none)."""
    forward: bool
    """Whether a task of ``waits`` may wait on one created after it (or on itself): without
    such an edge the waits hold no cycle. True when the store does not know."""


CellRow = tuple[str, "str | None", Any, str, str, bool, "str | None", str, "str | None",
                "str | None"]
"""What the task tables show of a task, as the store reads it: id, parent, priority, type,
status, ready, the container's "2/5 closed" (None when it has no children), title, labels
joined by ", " (None or "" when none), role."""


class Laying(Protocol):
    """A task table laid out as text a stretch of rows at a time, the column widths worked
    out on the listing's first :attr:`first` rows (the first stretch), each later stretch
    :attr:`step` rows (see :meth:`LedgerStore.task_cell_texts`)."""

    first: int
    step: int

    def lay(self, rows: Iterator[CellRow], head: list[CellRow] | None
            ) -> Iterator[tuple[str, int]]:
        """The text of ``rows`` a stretch at a time, each with its number of rows. ``rows``
        begins at the listing's start (``head`` None: the widths are worked out on them) or
        at a later stretch's start (``head``: the listing's first :attr:`first` rows)."""
        ...


class Holding(NamedTuple):
    """What holds a task ``blocked`` lists beyond what it waits on (the fields of
    :class:`~taskmill.model.BlockedTask` but the task and its blockers)."""

    parents: list[str]
    ancestors: list[str]
    reasons: list[str]
    reason: str | None
    unblock: str | None


Cycles = Callable[[Mapping[str, Sequence[str]]], dict[str, list[str]]]
"""Each task of a waits graph in a cycle, with the cycle (``Ledger``'s, for ``blocked``)."""

HeldItem = tuple[CellRow, list[str], Holding | None]
"""A task ``blocked`` lists as the task tables show it, with what it waits on (sorted) and
what else holds it (None: nothing)."""


class HeldLaying(Protocol):
    """``blocked``'s table laid out as :class:`Laying` lays out a listing's, its rows each a
    :data:`HeldItem`; the commands that unblock the tasks it laid out kept in
    :attr:`unblock`, in order (see :meth:`LedgerStore.held_cell_texts`)."""

    first: int
    step: int
    unblock: list[str]

    def lay(self, rows: Iterator[HeldItem], head: list[HeldItem] | None
            ) -> Iterator[tuple[str, int]]:
        """As :meth:`Laying.lay`; ``head`` ``[]`` with a stretch laid out before: the
        widths worked out then."""
        ...


class LinksReading:
    """:class:`HeldLinks` being read, perhaps by another thread meanwhile (see
    :meth:`LedgerStore.held_links_reading`)."""

    def __init__(self, read: Callable[[], HeldLinks], *, meanwhile: bool) -> None:
        """Read with ``read`` now, or, ``meanwhile``, in a thread of its own."""
        self._links: HeldLinks | None = None
        self._error: BaseException | None = None
        self._thread: Any = None
        self._done: Any = None
        if not meanwhile:
            self._links = read()
            return
        import threading

        done = self._done = threading.Event()

        def run() -> None:
            try:
                self._links = read()
            except BaseException as exc:  # (raised again by result())
                self._error = exc
            finally:
                done.set()

        self._thread = threading.Thread(target=run, name="taskmill-held-links", daemon=True)
        self._thread.start()

    def done(self) -> bool:
        """Whether the links are read (cheap: asked for every row read ahead)."""
        return self._done is None or bool(self._done.is_set())

    def result(self) -> HeldLinks:
        """The links, once read (waiting for them); what the reading raised, if it did."""
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._links is not None
        return self._links

    def close(self) -> None:
        """The listing that asked for the links is done (its rows all read, or left): what
        the reading kept open for it ends."""


class OrderSlot(NamedTuple):
    """One slot of an order (see :mod:`taskmill.orders`), recorded once."""

    order: str
    slot: str
    """The slot's key: its scheduled time (ISO, UTC), ``event:<seq>``, ``manual:<time>``."""
    outcome: str
    """``fired``, ``skipped`` (``skip_if_open``), ``missed`` (``catch_up``) or ``armed``."""
    task_id: str | None
    """What it poured or created (fired), or the open instance that held it (skipped)."""
    reason: str
    recorded_at: str


@dataclass
class ImportItem:
    """A whole task for :meth:`LedgerStore.import_rows`."""

    row: Row
    labels: list[str] = field(default_factory=list)
    deps: list[tuple[Any, ...]] = field(default_factory=list)
    """(depends_on_id, type, created_at, created_by, extra), in order."""
    comments: list[tuple[Any, ...]] = field(default_factory=list)
    """(id, author, text, created_at, extra), each with its id chosen."""


def pack_items(creates: Sequence[ImportItem]) -> list[tuple[Row, list[str], list[Any]]]:
    """New tasks (no comments) as plain values, for a store that writes them as
    :class:`ImportItem` (:meth:`LedgerStore.import_packer`; :func:`unpack_items` back)."""
    return [(p.row, p.labels, p.deps) for p in creates]


def unpack_items(packed: Sequence[tuple[Row, list[str], list[Any]]]) -> list[ImportItem]:
    """:func:`pack_items`'s tasks again."""
    return [ImportItem(row, list(labels), [tuple(d) for d in deps])
            for row, labels, deps in packed]


@runtime_checkable
class LedgerStore(Protocol):
    """What a ledger store does. Task-returning reads give whole tasks: labels, and the
    container fields (``parent``, ``children``, ``children_closed``) filled in."""

    # -- the unit of work ------------------------------------------------------------------

    def transaction(self) -> AbstractContextManager[None]: ...
    def snapshot(self) -> AbstractContextManager[None]:
        """Reads inside it see one state of the ledger: a write another connection commits
        meanwhile is not seen until it ends (inside a transaction: that transaction's
        state). For a read made of several statements; a write through this store inside it
        ends it first (what is read after the write is of the state the write leaves)."""
    @property
    def in_transaction(self) -> bool: ...
    def reset(self) -> None:
        """Abandon a transaction left open (a connection handed on between requests)."""
    def close(self) -> None: ...

    # -- tasks -----------------------------------------------------------------------------

    def task(self, task_id: str) -> Task | None: ...
    def exists(self, task_id: str) -> bool: ...
    def ids_from(self, start: str, limit: int) -> list[str]:
        """Ids starting with ``start`` (as given), sorted."""
    def ids_lower_in(self, names: Sequence[str], limit: int) -> list[str]:
        """Ids whose lower case is one of ``names``."""
    def ids_lower_prefix(self, start: str, limit: int) -> list[str]:
        """Ids whose lower case starts with ``start``, sorted."""
    def ids_sized(self, shortest: int, longest: int) -> list[str]:
        """Ids of a length in [shortest, longest], tombstones left out."""
    def max_seq(self) -> int:
        """The highest creation number given so far (0: none)."""
    def generation(self) -> int | None:
        """The ledger's generation: a value drawn anew at every change of a task, label,
        dependency, comment or event, by whoever makes it; ``None`` where the store keeps
        none (answers are then never kept: :mod:`taskmill.cli.lean_kept`)."""
    def kept_text_differences(self) -> list[str] | None:
        """The tasks whose listing text the store keeps (SQLite:
        :mod:`taskmill.ledger.sqlite.kept_text`) is not what their rows make now, by id
        (a row kept for no task: ``#seq``); ``None``: the store keeps none."""
    def remake_kept_text(self) -> None:
        """Make every task's kept listing text again from its rows (in a transaction)."""
    def list_tasks(self, *, statuses: Sequence[str] | None, include_hidden: bool,
                   label: str | None,
                   issue_type: str | None, assignee: str | None, parent: str | None,
                   limit: int | None) -> list[Task]:
        """Tasks by priority then creation; ``statuses`` None: all but tombstones (all,
        ``include_hidden``)."""
    def task_pages(self, *, statuses: Sequence[str] | None, include_hidden: bool,
                   label: str | None, issue_type: str | None, assignee: str | None,
                   parent: str | None, limit: int | None,
                   size: int | None = 1000) -> Iterator[list[Task]]:
        """:meth:`list_tasks` a page of ``size`` tasks at a time, read as they are needed
        (``size`` None: one page)."""
    def statuses_in_use(self) -> list[str]: ...
    def ready(self, limit: int | None, work_only: bool, *, now: str,
              beads_compat: bool = False, for_claim: bool = False) -> list[Task]:
        """Open, ungated work (see :mod:`taskmill.ledger.beads_rules`) not deferred past
        ``now``, by priority, then creation time (oldest first), then creation order
        (``work_only``: no containers). ``beads_compat``: a ``blocked``/``deferred`` parent
        does not hold its children, and ``defer_until`` hides a task's children only.
        ``for_claim``: the candidates of a claim, read in the claimer's write transaction;
        a store whose rows other writers may hold locks those it returns and passes over
        rows already locked (PostgreSQL's ``FOR UPDATE SKIP LOCKED``)."""
    def held(self, beads_compat: bool = False) -> list[Task]:
        """Tasks not done that are gated or ``blocked``, by priority then creation
        (``beads_compat``: those a blocking dependency holds, or a parent so held)."""
    def held_pages(self, beads_compat: bool = False, size: int = 1000
                   ) -> Iterator[list[Task]]:
        """:meth:`held` a page of ``size`` tasks at a time, read as they are needed."""
    def task_json_rows(self, *, statuses: Sequence[str] | None, include_hidden: bool,
                       label: str | None, issue_type: str | None, assignee: str | None,
                       parent: str | None, limit: int | None,
                       interrupted: Collection[str] = (),
                       held: Mapping[str, str] | None = None) -> Iterator[str]:
        """:meth:`list_tasks`, each task as the text of its ``to_json()`` indented as an item
        of a top-level ``json.dumps(ensure_ascii=False, indent=2)`` array (see
        :func:`~taskmill.ledger.rows.item_text`), read as they are needed. ``interrupted``:
        the tasks marked ``interrupted``; ``held``: role -> the ``held`` of its open tasks."""
    def held_json_rows(self, beads_compat: bool = False, *,
                       interrupted: Collection[str] = (),
                       held: Mapping[str, str] | None = None
                       ) -> Iterator[tuple[str, str, str]]:
        """Each task :meth:`held_pages` reads, in its order: (id, status, the text of its
        ``to_json()`` as :meth:`task_json_rows` writes it less the closing line)."""
    def task_cell_rows(self, *, statuses: Sequence[str] | None, include_hidden: bool,
                       label: str | None, issue_type: str | None, assignee: str | None,
                       parent: str | None, limit: int | None) -> Iterator[CellRow]:
        """:meth:`list_tasks` as the task tables show them (:data:`CellRow`), read as they
        are needed."""
    def task_cell_texts(self, laying: Laying, *, statuses: Sequence[str] | None,
                        include_hidden: bool, label: str | None, issue_type: str | None,
                        assignee: str | None, parent: str | None, limit: int | None
                        ) -> Iterator[tuple[str, int]]:
        """:meth:`task_cell_rows` laid out by ``laying`` (its :meth:`Laying.lay`), in order:
        where the store can, a long listing's later stretches are laid out by another
        process meanwhile."""
    def held_cell_rows(self, beads_compat: bool = False) -> Iterator[CellRow]:
        """:meth:`held_pages`'s tasks, in their order, as :data:`CellRow`."""
    def held_cell_texts(self, laying: HeldLaying, beads_compat: bool, cycles: Cycles
                        ) -> Iterator[tuple[str, int]]:
        """:meth:`held_cell_rows` with what holds each (:data:`HeldItem`, ``cycles``: see
        :func:`taskmill.ledger.listing.holding`) laid out by ``laying``, in order: where the
        store can, a long listing's later stretches are laid out by another process
        meanwhile."""
    def held_json_texts(self, beads_compat: bool, cycles: Cycles) -> Iterator[str]:
        """:meth:`held_json_rows` with what holds each (``cycles``: see
        :func:`taskmill.ledger.listing.holding`), each task's item of ``blocked --json``
        (:func:`taskmill.ledger.listing.blocked_json`), in order: where the store can, a long
        listing's later items are made by another process meanwhile."""
    def held_links(self) -> HeldLinks:
        """What holds the tasks :meth:`held` lists, read at once: :meth:`held_waits`, and
        each one's :meth:`holding_parents` (see :class:`HeldLinks`)."""
    def held_links_reading(self) -> LinksReading:
        """:meth:`held_links`, read meanwhile where the store can (another connection in
        another thread or process: ``blocked`` reads the held tasks' rows at the same time,
        in the same state of the ledger); closed (:meth:`LinksReading.close`) once those
        rows are read."""
    def block_marks(self, prefix: str, kinds: Sequence[str], limit: int
                    ) -> dict[str, tuple[str | None, str | None, str | None]]:
        """For each task of status ``blocked``: (the text of its newest comment that starts
        with ``prefix`` (:meth:`last_comment_starting`), the actor and time of the newest of
        its ``limit`` newest events of ``kinds`` whose ``changes.status`` is a list ending in
        ``"blocked"``), None for what it lacks."""
    def child_tasks(self, parent: str) -> list[Task]:
        """The children of ``parent`` but tombstones, oldest first."""
    def all_tasks(self, include_tombstones: bool) -> list[Task]:
        """Every task by id, with labels, container fields not filled in."""
    def labels(self, task_id: str) -> list[str]: ...
    def labels_in_use(self) -> list[str]: ...
    def task_extra(self, task_id: str) -> str | None: ...
    def stats(self) -> dict[str, Any]: ...
    def insert_task(self, values: Mapping[str, Any], labels: Sequence[str]) -> None:
        """A new task: ``values`` by column (JSON fields as values, not text)."""
    def update_task(self, task_id: str, values: Mapping[str, Any]) -> None:
        """Set columns; readiness follows through :meth:`status_changed`, called after."""
    def claim_row(self, task_id: str, assignee: str, now: str, work_only: bool) -> bool:
        """Open and ungated (and work, no container, ``work_only``) -> in progress under
        ``assignee``, atomically; whether it was."""
    def reassign(self, task_id: str, old: str, new: str) -> bool:
        """In progress under ``old`` -> under ``new``; whether it was."""
    def add_labels(self, task_id: str, labels: Sequence[str], start: int) -> None: ...
    def remove_labels(self, task_id: str, labels: Sequence[str]) -> None: ...
    def replace_labels(self, task_id: str, labels: Sequence[str]) -> None: ...
    def claims(self, assignee_prefix: str) -> list[tuple[str, str]]:
        """(id, assignee) of tasks in progress under an assignee starting so."""
    def chain_weights(self) -> dict[str, float]:
        """Each unfinished task's weight: its ``estimate`` hint (> 0), else 1.0."""

    # -- readiness -------------------------------------------------------------------------

    def status_changed(self, task_id: str, old: str, new: str) -> None:
        """Keep readiness in step with a status change (``old == new == "closed"``: the
        close reason changed, which a ``conditional-blocks`` dependent sees)."""
    def recompute_readiness(self, *, fresh: bool = False) -> None:
        """Every task's open blockers and gated flag made again from the ledger (``fresh``:
        as a bulk import into an empty ledger leaves them, each at its default, 0 and not
        gated: nothing to reset first)."""
    def readiness_state(self) -> dict[str, tuple[int, bool]]:
        """Each task's (open blockers, gated) as kept."""
    def find_path(self, start: str, goal: str) -> list[str] | None:
        """A path of gating dependencies from ``start`` to ``goal``."""
    def cycles(self) -> list[list[str]]: ...

    # -- dependencies ----------------------------------------------------------------------

    def has_dep(self, issue_id: str, depends_on_id: str, dep_type: str) -> bool: ...
    def insert_dep(self, dep: Dependency, extra: str | None = None) -> None: ...
    def delete_deps(self, issue_id: str, depends_on_id: str, types: Sequence[str]) -> None: ...
    def deps_between(self, issue_id: str, depends_on_id: str,
                     dep_type: str | None = None) -> list[Dependency]: ...
    def deps_of(self, task_id: str) -> list[Dependency]:
        """What ``task_id`` depends on, by position."""
    def dependents_of(self, task_id: str) -> list[Dependency]:
        """What depends on ``task_id``, by id."""
    def dep_edges(self, types: Iterable[str] | None = None) -> list[tuple[str, str, str]]: ...
    def deps_with_extra(self, types: Sequence[str],
                        issue_id: str | None = None) -> list[tuple[str, str, str, str | None]]: ...
    def dangling_deps(self) -> int: ...
    def status_of(self, task_id: str) -> str | None: ...
    def task_state(self, task_id: str) -> tuple[str, int, bool] | None: ...
    def parents(self, child: str) -> list[str]: ...
    def holding_parents(self, child: str) -> list[str]: ...
    def open_blockers_of(self, task_id: str) -> list[str]: ...
    def holding_parents_many(self, children: Sequence[str]) -> dict[str, list[str]]:
        """:meth:`holding_parents` of each of ``children`` (those with none left out)."""
    def held_waits(self) -> dict[str, list[str]]:
        """:meth:`open_blockers_of` every task not done that a blocking dependency holds
        (``open_blockers`` > 0): the graph a cycle among held tasks is found in."""
    def child_rows(self, parent: str) -> list[tuple[str, str, str]]: ...
    def children_done(self, parent: str) -> tuple[int, int]: ...

    # -- comments and attempts -------------------------------------------------------------

    def insert_comment(self, task_id: str, author: str, text: str, now: str) -> int: ...
    def comments(self, task_id: str) -> list[Comment]: ...
    def last_comments(self, task_ids: Sequence[str]) -> dict[str, Comment]: ...
    def last_comment_starting(self, task_id: str, prefix: str) -> str | None: ...
    def attempts(self, task_id: str) -> list[dict[str, Any]]: ...
    def attempt_task_ids(self) -> set[str]: ...
    def attempt_usage(self) -> list[tuple[Any, ...]]:
        """(agent, model, started_at, ended_at, outcome, input tokens, output tokens, cost,
        role) of every attempt."""
    def last_lap(self, task_id: str) -> int: ...
    def lap_usage(self, task_id: str, lap: int) -> tuple[int, int, int, float]: ...
    def count_attempts(self, task_id: str, lap: int, outcomes: Iterable[str]) -> int: ...
    def insert_attempt(self, task_id: str, *, iteration: int, agent: str | None,
                       model: str | None, started_at: str, log_path: str, run_id: str,
                       lap: int, role: str | None = None) -> int: ...
    def role_spend(self, since: str) -> dict[str, tuple[int, float]]:
        """Per role, the tokens (input + output) and cost (USD) of the attempts made as that
        role that started at or after ``since`` (an ISO timestamp as the ledger writes)."""
    def end_attempt(self, attempt_id: int, *, ended_at: str, outcome: str, input_tokens: int,
                    output_tokens: int, cost_usd: float | None, commit: str | None,
                    model: str | None, detail: Mapping[str, Any]) -> None: ...
    def amend_attempt(self, attempt_id: int, *, outcome: str,
                      detail: Mapping[str, Any]) -> None: ...
    def end_open_attempts(self, task_id: str, *, outcome: str, ended_at: str,
                          detail: Mapping[str, Any] | None = None,
                          run_id: str | None = None) -> int: ...

    # -- events ----------------------------------------------------------------------------

    def append_event(self, *, ts: str, actor: str, task_id: str | None, kind: str,
                     data: dict[str, Any]) -> int: ...
    def events(self, task_id: str | None = None, *, limit: int | None = None) -> list[Event]: ...
    def events_since(self, seq: int, limit: int) -> list[Event]: ...
    def recent_events(self, task_id: str, kinds: Sequence[str], limit: int) -> list[Event]: ...
    def events_of_kinds(self, kinds: Sequence[str], *, task_id: str | None = None,
                        since: str | None = None) -> list[Event]:
        """Every event of ``kinds`` (of ``task_id`` when given; at or after the timestamp
        ``since`` when given), oldest first."""
    def changes_since(self, seq: int) -> list[Change]:
        """The change feed: every event after ``seq``, oldest first."""
    def last_seq(self) -> int: ...
    def claimed_after_last_attempt(self, task_id: str) -> bool: ...
    def audit_head(self) -> tuple[int, str]: ...
    def event_rows(self, after: int = 0, upto: int | None = None) -> Iterator[EventRow]: ...
    def event_hash(self, seq: int) -> str | None: ...

    # -- bulk ------------------------------------------------------------------------------

    def task_ids(self) -> set[str]: ...
    def task_count(self) -> int: ...
    def task_rows(self, *, order: str = "id",
                  include_tombstones: bool = True) -> Iterator[Row]: ...
    def label_rows(self) -> Iterator[tuple[str, str]]:
        """(task, label), by task id (code point order, as :meth:`task_rows` by id: the
        export merges the two) and position."""
    def dep_rows(self) -> Iterator[tuple[str, str, str, str | None, str | None, str | None]]:
        """(issue, depends on, type, created_at, created_by, extra), by issue id (code point
        order, as :meth:`label_rows`) and position."""
    def comment_rows(self) -> Iterator[tuple[int, str, str, str, str, str | None]]: ...
    def comment_ids(self) -> set[int]: ...
    def import_rows(self, creates: Sequence[ImportItem],
                    updates: Sequence[ImportItem]) -> None: ...
    def import_packer(self) -> Callable[[Sequence[ImportItem]], Any] | None:
        """A function making new tasks' rows ready to write (:meth:`import_packed`), run
        where the records are parsed (a worker process of a big import: a module-level
        function, its result of :mod:`marshal`'s types); None: the store takes
        :meth:`import_rows` only. The tasks it is given have no comments."""
    def import_packed(self, packed: Any) -> None:
        """Write what :meth:`import_packer`'s function made of new tasks, as
        :meth:`import_rows` writes them as ``creates``."""
    def bulk_import(self) -> AbstractContextManager[None]:
        """Around many :meth:`import_rows` inside one transaction: the store may defer the
        work of its indexes to the end (SQLite drops the secondary indexes of a small
        ledger and builds them again once the rows are in). Rolled back with the
        transaction."""
    def bulk_writing(self) -> AbstractContextManager[None]:
        """Around (outside) the one transaction of a bulk import into an empty ledger: the
        store may write the rows its fastest way while it lasts (SQLite, when no other
        connection has the file open: straight into the file, not first into its
        write-ahead log and then copied, ~5 s of a 1M import; another connection waits
        meanwhile instead of reading the empty ledger). All or nothing as ever."""
    def stored_items(self, ids: Sequence[str]) -> dict[str, ImportItem]:
        """The stored parts (row, labels, dependencies, comments) of those of ``ids`` the
        ledger holds."""
    def ids_by_seq(self, first: int, last: int) -> list[str]:
        """Ids of the tasks with a creation number in [first, last], in creation order."""
    def plan_keys(self, source: str) -> dict[str, str]: ...
    def set_plan_key(self, source: str, key: str, task_id: str) -> None: ...

    # -- orders ----------------------------------------------------------------------------

    def record_order_slot(self, slot: OrderSlot) -> bool:
        """Record a slot of an order unless that (order, slot) is recorded already; whether
        it was recorded now."""
    def order_slots(self, order: str, *, outcomes: Sequence[str] | None = None,
                    limit: int | None = None) -> list[OrderSlot]:
        """The order's recorded slots (of ``outcomes``), the latest slot key first."""
