"""The rules a write follows that both write paths share, importing only C modules and
:mod:`os`: the audit event's JSON, canonical form and chain hash, task ids, timestamps, the
actor, and the field limits.

The full path (:mod:`taskmill.audit`, :mod:`taskmill.ids`, :mod:`taskmill.validation`,
:mod:`taskmill.ledger.sqlite.events`, :mod:`taskmill.ledger.facade`) and the CLI's lean
write path (:mod:`taskmill.cli.lean_write`) both call these, so the two cannot drift.
Importing :mod:`json` or :mod:`hashlib` costs more than a whole lean write (``hashlib`` loads
OpenSSL; ``json`` imports ``re``): the JSON here is written by :mod:`json`'s own C encoder
with the options ``json.dumps`` would pass it, the hash by the C ``_sha256``.

Nothing here may import anything but C modules and :mod:`os` (a test holds it so).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

GENESIS = "0" * 64
"""The ``prev_hash`` of the first event."""

# -- the limits of :mod:`taskmill.validation` --------------------------------------------

TITLE_MAX = 500
LABEL_MAX = 100
NAME_MAX = 200
TEXT_MAX_BYTES = 64 * 1024
CONTROL_CLASS = "\x00-\x1f\x7f-\x9f\u2028\u2029"
"""What a one-line field refuses (C0, DEL, C1 and the two Unicode line breaks not in Cc),
as the body of a regular expression's character class."""
CONTROL_BUT_LINES_CLASS = "\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029"
_CONTROL_CHARS = frozenset([*map(chr, range(0x00, 0x20)), *map(chr, range(0x7F, 0xA0)),
                            "\u2028", "\u2029"])
""":data:`CONTROL_CLASS` as a set (a test holds them equal)."""
_CONTROL_BUT_LINES_CHARS = _CONTROL_CHARS - {"\t", "\n"}
""":data:`CONTROL_BUT_LINES_CLASS` as a set."""


def is_line(value: object, max_chars: int = NAME_MAX, *, breaks: bool = False) -> bool:
    """Whether :func:`taskmill.validation.one_line` accepts ``value`` as it is (``breaks``:
    with ``allow_breaks``)."""
    return (isinstance(value, str) and bool(value.strip()) and len(value) <= max_chars
            and not (_CONTROL_BUT_LINES_CHARS if breaks else _CONTROL_CHARS).intersection(value)
            and is_unicode(value))


def is_unicode(value: str) -> bool:
    """Whether ``value`` holds no half of a surrogate pair (:func:`taskmill.validation.unicode`)."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_plain(value: object) -> bool:
    """Whether ``value`` is a string without the characters of :data:`CONTROL_CLASS` (what
    :func:`taskmill.validation.printable` leaves as it is)."""
    return isinstance(value, str) and not _CONTROL_CHARS.intersection(value)


def is_text(value: object, max_bytes: int = TEXT_MAX_BYTES) -> bool:
    """Whether :func:`taskmill.validation.text` accepts ``value`` as it is."""
    if not isinstance(value, str) or "\x00" in value:
        return False
    if value.isascii():
        return len(value) <= max_bytes
    try:  # (one encoding: no half of a surrogate pair, and the size)
        return len(value.encode("utf-8")) <= max_bytes
    except UnicodeEncodeError:
        return False


MILL_CLOSE_REASONS = ("landed", "already satisfied")
"""How the mill's close reasons begin (``landed <sha>``, ``already satisfied at <sha>``)."""


def mill_close_form(reason: object) -> str | None:
    """Which of :data:`MILL_CLOSE_REASONS` ``reason`` is in (only the mill writes those)."""
    if not isinstance(reason, str):
        return None
    words = " ".join(reason.lower().split())
    for form in MILL_CLOSE_REASONS:
        if words == form or words.startswith(form + " ") or words.startswith(form + ":"):
            return form
    return None


# -- the audit event ----------------------------------------------------------------------

_make_encoder: Any = None
_quote: Any = None
try:
    import _json

    _make_encoder, _quote = _json.make_encoder, _json.encode_basestring
except ImportError:  # pragma: no cover - another Python: json's own Python encoder
    pass


def compact_json(value: Any, default: Callable[[Any], Any] | None = None) -> str:
    """``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    default=default)``: what ``json.dumps`` runs for it (its C encoder), without importing
    :mod:`json` (a test compares the two)."""
    if _make_encoder is None:  # pragma: no cover
        import json

        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          default=default)
    if isinstance(value, str):
        return str(_quote(value))
    encode = _make_encoder({}, default, _quote, None, ":", ",", True, False, True)
    return "".join(encode(value, 0))


def event_text(data: Mapping[str, Any]) -> str:
    """An event's ``data`` as stored (and hashed)."""
    return compact_json(data, str)


