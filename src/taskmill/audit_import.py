"""What a bulk import puts in the audit trail, and how ``taskmill verify`` checks it.

An import does not copy every record into the log. The tasks it creates get one
``imported`` event (``task_id`` null) for the whole import::

    {"action": "created", "source": "issues.jsonl", "sha256": <the file's SHA-256>,
     "records": <records in the file>, "created": <tasks created>,
     "first_seq": a, "last_seq": b, "digest": <hex>}

The new tasks are exactly those with a creation number (``tasks.seq``) in ``[a, b]`` (an
import runs in one transaction, so they are consecutive). Each one's *state digest* is the
SHA-256 of what the replay checks of a task as the import wrote it (:func:`state_digest`:
its fields, labels, dependencies and comments, in a canonical JSON form); ``digest`` is the
SHA-256 of those digests sorted and concatenated.

``taskmill verify`` recomputes it from the tables: for each task in ``[a, b]`` it takes the
row as it is, undoes what later events say changed (an ``updated`` event carries each
field's old value; labels and dependencies added or removed since are put back), hashes
the result, and compares the combined digest with the event. An edit of an imported row
behind taskmill's back changes that task's digest, so the import no longer verifies; a
change made through taskmill is checked against its own event as usual.

Not covered by the digest: ``updated_at`` (not replayed at all), and ``closed_at`` and
``close_reason``, which a close or reopen sets or clears without recording the old value;
after an import they are checked only where later events set them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .model import CLOSED

if TYPE_CHECKING:
    from .ledger.store import LedgerStore

# the task fields the replay checks (taskmill.audit_replay.FIELDS) but closed_at and
# close_reason (see the module's docstring)
DIGEST_FIELDS = ("title", "description", "design", "acceptance_criteria", "notes", "status",
                 "priority", "issue_type", "assignee", "created_at", "external_ref",
                 "metadata", "checks", "agent", "hints")
JSON_FIELDS = frozenset({"metadata", "checks", "hints"})
_ROW_COLUMNS = (
    "id", "title", "description", "design", "acceptance_criteria", "notes", "status", "priority",
    "issue_type", "assignee", "created_at", "updated_at", "closed_at", "close_reason",
    "external_ref", "metadata", "checks", "agent", "hints", "extra",
)  # taskmill.ledger.store.IMPORT_ROW_COLUMNS (not imported: verify loads this module early)
_AT = {k: _ROW_COLUMNS.index(k) for k in _ROW_COLUMNS}
CHUNK = 2000


def norm(value: Any) -> Any:
    """Empty values (None, "", [], {}) are one value: an empty field is stored either way."""
    return None if value is None or value == "" or value == [] or value == {} else value


def row_fields(row: Sequence[Any]) -> dict[str, Any]:
    """A stored row's replayed fields (JSON columns parsed)."""
    out: dict[str, Any] = {}
    for key in (*DIGEST_FIELDS, "closed_at", "close_reason"):
        value = row[_AT[key]]
        if key in JSON_FIELDS and isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        out[key] = value
    return out


def state_digest(fields: Mapping[str, Any], labels: Iterable[str],
                 deps: Iterable[Sequence[str]], comments: Iterable[Sequence[str]]) -> bytes:
    """The SHA-256 of a task's checked state: fields (:data:`DIGEST_FIELDS`), labels,
    dependencies ((depends on, type)) and comments ((author, text)), order left out."""
    values = [norm(fields.get(k)) for k in DIGEST_FIELDS]
    return _digest(values, all(v is None or v.__class__ in _PLAIN for v in values),
                   labels, deps, comments)


def _digest(values: list[Any], plain: bool, labels: Iterable[str],
            deps: Iterable[Sequence[str]], comments: Iterable[Sequence[str]]) -> bytes:
    payload = [values, sorted(labels), sorted([str(d[0]), str(d[1])] for d in deps),
               sorted([str(c[0] or ""), str(c[1] or "")] for c in comments)]
    if plain:
        # strings and small integers only: orjson writes the same bytes, faster
        try:
            return hashlib.sha256(_orjson().dumps(payload)).digest()
        except TypeError:  # e.g. a lone surrogate, which orjson refuses
            pass
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).digest()


_PLAIN = (str, int)


def _orjson() -> Any:
    import orjson

    return orjson


def import_digest(row: Sequence[Any], labels: Iterable[str], deps: Iterable[Sequence[str]],
                  comments: Iterable[Sequence[str]]) -> bytes:
    """:func:`state_digest` of a row as an import writes it (its fields taken from the row
    as :func:`row_fields` takes them, with no mapping made: a big import makes one a task)."""
    values: list[Any] = []
    plain = True
    for at, parse in _DIGEST_AT:
        value = row[at]
        if value is None or value == "":
            values.append(None)
        elif parse:
            if value.__class__ is str:
                with contextlib.suppress(ValueError):
                    value = json.loads(value)
            value = norm(value)
            values.append(value)
            plain = plain and (value is None or value.__class__ in _PLAIN)
        elif value.__class__ in _PLAIN:
            values.append(value)
        else:  # (not what an import writes; hashed as state_digest hashes it)
            values.append(norm(value))
            plain = False
    return _digest(values, plain, labels, deps, comments)


