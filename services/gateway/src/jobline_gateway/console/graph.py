"""A workflow's graph laid out for the console's inline SVG (pure: no I/O, no template).

Columns by depth: a node's depth is the longest path to it from a root (a node without
parents), so every edge points rightwards and a node sits right of all its parents. Within a
column nodes are stacked in the order of their parents' mean row (the barycenter heuristic of
layered graph drawing, one sweep), ties in the given order, which keeps a fan-out's edges from
crossing; each column is centred on the tallest, so a fan-in's callback sits in the middle of
its parents. Edges are cubic curves from a parent's right side to a child's left side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

BOX_WIDTH: Final = 190
BOX_HEIGHT: Final = 58
GAP_X: Final = 64
GAP_Y: Final = 14
PAD: Final = 8


@dataclass(frozen=True, slots=True)
class Box:
    """Where a node is drawn: its top-left corner, its column (depth) and row."""

    ref: str
    x: int
    y: int
    depth: int
    row: int


@dataclass(frozen=True, slots=True)
class Edge:
    parent: str
    child: str
    path: str  # an SVG path's ``d``


@dataclass(frozen=True, slots=True)
class Layout:
    boxes: Mapping[str, Box]  # in drawing order: column by column, top to bottom
    edges: Sequence[Edge]
    width: int
    height: int
    box_width: int = BOX_WIDTH
    box_height: int = BOX_HEIGHT


def depths(nodes: Sequence[tuple[str, Sequence[str]]]) -> dict[str, int]:
    """Each ref's depth: 0 for a root, else 1 + its deepest parent's depth. Parents that are
    not among ``nodes`` (purged) are ignored; nodes on a cycle (which validation refuses)
    are put in column 0 rather than lost."""
    known = {ref for ref, _ in nodes}
    parents = {ref: [p for p in dict.fromkeys(deps) if p in known] for ref, deps in nodes}
    children: dict[str, list[str]] = {ref: [] for ref in parents}
    waiting = {ref: len(ps) for ref, ps in parents.items()}
    for ref, ps in parents.items():
        for p in ps:
            children[p].append(ref)
    depth = dict.fromkeys(parents, 0)
    ready = [ref for ref, n in waiting.items() if n == 0]
    while ready:  # Kahn's order: a node is placed once all its parents are
        ref = ready.pop()
        for child in children[ref]:
            depth[child] = max(depth[child], depth[ref] + 1)
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    return depth


def layout(nodes: Sequence[tuple[str, Sequence[str]]]) -> Layout:
    """Positions for ``nodes`` (each ref with the refs it depends on), in the given order."""
    depth = depths(nodes)
    order = {ref: i for i, (ref, _) in enumerate(nodes)}
    parents = {ref: [p for p in deps if p in depth] for ref, deps in nodes}
    columns: dict[int, list[str]] = {}
    for ref, _ in nodes:
        columns.setdefault(depth[ref], []).append(ref)
    row: dict[str, int] = {}
    for d in sorted(columns):
        if d > 0:

            def barycenter(ref: str) -> tuple[float, int]:
                placed = [row[p] for p in parents[ref] if p in row]
                return (sum(placed) / len(placed) if placed else 0.0, order[ref])

            columns[d].sort(key=barycenter)
        for i, ref in enumerate(columns[d]):
            row[ref] = i
    tallest = max((len(c) for c in columns.values()), default=0)
    step_y = BOX_HEIGHT + GAP_Y
    boxes: dict[str, Box] = {}
    for d in sorted(columns):
        offset = (tallest - len(columns[d])) * step_y // 2
        for ref in columns[d]:
            x = PAD + d * (BOX_WIDTH + GAP_X)
            boxes[ref] = Box(ref, x, PAD + offset + row[ref] * step_y, d, row[ref])
    edges = [
        Edge(p, ref, _curve(boxes[p], boxes[ref]))
        for ref, _ in nodes
        for p in dict.fromkeys(parents[ref])
    ]
    width = PAD * 2 + len(columns) * BOX_WIDTH + max(len(columns) - 1, 0) * GAP_X
    height = PAD * 2 + tallest * BOX_HEIGHT + max(tallest - 1, 0) * GAP_Y
    return Layout(boxes, edges, width, height)


def _curve(parent: Box, child: Box) -> str:
    x1, y1 = parent.x + BOX_WIDTH, parent.y + BOX_HEIGHT // 2
    x2, y2 = child.x, child.y + BOX_HEIGHT // 2
    bend = max((x2 - x1) // 2, GAP_X // 2)
    return f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}"
