"""TOML plan files: a batch of tasks with dependencies, imported all or nothing.

::

    [defaults]                       # optional; used by tasks that do not give their own
    checks = ["python -m pytest -q"]
    priority = 2                     # also: labels, agent, issue_type, assignee, hints

    [[task]]
    key = "parse"                    # unique within the file
    title = "Parse the config file"
    description = "..."
    priority = 1
    checks = ["python -m pytest -q tests/test_parse.py"]
    after = ["setup"]                # blocks: keys in this file or existing task ids
    parent = "epic"                  # parent-child: a key in this file or a task id
    labels = ["config"]
    # also: design, acceptance_criteria, notes, issue_type, assignee, agent,
    #       hints (table), metadata (table), external_ref

Importing is idempotent. Each key is remembered in ``plan_keys`` under the plan's *source*:
the plan file's path relative to the repository root (the directory holding the ledger's
``.taskmill/``), with ``/`` separators, when the ledger is a file in a repository and the plan
lies inside it; otherwise the plan's resolved absolute path. So the same plan imported from
any working directory, or from any linked worktree, maps to the same tasks. Importing it
again updates those tasks instead of creating new ones:

- a field the plan (with its defaults) gives is set; a plan field it no longer gives goes
  back to its default -- except ``assignee``, which is only changed when the plan gives it
  (the mill sets it when it claims a task), and ``status``, which a plan never changes;
- labels are set to the plan's list;
- the ``blocks`` and ``parent-child`` dependencies the plan made (marked in ``deps.extra``)
  are added and removed to match ``after`` and ``parent``; dependencies added by other means
  are left alone;
- tasks whose key was removed from the plan are left alone.

Every problem -- TOML syntax, unknown fields, duplicate keys, a missing title, a bad
priority, an ``after``/``parent`` that is neither a key nor a task id, a dependency cycle --
is reported with the line of the file, before anything is written.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import readiness
from .errors import InvalidInput, NotFound, PlanError
from .ledger import Ledger
from .model import BLOCKS, PARENT_CHILD
from .paths import DB_FILE, LEDGER_DIR

TASK_FIELDS = (
    "key", "title", "description", "design", "acceptance_criteria", "notes", "priority",
    "issue_type", "assignee", "labels", "checks", "agent", "hints", "metadata", "external_ref",
    "after", "parent",
)
DEFAULT_FIELDS = ("checks", "priority", "labels", "agent", "issue_type", "assignee", "hints")
TOP_LEVEL = ("defaults", "task")
_TEXT_FIELDS = ("description", "design", "acceptance_criteria", "notes")
# Fields a re-import resets to their default when the plan no longer gives them.
_RESET = {"description": "", "design": "", "acceptance_criteria": "", "notes": "",
          "priority": 2, "issue_type": "task", "external_ref": None, "metadata": None,
          "checks": None, "agent": None, "hints": None}

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


def _value_line(layout: _Layout, section: _Section, name: str, value: str) -> int | None:
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
class _Task:
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


class _Checker:
    def __init__(self, name: str, layout: _Layout) -> None:
        self.name = name
        self.layout = layout

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


def _parse(name: str, text: str) -> tuple[_Checker, list[_Task]]:
    layout = _layout(text)
    checker = _Checker(name, layout)
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
                                hint="a plan has [defaults] and [[task]] tables; nothing was"
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
    tasks: list[_Task] = []
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
        tasks.append(_Task(index, key, section, values, given, labels, after, parent))
    return checker, tasks


# -- the source name -------------------------------------------------------------------------


def plan_source(ledger: Ledger, path: Path) -> str:
    """The name a plan's keys are remembered under (see the module docstring)."""
    resolved = path.resolve()
    db = ledger.path
    if db is not None:
        db = Path(db).resolve()
        if db.parent.name == LEDGER_DIR or db.name == DB_FILE:
            root = db.parent.parent
            try:
                return resolved.relative_to(root).as_posix()
            except ValueError:
                pass
    return resolved.as_posix()


# -- cycles ----------------------------------------------------------------------------------


