"""Reading a TOML plan file (the format is described in :mod:`taskmill.plan`).

tomllib gives no positions, so :func:`parse_plan` first finds where each ``[[task]]`` table
and key stands in the text, then checks every task and applies the ``[defaults]``; every
problem is a :class:`PlanError` naming its line. Nothing here touches the ledger.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import PlanError
from .validation import ROLE_NAME_RE

TASK_FIELDS = (
    "key", "title", "description", "design", "acceptance_criteria", "notes", "priority",
    "issue_type", "assignee", "labels", "checks", "agent", "hints", "metadata", "external_ref",
    "after", "parent", "role",
)
DEFAULT_FIELDS = ("checks", "priority", "labels", "agent", "issue_type", "assignee", "hints",
                  "role")
TOP_LEVEL = ("defaults", "task", "pour")
_TEXT_FIELDS = ("description", "design", "acceptance_criteria", "notes")

_KEY_RE = re.compile(r"""^\s*(?P<k>[A-Za-z0-9_-]+|"[^"]*"|'[^']*')\s*[.=]""")
_HEADER_RE = re.compile(r"^\s*(?P<open>\[\[?)\s*(?P<name>[^\]]*?)\s*\]\]?\s*(#.*)?$")
_TOML_POS_RE = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


# -- where things are in the file ------------------------------------------------------------


@dataclass
class _Section:
    header: int | None
    """Line of the ``[[task]]`` / ``[defaults]`` header (None: top level)."""
    end: int
    """Last line of the section."""
    fields: dict[str, int] = field(default_factory=dict)


@dataclass
class _Layout:
    lines: list[str]
    top: _Section
    defaults: _Section | None = None
    tasks: list[_Section] = field(default_factory=list)


def _unquote(name: str) -> str:
    name = name.strip()
    if len(name) >= 2 and name[0] == name[-1] and name[0] in "\"'":
        return name[1:-1]
    return name


def _strip_strings(text: str) -> str:
    """``text`` with its one-line strings and its comment removed (for bracket counting)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "#":
            break
        if ch in "\"'":
            j = i + 1
            while j < len(text) and text[j] != ch:
                j += 2 if ch == '"' and text[j] == "\\" else 1
            i = j + 1
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _layout(text: str) -> _Layout:
    """Find the ``[[task]]`` headers and the lines of their keys (tomllib gives no positions)."""
    lines = text.splitlines()
    layout = _Layout(lines, _Section(None, len(lines)))
    current: _Section | None = layout.top
    in_multi: str | None = None
    depth = 0  # inside a multi-line array or inline table
    for number, raw in enumerate(lines, start=1):
        if in_multi is not None:
            if raw.count(in_multi) % 2 == 1:
                in_multi = None
            continue
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        header = _HEADER_RE.match(raw) if depth == 0 else None
        if header:
            name = ".".join(_unquote(p) for p in header["name"].split("."))
            is_array = header["open"] == "[["
            if current is not None:
                current.end = number - 1
            if name == "task" and is_array:
                current = _Section(number, len(lines))
                layout.tasks.append(current)
            elif name == "defaults" and not is_array:
                current = _Section(number, len(lines))
                layout.defaults = current
            elif name.startswith("task.") and layout.tasks:
                # a sub-table of the last task, such as [task.hints]
                sub = name.split(".", 1)[1].split(".", 1)[0]
                layout.tasks[-1].fields.setdefault(sub, number)
                current = None
            else:
                layout.top.fields.setdefault(name.split(".", 1)[0], number)
                current = None
            continue
        value = raw
        if depth == 0:
            key = _KEY_RE.match(raw)
            if key and current is not None:
                current.fields.setdefault(_unquote(key["k"]), number)
            value = raw.split("=", 1)[1] if key and "=" in raw else raw
        for quote in ('"""', "'''"):
            if value.count(quote) % 2 == 1:
                in_multi = quote
                value = value.split(quote, 1)[0]
                break
        plain = _strip_strings(value)
        depth = max(0, depth + plain.count("[") + plain.count("{")
                    - plain.count("]") - plain.count("}"))
    if current is not None:
        current.end = len(lines)
    return layout


