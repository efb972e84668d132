"""Resizing a group by its bottom-right corner: the frame follows live, one undo step on release."""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from PySide6.QtCore import QPointF, QRectF
from PySide6.QtGui import QMouseEvent

from . import Gesture

if TYPE_CHECKING:
    from ..view import GraphView

MIN_WIDTH, MIN_HEIGHT = 120, 80


class GroupResize(Gesture):
    def __init__(self, view: GraphView, index: int, start: QRectF, press: QPointF):
        super().__init__(view)
        self.index, self.start, self.press = index, start, press

    def move(self, pos: QPointF, ev: QMouseEvent) -> None:
        items = self.view.gs.group_items
        if self.index < len(items):
            d = pos - self.press
            r = QRectF(self.start.topLeft(), self.start.size())
            r.setWidth(max(self.start.width() + d.x(), MIN_WIDTH))
            r.setHeight(max(self.start.height() + d.y(), MIN_HEIGHT))
            items[self.index].set_rect(r)

    def release(self, pos: QPointF, ev: QMouseEvent) -> None:
        items, doc = self.view.gs.group_items, self.view.doc
        if self.index < len(items):
            r = items[self.index].scene_rect()
            groups = [copy.deepcopy(g) for g in doc.graph.groups]
            groups[self.index].rect = (round(r.x()), round(r.y()), round(r.width()),
                                       round(r.height()))
            doc.move({}, groups=(list(doc.graph.groups), groups))