def _find_cycle(graph: dict[str, list[str]], starts: list[str]) -> list[str] | None:
    """A closed path through one of ``starts``, or None.

    The path starts at the first of ``starts`` (in their order) that lies on the cycle.
    """
    start_set = set(starts)
    for group in readiness.cyclic_groups(graph, starts):
        if group & start_set:
            first = next(s for s in starts if s in group)
            return readiness.closed_path(graph, group, first)
    return None


# -- import ----------------------------------------------------------------------------------


def _marker(source: str) -> str:
    return json.dumps({"plan": source}, ensure_ascii=False, separators=(",", ":"))


def import_plan(ledger: Ledger, path: Path | str | os.PathLike[str], *,
                actor: str | None = None, source: str | None = None) -> dict[str, str]:
    """Import a TOML plan, all or nothing; returns ``{key: task id}`` in file order.

    ``source`` overrides the name the keys are remembered under (see :func:`plan_source`).
    Raises :class:`PlanError` naming the line of the first problem; then nothing is written.
    """
    plan_path = Path(path)
    name = str(path)
    try:
        text = plan_path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InvalidInput(f"no such file: {name}") from None
    except UnicodeDecodeError as exc:
        raise PlanError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {name}: {exc.strerror or exc}") from None
    checker, tasks = _parse(name, text)
    src = source if source is not None else plan_source(ledger, plan_path)
    marker = _marker(src)
    conn = ledger.conn
    by_key = {t.key: t for t in tasks}
    with ledger.transaction():
        known = dict(conn.execute("SELECT key, task_id FROM plan_keys WHERE source = ?", (src,)))
        for task in tasks:
            tid = known.get(task.key)
            if tid is not None and ledger.exists(tid):
                task.existing = tid
        # resolve the references
        for task in tasks:
            wanted = [(ref, BLOCKS, "after") for ref in task.after]
            if task.parent is not None:
                wanted.append((task.parent, PARENT_CHILD, "parent"))
            for ref, dep_type, fname in wanted:
                if ref in by_key:
                    target = f"key:{ref}"
                else:
                    try:
                        target = ledger.resolve(ref)
                    except (NotFound, InvalidInput) as exc:
                        line = (_value_line(checker.layout, task.section, fname, ref)
                                if task.section else None)
                        why = "ambiguous task id prefix" if isinstance(exc, InvalidInput) else (
                            "neither a key in this file nor a task id")
                        raise checker.error(line, f"task {task.key!r}: {fname} {ref!r} is {why}"
                                            ) from None
                task.refs.append((ref, target, dep_type))
        _check_cycles(ledger, checker, tasks, by_key, marker)
        # write: tasks first, so every key has an id
        ids: dict[str, str] = {}
        for task in tasks:
            if task.existing is None:
                ids[task.key] = _create(ledger, task, actor)
                conn.execute("INSERT INTO plan_keys (source, key, task_id) VALUES (?, ?, ?)"
                             " ON CONFLICT(source, key) DO UPDATE SET task_id = excluded.task_id",
                             (src, task.key, ids[task.key]))
            else:
                ids[task.key] = task.existing
                _refresh(ledger, task, actor)
        for task in tasks:
            _match_deps(ledger, task, ids, marker, actor)
    return ids


def _node(task: _Task) -> str:
    return task.existing if task.existing is not None else f"key:{task.key}"


def _check_cycles(ledger: Ledger, checker: _Checker, tasks: list[_Task],
                  by_key: dict[str, _Task], marker: str) -> None:
    """Refuse a plan whose dependencies, together with the ledger's, would form a cycle."""
    plan_ids = {t.existing for t in tasks if t.existing is not None}
    graph: dict[str, list[str]] = defaultdict(list)
    for a, b, extra in ledger.conn.execute(
            "SELECT issue_id, depends_on_id, extra FROM deps WHERE type IN (?, ?)",
            (BLOCKS, PARENT_CHILD)):
        if a in plan_ids and extra == marker:
            continue  # made by this plan: replaced by what the plan says now
        graph[a].append(b)
    for task in tasks:
        for _ref, target, _type in task.refs:
            dest = _node(by_key[target[4:]]) if target.startswith("key:") else target
            graph[_node(task)].append(dest)
    cycle = _find_cycle(graph, [_node(t) for t in tasks])
    if cycle is None:
        return
    names = {_node(t): t.key for t in tasks}
    shown = [names.get(n, n) for n in cycle]
    first = next((t for t in tasks if _node(t) in cycle), tasks[0])
    nxt = cycle[cycle.index(_node(first)) + 1]
    line = None
    if first.section is not None:
        for ref, target, dep_type in first.refs:
            dest = _node(by_key[target[4:]]) if target.startswith("key:") else target
            if dest == nxt:
                fname = "after" if dep_type == BLOCKS else "parent"
                line = _value_line(checker.layout, first.section, fname, ref)
                break
        else:
            line = first.section.header
    raise checker.error(line, f"dependency cycle: {' -> '.join(shown)}",
                        hint="each task waits on the next; remove one of these dependencies."
                        " Nothing was imported")


