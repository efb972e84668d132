"""The zoomed-out picture of the whole graph, painted by one item in a few batched calls.

Below ``LOD_BOX`` zoom a node is only a coloured box and a wire only a line, and thousands of
separate paint calls (one per item, each crossing from C++ into Python) would dominate a frame.
So the scene flags node and wire items ``ItemHasNoContents`` — Qt then skips them while painting
but they still take clicks and rubber-band selection — and this item draws every node box and
wire in a handful of ``drawRects``/``drawLines`` calls, grouped by colour. Down to ``LOD_TITLE``
it also writes the titles of the nodes in view, at the canvas's minimum text size.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QLineF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem

from .. import theme
from .node import LOD_TITLE, TITLE_H

if TYPE_CHECKING:
    from ..scene import GraphScene


def _mix(a: QColor, b: QColor, t: float) -> QColor:
    return QColor(round(a.red() * (1 - t) + b.red() * t), round(a.green() * (1 - t) + b.green() * t),
                  round(a.blue() * (1 - t) + b.blue() * t))


class OverviewItem(QGraphicsItem):
    """Draws all nodes and wires of its scene as boxes and lines (only while zoomed out)."""

    def __init__(self, scene: GraphScene):
        super().__init__()
        self.gs = scene
        self.setZValue(-5)
        self.setAcceptedMouseButtons(Qt.NoButton)
        self.setFlag(QGraphicsItem.ItemIsSelectable, False)
        self.setFlag(QGraphicsItem.ItemUsesExtendedStyleOption, True)  # exposedRect: titles in view
        self._rect = QRectF(-1e5, -1e5, 2e5, 2e5)
        self._body_cache: dict[int, QColor] = {}
        self._batches: tuple[list, list, list] | None = None

    def boundingRect(self) -> QRectF:
        return self._rect

    def invalidate(self) -> None:
        """Nodes or wires moved, appeared or went: rebuild the batches at the next paint."""
        self._batches = None
        self.update()

    def _build(self) -> tuple[list, list, list]:
        wires: dict[int, tuple[QColor, list[QLineF]]] = {}
        for wire in self.gs.wires.values():
            segs = wire.overview_lines()
            shift = wire.pos()
            if not shift.isNull():  # moving with a dragged selection
                segs = [ln.translated(shift) for ln in segs]
            entry = wires.get(wire.color.rgba())
            if entry is None:
                entry = wires[wire.color.rgba()] = (wire.color, [])
            entry[1].extend(segs)
        bodies: dict[int, tuple[QColor, list[QRectF]]] = {}
        bands: dict[int, tuple[QColor, list[QRectF]]] = {}
        for item in self.gs.node_items.values():
            c = item.title_color
            key = c.rgba()
            if key not in bodies:
                bodies[key] = (self._body(c), [])
                bands[key] = (c, [])
            x, y = item.x(), item.y()
            bodies[key][1].append(QRectF(x, y, item.w, item.h))
            bands[key][1].append(QRectF(x, y, item.w, min(TITLE_H * 2, item.h)))
        return list(wires.values()), list(bodies.values()), list(bands.values())

    def paint(self, p: QPainter, option: QStyleOptionGraphicsItem, widget: Any = None) -> None:
        if self._batches is None:
            self._batches = self._build()
        wires, bodies, bands = self._batches
        p.setRenderHint(QPainter.Antialiasing, False)
        for color, lines in wires:
            pen = QPen(color, 1.2)
            pen.setCosmetic(True)
            p.setPen(pen)
            p.drawLines(lines)
        p.setPen(Qt.NoPen)
        for table in (bodies, bands):
            for color, rects in table:
                p.setBrush(color)
                p.drawRects(rects)
        # outlines: selection, problems and run states (few nodes; read fresh each paint)
        outlines: dict[int, tuple[QColor, list[QRectF]]] = {}
        marked = set(self.gs.decorated)
        marked.update(it for it in self.gs.selectedItems() if hasattr(it, "title_color"))
        for item in marked:
            if item.scene() is None:
                continue
            if item.isSelected():
                oc = theme.NODE_SELECTED
            elif item.problems or item.state == "failed":
                oc = theme.PROBLEM
            elif item.state in theme.STATE_COLORS and item.state != "queued":
                oc = theme.STATE_COLORS[item.state]
            else:
                continue
            outlines.setdefault(oc.rgba(), (oc, []))[1].append(
                QRectF(item.x(), item.y(), item.w, item.h))
        p.setBrush(Qt.NoBrush)
        for color, rects in outlines.values():
            pen = QPen(color, 2.5)
            pen.setCosmetic(True)
            p.setPen(pen)
            p.drawRects(rects)
        lod = option.levelOfDetailFromTransform(p.worldTransform())
        if lod >= LOD_TITLE - 1e-6:
            self._paint_titles(p, option.exposedRect, lod)

    def _paint_titles(self, p: QPainter, exposed: QRectF, lod: float) -> None:
        """The titles of the nodes in ``exposed``, readable (see NodeItem.paint_title_label)."""
        p.setRenderHint(QPainter.Antialiasing, True)
        for item in self.gs.node_items.values():
            if exposed.intersects(QRectF(item.x(), item.y(), item.w, item.h)):
                p.save()
                p.translate(item.x(), item.y())
                item.paint_title_label(p, lod)
                p.restore()

    def _body(self, title: QColor) -> QColor:
        key = title.rgba()
        c = self._body_cache.get(key)
        if c is None:
            c = self._body_cache[key] = _mix(theme.NODE_BODY, title, 0.35)
        return c
