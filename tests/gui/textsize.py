"""How big the canvas's text is on screen: every item in view paints through a recorder that forwards
each call to a real QPainter and notes the screen height of each text drawn (the editor's tests and
bench/gui.py's ``fit_text_px``)."""
from __future__ import annotations

import math
from typing import Any

from PySide6.QtGui import QFont, QImage, QPainter
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem


class TextRecorder:
    """Stands in for a QPainter while an item paints: forwards every call, and records
    ``(screen pixels, text)`` for each non-empty text drawn."""

    def __init__(self, painter: QPainter):
        self._painter = painter
        self._font = QFont(painter.font())
        self.texts: list[tuple[float, str]] = []

    def setFont(self, font: QFont) -> None:
        self._font = QFont(font)
        self._painter.setFont(font)

    def drawText(self, *args: Any) -> Any:
        text = next((a for a in reversed(args) if isinstance(a, str)), "")
        if text.strip():
            t = self._painter.worldTransform()
            scale = math.hypot(t.m21(), t.m22())  # how tall a scene pixel is on screen
            px = self._font.pixelSize() if self._font.pixelSize() > 0 else self._font.pointSizeF() * 96 / 72
            self.texts.append((px * scale, text))
        return self._painter.drawText(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._painter, name)


def texts_in_view(view) -> list[tuple[float, str]]:
    """(screen pixels, text) of every text the items in ``view``'s viewport draw at its zoom."""
    vp = view.viewport()
    image = QImage(vp.size(), QImage.Format_ARGB32_Premultiplied)
    painter = QPainter(image)
    recorder = TextRecorder(painter)
    visible = view.mapToScene(vp.rect()).boundingRect()
    for item in view.gs.items(visible):
        if not item.isVisible() or item.flags() & QGraphicsItem.ItemHasNoContents:
            continue
        painter.save()
        painter.setTransform(item.sceneTransform() * view.viewportTransform())
        option = QStyleOptionGraphicsItem()
        option.exposedRect = item.mapRectFromScene(visible).intersected(item.boundingRect())
        item.paint(recorder, option, None)
        painter.restore()
    painter.end()
    return recorder.texts
