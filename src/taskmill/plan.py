"""TOML plan files: a batch of tasks with dependencies, imported all or nothing.

::

    [defaults]                       # optional; used by tasks that do not give their own
    checks = ["python -m pytest -q"]
    priority = 2                     # also: labels, agent, issue_type, assignee, hints, role

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
    #       hints (table), metadata (table), external_ref, role (.taskmill/roles/NAME.toml)

A plan may also pour formulas: ``[[pour]]`` tables (``key``, ``formula``, ``vars``; see
:mod:`taskmill.formulas.plan_pours`), poured in the import's transaction, once per key.

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

Reading and checking the file is :mod:`taskmill.plan_file`; this module resolves the
references, refuses cycles and writes the tasks.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InvalidInput, NotFound, PlanError, read_text_input
from .formulas.plan_pours import parse_pours, pour_plan_items
from .ledger import Ledger
from .ledger.graph import closed_path, cyclic_groups
from .model import BLOCKS, PARENT_CHILD
from .paths import DB_FILE, LEDGER_DIR
from .plan_file import Checker, PlanTask, parse_plan, value_line

# Fields a re-import resets to their default when the plan no longer gives them.
_RESET = {"description": "", "design": "", "acceptance_criteria": "", "notes": "",
          "priority": 2, "issue_type": "task", "external_ref": None, "metadata": None,
          "checks": None, "agent": None, "hints": None, "role": None}


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
    for group in cyclic_groups(graph, starts):
        if group & start_set:
            first = next(s for s in starts if s in group)
            return closed_path(graph, group, first)
    return None


# -- import ----------------------------------------------------------------------------------


@dataclass
class PlanReport:
    """What an import of a plan did: tasks created, updated and unchanged (as a Beads import
    reports them), and the id of each key."""

    source: str
    ids: dict[str, str] = field(default_factory=dict)
    created_ids: list[str] = field(default_factory=list)
    updated_ids: list[str] = field(default_factory=list)
    unchanged_ids: list[str] = field(default_factory=list)

    @property
    def created(self) -> int:
        return len(self.created_ids)

    @property
    def updated(self) -> int:
        return len(self.updated_ids)

    @property
    def unchanged(self) -> int:
        return len(self.unchanged_ids)

    def to_json(self) -> dict[str, object]:
        return {"source": self.source, "total": len(self.ids), "created": self.created,
                "updated": self.updated, "unchanged": self.unchanged, "tasks": dict(self.ids),
                "created_ids": list(self.created_ids), "updated_ids": list(self.updated_ids)}


def _marker(source: str) -> str:
    return json.dumps({"plan": source}, ensure_ascii=False, separators=(",", ":"))


def import_plan(ledger: Ledger, path: Path | str | os.PathLike[str], *,
                actor: str | None = None, source: str | None = None,
                agent_problem: Callable[[str], str | None] | None = None,
                role_problem: Callable[[str], str | None] | None = None) -> dict[str, str]:
    """Import a TOML plan, all or nothing; returns ``{key: task id}`` in file order.

    ``source`` overrides the name the keys are remembered under (see :func:`plan_source`).
    ``agent_problem`` says why an ``agent`` names no agent
    (:meth:`taskmill.config.Config.agent_problem`); without it agents are not checked.
    ``role_problem`` says why a ``role`` names no role file (:func:`taskmill.roles.role_problem`);
    without it roles are not checked. Raises :class:`PlanError` naming the line of the first problem; then nothing is written.
    """
    return import_plan_report(ledger, path, actor=actor, source=source,
                              agent_problem=agent_problem, role_problem=role_problem).ids


def import_plan_report(ledger: Ledger, path: Path | str | os.PathLike[str], *,
                       actor: str | None = None, source: str | None = None,
                       agent_problem: Callable[[str], str | None] | None = None,
                       role_problem: Callable[[str], str | None] | None = None) -> PlanReport:
    """:func:`import_plan`, reporting which tasks it created, updated or left unchanged."""
    plan_path = Path(path)
    name = str(path)
    text = read_text_input(plan_path, name, not_text=PlanError)
    checker, tasks = parse_plan(name, text, agent_problem=agent_problem,
                                role_problem=role_problem)
    src = source if source is not None else plan_source(ledger, plan_path)
    marker = _marker(src)
    by_key = {t.key: t for t in tasks}
    pours = parse_pours(name, text, set(by_key))
    taskmill_dir = Path(ledger.path).parent if ledger.path is not None else None
    if pours and taskmill_dir is None:
        raise PlanError(f"{name}: [[pour]] needs a ledger in a repository (.taskmill/formulas)")
    with ledger.transaction() as store:
        known = store.plan_keys(src)
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
                        line = (value_line(checker.layout, task.section, fname, ref)
                                if task.section else None)
                        why = "ambiguous task id prefix" if isinstance(exc, InvalidInput) else (
                            "neither a key in this file nor a task id")
                        raise checker.error(line, f"task {task.key!r}: {fname} {ref!r} is {why}"
                                            ) from None
                task.refs.append((ref, target, dep_type))
        _check_cycles(ledger, checker, tasks, by_key, marker)
        # write: tasks first, so every key has an id
        report = PlanReport(src)
        ids = report.ids
        changed: set[str] = set()
        for task in tasks:
            try:
                if task.existing is None:
                    ids[task.key] = _create(ledger, task, actor)
                    report.created_ids.append(ids[task.key])
                    store.set_plan_key(src, task.key, ids[task.key])
                else:
                    ids[task.key] = task.existing
                    if _refresh(ledger, task, actor):
                        changed.add(task.existing)
            except PlanError:
                raise
            except InvalidInput as exc:  # the ledger's limits (validation): name the task
                line = task.section.header if task.section else None
                raise checker.error(line, f"task {task.key!r}: {exc.message}") from None
        for task in tasks:
            if _match_deps(ledger, task, ids, marker, actor):
                changed.add(ids[task.key])
        for task in tasks:
            if task.existing is not None:
                (report.updated_ids if task.existing in changed
                 else report.unchanged_ids).append(task.existing)
        if pours:  # [[pour]]: formulas poured in the same transaction
            assert taskmill_dir is not None
            for key, epic, created in pour_plan_items(ledger, name, pours, source=src,
                                                      taskmill_dir=taskmill_dir, actor=actor):
                ids[key] = epic
                (report.created_ids if created else report.unchanged_ids).append(epic)
    return report


def _node(task: PlanTask) -> str:
    return task.existing if task.existing is not None else f"key:{task.key}"


def _check_cycles(ledger: Ledger, checker: Checker, tasks: list[PlanTask],
                  by_key: dict[str, PlanTask], marker: str) -> None:
    """Refuse a plan whose dependencies, together with the ledger's, would form a cycle."""
    plan_ids = {t.existing for t in tasks if t.existing is not None}
    graph: dict[str, list[str]] = defaultdict(list)
    for a, b, _type, extra in ledger.store.deps_with_extra((BLOCKS, PARENT_CHILD)):
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
                line = value_line(checker.layout, first.section, fname, ref)
                break
        else:
            line = first.section.header
    raise checker.error(line, f"dependency cycle: {' -> '.join(shown)}",
                        hint="each task waits on the next; remove one of these dependencies."
                        " Nothing was imported")


