"""Graph algorithms over dependencies: strongly connected groups (cycles), one closed path
through a group, a shortest path, and the spread of gating down ``parent-child`` edges.
Used by the stores (each reading its edges its own way: the walks here hold no SQL) and by
the plan importer."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from .lean_readiness import gated_in as gated_in
from .lean_readiness import gating_scope as gating_scope


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
