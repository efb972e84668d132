"""The image viewer: the outputs of the last run (or of the selected node) with zoom, fit,
1:1, previous/next, save as and copy."""
from __future__ import annotations

from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QImage, QPainter, QPixmap, QWheelEvent
from PySide6.QtWidgets import (QApplication, QFileDialog, QFrame, QGraphicsPixmapItem,
                               QGraphicsScene, QGraphicsView, QHBoxLayout, QLabel, QSizePolicy,
                               QToolButton,
                               QVBoxLayout, QWidget)

from .. import theme


class _ImageView(QGraphicsView):
    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.item = QGraphicsPixmapItem()
        self.item.setTransformationMode(Qt.SmoothTransformation)
        self.scene().addItem(self.item)
        self.setFrameShape(QFrame.NoFrame)
        self.setBackgroundBrush(theme.color("#141517"))
        self.setRenderHints(QPainter.SmoothPixmapTransform | QPainter.Antialiasing)
        self.setTransformationAnchor(QGraphicsView.AnchorUnderMouse)
        self.setDragMode(QGraphicsView.ScrollHandDrag)
        self.fit_mode = True

    def set_image(self, img: QImage | None) -> None:
        self.item.setPixmap(QPixmap.fromImage(img) if img is not None else QPixmap())
        self.scene().setSceneRect(QRectF(self.item.pixmap().rect()))
        if self.fit_mode:
            self.fit()

    def fit(self) -> None:
        self.fit_mode = True
        if not self.item.pixmap().isNull():
            self.fitInView(self.item, Qt.KeepAspectRatio)

    def actual(self) -> None:
        self.fit_mode = False
        self.resetTransform()

    def wheelEvent(self, ev: QWheelEvent) -> None:
        self.fit_mode = False
        f = 1.0015 ** (ev.angleDelta().y() or 0)
        self.scale(f, f)

    def resizeEvent(self, ev) -> None:
        super().resizeEvent(ev)
        if self.fit_mode:
            self.fit()


class ImageViewer(QWidget):
    """``show_images(images, caption)``; ``index_changed`` when the user pages."""

    index_changed = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.images: list[QImage] = []
        self.index = 0
        self.caption = ""
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        bar = QHBoxLayout()
        bar.setContentsMargins(6, 4, 6, 4)
        self.label = QLabel("No image yet: run a graph with an image output")
        self.label.setStyleSheet("color: #9aa0a6;")
        self.label.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.label.setMinimumWidth(40)

        def button(text: str, tip: str, slot) -> QToolButton:
            b = QToolButton(self)
            b.setText(text)
            b.setToolTip(tip)
            b.clicked.connect(slot)
            bar.addWidget(b)
            return b

        self.prev_btn = button("◀", "Previous image", lambda: self.page(-1))
        self.next_btn = button("▶", "Next image", lambda: self.page(1))
        bar.addWidget(self.label, 1)
        button("Fit", "Fit the image in the panel", lambda: self.view.fit())
        button("1:1", "Actual pixels", lambda: self.view.actual())
        self.save_btn = button("Save…", "Save the image as a file", self.save_as)
        self.copy_btn = button("Copy", "Copy the image to the clipboard", self.copy)
        lay.addLayout(bar)
        self.view = _ImageView(self)
        lay.addWidget(self.view, 1)
        self._update_controls()

    def current(self) -> QImage | None:
        return self.images[self.index] if self.images else None

    def show_images(self, images: list[QImage], caption: str = "") -> None:
        self.images = list(images)
        self.index = 0
        self.caption = caption
        self.view.set_image(self.current())
        self._update_controls()

    def page(self, step: int) -> None:
        if self.images:
            self.index = (self.index + step) % len(self.images)
            self.view.set_image(self.current())
            self._update_controls()
            self.index_changed.emit(self.index)

    def _update_controls(self) -> None:
        n = len(self.images)
        self.prev_btn.setVisible(n > 1)
        self.next_btn.setVisible(n > 1)
        self.save_btn.setEnabled(n > 0)
        self.copy_btn.setEnabled(n > 0)
        if n:
            img = self.current()
            count = f"{self.index + 1}/{n} · " if n > 1 else ""
            self.label.setText(f"{count}{self.caption}  {img.width()}×{img.height()}".strip())

    def save_as(self, path: str | None = None) -> str | None:
        img = self.current()
        if img is None:
            return None
        if not path:
            path, _ = QFileDialog.getSaveFileName(self, "Save image", "image.png",
                                                  "PNG (*.png);;JPEG (*.jpg *.jpeg);;WebP (*.webp)")
        if path:
            img.save(path)
            return path
        return None

    def copy(self) -> None:
        img = self.current()
        if img is not None:
            QApplication.clipboard().setImage(img)
