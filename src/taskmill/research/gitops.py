"""The git side of research: the branch, experiment refs, rebasing, patches, editable paths.

The research branch only moves by compare-and-swap (``git update-ref NEW OLD``), so several
workers (or a contribution from another process) can never lose each other's kept commits,
and its history stays linear: a candidate cut from an older best is replayed onto the new
best without a working tree (the merge of the two, whose base is the candidate's parent,
committed with the new best as its only parent). Every experiment's commit stays reachable
under ``refs/taskmill/research/<key>/<n>`` whatever its verdict.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

from ..errors import GitError, InvalidInput
from ..mill.git import Git, commit_tree, merge_tree

REFS = "refs/taskmill/research"


def experiment_ref(key: str, n: int, suffix: str = "") -> str:
    return f"{REFS}/{key}/{n}{suffix}"


def keep_ref(git: Git, ref: str, commit: str) -> None:
    """Point ``ref`` at ``commit`` (it stays reachable, for audit)."""
    git.run("update-ref", "-m", "taskmill research: experiment", ref, commit)


@lru_cache(maxsize=256)
def _pattern(glob: str) -> re.Pattern[str]:
    """A path glob as a regex: ``**`` any number of directories, ``*`` and ``?`` within one
    path segment, ``[...]`` a character class."""
    out, i = [], 0
    while i < len(glob):
        c = glob[i]
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and (end := glob.find("]", i + 1)) > i:
            body = glob[i + 1:end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z")


def matches(path: str, patterns: Iterable[str]) -> bool:
    return any(_pattern(p.lstrip("/").removeprefix("./")).match(path) for p in patterns)


def outside(paths: Iterable[str], editable: Sequence[str]) -> list[str]:
    """The paths no ``editable`` glob matches."""
    return [p for p in paths if not matches(p, editable)]


def changed_paths(git: Git, parent: str, commit: str) -> list[str]:
    """Every path ``commit`` changes relative to ``parent`` (both sides of a rename)."""
    out = git.run("diff", "--name-only", "--no-renames", "-z", parent, commit).stdout
    return [p for p in out.split("\0") if p]


def replay(git: Git, commit: str, parent: str, onto: str, message: str) -> str | None:
    """``commit`` (cut from ``parent``, an ancestor of ``onto``) replayed onto ``onto``: the
    new commit, or None when it conflicts with what ``onto`` changed meanwhile."""
    if parent == onto:
        return commit
    tree, _conflicts = merge_tree(git, None, onto, commit)
    if tree is None:
        return None
    return commit_tree(git, tree, [onto], message)


def advance(git: Git, branch: str, new: str, old: str) -> bool:
    """Compare-and-swap the research branch from ``old`` to ``new``."""
    return git.update_ref(f"refs/heads/{branch}", new, old,
                          f"taskmill research: keep {new[:12]}")


def apply_patch(git: Git, base: str, patch: str, message: str) -> str:
    """A commit on ``base`` with ``patch`` applied (no working tree: a temporary index).
    Raises :class:`InvalidInput` saying why a patch does not apply."""
    if not patch.strip():
        raise InvalidInput("the patch is empty", hint="make one with `git diff` or "
                                                      "`git format-patch`")
    fd, index = tempfile.mkstemp(prefix="taskmill-research-index-")
    os.close(fd)
    os.unlink(index)  # git wants to create it
    env = {**git.env, "GIT_INDEX_FILE": index}
    bare = Git(git.cwd, env)
    try:
        bare.run("read-tree", base)
        proc = bare.run("apply", "--cached", "--whitespace=nowarn", "-", input_text=patch,
                        check=False)
        if proc.returncode != 0:
            raise InvalidInput(f"the patch does not apply to the current best {base[:12]}: "
                               f"{(proc.stderr or proc.stdout).strip()[:1500]}",
                               hint="rebase it on the research branch first")
        tree = bare.out("write-tree")
    finally:
        for name in (index, index + ".lock"):
            Path(name).unlink(missing_ok=True)
    if tree == git.tree_of(base):
        raise InvalidInput("the patch changes nothing on the current best")
    return commit_tree(git, tree, [base], message)


def ensure_branch(git: Git, branch: str, start: str | None) -> str:
    """The research branch's tip, creating it at ``start`` (the user's HEAD) when missing."""
    tip = git.rev(f"refs/heads/{branch}")
    if tip is not None:
        return tip
    if start is None:
        raise InvalidInput(f"the research branch {branch!r} does not exist and there is no "
                           "commit to start it from", hint="commit something first")
    if not git.update_ref(f"refs/heads/{branch}", start, "0" * 40,
                          "taskmill research: start"):
        tip = git.rev(f"refs/heads/{branch}")
        if tip is None:
            raise GitError(f"could not create the research branch {branch!r}")
        return tip
    return start
