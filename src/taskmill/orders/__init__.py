"""Orders: work created by itself (``.taskmill/orders/NAME.toml``): on a cron schedule, at an
interval, on a ledger event, when a check passes, or by hand; fired by ``taskmill watch``."""

from __future__ import annotations

from .load import ORDERS_DIR, LoadedOrder, OrderError, find_order, load_order, load_orders
from .model import CreateSpec, EventFilter, Order, OrderFile, parse_interval
from .scheduler import LATE, MANUAL, Firing, OrderScheduler, project_scheduler, shell_check

__all__ = ["LATE", "MANUAL", "ORDERS_DIR", "CreateSpec", "EventFilter", "Firing", "LoadedOrder",
           "Order", "OrderError", "OrderFile", "OrderScheduler", "find_order", "load_order",
           "load_orders", "parse_interval", "project_scheduler", "shell_check"]
