"""Groups: titled frames behind nodes. Dragging the title moves the frame and the nodes in it;
the corner handle resizes it. The frame's body lets clicks through to the canvas."""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPen, QPolygonF
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem

from nodegraph.graph import Group

from .. import theme
from .node import LOD_TITLE
from .rows import Fonts

TITLE_H = 30.0
HANDLE = 14.0
DEFAULT_COLOR = "#5a6b7d"


class GroupItem(QGraphicsItem):
    def __init__(self, index: int, group: Group):
        super().__init__()
        self.index = index
        self.group = group
        self.setZValue(-10)
        self.setCacheMode(QGraphicsItem.DeviceCoordinateCache)
        self.setFlag(QGraphicsItem.ItemIsSelectable, True)
        self.setAcceptedMouseButtons(Qt.NoButton)
        self.font = theme.node_font(15, bold=True)
        self.set_rect(QRectF(*group.rect))

    def set_rect(self, rect: QRectF) -> None:
        self.prepareGeometryChange()
        self.setPos(rect.topLeft())
        self.rect = QRectF(0, 0, rect.width(), rect.height())

    def scene_rect(self) -> QRectF:
        return self.rect.translated(self.pos())

    def boundingRect(self) -> QRectF:
        return self.rect.adjusted(-2, -2, 2, 2)

    def hit(self, pos: QPointF) -> str | None:
        """"title", "resize" or None (the body lets clicks through)."""
        if pos.y() <= TITLE_H and self.rect.contains(pos):
            return "title"
        r = self.rect
        if r.right() - HANDLE <= pos.x() <= r.right() and r.bottom() - HANDLE <= pos.y() <= r.bottom():
            return "resize"
        return None

    def paint(self, p: QPainter, option: QStyleOptionGraphicsItem, widget: Any = None) -> None:
        lod = option.levelOfDetailFromTransform(p.worldTransform())
        base = theme.color(self.group.color or DEFAULT_COLOR)
        fill = QColor(base)
        fill.setAlpha(theme.GROUP_FILL_ALPHA)
        p.setRenderHint(QPainter.Antialiasing, True)
        p.setPen(QPen(theme.NODE_SELECTED if self.isSelected() else base.darker(110), 1.5))
        p.setBrush(fill)
        p.drawRoundedRect(self.rect, 6, 6)
        band = QColor(base)
        band.setAlpha(140)
        p.setPen(Qt.NoPen)
        p.setBrush(band)
        font, fm = Fonts.at(self.font, lod)  # never below MIN_TEXT_PX on screen
        band_h = min(max(TITLE_H, font.pixelSize() * 1.35), self.rect.height())
        p.drawRoundedRect(QRectF(0, 0, self.rect.width(), band_h), 6, 6)
        p.drawRect(QRectF(0, band_h - 6, self.rect.width(), 6))
        if lod >= LOD_TITLE - 1e-6:
            pad = max(10.0, 4 / lod)
            p.setFont(font)
            p.setPen(theme.TITLE_TEXT)
            text = fm.elidedText(self.group.title, Qt.ElideRight, self.rect.width() - 2 * pad)
            p.drawText(QRectF(pad, 0, self.rect.width() - 2 * pad, band_h),
                       Qt.AlignVCenter | Qt.AlignLeft, text)
        r = self.rect
        p.setBrush(QColor(255, 255, 255, 60))
        p.drawPolygon(QPolygonF([QPointF(r.right() - 2, r.bottom() - HANDLE),
                                 QPointF(r.right() - 2, r.bottom() - 2),
                                 QPointF(r.right() - HANDLE, r.bottom() - 2)]))
