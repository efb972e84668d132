"""The minimap: the whole graph in a corner of the canvas, with the part in view outlined. Click or
drag in it to move the view there. Shown while the graph is larger than the view (View > Minimap
turns it off).

It is a small widget over the view (a child of the view, not of its viewport, so scrolling the
canvas does not move it). The nodes are drawn once into a pixmap, again only after the graph's
geometry changed (at most every ``REBUILD_MS``); each frame only the view's outline is drawn on it.
It is opaque, so frames of the canvas under it (a drag) neither repaint it nor paint under it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QPointF, QRectF, Qt, QTimer
from PySide6.QtGui import QColor, QMouseEvent, QPainter, QPaintEvent, QPen, QPixmap
from PySide6.QtWidgets import QWidget

from . import theme

if TYPE_CHECKING:
    from .view import GraphView

SIZE = (220, 150)
MARGIN = 10
REBUILD_MS = 150
BACKGROUND = QColor(20, 21, 23)
FRAME = QColor("#4a4e55")


class Minimap(QWidget):
    def __init__(self, view: GraphView):
        super().__init__(view)
        self.view = view
        self.enabled = True
        self.bounds = QRectF()  # the scene rectangle the minimap shows
        self._picture: QPixmap | None = None
        self._last_visible = QRectF()
        self._rebuild = QTimer(self)
        self._rebuild.setSingleShot(True)
        self._rebuild.setInterval(REBUILD_MS)
        self._rebuild.timeout.connect(self.rebuild)
        self.setAttribute(Qt.WA_OpaquePaintEvent, True)  # paints every pixel: nothing under it shows
        self.setCursor(Qt.PointingHandCursor)
        self.setToolTip("Minimap: click or drag to move the view (View > Minimap hides it)")
        self.resize(*SIZE)
        self.hide()

    # -- when to show, where -------------------------------------------------------------------
    def set_enabled(self, on: bool) -> None:
        self.enabled = on
        self.follow()

    def graph_changed(self) -> None:
        """Nodes moved, appeared or went: redraw the nodes soon."""
        if not self._rebuild.isActive():
            self._rebuild.start()

    def rebuild(self) -> None:
        self._rebuild.stop()
        self._picture = None
        self.bounds = self.view.gs.nodes_rect()
        self.follow(force=True)

    def follow(self, force: bool = False) -> None:
        """After the view moved or zoomed: show or hide, and redraw the outline if it changed."""
        visible = self.view.visible_scene_rect()
        if self.bounds.isNull() and len(self.view.doc.graph):
            self.bounds = self.view.gs.nodes_rect()
        wanted = (self.enabled and not self.bounds.isEmpty()
                  and not visible.contains(self.bounds))
        if wanted != self.isVisible():
            self.setVisible(wanted)
        if wanted:
            self.place()
            if force or visible != self._last_visible:
                self._last_visible = visible
                self.update()

    def place(self) -> None:
        vp = self.view.viewport().geometry()
        w, h = SIZE
        b = self.bounds
        if b.width() > 0 and b.height() > 0:  # keep the graph's shape, inside SIZE
            scale = min(w / b.width(), h / b.height())
            w, h = max(60, round(b.width() * scale)), max(40, round(b.height() * scale))
        self.setGeometry(vp.right() - w - MARGIN, vp.bottom() - h - MARGIN, w, h)

    # -- mapping -------------------------------------------------------------------------------
    def _scale(self) -> tuple[float, float, float]:
        b = self.bounds
        s = min((self.width() - 8) / max(b.width(), 1), (self.height() - 8) / max(b.height(), 1))
        ox = (self.width() - b.width() * s) / 2
        oy = (self.height() - b.height() * s) / 2
        return s, ox, oy

    def to_map(self, r: QRectF) -> QRectF:
        s, ox, oy = self._scale()
        return QRectF(ox + (r.x() - self.bounds.x()) * s, oy + (r.y() - self.bounds.y()) * s,
                      r.width() * s, r.height() * s)

    def to_scene(self, p: QPointF) -> QPointF:
        s, ox, oy = self._scale()
        return QPointF(self.bounds.x() + (p.x() - ox) / s, self.bounds.y() + (p.y() - oy) / s)

    # -- painting ------------------------------------------------------------------------------
    def _draw_nodes(self) -> QPixmap:
        dpr = self.devicePixelRatioF()
        pix = QPixmap(round(self.width() * dpr), round(self.height() * dpr))
        pix.setDevicePixelRatio(dpr)
        pix.fill(Qt.transparent)
        p = QPainter(pix)
        p.setPen(Qt.NoPen)
        for item in self.view.gs.node_items.values():
            r = self.to_map(QRectF(item.x(), item.y(), item.w, item.h))
            p.fillRect(r.adjusted(0, 0, max(0.0, 1.5 - r.width()), max(0.0, 1.5 - r.height())),
                       item.title_color)
        p.end()
        return pix

    def paintEvent(self, ev: QPaintEvent) -> None:
        if self._picture is None or self._picture.size() != self.size() * self.devicePixelRatioF():
            self._picture = self._draw_nodes()
        p = QPainter(self)
        p.setPen(QPen(FRAME, 1))
        p.setBrush(BACKGROUND)
        p.drawRect(QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5))
        p.drawPixmap(0, 0, self._picture)
        view_rect = self.to_map(self.view.visible_scene_rect()).intersected(QRectF(self.rect()))
        p.setPen(QPen(theme.NODE_SELECTED, 1.5))
        p.setBrush(QColor(242, 181, 58, 28))
        p.drawRect(view_rect)
        p.end()

    # -- moving the view ---------------------------------------------------------------------
    def mousePressEvent(self, ev: QMouseEvent) -> None:
        if ev.button() == Qt.LeftButton:
            self.view.centerOn(self.to_scene(ev.position()))
            ev.accept()

    def mouseMoveEvent(self, ev: QMouseEvent) -> None:
        if ev.buttons() & Qt.LeftButton:
            self.view.centerOn(self.to_scene(ev.position()))
            ev.accept()
