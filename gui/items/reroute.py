"""Reroute points: dots on a wire that the user places and drags to route it tidily.

A point is data of its link (``link.extra["reroutes"][index]``); the item only shows it.
"""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem

from .. import theme

R = 6.0


class RerouteItem(QGraphicsItem):
    def __init__(self, key: tuple[str, str], index: int, pos: tuple[float, float], color: QColor):
        super().__init__()
        self.key = key
        self.index = index
        self.color = color
        self.setZValue(1)
        self.setFlag(QGraphicsItem.ItemIsSelectable, True)
        self.setAcceptedMouseButtons(Qt.NoButton)
        self.setPos(QPointF(*pos))

    def boundingRect(self) -> QRectF:
        return QRectF(-R - 3, -R - 3, 2 * R + 6, 2 * R + 6)

    def paint(self, p: QPainter, option: QStyleOptionGraphicsItem, widget: Any = None) -> None:
        p.setRenderHint(QPainter.Antialiasing, True)
        p.setPen(QPen(theme.NODE_SELECTED if self.isSelected() else QColor(0, 0, 0, 160), 2))
        p.setBrush(self.color)
        p.drawEllipse(QPointF(0, 0), R, R)
