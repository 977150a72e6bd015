"""JSON Schemas generated from the records (:mod:`taskmill.model`), and the fields a client
may send, for the web API's OpenAPI document and the MCP tools' input schemas.

Nothing here is written twice: the records are described by pydantic (:class:`TypeAdapter`
over the dataclasses: an attribute's type is its schema, its docstring its description, and
every field their ``to_json`` writes is required); a task change is the task's own fields
named by :data:`~taskmill.model.UPDATABLE_FIELDS` with the limits of
:mod:`taskmill.validation`; statuses and dependency types are the model's ``Literal`` types.

The schemas are JSON Schema 2020-12, the dialect of OpenAPI 3.1. Only the web and the MCP
server import this module (pydantic is not loaded by the CLI).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, SkipJsonSchema

from .model import UPDATABLE_FIELDS, TaskStatus
from .model import Task as TaskRecord
from .validation import CHECKS_MAX, NAME_MAX, PRIORITY_MAX, PRIORITY_MIN, ROLE_NAME_RE, TITLE_MAX

REF_TEMPLATE = "#/components/schemas/{model}"

# -- the fields a client sets, with the ledger's limits (see taskmill.validation) -----------------

Priority = Annotated[int, Field(ge=PRIORITY_MIN, le=PRIORITY_MAX,
                                description=f"{PRIORITY_MIN} (highest) to {PRIORITY_MAX}.")]
Title = Annotated[str, Field(min_length=1, max_length=TITLE_MAX)]
Name = Annotated[str, Field(max_length=NAME_MAX)]
Checks = Annotated[list[str], Field(max_length=CHECKS_MAX)]

FIELD_TYPES: dict[str, Any] = {
    "title": Title,
    "status": TaskStatus,
    "priority": Priority,
    "issue_type": Annotated[str, Field(min_length=1, max_length=NAME_MAX)],
    "assignee": Name | None,
    "external_ref": Name | None,
    "agent": Name | None,
    "checks": Checks | None,
    "role": Annotated[str, Field(pattern=f"^{ROLE_NAME_RE.pattern}$")] | None,
}
"""A task field's type where the ledger accepts less than the record holds (the other fields
take the record's own type): imported records may carry any status, a user sets one of
:data:`~taskmill.model.TaskStatus`."""

def _field_type(record: type, name: str) -> Any:
    return FIELD_TYPES.get(name, get_type_hints(record)[name])


TaskChanges = create_model(  # type: ignore[call-overload]
    "TaskChanges", __config__=ConfigDict(
        extra="forbid", title="TaskChanges",
        json_schema_extra={"description": "Fields to change (any of the ledger's updatable "
                                          "fields)."}),
    **{name: (_field_type(TaskRecord, name), None) for name in UPDATABLE_FIELDS})
"""A change of a task (``PATCH /api/tasks/{id}``): any of its updatable fields."""



class NewComment(BaseModel):
    """A comment to add (``POST /api/tasks/{id}/comments``): a comment's text and, optionally,
    its author."""

    model_config = ConfigDict(extra="forbid", title="NewComment")
    text: str = Field(min_length=1)
    author: Name | SkipJsonSchema[None] = None


# -- generating ---------------------------------------------------------------------------------


class _Generator(GenerateJsonSchema):
    """pydantic's generator without the titles it makes up from names ("Issue Id")."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def _tidy(node: Any, *, schema: bool = True) -> Any:
    """Drop what says nothing to a client: titles, and defaults (absent is not the same as the
    default in a change, and in a response every field is present); descriptions (from
    docstrings) on one line."""
    if isinstance(node, list):
        return [_tidy(v) for v in node]
    if not isinstance(node, dict):
        return node
    if not schema:  # a mapping of names to schemas
        return {k: _tidy(v) for k, v in node.items()}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("title", "default"):
            continue
        if key == "description" and isinstance(value, str):
            value = described(value)
        out[key] = _tidy(value, schema=key not in ("properties", "$defs", "patternProperties"))
    return out


def described(docstring: str) -> str:
    """A docstring as a description: on one line, its roles (``:mod:`x```) as code."""
    return re.sub(r":\w+:`~?([^`]+)`", r"``\1``", " ".join(docstring.split()))


def component_schemas(types: Mapping[str, Any], *,
                      renames: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The schemas of ``types`` (name -> a record, model or type) and of every type they
    refer to, by name, referring to each other as ``#/components/schemas/NAME``.

    ``renames``: the component name of a type whose class has another name.
    """
    mode: JsonSchemaMode = "serialization"
    generated = [(name, mode, TypeAdapter(t)) for name, t in types.items()]
    top, defs = TypeAdapter.json_schemas(generated, ref_template=REF_TEMPLATE,
                                         schema_generator=_Generator)
    out: dict[str, Any] = dict(defs.get("$defs", {}))
    for (name, _mode), schema in top.items():
        if "$ref" not in schema:  # (a class is among the definitions, by its own name)
            out[name] = schema
    out = _tidy(out, schema=False)
    return _renamed(out, renames) if renames else out


def _renamed(node: Any, renames: Mapping[str, str]) -> Any:
    refs = {REF_TEMPLATE.format(model=old): REF_TEMPLATE.format(model=new)
            for old, new in renames.items()}

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: refs.get(v, v) if k == "$ref" else walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    renamed: dict[str, Any] = walk(node)
    return {renames.get(k, k): v for k, v in renamed.items()}


def task_schema(record: dict[str, Any]) -> dict[str, Any]:
    """The schema of ``Task.to_json()`` from the schema of the record: without the fields only
    its full form has, with the derived ``container``, and ``interrupted`` only when true."""
    props = {k: v for k, v in record["properties"].items() if k not in TaskRecord.FULL_FIELDS}
    props["container"] = {"type": "boolean",
                          "description": described(TaskRecord.container.__doc__ or "")}
    required = [k for k in props if k != "interrupted"]
    return {**record, "properties": props, "required": required}


def extended(base: dict[str, Any], extra: dict[str, Any], **keywords: Any) -> dict[str, Any]:
    """``base`` (an object schema) with the properties of ``extra`` added."""
    required = [*base.get("required", []), *extra.get("required", [])]
    out = {**base, "properties": {**base["properties"], **extra["properties"]},
           "required": required, **keywords}
    if not required:
        del out["required"]
    return out
