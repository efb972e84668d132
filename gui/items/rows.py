"""Painting a node's param rows and the fonts of the canvas: text drawn never smaller than
``MIN_TEXT_PX`` screen pixels (zoomed out, fonts grow in scene units instead)."""
from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainter, QPainterPath

from nodegraph.registry import BOOLEAN, COMBO, FLOAT, INT, ParamSpec

from .. import theme

MIN_TEXT_PX = 9.0
"""No text is drawn smaller than this many screen pixels (zoomed out, fonts grow instead)."""
ARROW_W = 16.0


class Fonts:
    """Fonts and metrics shared by every node (built once a QApplication exists)."""

    title = label = small = None
    title_m = label_m = small_m = None
    _scaled: dict[tuple[int, bool], tuple[QFont, QFontMetricsF]] = {}

    @classmethod
    def ensure(cls) -> None:
        if cls.title is None:
            cls.title = theme.node_font(12, bold=True)
            cls.label = theme.node_font(11)
            cls.small = theme.node_font(10)
            cls.title_m = QFontMetricsF(cls.title)
            cls.label_m = QFontMetricsF(cls.label)
            cls.small_m = QFontMetricsF(cls.small)

    @classmethod
    def at(cls, font: QFont, zoom: float) -> tuple[QFont, QFontMetricsF]:
        """``font`` grown (in scene pixels) so that it is at least MIN_TEXT_PX on screen at ``zoom``,
        with its metrics."""
        px = max(font.pixelSize(), math.ceil(MIN_TEXT_PX / max(zoom, 1e-3)))
        key = (px, font.bold())
        found = cls._scaled.get(key)
        if found is None:
            f = QFont(font)
            f.setPixelSize(px)
            found = cls._scaled[key] = (f, QFontMetricsF(f))
        return found


def text_px(font: QFont, zoom: float) -> float:
    """The height in scene pixels ``font`` is drawn with at ``zoom`` (see _Fonts.at)."""
    return float(max(font.pixelSize(), math.ceil(MIN_TEXT_PX / max(zoom, 1e-3))))


def paint_multiline(p: QPainter, prm: ParamSpec, r: QRectF, value: Any) -> None:
    inner = r.adjusted(8, 5, -8, -5)
    p.save()
    p.setClipRect(r)
    if value:
        p.setPen(theme.TEXT)
        p.drawText(inner, Qt.AlignTop | Qt.AlignLeft | Qt.TextWordWrap, str(value))
    else:
        p.setPen(theme.TEXT_FAINT)
        p.drawText(inner, Qt.AlignTop | Qt.AlignLeft, prm.name)
    p.restore()

def paint_toggle(p: QPainter, prm: ParamSpec, r: QRectF, value: Any, fm: QFontMetricsF) -> None:
    p.setPen(theme.TEXT_DIM)
    p.drawText(r.adjusted(12, 0, -40, 0), Qt.AlignVCenter | Qt.AlignLeft,
               fm.elidedText(prm.name, Qt.ElideRight, r.width() - 52))
    sw = QRectF(r.right() - 36, r.center().y() - 6, 26, 12)
    on = bool(value)
    p.setPen(Qt.NoPen)
    p.setBrush(QColor("#4a8f5a") if on else QColor("#44474d"))
    p.drawRoundedRect(sw, 6, 6)
    p.setBrush(theme.TEXT)
    cx = sw.right() - 6 if on else sw.left() + 6
    p.drawEllipse(QPointF(cx, sw.center().y()), 4.5, 4.5)

def paint_value(p: QPainter, prm: ParamSpec, r: QRectF, value: Any, fm: QFontMetricsF) -> None:
    """A number, choice or one-line text: the name left, the value right (arrows for steps)."""
    arrows = prm.kind in (INT, FLOAT, COMBO)
    inner = r.adjusted(ARROW_W + 2 if arrows else 10, 0, -(ARROW_W + 2) if arrows else -10, 0)
    if arrows:
        p.setPen(Qt.NoPen)
        p.setBrush(theme.TEXT_FAINT)
        cy = r.center().y()
        for tip, back in ((r.left() + 6, r.left() + 11), (r.right() - 6, r.right() - 11)):
            arrow = QPainterPath()
            arrow.moveTo(back, cy - 4)
            arrow.lineTo(tip, cy)
            arrow.lineTo(back, cy + 4)
            arrow.closeSubpath()
            p.drawPath(arrow)
    text = format_value(prm, value)
    # the value keeps what it needs up to 65% of the row; the label gets the rest
    value_w = min(fm.horizontalAdvance(text), inner.width() * 0.65)
    text = fm.elidedText(text, Qt.ElideMiddle if prm.kind == COMBO else Qt.ElideRight,
                         max(value_w, 20))
    p.setPen(theme.TEXT_DIM)
    p.drawText(inner, Qt.AlignVCenter | Qt.AlignLeft,
               fm.elidedText(prm.name, Qt.ElideRight, inner.width() - value_w - 10))
    p.setPen(theme.TEXT)
    p.drawText(inner, Qt.AlignVCenter | Qt.AlignRight, text)


def float_decimals(param: ParamSpec) -> int:
    """Decimals shown for a FLOAT param: as many as its step needs (at least 1, step 0.01 → 2)."""
    step = float(param.step or 0.01)
    decimals = 0
    while step < 0.999 and decimals < 6:
        step *= 10
        decimals += 1
    return max(decimals, 1)


def format_value(param: ParamSpec, value: Any) -> str:
    """How a param value reads on the node."""
    if param.kind == FLOAT and isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.{float_decimals(param)}f}"
    if param.kind == BOOLEAN:
        return "true" if value else "false"
    return str(value)
