"""Panning: the middle button, or the left one while Space is held, drags the canvas."""
from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent

from . import Gesture

if TYPE_CHECKING:
    from ..view import GraphView


class PanGesture(Gesture):
    def __init__(self, view: GraphView, at: QPoint):
        super().__init__(view)
        self.last = at  # viewport coordinates: the scene moves under the mouse
        view.viewport().setCursor(Qt.ClosedHandCursor)

    def move(self, pos: QPointF, ev: QMouseEvent) -> None:
        p = ev.position().toPoint()
        d = p - self.last
        self.last = p
        h, v = self.view.horizontalScrollBar(), self.view.verticalScrollBar()
        h.setValue(h.value() - d.x())
        v.setValue(v.value() - d.y())

    def release(self, pos: QPointF, ev: QMouseEvent) -> None:
        vp = self.view.viewport()
        vp.setCursor(Qt.OpenHandCursor) if self.view.space_down else vp.unsetCursor()
