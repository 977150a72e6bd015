"""A layered (Sugiyama-style) layout of the task graph, computed on the server.

Work flows left to right: a task is placed in a column to the right of everything it depends
on. The steps, for each weakly connected component on its own:

1. cycles are broken by reversing the back edges of a depth-first search (gating edges
   cannot form cycles, but ``related`` links and imported data can);
2. longest-path layering: a node's layer is one more than the largest layer of its
   predecessors; a source is then pulled right to just before its nearest successor, so it
   does not sit far away from the only work waiting on it;
3. an edge spanning several layers gets one dummy node per layer it crosses, so it is routed
   around the nodes and takes part in crossing reduction;
4. crossing reduction: alternate sweeps right and left, sorting each layer by the
   barycenter (mean position) of each node's neighbours in the layer just swept; the order
   with the fewest crossings seen is kept;
5. coordinates: each node is pulled towards the mean position of its neighbours, keeping the
   order and a minimum gap (an exact least-squares fit by pool-adjacent-violators).

Components are stacked top to bottom, biggest first; tasks with no edges at all go in a
grid below them, so a backlog of a few hundred mostly independent tasks stays compact.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

# Which edge to keep when two tasks are linked by several dependency types.
_TYPE_RANK = {"blocks": 0, "parent-child": 1, "discovered-from": 2, "related": 3}


@dataclass
class LayoutNode:
    id: str
    x: float
    """Centre."""
    y: float
    """Centre."""
    layer: int
    order: int
    component: int


@dataclass
class LayoutEdge:
    source: str
    """The task depended on (drawn on the left)."""
    target: str
    """The task that depends on it."""
    type: str
    points: list[tuple[float, float]]
    """From the source's right side to the target's left side, through the dummy nodes."""
    reversed: bool = False
    """Drawn against the flow because it closed a cycle."""


@dataclass
class Layout:
    nodes: dict[str, LayoutNode] = field(default_factory=dict)
    edges: list[LayoutEdge] = field(default_factory=list)
    width: float = 0.0
    height: float = 0.0
    crossings: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "width": round(self.width, 1),
            "height": round(self.height, 1),
            "crossings": self.crossings,
            "nodes": [{"id": n.id, "x": round(n.x, 1), "y": round(n.y, 1), "layer": n.layer,
                       "order": n.order, "component": n.component}
                      for n in self.nodes.values()],
            "edges": [{"source": e.source, "target": e.target, "type": e.type,
                       "reversed": e.reversed,
                       "points": [[round(x, 1), round(y, 1)] for x, y in e.points]}
                      for e in self.edges],
        }


@dataclass(frozen=True)
class Spacing:
    node_width: float = 190.0
    node_height: float = 44.0
    layer_gap: float = 90.0
    """Horizontal space between columns."""
    node_gap: float = 18.0
    """Vertical space between two tasks in a column."""
    dummy_gap: float = 10.0
    """Vertical space taken by an edge passing through a column."""
    component_gap: float = 60.0
    margin: float = 20.0


def layered_layout(nodes: Sequence[str], edges: Iterable[tuple[str, str, str]], *,
                   spacing: Spacing | None = None, sweeps: int = 24,
                   grid_columns: int | None = None) -> Layout:
    """Lay out ``nodes`` (in a meaningful order, e.g. priority) with ``edges``.

    Each edge is ``(source, target, type)`` with ``target`` depending on ``source``. Edges
    naming a node not in ``nodes`` and self-loops are ignored; of several edges between the
    same two nodes the most important type is kept.
    """
    sp = spacing or Spacing()
    index = {n: i for i, n in enumerate(dict.fromkeys(nodes))}
    kept: dict[frozenset[str], tuple[str, str, str]] = {}
    for source, target, typ in edges:
        if source == target or source not in index or target not in index:
            continue
        key = frozenset((source, target))
        old = kept.get(key)
        if old is None or _TYPE_RANK.get(typ, 9) < _TYPE_RANK.get(old[2], 9):
            kept[key] = (source, target, typ)
    links = sorted(kept.values(), key=lambda e: (index[e[1]], index[e[0]]))

    components = _components(list(index), [(s, t) for s, t, _ in links])
    linked = [c for c in components if len(c) > 1]
    singles = [c[0] for c in components if len(c) == 1]
    linked.sort(key=lambda c: (-len(c), min(index[n] for n in c)))

    out = Layout()
    top = sp.margin
    widest_layers = 1
    for number, members in enumerate(linked):
        member_set = set(members)
        comp_edges = [e for e in links if e[0] in member_set]
        sub = _layout_component(members, comp_edges, sp, sweeps, number)
        for node in sub.nodes.values():
            node.y += top
            node.x += sp.margin
            out.nodes[node.id] = node
        for edge in sub.edges:
            edge.points = [(x + sp.margin, y + top) for x, y in edge.points]
            out.edges.append(edge)
        out.crossings += sub.crossings
        widest_layers = max(widest_layers, 1 + max(n.layer for n in sub.nodes.values()))
        out.width = max(out.width, sub.width + 2 * sp.margin)
        top += sub.height + sp.component_gap

    if singles:
        singles.sort(key=lambda n: index[n])
        step_x = sp.node_width + sp.layer_gap / 2
        step_y = sp.node_height + sp.node_gap
        # about as wide as the linked part, and wider than tall (screens are landscape)
        landscape = math.ceil(math.sqrt(1.6 * len(singles) * step_y / step_x))
        columns = grid_columns or max(4, widest_layers, landscape)
        for i, node_id in enumerate(singles):
            row, col = divmod(i, columns)
            out.nodes[node_id] = LayoutNode(
                node_id, sp.margin + col * step_x + sp.node_width / 2,
                top + row * step_y + sp.node_height / 2, layer=col, order=row,
                component=len(linked))
        rows = math.ceil(len(singles) / columns)
        used_cols = min(columns, len(singles))
        out.width = max(out.width, 2 * sp.margin + used_cols * step_x - sp.layer_gap / 2)
        top += rows * step_y - sp.node_gap + sp.component_gap
    out.height = max(0.0, top - sp.component_gap + sp.margin) if out.nodes else 0.0
    return out


# -- components ----------------------------------------------------------------------------


def _components(nodes: list[str], pairs: list[tuple[str, str]]) -> list[list[str]]:
    parent = {n: n for n in nodes}

    def find(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[rb] = ra
    groups: dict[str, list[str]] = defaultdict(list)
    for n in nodes:
        groups[find(n)].append(n)
    return list(groups.values())


# -- one component -------------------------------------------------------------------------


def _break_cycles(members: list[str], succ: dict[str, list[str]]) -> set[tuple[str, str]]:
    """Back edges of an iterative depth-first search (visiting members in order)."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    back: set[tuple[str, str]] = set()
    for start in members:
        if start in state:
            continue
        state[start] = 1
        stack: list[tuple[str, int]] = [(start, 0)]
        while stack:
            node, i = stack[-1]
            nexts = succ.get(node, [])
            if i < len(nexts):
                stack[-1] = (node, i + 1)
                nxt = nexts[i]
                seen = state.get(nxt)
                if seen is None:
                    state[nxt] = 1
                    stack.append((nxt, 0))
                elif seen == 1:
                    back.add((node, nxt))
                continue
            state[node] = 2
            stack.pop()
    return back


