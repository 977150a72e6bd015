"""An order file, ``.taskmill/orders/NAME.toml``: when work is created by itself.

::

    [order]
    pour = "nightly-deps"            # a formula (or: create = { title = "...", role = "..." })
    vars = { branch = "main" }
    trigger = "cron"                 # cron | interval | event | condition | manual
    schedule = "0 3 * * *"           # cron (UTC)
    # interval = "30m"               # interval; condition: how often the check runs (1m)
    # on = "task.landed"             # event: task.landed | task.blocked | task.closed ...
    # filter = { label = "api" }     #   ... of tasks matching this
    # check = "scripts/needs-work"   # condition: fires when this command exits 0
    skip_if_open = true              # no new instance while the last one is unfinished
    catch_up = "one"                 # after downtime: none | one | all
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from croniter import croniter
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

NonEmpty = Annotated[str, StringConstraints(min_length=1)]
EVENTS = ("task.landed", "task.blocked", "task.closed", "task.created", "task.reopened")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_INTERVAL = re.compile(r"(\d+)\s*([smhdw])")


def parse_interval(text: str) -> timedelta:
    """``30m``, ``1h30m``, ``45s``, ``2d``, ``1w``; ValueError when it is none of these."""
    compact = text.replace(" ", "")
    parts = _INTERVAL.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"interval {text!r} is not like 30s, 5m, 1h30m, 2d or 1w")
    seconds = sum(int(n) * _UNIT[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"interval {text!r} must be longer than 0s")
    return timedelta(seconds=seconds)


class CreateSpec(BaseModel):
    """``create = { title = "...", role = "..." }``: one task instead of a formula."""

    model_config = ConfigDict(extra="forbid")

    title: NonEmpty
    role: str | None = None


class EventFilter(BaseModel):
    """Which tasks an event order looks at (all given must match)."""

    model_config = ConfigDict(extra="forbid")

    label: str | None = None
    issue_type: str | None = None
    role: str | None = None


_BY_TRIGGER: dict[str, tuple[str, ...]] = {
    "cron": ("schedule",), "interval": ("interval",), "event": ("on",),
    "condition": ("check",), "manual": ()}
_OPTIONAL: dict[str, tuple[str, ...]] = {"event": ("filter",), "condition": ("interval",)}


class Order(BaseModel):
    """The ``[order]`` table."""

    model_config = ConfigDict(extra="forbid")

    pour: NonEmpty | None = None
    create: CreateSpec | None = None
    vars: dict[str, Any] = Field(default_factory=dict)
    trigger: Literal["cron", "interval", "event", "condition", "manual"]
    schedule: str | None = None
    interval: str | None = None
    on: str | None = None
    filter: EventFilter | None = None
    check: NonEmpty | None = None
    skip_if_open: bool = False
    catch_up: Literal["none", "one", "all"] = "one"

    @model_validator(mode="after")
    def _coherent(self) -> Order:
        if (self.pour is None) == (self.create is None):
            raise ValueError("give exactly one of pour = \"FORMULA\" and create = "
                             "{ title = \"...\" }")
        if self.vars and self.pour is None:
            raise ValueError("vars are for pour: a created task has no variables")
        needed = _BY_TRIGGER[self.trigger]
        allowed = needed + _OPTIONAL.get(self.trigger, ())
        for name in ("schedule", "interval", "on", "filter", "check"):
            given = getattr(self, name) is not None
            if name in needed and not given:
                raise ValueError(f"trigger = {self.trigger!r} needs {name}")
            if given and name not in allowed:
                raise ValueError(f"{name} is not used by trigger = {self.trigger!r}")
        return self

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None and not croniter.is_valid(value):
            raise ValueError(f"schedule {value!r} is not a cron expression "
                             "(minute hour day month weekday, e.g. \"0 3 * * *\")")
        return value

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: str | None) -> str | None:
        if value is not None:
            parse_interval(value)
        return value

    @field_validator("on")
    @classmethod
    def _event(cls, value: str | None) -> str | None:
        if value is not None and value not in EVENTS:
            raise ValueError(f"on = {value!r}: the events are {', '.join(EVENTS)}")
        return value

    @property
    def every(self) -> timedelta | None:
        """The interval (``interval`` orders; ``condition`` orders: how often to check)."""
        if self.interval is not None:
            return parse_interval(self.interval)
        return timedelta(minutes=1) if self.trigger == "condition" else None


class OrderFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order: Order