def canonical(seq: int, ts: str, actor: str, task_id: str | None, kind: str, data: str
              ) -> bytes:
    """The bytes an event's hash covers."""
    body = {"seq": seq, "ts": ts, "actor": actor, "task": task_id, "kind": kind, "data": data}
    return compact_json(body).encode()


def _find_sha256() -> Any:
    """The C module's ``sha256`` (``_sha256``; ``_sha2`` from Python 3.12)."""
    for name in ("_sha256", "_sha2"):
        try:
            return __import__(name).sha256
        except ImportError:
            continue
    from hashlib import sha256  # pragma: no cover

    return sha256  # pragma: no cover


_sha256 = _find_sha256()


def sha256(data: bytes) -> Any:
    """A SHA-256 of ``data`` (``hashlib.sha256``'s, by the C module under it)."""
    return _sha256(data)


def chain_hash(prev_hash: str, payload: bytes) -> str:
    return str(_sha256(prev_hash.encode() + payload).hexdigest())


# -- ids, time, actor -------------------------------------------------------------------------

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
ID_ATTEMPTS = 12
"""How many ids :func:`pick_id` tries (one character longer every third)."""


def base36(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 36)
        out.append(_ALPHABET[r])
    return "".join(reversed(out)) or "0"


def hash_length(task_count: int) -> int:
    """A length that keeps the chance of a collision in one ledger small."""
    if task_count < 1_000:
        return 4
    if task_count < 30_000:
        return 5
    if task_count < 1_000_000:
        return 6
    return 7


def random_nonce() -> str:
    """16 random hex digits (``secrets.token_hex(8)``: :mod:`secrets` imports more)."""
    return os.urandom(8).hex()


def new_id(prefix: str, title: str, created_at: str, *, length: int,
           nonce: str | None = None) -> str:
    """``<prefix>-<hash>``: the hash covers the title, the time and a random nonce."""
    seed = f"{title}\x00{created_at}\x00{nonce or random_nonce()}".encode()
    return f"{prefix}-{base36(_sha256(seed).digest())[:length]}"


def pick_id(prefix: str, title: str, created_at: str, max_seq: int,
            exists: Callable[[str], bool]) -> str | None:
    """A free id for a new task (``max_seq``: the ledger's highest task sequence), or
    ``None`` when :data:`ID_ATTEMPTS` tries all collided."""
    length = hash_length(max_seq)
    for attempt in range(ID_ATTEMPTS):
        candidate = new_id(prefix, title, created_at, length=length + attempt // 3)
        if not exists(candidate):
            return candidate
    return None


def iso_from_ns(ns: int) -> str:
    """A time in nanoseconds since the epoch as :func:`taskmill.clock.iso` writes it
    (``2026-01-01T00:00:00.000000Z``)."""
    import time

    seconds, rest = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + \
        f".{rest // 1000:06d}Z"


def actor_from_env(env: Mapping[str, str]) -> str:
    """Who the changes are by: ``$TASKMILL_ACTOR``, else the user's name."""
    return env.get("TASKMILL_ACTOR") or env.get("USER") or env.get("USERNAME") or "taskmill"


# -- the row and the event of a change --------------------------------------------------

CREATED_OPTIONAL = ("description", "design", "acceptance_criteria", "notes", "assignee",
                    "external_ref", "metadata", "checks", "agent", "hints", "role")
"""The fields a ``created`` event names when they are set, in this order."""


def created_fields(values: Mapping[str, Any], labels: list[str]) -> dict[str, Any]:
    """The ``new`` fields of a ``created`` event for a task row's ``values``."""
    fields: dict[str, Any] = {"title": values["title"], "status": values["status"],
                              "priority": values["priority"],
                              "issue_type": values["issue_type"]}
    for key in CREATED_OPTIONAL:
        value = values.get(key)
        if value:
            fields[key] = value
    if labels:
        fields["labels"] = labels
    return fields


def parent_closes(parent_status: str | None, children: int, not_done: int) -> bool:
    """Whether a parent closes as its child closes (:mod:`taskmill.ledger.containers`): it
    is not done, and it has children, all done now."""
    return parent_status not in (None, "closed", "tombstone") and children > 0 and not_done == 0


def changed_values(old: Callable[[str], Any], changes: Mapping[str, Any],
                   clock: Callable[[], str]) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """What ``changes`` (validated) change of a task whose fields ``old`` reads: the
    event's diff (field: [old, new]) and the values to write (empty when nothing changes;
    ``clock``, the time now, is read only when something does)."""
    diff: dict[str, list[Any]] = {}
    values: dict[str, Any] = {}
    for key, value in changes.items():
        before = old(key)
        if before != value:
            diff[key] = [before, value]
            values[key] = value
    if not diff:
        return diff, values
    now = clock()
    if "status" in diff:
        old_status, new_status = diff["status"]
        if new_status == "closed":
            values["closed_at"] = now
        elif old_status == "closed":
            values["closed_at"] = None
            if "close_reason" not in values:
                values["close_reason"] = None
    values["updated_at"] = now
    return diff, values