def _create(ledger: Ledger, task: _Task, actor: str | None) -> str:
    v = task.values
    return ledger._create(
        v["title"], description=v.get("description", ""), design=v.get("design", ""),
        acceptance_criteria=v.get("acceptance_criteria", ""), notes=v.get("notes", ""),
        status="open", priority=v.get("priority", 2), issue_type=v.get("issue_type", "task"),
        assignee=v.get("assignee"), labels=task.labels, external_ref=v.get("external_ref"),
        metadata=v.get("metadata"), checks=v.get("checks"), agent=v.get("agent"),
        hints=v.get("hints"), task_id=None, actor=actor)


def _refresh(ledger: Ledger, task: _Task, actor: str | None) -> None:
    """Bring an existing task in line with the plan (changed fields only)."""
    assert task.existing is not None
    tid = task.existing
    changes: dict[str, Any] = {"title": task.values["title"]}
    for name, default in _RESET.items():
        changes[name] = task.values.get(name, default)
    if "assignee" in task.values:
        changes["assignee"] = task.values["assignee"]
    ledger._update(tid, changes, actor=actor)
    current = [r[0] for r in ledger.conn.execute(
        "SELECT label FROM labels WHERE task_id = ? ORDER BY pos, label", (tid,))]
    if current != task.labels:
        ledger.conn.execute("DELETE FROM labels WHERE task_id = ?", (tid,))
        ledger.conn.executemany("INSERT INTO labels (task_id, label, pos) VALUES (?, ?, ?)",
                                [(tid, lb, i) for i, lb in enumerate(task.labels)])
        now = ledger.now()
        ledger.conn.execute("UPDATE tasks SET updated_at = ? WHERE id = ?", (now, tid))
        ledger.record("updated", tid, {"changes": {"labels": [current, task.labels]}},
                      actor=actor, ts=now)


def _match_deps(ledger: Ledger, task: _Task, ids: dict[str, str], marker: str,
                actor: str | None) -> None:
    conn = ledger.conn
    tid = ids[task.key]
    wanted: list[tuple[str, str]] = []
    for _ref, target, dep_type in task.refs:
        dest = ids[target[4:]] if target.startswith("key:") else target
        if (dest, dep_type) not in wanted:
            wanted.append((dest, dep_type))
    have = {(b, t): extra for b, t, extra in conn.execute(
        "SELECT depends_on_id, type, extra FROM deps WHERE issue_id = ? AND type IN (?, ?)",
        (tid, BLOCKS, PARENT_CHILD))}
    removed = False
    for (dest, dep_type), extra in have.items():
        if extra == marker and (dest, dep_type) not in wanted:
            conn.execute("DELETE FROM deps WHERE issue_id = ? AND depends_on_id = ? AND type = ?",
                         (tid, dest, dep_type))
            ledger.record("dep_removed", tid, {"depends_on": dest, "type": dep_type},
                          actor=actor)
            removed = True
    if removed:
        conn.execute("UPDATE tasks SET open_blockers = ? WHERE id = ?",
                     (readiness.count_open_blockers(conn, tid), tid))
        readiness.refresh(conn, [tid])
    for dest, dep_type in wanted:
        if (dest, dep_type) in have:
            continue
        ledger._add_dep(tid, dest, dep_type, actor=actor)
        conn.execute("UPDATE deps SET extra = ? WHERE issue_id = ? AND depends_on_id = ?"
                     " AND type = ?", (marker, tid, dest, dep_type))

