"""The OpenAPI 3 description of the API (``GET /api/openapi.json``).

Every route is declared once, in :data:`taskmill.web.routes.ROUTES`, as a :class:`RouteSpec`;
:func:`openapi_document` turns those into the document, with the schemas generated from the
records and the response models (:mod:`taskmill.web.responses`). OpenAPI 3.1: its schemas
are JSON Schema 2020-12, what pydantic generates.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from . import responses


@dataclass
class Param:
    name: str
    where: str  # "path" or "query"
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False


@dataclass
class RouteSpec:
    method: str
    path: str
    handler: str
    summary: str
    params: list[Param] = field(default_factory=list)
    body: dict[str, Any] | None = None
    response: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    media_type: str = "application/json"
    errors: tuple[int, ...] = ()
    status: int = 200


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def array(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": item}


@functools.cache
def schemas() -> dict[str, Any]:
    """The document's component schemas (generated once: see :mod:`taskmill.web.responses`)."""
    return responses.schemas()


def openapi_document(routes: list[RouteSpec]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for spec in routes:
        op: dict[str, Any] = {
            "operationId": spec.handler,
            "summary": spec.summary,
            "responses": {
                str(spec.status): {
                    "description": {200: "OK", 201: "Created"}.get(spec.status, "OK"),
                    "content": {spec.media_type: {"schema": spec.response}}},
                "default": {"description": "An error",
                            "content": {"application/json": {"schema": ref("Error")}}},
            },
        }
        for status in spec.errors:
            op["responses"][str(status)] = {
                "description": {400: "Bad input", 403: "Refused", 404: "Not found",
                                409: "Conflict", 502: "git failed"}.get(status, "Error"),
                "content": {"application/json": {"schema": ref("Error")}}}
        if spec.params:
            op["parameters"] = [
                {"name": p.name, "in": p.where, "description": p.description,
                 "required": p.required or p.where == "path", "schema": p.schema}
                for p in spec.params]
        if spec.body is not None:
            op["requestBody"] = {"required": True,
                                 "content": {"application/json": {"schema": spec.body}}}
        paths.setdefault(spec.path, {})[spec.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "taskmill dashboard API", "version": "1",
                 "description": "The JSON API the taskmill dashboard page itself uses. Errors "
                                "carry the ledger's error code."},
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "Required when the server is bound to a "
                                          "non-loopback address (the token it printed)."},
            },
        },
    }
