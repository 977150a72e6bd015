"""Nothing outside ``taskmill/ledger/`` writes SQL: the ledger store is the one seam."""

from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "taskmill"
LEDGER = SRC / "ledger"
SQL = re.compile(r"SELECT |INSERT |UPDATE |DELETE |\.execute\(|\.executemany\(|PRAGMA")


def sql_lines(root: Path, *, skip: Path | None = None) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        if skip is not None and path.is_relative_to(skip):
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if SQL.search(line):
                found.append(f"{path.relative_to(SRC.parent)}:{n}: {line.strip()}")
    return found


def test_no_sql_outside_the_ledger_package() -> None:
    found = sql_lines(SRC, skip=LEDGER)
    assert not found, "SQL outside src/taskmill/ledger/ (add a store verb instead):\n" + \
        "\n".join(found)


def test_the_search_finds_the_sql_there_is() -> None:
    assert len(sql_lines(LEDGER / "sqlite")) > 50
