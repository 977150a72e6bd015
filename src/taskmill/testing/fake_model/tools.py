"""Turning a scripted action into a call of one of the client's own tools.

Each CLI offers its tools in the request with JSON schemas. An action (``write_file``,
``edit_file``, ``shell``) is mapped to the client's tool by name, and the arguments are
filled by matching the schema's property names. When no file tool fits, writes and edits
fall back to a shell tool (heredoc / ``python3``), and Codex's ``apply_patch`` is used
when it is offered.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from taskmill.testing.fake_model.script import Reply


@dataclass(frozen=True)
class ToolSpec:
    """A tool the client offered."""

    name: str
    schema: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    kind: Literal["function", "custom"] = "function"
    """``custom``: a free-form tool (Codex's grammar-based ``apply_patch``)."""


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: Mapping[str, Any]
    call_id: str
    custom_input: str | None = None
    """Input of a free-form (``custom``) tool; ``arguments`` is then empty."""

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments, ensure_ascii=False)


class NoToolError(LookupError):
    """The client offers no tool that can carry out the scripted action."""


TOOL_NAMES: dict[str, tuple[str, ...]] = {
    "write_file": ("Write", "write_file", "write", "WriteFile", "create_file"),
    "edit_file": ("Edit", "replace", "edit", "edit_file", "str_replace", "EditFile"),
    "shell": (
        "Bash",
        "run_shell_command",
        "bash",
        "shell",
        "exec_command",
        "shell_command",
        "local_shell",
        "run_command",
    ),
}
PATH_KEYS = ("file_path", "absolute_path", "path", "filePath", "filename", "file", "target_file")
CONTENT_KEYS = ("content", "contents", "file_text", "text", "data")
OLD_KEYS = ("old_string", "oldString", "old_str", "old_text", "old")
NEW_KEYS = ("new_string", "newString", "new_str", "new_text", "new")
COMMAND_KEYS = ("command", "cmd", "script", "commands")

_CWD_PATTERNS = (
    re.compile(r"<cwd>\s*([^<\n]+?)\s*</cwd>"),
    re.compile(r"Working directory:\s*(/[^\s`'\"]*)"),
    re.compile(r"Primary working directory:\s*(/[^\s`'\"]*)"),
    re.compile(r"currently working in the directory:\s*(/[^\s`'\"]*)"),
    re.compile(r"Workspace Directories:\W*\n\s*-\s*(/[^\s`'\"]*)"),
    re.compile(r"(?:current )?working directory(?: is)?[:\s]+(/[^\s`'\"]*)", re.IGNORECASE),
)


def find_cwd(text: str) -> str | None:
    """The working directory the client revealed in its prompt, if any."""
    for pattern in _CWD_PATTERNS:
        match = pattern.search(text)
        if match:
            path = match.group(1).rstrip(".,;:)")
            if path.startswith("/"):
                return path
    return None


def new_call_id(prefix: str = "call_") -> str:
    return prefix + uuid.uuid4().hex[:24]


def _props(tool: ToolSpec) -> Mapping[str, Any]:
    props = tool.schema.get("properties")
    return props if isinstance(props, Mapping) else {}


def _find_key(props: Mapping[str, Any], keys: Sequence[str]) -> str | None:
    for key in keys:
        if key in props:
            return key
    return None


def _find_tool(tools: Sequence[ToolSpec], names: Sequence[str]) -> ToolSpec | None:
    for name in names:
        for tool in tools:
            if tool.name == name:
                return tool
    lowered = {n.lower() for n in names}
    for tool in tools:
        if tool.name.lower() in lowered:
            return tool
    return None


def _resolve(path: str, cwd: str | None) -> str:
    if posixpath.isabs(path) or cwd is None:
        return path
    return posixpath.normpath(posixpath.join(cwd, path))


def _fill_rest(tool: ToolSpec, args: dict[str, Any], summary: str) -> dict[str, Any]:
    """Give required parameters nothing matched a harmless value of the right type."""
    props = _props(tool)
    required = tool.schema.get("required")
    for key in required if isinstance(required, list) else []:
        if key in args or not isinstance(key, str):
            continue
        spec = props.get(key)
        kind = spec.get("type") if isinstance(spec, Mapping) else None
        enum = spec.get("enum") if isinstance(spec, Mapping) else None
        if isinstance(enum, list) and enum:
            args[key] = enum[0]
        elif kind == "boolean":
            args[key] = False
        elif kind in ("integer", "number"):
            args[key] = 1
        elif kind == "array":
            args[key] = []
        elif kind == "object":
            args[key] = {}
        else:
            args[key] = summary
    return args


def _shell_value(tool: ToolSpec, key: str, command: str) -> Any:
    spec = _props(tool).get(key)
    if isinstance(spec, Mapping) and spec.get("type") == "array":
        return ["bash", "-lc", command]
    return command


def write_command(path: str, content: str) -> str:
    """A shell command that writes ``content`` to ``path`` exactly (heredoc when possible)."""
    quoted = shlex.quote(path)
    parent = posixpath.dirname(path)
    mkdir = f"mkdir -p {shlex.quote(parent)} && " if parent else ""
    marker = "TASKMILL_EOF"
    while marker in content:
        marker += "_"
    if content.endswith("\n"):
        return f"{mkdir}cat > {quoted} <<'{marker}'\n{content}{marker}"
    return f"{mkdir}printf '%s' {shlex.quote(content)} > {quoted}"


def edit_command(path: str, old: str, new: str) -> str:
    """A shell command that replaces the first ``old`` with ``new`` in ``path``."""
    program = (
        "import pathlib, sys; p = pathlib.Path(sys.argv[1]); t = p.read_text(); "
        "o, n = sys.argv[2], sys.argv[3]; "
        "sys.exit('old text not found') if o not in t else p.write_text(t.replace(o, n, 1))"
    )
    return " ".join(shlex.quote(s) for s in ("python3", "-c", program, path, old, new))


