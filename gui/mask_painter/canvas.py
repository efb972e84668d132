"""The mask painter's canvas: the picture with its mask tinted over it, painted with the mouse.

Left button paints (brush) or erases (eraser); the middle button, or the left one with Space held,
pans; the wheel zooms about the cursor. A stroke, an invert and a clear are one step each of the
painter's own undo (:class:`MaskHistory`). The picture is shown at ``scale`` screen pixels per image
pixel with its top-left corner at ``offset`` (widget coordinates).
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPen, QPixmap, QWheelEvent
from PySide6.QtWidgets import QWidget

from .brush import MaskHistory, apply_dab, stroke_points

TINT = (255, 0, 200)
"""The mask's colour over the picture (magenta: visible on most pictures)."""
TINT_OPACITY = 0.6
MIN_SCALE, MAX_SCALE = 0.05, 40.0


def overlay_pixels(mask: np.ndarray, tint: tuple[int, int, int] = TINT, opacity: float = TINT_OPACITY) -> np.ndarray:
    """The mask as RGBA pixels ``[H, W, 4]`` uint8 (not premultiplied): ``tint`` with alpha = opacity × mask."""
    rgba = np.empty((*mask.shape, 4), np.uint8)
    rgba[..., :3] = tint
    rgba[..., 3] = _alpha(mask, opacity)
    return rgba


def _alpha(mask: np.ndarray, opacity: float = TINT_OPACITY) -> np.ndarray:
    return np.rint(np.clip(mask, 0.0, 1.0) * (255.0 * opacity)).astype(np.uint8)


def overlay_image(mask: np.ndarray) -> QImage:
    """The mask tinted, as a QImage of its own."""
    rgba = overlay_pixels(mask)
    h, w = mask.shape
    return QImage(rgba.data, w, h, 4 * w, QImage.Format_RGBA8888).copy()


def rgb_image(rgb: np.ndarray) -> QImage:
    h, w, _ = rgb.shape
    data = np.ascontiguousarray(rgb)
    return QImage(data.data, w, h, 3 * w, QImage.Format_RGB888).copy()


def composite(rgb: np.ndarray, mask: np.ndarray) -> QImage:
    """The picture with its mask tinted over it (what the node's preview shows)."""
    img = rgb_image(rgb).convertToFormat(QImage.Format_ARGB32)
    p = QPainter(img)
    p.drawImage(0, 0, overlay_image(mask))
    p.end()
    return img


