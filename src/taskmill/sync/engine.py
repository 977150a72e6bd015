"""``taskmill sync``: export the ledger to ``refs/taskmill/ledger``, fetch the remote's,
merge, import, push.

1. The ledger's state is written as a commit (see :mod:`.snapshot`) on top of the last one
   synced here (``refs/taskmill/ledger``), unless nothing changed since. A ledger that does
   not hold all of that commit (a database made new in a clone that had fetched the ref, or
   deleted and made again, or restored from an older backup) is merged with it first, as
   with a remote's (signed ``sync:local``): what it lacks comes back, nothing goes out as
   deleted.
2. The remote's ``refs/taskmill/ledger`` is fetched (to ``refs/taskmill/remotes/NAME/ledger``).
3. When the remote has changes this clone lacks, the two are merged task by task against
   their merge base (see :mod:`.merge`), and what changed is imported into the ledger in one
   transaction, with the other clone's audit events (as ``synced`` events) and any conflicts
   (as ``sync_conflict`` events): all of it or, on any error, none of it.
4. The result is committed (a merge commit of both), ``refs/taskmill/ledger`` moves to it,
   and it is pushed (unless ``push=False``), only if the remote did not move meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

from ..clock import Clock, SystemClock
from ..errors import Conflict, InvalidInput, NotInitialized
from ..ledger import Ledger
from ..paths import LedgerPaths
from .gitstore import LEDGER_REF, Git, has_synced_ledger
from .merge import SyncConflict, field_times, merge_events, merge_task
from .snapshot import (
    LEDGER_EVENTS,
    META,
    SYNC_ACTOR_PREFIX,
    SYNC_CONFLICT,
    SYNC_DONE,
    SYNCED,
    Snapshot,
    Taken,
    event_lines,
    events_path,
    parse_files,
    take,
    task_id_of,
    task_path,
)


@dataclass
class SyncReport:
    remote: str
    commit: str
    """The synced commit: ``refs/taskmill/ledger`` now."""
    pushed: bool
    exported: list[str] = field(default_factory=list)
    """Tasks changed here since the last sync (what the other clones get)."""
    imported: list[str] = field(default_factory=list)
    """Tasks changed here by the merge (what the other clones had)."""
    events_in: int = 0
    """Audit events of other clones recorded here."""
    conflicts: list[SyncConflict] = field(default_factory=list)
    remote_had_ledger: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"remote": self.remote, "commit": self.commit, "pushed": self.pushed,
                "exported": self.exported, "imported": self.imported,
                "events_in": self.events_in,
                "conflicts": [c.to_json() for c in self.conflicts],
                "remote_had_ledger": self.remote_had_ledger}


SYNC_LOCK = "sync.lock"
"""In the run directory: held by a ``taskmill sync`` while it runs."""


@contextmanager
def _sync_lock(run_dir: Path) -> Iterator[None]:
    from ..locks import try_lock

    lock = try_lock(run_dir / SYNC_LOCK)
    if lock is None:
        raise Conflict("another taskmill sync is running in this repository",
                       hint="wait for it to finish, then sync again")
    try:
        yield
    finally:
        lock.release()


def open_ledger(paths: LedgerPaths, env: Mapping[str, str], *, clock: Clock | None = None,
                actor: str | None = None) -> Ledger:
    """The repository's ledger, created empty if this clone has none yet (to load into)."""
    from ..config import load_config
    from ..ledger import database_url
    from ..project import actor_from_env

    config = load_config(paths.config, stamp=paths.run.config_stamp)
    return Ledger.open(paths.db, prefix=config.prefix, clock=clock or SystemClock(),
                       actor=actor or actor_from_env(env),
                       url=database_url(config.ledger_url, env))


def sync(ledger: Ledger, paths: LedgerPaths, env: Mapping[str, str], *,
         remote: str = "origin", push: bool = True) -> SyncReport:
    """Sync ``ledger`` (of the repository at ``paths``) with ``remote``'s synced ledger."""
    git = Git(paths.root, env)
    git.check_remote(remote)
    with _sync_lock(paths.run_dir):
        return _sync(git, ledger, remote=remote, push=push)


LOCAL = "local"
"""How a sync names this clone's own ``refs/taskmill/ledger`` when it merges it into a ledger
that did not come from it (signed ``sync:local``)."""


