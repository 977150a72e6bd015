"""What the ledger accepts: the type, size and characters of every field a user can set.

The ledger's public write methods check their input here, so the CLI, the web API, the MCP
server and the imports all refuse the same bad values with the same message, before anything
is written. The limits:

=============================================  ==============================================
title                                          500 characters, one line
a label                                        100 characters, one line
assignee, agent, issue_type, external_ref,     200 characters, one line
comment author, a task id
description, design, acceptance_criteria,      64 KiB each (UTF-8), any number of lines
notes, close_reason
a comment                                      64 KiB
checks                                         at most 100 commands of 4 KiB each
metadata, hints                                a JSON object of at most 64 KiB, nested at
                                               most 32 levels deep
a ``limit``                                    an integer from 1 to 1,000,000
priority                                       an integer from 0 (highest) to 4
=============================================  ==============================================

One-line fields refuse control characters (NUL, escape sequences, line breaks: anything of
Unicode category ``Cc``, and the line and paragraph separators); multi-line fields refuse
only NUL. Text read back from the ledger may still hold control characters (imported
records, older ledgers): :func:`printable` escapes them for a terminal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from .errors import InvalidInput
from .lean_rules import CONTROL_BUT_LINES_CLASS, CONTROL_CLASS  # (shared with lean writes)
from .lean_rules import LABEL_MAX as LABEL_MAX
from .lean_rules import NAME_MAX as NAME_MAX
from .lean_rules import TEXT_MAX_BYTES as TEXT_MAX_BYTES
from .lean_rules import TITLE_MAX as TITLE_MAX

COMMENT_MAX_BYTES = 64 * 1024
CHECK_MAX_BYTES = 4 * 1024
CHECKS_MAX = 100
JSON_MAX_BYTES = 64 * 1024
JSON_MAX_DEPTH = 32
LIMIT_MAX = 1_000_000
PRIORITY_MIN = 0
"""The highest priority."""
PRIORITY_MAX = 4
"""The lowest priority."""
SQLITE_INT_MAX = 2**63 - 1

# C0, DEL, C1, and the two Unicode line breaks that are not in Cc.
_CONTROL = re.compile(f"[{CONTROL_CLASS}]")
_CONTROL_BUT_LINES = re.compile(f"[{CONTROL_BUT_LINES_CLASS}]")
_SURROGATE = re.compile("[\ud800-\udfff]")
"""Half of a UTF-16 surrogate pair alone: not a character (a JSON ``\\ud800`` escape, or
an argument in another encoding than UTF-8, read with ``surrogateescape``); no text the
ledger can store."""


def _kib(n: int) -> str:
    return f"{n // 1024} KiB"


def _show(ch: str) -> str:
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch, f"\\x{ord(ch):02x}" if ord(ch) < 0x100
                                                         else f"\\u{ord(ch):04x}")


def one_line(name: str, value: Any, *, max_chars: int = NAME_MAX, allow_breaks: bool = False
             ) -> str:
    """A non-empty one-line string of at most ``max_chars`` characters.

    ``allow_breaks``: line breaks and tabs are let through (imported records that carry them);
    other control characters are still refused.
    """
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string, not {_type(value)}")
    if not value.strip():
        raise InvalidInput(f"{name} must not be empty")
    if len(value) > max_chars:
        raise InvalidInput(f"{name} is {len(value)} characters long; at most {max_chars} are "
                           "allowed", hint="put the details in the description")
    unicode(name, value)
    bad = (_CONTROL_BUT_LINES if allow_breaks else _CONTROL).search(value)
    if bad:
        raise InvalidInput(f"{name} must be one line of text without control characters; it "
                           f"holds {_show(bad.group())} at position {bad.start() + 1}",
                           hint="remove the control character (escape sequences, NUL and line "
                                "breaks are refused in one-line fields)")
    return value


def optional_one_line(name: str, value: Any, *, max_chars: int = NAME_MAX) -> str | None:
    """:func:`one_line`, or None for None (and for an empty string)."""
    if value is None or value == "":
        return None
    return one_line(name, value, max_chars=max_chars)


ROLE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
"""A role's name: the stem of its file, ``.taskmill/roles/NAME.toml``."""