_DIGEST_AT = tuple((_AT[k], k in JSON_FIELDS) for k in DIGEST_FIELDS)


def combined(digests: list[bytes]) -> str:
    """The SHA-256 of the digests, sorted and concatenated (sorts ``digests`` in place)."""
    digests.sort()
    h = hashlib.sha256()  # (one at a time: not 32 MiB more at a 1M import's peak)
    for d in digests:
        h.update(d)
    return h.hexdigest()


def batch_event(*, source: str, sha256: str, records: int, first_seq: int, last_seq: int,
                digest: str) -> dict[str, Any]:
    """The data of the one ``imported`` event for the tasks an import created (``digest``:
    :func:`combined` of their digests)."""
    return {"action": "created", "source": source, "sha256": sha256, "records": records,
            "created": last_seq - first_seq + 1, "first_seq": first_seq, "last_seq": last_seq,
            "digest": digest}


# -- verifying -------------------------------------------------------------------------------


@dataclass
class Batch:
    ts: str
    source: str
    first_seq: int
    last_seq: int
    created: int
    digest: str


@dataclass
class Delta:
    """What events did to a task created by a batch import after the import."""

    first_old: dict[str, Any] = field(default_factory=dict)
    """Each field's value before the first event that changed it: the imported value."""
    now: dict[str, Any] = field(default_factory=dict)
    """Each changed field's value after the last event that changed it."""
    labels_now: list[str] | None = None
    labels_added: set[str] = field(default_factory=set)
    labels_removed: set[str] = field(default_factory=set)
    deps_now: set[tuple[str, str]] | None = None
    deps_added: set[tuple[str, str]] = field(default_factory=set)
    deps_removed: set[tuple[str, str]] = field(default_factory=set)
    comments_old: Counter[tuple[str, str]] | None = None


def _add(now: list[str] | set[Any] | None, added: set[Any], removed: set[Any],
         items: Iterable[Any]) -> None:
    for item in items:
        if isinstance(now, list):
            if item not in now:
                now.append(item)
        elif isinstance(now, set):
            now.add(item)
        elif item in removed:
            removed.discard(item)
        else:
            added.add(item)


def _remove(now: list[str] | set[Any] | None, added: set[Any], removed: set[Any],
            items: Iterable[Any]) -> None:
    gone = set(items)
    if isinstance(now, list):
        now[:] = [x for x in now if x not in gone]
    elif isinstance(now, set):
        now -= gone
    else:
        for item in gone:
            if item in added:
                added.discard(item)
            else:
                removed.add(item)