def _inline_sections(layout: _Layout, raw_tasks: list[dict[str, Any]]) -> list[_Section | None]:
    """Sections for tasks written as inline tables: from the line of each ``key = "..."``."""
    found: list[_Section | None] = []
    starts: list[int] = []
    for raw in raw_tasks:
        key = raw.get("key")
        line = None
        if isinstance(key, str):
            pattern = re.compile(r"""(^|[{,\s])key\s*=\s*(["'])""" + re.escape(key) + r"\2")
            line = next((n for n, text in enumerate(layout.lines, start=1)
                         if n not in starts and pattern.search(text)), None)
        if line is None:
            found.append(None)
            continue
        starts.append(line)
        found.append(_Section(line, len(layout.lines)))
    ordered = sorted(s.header for s in found if s is not None and s.header is not None)
    for section in found:
        if section is not None and section.header is not None:
            later = [n for n in ordered if n > section.header]
            section.end = later[0] - 1 if later else len(layout.lines)
    return found


def value_line(layout: _Layout, section: _Section, name: str, value: str) -> int | None:
    """The line of ``value`` (a quoted string) inside field ``name`` of ``section``."""
    start = section.fields.get(name, section.header)
    if start is None:
        return None
    for quote in ('"', "'"):
        needle = f"{quote}{value}{quote}"
        for number in range(start, section.end + 1):
            if needle in layout.lines[number - 1]:
                return number
    return start


# -- checking the plan -----------------------------------------------------------------------


@dataclass
class PlanTask:
    index: int
    key: str
    section: _Section | None
    values: dict[str, Any]
    """The task's fields with the defaults applied (without key, after, parent)."""
    given: set[str]
    """The fields the plan (or its defaults) gives."""
    labels: list[str]
    after: list[str]
    parent: str | None
    # filled in later
    existing: str | None = None
    refs: list[tuple[str, str, str]] = field(default_factory=list)
    """(reference as written, resolved target: "key:<k>" or a task id, dep type)"""


class Checker:
    def __init__(self, name: str, layout: _Layout,
                 agent_problem: Callable[[str], str | None] | None = None,
                 role_problem: Callable[[str], str | None] | None = None) -> None:
        self.name = name
        self.layout = layout
        self.agent_problem = agent_problem
        """Why an agent name names no agent (None: it does); None: agents are not checked."""
        self.role_problem = role_problem
        """Why a role name names no role file (None: it does); None: roles are not checked."""

    def error(self, line: int | None, message: str, *, hint: str | None = None) -> PlanError:
        where = f"{self.name}, line {line}" if line else self.name
        return PlanError(f"{where}: {message}", hint=hint or "nothing was imported")

    def field_line(self, section: _Section | None, name: str) -> int | None:
        if section is None:
            return None
        return section.fields.get(name, section.header)

    def task_label(self, index: int, key: Any) -> str:
        return f"task {key!r}" if isinstance(key, str) and key else f"task {index + 1}"

    def check_value(self, section: _Section | None, where: str, name: str, value: Any) -> Any:
        line = self.field_line(section, name)
        if name in ("title", "key"):
            if not isinstance(value, str) or not value.strip():
                raise self.error(line, f"{where}: {name} must be a non-empty string")
            return value
        if name in (*_TEXT_FIELDS, "issue_type", "assignee", "agent", "external_ref", "parent"):
            if not isinstance(value, str) or (name not in _TEXT_FIELDS and not value.strip()):
                raise self.error(line, f"{where}: {name} must be a"
                                 f"{'' if name in _TEXT_FIELDS else ' non-empty'} string")
            problem = self.agent_problem(value) if name == "agent" and self.agent_problem else None
            if problem is not None:
                raise self.error(line, f"{where}: {problem}",
                                 hint=f"add [agents.{value}] to .taskmill/config.toml or name "
                                      "another agent; nothing was imported")
            return value
        if name == "role":
            if not isinstance(value, str) or not ROLE_NAME_RE.fullmatch(value):
                raise self.error(line, f"{where}: role must be a role's name (letters, digits,"
                                 f" '_' and '-'), not {value!r}")
            problem = self.role_problem(value) if self.role_problem else None
            if problem is not None:
                raise self.error(line, f"{where}: {problem}",
                                 hint=f"create .taskmill/roles/{value}.toml or name another"
                                      " role; nothing was imported")
            return value
        if name == "priority":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 4:
                raise self.error(line, f"{where}: priority must be an integer from 0 (highest)"
                                 f" to 4, not {value!r}")
            return value
        if name in ("checks", "labels", "after"):
            if not isinstance(value, list) or not all(
                    isinstance(v, str) and v.strip() for v in value):
                what = {"checks": "shell commands", "labels": "labels",
                        "after": "keys or task ids"}[name]
                raise self.error(line, f"{where}: {name} must be a list of non-empty strings"
                                 f" ({what})")
            return list(dict.fromkeys(value)) if name != "checks" else list(value)
        if name in ("hints", "metadata"):
            if not isinstance(value, dict):
                raise self.error(line, f"{where}: {name} must be a table")
            return _plain(value)
        raise AssertionError(name)