def _layers(members: list[str], dag: list[tuple[str, str]]) -> dict[str, int]:
    preds: dict[str, list[str]] = defaultdict(list)
    succs: dict[str, list[str]] = defaultdict(list)
    indegree = dict.fromkeys(members, 0)
    for s, t in dag:
        preds[t].append(s)
        succs[s].append(t)
        indegree[t] += 1
    order: list[str] = []
    todo = [n for n in members if indegree[n] == 0]
    todo.reverse()
    while todo:
        n = todo.pop()
        order.append(n)
        for t in reversed(succs[n]):
            indegree[t] -= 1
            if indegree[t] == 0:
                todo.append(t)
    layer: dict[str, int] = {}
    for n in order:
        layer[n] = max((layer[p] + 1 for p in preds[n]), default=0)
    # pull sources right, next to their nearest successor
    for n in reversed(order):
        if not preds[n] and succs[n]:
            layer[n] = min(layer[t] for t in succs[n]) - 1
    return layer


def _layout_component(members: list[str], comp_edges: list[tuple[str, str, str]],
                      sp: Spacing, sweeps: int, number: int) -> Layout:
    succ: dict[str, list[str]] = defaultdict(list)
    for s, t, _ in comp_edges:
        succ[s].append(t)
    back = _break_cycles(members, succ)
    dag = [(t, s) if (s, t) in back else (s, t) for s, t, _ in comp_edges]
    layer = _layers(members, dag)

    # dummy nodes: a chain per edge spanning more than one layer
    real = set(members)
    node_layer: dict[str, int] = dict(layer)
    up: dict[str, list[str]] = defaultdict(list)    # neighbours in the layer to the left
    down: dict[str, list[str]] = defaultdict(list)  # neighbours in the layer to the right
    chains: list[list[str]] = []
    for k, (s, t) in enumerate(dag):
        chain = [s]
        for step in range(layer[s] + 1, layer[t]):
            dummy = f"\x00{k}:{step}"
            node_layer[dummy] = step
            chain.append(dummy)
        chain.append(t)
        for a, b in itertools.pairwise(chain):
            down[a].append(b)
            up[b].append(a)
        chains.append(chain)

    depth = max(node_layer.values()) + 1
    layers: list[list[str]] = [[] for _ in range(depth)]
    # initial order: depth-first from the sources, in the given order, so chains stay together
    placed: set[str] = set()

    def visit(start: str) -> None:
        stack = [start]
        while stack:
            n = stack.pop()
            if n in placed:
                continue
            placed.add(n)
            layers[node_layer[n]].append(n)
            stack.extend(reversed(down[n]))

    for n in members:
        if not up[n]:
            visit(n)
    for n in members:  # (every node is reachable from a source of the DAG; defensive)
        visit(n)
    for chain in chains:
        for n in chain:
            visit(n)

    best = [list(lay) for lay in layers]
    best_crossings = _total_crossings(layers, down)
    stale = 0
    for sweep in range(sweeps):
        if best_crossings == 0 or stale >= 6:
            break
        if sweep % 2 == 0:
            for i in range(1, depth):
                _barycenter_sort(layers[i], layers[i - 1], up)
        else:
            for i in range(depth - 2, -1, -1):
                _barycenter_sort(layers[i], layers[i + 1], down)
        crossings = _total_crossings(layers, down)
        if crossings < best_crossings:
            best_crossings = crossings
            best = [list(lay) for lay in layers]
            stale = 0
        else:
            stale += 1
    layers = best

    ys = _coordinates(layers, up, down, real, sp)
    out = Layout(crossings=best_crossings)
    step_x = sp.node_width + sp.layer_gap
    x_of = {n: node_layer[n] * step_x + sp.node_width / 2 for n in node_layer}
    for li, lay in enumerate(layers):
        for order, n in enumerate(x for x in lay if x in real):
            out.nodes[n] = LayoutNode(n, x_of[n], ys[n], layer=li, order=order, component=number)
    half = sp.node_width / 2
    for (s, t, typ), chain in zip(comp_edges, chains, strict=True):
        points = [(x_of[chain[0]] + half, ys[chain[0]])]
        points += [(x_of[d], ys[d]) for d in chain[1:-1]]
        points.append((x_of[chain[-1]] - half, ys[chain[-1]]))
        is_back = (s, t) in back
        if is_back:
            points.reverse()
        out.edges.append(LayoutEdge(s, t, typ, points, reversed=is_back))
    out.width = depth * step_x - sp.layer_gap
    out.height = (max(ys[n] for n in real) + sp.node_height / 2) if real else 0.0
    return out


