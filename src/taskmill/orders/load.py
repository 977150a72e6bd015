"""Finding and reading order files (``.taskmill/orders/NAME.toml``), each problem named by
file and line."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from ..errors import InvalidInput, NotFound
from ..formulas.toml_lines import TomlLines
from .model import Order, OrderFile

ORDERS_DIR = "orders"


class OrderError(InvalidInput):
    """An order file is wrong; the message names the file and line."""

    code = "order_invalid"


@dataclass
class LoadedOrder:
    name: str
    order: Order
    path: Path
    shown: str
    lines: TomlLines

    def error(self, line: int | None, message: str, *, hint: str | None = None) -> OrderError:
        where = f"{self.shown}, line {line}" if line else self.shown
        return OrderError(f"{where}: {message}", hint=hint)

    def line(self, key: str | None = None) -> int | None:
        return self.lines.line("order", key)


def order_names(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("*.toml") if p.is_file())


def load_order(path: Path, *, shown: str | None = None) -> LoadedOrder:
    name = shown or str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise OrderError(f"cannot read {name}: {exc.strerror or exc}") from None
    lines = TomlLines.of(text)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise OrderError(f"{name}: {exc}", hint="fix the TOML syntax") from None
    try:
        parsed = OrderFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(p) for p in first["loc"]]
        if loc[:1] == ["order"] and len(loc) > 1:
            line = lines.line("order", loc[1]) or lines.line("", "order")
        else:
            line = lines.line("order") or (lines.line("", loc[0]) if loc else None)
        message = str(first["msg"]).removeprefix("Value error, ")
        raise OrderError(f"{name}, line {line}: {'.'.join(loc) or 'the file'}: {message}"
                         if line else f"{name}: {'.'.join(loc) or 'the file'}: {message}",
                         hint=_HINT) from None
    return LoadedOrder(path.stem, parsed.order, path, name, lines)


def load_orders(directory: Path, *, shown_dir: str = ".taskmill/orders") -> list[LoadedOrder]:
    """Every order of ``directory``, by name (the first bad file is an error)."""
    return [load_order(directory / f"{n}.toml", shown=f"{shown_dir}/{n}.toml")
            for n in order_names(directory)]


def find_order(orders: list[LoadedOrder], name: str) -> LoadedOrder:
    for loaded in orders:
        if loaded.name == name:
            return loaded
    known = ", ".join(o.name for o in orders) or "none"
    raise NotFound(f"no order {name!r}", hint=f"the orders are: {known}")


_HINT = ("an order file has one [order] table: pour or create, vars, trigger (cron, interval, "
         "event, condition, manual), schedule, interval, on, filter, check, skip_if_open, "
         "catch_up")
