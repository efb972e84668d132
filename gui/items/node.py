"""A node on the canvas: painted by hand (title, typed sockets, param rows, image, run state).

The item holds no graph data of its own: it reads its :class:`~nodegraph.graph.Node` and
:class:`~nodegraph.registry.NodeSpec` and only keeps a layout (where each socket and row is) and
what the last run showed (state, timings, images). Params are painted rows; editing them is
done by :mod:`gui.editors` (a real widget only while one is being edited).

Level of detail: below ``LOD_TEXT`` zoom no text is drawn, below ``LOD_BOX`` a node is a box
with a coloured title band.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFontMetricsF, QImage, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem

from nodegraph.graph import Node
from nodegraph.registry import BOOLEAN, COMBO, FLOAT, INT, STRING, NodeSpec, ParamSpec

from .. import graphops, theme

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
ARROW_W = 16.0
IMAGE_MAX_H = 256.0
LOD_BOX = 0.25
LOD_TEXT = 0.42


class _Fonts:
    """Fonts and metrics shared by every node (built once a QApplication exists)."""

    title = label = small = None
    title_m = label_m = small_m = None

    @classmethod
    def ensure(cls) -> None:
        if cls.title is None:
            cls.title = theme.node_font(12, bold=True)
            cls.label = theme.node_font(11)
            cls.small = theme.node_font(10)
            cls.title_m = QFontMetricsF(cls.title)
            cls.label_m = QFontMetricsF(cls.label)
            cls.small_m = QFontMetricsF(cls.small)


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
        _Fonts.ensure()
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
        fm = _Fonts.label_m
        ins, outs = self.socket_lists()
        self.title_str = self.title_text()
        self.title_color = (theme.category_color(self.spec.category) if self.spec is not None
                            else QColor("#7a2e2e"))
        params = list(self.spec.params) if self.spec is not None else []
        w = MIN_W
        w = max(w, _Fonts.title_m.horizontalAdvance(self.title_str) + 70)
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
            self.w = float(round(min(max(_Fonts.title_m.horizontalAdvance(self.title_str) + 56, 90),
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
            r = _Fonts.small_m.boundingRect(QRectF(0, 0, self.w - 12, 400),
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
            if selected or self.state == "failed" or self.problems:
                c = theme.NODE_SELECTED if selected else theme.PROBLEM
                p.setPen(QPen(c, 3 / max(lod, 0.05)))
                p.setBrush(Qt.NoBrush)
                p.drawRect(body)
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
        text = lod >= LOD_TEXT
        self._paint_sockets(p, drag, text)
        if text:
            self._paint_title(p)
            if not self.collapsed:
                self._paint_rows(p)
        else:
            for row in self.rows:
                p.setPen(Qt.NoPen)
                p.setBrush(theme.ROW_BG)
                p.drawRoundedRect(row.rect, 4, 4)
        if self.image_rect is not None and not self.collapsed:
            img = self.shown_image()
            if img is not None:
                target = self.image_rect
                scale = min(target.width() / img.width(), target.height() / img.height())
                w, h = img.width() * scale, img.height() * scale
                r = QRectF(target.center().x() - w / 2, target.top(), w, h)
                p.setRenderHint(QPainter.SmoothPixmapTransform, True)
                p.drawImage(r, img)
        if self.error and text:
            self._paint_error(p)

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

    def _paint_sockets(self, p: QPainter, drag: Any, text: bool) -> None:
        reg = self.gs.registry
        links_in = self.gs.graph.inputs_of(self.node.id)
        fm_font = _Fonts.label
        if text:
            p.setFont(fm_font)
        for name, t, y in self.inputs:
            c = theme.color(reg.color(t))
            state = 0
            if drag is not None and drag.node_id != self.node.id:
                state = 1 if drag.from_output and reg.compatible(drag.type, t) else -1
            self._socket(p, QPointF(0, y), c, name in links_in, state)
            if f"input {name}" in self.problems:
                p.setPen(QPen(theme.PROBLEM, 2))
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

    def _paint_title(self, p: QPainter) -> None:
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
        badge = self._badge_text()
        badge_w = _Fonts.small_m.horizontalAdvance(badge) + 12 if badge else 0
        p.setFont(_Fonts.title)
        p.setPen(theme.TITLE_TEXT)
        avail = self.w - 24 - badge_w - 6
        title = _Fonts.title_m.elidedText(self.title_str, Qt.ElideRight, avail)
        p.drawText(QRectF(21, 0, avail, TITLE_H), Qt.AlignVCenter | Qt.AlignLeft, title)
        if badge and not self.collapsed or (badge and self.collapsed and self.state):
            c = theme.STATE_COLORS.get(self.state or "", theme.TEXT_DIM)
            r = QRectF(self.w - badge_w - 6, 5, badge_w, TITLE_H - 10)
            p.setPen(Qt.NoPen)
            bg = QColor(0, 0, 0, 110)
            p.setBrush(bg)
            p.drawRoundedRect(r, 7, 7)
            p.setFont(_Fonts.small)
            p.setPen(c)
            p.drawText(r, Qt.AlignCenter, badge)

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

    def _paint_rows(self, p: QPainter) -> None:
        params = self.node.params
        links_in = self.gs.graph.inputs_of(self.node.id)
        editing = self.gs.editing
        fm = _Fonts.label_m
        for row in self.rows:
            prm = row.param
            r = row.rect
            problem = self.problems.get(f"param {prm.name}")
            p.setPen(QPen(theme.PROBLEM, 1.5) if problem else Qt.NoPen)
            p.setBrush(theme.ROW_BG)
            p.drawRoundedRect(r, 9 if prm.kind != STRING or not prm.multiline else 5,
                              9 if prm.kind != STRING or not prm.multiline else 5)
            if row.control is not None:
                mode = self.node.control_after_run.get(prm.name, prm.control_after_run)
                p.setFont(_Fonts.small)
                p.setPen(theme.TEXT_FAINT)
                p.drawText(row.control.adjusted(10, 0, -10, 0), Qt.AlignVCenter | Qt.AlignLeft,
                           "control after run")
                p.setPen(theme.TEXT_DIM)
                p.drawText(row.control.adjusted(10, 0, -10, 0), Qt.AlignVCenter | Qt.AlignRight,
                           f"{mode} ▾")
            if editing is not None and editing == (self.node.id, prm.name):
                continue  # the editor widget covers it
            value = params.get(prm.name, prm.default)
            p.setFont(_Fonts.label)
            if prm.name in links_in:
                p.setPen(theme.TEXT_FAINT)
                p.drawText(r.adjusted(12, 0, -12, 0), Qt.AlignVCenter | Qt.AlignLeft,
                           f"{prm.name}  ← linked")
                continue
            if prm.kind == STRING and prm.multiline:
                inner = r.adjusted(8, 5, -8, -5)
                if value:
                    p.setPen(theme.TEXT)
                    p.drawText(inner, Qt.AlignTop | Qt.AlignLeft | Qt.TextWordWrap, str(value))
                else:
                    p.setPen(theme.TEXT_FAINT)
                    p.drawText(inner, Qt.AlignTop | Qt.AlignLeft, prm.name)
                continue
            if prm.kind == BOOLEAN:
                p.setPen(theme.TEXT_DIM)
                p.drawText(r.adjusted(12, 0, -40, 0), Qt.AlignVCenter | Qt.AlignLeft, prm.name)
                sw = QRectF(r.right() - 36, r.center().y() - 6, 26, 12)
                on = bool(value)
                p.setPen(Qt.NoPen)
                p.setBrush(QColor("#4a8f5a") if on else QColor("#44474d"))
                p.drawRoundedRect(sw, 6, 6)
                p.setBrush(theme.TEXT)
                cx = sw.right() - 6 if on else sw.left() + 6
                p.drawEllipse(QPointF(cx, sw.center().y()), 4.5, 4.5)
                continue
            arrows = prm.kind in (INT, FLOAT, COMBO)
            inner = r.adjusted(ARROW_W + 2 if arrows else 10, 0, -(ARROW_W + 2) if arrows else -10, 0)
            if arrows:
                p.setPen(Qt.NoPen)
                p.setBrush(theme.TEXT_FAINT)
                cy = r.center().y()
                left = QPainterPath()
                left.moveTo(r.left() + 11, cy - 4)
                left.lineTo(r.left() + 6, cy)
                left.lineTo(r.left() + 11, cy + 4)
                left.closeSubpath()
                right = QPainterPath()
                right.moveTo(r.right() - 11, cy - 4)
                right.lineTo(r.right() - 6, cy)
                right.lineTo(r.right() - 11, cy + 4)
                right.closeSubpath()
                p.drawPath(left)
                p.drawPath(right)
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

    def _paint_error(self, p: QPainter) -> None:
        r = QRectF(0, self.h + 4, self.w, self.error_h)
        p.setPen(QPen(theme.PROBLEM, 1))
        p.setBrush(QColor(70, 20, 20, 230))
        p.drawRoundedRect(r, 5, 5)
        p.setFont(_Fonts.small)
        p.setPen(QColor("#ffd6d6"))
        p.drawText(r.adjusted(6, 6, -6, -6), Qt.AlignTop | Qt.AlignLeft | Qt.TextWordWrap,
                   self.error or "")


def format_seconds(seconds: float) -> str:
    """Run time on a node: ``<1 ms``, ``35 ms``, ``2.41 s``, ``1 min 05 s``."""
    if seconds < 0.001:
        return "<1 ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"


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