def _sync(git: Git, ledger: Ledger, *, remote: str, push: bool) -> SyncReport:
    local = git.ref(LEDGER_REF)
    local_shas = git.read_tree(local) if local else {}
    ours = _take(git, ledger, set(local_shas.values()))
    when = int(ledger.clock.now().timestamp())
    report = SyncReport(remote=remote, commit=local or "", pushed=False)
    base = local
    if local and not _descends(git, ours, local_shas):
        # this database did not come from the synced ref (a new one, one restored from a
        # backup, one deleted and made again): the ref is not a base to diff against, or
        # every task it lacks would go out as deleted. Merge the two instead, losing nothing.
        root = git.write_commit(ours.shas, ours.new, parents=[], when=when,
                                author=ledger.actor,
                                message=f"taskmill: the ledger as {ledger.actor} had it")
        base = _merge_in(git, ledger, ours, root, local, LOCAL, report, when)
        ours = _take(git, ledger, {*local_shas.values(), *ours.shas.values(),
                                   *git.read_tree(base).values()})
    base_shas = git.read_tree(base) if base and base != local else local_shas
    report.exported = sorted({tid for path in _changed(local_shas, ours.shas)
                              if (tid := task_id_of(path)) is not None
                              and path.startswith("tasks/")})
    if base and base_shas == ours.shas:
        exported_commit = base
    else:
        exported_commit = git.write_commit(
            ours.shas, ours.new, parents=[base] if base else [], when=when,
            author=ledger.actor, message=f"taskmill: the ledger as {ledger.actor} left it"
                                         f" ({len(report.exported)} tasks changed)")
    theirs = git.fetch_ledger(remote)
    report.commit = exported_commit
    report.remote_had_ledger = theirs is not None
    final = exported_commit
    if theirs is not None and theirs != exported_commit and not git.is_ancestor(
            theirs, exported_commit):
        final = _merge_in(git, ledger, ours, exported_commit, theirs, remote, report, when)
    git.set_ref(LEDGER_REF, final, local)
    report.commit = final
    if push and final != theirs:
        git.push_ledger(remote, final, theirs)
        report.pushed = True
    return report


def _take(git: Git, ledger: Ledger, existing: set[str]) -> Taken:
    """:func:`~.snapshot.take`, each file git lacks written into it as it is made (a first
    sync of 1M tasks held every file's bytes, ~700 MB, until its commit was written)."""
    with git.blob_sink() as sink:
        return take(ledger, existing, sink=sink.write)


def _changed(a: Mapping[str, str], b: Mapping[str, str]) -> set[str]:
    return {p for p in (*a, *b) if a.get(p) != b.get(p)}


def _descends(git: Git, ours: Taken, local_shas: Mapping[str, str]) -> bool:
    """Whether the ledger holds everything of the synced commit ``local_shas`` (it was
    loaded from it or wrote it, and changed since): no task of it missing (a ledger keeps
    its tasks, tombstones too), no audit event of it unknown. Only the files that differ
    are read."""
    differ = [p for p, sha in local_shas.items() if ours.shas.get(p) != sha]
    if any(p not in ours.shas and p != META for p in differ):
        return False
    trails = [local_shas[p] for p in differ if p.startswith("events/") or p == LEDGER_EVENTS]
    try:
        return all(e["hash"] in ours.event_hashes
                   for raw in git.read_blobs(trails).values() for e in event_lines(raw))
    except (ValueError, UnicodeDecodeError):
        return False  # damaged: not this ledger's own


def _files(git: Git, taken: Taken, paths: Iterable[str]) -> dict[str, bytes]:
    """The content of ``paths`` of ``taken``: kept, or read from git."""
    wanted = {p: taken.shas[p] for p in paths if p in taken.shas}
    stored = git.read_blobs({sha for sha in wanted.values() if sha not in taken.new})
    return {p: taken.new[sha] if sha in taken.new else stored[sha] for p, sha in wanted.items()}


MERGE_CHUNK = 2000
"""Tasks read, parsed and merged at a time: a fresh clone's load of a large ledger holds a
chunk of parsed records, not all of them."""


@dataclass
class _Merge:
    """What one merge found, as its tasks stream into the import."""

    imported: list[str] = field(default_factory=list)
    foreign: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[SyncConflict] = field(default_factory=list)


