"""``taskmill verify``: the chain, the tables replayed from it, and the anchors in git.

Three checks, each saying what it proved and what it could not:

1. the hash chain in the database (:func:`taskmill.audit.verify`): no event altered or
   removed, relative to the head the database records;
2. replay (:mod:`taskmill.audit_replay`): every task's row, labels, comments and
   dependencies are what its events say (so a row changed behind taskmill's back is caught);
3. the anchors (:mod:`taskmill.audit_anchor`): the database's chain holds every anchored
   ``(seq, hash)`` and extends the last anchor, whose signature is good (so a truncation, a
   consistent re-chain, a deletion of every event or a forged anchor is caught); events
   after the last anchor are reported as an *unanchored tail*: a warning, since work since
   the last anchor is legitimately unanchored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .audit import GENESIS, VerifyReport, verify
from .audit_anchor import AUDIT_REF, Anchor, AnchorStore
from .audit_replay import Replay

if TYPE_CHECKING:
    from .ledger.store import LedgerStore

MAX_LISTED = 20
"""Replay differences spelled out in ``problems`` (all of them are in ``replay``)."""
MAX_SIGNATURE_TRIES = 20
"""Older anchors tried when the newest one's signature fails, to say what is still proven."""


def verify_ledger(ledger: LedgerStore, store: AnchorStore | None = None, *,
                  anchors_note: str | None = None) -> VerifyReport:
    """All three checks. ``store`` None: no anchors (``anchors_note`` says why)."""
    anchors: list[Anchor] = []
    ref_problems: list[str] = []
    if store is not None:
        anchors, ref_problems = store.anchors()
    replay = Replay()
    hashes: dict[int, str | None] = {a.seq: None for a in anchors}
    report = verify(ledger.event_rows(), ledger.audit_head(), on_event=replay.feed,
                    hashes_at=hashes)
    last_seq = ledger.last_seq()
    intact = last_seq if report.ok else (report.first_bad_seq or 1) - 1
    if report.ok:
        report.proven.append(f"the chain of events 1..{last_seq} is intact" if last_seq
                             else "the log holds no events")
    elif intact:
        report.proven.append(f"the chain of events 1..{intact} is intact")
    _replay(ledger, replay, report)
    _kept_text(ledger, report)
    if store is None:
        report.unproven.append(anchors_note or "no anchors were checked: the chain proves"
                               " only that the log is consistent with itself")
    else:
        _anchors(store, anchors, ref_problems, hashes, last_seq, intact, report)
    report.ok = not report.problems
    return report


def _replay(ledger: LedgerStore, replay: Replay, report: VerifyReport) -> None:
    mismatches = replay.compare(ledger)
    report.replay = [m.to_json() for m in mismatches]
    tasks = ledger.task_count()
    if not mismatches:
        report.proven.append(f"the tasks table matches the events ({tasks} tasks replayed;"
                             " updated_at is not replayed)")
        return
    for item in mismatches[:MAX_LISTED]:
        report.problems.append("replay: " + item.text())
    if len(mismatches) > MAX_LISTED:
        report.problems.append(f"replay: {len(mismatches) - MAX_LISTED} more differences"
                               " (see --json)")


def _kept_text(ledger: LedgerStore, report: VerifyReport) -> None:
    wrong = ledger.kept_text_differences()
    if wrong is None:
        return
    if not wrong:
        report.proven.append("the listings' kept text and table cells match the tasks")
        return
    named = ", ".join(wrong[:MAX_LISTED]) + (f" and {len(wrong) - MAX_LISTED} more"
                                             if len(wrong) > MAX_LISTED else "")
    report.problems.append(
        f"kept text: what `list`, `blocked` and `ready` print for {len(wrong)} task(s) is not"
        f" what their rows say ({named}); `taskmill ledger remake` makes it again")


