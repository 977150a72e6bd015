"""Where things are in a TOML file: the line of each table header and of each key in it
(``tomllib`` gives no positions), so that errors in formulas and orders name their line."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"']+)\s*=")


@dataclass
class Table:
    name: str
    """The header's dotted name ('' for the top of the file)."""
    line: int
    """The header's line (1 for the top)."""
    keys: dict[str, int] = field(default_factory=dict)

    def key(self, name: str) -> int:
        """The line of ``name`` in this table (the header's when it is not there)."""
        return self.keys.get(name, self.line)


@dataclass
class TomlLines:
    """The tables of a file in order; ``[[name]]`` arrays as a list per name."""

    tables: list[Table]

    @classmethod
    def of(cls, text: str) -> TomlLines:
        tables = [Table("", 1)]
        multi: str | None = None
        for number, raw in enumerate(text.splitlines(), start=1):
            if multi is not None:
                if raw.count(multi) % 2 == 1:
                    multi = None
                continue
            header = _HEADER.match(raw)
            if header and "=" not in raw.split("]")[0]:
                tables.append(Table(header[2].replace('"', "").replace("'", ""), number))
                continue
            key = _KEY.match(raw)
            if key:
                tables[-1].keys.setdefault(key[1].strip("\"'"), number)
            for quote in ('"""', "'''"):
                if raw.count(quote) % 2 == 1:
                    multi = quote
                    break
        return cls(tables)

    def table(self, name: str, index: int = 0) -> Table | None:
        """The ``index``-th table called ``name`` (``[[name]]`` repeats), or None."""
        found = [t for t in self.tables if t.name == name]
        return found[index] if index < len(found) else None

    def line(self, name: str, key: str | None = None, index: int = 0) -> int | None:
        """The line of ``key`` in table ``name`` (or of its header), or None."""
        table = self.table(name, index)
        if table is None:
            return None
        return table.line if key is None else table.key(key)