def _merge_in(git: Git, ledger: Ledger, ours: Taken, exported_commit: str, theirs: str,
              remote: str, report: SyncReport, when: int) -> str:
    """Merge the remote's commit into the ledger; the merged commit."""
    base = git.merge_base(exported_commit, theirs)
    theirs_shas = git.read_tree(theirs)
    base_shas = git.read_tree(base) if base else {}
    changed = _changed(ours.shas, theirs_shas)
    tids = sorted({task_id_of(p) for p in changed if task_id_of(p) is not None}
                  | ({None} if LEDGER_EVENTS in changed else set()),
                  key=lambda t: (t is not None, t or ""))
    found = _Merge()
    meta = git.read_blobs([theirs_shas[META]] if META in theirs_shas else [])
    parse_files({META: meta[theirs_shas[META]]} if meta else {},  # its format, checked first
                where=f"{remote}'s {LEDGER_REF}")

    def merged() -> Iterator[dict[str, Any]]:
        """The merged record of each task that changes here, a chunk of tasks at a time."""
        for at in range(0, len(tids), MERGE_CHUNK):
            chunk = tids[at:at + MERGE_CHUNK]
            paths = {META, *(p for tid in chunk for p in (
                (events_path(tid),) if tid is None else (task_path(tid), events_path(tid))))}
            blobs = git.read_blobs({sha for p in paths for sha in (
                theirs_shas.get(p), base_shas.get(p)) if sha is not None})
            mine = parse_files(_files(git, ours, paths), where="this ledger")
            their = parse_files({p: blobs[theirs_shas[p]] for p in paths if p in theirs_shas},
                                where=f"{remote}'s {LEDGER_REF}")
            was = parse_files({p: blobs[base_shas[p]] for p in paths if p in base_shas},
                              where=f"the synced commit {base}") if base else None
            for tid in chunk:
                record = _merge_task(tid, mine, their, was, ours.event_hashes, found)
                if record is not None:
                    found.imported.append(str(record["id"]))
                    yield record

    _apply(ledger, merged(), found, remote, theirs)
    report.conflicts.extend(found.conflicts)
    report.imported = sorted({*report.imported, *found.imported})
    report.events_in += len(found.foreign)
    after = _take(git, ledger, {*ours.shas.values(), *theirs_shas.values()})
    if after.shas == theirs_shas:
        return theirs
    return git.write_commit(after.shas, after.new, parents=[exported_commit, theirs],
                            when=when, author=ledger.actor,
                            message=f"taskmill: merge {remote}'s ledger"
                                    f" ({len(found.imported)} tasks changed here,"
                                    f" {len(found.conflicts)} conflicts)")


def _merge_task(tid: str | None, mine: Snapshot, their: Snapshot, was: Snapshot | None,
                known: set[str], found: _Merge) -> dict[str, Any] | None:
    """One task's merge (its events, its fields): the record to import, None when the
    ledger has it already. ``tid`` None: the events of no task."""
    our_events = mine.events.get(tid, [])
    their_events = their.events.get(tid, [])
    found.foreign.extend(e for e in merge_events(our_events, their_events)
                         if e["hash"] not in known)
    if tid is None:
        return None
    since = {e["hash"] for e in (was.events.get(tid, []) if was else [])}
    our_record = mine.records.get(tid)
    record, conflicts = merge_task(
        tid, was.records.get(tid) if was else None, our_record, their.records.get(tid),
        field_times(our_events, since), field_times(their_events, since))
    found.conflicts.extend(conflicts)
    if record is None or (our_record is not None
                          and list(record.items()) == list(our_record.items())):
        return None
    return record


def _apply(ledger: Ledger, records: Iterator[dict[str, Any]], found: _Merge, remote: str,
           theirs: str) -> None:
    """Import the merged records (made as the import takes them), then the other clone's
    events and the conflicts, all or nothing."""
    from ..beads import import_beads
    from ..beads.record import encode_record as beads_line

    actor = f"{SYNC_ACTOR_PREFIX}{remote}"
    with ledger.transaction():
        try:
            first = next(records, None)
            if first is not None:
                import_beads(ledger, (beads_line(r) for r in chain([first], records)),
                             actor=actor)
        except InvalidInput as exc:
            raise InvalidInput(f"the merged ledger cannot be imported: {exc.message}",
                               hint="nothing was imported; the synced files of "
                                    f"{remote} may be damaged") from None
        for event in found.foreign:
            ledger.record(SYNCED, _task_or_none(ledger, event.get("task")),
                          {"remote": remote, "commit": theirs, "event": event}, actor=actor)
        for conflict in found.conflicts:
            ledger.record(SYNC_CONFLICT, _task_or_none(ledger, conflict.task),
                          {"remote": remote, "commit": theirs, **conflict.to_json()},
                          actor=actor)
        ledger.record(SYNC_DONE, None, {"remote": remote, "commit": theirs,
                                        "imported": found.imported,
                                        "events": len(found.foreign),
                                        "conflicts": len(found.conflicts)}, actor=actor)


def _task_or_none(ledger: Ledger, tid: Any) -> str | None:
    return tid if isinstance(tid, str) and ledger.exists(tid) else None


# -- a fresh clone ----------------------------------------------------------------------------


def refuse_empty_clone(paths: LedgerPaths, env: Mapping[str, str]) -> None:
    """In a clone without a ledger database: refuse to start an empty one when a synced
    ledger exists here or on ``origin`` (say how to load it instead)."""
    if paths.db.exists():
        return
    where = has_synced_ledger(paths.root, env)
    if where is None:
        return
    place = "in this clone" if where == LEDGER_REF else f"on remote {where!r}"
    raise NotInitialized(
        f"this clone has no ledger yet, but a synced one exists {place} ({LEDGER_REF})",
        hint="load it with `taskmill sync`" + ("" if where in (LEDGER_REF, "origin") else
                                               f" --remote {where}")
             + " (or `taskmill init` to start an empty ledger here instead)")
