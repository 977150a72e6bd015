"""taskmill.json_text: orjson's bytes where they are json.dumps' bytes, json.dumps' elsewhere."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from taskmill.json_text import dumps_indented, dumps_sorted_compact, orjson_safe

scalars = (st.none() | st.booleans() | st.integers(min_value=-(1 << 70), max_value=1 << 70)
           | st.floats(allow_nan=False) | st.text())
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(values)
def test_the_bytes_are_json_dumps_bytes(value: Any) -> None:
    try:
        indented = json.dumps(value, ensure_ascii=False, indent=2).encode()
        compact = json.dumps(value, ensure_ascii=False, sort_keys=True,
                             separators=(",", ":")).encode()
    except UnicodeEncodeError:  # a lone surrogate: not UTF-8 either way
        return
    assert dumps_indented(value) == indented
    assert dumps_sorted_compact(value) == compact


def test_what_orjson_writes_differently_is_not_safe() -> None:
    assert not orjson_safe({"f": 1e-7})  # orjson: 1e-7, json: 1e-07
    assert not orjson_safe([1 << 64])
    assert not orjson_safe({1: "int key"})
    assert orjson_safe({"a": ["b", None, True, -3, {"c": "\u2028\x1f é"}]})
    assert dumps_indented({"a": "\x1f\u2028"}) == json.dumps(
        {"a": "\x1f\u2028"}, ensure_ascii=False, indent=2).encode()
