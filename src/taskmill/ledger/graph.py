"""Graph algorithms over dependencies: strongly connected groups (cycles), one closed path
through a group, a shortest path, and the spread of gating down ``parent-child`` edges.
Used by the stores (each reading its edges its own way: the walks here hold no SQL) and by
the plan importer."""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from ..model import DONE_STATUSES, HOLDING_STATUSES


def cyclic_groups(
    graph: Mapping[str, Sequence[str]], roots: Iterable[str]
) -> Iterator[set[str]]:
    """The strongly connected groups of ``graph`` that hold a cycle (iterative Tarjan).

    The search starts from each of ``roots`` in turn; a group is yielded as soon as it is
    complete, so a caller that wants only one can stop early.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    counter = 0
    for root in roots:
        if root in index:
            continue
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        frames: list[tuple[str, int]] = [(root, 0)]
        while frames:
            node, i = frames[-1]
            edges = graph.get(node, [])
            if i < len(edges):
                frames[-1] = (node, i + 1)
                nxt = edges[i]
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    frames.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            frames.pop()
            if frames:
                parent = frames[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group: set[str] = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                if len(group) > 1 or node in graph.get(node, []):
                    yield group


def closed_path(graph: Mapping[str, Sequence[str]], group: set[str], start: str) -> list[str]:
    """One closed walk through a strongly connected group from ``start``: [start, ..., start]."""
    came: dict[str, str] = {}
    queue: deque[str] = deque([start])
    seen = {start}
    while queue:
        node = queue.popleft()
        for nxt in graph.get(node, []):
            if nxt not in group:
                continue
            if nxt == start:
                path = [start]
                back = node
                while back != start:
                    path.append(back)
                    back = came[back]
                path.append(start)
                path.reverse()
                return path
            if nxt not in seen:
                seen.add(nxt)
                came[nxt] = node
                queue.append(nxt)
    return [start, start]


def shortest_path(start: str, goal: str,
                  edges: Callable[[str], Iterable[str]]) -> list[str] | None:
    """A shortest path from ``start`` to ``goal`` along ``edges(node)`` (breadth first), or
    None when there is none."""
    if start == goal:
        return [start]
    came: dict[str, str | None] = {start: None}
    queue: deque[str] = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in edges(node):
            if nxt in came:
                continue
            came[nxt] = node
            if nxt == goal:
                path = [goal]
                back: str | None = node
                while back is not None:
                    path.append(back)
                    back = came[back]
                return list(reversed(path))
            queue.append(nxt)
    return None


def gating_scope(roots: Iterable[str], status_of: Callable[[str], str | None],
                 children: Callable[[str], Iterable[tuple[str, str]]]
                 ) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The tasks whose ``gated`` a change to ``roots`` can reach, with their statuses, and
    the children of each: ``roots`` (those that exist: ``status_of`` None) and the
    descendants through ``children(node)`` (``(child, status)`` pairs) below tasks that are
    not done (a done task passes no gating on, so its subtree is unaffected, unless it is a
    root: its own status may just have changed)."""
    scope: dict[str, str] = {}
    kids: dict[str, list[str]] = defaultdict(list)
    queue: deque[tuple[str, bool]] = deque()
    for root in roots:
        if root not in scope:
            status = status_of(root)
            if status is None:
                continue
            scope[root] = status
            queue.append((root, True))
    while queue:
        node, is_root = queue.popleft()
        if not is_root and scope[node] in DONE_STATUSES:
            continue
        for child, status in children(node):
            kids[node].append(child)
            if child not in scope:
                scope[child] = status
                queue.append((child, False))
    return scope, kids


def gated_in(scope: Mapping[str, str], kids: Mapping[str, Sequence[str]],
             blockers: Mapping[str, int],
             parents: Callable[[str], Iterable[tuple[str, str, int]]]) -> set[str]:
    """Which tasks of ``scope`` (from :func:`gating_scope`) are gated: those with open
    blockers (``blockers``) or a parent (``parents(node)``: ``(id, status, gated)``) that is
    not done and holds them (``blocked``/``deferred``, or gated itself outside the scope),
    and, as the least fixed point, the children of a gated task that is not done."""
    gated: set[str] = set()
    work: deque[str] = deque()
    for node in scope:
        seed = blockers[node] > 0
        if not seed:
            for pid, pstatus, pgated in parents(node):
                if pstatus in DONE_STATUSES:
                    continue
                if pstatus in HOLDING_STATUSES or (pid not in scope and pgated):
                    seed = True
                    break
        if seed:
            gated.add(node)
            work.append(node)
    while work:
        node = work.popleft()
        if scope[node] in DONE_STATUSES:
            continue
        for child in kids.get(node, ()):
            if child not in gated:
                gated.add(child)
                work.append(child)
    return gated
