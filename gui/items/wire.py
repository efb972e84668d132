"""Wires: cubic paths from an output socket to an input socket, through any reroute points.

A wire's path is recomputed only by :meth:`WireItem.update_path`, which the scene calls once
per frame for the wires whose nodes moved (see ``GraphScene.flush_wires``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QLineF, QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPainterPathStroker, QPen
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem

from nodegraph.graph import Link

from .. import graphops, theme

if TYPE_CHECKING:
    from ..scene import GraphScene

WIRE_W = 2.4


def _tangent(a: QPointF, b: QPointF) -> float:
    dx = max(abs(b.x() - a.x()) * 0.5, 30.0)
    if b.x() < a.x():  # going backwards: a wider loop reads better
        dx = max(dx, min(abs(b.y() - a.y()) * 0.5, 120.0))
    return dx


def cubic_points(a: QPointF, b: QPointF, n: int = 4) -> list[QPointF]:
    """``n + 1`` points along the curve :func:`cubic_path` draws from ``a`` to ``b``."""
    dx = _tangent(a, b)
    ax, ay, bx, by = a.x(), a.y(), b.x(), b.y()
    c1x, c2x = ax + dx, bx - dx
    pts = [a]
    for i in range(1, n):
        t = i / n
        u = 1 - t
        w0, w1, w2, w3 = u * u * u, 3 * u * u * t, 3 * u * t * t, t * t * t
        pts.append(QPointF(w0 * ax + w1 * c1x + w2 * c2x + w3 * bx, (w0 + w1) * ay + (w2 + w3) * by))
    pts.append(b)
    return pts


def cubic_path(points: list[QPointF]) -> QPainterPath:
    """A smooth path through ``points`` (first = output, last = input): each segment a cubic
    whose tangents are horizontal, like a cable leaving a socket sideways."""
    path = QPainterPath(points[0])
    for a, b in zip(points, points[1:]):
        dx = _tangent(a, b)
        path.cubicTo(QPointF(a.x() + dx, a.y()), QPointF(b.x() - dx, b.y()), b)
    return path


class WireItem(QGraphicsItem):
    """The wire for one Link (the item lives at the scene origin; its path is in scene units)."""

    def __init__(self, scene: GraphScene, link: Link):
        super().__init__()
        self.gs = scene
        self.link = link
        self.setZValue(-1)
        self.setAcceptedMouseButtons(Qt.NoButton)
        self.highlighted = False
        self._path = QPainterPath()
        self._rect = QRectF()
        self._shape: QPainterPath | None = None
        self.color = QColor("#8c8c8c")
        self._typed: QColor | None = None
        self.update_path()

    @property
    def key(self) -> tuple[str, str]:
        return (self.link.dst, self.link.input)

    def endpoints(self) -> tuple[QPointF, QPointF] | None:
        src = self.gs.node_items.get(self.link.src)
        dst = self.gs.node_items.get(self.link.dst)
        if src is None or dst is None:
            return None
        return src.output_pos(self.link.output), dst.input_pos(self.link.input)

    def update_path(self) -> None:
        """Recompute the path from the sockets' current positions (and reset any translation
        a drag applied while both ends moved together)."""
        ends = self.endpoints()
        self.prepareGeometryChange()
        if not self.pos().isNull():
            self.setPos(0, 0)
        if ends is None:
            self._path = QPainterPath()
            self._rect = QRectF()
        else:
            live = self.gs.reroute_items.get(self.key)
            if live:
                pts = [ends[0], *[it.pos() for it in live], ends[1]]
            elif "reroutes" in self.link.extra:
                pts = [ends[0], *[QPointF(x, y) for x, y in graphops.reroutes(self.link)], ends[1]]
            else:
                pts = ends
            self._path = cubic_path(pts)
            self._rect = self._path.controlPointRect().adjusted(-4, -4, 4, 4)
            if self._typed is None:
                self._typed = self._type_color()
            self.color = self._typed
        self._shape = None
        self._lines: list[QLineF] | None = None

    def overview_lines(self) -> list[QLineF]:
        """The wire as a few straight segments (what the zoomed-out overview draws)."""
        if self._lines is None:
            ends = self.endpoints()
            if ends is None:
                self._lines = []
            else:
                pts = ([ends[0], *[QPointF(x, y) for x, y in graphops.reroutes(self.link)], ends[1]]
                       if "reroutes" in self.link.extra else cubic_points(*ends))
                self._lines = [QLineF(a, b) for a, b in zip(pts, pts[1:])]
        return self._lines

    def _type_color(self) -> QColor:
        src = self.gs.node_items.get(self.link.src)
        t = src.output_type(self.link.output) if src is not None else "*"
        if t == "*":
            dst = self.gs.node_items.get(self.link.dst)
            t = (dst.input_type(self.link.input) if dst is not None else None) or "*"
        return theme.color(self.gs.registry.color(t))

    def path(self) -> QPainterPath:
        return self._path

    def boundingRect(self) -> QRectF:
        return self._rect

    def shape(self) -> QPainterPath:
        if self._shape is None:
            s = QPainterPathStroker()
            s.setWidth(10)
            self._shape = s.createStroke(self._path)
        return self._shape

    def paint(self, p: QPainter, option: QStyleOptionGraphicsItem, widget: Any = None) -> None:
        lod = option.levelOfDetailFromTransform(p.worldTransform())
        c = self.color
        muted = False
        src = self.gs.graph.nodes.get(self.link.src)
        if src is not None and src.mode == "muted":
            muted = True
        if self.gs.wire_drag is not None:
            c = QColor(c)
            c.setAlpha(90)
        elif muted:
            c = QColor(c)
            c.setAlpha(80)
        p.setRenderHint(QPainter.Antialiasing, lod >= 0.2)
        p.setBrush(Qt.NoBrush)
        if self.highlighted:
            p.setPen(QPen(theme.NODE_SELECTED, WIRE_W + 3, Qt.SolidLine, Qt.RoundCap))
            p.drawPath(self._path)
        pen = QPen(c, WIRE_W if lod >= 0.25 else 1.5 / max(lod, 0.05), Qt.SolidLine, Qt.RoundCap)
        p.setPen(pen)
        p.drawPath(self._path)


class DragWire(QGraphicsItem):
    """The wire that follows the mouse while the user drags from a socket."""

    def __init__(self, color: QColor, anchor: QPointF, from_output: bool):
        super().__init__()
        self.setZValue(10)
        self.color = color
        self.anchor = anchor
        self.from_output = from_output
        self.end = anchor
        self._path = QPainterPath()
        self._rect = QRectF()
        self.set_end(anchor)

    def set_end(self, end: QPointF) -> None:
        self.prepareGeometryChange()
        self.end = end
        a, b = (self.anchor, end) if self.from_output else (end, self.anchor)
        self._path = cubic_path([a, b])
        self._rect = self._path.controlPointRect().adjusted(-6, -6, 6, 6)

    def boundingRect(self) -> QRectF:
        return self._rect

    def paint(self, p: QPainter, option: QStyleOptionGraphicsItem, widget: Any = None) -> None:
        p.setRenderHint(QPainter.Antialiasing, True)
        p.setPen(QPen(self.color, WIRE_W + 0.6, Qt.DashLine, Qt.RoundCap))
        p.setBrush(Qt.NoBrush)
        p.drawPath(self._path)
        p.setPen(Qt.NoPen)
        p.setBrush(self.color)
        p.drawEllipse(self.end, 4, 4)
