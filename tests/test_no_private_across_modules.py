"""No taskmill module reaches into another's private names (``_name``): what one module
uses of another is public (no underscore), so that a module's private parts can change
without breaking another.

An AST walk over ``src/taskmill``: a ``from <taskmill module> import _name``, or an
attribute ``X._name`` where ``_name`` is a name taskmill defines and ``X`` is not ``self`` /
``cls`` / ``super()`` or a class of the same module, is a finding (``os._exit`` is not:
taskmill defines no ``_exit``). A static walk cannot tell the type of ``X``: an object of a
class of the same module, whose private parts that module may use, is named in
:data:`SAME_MODULE`.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "taskmill"

SAME_MODULE = {
    ("mill/worktrees.py", "ws._lock"),  # the pool and its Workspace are one module
}
"""(module, expression): a private attribute of an object whose class is that module's."""
LEFT: set[tuple[str, str]] = set()
"""Known cross-module uses, left for their owners to make public (none may be added)."""


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def defined(source: str) -> set[str]:
    """The private names a module defines (functions, classes, attributes, variables)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return {name for name in names if _private(name)}


def findings(source: str, taskmill_names: set[str]) -> list[str]:
    """What of other taskmill modules' private names ``source`` uses (``taskmill_names``:
    the private names taskmill defines)."""
    tree = ast.parse(source)
    classes = {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    # what is bound to modules (and their names) from outside taskmill: os._exit is os's
    outside: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            outside |= {(a.asname or a.name).split(".")[0] for a in node.names
                        if a.name.split(".")[0] != "taskmill"}
        elif (isinstance(node, ast.ImportFrom) and not node.level
              and (node.module or "").split(".")[0] != "taskmill"):
            outside |= {a.asname or a.name for a in node.names}
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level or (node.module or "").split(".")[0] == "taskmill":
                found += [f"from {'.' * node.level}{node.module or ''} import {alias.name}"
                          for alias in node.names if _private(alias.name)]
        elif (isinstance(node, ast.Attribute) and _private(node.attr)
              and node.attr in taskmill_names):
            owner = node.value
            if isinstance(owner, ast.Name) and (owner.id in ("self", "cls")
                                                or owner.id in classes | outside):
                continue
            if (isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name)
                    and owner.func.id == "super"):
                continue
            found.append(ast.unparse(node))
    return found


def test_no_module_uses_another_modules_private_names() -> None:
    sources = {path.relative_to(SRC).as_posix(): path.read_text(encoding="utf-8")
               for path in sorted(SRC.rglob("*.py"))}
    names = set().union(*(defined(source) for source in sources.values()))
    problems = []
    for module, source in sources.items():
        for what in findings(source, names):
            if (module, what) not in SAME_MODULE | LEFT:
                problems.append(f"{module}: {what}")
    assert problems == [], ("use a public name (no leading underscore) for what another "
                            "module calls:\n" + "\n".join(problems))


def test_the_walk_finds_private_calls_across_modules() -> None:
    source = """
from .land import _recover_advance
from . import land
import os
import taskmill.mill.land as other

class Lander:
    def go(self):
        self.queue._advance(1, 2)
        land._recover_advance()
        other._x
        os._exit(0)
        self._mine()
        super()._hook()
        Lander._helper
"""
    names = {"_recover_advance", "_advance", "_x", "_mine", "_hook", "_helper", "_exit"}
    assert sorted(findings(source, names)) == [
        "from .land import _recover_advance", "land._recover_advance", "other._x",
        "self.queue._advance"]
