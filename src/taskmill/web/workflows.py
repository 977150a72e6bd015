"""``GET /api/workflows``: formulas' poured instances as groups, and the orders with their
last and next firing (what ``taskmill orders list`` says)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..errors import TaskmillError
from ..formulas import ROLES_DIR
from ..formulas.instances import formula_instances
from ..orders import OrderScheduler, load_orders
from .base import HandlerBase, json_response


class WorkflowHandlers(HandlerBase):
    def workflows(self, request: Request) -> Response:
        error: str | None = None
        orders: list[dict[str, Any]] = []
        with self.pool.ledger() as led:
            instances = formula_instances(led)
            try:
                scheduler = OrderScheduler(load_orders(self.paths.dir / "orders"),
                                           formulas_dir=self.paths.dir / "formulas",
                                           roles_dir=self.paths.dir / ROLES_DIR,
                                           clock=self.clock)
                orders = scheduler.status(led)
            except TaskmillError as exc:  # a bad order file: say so, show the rest
                error = exc.message
        return json_response({"formulas": instances, "orders": orders, "orders_error": error})
