"""A node on the canvas: painted by hand (title, typed sockets, param rows, image, run state).

The item holds no graph data of its own: it reads its :class:`~nodegraph.graph.Node` and
:class:`~nodegraph.registry.NodeSpec` and only keeps a layout (where each socket and row is) and
what the last run showed (state, timings, images). Params are painted rows; editing them is
done by :mod:`gui.editors` (a real widget only while one is being edited).

Readable at every zoom: text is never drawn smaller than ``MIN_TEXT_PX`` screen pixels. Zoomed
out, fonts grow in scene units to stay that size; a row's text is drawn while it still fits its row
(below that the row is an empty box), and the title while the zoom is at least ``LOD_TITLE`` — in
the title band, or, once it outgrows the band, as a larger label over the top of the node. Below
``LOD_BOX`` the scene's overview item paints every node (a box, and its title down to
``LOD_TITLE``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem

from nodegraph.graph import Node
from nodegraph.registry import BOOLEAN, COMBO, FLOAT, INT, STRING, NodeSpec, ParamSpec

from .. import graphops, theme
from .rows import (ARROW_W, MIN_TEXT_PX, Fonts, float_decimals, format_value, paint_multiline,  # noqa: F401
                   paint_toggle, paint_value, text_px)

if TYPE_CHECKING:
    from ..scene import GraphScene

TITLE_H = 26.0
SOCKET_ROW = 20.0
PARAM_ROW = 22.0
MULTI_ROW = 68.0
CONTROL_ROW = 18.0
PAD = 8.0
RADIUS = 6.0
SOCKET_R = 5.0
MIN_W = 190.0
IMAGE_MAX_H = 256.0
LOD_BOX = 0.25
LOD_TITLE = 0.15


@dataclass
class Row:
    """One painted param row."""

    param: ParamSpec
    rect: QRectF
    control: QRectF | None = None  # the "control after run" line of a seed


@dataclass(frozen=True)
class Hit:
    """What is under a point of a node: kind is output, input, param, param_left, param_right,
    control, title, collapse, body."""

    kind: str
    name: str = ""


class NodeItem(QGraphicsItem):
    """The painted node for graph node ``node`` (spec None: its type is unknown)."""

    def __init__(self, scene: GraphScene, node: Node, spec: NodeSpec | None):
        super().__init__()
        Fonts.ensure()
        self.gs = scene
        self.node = node
        self.spec = spec
        self.setFlag(QGraphicsItem.ItemIsSelectable, True)
        self.setAcceptedMouseButtons(Qt.NoButton)
        self.setAcceptHoverEvents(False)
        # run state shown on the node
        self.state: str | None = None
        self.seconds: float | None = None
        self.progress: tuple[int, int] | None = None
        self.error: str | None = None
        self.images: list[QImage] = []
        self.preview: QImage | None = None
        self.problems: dict[str | None, str] = {}  # field ("param x", "input y", None) -> message
        self.warnings: dict[str | None, str] = {}  # the same for warnings (e.g. a node not needed)
        self.hover_row: str | None = None
        self.relayout()
        self.setPos(float(node.pos[0]), float(node.pos[1]))

    # -- layout ----------------------------------------------------------------------------
    @property
    def node_id(self) -> str:
        return self.node.id

    @property
    def collapsed(self) -> bool:
        return graphops.is_collapsed(self.node)

    def title_text(self) -> str:
        if self.node.title:
            return self.node.title
        if self.spec is not None:
            return self.spec.display_name
        return self.node.type

    def socket_lists(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(inputs, outputs) as (name, type); for an unknown type, the linked names."""
        if self.spec is not None:
            return ([(i.name, i.type) for i in self.spec.inputs],
                    [(o.name, o.type) for o in self.spec.outputs])
        g = self.gs.graph
        ins = sorted({(lk.input, "*") for lk in g.inputs_of(self.node.id).values()})
        outs = sorted({(lk.output, "*") for lk in g.links_from(self.node.id)})
        return ins, outs

    def relayout(self) -> None:
        """Recompute sizes and positions of sockets and rows (after params, images, state)."""
        self.prepareGeometryChange()
        fm = Fonts.label_m
        ins, outs = self.socket_lists()
        self.title_str = self.title_text()
        self.title_color = (theme.category_color(self.spec.category) if self.spec is not None
                            else QColor("#7a2e2e"))
        params = list(self.spec.params) if self.spec is not None else []
        w = MIN_W
        w = max(w, Fonts.title_m.horizontalAdvance(self.title_str) + 70)
        for i in range(max(len(ins), len(outs))):
            a = fm.horizontalAdvance(ins[i][0]) if i < len(ins) else 0
            b = fm.horizontalAdvance(outs[i][0]) if i < len(outs) else 0
            w = max(w, a + b + 48)
        for p in params:  # room for label and value, up to a limit
            if p.kind == STRING and p.multiline:
                w = max(w, 280.0)
            elif p.kind != BOOLEAN:
                value = format_value(p, self.node.params.get(p.name, p.default))
                need = fm.horizontalAdvance(p.name) + fm.horizontalAdvance(value) + 2 * PAD + 56
                w = max(w, min(need, 300.0))
        if self.node.size is not None and self.node.size[0]:
            w = max(float(self.node.size[0]), 80.0)
        self.w = float(round(w))
        if self.collapsed:
            self.w = float(round(min(max(Fonts.title_m.horizontalAdvance(self.title_str) + 56, 90),
                                     self.w)))
            self.h = TITLE_H
            mid = TITLE_H / 2
            self.inputs = [(n, t, mid) for n, t in ins]
            self.outputs = [(n, t, mid) for n, t in outs]
            self.rows: list[Row] = []
            self.image_rect = None
            self._finish_layout()
            return
        y = TITLE_H + 4
        self.inputs = [(n, t, y + SOCKET_ROW * i + SOCKET_ROW / 2) for i, (n, t) in enumerate(ins)]
        self.outputs = [(n, t, y + SOCKET_ROW * i + SOCKET_ROW / 2) for i, (n, t) in enumerate(outs)]
        y += SOCKET_ROW * max(len(ins), len(outs))
        if ins or outs:
            y += 2
        self.rows = []
        for p in params:
            h = MULTI_ROW if (p.kind == STRING and p.multiline) else PARAM_ROW
            rect = QRectF(PAD, y + 2, self.w - 2 * PAD, h - 4)
            y += h
            control = None
            if p.control_after_run is not None:
                control = QRectF(PAD, y, self.w - 2 * PAD, CONTROL_ROW - 2)
                y += CONTROL_ROW
            self.rows.append(Row(p, rect, control))
        img = self.shown_image()
        self.image_rect = None
        if img is not None and not img.isNull():
            iw = self.w - 2 * PAD
            ih = min(IMAGE_MAX_H, iw * img.height() / max(1, img.width()))
            self.image_rect = QRectF(PAD, y + 4, iw, ih)
            y += ih + 8
        self.h = float(round(y + 6))
        self._finish_layout()

    def _finish_layout(self) -> None:
        self.error_h = 0.0
        if self.error:
            r = Fonts.small_m.boundingRect(QRectF(0, 0, self.w - 12, 400),
                                            Qt.TextWordWrap, self.error)
            self.error_h = min(r.height(), 120) + 12
        self._bounds = QRectF(-SOCKET_R - 3, -4, self.w + 2 * SOCKET_R + 6,
                              self.h + 8 + (self.error_h + 4 if self.error_h else 0))
        self._body = QRectF(0, 0, self.w, self.h)
        self._input_y = {n: y for n, _, y in self.inputs}
        self._output_y = {n: y for n, _, y in self.outputs}
        self._row_by_name = {r.param.name: r for r in self.rows}

    def shown_image(self) -> QImage | None:
        if self.preview is not None and self.state == "running":
            return self.preview
        if self.images:
            return self.images[0]
        return self.preview

    # -- geometry for wires and hit tests ----------------------------------------------------
    def boundingRect(self) -> QRectF:
        return self._bounds

    def body_rect(self) -> QRectF:
        return self._body

    def row(self, name: str) -> Row | None:
        """The painted row of param ``name`` (None if the node shows no such row)."""
        return self._row_by_name.get(name)

    def input_pos(self, name: str) -> QPointF:
        """Scene position of an input socket (or of a linked param row's socket)."""
        y = self._input_y.get(name)
        if y is None:
            row = self._row_by_name.get(name)
            y = row.rect.center().y() if row is not None and not self.collapsed else TITLE_H / 2
        return self.pos() + QPointF(0, y)

    def output_pos(self, name: str) -> QPointF:
        y = self._output_y.get(name, TITLE_H / 2)
        return self.pos() + QPointF(self.w, y)

    def output_type(self, name: str) -> str:
        for n, t, _ in self.outputs:
            if n == name:
                return t
        return "*"

    def input_type(self, name: str) -> str | None:
        """Socket type of an input, or of a param fed through a link; None if there is neither."""
        for n, t, _ in self.inputs:
            if n == name:
                return t
        if self.spec is not None:
            p = self.spec.param(name)
            if p is not None:
                return p.socket_type
        return None

    def hit(self, pos: QPointF) -> Hit:
        """What lies under ``pos`` (item coordinates)."""
        x, y = pos.x(), pos.y()
        grab = SOCKET_R + 5
        if y < TITLE_H:
            if self.collapsed:
                if x <= grab and self.inputs:
                    return Hit("input", self.inputs[0][0])
                if x >= self.w - grab and self.outputs:
                    return Hit("output", self.outputs[0][0])
            if 4 <= x <= 20:
                return Hit("collapse")
            return Hit("title")
        if self.collapsed:
            return Hit("body")
        for name, _, sy in self.outputs:
            if abs(sy - y) <= SOCKET_ROW / 2 and x >= self.w - max(grab, 60):
                return Hit("output", name)
        for name, _, sy in self.inputs:
            if abs(sy - y) <= SOCKET_ROW / 2 and x <= max(grab, 60):
                return Hit("input", name)
        for row in self.rows:
            r = row.rect
            if r.top() - 2 <= y <= r.bottom() + 2:
                if x <= r.left() - 1:
                    return Hit("param_socket", row.param.name)
                if row.param.kind in (INT, FLOAT, COMBO):
                    if x <= r.left() + ARROW_W:
                        return Hit("param_left", row.param.name)
                    if x >= r.right() - ARROW_W:
                        return Hit("param_right", row.param.name)
                return Hit("param", row.param.name)
            if row.control is not None and row.control.top() <= y <= row.control.bottom():
                return Hit("control", row.param.name)
        return Hit("body")

    # -- run state -------------------------------------------------------------------------
    def set_state(self, state: str | None, *, seconds: float | None = None,
                  error: str | None = None) -> None:
        relayout = (error or None) != (self.error or None)
        self.state = state
        self.seconds = seconds
        self.error = error
        if state != "running":
            self.progress = None
        if relayout:
            self.relayout()
        self.update()
        if state is not None or error:
            self.gs.decorated.add(self)
        self.gs.refresh_overview(geometry=relayout)

    def set_progress(self, step: int, total: int, preview: QImage | None) -> None:
        self.progress = (step, total)
        if preview is not None:
            had = self.preview
            self.preview = preview
            if had is None or had.size() != preview.size():
                self.relayout()
        self.update()

    def set_images(self, images: list[QImage]) -> None:
        self.images = list(images)
        self.relayout()
        self.update()

    # -- painting --------------------------------------------------------------------------
    def paint(self, p: QPainter, option: QStyleOptionGraphicsItem, widget: Any = None) -> None:
        lod = option.levelOfDetailFromTransform(p.worldTransform())
        node = self.node
        selected = self.isSelected()
        drag = self.gs.wire_drag
        dim = drag is not None and not self._accepts_drag(drag)
        muted = node.mode == "muted"
        if dim or muted:
            p.setOpacity(0.35 if muted else 0.45)
        body = self._body
        if lod < LOD_BOX:
            p.fillRect(body, theme.NODE_BODY)
            p.fillRect(QRectF(0, 0, self.w, min(TITLE_H, self.h)), self.title_color)
            if selected or self.state == "failed" or self.problems or self.warnings:
                c = (theme.NODE_SELECTED if selected else theme.PROBLEM
                     if self.state == "failed" or self.problems else theme.WARNING)
                p.setPen(QPen(c, 3 / max(lod, 0.05)))
                p.setBrush(Qt.NoBrush)
                p.drawRect(body)
            if lod >= LOD_TITLE - 1e-6:
                self.paint_title_label(p, lod)
            return
        p.setRenderHint(QPainter.Antialiasing, True)
        # body + title band
        p.setPen(Qt.NoPen)
        p.setBrush(theme.NODE_BODY)
        p.drawRoundedRect(body, RADIUS, RADIUS)
        title = QPainterPath()
        title.setFillRule(Qt.WindingFill)
        title.addRoundedRect(QRectF(0, 0, self.w, TITLE_H), RADIUS, RADIUS)
        if not self.collapsed:
            title.addRect(QRectF(0, TITLE_H - RADIUS, self.w, RADIUS))
        p.setBrush(self.title_color)
        p.drawPath(title.simplified())
        if node.mode == "bypassed":
            p.setBrush(theme.BYPASS_TINT)
            p.drawRoundedRect(body, RADIUS, RADIUS)
        # outline: selection, problems, run state
        outline, width = theme.NODE_BORDER, 1.0
        state_color = theme.STATE_COLORS.get(self.state or "")
        if self.state in ("running", "failed"):
            outline, width = state_color, 2.5
        elif self.state == "cached":
            outline, width = state_color, 2.0
        if self.warnings and not self.problems:
            outline, width = theme.WARNING, 2.5
        if self.problems:
            outline, width = theme.PROBLEM, 2.5
        if selected:
            outline, width = theme.NODE_SELECTED, 2.0
        p.setBrush(Qt.NoBrush)
        p.setPen(QPen(outline, width))
        p.drawRoundedRect(body.adjusted(-0.5, -0.5, 0.5, 0.5), RADIUS, RADIUS)
        if self.state == "running" and self.progress and self.progress[1] > 0:
            frac = max(0.0, min(1.0, self.progress[0] / self.progress[1]))
            p.fillRect(QRectF(2, TITLE_H - 3, (self.w - 4) * frac, 3), theme.STATE_COLORS["running"])
        label_font, _ = Fonts.at(Fonts.label, lod)
        sockets_text = label_font.pixelSize() <= SOCKET_ROW - 3
        self._paint_sockets(p, drag, sockets_text, lod)
        self._paint_title(p, lod)
        if not self.collapsed:
            self._paint_rows(p, lod)
        if self.image_rect is not None and not self.collapsed:
            img = self.shown_image()
            if img is not None:
                target = self.image_rect
                scale = min(target.width() / img.width(), target.height() / img.height())
                w, h = img.width() * scale, img.height() * scale
                r = QRectF(target.center().x() - w / 2, target.top(), w, h)
                p.setRenderHint(QPainter.SmoothPixmapTransform, True)
                p.drawImage(r, img)
        if self.error:
            self._paint_error(p, lod)

    def _accepts_drag(self, drag: Any) -> bool:
        if drag.node_id == self.node.id:
            return True
        if drag.from_output:
            return bool(self.compatible_inputs(drag.type))
        return any(self.gs.registry.compatible(t, drag.type) for _, t, _ in self.outputs)

    def compatible_inputs(self, type_name: str) -> list[str]:
        """Inputs (then params fed by links) that accept ``type_name``, in drawing order."""
        reg = self.gs.registry
        names = [n for n, t, _ in self.inputs if reg.compatible(type_name, t)]
        if self.spec is not None:
            names += [p.name for p in self.spec.params if reg.compatible(type_name, p.socket_type)
                      and type_name != "*"]
        return names

    def _paint_sockets(self, p: QPainter, drag: Any, text: bool, zoom: float) -> None:
        reg = self.gs.registry
        links_in = self.gs.graph.inputs_of(self.node.id)
        font, _ = Fonts.at(Fonts.label, zoom)
        if text:
            p.setFont(font)
        for name, t, y in self.inputs:
            c = theme.color(reg.color(t))
            state = 0
            if drag is not None and drag.node_id != self.node.id:
                state = 1 if drag.from_output and reg.compatible(drag.type, t) else -1
            self._socket(p, QPointF(0, y), c, name in links_in, state)
            if f"input {name}" in self.problems or f"input {name}" in self.warnings:
                p.setPen(QPen(theme.PROBLEM if f"input {name}" in self.problems else theme.WARNING, 2))
                p.setBrush(Qt.NoBrush)
                p.drawEllipse(QPointF(0, y), SOCKET_R + 3, SOCKET_R + 3)
            if text and not self.collapsed:
                p.setPen(theme.TEXT_DIM if state >= 0 else theme.TEXT_FAINT)
                p.drawText(QRectF(SOCKET_R + 6, y - 9, self.w / 2, 18),
                           Qt.AlignVCenter | Qt.AlignLeft, name)
        out_linked = {lk.output for lk in self.gs.graph.links_from(self.node.id)} \
            if self.outputs else set()
        for name, t, y in self.outputs:
            c = theme.color(reg.color(t))
            state = 0
            if drag is not None and drag.node_id != self.node.id:
                state = 1 if (not drag.from_output and reg.compatible(t, drag.type)) else -1
            self._socket(p, QPointF(self.w, y), c, name in out_linked, state)
            if text and not self.collapsed:
                p.setPen(theme.TEXT_DIM if state >= 0 else theme.TEXT_FAINT)
                p.drawText(QRectF(self.w / 2 - 4, y - 9, self.w / 2 - SOCKET_R - 6, 18),
                           Qt.AlignVCenter | Qt.AlignRight, name)
        # sockets of params fed by a link, or that could take the dragged wire
        if not self.collapsed:
            for row in self.rows:
                linked = row.param.name in links_in
                state = 0
                if drag is not None and drag.from_output and drag.node_id != self.node.id:
                    state = 1 if (reg.compatible(drag.type, row.param.socket_type)
                                  and drag.type != "*") else 0
                if linked or state == 1:
                    c = theme.color(reg.color(row.param.socket_type))
                    self._socket(p, QPointF(0, row.rect.center().y()), c, linked, state)

    @staticmethod
    def _socket(p: QPainter, at: QPointF, c: QColor, filled: bool, state: int) -> None:
        r = SOCKET_R
        if state < 0:
            c = QColor(c)
            c.setAlpha(70)
        if state > 0:
            p.setPen(QPen(theme.HIGHLIGHT, 2))
            p.setBrush(c)
            p.drawEllipse(at, r + 2.5, r + 2.5)
            return
        p.setPen(QPen(c.darker(170) if filled else c, 1.5))
        p.setBrush(c if filled else theme.NODE_BODY)
        p.drawEllipse(at, r, r)

    def _paint_title(self, p: QPainter, zoom: float) -> None:
        """The title in its band (with the collapse triangle and the run-state badge), or, once
        the zoom makes it outgrow the band, as a label over the top of the node."""
        font, fm = Fonts.at(Fonts.title, zoom)
        if font.pixelSize() > TITLE_H - 6:
            self.paint_title_label(p, zoom)
            return
        # collapse triangle
        p.setPen(Qt.NoPen)
        p.setBrush(QColor(255, 255, 255, 150))
        tri = QPainterPath()
        if self.collapsed:
            tri.moveTo(8, TITLE_H / 2 - 5)
            tri.lineTo(15, TITLE_H / 2)
            tri.lineTo(8, TITLE_H / 2 + 5)
        else:
            tri.moveTo(7, TITLE_H / 2 - 3)
            tri.lineTo(15, TITLE_H / 2 - 3)
            tri.lineTo(11, TITLE_H / 2 + 3)
        tri.closeSubpath()
        p.drawPath(tri)
        small, small_m = Fonts.at(Fonts.small, zoom)
        badge = self._badge_text() if small.pixelSize() <= TITLE_H - 12 else ""
        badge_w = small_m.horizontalAdvance(badge) + 12 if badge else 0
        p.setFont(font)
        p.setPen(theme.TITLE_TEXT)
        avail = self.w - 24 - badge_w - 6
        title = fm.elidedText(self.title_str, Qt.ElideRight, avail)
        p.drawText(QRectF(21, 0, avail, TITLE_H), Qt.AlignVCenter | Qt.AlignLeft, title)
        if badge and not self.collapsed or (badge and self.collapsed and self.state):
            c = theme.STATE_COLORS.get(self.state or "", theme.TEXT_DIM)
            r = QRectF(self.w - badge_w - 6, 5, badge_w, TITLE_H - 10)
            p.setPen(Qt.NoPen)
            bg = QColor(0, 0, 0, 110)
            p.setBrush(bg)
            p.drawRoundedRect(r, 7, 7)
            p.setFont(small)
            p.setPen(c)
            p.drawText(r, Qt.AlignCenter, badge)

    def paint_title_label(self, p: QPainter, zoom: float) -> None:
        """The title zoomed out: MIN_TEXT_PX on screen, on a band of the title colour as tall as it
        needs over the top of the node, cut to the node's width."""
        font, fm = Fonts.at(Fonts.title, zoom)
        band = QRectF(0, 0, self.w, min(max(TITLE_H, font.pixelSize() * 1.35), max(self.h, TITLE_H)))
        p.fillRect(band, self.title_color)
        pad = 4 / max(zoom, 1e-3)
        p.setFont(font)
        p.setPen(theme.TITLE_TEXT)
        text = fm.elidedText(self.title_str, Qt.ElideRight, max(0.0, self.w - 2 * pad))
        p.drawText(band.adjusted(pad, 0, -pad, 0), Qt.AlignVCenter | Qt.AlignLeft, text)

    def _badge_text(self) -> str:
        s = self.state
        if s == "done":
            return f"✓ {format_seconds(self.seconds)}" if self.seconds is not None else "✓ done"
        if s == "cached":
            return "cached"
        if s == "queued":
            return "queued"
        if s == "running":
            if self.progress and self.progress[1] > 0:
                return f"{self.progress[0]}/{self.progress[1]}"
            return "running"
        if s == "failed":
            return "failed"
        if s == "interrupted":
            return "stopped"
        if self.node.mode == "bypassed":
            return "bypassed"
        if self.node.mode == "muted":
            return "muted"
        return ""

    def _paint_rows(self, p: QPainter, zoom: float) -> None:
        """Each param row: its box (outlined when it has a problem), then its text if the text
        fits the row at ``zoom`` (fonts never shrink below MIN_TEXT_PX on screen)."""
        params = self.node.params
        links_in = self.gs.graph.inputs_of(self.node.id)
        editing = self.gs.editing
        font, fm = Fonts.at(Fonts.label, zoom)
        small, _ = Fonts.at(Fonts.small, zoom)
        for row in self.rows:
            prm, r = row.param, row.rect
            field = f"param {prm.name}"
            outline = theme.PROBLEM if field in self.problems else theme.WARNING if field in self.warnings else None
            p.setPen(QPen(outline, 1.5) if outline is not None else Qt.NoPen)
            p.setBrush(theme.ROW_BG)
            radius = 5 if prm.kind == STRING and prm.multiline else 9
            p.drawRoundedRect(r, radius, radius)
            if row.control is not None and small.pixelSize() <= CONTROL_ROW - 2:
                self._paint_control(p, row, small)
            if (editing is not None and editing == (self.node.id, prm.name)) or font.pixelSize() > r.height() + 1:
                continue  # the editor widget covers it, or its text would not fit
            value = params.get(prm.name, prm.default)
            p.setFont(font)
            if prm.name in links_in:
                p.setPen(theme.TEXT_FAINT)
                p.drawText(r.adjusted(12, 0, -12, 0), Qt.AlignVCenter | Qt.AlignLeft,
                           fm.elidedText(f"{prm.name}  ← linked", Qt.ElideRight, r.width() - 24))
            elif prm.kind == STRING and prm.multiline:
                paint_multiline(p, prm, r, value)
            elif prm.kind == BOOLEAN:
                paint_toggle(p, prm, r, value, fm)
            else:
                paint_value(p, prm, r, value, fm)

    def _paint_control(self, p: QPainter, row: Row, font: QFont) -> None:
        """A seed's "control after run" line: the mode, with a ▾ for its menu."""
        mode = self.node.control_after_run.get(row.param.name, row.param.control_after_run)
        p.setFont(font)
        p.setPen(theme.TEXT_FAINT)
        r = row.control.adjusted(10, 0, -10, 0)
        p.drawText(r, Qt.AlignVCenter | Qt.AlignLeft, "control after run")
        p.setPen(theme.TEXT_DIM)
        p.drawText(r, Qt.AlignVCenter | Qt.AlignRight, f"{mode} ▾")

    def _paint_error(self, p: QPainter, zoom: float) -> None:
        r = QRectF(0, self.h + 4, self.w, self.error_h)
        p.setPen(QPen(theme.PROBLEM, 1))
        p.setBrush(QColor(70, 20, 20, 230))
        p.drawRoundedRect(r, 5, 5)
        font, _ = Fonts.at(Fonts.small, zoom)
        if font.pixelSize() > r.height() - 6:
            return
        p.save()
        p.setClipRect(r)
        p.setFont(font)
        p.setPen(QColor("#ffd6d6"))
        p.drawText(r.adjusted(6, 6, -6, -6), Qt.AlignTop | Qt.AlignLeft | Qt.TextWordWrap,
                   self.error or "")
        p.restore()


def format_seconds(seconds: float) -> str:
    """Run time on a node: ``<1 ms``, ``35 ms``, ``2.41 s``, ``1 min 05 s``."""
    if seconds < 0.001:
        return "<1 ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