class MaskCanvas(QWidget):
    """``mask_changed`` after every change of the mask (a stroke when it ends, invert, clear, undo)."""

    mask_changed = Signal()

    def __init__(self, rgb: np.ndarray, mask: np.ndarray, parent: QWidget | None = None):
        super().__init__(parent)
        self.rgb = rgb
        self.mask = np.array(mask, np.float32, copy=True)
        self.history = MaskHistory()
        self.tool = "brush"  # or "eraser"
        self.brush_size = max(4.0, round(min(rgb.shape[:2]) / 8))
        self.hardness = 0.8
        self.scale, self.offset = 1.0, QPointF(0, 0)
        self.space_down = False
        self._picture = QPixmap.fromImage(rgb_image(rgb))
        self._set_overlay()
        self._last: QPointF | None = None      # image point of the stroke's last dab
        self._pan_from: QPointF | None = None  # widget point where a pan started
        self._cursor: QPointF | None = None
        self._fitted = False
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.StrongFocus)
        self.setMinimumSize(320, 240)
        self.setCursor(Qt.BlankCursor)

    # -- coordinates and view --------------------------------------------------------------------
    def to_image(self, pos: QPointF) -> QPointF:
        return (QPointF(pos) - self.offset) / self.scale

    def to_widget(self, pos: QPointF) -> QPointF:
        return QPointF(pos) * self.scale + self.offset

    def fit(self) -> None:
        """Show the whole picture, centred, as large as the widget allows."""
        h, w = self.mask.shape
        self.scale = max(MIN_SCALE, min(MAX_SCALE, 0.95 * min(self.width() / w, self.height() / h)))
        self.offset = QPointF((self.width() - w * self.scale) / 2, (self.height() - h * self.scale) / 2)
        self.update()

    def zoom(self, factor: float, about: QPointF) -> None:
        """Zoom by ``factor`` keeping the image point under widget point ``about`` in place."""
        fixed = self.to_image(about)
        self.scale = max(MIN_SCALE, min(MAX_SCALE, self.scale * factor))
        self.offset = QPointF(about) - fixed * self.scale
        self.update()

    def resizeEvent(self, ev) -> None:
        if not self._fitted:
            self.fit()
        super().resizeEvent(ev)

    def showEvent(self, ev) -> None:
        if not self._fitted:
            self.fit()
            self._fitted = True
        super().showEvent(ev)

    # -- mask edits ------------------------------------------------------------------------------
    def set_mask(self, mask: np.ndarray, record: bool = True) -> None:
        """Replace the whole mask (one undo step unless ``record`` is False)."""
        if record:
            self.history.push(self.mask)
        self.mask = np.array(mask, np.float32, copy=True)
        self._refresh()

    def invert(self) -> None:
        self.set_mask(1.0 - self.mask)

    def clear(self) -> None:
        self.set_mask(np.zeros_like(self.mask))

    def undo(self) -> None:
        before = self.history.undo(self.mask)
        if before is not None:
            self.mask = before
            self._refresh()

    def redo(self) -> None:
        after = self.history.redo(self.mask)
        if after is not None:
            self.mask = after
            self._refresh()

    def _set_overlay(self) -> None:
        """The tinted mask drawn over the picture: a QImage over ``_rgba``'s memory, so that a stroke
        updates only the pixels its dabs touch."""
        h, w = self.mask.shape
        self._rgba = overlay_pixels(self.mask)
        self._overlay = QImage(self._rgba.data, w, h, 4 * w, QImage.Format_RGBA8888)

    def _refresh(self) -> None:
        self._set_overlay()
        self.update()
        self.mask_changed.emit()

    def _dab_to(self, point: QPointF) -> None:
        erase = self.tool == "eraser"
        if self._last is None:
            points = [(point.x(), point.y())]
        else:
            points = stroke_points(self._last.x(), self._last.y(), point.x(), point.y(), self.brush_size)
        for x, y in points:
            region = apply_dab(self.mask, x, y, self.brush_size, self.hardness, erase)
            if region is not None:
                self._rgba[region + (3,)] = _alpha(self.mask[region])
        self._last = QPointF(point)
        self.update()

    # -- mouse -----------------------------------------------------------------------------------
    def _pans(self, ev: QMouseEvent) -> bool:
        return ev.button() == Qt.MiddleButton or (ev.button() == Qt.LeftButton and self.space_down)

    def mousePressEvent(self, ev: QMouseEvent) -> None:
        if self._pans(ev):
            self._pan_from = ev.position()
        elif ev.button() == Qt.LeftButton:
            self.history.push(self.mask)
            self._last = None
            self._dab_to(self.to_image(ev.position()))
        ev.accept()

    def mouseMoveEvent(self, ev: QMouseEvent) -> None:
        self._cursor = ev.position()
        if self._pan_from is not None:
            self.offset += ev.position() - self._pan_from
            self._pan_from = ev.position()
        elif self._last is not None and ev.buttons() & Qt.LeftButton:
            self._dab_to(self.to_image(ev.position()))
        self.update()
        ev.accept()

    def mouseReleaseEvent(self, ev: QMouseEvent) -> None:
        if self._pan_from is not None and (ev.button() in (Qt.MiddleButton, Qt.LeftButton)):
            self._pan_from = None
        elif ev.button() == Qt.LeftButton and self._last is not None:
            self._last = None
            self.mask_changed.emit()
        ev.accept()

    def wheelEvent(self, ev: QWheelEvent) -> None:
        steps = ev.angleDelta().y() / 120.0
        if steps:
            self.zoom(1.2 ** steps, ev.position())
        ev.accept()

    def leaveEvent(self, ev) -> None:
        self._cursor = None
        self.update()
        super().leaveEvent(ev)

    def _space(self, ev, down: bool) -> bool:
        """Space held: the left button pans. True if ``ev`` was that key."""
        if ev.key() != Qt.Key_Space or ev.isAutoRepeat():
            return False
        self.space_down = down
        ev.accept()
        return True

    def keyPressEvent(self, ev) -> None:
        if not self._space(ev, True):
            super().keyPressEvent(ev)

    def keyReleaseEvent(self, ev) -> None:
        if not self._space(ev, False):
            super().keyReleaseEvent(ev)

    # -- painting --------------------------------------------------------------------------------
    def paintEvent(self, ev) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(36, 38, 42))
        h, w = self.mask.shape
        target = QRectF(self.offset, QPointF(self.offset.x() + w * self.scale, self.offset.y() + h * self.scale))
        p.setRenderHint(QPainter.SmoothPixmapTransform, self.scale < 1.0)
        p.drawPixmap(target, self._picture, QRectF(0, 0, w, h))
        p.drawImage(target, self._overlay, QRectF(0, 0, w, h))
        if self._cursor is not None:
            p.setRenderHint(QPainter.Antialiasing)
            radius = self.brush_size * self.scale / 2
            for colour, width in ((QColor(0, 0, 0, 200), 3.0), (QColor(255, 255, 255, 230), 1.2)):
                p.setPen(QPen(colour, width, Qt.DashLine if self.tool == "eraser" else Qt.SolidLine))
                p.drawEllipse(self._cursor, radius, radius)
        p.end()
