"""The backlog of the real-project flow (:mod:`taskmill.testing.real_project`).

Three epics of python-humanize work, ten child tasks, and for each child the real code
change the scripted agent (:mod:`taskmill.testing.real_project_agent`) makes, turn by turn,
as a list of edits:

* ``{"op": "write", "path": P, "text": T}``: create or replace a file;
* ``{"op": "replace", "path": P, "old": A, "new": B}``: replace the one occurrence of ``A``
  (skipped when ``A`` is gone and ``B`` is there: the edit was made by an earlier turn);
* ``{"op": "append", "path": P, "text": T}``: append (skipped when the file ends with it).

The set is chosen to exercise the mill: ``percentage`` and ``roman`` insert an import on the
same line of ``src/humanize/__init__.py`` (whichever lands second conflicts in the merge
queue and the agent resolves it on its next turn), ``compact``'s first turn forgets negative
durations so its check fails and its second turn fixes it (a retry), and ``conjunction`` and
``parse-size`` hold their first turn open until the flow has sent SIGINT to ``taskmill run``
(they are dispatched only after ``daypart`` lands, so other work has landed by then).
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

HUMANIZE_VERSION = "4.17.0"

CONFLICT_PAIR = ("percentage", "roman")
RETRY = "compact"
HOLD = ("conjunction", "parse-size")
"""Tasks whose first turn waits (on a file) until the flow has interrupted the run."""


def _code(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def _write(path: str, text: str) -> dict[str, str]:
    return {"op": "write", "path": path, "text": _code(text)}


def _replace(path: str, old: str, new: str) -> dict[str, str]:
    return {"op": "replace", "path": path, "old": old, "new": new}


def _append(path: str, text: str) -> dict[str, str]:
    return {"op": "append", "path": path, "text": _code(text)}


INIT = "src/humanize/__init__.py"
NUMBER_IMPORTS_END = "    scientific,\n)\n"


def _export(module: str, name: str, after_in_all: str) -> list[dict[str, str]]:
    """Import ``name`` in ``humanize/__init__.py`` right after the ``humanize.number`` import
    block (the same line for every task that does this: a merge conflict) and list it in
    ``__all__``."""
    return [
        _replace(INIT, NUMBER_IMPORTS_END,
                 f"{NUMBER_IMPORTS_END}from humanize.{module} import {name}\n"),
        _replace(INIT, f'    "{after_in_all}",\n', f'    "{after_in_all}",\n    "{name}",\n'),
    ]


PERCENT = _write("src/humanize/percent.py", '''
    """Percentages."""

    from __future__ import annotations

    import math

    from humanize.number import _format_not_finite

    __all__ = ["percentage"]


    def percentage(value: float, precision: int = 0) -> str:
        """Format a ratio as a percentage.

        Examples:
            >>> percentage(0.256)
            '26%'
            >>> percentage(0.256, precision=1)
            '25.6%'
            >>> percentage(1)
            '100%'

        Args:
            value (float): The ratio, where 1 is 100%.
            precision (int): Digits after the decimal point.

        Returns:
            str: The percentage, with a trailing '%'.
        """
        value = float(value)
        if not math.isfinite(value):
            return _format_not_finite(value)
        return f"{value * 100:.{precision}f}%"
    ''')

TEST_PERCENT = _write("tests/test_percentage.py", '''
    """Tests for percentage."""

    from __future__ import annotations

    import math

    import pytest

    import humanize


    @pytest.mark.parametrize(
        "value, precision, expected",
        [
            (0, 0, "0%"),
            (0.5, 0, "50%"),
            (0.256, 0, "26%"),
            (0.256, 1, "25.6%"),
            (1.5, 0, "150%"),
            (-0.25, 0, "-25%"),
            ("0.1", 1, "10.0%"),
        ],
    )
    def test_percentage(value: float, precision: int, expected: str) -> None:
        assert humanize.percentage(value, precision) == expected


    @pytest.mark.parametrize(
        "value, expected", [(math.nan, "NaN"), (math.inf, "+Inf"), (-math.inf, "-Inf")]
    )
    def test_percentage_not_finite(value: float, expected: str) -> None:
        assert humanize.percentage(value) == expected
    ''')

ROMAN = _write("src/humanize/roman.py", '''
    """Roman numerals."""

    from __future__ import annotations

    __all__ = ["roman"]

    _NUMERALS = (
        (1000, "M"),
        (900, "CM"),
        (500, "D"),
        (400, "CD"),
        (100, "C"),
        (90, "XC"),
        (50, "L"),
        (40, "XL"),
        (10, "X"),
        (9, "IX"),
        (5, "V"),
        (4, "IV"),
        (1, "I"),
    )


    def roman(value: object) -> str:
        """Write a whole number from 1 to 3999 in Roman numerals.

        Anything else is returned as a string, unchanged.

        Examples:
            >>> roman(1994)
            'MCMXCIV'
            >>> roman(4)
            'IV'
            >>> roman(0)
            '0'

        Args:
            value (int): The number.

        Returns:
            str: The Roman numeral.
        """
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 4000:
            return str(value)
        number = value
        out = []
        for amount, numeral in _NUMERALS:
            count, number = divmod(number, amount)
            out.append(numeral * count)
        return "".join(out)
    ''')

TEST_ROMAN = _write("tests/test_roman.py", '''
    """Tests for roman."""

    from __future__ import annotations

    import pytest

    import humanize


    @pytest.mark.parametrize(
        "value, expected",
        [
            (1, "I"),
            (4, "IV"),
            (9, "IX"),
            (14, "XIV"),
            (40, "XL"),
            (90, "XC"),
            (400, "CD"),
            (1994, "MCMXCIV"),
            (2024, "MMXXIV"),
            (3999, "MMMCMXCIX"),
        ],
    )
    def test_roman(value: int, expected: str) -> None:
        assert humanize.roman(value) == expected


    @pytest.mark.parametrize("value", [0, -3, 4000, 2.5, "12", None, True])
    def test_roman_passes_other_values_through(value: object) -> None:
        assert humanize.roman(value) == str(value)
    ''')

TEST_NEGATIVE = _write("tests/test_negative_numbers.py", '''
    """Negative numbers keep their sign in every number formatter."""

    from __future__ import annotations

    import pytest

    import humanize


    @pytest.mark.parametrize(
        "value, expected", [(-1500, "-1.50 kV"), (-0.002, "-2.00 mV"), (-1, "-1.00 V")]
    )
    def test_metric_negative(value: float, expected: str) -> None:
        assert humanize.metric(value, "V") == expected


    def test_intword_negative() -> None:
        assert humanize.intword(-1_200_000) == "-1.2 million"


    def test_intcomma_negative() -> None:
        assert humanize.intcomma(-1_234_567) == "-1,234,567"


    def test_naturalsize_negative() -> None:
        assert humanize.naturalsize(-3000) == "-3.0 kB"
    ''')

NUMBER_DOCS = _append("docs/number.md", '''

    ## Percentages and Roman numerals

    ```pycon
    >>> import humanize
    >>> humanize.percentage(0.256)
    '26%'
    >>> humanize.percentage(0.256, precision=1)
    '25.6%'
    >>> humanize.roman(1994)
    'MCMXCIV'

    ```
    ''')

_COMPACT_HEAD = '''
    """Compact durations."""

    from __future__ import annotations

    import datetime as dt

    __all__ = ["compact_delta"]

    _UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


    def compact_delta(value: dt.timedelta | float, parts: int = 2) -> str:
        """Write a duration compactly, largest units first, e.g. '1h 2m'.

        Examples:
            >>> compact_delta(3725)
            '1h 2m'
            >>> compact_delta(3725, parts=3)
            '1h 2m 5s'
            >>> compact_delta(dt.timedelta(days=2, minutes=5))
            '2d 5m'
            >>> compact_delta(0)
            '0s'

        Args:
            value (datetime.timedelta or float): The duration, or a number of seconds.
            parts (int): How many units to show at most.

        Returns:
            str: The duration.
        """
        seconds = int(value.total_seconds() if isinstance(value, dt.timedelta) else value)
    '''
# the first turn forgets negative durations (divmod of a negative number): its test fails
COMPACT_BUGGY = _write("src/humanize/compact.py", _COMPACT_HEAD + '''
        out = []
        for unit, size in _UNITS:
            count, seconds = divmod(seconds, size)
            if count:
                out.append(f"{count}{unit}")
        return " ".join(out[:parts]) or "0s"
    ''')
COMPACT_FIX = [
    _replace("src/humanize/compact.py", "    out = []\n",
             '    sign = "-" if seconds < 0 else ""\n    seconds = abs(seconds)\n    out = []\n'),
    _replace("src/humanize/compact.py", '    return " ".join(out[:parts]) or "0s"\n',
             '    return sign + (" ".join(out[:parts]) or "0s")\n'),
]

TEST_COMPACT = _write("tests/test_compact.py", '''
    """Tests for compact_delta."""

    from __future__ import annotations

    import datetime as dt

    import pytest

    from humanize.compact import compact_delta


    @pytest.mark.parametrize(
        "value, parts, expected",
        [
            (0, 2, "0s"),
            (59, 2, "59s"),
            (90, 2, "1m 30s"),
            (3725, 2, "1h 2m"),
            (3725, 3, "1h 2m 5s"),
            (dt.timedelta(days=1, seconds=1), 2, "1d 1s"),
            (dt.timedelta(hours=-1, minutes=-30), 2, "-1h 30m"),
            (-90, 2, "-1m 30s"),
        ],
    )
    def test_compact_delta(value: dt.timedelta | float, parts: int, expected: str) -> None:
        assert compact_delta(value, parts=parts) == expected
    ''')

DAYPART = _write("src/humanize/daypart.py", '''
    """The part of the day."""

    from __future__ import annotations

    import datetime as dt

    __all__ = ["daypart"]


    def daypart(value: dt.datetime | dt.time | int) -> str:
        """Name the part of the day of a time, or of an hour from 0 to 23.

        Examples:
            >>> daypart(9)
            'morning'
            >>> daypart(dt.time(13, 30))
            'afternoon'
            >>> daypart(dt.datetime(2024, 1, 1, 19))
            'evening'
            >>> daypart(2)
            'night'

        Args:
            value (datetime.datetime, datetime.time or int): The time, or the hour.

        Returns:
            str: 'morning', 'afternoon', 'evening' or 'night'.

        Raises:
            ValueError: The hour is not from 0 to 23.
        """
        hour = value if isinstance(value, int) else value.hour
        if not 0 <= hour <= 23:
            msg = f"hour must be from 0 to 23, got {hour}"
            raise ValueError(msg)
        if 5 <= hour < 12:
            return "morning"
        if 12 <= hour < 17:
            return "afternoon"
        if 17 <= hour < 21:
            return "evening"
        return "night"
    ''')

TEST_DAYPART = _write("tests/test_daypart.py", '''
    """Tests for daypart."""

    from __future__ import annotations

    import datetime as dt

    import pytest

    from humanize.daypart import daypart


    @pytest.mark.parametrize(
        "value, expected",
        [
            (0, "night"),
            (4, "night"),
            (5, "morning"),
            (11, "morning"),
            (12, "afternoon"),
            (dt.time(16, 59), "afternoon"),
            (dt.datetime(2024, 6, 1, 17), "evening"),
            (21, "night"),
            (23, "night"),
        ],
    )
    def test_daypart(value: dt.datetime | dt.time | int, expected: str) -> None:
        assert daypart(value) == expected


    @pytest.mark.parametrize("hour", [-1, 24])
    def test_daypart_bad_hour(hour: int) -> None:
        with pytest.raises(ValueError, match="from 0 to 23"):
            daypart(hour)
    ''')

TIME_DOCS = _append("docs/time.md", '''

    ## Compact durations and parts of the day

    ```pycon
    >>> import datetime as dt
    >>> from humanize.compact import compact_delta
    >>> compact_delta(dt.timedelta(hours=26, minutes=3))
    '1d 2h'
    >>> from humanize.daypart import daypart
    >>> daypart(dt.time(7, 45))
    'morning'

    ```
    ''')

LISTS = "src/humanize/lists.py"
CONJUNCTION = [
    _replace(LISTS, "def natural_list(items: Iterable[Any]) -> str:",
             'def natural_list(items: Iterable[Any], conjunction: str = "and") -> str:'),
    _replace(LISTS, "        >>> natural_list([\"one\"])\n        'one'\n",
             "        >>> natural_list([\"one\"])\n        'one'\n"
             "        >>> natural_list([\"tea\", \"coffee\"], conjunction=\"or\")\n"
             "        'tea or coffee'\n"),
    _replace(LISTS, "        items (Iterable): An iterable of items.\n",
             "        items (Iterable): An iterable of items.\n"
             "        conjunction (str): The word before the last item.\n"),
    _replace(LISTS, 'return f"{item_list[0]} and {item_list[1]}"',
             'return f"{item_list[0]} {conjunction} {item_list[1]}"'),
    _replace(LISTS, 'f" and {item_list[-1]}"', 'f" {conjunction} {item_list[-1]}"'),
]

TEST_CONJUNCTION = _write("tests/test_list_conjunction.py", '''
    """Tests for natural_list's conjunction."""

    from __future__ import annotations

    import pytest

    import humanize


    @pytest.mark.parametrize(
        "items, conjunction, expected",
        [
            (["tea", "coffee"], "or", "tea or coffee"),
            (["a", "b", "c"], "or", "a, b or c"),
            (["a", "b", "c"], "und", "a, b und c"),
            (["alone"], "or", "alone"),
            ([], "or", ""),
        ],
    )
    def test_natural_list_conjunction(items: list[str], conjunction: str, expected: str) -> None:
        assert humanize.natural_list(items, conjunction=conjunction) == expected


    def test_natural_list_default_is_and() -> None:
        assert humanize.natural_list([1, 2, 3]) == "1, 2 and 3"
    ''')

PARSE_SIZE = _write("src/humanize/parse_size.py", '''
    """Reading back the file sizes naturalsize() writes."""

    from __future__ import annotations

    import re

    __all__ = ["parse_size"]

    _SIZE = re.compile(
        r"\\s*(?P<number>[+-]?\\d+(?:\\.\\d*)?)\\s*(?P<prefix>[kMGTPEZYRQ]?)(?P<binary>i?)"
        r"(?:B|Bytes?)\\s*",
        re.IGNORECASE,
    )
    _PREFIXES = "kmgtpezyrq"


    def parse_size(text: str) -> int:
        """Read a size written by naturalsize() back as a number of bytes.

        Examples:
            >>> parse_size("1.5 kB")
            1500
            >>> parse_size("1.0 KiB")
            1024
            >>> parse_size("300 Bytes")
            300

        Args:
            text (str): The size, e.g. '3.0 kB', '2.9 KiB' or '1 Byte'.

        Returns:
            int: The number of bytes (rounded).

        Raises:
            ValueError: The text is not a size.
        """
        match = _SIZE.fullmatch(text)
        if match is None:
            msg = f"not a file size: {text!r}"
            raise ValueError(msg)
        prefix = match["prefix"].lower()
        power = _PREFIXES.index(prefix) + 1 if prefix else 0
        base = 1024 if match["binary"] else 1000
        return round(float(match["number"]) * base**power)
    ''')

TEST_PARSE_SIZE = _write("tests/test_parse_size.py", '''
    """Tests for parse_size."""

    from __future__ import annotations

    import pytest

    import humanize
    from humanize.parse_size import parse_size


    @pytest.mark.parametrize(
        "text, expected",
        [
            ("1 Byte", 1),
            ("300 Bytes", 300),
            ("3.0 kB", 3000),
            ("1.5 MB", 1_500_000),
            ("1.0 KiB", 1024),
            ("2 GiB", 2 * 1024**3),
            ("-3.0 kB", -3000),
        ],
    )
    def test_parse_size(text: str, expected: int) -> None:
        assert parse_size(text) == expected


    @pytest.mark.parametrize("value", [0, 1, 300, 3000, 10**6, 123_456_789])
    @pytest.mark.parametrize("binary", [False, True])
    def test_round_trip(value: int, binary: bool) -> None:
        back = parse_size(humanize.naturalsize(value, binary=binary))
        assert back == pytest.approx(value, rel=0.01)


    @pytest.mark.parametrize("text", ["", "abc", "12", "1.0 XB"])
    def test_not_a_size(text: str) -> None:
        with pytest.raises(ValueError, match="not a file size"):
            parse_size(text)
    ''')

LISTS_DOCS = [
    _append("docs/lists.md", '''

        ## Another conjunction

        ```pycon
        >>> import humanize
        >>> humanize.natural_list(["tea", "coffee", "water"], conjunction="or")
        'tea, coffee or water'

        ```
        '''),
    _append("docs/filesize.md", '''

        ## Reading sizes back

        ```pycon
        >>> import humanize
        >>> from humanize.parse_size import parse_size
        >>> parse_size(humanize.naturalsize(3000))
        3000

        ```
        '''),
]


def tasks(pytest: str) -> list[dict[str, Any]]:
    """The plan's tasks (``key``, ``title``, ... as in a plan file) and, for children,
    ``turns``: the agent's edits per turn (the last one repeats). ``pytest`` runs the
    project's whole test suite; with paths added, part of it."""

    def docs(*paths: str) -> list[str]:
        return [f"{pytest} --doctest-glob='*.md' {' '.join(paths)}"]

    return [
        {"key": "numbers", "title": "Number formatting additions", "issue_type": "epic",
         "description": "Percentages, Roman numerals and negative numbers."},
        {"key": "percentage", "title": "Add humanize.percentage() for ratios", "parent": "numbers",
         "priority": 1, "checks": [f"{pytest} tests/test_percentage.py"],
         "description": "percentage(0.256) == '26%', with a precision; exported by humanize.",
         "turns": [[PERCENT, TEST_PERCENT, *_export("percent", "percentage", "ordinal")]]},
        {"key": "roman", "title": "Add humanize.roman() for Roman numerals", "parent": "numbers",
         "priority": 1, "checks": [f"{pytest} tests/test_roman.py"],
         "description": "roman(1994) == 'MCMXCIV' for 1-3999; exported by humanize.",
         "turns": [[ROMAN, TEST_ROMAN, *_export("roman", "roman", "precisedelta")]]},
        {"key": "negative", "title": "Cover the number formatters with negative values",
         "parent": "numbers", "checks": [f"{pytest} tests/test_negative_numbers.py"],
         "turns": [[TEST_NEGATIVE]]},
        {"key": "numbers-docs", "title": "Document percentage() and roman()",
         "parent": "numbers", "after": ["percentage", "roman"], "checks": docs("docs/number.md"),
         "turns": [[NUMBER_DOCS]]},
        {"key": "time", "title": "Time helpers", "issue_type": "epic",
         "description": "Compact durations and parts of the day."},
        {"key": "compact", "title": "Add compact_delta() for short durations", "parent": "time",
         "checks": [f"{pytest} tests/test_compact.py"],
         "description": "compact_delta(3725) == '1h 2m'; negative durations keep their sign.",
         "turns": [[COMPACT_BUGGY, TEST_COMPACT], COMPACT_FIX]},
        {"key": "daypart", "title": "Add daypart() naming the part of the day", "parent": "time",
         "priority": 1, "checks": [f"{pytest} tests/test_daypart.py"],
         "turns": [[DAYPART, TEST_DAYPART]]},
        {"key": "time-docs", "title": "Document compact_delta() and daypart()", "parent": "time",
         "after": ["compact", "daypart"], "checks": docs("docs/time.md"),
         "turns": [[TIME_DOCS]]},
        {"key": "lists", "title": "List and file-size helpers", "issue_type": "epic",
         "description": "natural_list() with another conjunction; parse_size()."},
        {"key": "conjunction", "title": "Let natural_list() take a conjunction", "parent": "lists",
         "after": ["daypart"], "checks": [f"{pytest} tests/test_list_conjunction.py"],
         "description": "natural_list(items, conjunction='or'); 'and' stays the default.",
         "turns": [[*CONJUNCTION, TEST_CONJUNCTION]]},
        {"key": "parse-size", "title": "Add parse_size(), the inverse of naturalsize()",
         "parent": "lists", "after": ["daypart"], "checks": [f"{pytest} tests/test_parse_size.py"],
         "turns": [[PARSE_SIZE, TEST_PARSE_SIZE]]},
        {"key": "lists-docs", "title": "Document the conjunction and parse_size()",
         "parent": "lists", "after": ["conjunction", "parse-size"],
         "checks": docs("docs/lists.md", "docs/filesize.md"), "turns": [LISTS_DOCS]},
    ]


PLAN_FIELDS = ("key", "title", "description", "priority", "issue_type", "checks", "after",
               "parent")


def plan_toml(task_list: list[dict[str, Any]], default_checks: list[str]) -> str:
    """The tasks as a taskmill plan file (JSON strings are valid TOML basic strings)."""
    out = ["[defaults]", f"checks = {json.dumps(default_checks)}", 'labels = ["real-project"]', ""]
    for task in task_list:
        out.append("[[task]]")
        out += [f"{name} = {json.dumps(task[name])}" for name in PLAN_FIELDS if name in task]
        out.append("")
    return "\n".join(out)


def children(task_list: list[dict[str, Any]]) -> list[str]:
    return [t["key"] for t in task_list if "parent" in t]


def epics(task_list: list[dict[str, Any]]) -> list[str]:
    return [t["key"] for t in task_list if "parent" not in t]