def _barycenter_sort(layer: list[str], fixed: list[str], neighbours: dict[str, list[str]]) -> None:
    pos = {n: i for i, n in enumerate(fixed)}
    keys: dict[str, float] = {}
    for i, n in enumerate(layer):
        near = [pos[m] for m in neighbours[n] if m in pos]
        keys[n] = sum(near) / len(near) if near else float(i)
    layer.sort(key=lambda n: keys[n])  # stable: ties keep their order


def _total_crossings(layers: list[list[str]], down: dict[str, list[str]]) -> int:
    total = 0
    for left, right in itertools.pairwise(layers):
        total += _crossings(left, right, down)
    return total


def _crossings(left: list[str], right: list[str], down: dict[str, list[str]]) -> int:
    """Edge crossings between two adjacent layers: inversions, counted with a Fenwick tree."""
    pos = {n: i for i, n in enumerate(right)}
    targets: list[int] = []
    for n in left:
        targets.extend(sorted(pos[m] for m in down[n] if m in pos))
    size = len(right)
    tree = [0] * (size + 1)
    crossings = 0
    for seen, t in enumerate(targets):
        # edges already seen whose target lies strictly below t cross this one
        i = t + 1
        not_greater = 0
        while i > 0:
            not_greater += tree[i]
            i -= i & -i
        crossings += seen - not_greater
        i = t + 1
        while i <= size:
            tree[i] += 1
            i += i & -i
    return crossings


