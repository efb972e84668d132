"""Where a new node goes: where it was asked for (the cursor, a drop) if it covers no other node,
else the nearest spot where it covers none — so a node added from the library or the search never
lands on top of another one (which would then take its wire drops)."""
from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING

from PySide6.QtCore import QRectF

from nodegraph.graph import Node

from .items.node import NodeItem

if TYPE_CHECKING:
    from .scene import GraphScene

STEP = 20.0
"""Candidate spots lie on a grid of this many scene pixels around the asked-for one."""
GAP = 12.0
"""Free room kept around the new node."""
REACH = 120
"""How many steps away (in each direction) the search goes before giving up."""


def free_spot(scene: GraphScene, node: Node) -> tuple[float, float]:
    """The nearest position to ``node.pos`` where a node of its size overlaps no node on ``scene``
    (``node.pos`` itself when nothing is in the way, or when no free spot is within reach)."""
    w, h = node_size(scene, node)
    x0, y0 = node.pos
    for dx, dy in _offsets():
        x, y = x0 + dx * STEP, y0 + dy * STEP
        if not _covers_a_node(scene, QRectF(x - GAP, y - GAP, w + 2 * GAP, h + 2 * GAP)):
            return (round(x), round(y))
    return (round(x0), round(y0))


def node_size(scene: GraphScene, node: Node) -> tuple[float, float]:
    """The painted size a node would have (laid out without being added to the scene)."""
    item = NodeItem(scene, node, scene.registry.get(node.type))
    return item.w, item.h


def _covers_a_node(scene: GraphScene, rect: QRectF) -> bool:
    return any(isinstance(it, NodeItem) for it in scene.items(rect))


@lru_cache(maxsize=1)
def _offsets() -> tuple[tuple[int, int], ...]:
    """Grid offsets within REACH steps, nearest first (ties: right and down before left and up)."""
    cells = [(dx, dy) for dx in range(-REACH, REACH + 1) for dy in range(-REACH, REACH + 1)]
    return tuple(sorted(cells, key=lambda c: (math.hypot(*c), -c[0], -c[1])))