class Vouching:
    """The batch imports seen by a replay and what later events did to their tasks."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.deltas: dict[str, Delta] = {}

    def batch(self, ts: str, data: dict[str, Any]) -> None:
        try:
            self.batches.append(Batch(ts, str(data.get("source", "")), int(data["first_seq"]),
                                      int(data["last_seq"]), int(data["created"]),
                                      str(data["digest"])))
        except (KeyError, TypeError, ValueError):
            return

    def feed(self, ts: str, actor: str, tid: str, kind: str, data: dict[str, Any],
             event_comments: set[int] | None = None) -> None:
        """An event about a task no event created (one of a batch, if it is in one);
        ``event_comments``: the ids of the task's comments that events made."""
        d = self.deltas.setdefault(tid, Delta())
        if kind in ("updated", "claimed"):
            changes = data.get("changes")
            if isinstance(changes, dict):
                self._changes(d, ts, changes)
        elif kind == "recovered":
            d.now["assignee"] = actor
        elif kind == "labels_added":
            _add(d.labels_now, d.labels_added, d.labels_removed, data.get("labels") or [])
        elif kind == "labels_removed":
            _remove(d.labels_now, d.labels_added, d.labels_removed, data.get("labels") or [])
        elif kind == "dep_added":
            _add(d.deps_now, d.deps_added, d.deps_removed,
                 [(str(data.get("depends_on")), str(data.get("type")))])
        elif kind == "dep_removed":
            _remove(d.deps_now, d.deps_added, d.deps_removed,
                    [(str(data.get("depends_on")), str(data.get("type")))])
        elif kind == "imported" and data.get("action") == "updated":
            self._reimported(d, ts, data.get("changes"), event_comments or set())

    @staticmethod
    def _changes(d: Delta, ts: str, changes: dict[str, Any]) -> None:
        for key, pair in changes.items():
            if not (isinstance(pair, list) and len(pair) == 2):
                continue
            if key == "labels":
                _replace_labels(d, pair[0], pair[1])
            elif key in DIGEST_FIELDS or key == "close_reason":
                d.first_old.setdefault(key, pair[0])
                d.now[key] = pair[1]
        status = changes.get("status")
        if isinstance(status, list) and len(status) == 2:
            if status[1] == CLOSED:
                d.now["closed_at"] = ts
            elif status[0] == CLOSED:
                d.now["closed_at"] = None
                if "close_reason" not in changes:
                    d.now["close_reason"] = None

    @staticmethod
    def _reimported(d: Delta, ts: str, changes: Any, event_comments: set[int]) -> None:
        from .audit_replay import row_from_record

        if not isinstance(changes, dict):
            return
        pairs = {k: v for k, v in changes.items() if isinstance(v, list) and len(v) == 2}
        old = row_from_record({k: v[0] for k, v in pairs.items()}, ts, partial=True)
        new = row_from_record({k: v[1] for k, v in pairs.items()}, ts, partial=True)
        for key, value in old.items():
            d.first_old.setdefault(key, value)
        d.now.update(new)
        if "labels" in pairs:
            _replace_labels(d, _strs(pairs["labels"][0]), _strs(pairs["labels"][1]))
        if "dependencies" in pairs:
            if d.deps_now is None:  # what the import wrote: before what events changed
                old_deps = _deps(pairs["dependencies"][0])
                d.first_old["deps"] = (old_deps - d.deps_added) | d.deps_removed
            d.deps_now = _deps(pairs["dependencies"][1])
        if "comments" in pairs and d.comments_old is None:
            d.comments_old = _comments([
                c for c in pairs["comments"][0] or []
                if not (isinstance(c, dict) and c.get("id") in event_comments)])

    def check(self, store: LedgerStore, event_comments: set[int]
              ) -> tuple[set[str], list[tuple[str, str, Any, Any]]]:
        """The tasks the batches vouch for, and what does not match: (task or batch, what,
        in the tables, from the events). ``event_comments``: ids of comments events made."""
        vouched: set[str] = set()
        out: list[tuple[str, str, Any, Any]] = []
        for batch in self.batches:
            ids = store.ids_by_seq(batch.first_seq, batch.last_seq)
            name = f"import of {batch.source} at {batch.ts}"
            if len(ids) != batch.created:
                out.append((name, "tasks created", len(ids), batch.created))
            digests: list[bytes] = []
            for start in range(0, len(ids), CHUNK):
                chunk = ids[start:start + CHUNK]
                items = store.stored_items(chunk)
                for tid in chunk:
                    item = items.get(tid)
                    if item is None:
                        continue
                    vouched.add(tid)
                    digests.append(self._task(tid, item, event_comments, out))
            if combined(digests) != batch.digest:
                out.append((name, "imported rows", "changed",
                            "the rows as the import wrote them (their hash differs)"))
        return vouched, out

    def _task(self, tid: str, item: Any, event_comments: set[int],
              out: list[tuple[str, str, Any, Any]]) -> bytes:
        fields = row_fields(item.row)
        labels = list(item.labels)
        deps = {(str(dep[0]), str(dep[1])) for dep in item.deps}
        comments = Counter((str(c[1] or ""), str(c[2] or "")) for c in item.comments
                           if c[0] not in event_comments)
        d = self.deltas.get(tid)
        if d is None:
            return state_digest(fields, labels, deps, comments.elements())
        for key, want in d.now.items():
            if norm(fields.get(key)) != norm(want):
                out.append((tid, key, fields.get(key), want))
        imported = {**fields, **{k: v for k, v in d.first_old.items() if k in fields}}
        if d.labels_now is not None:
            if sorted(labels) != sorted(d.labels_now):
                out.append((tid, "labels", labels, d.labels_now))
            old_labels = list(d.first_old.get("labels") or [])
        else:
            have = set(labels)
            if not d.labels_added <= have or d.labels_removed & have:
                out.append((tid, "labels", labels, "the labels events added and removed"))
            old_labels = sorted((have - d.labels_added) | d.labels_removed)
        if d.deps_now is not None:
            if deps != d.deps_now:
                out.append((tid, "dependencies", sorted(deps), sorted(d.deps_now)))
            old_deps = d.first_old.get("deps") or set()
        else:
            if not d.deps_added <= deps or d.deps_removed & deps:
                out.append((tid, "dependencies", sorted(deps),
                            "the dependencies events added and removed"))
            old_deps = (deps - d.deps_added) | d.deps_removed
        old_comments = d.comments_old if d.comments_old is not None else comments
        return state_digest(imported, old_labels, old_deps, old_comments.elements())


def _replace_labels(d: Delta, old: Any, new: Any) -> None:
    """Labels replaced whole by an event (``old`` -> ``new``)."""
    if d.labels_now is None:  # what the import wrote: before what events changed
        before = {x for x in old or [] if isinstance(x, str)}
        d.first_old["labels"] = sorted((before - d.labels_added) | d.labels_removed)
    d.labels_now = [x for x in new or [] if isinstance(x, str)]


def _strs(value: Any) -> list[str]:
    return [x for x in value or [] if isinstance(x, str)]


def _deps(value: Any) -> set[tuple[str, str]]:
    return {(str(x.get("depends_on_id")), str(x.get("type"))) for x in value or []
            if isinstance(x, dict)}


def _comments(value: Any) -> Counter[tuple[str, str]]:
    return Counter((_text(c.get("author")), _text(c.get("text"))) for c in value or []
                   if isinstance(c, dict))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