def _coordinates(layers: list[list[str]], up: dict[str, list[str]], down: dict[str, list[str]],
                 real: set[str], sp: Spacing) -> dict[str, float]:
    def height(n: str) -> float:
        return sp.node_height if n in real else 0.0

    def gap(a: str, b: str) -> float:
        """Minimum distance between the centres of two neighbours in a column."""
        g = sp.node_gap if a in real or b in real else sp.dummy_gap
        return (height(a) + height(b)) / 2 + g

    ys: dict[str, float] = {}
    for lay in layers:
        y = 0.0
        for i, n in enumerate(lay):
            if i:
                y += gap(lay[i - 1], n)
            ys[n] = y
    for rnd in range(8):
        order = range(len(layers)) if rnd % 2 == 0 else range(len(layers) - 1, -1, -1)
        for li in order:
            lay = layers[li]
            if not lay:
                continue
            desired = []
            for n in lay:
                near = [ys[m] for m in (*up[n], *down[n])]
                desired.append(sum(near) / len(near) if near else ys[n])
            placed = _fit_in_order(desired, [gap(a, b) for a, b in itertools.pairwise(lay)])
            for n, y in zip(lay, placed, strict=True):
                ys[n] = y
    low = min(ys[n] - height(n) / 2 for n in ys) if ys else 0.0
    return {n: y - low for n, y in ys.items()}


def _fit_in_order(desired: list[float], gaps: list[float]) -> list[float]:
    """Positions closest (least squares) to ``desired`` with ``y[i+1] - y[i] >= gaps[i]``.

    Shifting by the running sum of gaps turns it into isotonic regression, solved by
    pool-adjacent-violators.
    """
    offsets = [0.0]
    for g in gaps:
        offsets.append(offsets[-1] + g)
    values = [d - o for d, o in zip(desired, offsets, strict=True)]
    blocks: list[list[float]] = []  # [mean, count]
    for v in values:
        blocks.append([v, 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, c2 = blocks.pop()
            m1, c1 = blocks[-1]
            blocks[-1] = [(m1 * c1 + m2 * c2) / (c1 + c2), c1 + c2]
    fitted: list[float] = []
    for mean, count in blocks:
        fitted.extend([mean] * int(count))
    return [f + o for f, o in zip(fitted, offsets, strict=True)]