def _plain(value: Any) -> Any:
    """TOML values as JSON values (dates become ISO strings)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def parse_plan(name: str, text: str, *, agent_problem: Callable[[str], str | None] | None = None,
               role_problem: Callable[[str], str | None] | None = None
               ) -> tuple[Checker, list[PlanTask]]:
    """``agent_problem``, ``role_problem``: see :class:`Checker` (the CLI passes the
    project's)."""
    layout = _layout(text)
    checker = Checker(name, layout, agent_problem, role_problem)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = _TOML_POS_RE.search(message)
        line: int | None = None
        if found:
            line = int(found[1])
            message = message[:found.start()]
        elif "end of document" in message:
            line = max(1, len(layout.lines))
            message = message.replace(" (at end of document)", "")
        raise checker.error(line, f"TOML syntax error: {message}") from None
    for top in data:
        if top not in TOP_LEVEL:
            raise checker.error(layout.top.fields.get(top),
                                f"unknown table or key {top!r}",
                                hint="a plan has [defaults], [[task]] and [[pour]] tables; nothing was"
                                " imported")
    defaults_raw = data.get("defaults", {})
    dsec = layout.defaults
    if dsec is None and "defaults" in layout.top.fields:  # defaults = { ... }
        line = layout.top.fields["defaults"]
        dsec = _Section(line, line)
    if not isinstance(defaults_raw, dict):
        raise checker.error(layout.top.fields.get("defaults"), "defaults must be a table")
    defaults: dict[str, Any] = {}
    for key, value in defaults_raw.items():
        if key not in DEFAULT_FIELDS:
            raise checker.error(checker.field_line(dsec, key), f"[defaults]: unknown field {key!r}",
                                hint=f"defaults may set {', '.join(DEFAULT_FIELDS)};"
                                " nothing was imported")
        defaults[key] = checker.check_value(dsec, "[defaults]", key, value)
    raw_tasks = data.get("task", [])
    if not isinstance(raw_tasks, list) or not all(isinstance(t, dict) for t in raw_tasks):
        raise checker.error(layout.top.fields.get("task"), "task must be an array of tables"
                            " ([[task]])")
    sections: list[_Section | None] = list(layout.tasks)
    if len(sections) != len(raw_tasks):  # e.g. task = [{...}, ...]
        sections = _inline_sections(layout, raw_tasks)
    tasks: list[PlanTask] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_tasks):
        section = sections[index]
        where = checker.task_label(index, raw.get("key"))
        for key in raw:
            if key not in TASK_FIELDS:
                raise checker.error(checker.field_line(section, key),
                                    f"{where}: unknown field {key!r}",
                                    hint=f"a task may have {', '.join(TASK_FIELDS)};"
                                    " nothing was imported")
        if "key" not in raw:
            raise checker.error(section.header if section else None,
                                f"{where}: missing key (a name for the task, unique in the file)")
        key = checker.check_value(section, where, "key", raw["key"])
        if key in seen:
            raise checker.error(checker.field_line(section, "key"),
                                f"duplicate key {key!r} (first used in task {seen[key] + 1})")
        seen[key] = index
        if "title" not in raw:
            raise checker.error(section.header if section else None, f"{where}: missing title")
        values: dict[str, Any] = {}
        for name in TASK_FIELDS:
            if name in ("key", "after", "parent", "labels"):
                continue
            if name in raw:
                values[name] = checker.check_value(section, where, name, raw[name])
            elif name in defaults:
                values[name] = defaults[name]
        given = set(values)
        if "labels" in raw:
            labels = checker.check_value(section, where, "labels", raw["labels"])
        else:
            labels = list(defaults.get("labels", []))
        after = checker.check_value(section, where, "after", raw["after"]) if "after" in raw else []
        parent = checker.check_value(section, where, "parent", raw["parent"]) if "parent" in raw else None
        tasks.append(PlanTask(index, key, section, values, given, labels, after, parent))
    return checker, tasks