def patch_add(path: str, content: str) -> str:
    lines = content.splitlines()
    body = "".join(f"+{line}\n" for line in lines)
    return f"*** Begin Patch\n*** Add File: {path}\n{body}*** End Patch\n"


def patch_update(path: str, old: str, new: str) -> str:
    minus = "".join(f"-{line}\n" for line in old.splitlines())
    plus = "".join(f"+{line}\n" for line in new.splitlines())
    return f"*** Begin Patch\n*** Update File: {path}\n@@\n{minus}{plus}*** End Patch\n"


def _shell_call(tools: Sequence[ToolSpec], command: str, summary: str) -> ToolCall | None:
    tool = _find_tool(tools, TOOL_NAMES["shell"])
    if tool is None:
        return None
    props = _props(tool)
    key = _find_key(props, COMMAND_KEYS) or "command"
    args: dict[str, Any] = {key: _shell_value(tool, key, command)}
    if "description" in props:
        args["description"] = summary
    return ToolCall(tool.name, _fill_rest(tool, args, summary), new_call_id())


def _patch_call(tools: Sequence[ToolSpec], patch: str) -> ToolCall | None:
    tool = _find_tool(tools, ("apply_patch",))
    if tool is None:
        return None
    if tool.kind == "custom":
        return ToolCall(tool.name, {}, new_call_id(), custom_input=patch)
    key = _find_key(_props(tool), ("input", "patch")) or "input"
    return ToolCall(tool.name, {key: patch}, new_call_id())


def _file_call(
    tools: Sequence[ToolSpec],
    action: str,
    path: str,
    values: Mapping[str, tuple[Sequence[str], str]],
) -> ToolCall | None:
    tool = _find_tool(tools, TOOL_NAMES[action])
    if tool is None:
        return None
    props = _props(tool)
    path_key = _find_key(props, PATH_KEYS)
    if path_key is None:
        return None
    args: dict[str, Any] = {path_key: path}
    for keys, value in values.values():
        key = _find_key(props, keys)
        if key is None:
            return None
        args[key] = value
    if "description" in props:
        args["description"] = f"{action} {path}"
    return ToolCall(tool.name, _fill_rest(tool, args, f"{action} {path}"), new_call_id())


def build_call(reply: Reply, tools: Sequence[ToolSpec], cwd: str | None) -> ToolCall:
    """The client tool call that carries out ``reply``'s action.

    Relative paths are resolved against ``cwd`` for file tools (several CLIs insist on
    absolute paths); shell commands and patches keep them relative, as they run in the cwd.

    Order of preference: write_file: a write tool, ``apply_patch`` (content ending in a
    newline), a shell heredoc; edit_file (exact substring replacement, like ``Edit``): an
    edit tool, a ``python3`` one-liner in the shell, ``apply_patch`` (whole lines only).
    """
    action = reply.tool
    if action not in TOOL_NAMES:
        tool = _find_tool(tools, (action or "",))
        if tool is None:
            raise NoToolError(f"the client offers no tool named {action!r}")
        args = dict(reply.args or {})
        if tool.kind == "custom":
            return ToolCall(tool.name, {}, new_call_id(), custom_input=str(args.get("input", "")))
        return ToolCall(tool.name, args, new_call_id())
    call: ToolCall | None = None
    if action == "write_file":
        assert reply.path is not None and reply.content is not None
        call = _file_call(
            tools, action, _resolve(reply.path, cwd), {"content": (CONTENT_KEYS, reply.content)}
        )
        if reply.content.endswith("\n") or not reply.content:
            call = call or _patch_call(tools, patch_add(reply.path, reply.content))
        call = call or _shell_call(
            tools, write_command(reply.path, reply.content), f"Write {reply.path}"
        )
    elif action == "edit_file":
        assert reply.path is not None and reply.old is not None and reply.new is not None
        values = {"old": (OLD_KEYS, reply.old), "new": (NEW_KEYS, reply.new)}
        call = _file_call(tools, action, _resolve(reply.path, cwd), values)
        call = call or _shell_call(
            tools, edit_command(reply.path, reply.old, reply.new), f"Edit {reply.path}"
        )
        call = call or _patch_call(tools, patch_update(reply.path, reply.old, reply.new))
    else:
        assert reply.command is not None
        call = _shell_call(tools, reply.command, "Run a scripted command")
    if call is None:
        names = ", ".join(t.name for t in tools) or "none"
        raise NoToolError(f"no client tool can carry out {action!r} (offered: {names})")
    if reply.args:
        merged = {**call.arguments, **reply.args}
        call = ToolCall(call.name, merged, call.call_id, call.custom_input)
    return call


def sample_json(schema: Any, depth: int = 0) -> Any:
    """A small value that satisfies ``schema`` (for clients that ask for JSON output).

    Enums prefer ``"user"`` so that Gemini-style "who speaks next" checks hand the turn back.
    """
    if not isinstance(schema, Mapping) or depth > 6:
        return "ok"
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return "user" if "user" in enum else enum[0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if isinstance(kind, str):
        kind = kind.lower()
    props = schema.get("properties")
    if kind == "object" or isinstance(props, Mapping):
        result: dict[str, Any] = {}
        for key, sub in (props or {}).items():
            result[key] = sample_json(sub, depth + 1)
        return result
    if kind == "array":
        return []
    if kind == "boolean":
        return False
    if kind in ("integer", "number"):
        low = schema.get("minimum")
        return low if isinstance(low, int | float) and not isinstance(low, bool) else 1
    return "Scripted answer."
