"""Graph algorithms over dependencies held in memory: strongly connected groups (cycles) and
one closed path through a group. Used by the stores and by the plan importer."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence


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