def role_name(value: Any) -> str | None:
    """A task's role: None (or empty: no role), or a name a role file may have."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not ROLE_NAME_RE.fullmatch(value):
        raise InvalidInput(f"role {value!r} is not a role name: letters, digits, '_' and '-',"
                           " starting with a letter or digit (the file .taskmill/roles/NAME.toml)")
    return value


def text(name: str, value: Any, *, max_bytes: int = TEXT_MAX_BYTES) -> str:
    """A (possibly empty) multi-line string of at most ``max_bytes`` bytes of UTF-8, no NUL."""
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string, not {_type(value)}")
    # a character is at most 4 bytes of UTF-8: a short text needs no counting
    size = len(value.encode("utf-8", errors="surrogatepass")) if len(value) * 4 > max_bytes else 0
    if size > max_bytes:
        raise InvalidInput(f"{name} is {_size(size)}; at most {_kib(max_bytes)} are allowed",
                           hint="attach large text as a file in the repository and refer to it")
    if "\x00" in value:
        raise InvalidInput(f"{name} must not contain NUL characters (at position "
                           f"{value.index(chr(0)) + 1})")
    unicode(name, value)
    return value


def unicode(name: str, value: str) -> str:
    """``value`` when it is Unicode text: refused when it holds half of a surrogate pair."""
    bad = None if value.isascii() else _SURROGATE.search(value)
    if bad:
        raise InvalidInput(f"{name} is not valid text: it holds {_show(bad.group())} at"
                           f" position {bad.start() + 1}, half of a UTF-16 surrogate pair",
                           hint="write it as UTF-8 (a JSON escape like \\ud83d must be"
                                " followed by its other half; an argument in another"
                                " encoding reads this way)")
    return value


def optional_text(name: str, value: Any, *, max_bytes: int = TEXT_MAX_BYTES) -> str | None:
    return None if value is None else text(name, value, max_bytes=max_bytes)


def strings(name: str, values: Any) -> list[str]:
    """A list of strings (from any iterable of them, but not from one string)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise InvalidInput(f"{name} must be a list of strings, not {_type(values)}")
    out = list(values)
    for value in out:
        if not isinstance(value, str):
            raise InvalidInput(f"{name} must be a list of strings; it holds {_type(value)}")
    return out


def labels(values: Any, *, allow_breaks: bool = False) -> list[str]:
    """A list of labels (each :func:`one_line`, at most :data:`LABEL_MAX` characters)."""
    out = strings("labels", values)
    for value in out:
        one_line("a label", value, max_chars=LABEL_MAX, allow_breaks=allow_breaks)
    return out


def checks(value: Any) -> list[str] | None:
    """None, or a list of non-empty shell commands (see the module's limits)."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(c, str) and c.strip() for c in value):
        raise InvalidInput("checks must be a list of non-empty shell commands")
    if len(value) > CHECKS_MAX:
        raise InvalidInput(f"a task has at most {CHECKS_MAX} checks, not {len(value)}")
    for command in value:
        text("a check command", command, max_bytes=CHECK_MAX_BYTES)
    return list(value)


def json_depth_exceeds(value: Any, max_depth: int) -> bool:
    """Whether ``value`` nests lists and objects more than ``max_depth`` levels (iteratively:
    any depth is measured without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def table(name: str, value: Any) -> dict[str, Any] | None:
    """None, or a JSON object of at most :data:`JSON_MAX_BYTES`, :data:`JSON_MAX_DEPTH` deep."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInput(f"{name} must be a JSON object, not {_type(value)}")
    if json_depth_exceeds(value, JSON_MAX_DEPTH):
        raise InvalidInput(f"{name} nests more than {JSON_MAX_DEPTH} levels deep")
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{name} must hold only JSON values: {exc}") from None
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > JSON_MAX_BYTES:
        raise InvalidInput(f"{name} is {_size(size)} as JSON; at most {_kib(JSON_MAX_BYTES)} "
                           "are allowed")
    unicode(name, text)
    return dict(value)


def limit(value: Any, name: str = "limit") -> int | None:
    """None (no limit), or an integer from 1 to :data:`LIMIT_MAX`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= LIMIT_MAX:
        raise InvalidInput(f"{name} must be an integer from 1 to {LIMIT_MAX:,}, not {value!r}")
    return value


def filter_text(name: str, value: Any) -> str | None:
    """A filter value (``label``, ``assignee``...): None or a string."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string, not {_type(value)}")
    return value


def task_ref(value: Any, name: str = "a task id") -> str:
    """A task id as given by a user (resolved afterwards): a non-empty one-line string."""
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string, not {_type(value)}")
    if not value.strip():
        raise InvalidInput(f"{name} must not be empty", hint="`taskmill list` shows the task ids")
    if len(value) > NAME_MAX or _CONTROL.search(value) or (
            not value.isascii() and _SURROGATE.search(value)):
        raise InvalidInput(f"{value[:60]!r} is not a task id",
                           hint="`taskmill list` shows the task ids")
    return value


def task_refs(name: str, values: Any) -> list[str]:
    """A list of task ids as given by a user (each :func:`task_ref`)."""
    return [task_ref(v) for v in strings(name, values)]


def printable(value: str, *, multiline: bool = False) -> str:
    """``value`` with its control characters escaped (``\\x1b``, ``\\u2028``; ``\\n`` and
    ``\\t`` too unless ``multiline``), safe to print to a terminal."""
    if multiline:
        value = value.replace("\r\n", "\n")
        return _CONTROL_BUT_LINES.sub(lambda m: _show(m.group()), value)
    return _CONTROL.sub(lambda m: _show(m.group()), value)


def _type(value: Any) -> str:
    return {dict: "an object", list: "a list", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _size(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB" if n >= 1024 * 1024 else f"{n / 1024:.1f} KiB"
