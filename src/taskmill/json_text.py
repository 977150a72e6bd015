"""JSON text as ``json.dumps`` writes it, made faster where orjson writes the same bytes.

``json.dumps(..., indent=2)`` runs the pure-Python encoder (``indent`` turns the C one off):
for many records (a ledger's tasks as files, a listing's rows) orjson writes the same text
many times faster, for the values it writes byte for byte alike (:func:`orjson_safe`).
"""

from __future__ import annotations

import json
from typing import Any

_INT64 = 1 << 63


def orjson_safe(value: Any) -> bool:
    """Whether orjson writes ``value`` as ``json.dumps(value, ensure_ascii=False, indent=2)``
    does: strings, 64-bit integers, booleans, null, and lists and objects of those with
    string keys. (A float is written differently, e.g. ``1e-7`` for ``1e-07``; anything
    else goes through ``default=str``.)"""
    cls = value.__class__
    if cls is dict:
        for k in value:
            if k.__class__ is not str:
                return False
        items: Any = value.values()
    elif cls is list:
        items = value
    else:
        return (cls is str or value is None or cls is bool
                or (cls is int and -_INT64 <= value < _INT64))
    for v in items:
        c = v.__class__
        if c is str or v is None or c is bool:
            continue
        if c is int:
            if not -_INT64 <= v < _INT64:
                return False
        elif not orjson_safe(v):
            return False
    return True




def dumps_indented(value: Any) -> bytes:
    """``json.dumps(value, ensure_ascii=False, indent=2)`` as UTF-8."""
    if orjson_safe(value):
        import orjson

        try:
            return orjson.dumps(value, option=orjson.OPT_INDENT_2)
        except (orjson.JSONEncodeError, TypeError):  # e.g. a lone surrogate
            pass
    return json.dumps(value, ensure_ascii=False, indent=2).encode()


def dumps_sorted_compact(value: Any) -> bytes:
    """``json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))`` as
    UTF-8."""
    if orjson_safe(value):
        import orjson

        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except (orjson.JSONEncodeError, TypeError):
            pass
    return json.dumps(value, ensure_ascii=False, sort_keys=True,
                      separators=(",", ":")).encode()
