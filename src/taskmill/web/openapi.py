"""The OpenAPI 3 description of the API (``GET /api/openapi.json``).

Every route is declared once, in :data:`taskmill.web.routes.ROUTES`, as a :class:`RouteSpec`;
:func:`openapi_document` turns those into the document, with the schemas in :data:`SCHEMAS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..model import STATUSES


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


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def array(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": item}


_NULLABLE_STR = {"type": "string", "nullable": True}


SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                           "hint": {"type": "string"}}}},
    },
    "Dependency": {
        "type": "object",
        "properties": {"issue_id": {"type": "string"}, "depends_on_id": {"type": "string"},
                       "type": {"type": "string"}, "created_at": _NULLABLE_STR,
                       "created_by": _NULLABLE_STR,
                       "title": _NULLABLE_STR, "status": _NULLABLE_STR},
    },
    "Comment": {
        "type": "object",
        "properties": {"id": {"type": "integer"}, "issue_id": {"type": "string"},
                       "author": {"type": "string"}, "text": {"type": "string"},
                       "created_at": {"type": "string"}},
    },
    "Task": {
        "type": "object", "required": ["id", "title", "status", "priority"],
        "properties": {
            "id": {"type": "string"}, "title": {"type": "string"},
            "description": {"type": "string"}, "design": {"type": "string"},
            "acceptance_criteria": {"type": "string"}, "notes": {"type": "string"},
            "status": {"type": "string"}, "priority": {"type": "integer", "minimum": 0, "maximum": 4},
            "issue_type": {"type": "string"}, "assignee": _NULLABLE_STR,
            "labels": array({"type": "string"}), "created_at": {"type": "string"},
            "updated_at": {"type": "string"}, "closed_at": _NULLABLE_STR,
            "close_reason": _NULLABLE_STR, "external_ref": _NULLABLE_STR,
            "metadata": {"type": "object", "nullable": True},
            "checks": {"type": "array", "items": {"type": "string"}, "nullable": True},
            "agent": _NULLABLE_STR, "hints": {"type": "object", "nullable": True},
            "ready": {"type": "boolean"},
            "parent": {"type": "string", "nullable": True,
                       "description": "the first parent-child parent"},
            "children": {"type": "integer", "description": "children (tombstones left out)"},
            "children_closed": {"type": "integer"},
            "container": {"type": "boolean",
                          "description": "has children: never dispatched; closes with them"},
            "interrupted": {"type": "boolean",
                            "description": "present (true) when a stopped or dead mill run "
                                           "left it in progress: the next run resumes it"},
        },
    },
    "Attempt": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"}, "task_id": {"type": "string"},
            "iteration": {"type": "integer"}, "agent": _NULLABLE_STR, "model": _NULLABLE_STR,
            "started_at": {"type": "string"}, "ended_at": _NULLABLE_STR,
            "outcome": {"type": "string", "nullable": True,
                        "description": "null while the attempt is running"},
            "input_tokens": {"type": "integer"}, "output_tokens": {"type": "integer"},
            "cost_usd": {"type": "number", "nullable": True}, "commit_sha": _NULLABLE_STR,
            "log_path": _NULLABLE_STR,
            "detail": {"type": "object", "nullable": True,
                       "description": "checks output, failure text, agent error"},
            "run_id": _NULLABLE_STR,
            "lap": {"type": "integer",
                    "description": "which dispatch of the task (a reopened task starts a new "
                                   "lap); iterations count from 1 in each lap"},
            "duration_s": {"type": "number", "nullable": True},
            "running": {"type": "boolean"}, "has_log": {"type": "boolean"},
            "has_checks_log": {"type": "boolean"},
        },
    },
    "TaskFull": {
        "allOf": [ref("Task"), {
            "type": "object",
            "properties": {
                "dependencies": array(ref("Dependency")),
                "dependents": array(ref("Dependency")),
                "comments": array(ref("Comment")),
                "attempts": array(ref("Attempt")),
                "blocked_by": array({"type": "string"}),
                "child_tasks": array(ref("Task")),
            }}],
    },
    "BlockedTask": {
        "allOf": [ref("Task"), {
            "type": "object",
            "properties": {"blocked_by": array({"type": "string"}),
                           "held_by_parent": array({"type": "string"}),
                           "held_by_ancestor": array({"type": "string"}),
                           "reasons": array({"type": "string"}),
                           "block_reason": {"type": "string", "nullable": True},
                           "unblock_with": {"type": "string", "nullable": True},
                           "last_comment": {"allOf": [ref("Comment")], "nullable": True}}}],
    },
    "AuditEvent": {
        "type": "object",
        "properties": {"seq": {"type": "integer"}, "ts": {"type": "string"},
                       "actor": {"type": "string"}, "task_id": _NULLABLE_STR,
                       "kind": {"type": "string"}, "data": {"type": "object"},
                       "prev_hash": {"type": "string"}, "hash": {"type": "string"}},
    },
    "MillEvent": {
        "type": "object", "required": ["ts", "event"],
        "properties": {"ts": {"type": "string"}, "event": {"type": "string"},
                       "task": {"type": "string"}},
        "additionalProperties": True,
    },
    "GraphNode": {
        "type": "object",
        "properties": {"id": {"type": "string"}, "title": {"type": "string"},
                       "status": {"type": "string"}, "priority": {"type": "integer"},
                       "ready": {"type": "boolean"}, "labels": array({"type": "string"}),
                       "issue_type": {"type": "string"}, "assignee": _NULLABLE_STR,
                       "parent": _NULLABLE_STR, "children": {"type": "integer"},
                       "children_closed": {"type": "integer"},
                       "container": {"type": "boolean"},
                       "x": {"type": "number"}, "y": {"type": "number"},
                       "layer": {"type": "integer"}, "order": {"type": "integer"},
                       "component": {"type": "integer"}},
    },
    "GraphEdge": {
        "type": "object",
        "properties": {"source": {"type": "string"}, "target": {"type": "string"},
                       "type": {"type": "string"}, "reversed": {"type": "boolean"},
                       "points": array(array({"type": "number"}))},
    },
    "Graph": {
        "type": "object",
        "properties": {"width": {"type": "number"}, "height": {"type": "number"},
                       "crossings": {"type": "integer"},
                       "node_width": {"type": "number"}, "node_height": {"type": "number"},
                       "nodes": array(ref("GraphNode")), "edges": array(ref("GraphEdge")),
                       "total": {"type": "integer"}},
    },
    "Totals": {
        "type": "object",
        "properties": {"attempts": {"type": "integer"}, "passed": {"type": "integer"},
                       "input_tokens": {"type": "integer"}, "output_tokens": {"type": "integer"},
                       "cost_usd": {"type": "number"}, "seconds": {"type": "number"}},
    },
    "Worker": {
        "type": "object",
        "properties": {"task": ref("Task"), "phase": {"type": "string"},
                       "attempt": {"allOf": [ref("Attempt")], "nullable": True},
                       "last_event": {"allOf": [ref("MillEvent")], "nullable": True}},
    },
    "Now": {
        "type": "object",
        "properties": {
            "now": {"type": "string"}, "paused": {"type": "boolean"},
            "mill_running": {"type": "boolean"},
            "workers": array(ref("Worker")),
            "merge_queue": array({"type": "object", "properties": {
                "task": ref("Task"), "queued_at": {"type": "string"},
                "position": {"type": "integer"}}}),
            "totals": {"type": "object", "properties": {
                "all": ref("Totals"),
                "by_agent": {"type": "object", "additionalProperties": ref("Totals")},
                "by_model": {"type": "object", "additionalProperties": ref("Totals")}}},
            "blocked": array(ref("BlockedTask")),
            "events": array(ref("MillEvent")),
            "stats": {"type": "object"},
        },
    },
    "Project": {
        "type": "object",
        "properties": {"root": {"type": "string"}, "prefix": {"type": "string"},
                       "paused": {"type": "boolean"}, "mill_running": {"type": "boolean"},
                       "statuses": array({"type": "string"}),
                       "labels": array({"type": "string"}), "seq": {"type": "integer"},
                       "updatable_fields": array({"type": "string"}),
                       "stats": {"type": "object"}},
    },
    "Diff": {
        "type": "object",
        "properties": {"commit": {**_NULLABLE_STR,
                                  "description": "the commit the attempt made (null: none)"},
                       "base": {**_NULLABLE_STR,
                                "description": "the commit on the task's branch the attempt "
                                               "started from: the diff is from it"},
                       "diff": {"type": "string"},
                       "no_change": {"type": "boolean",
                                     "description": "the attempt changed nothing (no diff)"},
                       "note": _NULLABLE_STR,
                       "truncated": {"type": "boolean"}},
    },
    "Log": {
        "type": "object",
        "properties": {"path": {"type": "string"}, "kind": {"type": "string"},
                       "text": {"type": "string"}, "size": {"type": "integer"},
                       "truncated": {"type": "boolean"}},
    },
    "Paused": {"type": "object", "properties": {"paused": {"type": "boolean"}}},
    "TaskChanges": {
        "type": "object", "additionalProperties": False,
        "description": "Fields to change (any of the ledger's updatable fields).",
        "properties": {
            "title": {"type": "string"}, "description": {"type": "string"},
            "design": {"type": "string"}, "acceptance_criteria": {"type": "string"},
            "notes": {"type": "string"}, "status": {"type": "string", "enum": list(STATUSES)},
            "priority": {"type": "integer", "minimum": 0, "maximum": 4},
            "issue_type": {"type": "string"}, "assignee": _NULLABLE_STR,
            "external_ref": _NULLABLE_STR, "metadata": {"type": "object", "nullable": True},
            "checks": {"type": "array", "items": {"type": "string"}, "nullable": True},
            "agent": _NULLABLE_STR, "hints": {"type": "object", "nullable": True},
            "close_reason": _NULLABLE_STR,
        },
    },
    "NewComment": {
        "type": "object", "required": ["text"], "additionalProperties": False,
        "properties": {"text": {"type": "string", "minLength": 1},
                       "author": {"type": "string"}},
    },
}

def openapi_document(routes: list[RouteSpec]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for spec in routes:
        op: dict[str, Any] = {
            "operationId": spec.handler,
            "summary": spec.summary,
            "responses": {
                "200": {"description": "OK",
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
        "openapi": "3.0.3",
        "info": {"title": "taskmill dashboard API", "version": "1",
                 "description": "The JSON API the taskmill dashboard page itself uses. Errors "
                                "carry the ledger's error code."},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "Required when the server is bound to a "
                                          "non-loopback address (the token it printed)."},
            },
        },
    }
