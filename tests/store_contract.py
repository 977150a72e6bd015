"""The ledger store contract: what every :class:`~taskmill.ledger.store.LedgerStore` does.

One mixin of tests (as huey's storage tests are written), subclassed once per store
(``test_store_sqlite.py``, ``test_store_memory.py``): each subclass says how to make a fresh
store, and every test here runs against it through the :class:`Ledger` API (and a few store
verbs directly). A new store is done when its subclass passes.
"""

from __future__ import annotations

import io
import json
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from taskmill.beads import export_beads, import_beads
from taskmill.clock import FixedClock
from taskmill.errors import ClaimConflict, Conflict, CycleError, InvalidInput, NotFound
from taskmill.ledger import Ledger, LedgerStore
from taskmill.ledger.containers import AUTO_CLOSE_REASON
from taskmill.plan import import_plan

SAMPLE = Path(__file__).resolve().parent / "fixtures" / "beads-sample.jsonl"


class Boom(Exception):
    """Raised inside a transaction to make it roll back."""


class StoreContract:
    """Mix into a ``unittest``-free test class and define :meth:`make_store`."""

    def make_store(self) -> LedgerStore:
        raise NotImplementedError

    def open_again(self, store: LedgerStore) -> LedgerStore | None:
        """Another connection to ``store``'s data, as another thread or process would open
        it; None: the store has no other (one in this process's memory)."""
        return None

    @pytest.fixture
    def ledger(self) -> Ledger:
        return Ledger(self.make_store(), prefix="tm", clock=FixedClock(step=1.0), actor="test")

    # -- tasks -----------------------------------------------------------------------------

    def test_create_get_update_close_reopen(self, ledger: Ledger) -> None:
        t = ledger.create("Write docs", priority=1, labels=["docs", "b"], checks=["true"],
                          hints={"estimate": 3})
        got = ledger.get(t.id)
        assert (got.title, got.priority, got.labels, got.checks, got.hints, got.ready) == (
            "Write docs", 1, ["docs", "b"], ["true"], {"estimate": 3}, True)
        assert ledger.get(t.id[:6]).id == t.id  # a prefix resolves
        ledger.update(t.id, {"title": "Write the docs", "metadata": {"k": 1}})
        assert ledger.get(t.id).metadata == {"k": 1}
        closed = ledger.close(t.id, "done")
        assert (closed.status, closed.close_reason, closed.closed_at is not None) == (
            "closed", "done", True)
        with pytest.raises(Conflict):
            ledger.close(t.id)
        opened = ledger.reopen(t.id)
        assert (opened.status, opened.close_reason, opened.closed_at) == ("open", None, None)
        kinds = [e.kind for e in ledger.events(t.id)]
        assert kinds == ["created", "updated", "updated", "updated"]

    def test_a_task_s_role(self, ledger: Ledger) -> None:
        t = ledger.create("Write the notes", role="writer")
        assert (ledger.get(t.id).role, ledger.get(t.id).to_json()["role"]) == ("writer", "writer")
        assert ledger.create("no role").role is None
        assert ledger.update(t.id, {"role": "reviewer"}).role == "reviewer"
        assert sorted(str(x.role) for x in ledger.list_tasks()) == ["None", "reviewer"]
        assert sorted(str(x.role) for x in ledger.ready()) == ["None", "reviewer"]
        assert ledger.update(t.id, {"role": ""}).role is None  # "" clears it
        created, updated, cleared = ledger.events(t.id)
        assert created.data["new"]["role"] == "writer"
        assert updated.data["changes"]["role"] == ["writer", "reviewer"]
        assert cleared.data["changes"]["role"] == ["reviewer", None]
        before = ledger.last_seq()
        for bad in ("../x", "a b", "-x", 3):
            with pytest.raises(InvalidInput, match="role"):
                ledger.update(t.id, {"role": bad})
            with pytest.raises(InvalidInput, match="role"):
                ledger.create("bad", role=bad)  # type: ignore[arg-type]
        assert ledger.last_seq() == before

    def test_role_spend_sums_each_role_s_attempts_since_a_time(self, ledger: Ledger) -> None:
        from datetime import UTC, datetime

        from taskmill.clock import iso

        t = ledger.create("t", role="w")

        def attempt(role: str | None, when: str, tokens: int, cost: float) -> None:
            now = iso(datetime.fromisoformat(when))
            aid = ledger.start_attempt(t.id, iteration=1, agent="a", model=None, log_path="l",
                                       run_id="r", lap=1, actor="mill:r", now=now, role=role)
            ledger.finish_attempt(t.id, aid, outcome="failed", input_tokens=tokens,
                                  output_tokens=1, cost_usd=cost, commit=None, model=None,
                                  detail={}, seconds=1.0, usage_error=None, actor="mill:r",
                                  now=now)

        attempt("w", "2026-05-01T23:59:59+00:00", 10, 0.5)
        attempt("w", "2026-05-02T00:00:00+00:00", 20, 0.25)
        attempt("x", "2026-05-02T08:00:00+00:00", 5, 0.0)
        attempt(None, "2026-05-02T09:00:00+00:00", 1000, 9.0)
        since = datetime(2026, 5, 2, tzinfo=UTC)
        assert ledger.role_spend(since) == {"w": (21, 0.25), "x": (6, 0.0)}
        assert ledger.role_spend(datetime(2026, 5, 1, tzinfo=UTC))["w"] == (32, 0.75)
        assert ledger.role_spend(datetime(2026, 5, 3, tzinfo=UTC)) == {}
        assert [a["role"] for a in ledger.attempts(t.id)] == ["w", "w", "x", None]

    def test_unknown_id_and_bad_input_change_nothing(self, ledger: Ledger) -> None:
        t = ledger.create("x")
        with pytest.raises(NotFound):
            ledger.get("tm-nope")
        before = ledger.last_seq()
        with pytest.raises(InvalidInput):
            ledger.update(t.id, {"priority": 9})
        with pytest.raises(InvalidInput):
            ledger.create("")
        assert ledger.last_seq() == before

    def test_list_filters_and_labels(self, ledger: Ledger) -> None:
        a = ledger.create("a", labels=["x"], priority=3)
        b = ledger.create("b", issue_type="bug", assignee="ana", priority=0)
        import_beads(ledger, [json.dumps({
            "id": "tm-gone", "title": "c", "status": "tombstone", "priority": 2,
            "issue_type": "task", "created_at": "2025-01-01T00:00:00Z",
            "updated_at": "2025-01-01T00:00:00Z"})])
        assert [t.id for t in ledger.list_tasks()] == [b.id, a.id]
        assert [t.id for t in ledger.list_tasks(include_hidden=True)] == [b.id, "tm-gone", a.id]
        assert [t.id for t in ledger.list_tasks(label="x")] == [a.id]
        assert [t.id for t in ledger.list_tasks(issue_type="bug")] == [b.id]
        assert [t.id for t in ledger.list_tasks(assignee="ana")] == [b.id]
        assert [t.id for t in ledger.list_tasks(status="tombstone")] == ["tm-gone"]
        assert [t.id for t in ledger.list_tasks(limit=1)] == [b.id]
        ledger.add_labels(a.id, ["y", "x"])
        assert ledger.get(a.id).labels == ["x", "y"]
        ledger.remove_labels(a.id, ["x"])
        assert ledger.get(a.id).labels == ["y"]
        assert ledger.set_labels(a.id, ["z", "y"]) is True
        assert ledger.set_labels(a.id, ["z", "y"]) is False
        assert ledger.get(a.id).labels == ["z", "y"]
        assert ledger.labels_in_use() == ["y", "z"]

    def test_comments(self, ledger: Ledger) -> None:
        a, b = ledger.create("a"), ledger.create("b")
        first = ledger.comment(a.id, "one")
        ledger.comment(a.id, "two", author="bo")
        ledger.comment(b.id, "three")
        assert [c.text for c in ledger.show(a.id).comments] == ["one", "two"]
        assert first.id < ledger.last_comments([a.id])[a.id].id
        assert {k: v.text for k, v in ledger.last_comments([a.id, b.id]).items()} == {
            a.id: "two", b.id: "three"}

    # -- dependencies and readiness --------------------------------------------------------

    def test_blocks_gates_until_the_blocker_is_done(self, ledger: Ledger) -> None:
        blocker = ledger.create("blocker")
        waiting = ledger.create("waiting", after=[blocker.id])
        assert [t.id for t in ledger.ready()] == [blocker.id]
        assert [b.task.id for b in ledger.blocked()] == [waiting.id]
        assert ledger.blocked()[0].blockers == [blocker.id]
        ledger.close(blocker.id)
        assert [t.id for t in ledger.ready()] == [waiting.id]
        ledger.reopen(blocker.id)
        assert not ledger.get(waiting.id).ready
        ledger.remove_dep(waiting.id, blocker.id)
        assert ledger.get(waiting.id).ready
        with pytest.raises(NotFound):
            ledger.remove_dep(waiting.id, blocker.id)

    def test_dependencies_both_ways_and_tree(self, ledger: Ledger) -> None:
        a, b, c = ledger.create("a"), ledger.create("b"), ledger.create("c")
        ledger.add_dep(a.id, b.id)
        ledger.add_dep(a.id, c.id, "related")
        with pytest.raises(Conflict):
            ledger.add_dep(a.id, b.id)
        shown = ledger.show(a.id)
        assert [(d.depends_on_id, d.type) for d in shown.dependencies] == [
            (b.id, "blocks"), (c.id, "related")]
        assert [d.issue_id for d in ledger.show(b.id).dependents] == [a.id]
        tree = ledger.dep_tree(a.id)
        assert [ch["id"] for ch in tree["children"]] == [b.id, c.id]
        assert ledger.dep_tree(b.id, reverse=True)["children"][0]["id"] == a.id
        assert sorted(ledger.dep_edges()) == sorted([(a.id, b.id, "blocks"),
                                                     (a.id, c.id, "related")])

    def test_a_cycle_is_refused(self, ledger: Ledger) -> None:
        a, b, c = ledger.create("a"), ledger.create("b"), ledger.create("c")
        ledger.add_dep(a.id, b.id)
        ledger.add_dep(b.id, c.id, "parent-child")
        before = ledger.last_seq()
        with pytest.raises(CycleError) as err:
            ledger.add_dep(c.id, a.id)
        assert err.value.cycle == [c.id, a.id, b.id, c.id]
        ledger.add_dep(c.id, a.id, "related")  # not gating: no cycle
        assert ledger.last_seq() == before + 1
        assert ledger.cycles() == []

    def test_parent_child_gates_and_containers_follow_children(self, ledger: Ledger) -> None:
        epic = ledger.create("epic", issue_type="epic")
        k1 = ledger.create("k1", parent=epic.id)
        k2 = ledger.create("k2", parent=epic.id)
        assert [t.id for t in ledger.ready(work_only=True)] == [k1.id, k2.id]
        assert ledger.get(epic.id).children == 2 and ledger.get(k1.id).parent == epic.id
        assert [t.id for t in ledger.show(epic.id).child_tasks] == [k1.id, k2.id]
        ledger.update(epic.id, {"status": "deferred"})
        assert ledger.ready() == []
        assert ledger.held_back(epic.id) == [k1.id, k2.id]
        reasons = {b.task.id: b.reasons for b in ledger.blocked()}
        assert reasons[k1.id] == [f"parent {epic.id} is deferred"]
        ledger.update(epic.id, {"status": "open"})
        ledger.close(k1.id)
        assert ledger.get(epic.id).status == "open"
        ledger.close(k2.id)
        closed = ledger.get(epic.id)
        assert (closed.status, closed.close_reason) == ("closed", AUTO_CLOSE_REASON)
        ledger.reopen(k2.id)
        assert ledger.get(epic.id).status == "open"

    def test_claims(self, ledger: Ledger) -> None:
        a, b = ledger.create("a", priority=1), ledger.create("b", priority=2)
        got = ledger.claim_next("mill:r1")
        assert got is not None and (got.id, got.status, got.assignee) == (
            a.id, "in_progress", "mill:r1")
        with pytest.raises(ClaimConflict):
            ledger.claim(a.id, "someone")
        assert ledger.claims("mill:") == [(a.id, "mill:r1")]
        assert ledger.claims("MILL:") == [(a.id, "mill:r1")]
        assert ledger.claim_next("mill:r2", exclude=[b.id]) is None

    CLAIM_RACE = (200, 6)
    """Tasks, and claimers taking them at once (each on its own connection)."""

    def test_concurrent_claimers_each_take_tasks_of_their_own(self, ledger: Ledger) -> None:
        """Claimers starting together are not all offered the same first task to queue up
        on: every task is claimed exactly once, and hardly a claim is lost and retried."""
        tasks, claimers = self.CLAIM_RACE
        with ledger.transaction():
            ids = [ledger.create(f"t{n}").id for n in range(tasks)]
        stores = [self.open_again(ledger.store) for _ in range(claimers)]
        if any(s is None for s in stores):
            pytest.skip("one connection only: claims cannot race")
        lost = [0] * claimers
        claimed: list[list[str]] = [[] for _ in range(claimers)]
        start = threading.Barrier(claimers)
        failures: list[BaseException] = []

        def claimer(i: int, store: LedgerStore) -> None:
            claim_row = store.claim_row

            def counted(task_id: str, assignee: str, now: str, work_only: bool) -> bool:
                won = claim_row(task_id, assignee, now, work_only)
                lost[i] += not won
                return won

            store.claim_row = counted  # type: ignore[method-assign]
            mine = Ledger(store, prefix="tm", clock=FixedClock(step=1.0), actor=f"c{i}")
            try:
                start.wait()
                while (got := mine.claim_next(f"mill:c{i}")) is not None:
                    claimed[i].append(got.id)
            except BaseException as exc:
                failures.append(exc)
            finally:
                store.close()

        threads = [threading.Thread(target=claimer, args=(i, s)) for i, s in enumerate(stores)
                   if s is not None]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not failures, failures
        every = Counter(t for mine in claimed for t in mine)
        assert sorted(every) == sorted(ids) and set(every.values()) == {1}
        print(f"claims lost and retried: {sum(lost)} of {tasks}; claimed by each: "
              f"{[len(mine) for mine in claimed]}", file=sys.stderr)
        assert sum(lost) <= claimers, lost
        assert ledger.verify().ok

    # -- attempts (the mill's verbs) -------------------------------------------------------

    def test_attempts_laps_and_recovery(self, ledger: Ledger) -> None:
        t = ledger.create("work")
        ledger.claim(t.id, "mill:dead")
        assert ledger.last_lap(t.id) == 0
        aid = ledger.start_attempt(t.id, iteration=1, agent="fake", model="m1",
                                   log_path="/l/1", run_id="dead", lap=1, actor="mill:dead",
                                   now="2026-01-01T00:00:00Z")
        assert not ledger.claimed_after_last_attempt(t.id)
        ledger.finish_attempt(t.id, aid, outcome="failed", input_tokens=10, output_tokens=5,
                              cost_usd=0.5, commit=None, model=None, detail={"why": "red"},
                              seconds=1.0, usage_error=None, actor="mill:dead",
                              now="2026-01-01T00:00:05Z")
        second = ledger.start_attempt(t.id, iteration=2, agent="fake", model="m1",
                                      log_path="/l/2", run_id="dead", lap=1,
                                      actor="mill:dead", now="2026-01-01T00:00:06Z")
        assert ledger.lap_usage(t.id, 1) == (1, 10, 5, 0.5)  # the open one does not count
        assert ledger.recover_orphan(t.id, "mill:dead", actor="mill:new",
                                     now="2026-01-01T00:01:00Z", from_run="dead")
        assert not ledger.recover_orphan(t.id, "mill:dead", actor="mill:new",
                                         now="2026-01-01T00:01:00Z", from_run="dead")
        attempts = ledger.attempts(t.id)
        assert [(a["id"], a["outcome"], a["model"], a["detail"]) for a in attempts] == [
            (aid, "failed", "m1", {"why": "red"}), (second, "interrupted", "m1", None)]
        assert ledger.get(t.id).assignee == "mill:new"
        ledger.amend_attempt(aid, outcome="rejected_conflict", detail={"rejection": "c"})
        assert ledger.attempts(t.id)[0]["detail"] == {"why": "red", "rejection": "c"}
        assert ledger.count_attempts(t.id, 1, ["rejected_conflict", "rejected_checks"]) == 1
        third = ledger.start_attempt(t.id, iteration=3, agent="fake", model=None,
                                     log_path="/l/3", run_id="new", lap=2, actor="mill:new",
                                     now="2026-01-01T00:02:00Z")
        assert ledger.end_open_attempts(t.id, outcome="error", ended_at="x",
                                        detail={"error": "e"}, run_id="other") == 0
        assert ledger.end_open_attempts(t.id, outcome="error", ended_at="x",
                                        detail={"error": "e"}, run_id="new") == 1
        assert ledger.attempts(t.id)[-1]["id"] == third and ledger.last_lap(t.id) == 2
        totals = ledger.attempt_totals(FixedClock().now())
        assert totals["all"]["attempts"] == 3 and totals["all"]["input_tokens"] == 10
        assert ledger.attempt_task_ids() == {t.id}

    def test_block_and_chain_weights(self, ledger: Ledger) -> None:
        a = ledger.create("a", hints={"estimate": 4})
        b = ledger.create("b", after=[a.id])
        done = ledger.create("done")
        ledger.close(done.id)
        weights, edges = ledger.chain_weights()
        assert weights == {a.id: 4.0, b.id: 1.0} and edges == [(b.id, a.id)]
        ledger.block(a.id, "the checks never pass", actor="mill:r")
        blocked = {x.task.id: x for x in ledger.blocked()}
        assert blocked[a.id].reason == "the checks never pass"
        assert ledger.get(a.id).status == "blocked"

    # -- events and the change feed --------------------------------------------------------

    def test_events_chain_and_changes_since(self, ledger: Ledger) -> None:
        assert ledger.last_seq() == 0 and ledger.changes_since(0) == []
        a = ledger.create("a")
        mark = ledger.last_seq()
        ledger.comment(a.id, "hi")
        b = ledger.create("b")
        changes = ledger.changes_since(mark)
        assert [(c.task_id, c.kind) for c in changes] == [(a.id, "commented"), (b.id, "created")]
        assert changes[-1].seq == ledger.last_seq()
        assert ledger.changes_since(ledger.last_seq()) == []
        assert [e.kind for e in ledger.events(limit=2)] == ["commented", "created"]
        assert [e.seq for e in ledger.events_since(1, limit=1)] == [2]
        report = ledger.verify()
        assert report.ok, report.problems
        assert ledger.store.audit_head()[0] == ledger.last_seq() == 3
        rows = list(ledger.store.event_rows())
        assert ledger.store.event_hash(3) == rows[-1].hash == ledger.store.audit_head()[1]

    def test_events_of_kinds(self, ledger: Ledger) -> None:
        a, b = ledger.create("a"), ledger.create("b")
        with ledger.transaction():
            ledger.record("review_finished", a.id, {"n": 1}, actor="mill:r",
                          ts="2026-01-01T00:00:00Z")
            ledger.record("finding_dismissed", b.id, {"n": 2}, actor="me",
                          ts="2026-01-03T00:00:00Z")
            ledger.record("review_finished", None, {"n": 3}, actor="me",
                          ts="2026-01-05T00:00:00Z")
        kinds = ("review_finished", "finding_dismissed")
        assert [e.data["n"] for e in ledger.events_of_kinds(kinds)] == [1, 2, 3]
        assert [e.data["n"] for e in ledger.events_of_kinds(kinds, task_id=a.id)] == [1]
        assert [e.data["n"] for e in ledger.events_of_kinds(
            kinds, since="2026-01-02T00:00:00Z")] == [2, 3]
        assert [e.data["n"] for e in ledger.events_of_kinds(("finding_dismissed",))] == [2]
        assert ledger.events_of_kinds(()) == []

    # -- the unit of work ------------------------------------------------------------------

    def test_a_transaction_is_all_or_nothing(self, ledger: Ledger) -> None:
        a = ledger.create("a")
        before = (ledger.last_seq(), [t.id for t in ledger.list_tasks()])
        with pytest.raises(Boom), ledger.transaction():
            ledger.create("b")
            ledger.close(a.id)
            raise Boom
        assert (ledger.last_seq(), [t.id for t in ledger.list_tasks()]) == before
        assert ledger.get(a.id).status == "open"
        ledger.comment(a.id, "after the rollback")
        assert ledger.verify().ok  # the chain goes on from the head before the rollback

    def test_a_nested_transaction_is_a_savepoint(self, ledger: Ledger) -> None:
        a = ledger.create("a")
        with ledger.transaction():
            kept = ledger.create("kept")
            with pytest.raises(Boom), ledger.transaction():
                ledger.create("undone")
                ledger.close(a.id)
                raise Boom
            with pytest.raises(Conflict):  # a verb that fails inside leaves the outer one be
                ledger.reopen(kept.id)
            ledger.comment(a.id, "still in the outer one")
        titles = sorted(t.title for t in ledger.list_tasks())
        assert titles == ["a", "kept"]
        assert ledger.get(a.id).status == "open"
        assert [e.kind for e in ledger.events(a.id)] == ["created", "commented"]
        assert ledger.verify().ok

    def test_nothing_is_committed_before_the_outer_transaction_ends(self, ledger: Ledger) -> None:
        with pytest.raises(Boom), ledger.transaction():
            with ledger.transaction():
                ledger.create("inner, finished")
            assert len(ledger.list_tasks()) == 1
            raise Boom
        assert ledger.list_tasks() == [] and ledger.last_seq() == 0

    # -- bulk ------------------------------------------------------------------------------

    def test_bulk_import_and_export_round_trip(self, ledger: Ledger) -> None:
        lines = [line for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
        report = import_beads(ledger, lines)
        assert report.created == len(lines) and report.updated == 0
        out = io.StringIO()
        export_beads(ledger, out)
        exported = out.getvalue().splitlines()
        assert exported == sorted(lines, key=lambda line: json.loads(line)["id"])
        again = import_beads(ledger, lines)
        assert (again.created, again.updated, again.unchanged) == (0, 0, len(lines))
        changed = [json.loads(line) for line in lines]
        changed[0]["title"] = "changed by a second import"
        third = import_beads(ledger, [json.dumps(r, ensure_ascii=False) for r in changed])
        assert third.updated == 1 and third.updated_ids == [changed[0]["id"]]
        assert ledger.get(changed[0]["id"]).title == "changed by a second import"
        assert ledger.verify().ok
        state = ledger.store.readiness_state()
        ledger.store.recompute_readiness()
        assert ledger.store.readiness_state() == state

    def test_blocked_reads_in_bulk_what_it_read_one_by_one(self, ledger: Ledger) -> None:
        """``blocked`` reads pages of held tasks, their parents in bulk and the blockers of
        all at once; the bulk verbs agree with the one-task verbs, and any page size lists
        the same."""

        def rec(tid: str, deps: tuple[tuple[str, str], ...] = (), **fields: object) -> str:
            record: dict[str, object] = {"id": tid, "title": tid, "status": "open",
                                         "priority": 2, **fields}
            if deps:
                record["dependencies"] = [{"issue_id": tid, "depends_on_id": b, "type": t}
                                          for b, t in deps]
            return json.dumps(record)

        import_beads(ledger, [
            rec("c-a", (("c-b", "blocks"),)), rec("c-b", (("c-a", "blocks"),)),  # a cycle
            rec("c-src"), rec("c-epic", (("c-src", "blocks"),), issue_type="epic"),
            rec("c-kid", (("c-epic", "parent-child"),)),
            rec("c-grandkid", (("c-kid", "parent-child"), ("c-a", "blocks")), priority=1),
            rec("c-hold", status="deferred"), rec("c-held", (("c-hold", "parent-child"),)),
            rec("c-marked", status="blocked"), rec("c-free"),
        ])
        store = ledger.store
        for compat in (False, True):
            held = [t.id for t in store.held(compat)]
            assert [t.id for page in store.held_pages(compat, size=2) for t in page] == held
            assert store.holding_parents_many(held) == {
                i: store.holding_parents(i) for i in held if store.holding_parents(i)}
            whole = [b.to_json() for b in ledger.iter_blocked(beads_compat=compat)]
            assert [b.to_json() for b in ledger.iter_blocked(beads_compat=compat,
                                                             page_size=1)] == whole
        assert store.held_waits() == {
            t.id: store.open_blockers_of(t.id) for t in store.held()
            if store.open_blockers_of(t.id)}
        assert store.held_waits() == {"c-a": ["c-b"], "c-b": ["c-a"], "c-epic": ["c-src"],
                                      "c-grandkid": ["c-a"]}
        blocked = {b.task.id: b for b in ledger.blocked()}
        assert set(blocked) == {"c-a", "c-b", "c-epic", "c-kid", "c-grandkid", "c-held",
                                "c-marked"}
        assert blocked["c-a"].reasons == ["in a dependency cycle: c-a -> c-b -> c-a"]
        assert store.held_links().forward  # (c-a waits on c-b, made after it)
        assert blocked["c-grandkid"].held_by_ancestor == ["c-epic"]
        assert blocked["c-grandkid"].reasons == [
            "ancestor c-epic (through c-kid) waits on c-src"]

    def test_listing_json_rows_are_the_tasks_json(self, ledger: Ledger) -> None:
        """``task_json_rows`` / ``held_json_rows`` (what ``list --json`` and ``blocked --json``
        print) are the text of the tasks' ``to_json()``, marks and every filter included."""
        from taskmill.ledger.rows import item_text

        odd = "ünï \u2028 \x01\x1f\x7f \"q\" \\ \t 😀"
        epic = ledger.create("epic <&>", labels=["b", "a"], issue_type="epic", priority=0)
        src = ledger.create("source", description=odd, metadata={"n": [1, {"z": None}],
                                                                 "f": 1e-07, "e": {}},
                            checks=["make", odd], hints={"big": 2**70}, role="w")
        kid = ledger.create("kid", parent=epic.id, after=[src.id], assignee="bob",
                            labels=["a"], role="w")
        ledger.create("grandkid", parent=kid.id, metadata={}, checks=[])
        done = ledger.create("done", parent=epic.id)
        ledger.close(done.id, "ok")
        marked = ledger.create("marked", status="blocked", role="w")
        holds = {"w": "role w waits \u2028 ü"}
        store = ledger.store
        for filters in ({}, {"statuses": ["open"]}, {"statuses": ["closed", "blocked"]},
                        {"label": "a"}, {"issue_type": "epic"}, {"assignee": "bob"},
                        {"parent": epic.id}, {"limit": 2}, {"include_hidden": True}):
            args: dict[str, object] = {
                "statuses": None, "include_hidden": False, "label": None, "issue_type": None,
                "assignee": None, "parent": None, "limit": None, **filters}
            tasks = store.list_tasks(**args)  # type: ignore[arg-type]
            for task in tasks:
                task.interrupted = task.id == kid.id
                if task.role in holds and task.status == "open":
                    task.held = holds[task.role]
            rows = list(store.task_json_rows(**args, interrupted={kid.id},  # type: ignore[arg-type]
                                             held=holds))
            assert rows == [item_text(t.to_json()) for t in tasks], filters
        assert any("\"held\"" in r for r in store.task_json_rows(
            statuses=None, include_hidden=False, label=None, issue_type=None, assignee=None,
            parent=None, limit=None, held=holds))
        for compat in (False, True):
            rows = list(store.held_json_rows(compat))
            assert [r[0] for r in rows] == [t.id for t in store.held(compat)]
            for (tid, status, text), task in zip(rows, store.held(compat), strict=True):
                assert (tid, status) == (task.id, task.status)
                assert text + "\n  }" == item_text(task.to_json())
        held_ids = [t.id for t in store.held()]
        links = store.held_links()
        assert links[:2] == (store.held_waits(), store.holding_parents_many(held_ids))
        assert links.parents
        for tid, state in links.states.items():  # (what the store read with the links)
            assert state == store.task_state(tid)
        from taskmill.ledger import listing
        from taskmill.model import BLOCK_COMMENT_PREFIX

        said = ledger.create("said why")
        ledger.update(said.id, {"status": "blocked"})
        ledger.comment(said.id, BLOCK_COMMENT_PREFIX + "the checks failed 3 times")
        ledger.comment(said.id, "not a block comment")
        marks = store.block_marks(*listing.BLOCK_MARKS)
        assert marks == listing.block_marks(store, *listing.BLOCK_MARKS)
        assert set(marks) == {marked.id, said.id}
        assert marks[said.id][0] == BLOCK_COMMENT_PREFIX + "the checks failed 3 times"
        assert marks[said.id][1:] == (None, None) or marks[said.id][1] == "test"
        texts = list(ledger.blocked_json())
        assert texts == [item_text(b.to_json()) for b in ledger.blocked()]
        assert any("the checks failed 3 times" in t for t in texts)
        assert {json.loads(t)["id"] for t in texts} >= {kid.id, marked.id}

    def test_beads_readiness_rules(self, ledger: Ledger) -> None:
        """Beads' rules on imported records (see :mod:`taskmill.ledger.beads_rules`)."""

        def rec(tid: str, deps: tuple[tuple[str, str], ...] = (), **fields: object) -> str:
            record: dict[str, object] = {
                "id": tid, "title": tid, "status": "open", "priority": 2, "issue_type": "task",
                "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z",
                **fields}
            if deps:
                record["dependencies"] = [{"issue_id": tid, "depends_on_id": b, "type": t}
                                          for b, t in deps]
            return json.dumps(record)

        lines = [
            rec("b-agent", issue_type="agent"), rec("b-mol", issue_type="molecule"),
            rec("b-pinned", pinned=True), rec("b-eph", ephemeral=True),
            rec("b-pin-status", status="pinned"),
            rec("b-after-pin", (("b-pin-status", "blocks"),)),
            rec("b-cond-src"), rec("b-cond", (("b-cond-src", "conditional-blocks"),)),
            rec("b-spawn"), rec("b-kid", (("b-spawn", "parent-child"),)),
            rec("b-waiter", (("b-spawn", "waits-for"),)),
            rec("b-later", defer_until="2999-01-01T00:00:00Z"),
            rec("b-later-kid", (("b-later", "parent-child"),)),
            rec("b-old", created_at="2024-01-01T00:00:00-05:00"),
            rec("b-hold", status="deferred"), rec("b-held", (("b-hold", "parent-child"),)),
        ]
        import_beads(ledger, lines)
        ready = [t.id for t in ledger.ready()]
        assert ready[0] == "b-old"  # the oldest first, though last in the file
        assert set(ready) == {"b-old", "b-after-pin", "b-cond-src", "b-spawn", "b-kid"}
        assert [t.id for t in ledger.ready(work_only=True)] == [
            "b-old", "b-after-pin", "b-cond-src", "b-kid"]
        assert set(t.id for t in ledger.ready(beads_compat=True)) == {*ready, "b-held"}
        held = {b.task.id: b.blockers for b in ledger.blocked()}
        assert held == {"b-cond": ["b-cond-src"], "b-waiter": ["b-spawn"], "b-held": []}
        assert {b.task.id for b in ledger.blocked(beads_compat=True)} == {"b-cond", "b-waiter"}
        ledger.close("b-cond-src", "rejected by review")
        ledger.close("b-kid", "done")
        assert {"b-cond", "b-waiter"} <= {t.id for t in ledger.ready()}
        ledger.reopen("b-cond-src")
        ledger.add_dep("b-waiter", "b-old", "related")
        ledger.create("another kid", parent="b-spawn")  # the spawner's gate shuts again
        assert not {"b-cond", "b-waiter"} & {t.id for t in ledger.ready()}
        state = ledger.store.readiness_state()
        ledger.store.recompute_readiness()
        assert ledger.store.readiness_state() == state
        assert ledger.verify().ok

    def test_bulk_verbs_for_a_streaming_import(self, ledger: Ledger) -> None:
        a = ledger.create("a", labels=["x", "y"])
        b = ledger.create("b", after=[a.id])
        ledger.comment(b.id, "hello")
        store = ledger.store
        items = store.stored_items([b.id, "nope-1", a.id])
        assert set(items) == {a.id, b.id}
        assert items[a.id].row[:2] == (a.id, "a") and items[a.id].labels == ["x", "y"]
        assert [d[:2] for d in items[b.id].deps] == [(a.id, "blocks")]
        assert [c[1:3] for c in items[b.id].comments] == [("test", "hello")]
        assert store.ids_by_seq(1, 2) == [a.id, b.id] and store.ids_by_seq(2, 9) == [b.id]
        c = ledger.create("c", priority=0)
        pages = list(ledger.task_pages(size=2))
        assert [[t.id for t in page] for page in pages] == [[c.id, a.id], [b.id]]
        assert [t.id for t in ledger.list_tasks()] == [c.id, a.id, b.id]
        assert pages[1][0].to_json() == ledger.list_tasks()[2].to_json()

    def test_plan_import_uses_public_verbs(self, ledger: Ledger, tmp_path: Path) -> None:
        plan = tmp_path / "plan.toml"
        plan.write_text('[[task]]\nkey = "a"\ntitle = "A"\nlabels = ["x"]\n\n'
                        '[[task]]\nkey = "b"\ntitle = "B"\nafter = ["a"]\n', encoding="utf-8")
        ids = import_plan(ledger, plan, source="p")
        assert [t.id for t in ledger.ready()] == [ids["a"]]
        assert ledger.store.plan_keys("p") == ids
        plan.write_text('[[task]]\nkey = "a"\ntitle = "A"\nlabels = ["y"]\n\n'
                        '[[task]]\nkey = "b"\ntitle = "B"\n', encoding="utf-8")
        assert import_plan(ledger, plan, source="p") == ids
        assert ledger.get(ids["a"]).labels == ["y"]
        assert sorted(t.id for t in ledger.ready()) == sorted(ids.values())
        assert ledger.verify().ok

    def test_order_slots_are_recorded_once_and_roll_back(self, ledger: Ledger) -> None:
        from taskmill.ledger import OrderSlot

        store = ledger.store
        first = OrderSlot("nightly", "2026-01-01T03:00:00Z", "fired", "tm-a", "", "t1")
        with ledger.transaction():
            assert store.record_order_slot(first)
            assert not store.record_order_slot(first._replace(outcome="skipped"))
        with pytest.raises(Boom), ledger.transaction():
            store.record_order_slot(first._replace(slot="2026-01-02T03:00:00Z"))
            raise Boom
        with ledger.transaction():
            store.record_order_slot(OrderSlot("nightly", "2026-01-03T03:00:00Z", "missed",
                                              None, "catch_up = none", "t2"))
            store.record_order_slot(OrderSlot("other", "2026-01-04T03:00:00Z", "fired",
                                              "tm-b", "", "t3"))
        slots = store.order_slots("nightly")
        assert [(s.slot, s.outcome) for s in slots] == [
            ("2026-01-03T03:00:00Z", "missed"), ("2026-01-01T03:00:00Z", "fired")]
        assert store.order_slots("nightly", outcomes=["fired"]) == [first]
        assert store.order_slots("nightly", limit=1)[0].reason == "catch_up = none"
        assert store.order_slots("none") == []

    def test_stats(self, ledger: Ledger) -> None:
        a = ledger.create("a")
        ledger.create("b", after=[a.id])
        stats = ledger.stats()
        assert (stats["total"], stats["ready"], stats["blocked"], stats["dependencies"],
                stats["events"], stats["by_status"]) == (2, 1, 1, {"blocks": 1}, 3, {"open": 2})

