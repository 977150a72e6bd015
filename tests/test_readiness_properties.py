"""Property tests: the ledger's incremental readiness against a brute-force definition.

The brute force below is written from the definitions (not from ``readiness.py``):

- *done*: status ``closed`` or ``tombstone``;
- *gated*: the least fixed point of "has a ``blocks`` dependency on an existing task that is
  not done, OR has a ``parent-child`` parent that exists, is not done, and is gated or
  ``blocked``/``deferred``";
- *ready*: status ``open`` and not gated, ordered by priority, then creation order;
- ``blocked()``: not done and (gated or status ``blocked``);
- adding a ``blocks``/``parent-child`` edge A -> B is refused (CycleError) iff B already
  reaches A through ``blocks``/``parent-child`` edges, or A == B;
- containers (tasks with a child that is not a tombstone) follow their children: a task that
  becomes done closes each parent (not done) whose children are then all done; a task that
  stops being done reopens each closed parent; a new parent-child edge from a task that is
  not done reopens a closed parent; removing the edge from a child that is not done closes a
  parent (not done) whose remaining children (at least one) are all done; each of those
  status changes cascades the same way. ``ready(work_only=True)`` leaves containers out.

Every operation is applied both to the ledger and to a plain model, and after each one the
ledger's answers must equal the brute force computed from the model from scratch. Each
property runs against every ledger store (SQLite, the in-memory one, and PostgreSQL).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pg_helpers
from taskmill.clock import FixedClock
from taskmill.containers import AUTO_CLOSE_REASON
from taskmill.errors import ClaimConflict, Conflict, CycleError, InvalidInput, NotFound
from taskmill.ledger import ImportItem, Ledger
from taskmill.ledger.memory import MemoryStore

BLOCKS = "blocks"
PARENT = "parent-child"
GATING = (BLOCKS, PARENT)
DEP_TYPES = (BLOCKS, PARENT, "related", "discovered-from")
SETTABLE = ("open", "in_progress", "blocked", "deferred", "closed")
DONE = ("closed", "tombstone")
HOLDING = ("blocked", "deferred")

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# -- the model and the brute force -------------------------------------------------------


@dataclass
class Model:
    status: dict[str, str] = field(default_factory=dict)
    priority: dict[str, int] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # creation order
    edges: set[tuple[str, str, str]] = field(default_factory=set)  # (issue, depends_on, type)

    def next_id(self) -> str:
        # fixed ids (not the ledger's random ones) keep hypothesis's replays deterministic
        return f"tm-{len(self.order):04d}"

    def add_task(self, tid: str, status: str, priority: int) -> None:
        self.status[tid] = status
        self.priority[tid] = priority
        self.order.append(tid)

    def done(self, tid: str) -> bool:
        return self.status[tid] in DONE

    def children(self, tid: str) -> list[str]:
        return [a for a, b, typ in self.edges if b == tid and typ == PARENT and a in self.status]

    def parents(self, tid: str) -> list[str]:
        return sorted({b for a, b, typ in self.edges
                       if a == tid and typ == PARENT and b in self.status})

    def container(self, tid: str) -> bool:
        return any(self.status[c] != "tombstone" for c in self.children(tid))

    def all_children_done(self, tid: str) -> bool:
        kids = self.children(tid)
        return bool(kids) and all(self.done(c) for c in kids)

    def set_status(self, tid: str, new: str) -> None:
        """Set a status as the ledger does, containers following (written from the rules)."""
        old = self.status[tid]
        self.status[tid] = new
        if (old in DONE) == (new in DONE):
            return
        for parent in self.parents(tid):
            if new in DONE and not self.done(parent) and self.all_children_done(parent):
                self.set_status(parent, "closed")
            elif new not in DONE and self.status[parent] == "closed":
                self.set_status(parent, "open")

    def add_edge(self, a: str, b: str, typ: str) -> None:
        self.edges.add((a, b, typ))
        if typ == PARENT and b in self.status and not self.done(a) \
                and self.status[b] == "closed":
            self.set_status(b, "open")

    def remove_edges(self, edges: set[tuple[str, str, str]]) -> None:
        self.edges -= edges
        for a, b, typ in edges:
            if typ == PARENT and b in self.status and not self.done(a) and not self.done(b) \
                    and self.all_children_done(b):
                self.set_status(b, "closed")

    def gated(self) -> set[str]:
        gated: set[str] = set()
        changed = True
        while changed:
            changed = False
            for tid in self.status:
                if tid in gated:
                    continue
                for a, b, typ in self.edges:
                    if a != tid or b not in self.status or self.done(b):
                        continue
                    if typ == BLOCKS or (
                        typ == PARENT and (b in gated or self.status[b] in HOLDING)
                    ):
                        gated.add(tid)
                        changed = True
                        break
        return gated

    def ready(self) -> list[str]:
        gated = self.gated()
        seq = {tid: i for i, tid in enumerate(self.order)}
        found = [t for t in self.status if self.status[t] == "open" and t not in gated]
        return sorted(found, key=lambda t: (self.priority[t], seq[t]))

    def held_by_ancestor(self, tid: str) -> set[str]:
        """Ancestors (through not-done parents that are gated or holding) that are holding or
        wait on an open ``blocks`` dependency themselves."""
        gated = self.gated()

        def holds(p: str) -> bool:
            return not self.done(p) and (p in gated or self.status[p] in HOLDING)

        found: set[str] = set()
        seen = {tid}
        stack = [p for p in self.parents(tid) if holds(p)]
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            waits = any(a == node and typ == BLOCKS and b in self.status and not self.done(b)
                        for a, b, typ in self.edges)
            if self.status[node] in HOLDING or waits:
                found.add(node)
            if node in gated:
                stack.extend(p for p in self.parents(node) if holds(p))
        return found

    def blocked(self) -> dict[str, tuple[set[str], set[str]]]:
        """Held tasks -> (open blocks targets, holding parents)."""
        gated = self.gated()
        out = {}
        for tid, status in self.status.items():
            if status in DONE or not (tid in gated or status == "blocked"):
                continue
            blockers = {b for a, b, typ in self.edges
                        if a == tid and typ == BLOCKS and b in self.status and not self.done(b)}
            parents = {b for a, b, typ in self.edges
                       if a == tid and typ == PARENT and b in self.status and not self.done(b)
                       and (b in gated or self.status[b] in HOLDING)}
            out[tid] = (blockers, parents)
        return out

    def reaches(self, start: str, goal: str) -> bool:
        """Can ``start`` reach ``goal`` following gating edges (each waits on the next)?"""
        seen = {start}
        stack = [start]
        while stack:
            node = stack.pop()
            if node == goal:
                return True
            for a, b, typ in self.edges:
                if a == node and typ in GATING and b not in seen:
                    seen.add(b)
                    stack.append(b)
        return False

    def refuses_cycle(self, a: str, b: str, typ: str) -> bool:
        return typ in GATING and (a == b or self.reaches(b, a))


def assert_matches(ledger: Ledger, model: Model) -> None:
    want_ready = model.ready()
    got_ready = [t.id for t in ledger.ready()]
    assert got_ready == want_ready
    limit = max(1, len(want_ready) // 2)
    assert [t.id for t in ledger.ready(limit=limit)] == want_ready[:limit]

    want_work = [t for t in want_ready if not model.container(t)]
    assert [t.id for t in ledger.ready(work_only=True)] == want_work

    want_blocked = model.blocked()
    got = ledger.blocked()
    assert {b.task.id for b in got} == set(want_blocked)
    for item in got:
        blockers, parents = want_blocked[item.task.id]
        assert set(item.blockers) == blockers, item.task.id
        assert set(item.held_by_parent) == parents, item.task.id
        assert set(item.held_by_ancestor) == model.held_by_ancestor(item.task.id), item.task.id
        assert len(item.reasons) >= len(item.held_by_ancestor)

    ready_set = set(want_ready)
    for task in ledger.list_tasks(include_hidden=True):
        assert task.status == model.status[task.id]
        assert task.ready == (task.id in ready_set), task.id
        kids = [c for c in model.children(task.id) if model.status[c] != "tombstone"]
        assert task.children == len(kids), task.id
        assert task.children_closed == sum(model.status[c] == "closed" for c in kids)
        assert task.container == model.container(task.id)
        if task.close_reason == AUTO_CLOSE_REASON:
            assert task.status == "closed"
    # cycles() reports a cycle exactly when the gating edges hold one (only imports can)
    has_cycle = any(model.reaches(b, a) for a, b, typ in model.edges if typ in GATING)
    got = ledger.cycles()
    assert bool(got) == has_cycle
    # each group of tasks that reach one another, once, as a closed path of gating edges
    # from its least id (through tasks of the group), the paths by that id
    gating = {(a, b) for a, b, typ in model.edges if typ in GATING}
    cyclic = {a for a, b in gating if model.reaches(b, a)}
    want = {min(group): group for group in (
        frozenset(m for m in cyclic if model.reaches(n, m) and model.reaches(m, n))
        for n in cyclic)}
    assert [path[0] for path in got] == sorted(want)
    for path in got:
        assert path[-1] == path[0] and set(path) <= want[path[0]]
        assert all(pair in gating for pair in itertools.pairwise(path))


class _Undo(Exception):
    """Rolls back the full recompute."""


def _readiness(ledger: Ledger) -> list[tuple[str, int, bool, str | None]]:
    state = ledger.store.readiness_state()
    return [(tid, ob, g, ledger.store.status_of(tid)) for tid, (ob, g) in sorted(state.items())]


def assert_incremental_equals_full(ledger: Ledger) -> None:
    """The stored counters equal a full recompute (for tasks whose gating means something)."""
    before = _readiness(ledger)
    after: list[tuple[str, int, bool, str | None]] = []
    with pytest.raises(_Undo), ledger.transaction():
        ledger.store.recompute_readiness()
        after = _readiness(ledger)
        raise _Undo
    assert _readiness(ledger) == before  # rolled back
    for (tid, ob1, g1, status), (_, ob2, g2, _) in zip(before, after, strict=True):
        assert ob1 == ob2, f"{tid}: open_blockers {ob1} (incremental) != {ob2} (full)"
        if status not in DONE:
            assert g1 == g2, f"{tid}: gated {g1} (incremental) != {g2} (full)"


# -- applying operations to both ---------------------------------------------------------


def do_add_dep(ledger: Ledger, model: Model, a: str, b: str, typ: str) -> None:
    if (a, b, typ) in model.edges:
        with pytest.raises(Conflict):
            ledger.add_dep(a, b, typ)
    elif model.refuses_cycle(a, b, typ):
        with pytest.raises(CycleError) as info:
            ledger.add_dep(a, b, typ)
        cycle = info.value.cycle
        assert cycle[0] == a and cycle[-1] == a
        if a != b:
            assert cycle[1] == b
    else:
        dep = ledger.add_dep(a, b, typ)
        assert (dep.issue_id, dep.depends_on_id, dep.type) == (a, b, typ)
        model.add_edge(a, b, typ)


def do_remove_dep(ledger: Ledger, model: Model, a: str, b: str, typ: str | None) -> None:
    matching = {e for e in model.edges if e[0] == a and e[1] == b and (typ is None or e[2] == typ)}
    if not matching:
        with pytest.raises(NotFound):
            ledger.remove_dep(a, b, typ)
        return
    removed = ledger.remove_dep(a, b, typ)
    assert {(d.issue_id, d.depends_on_id, d.type) for d in removed} == matching
    model.remove_edges(matching)


def do_close(ledger: Ledger, model: Model, tid: str) -> None:
    if model.status[tid] == "closed":
        with pytest.raises(Conflict):
            ledger.close(tid, "again")
    else:
        assert ledger.close(tid, "done").status == "closed"
        model.set_status(tid, "closed")


def do_reopen(ledger: Ledger, model: Model, tid: str) -> None:
    if model.status[tid] == "open":
        with pytest.raises(Conflict):
            ledger.reopen(tid)
    else:
        assert ledger.reopen(tid).status == "open"
        model.set_status(tid, "open")


def do_set_status(ledger: Ledger, model: Model, tid: str, status: str) -> None:
    ledger.update(tid, {"status": status})
    model.set_status(tid, status)


def do_claim(ledger: Ledger, model: Model, tid: str) -> None:
    if tid in model.ready():
        task = ledger.claim(tid, "agent-1")
        assert (task.status, task.assignee) == ("in_progress", "agent-1")
        model.status[tid] = "in_progress"
    else:
        with pytest.raises(ClaimConflict):
            ledger.claim(tid, "agent-1")


def do_claim_next(ledger: Ledger, model: Model) -> None:
    """``claim_next`` takes the first ready task that is work, never a container."""
    work = [t for t in model.ready() if not model.container(t)]
    task = ledger.claim_next("agent-2")
    if not work:
        assert task is None
    else:
        assert task is not None and task.id == work[0]
        model.status[task.id] = "in_progress"


def do_create(ledger: Ledger, model: Model, status: str, priority: int,
              after: list[str], parent: str | None) -> None:
    count = ledger.store.task_count()
    if len(set(after)) != len(after):  # a duplicate dependency: all or nothing
        with pytest.raises(Conflict):
            ledger.create("new", status=status, priority=priority, after=after, parent=parent,
                          task_id=model.next_id())
        assert ledger.store.task_count() == count
        return
    task = ledger.create("new", status=status, priority=priority, after=after, parent=parent,
                         task_id=model.next_id())
    model.add_task(task.id, status, priority)
    for b in after:
        model.add_edge(task.id, b, BLOCKS)
    if parent:
        model.add_edge(task.id, parent, PARENT)


def run_operations(data: st.DataObject, ledger: Ledger, model: Model, steps: int) -> None:
    for _ in range(steps):
        ids = list(model.order)
        pick = st.sampled_from(ids)
        op = data.draw(st.sampled_from(
            ["add_dep", "add_dep", "add_dep", "remove_dep", "close", "reopen", "status",
             "claim", "claim_next", "create", "create"]))
        if op == "add_dep":
            do_add_dep(ledger, model, data.draw(pick), data.draw(pick),
                       data.draw(st.sampled_from(DEP_TYPES)))
        elif op == "remove_dep":
            if model.edges and data.draw(st.booleans()):
                a, b, typ = data.draw(st.sampled_from(sorted(model.edges)))
                do_remove_dep(ledger, model, a, b, data.draw(st.sampled_from([typ, None])))
            else:
                do_remove_dep(ledger, model, data.draw(pick), data.draw(pick),
                              data.draw(st.sampled_from((*DEP_TYPES, None))))
        elif op == "close":
            do_close(ledger, model, data.draw(pick))
        elif op == "reopen":
            do_reopen(ledger, model, data.draw(pick))
        elif op == "status":
            do_set_status(ledger, model, data.draw(pick), data.draw(st.sampled_from(SETTABLE)))
        elif op == "claim":
            do_claim(ledger, model, data.draw(pick))
        elif op == "claim_next":
            do_claim_next(ledger, model)
        else:
            do_create(ledger, model, data.draw(st.sampled_from(SETTABLE)),
                      data.draw(st.integers(0, 4)),
                      data.draw(st.lists(pick, max_size=3)),
                      data.draw(st.one_of(st.none(), pick)))
        assert_matches(ledger, model)
    assert_incremental_equals_full(ledger)
    report = ledger.verify()
    assert report.ok, report.problems


STORES = ("sqlite", "memory", "postgres")
"""The stores every property runs against."""
ON_EVERY_STORE = pytest.mark.parametrize("store", STORES)
ON_LOCAL_STORES = pytest.mark.parametrize("store", ("sqlite", "memory"))
"""The properties run here on these; on PostgreSQL, each by a wrapper at the end of the file
with :data:`PG_SETTINGS`."""
PG_SETTINGS = settings(SETTINGS, max_examples=30)
"""The same properties on PostgreSQL, on fewer examples: each step there is round trips to a
server (120 examples of the five took 2-3 minutes on a loaded 2-core machine)."""


def ledger_on(store: str, clock: FixedClock, actor: str) -> Ledger:
    if store == "memory":
        return Ledger(MemoryStore(), prefix="tm", clock=clock, actor=actor)
    if store == "postgres":
        pg_helpers.close_stores()  # the previous example's (one example at a time)
        return Ledger(pg_helpers.new_store(), prefix="tm", clock=clock, actor=actor)
    return Ledger.memory(prefix="tm", clock=clock, actor=actor)


def new_ledger(store: str) -> Ledger:
    return ledger_on(store, FixedClock(step=0.001), "prop")


# -- the properties ----------------------------------------------------------------------


@ON_LOCAL_STORES
@SETTINGS
@given(data=st.data())
def test_random_graphs_and_operations_match_brute_force(store: str, data: st.DataObject) -> None:
    ledger = new_ledger(store)
    model = Model()
    try:
        for _ in range(data.draw(st.integers(2, 9), label="tasks")):
            status = data.draw(st.sampled_from(SETTABLE))
            priority = data.draw(st.integers(0, 4))
            task = ledger.create("task", status=status, priority=priority,
                                 task_id=model.next_id())
            model.add_task(task.id, status, priority)
        assert_matches(ledger, model)
        pick = st.sampled_from(list(model.order))
        for _ in range(data.draw(st.integers(0, 14), label="edges")):
            do_add_dep(ledger, model, data.draw(pick), data.draw(pick),
                       data.draw(st.sampled_from(GATING + GATING + ("related",))))
        assert_matches(ledger, model)
        run_operations(data, ledger, model, data.draw(st.integers(1, 25), label="steps"))
    finally:
        ledger.close_db()


@ON_LOCAL_STORES
@SETTINGS
@given(data=st.data())
def test_deep_chains_propagate_both_ways(store: str, data: st.DataObject) -> None:
    """Long parent-child / blocks chains: gating travels down, and is lifted, transitively."""
    ledger = new_ledger(store)
    model = Model()
    try:
        length = data.draw(st.integers(3, 12))
        prev: str | None = None
        for _ in range(length):
            typ = data.draw(st.sampled_from(GATING))
            task = ledger.create("link", after=[prev] if prev and typ == BLOCKS else [],
                                 parent=prev if typ == PARENT else None,
                                 task_id=model.next_id())
            model.add_task(task.id, "open", 2)
            if prev:
                model.edges.add((task.id, prev, typ))
            prev = task.id
        assert_matches(ledger, model)
        pick = st.sampled_from(list(model.order))
        for _ in range(data.draw(st.integers(1, 12))):
            tid = data.draw(pick)
            do_set_status(ledger, model, tid, data.draw(st.sampled_from(SETTABLE)))
            assert_matches(ledger, model)
        # closing the head of the chain always refuses a back edge from it to the tail
        head, tail = model.order[0], model.order[-1]
        do_add_dep(ledger, model, head, tail, data.draw(st.sampled_from(GATING)))
        assert_incremental_equals_full(ledger)
    finally:
        ledger.close_db()


@st.composite
def imported_graphs(draw: st.DrawFn) -> tuple[list[tuple[str, str, int]], set[tuple[str, str, str]]]:
    """A graph as an import could leave it: tombstones, dangling edges, even gating cycles."""
    n = draw(st.integers(1, 9))
    statuses = st.sampled_from((*SETTABLE, "tombstone", "tombstone"))
    tasks = [(f"tm-{i:03d}", draw(statuses), draw(st.integers(0, 4))) for i in range(n)]
    names = [t[0] for t in tasks] + ["tm-missing"]
    types = st.sampled_from((*GATING, *GATING, *DEP_TYPES))
    edges = draw(st.sets(st.tuples(st.sampled_from(names[:-1]), st.sampled_from(names), types),
                         max_size=3 * n))
    return tasks, edges


@ON_LOCAL_STORES
@SETTINGS
@given(graph=imported_graphs(), data=st.data())
def test_recompute_all_then_incremental_match_brute_force(
        store: str, graph: tuple[list[tuple[str, str, int]], set[tuple[str, str, str]]],
        data: st.DataObject) -> None:
    """``recompute_all`` after a bulk load, then incremental changes, match the definition."""
    tasks, edges = graph
    ledger = new_ledger(store)
    model = Model()
    try:
        with ledger.transaction():  # a bulk import: rows as they are, then readiness once
            items = []
            for tid, status, priority in tasks:
                when = "2026-01-01T00:00:00Z"
                row = (tid, "imported", "", "", "", "", status, priority, "task", None, when,
                       when, None, None, None, None, None, None, None, None)
                deps = [(b, typ, None, None, None) for a, b, typ in sorted(edges) if a == tid]
                items.append(ImportItem(row, [], deps, []))
                model.add_task(tid, status, priority)
            ledger.store.import_rows(items, [])
            model.edges = set(edges)
            ledger.store.recompute_readiness()
        assert_matches(ledger, model)
        for _ in range(data.draw(st.integers(0, 10))):
            tid = data.draw(st.sampled_from(model.order))
            if model.status[tid] == "tombstone":
                continue
            op = data.draw(st.sampled_from(["status", "close", "reopen", "remove_dep"]))
            if op == "status":
                do_set_status(ledger, model, tid, data.draw(st.sampled_from(SETTABLE)))
            elif op == "close":
                do_close(ledger, model, tid)
            elif op == "reopen":
                do_reopen(ledger, model, tid)
            elif model.edges:
                a, b, typ = data.draw(st.sampled_from(sorted(model.edges)))
                do_remove_dep(ledger, model, a, b, typ)
            assert_matches(ledger, model)
        assert_incremental_equals_full(ledger)
    finally:
        ledger.close_db()


@ON_LOCAL_STORES
@SETTINGS
@given(priorities=st.lists(st.integers(0, 4), min_size=1, max_size=30))
def test_ready_order_is_priority_then_creation(store: str, priorities: list[int]) -> None:
    ledger = new_ledger(store)
    try:
        ids = [ledger.create(f"t{i}", priority=p).id for i, p in enumerate(priorities)]
        want = [tid for _, _, tid in sorted(zip(priorities, range(len(ids)), ids, strict=True))]
        assert [t.id for t in ledger.ready()] == want
        # claim_next takes them in exactly that order
        taken = []
        while (task := ledger.claim_next("worker")) is not None:
            taken.append(task.id)
        assert taken == want
        assert ledger.ready() == []
    finally:
        ledger.close_db()


@ON_EVERY_STORE
def test_invalid_status_is_refused_and_changes_nothing(store: str) -> None:
    ledger = new_ledger(store)
    try:
        task = ledger.create("x")
        with pytest.raises(InvalidInput):
            ledger.update(task.id, {"status": "tombstone"})
        assert ledger.get(task.id).status == "open"
    finally:
        ledger.close_db()


# -- Beads' rules (imported records) -----------------------------------------------------
# Written from Beads 1.x's readiness code (see taskmill.ledger.beads_rules's text), not from
# the stores: non-work types and pinned/ephemeral records are never ready; conditional-blocks
# holds unless its blocker was closed with a failure reason (or is pinned/deleted); waits-for
# holds while the spawner's children gate is shut; a pinned blocker does not block;
# defer_until in the future hides a task and (taskmill) the subtree under it, (Beads) its
# children only; ready is ordered by priority, then creation time, then creation order.

COND = "conditional-blocks"
WAITS = "waits-for"
FAILURES = ("tests FAILED", "Won't fix", "timeout after 3 tries")
SUCCESSES = ("shipped", "done", None)
NOW = "2026-06-01T00:00:00.000000Z"
TIMES = ("2025-01-01T10:00:00.5-07:00", "2025-01-01T17:00:00.400000Z",
         "2025-01-01T18:00:00+01:00", "2025-01-02T00:00:00.000001Z", "garbage")


def _instant(text: str) -> tuple[int, str]:
    from datetime import UTC, datetime

    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return (1, text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (0, when.astimezone(UTC).isoformat())


@dataclass
class BeadsTask:
    status: str
    priority: int
    issue_type: str
    created_at: str
    close_reason: str | None
    fields: dict[str, object]


@dataclass
class BeadsModel:
    tasks: dict[str, BeadsTask]
    order: list[str]
    edges: dict[tuple[str, str, str], str | None]  # -> gate for waits-for

    def kids(self, tid: str) -> list[str]:
        return [a for (a, b, t) in self.edges if b == tid and t == PARENT and a in self.tasks]

    def done(self, tid: str) -> bool:
        return self.tasks[tid].status in DONE

    def holds(self, b: str, typ: str, gate: str | None) -> bool:
        if typ == WAITS:
            sts = [self.tasks[c].status for c in self.kids(b) if self.tasks[c].status != "tombstone"]
            active = any(s not in ("closed", "pinned") for s in sts)
            return active and not (gate == "any-children" and "closed" in sts)
        if b not in self.tasks:
            return False
        t = self.tasks[b]
        if typ == BLOCKS:
            return t.status not in ("closed", "tombstone", "pinned")
        if typ == COND:
            failed = t.status == "closed" and any(
                k in (t.close_reason or "").lower() for k in
                ("failed", "won't fix", "timeout", "rejected", "wontfix", "error"))
            return t.status not in ("tombstone", "pinned") and not failed
        return False

    def blockers(self, tid: str) -> set[str]:
        return {b for (a, b, t), g in self.edges.items()
                if a == tid and t in (BLOCKS, COND, WAITS) and self.holds(b, t, g)}

    def gated(self, holding: bool) -> set[str]:
        out = {t for t in self.tasks if self.blockers(t)}
        changed = True
        while changed:
            changed = False
            for (a, b, t) in self.edges:
                if t != PARENT or a not in self.tasks or b not in self.tasks or a in out:
                    continue
                if not self.done(b) and (b in out or (holding and self.tasks[b].status in HOLDING)):
                    out.add(a)
                    changed = True
        return out

    def hidden(self, compat: bool) -> set[str]:
        out = {t for t, v in self.tasks.items()
               if isinstance(v.fields.get("defer_until"), str)
               and _instant(str(v.fields["defer_until"]))[0] == 0
               and _instant(str(v.fields["defer_until"])) > _instant(NOW)}
        stack = list(out)
        while stack:
            for c in self.kids(stack.pop()):
                if c not in out:
                    out.add(c)
                    if not compat and not self.done(c):
                        stack.append(c)
        return out

    def ready(self, compat: bool) -> list[str]:
        gated, hidden = self.gated(not compat), self.hidden(compat)
        seq = {t: i for i, t in enumerate(self.order)}
        found = [t for t, v in self.tasks.items()
                 if v.status == "open" and t not in gated and t not in hidden
                 and v.issue_type not in ("agent", "molecule", "rig")
                 and v.fields.get("pinned") is not True and v.fields.get("ephemeral") is not True]
        return sorted(found, key=lambda t: (self.tasks[t].priority,
                                            _instant(self.tasks[t].created_at), seq[t]))

    def blocked(self, compat: bool) -> set[str]:
        gated = self.gated(not compat)
        return {t for t, v in self.tasks.items() if not self.done(t)
                and (t in gated or (not compat and v.status == "blocked"))}


@st.composite
def beads_graphs(draw: st.DrawFn) -> BeadsModel:
    n = draw(st.integers(1, 9))
    tasks: dict[str, BeadsTask] = {}
    for i in range(n):
        status = draw(st.sampled_from((*SETTABLE, "pinned", "tombstone", "closed")))
        reason = draw(st.sampled_from(FAILURES + SUCCESSES)) if status == "closed" else None
        fields: dict[str, object] = {}
        for key in ("pinned", "ephemeral"):
            if draw(st.integers(0, 5)) == 0:
                fields[key] = draw(st.sampled_from([True, False]))
        if draw(st.integers(0, 3)) == 0:
            fields["defer_until"] = draw(st.sampled_from(
                ["2026-07-01T00:00:00Z", "2026-05-01T00:00:00-07:00", "soon"]))
        tasks[f"tm-{i:03d}"] = BeadsTask(
            status, draw(st.integers(0, 2)),
            draw(st.sampled_from(("task", "task", "task", "agent", "molecule", "epic"))),
            draw(st.sampled_from(TIMES)), reason, fields)
    names = [*tasks, "tm-missing"]
    edges: dict[tuple[str, str, str], str | None] = {}
    for _ in range(draw(st.integers(0, 3 * n))):
        typ = draw(st.sampled_from((BLOCKS, COND, WAITS, PARENT, PARENT, "related")))
        key = (draw(st.sampled_from(names[:-1])), draw(st.sampled_from(names)), typ)
        edges[key] = draw(st.sampled_from((None, "all-children", "any-children", "junk"))) \
            if typ == WAITS else None
    return BeadsModel(tasks, list(tasks), edges)


def _load(ledger: Ledger, model: BeadsModel) -> None:
    import json

    with ledger.transaction():
        items = []
        for tid, v in model.tasks.items():
            extra = json.dumps({"fields": v.fields}) if v.fields else None
            row = (tid, "imported", "", "", "", "", v.status, v.priority, v.issue_type, None,
                   v.created_at, v.created_at, None, v.close_reason, None, None, None, None,
                   None, extra)
            deps = []
            for (a, b, typ), gate in sorted(model.edges.items(), key=lambda kv: kv[0]):
                if a != tid:
                    continue
                dep_extra = None
                if gate == "junk":
                    dep_extra = json.dumps({"fields": {"metadata": "{not json"}})
                elif gate is not None:
                    meta: object = json.dumps({"gate": gate}) if gate == "any-children" \
                        else {"gate": gate}
                    dep_extra = json.dumps({"fields": {"metadata": meta}})
                deps.append((b, typ, None, None, dep_extra))
            items.append(ImportItem(row, [], deps, []))
        ledger.store.import_rows(items, [])
        ledger.store.recompute_readiness()


def assert_beads_matches(ledger: Ledger, model: BeadsModel) -> None:
    for compat in (False, True):
        assert [t.id for t in ledger.ready(beads_compat=compat)] == model.ready(compat), compat
        got = ledger.blocked(beads_compat=compat)
        assert {b.task.id for b in got} == model.blocked(compat), compat
        for item in got:
            assert set(item.blockers) == model.blockers(item.task.id), item.task.id


@ON_LOCAL_STORES
@SETTINGS
@given(model=beads_graphs(), data=st.data())
def test_beads_rules_match_brute_force(store: str, model: BeadsModel,
                                       data: st.DataObject) -> None:
    """Imported records under Beads' rules, then status changes and close reasons."""
    from taskmill.clock import parse_iso

    when = parse_iso(NOW)
    assert when is not None
    ledger = ledger_on(store, FixedClock(when), "prop" if store == "memory" else "p")
    try:
        _load(ledger, model)
        assert_beads_matches(ledger, model)
        for _ in range(data.draw(st.integers(0, 8))):
            tid = data.draw(st.sampled_from(model.order))
            if model.tasks[tid].status in ("tombstone", "closed"):
                if model.tasks[tid].status == "closed" and data.draw(st.booleans()):
                    reason = data.draw(st.sampled_from((*FAILURES, "fine")))
                    ledger.update(tid, {"close_reason": reason})
                    model.tasks[tid].close_reason = reason
                continue
            if any(tid in (a, b) and t == PARENT for (a, b, t) in model.edges):
                continue  # containers follow their children: not modelled here
            if data.draw(st.booleans()):
                reason = data.draw(st.sampled_from((*FAILURES, "shipped")))
                ledger.close(tid, reason)
                model.tasks[tid].status, model.tasks[tid].close_reason = "closed", reason
            else:
                status = data.draw(st.sampled_from(SETTABLE))
                ledger.update(tid, {"status": status})
                model.tasks[tid].status = status
                if status != "closed":
                    model.tasks[tid].close_reason = None
            assert_beads_matches(ledger, model)
        assert_incremental_equals_full(ledger)
    finally:
        ledger.close_db()


