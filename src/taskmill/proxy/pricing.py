"""Prices per model, for the cost of what the proxy counted.

A price is USD per million tokens: ``input`` (uncached input), ``output``, and optionally
``cache_read`` and ``cache_write`` (both default to ``input``). The table is the built-in one
(:data:`BUILTIN`, list prices as published in 2025 for the models taskmill's adapters use most;
tiers by prompt length and batch discounts are ignored) overlaid by ``[pricing]`` in
``.taskmill/config.toml``::

    [pricing."claude-sonnet-4-5"]
    input = 3.0
    output = 15.0
    cache_read = 0.3
    cache_write = 3.75

A model is found by its exact name, else by the longest table name it starts with
(``claude-sonnet-4-5-20250929`` takes the price of ``claude-sonnet-4-5``), so dated
snapshots need no entry of their own. A model with no price leaves the cost unknown (None),
and the attempt says which model lacked one: a wrong price would be worse than none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PER = 1_000_000


@dataclass(frozen=True)
class Price:
    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None

    def cost(self, uncached_input: int, output: int, cache_read: int, cache_write: int) -> float:
        read = self.input if self.cache_read is None else self.cache_read
        write = self.input if self.cache_write is None else self.cache_write
        return (uncached_input * self.input + output * self.output + cache_read * read
                + cache_write * write) / PER


BUILTIN: dict[str, Price] = {
    # Anthropic (cache write: the 5-minute rate)
    "claude-opus-4-5": Price(5.0, 25.0, 0.5, 6.25),
    "claude-opus-4-1": Price(15.0, 75.0, 1.5, 18.75),
    "claude-opus-4": Price(15.0, 75.0, 1.5, 18.75),
    "claude-sonnet-4-5": Price(3.0, 15.0, 0.3, 3.75),
    "claude-sonnet-4": Price(3.0, 15.0, 0.3, 3.75),
    "claude-haiku-4-5": Price(1.0, 5.0, 0.1, 1.25),
    "claude-3-5-haiku": Price(0.8, 4.0, 0.08, 1.0),
    # OpenAI
    "gpt-5": Price(1.25, 10.0, 0.125),
    "gpt-5-codex": Price(1.25, 10.0, 0.125),
    "gpt-5-mini": Price(0.25, 2.0, 0.025),
    "gpt-5-nano": Price(0.05, 0.4, 0.005),
    "gpt-4.1": Price(2.0, 8.0, 0.5),
    "gpt-4.1-mini": Price(0.4, 1.6, 0.1),
    "gpt-4o": Price(2.5, 10.0, 1.25),
    "gpt-4o-mini": Price(0.15, 0.6, 0.075),
    "o3": Price(2.0, 8.0, 0.5),
    "o4-mini": Price(1.1, 4.4, 0.275),
    # Google (prompts up to 200k tokens)
    "gemini-2.5-pro": Price(1.25, 10.0, 0.31),
    "gemini-2.5-flash": Price(0.3, 2.5, 0.075),
    "gemini-2.5-flash-lite": Price(0.1, 0.4, 0.025),
}
"""Built-in prices (USD per million tokens). ``gpt-5`` does not cover ``gpt-5.5``: only
names that start with a table name followed by ``-`` (or equal to it) match."""


class PriceTable:
    def __init__(self, prices: Mapping[str, Price], *, overrides: frozenset[str] = frozenset()):
        self.prices = dict(prices)
        self.overrides = overrides
        """The names that came from ``[pricing]``."""

    @classmethod
    def from_config(cls, table: Mapping[str, Any] | None) -> PriceTable:
        """The built-in table overlaid by a checked ``[pricing]`` table."""
        prices = dict(BUILTIN)
        names = set()
        for name, entry in (table or {}).items():
            prices[name] = Price(float(entry["input"]), float(entry["output"]),
                                 _opt(entry.get("cache_read")), _opt(entry.get("cache_write")))
            names.add(name)
        return cls(prices, overrides=frozenset(names))

    def find(self, model: str) -> Price | None:
        """The price of ``model`` (exact, else the longest ``NAME-...`` prefix; a
        ``provider/`` prefix is ignored); None when there is none."""
        for name in (model, model.rsplit("/", 1)[-1]):
            if name in self.prices:
                return self.prices[name]
            best = max((n for n in self.prices if name.startswith(n + "-")), key=len,
                       default=None)
            if best is not None:
                return self.prices[best]
        return None


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)