def _create(ledger: Ledger, task: PlanTask, actor: str | None) -> str:
    v = task.values
    return ledger.create(
        v["title"], description=v.get("description", ""), design=v.get("design", ""),
        acceptance_criteria=v.get("acceptance_criteria", ""), notes=v.get("notes", ""),
        status="open", priority=v.get("priority", 2), issue_type=v.get("issue_type", "task"),
        assignee=v.get("assignee"), labels=task.labels, external_ref=v.get("external_ref"),
        metadata=v.get("metadata"), checks=v.get("checks"), agent=v.get("agent"),
        hints=v.get("hints"), role=v.get("role"), task_id=None, actor=actor).id


def _refresh(ledger: Ledger, task: PlanTask, actor: str | None) -> bool:
    """Bring an existing task in line with the plan (changed fields only); whether anything
    changed."""
    assert task.existing is not None
    tid = task.existing
    changes: dict[str, Any] = {"title": task.values["title"]}
    for name, default in _RESET.items():
        changes[name] = task.values.get(name, default)
    if "assignee" in task.values:
        changes["assignee"] = task.values["assignee"]
    changed = bool(ledger.change(tid, changes, actor=actor))
    return ledger.set_labels(tid, task.labels, actor=actor) or changed


def _match_deps(ledger: Ledger, task: PlanTask, ids: dict[str, str], marker: str,
                actor: str | None) -> bool:
    """Add and remove the plan's dependencies of the task; whether any changed."""
    tid = ids[task.key]
    wanted: list[tuple[str, str]] = []
    for _ref, target, dep_type in task.refs:
        dest = ids[target[4:]] if target.startswith("key:") else target
        if (dest, dep_type) not in wanted:
            wanted.append((dest, dep_type))
    have = {(b, t): extra for _a, b, t, extra
            in ledger.store.deps_with_extra((BLOCKS, PARENT_CHILD), tid)}
    removed = False
    for (dest, dep_type), extra in have.items():
        if extra == marker and (dest, dep_type) not in wanted:
            ledger.remove_dep(tid, dest, dep_type, actor=actor)
            removed = True
    added = False
    for dest, dep_type in wanted:
        if (dest, dep_type) in have:
            continue
        ledger.add_dep(tid, dest, dep_type, actor=actor, extra=marker)
        added = True
    return removed or added