def _anchors(store: AnchorStore, anchors: list[Anchor], ref_problems: list[str],
             hashes: dict[int, str | None], last_seq: int, intact: int,
             report: VerifyReport) -> None:
    info: dict[str, Any] = {"ref": AUDIT_REF, "count": len(anchors), "last": None,
                            "signature": None, "unanchored": None}
    report.anchors = info
    report.problems.extend(ref_problems)
    mark = store.high_water()
    tip = anchors[-1].commit if anchors else None
    if mark is not None and (tip is None or (mark[0] != tip
                                             and not store.git.is_ancestor(mark[0], tip))):
        report.problems.append(
            f"{AUDIT_REF} was moved back or replaced: the anchor this user's taskmill last"
            f" wrote ({mark[0][:12]}, events 1..{mark[1]}) is not on it")
    if not anchors:
        if last_seq:
            report.warnings.append(f"no anchors yet: events 1..{last_seq} are not anchored"
                                   " (`taskmill audit anchor` records one)")
            info["unanchored"] = [1, last_seq]
        return
    last = anchors[-1]
    info["last"] = last.to_json()
    for anchor in anchors:
        if anchor.seq > last_seq:
            report.problems.append(
                f"events {last_seq + 1}..{anchor.seq} are missing: anchor {anchor.number}"
                f" recorded {anchor.seq} events, the database holds {last_seq}"
                " (the log was truncated)")
            break
        stored = GENESIS if anchor.seq == 0 else hashes.get(anchor.seq)
        if stored != anchor.head:
            report.problems.append(
                f"event {anchor.seq} does not match anchor {anchor.number}: the log was"
                " rewritten (its hash differs from the anchored one)")
            break
    sig = _signature(store, anchors, report)
    info["signature"] = sig
    good = _last_good(anchors, hashes, sig)
    if good is not None and intact >= good.seq:
        who = ("signature not checked" if sig is None
               else f"signed by key {sig['key']}" if sig.get("ok") and sig.get("key")
               else f"anchor {sig['good_anchor']} signed by key {sig['key']}"
               if sig.get("good_anchor") else "signed")
        report.proven.append(f"events 1..{good.seq} match anchor {good.number} ({who})")
    if last_seq > last.seq:
        report.warnings.append(f"events {last.seq + 1}..{last_seq} are not anchored yet"
                               f" (an unanchored tail of {last_seq - last.seq} events)")
        info["unanchored"] = [last.seq + 1, last_seq]


def _signature(store: AnchorStore, anchors: list[Anchor],
               report: VerifyReport) -> dict[str, Any] | None:
    last = anchors[-1]
    if not store.signer.available():
        report.unproven.append(
            "no signing key is known here (no allowed-signers file): the anchors prove the"
            " log was not rewritten since it was anchored only against someone who cannot"
            f" also write {AUDIT_REF} in this repository")
        return None
    check = store.check_signature(last.commit)
    if check.ok:
        return {"ok": True, "anchor": last.number, "key": check.key}
    report.problems.append(
        f"anchor {last.number} ({last.commit[:12]}) has no good signature"
        f" ({check.detail}): {AUDIT_REF} was forged or edited without the key")
    for anchor in reversed(anchors[-1 - MAX_SIGNATURE_TRIES:-1]):
        older = store.check_signature(anchor.commit)
        if older.ok:
            return {"ok": False, "anchor": last.number, "detail": check.detail,
                    "good_anchor": anchor.number, "key": older.key}
    return {"ok": False, "anchor": last.number, "detail": check.detail, "key": None}


def _last_good(anchors: list[Anchor], hashes: dict[int, str | None],
               sig: dict[str, Any] | None) -> Anchor | None:
    """The newest anchor whose signature (when one is checked) is good and whose event
    matches the database."""
    limit = anchors[-1].number
    if sig is not None and not sig.get("ok"):
        if "good_anchor" not in sig:
            return None
        limit = int(sig["good_anchor"])
    for anchor in reversed(anchors):
        if anchor.number > limit:
            continue
        stored = GENESIS if anchor.seq == 0 else hashes.get(anchor.seq)
        if stored == anchor.head:
            return anchor
    return None
