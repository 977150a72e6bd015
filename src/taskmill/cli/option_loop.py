"""The option loop the two click-free paths share (:mod:`.fast` and :mod:`.lean_write`):
a command's options and arguments as click would read them, or ``None`` when in any doubt.
Imports nothing (the lean path loads it)."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

FLAG = "flag"
"""An option without a value (given once)."""
MULTIPLE = "multiple"
"""An option that may be given again: its values in a list."""
DOUBT: Any = object()
"""What a converter returns for a value it will not guess at."""


def read_options(tokens: list[str], spec: Mapping[str, tuple[str, Any]],
                 convert: Callable[[Any, str], Any]
                 ) -> tuple[dict[str, Any], list[str]] | None:
    """``spec``: option -> (field, kind), a kind being :data:`FLAG`, :data:`MULTIPLE` or
    what ``convert(kind, raw)`` turns into the field's value (:data:`DOUBT`: ``None``).
    A value given twice, an unknown option, ``--flag=x``: ``None``."""
    values: dict[str, Any] = {}
    args: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if not token.startswith("-"):
            args.append(token)
            continue
        name, eq, attached = token.partition("=") if token.startswith("--") else (token, "", "")
        if name not in spec:
            return None
        field, kind = spec[name]
        if kind == FLAG:
            if eq or field in values:
                return None
            values[field] = True
            continue
        if eq:
            raw = attached
        else:
            if i >= len(tokens) or tokens[i].startswith("-"):
                return None
            raw = tokens[i]
            i += 1
        if kind == MULTIPLE:
            values.setdefault(field, []).append(raw)
            continue
        value = convert(kind, raw)
        if value is DOUBT or field in values:
            return None
        values[field] = value
    return values, args