# -- the same properties on PostgreSQL (fewer examples: see PG_SETTINGS) ----------------------


@PG_SETTINGS
@given(data=st.data())
def test_random_graphs_and_operations_match_brute_force_on_postgres(
        data: st.DataObject) -> None:
    test_random_graphs_and_operations_match_brute_force.hypothesis.inner_test("postgres", data)


@PG_SETTINGS
@given(data=st.data())
def test_deep_chains_propagate_both_ways_on_postgres(data: st.DataObject) -> None:
    test_deep_chains_propagate_both_ways.hypothesis.inner_test("postgres", data)


@PG_SETTINGS
@given(graph=imported_graphs(), data=st.data())
def test_recompute_all_then_incremental_match_brute_force_on_postgres(
        graph: tuple[list[tuple[str, str, int]], set[tuple[str, str, str]]],
        data: st.DataObject) -> None:
    test_recompute_all_then_incremental_match_brute_force.hypothesis.inner_test(
        "postgres", graph, data)


@PG_SETTINGS
@given(priorities=st.lists(st.integers(0, 4), min_size=1, max_size=30))
def test_ready_order_is_priority_then_creation_on_postgres(priorities: list[int]) -> None:
    test_ready_order_is_priority_then_creation.hypothesis.inner_test("postgres", priorities)


@PG_SETTINGS
@given(model=beads_graphs(), data=st.data())
def test_beads_rules_match_brute_force_on_postgres(model: BeadsModel,
                                                   data: st.DataObject) -> None:
    test_beads_rules_match_brute_force.hypothesis.inner_test("postgres", model, data)
