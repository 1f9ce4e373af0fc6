"""A workflow's graph laid out in layers (pure): each node one row below its deepest parent.

Wide layers wrap into rows of at most COLUMNS nodes, so a fan-out of hundreds stays readable.
The layout is drawn as server-rendered SVG; the page's script only recolours nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

COLUMNS = 20
BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 120, 34, 16, 40, 10


@dataclass(frozen=True)
class Box:
    name: str
    x: int
    y: int

    @property
    def cx(self) -> int:
        return self.x + BOX_W // 2


@dataclass(frozen=True)
class Layout:
    boxes: dict[str, Box]
    width: int
    height: int


def depths(names: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Longest path from a root, per node (names come parents first or in any order)."""
    parents: dict[str, list[str]] = {n: [] for n in names}
    for parent, child in edges:
        parents[child].append(parent)
    depth: dict[str, int] = {}

    def of(name: str) -> int:
        stack = [name]
        while stack:
            n = stack[-1]
            todo = [p for p in parents[n] if p not in depth]
            if todo:
                stack.extend(todo)
                continue
            stack.pop()
            depth[n] = 1 + max((depth[p] for p in parents[n]), default=-1)
        return depth[name]

    for n in names:
        if n not in depth:
            of(n)
    return depth


def layout(names: Sequence[str], edges: Sequence[tuple[str, str]]) -> Layout:
    depth = depths(names, edges)
    layers: dict[int, list[str]] = {}
    for n in names:
        layers.setdefault(depth[n], []).append(n)
    boxes: dict[str, Box] = {}
    y = PAD
    widest = 1
    for level in sorted(layers):
        row = layers[level]
        widest = max(widest, min(len(row), COLUMNS))
        for i, n in enumerate(row):
            boxes[n] = Box(n, PAD + (i % COLUMNS) * (BOX_W + GAP_X),
                           y + (i // COLUMNS) * (BOX_H + GAP_X))
        rows = (len(row) + COLUMNS - 1) // COLUMNS
        y += rows * (BOX_H + GAP_X) - GAP_X + GAP_Y
    return Layout(boxes, 2 * PAD + widest * (BOX_W + GAP_X) - GAP_X, y - GAP_Y + PAD)
