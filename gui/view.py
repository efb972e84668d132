"""The canvas view: turns mouse and keyboard gestures into Document edits.

Items do not handle events themselves; the view finds what is under the cursor (a socket, a param
row, a title, a wire, a group's title bar, empty canvas) and runs the gesture: drag a wire, step or
drag a value, move the selection, rubber-band select, pan, zoom to the cursor. Each finished
gesture is one Document call, i.e. one undo step.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from PySide6.QtCore import QEvent, QMimeData, QPoint, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence, QMouseEvent, QPainter, QWheelEvent
from PySide6.QtWidgets import QApplication, QFrame, QGraphicsView, QMenu

from nodegraph.graph import Link
from nodegraph.registry import BOOLEAN, COMBO, FLOAT, INT, STRING

from . import editors, graphops, theme
from .document import Document, accepting_inputs, providing_outputs
from .items.group import GroupItem
from .items.node import TITLE_H, NodeItem, format_value
from .items.reroute import RerouteItem
from .items.wire import DragWire, WireItem
from .scene import GRID, GraphScene, WireDrag
from .search import SearchPopup

NODE_TYPE_MIME = "application/x-nodegraph-node-type"
MIN_SCALE, MAX_SCALE = 0.04, 3.0
CLICK_SLOP = 3


@dataclass
class _Move:
    start: QPointF
    anchor: QPointF
    nodes: dict[str, QPointF] = field(default_factory=dict)
    reroutes: dict[tuple[tuple[str, str], int], QPointF] = field(default_factory=dict)
    groups: dict[int, QPointF] = field(default_factory=dict)
    moved: bool = False
    rigid: list = field(default_factory=list)  # wires whose ends all move: translated, not redrawn
    loose: set = field(default_factory=set)  # wires with one end moving: new path each frame


@dataclass
class _WireGesture:
    drag: WireDrag
    item: DragWire
    detached: Link | None = None  # the link lifted off an input (dropped elsewhere: removed)


@dataclass
class _ParamGesture:
    node_id: str
    name: str
    start_value: object
    press: QPointF
    dragging: bool = False


class GraphView(QGraphicsView):
    """The canvas for one Document. ``files_dropped(paths)`` for graph files dropped on it."""

    files_dropped = Signal(list)

    def __init__(self, doc: Document, parent=None):
        self.doc = doc
        self.gs = GraphScene(doc.graph, doc.registry)
        super().__init__(self.gs, parent)
        self.gs.setParent(self)
        doc.graph_replaced.connect(self._graph_replaced)
        doc.node_size_hint = self._node_size
        self.setFrameShape(QFrame.NoFrame)
        self.setRenderHints(QPainter.Antialiasing | QPainter.TextAntialiasing
                            | QPainter.SmoothPixmapTransform)
        self.setViewportUpdateMode(QGraphicsView.MinimalViewportUpdate)
        self.setOptimizationFlags(QGraphicsView.DontAdjustForAntialiasing)
        self.setTransformationAnchor(QGraphicsView.NoAnchor)
        self.setResizeAnchor(QGraphicsView.AnchorViewCenter)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setDragMode(QGraphicsView.RubberBandDrag)
        self.setRubberBandSelectionMode(Qt.IntersectsItemShape)
        self.setAcceptDrops(True)
        self.setFocusPolicy(Qt.StrongFocus)
        self.setMouseTracking(True)
        self.snap = False
        self.search = SearchPopup(doc.registry, self)
        self.search.chosen.connect(self._search_chosen)
        self.inline = editors.InlineEditor(self.viewport())
        self._search_ctx: dict | None = None
        self._pan: QPoint | None = None
        self._space = False
        self._move: _Move | None = None
        self._wire: _WireGesture | None = None
        self._param: _ParamGesture | None = None
        self._resize: tuple[int, QRectF, QPointF] | None = None
        self._press_item = None
        self.selected_wire: tuple[str, str] | None = None
        self._last_scene_pos: QPointF | None = None
        self._z = 1.0
        self.actions_by_name: dict[str, QAction] = {}
        self._make_actions()
        self.centerOn(0, 0)

    # -- setup -----------------------------------------------------------------------------
    def _make_actions(self) -> None:
        def act(name: str, text: str, keys, slot) -> QAction:
            a = QAction(text, self)
            if keys:
                seqs = keys if isinstance(keys, list) else [keys]
                a.setShortcuts([QKeySequence(k) for k in seqs])
            a.setShortcutContext(Qt.WidgetWithChildrenShortcut)
            a.triggered.connect(slot)
            self.addAction(a)
            self.actions_by_name[name] = a
            return a

        act("delete", "Delete", [QKeySequence.Delete, "Backspace"], self.delete_selection)
        act("copy", "Copy", QKeySequence.Copy, self.copy_selection)
        act("cut", "Cut", QKeySequence.Cut, self.cut_selection)
        act("paste", "Paste", QKeySequence.Paste, self.paste)
        act("duplicate", "Duplicate", "Ctrl+D", self.duplicate_selection)
        act("select_all", "Select All", QKeySequence.SelectAll, self.select_all)
        act("fit", "Fit Selection (or All)", "F", self.fit_selection)
        act("fit_all", "Fit All", ["Shift+F", "Home"], self.fit_all)
        act("group", "Group Selection", "Ctrl+G", self.group_selection)
        act("bypass", "Bypass", "Ctrl+B", lambda: self.doc.toggle_mode(self.gs.selected_node_ids(),
                                                                      "bypassed"))
        act("mute", "Mute", "Ctrl+M", lambda: self.doc.toggle_mode(self.gs.selected_node_ids(),
                                                                  "muted"))
        act("collapse", "Collapse / Expand", "Alt+C",
            lambda: self.doc.toggle_collapsed(self.gs.selected_node_ids()))
        act("search", "Add Node…", None, lambda: self.open_search(self._cursor_view_pos()))
        snap = act("snap", "Snap to Grid", None, self._toggle_snap)
        snap.setCheckable(True)

    def _toggle_snap(self) -> None:
        self.snap = self.actions_by_name["snap"].isChecked()

    def _graph_replaced(self) -> None:
        self.inline.cancel()
        self.search.close_popup()
        self.selected_wire = None
        self.gs.set_graph(self.doc.graph)

    def _node_size(self, node_id: str) -> tuple[float, float]:
        item = self.gs.node_items.get(node_id)
        return (item.w, item.h) if item is not None else (200.0, 100.0)

    # -- coordinates -------------------------------------------------------------------------
    @property
    def zoom(self) -> float:
        return self.transform().m11()

    def _scene_pos(self, ev) -> QPointF:
        return self.mapToScene(ev.position().toPoint())

    def _cursor_view_pos(self) -> QPoint:
        if self._last_scene_pos is not None:
            p = self.mapFromScene(self._last_scene_pos)
            if self.viewport().rect().contains(p):
                return p
        return self.viewport().rect().center()

    def _to_view(self, viewport_point: QPoint) -> QPoint:
        return self.viewport().mapTo(self, viewport_point)

    # -- zoom and pan ----------------------------------------------------------------------
    def zoom_at(self, factor: float, view_pos: QPoint) -> None:
        """Zoom by ``factor`` keeping the scene point under ``view_pos`` (viewport coords) fixed."""
        s = self.zoom
        factor = max(MIN_SCALE / s, min(MAX_SCALE / s, factor))
        if abs(factor - 1.0) < 1e-6:
            return
        self.inline.commit()
        before = self.mapToScene(view_pos)
        self.scale(factor, factor)
        after = self.mapToScene(view_pos)
        self.pan_scene(after - before)
        self.gs.set_zoom(self.zoom)

    def pan_scene(self, delta: QPointF) -> None:
        """Move the content by ``delta`` scene units (positive: content moves right/down)."""
        s = self.zoom
        h, v = self.horizontalScrollBar(), self.verticalScrollBar()
        h.setValue(round(h.value() - delta.x() * s))
        v.setValue(round(v.value() - delta.y() * s))

    def set_zoom(self, scale: float) -> None:
        self.zoom_at(scale / self.zoom, self.viewport().rect().center())

    def fit_rect(self, rect: QRectF, max_scale: float = 1.25) -> None:
        if rect.isNull() or rect.isEmpty():
            self.resetTransform()
            self.centerOn(0, 0)
            return
        self.inline.commit()
        self.fitInView(rect, Qt.KeepAspectRatio)
        m = 36 / max(self.zoom, 0.02)  # a margin of about 36 pixels
        self.fitInView(rect.adjusted(-m, -m, m, m), Qt.KeepAspectRatio)
        if self.zoom > max_scale:
            self.set_zoom(max_scale)
            self.centerOn(rect.center())
        elif self.zoom < MIN_SCALE:
            self.set_zoom(MIN_SCALE)
            self.centerOn(rect.center())
        self.gs.set_zoom(self.zoom)

    def fit_all(self) -> None:
        self.fit_rect(self.gs.nodes_rect())

    def fit_selection(self) -> None:
        ids = self.gs.selected_node_ids()
        self.fit_rect(self.gs.nodes_rect(ids) if ids else self.gs.nodes_rect())

    def wheelEvent(self, ev: QWheelEvent) -> None:
        dy = ev.angleDelta().y() or ev.angleDelta().x()
        if not dy:
            return
        self.zoom_at(1.0015 ** dy, ev.position().toPoint())
        ev.accept()

    # -- keys ------------------------------------------------------------------------------
    def event(self, ev: QEvent) -> bool:
        if ev.type() == QEvent.KeyPress and ev.key() == Qt.Key_Tab and not self.inline.active:
            self.open_search(self._cursor_view_pos())
            return True
        return super().event(ev)

    def viewportEvent(self, ev: QEvent) -> bool:
        if ev.type() == QEvent.Paint:
            self.gs.set_zoom(self.zoom)  # however the zoom changed, pick the node cache mode
        # Keys sent to the viewport would otherwise move focus on Tab before reaching the view.
        if ev.type() == QEvent.KeyPress and ev.key() == Qt.Key_Tab and not self.inline.active:
            self.open_search(self._cursor_view_pos())
            return True
        return super().viewportEvent(ev)

    def focusNextPrevChild(self, next: bool) -> bool:
        return False  # Tab belongs to the canvas (search)

    def keyPressEvent(self, ev) -> None:
        if ev.key() == Qt.Key_Space and not ev.isAutoRepeat():
            self._space = True
            self.viewport().setCursor(Qt.OpenHandCursor)
            return
        super().keyPressEvent(ev)

    def keyReleaseEvent(self, ev) -> None:
        if ev.key() == Qt.Key_Space and not ev.isAutoRepeat():
            self._space = False
            self.viewport().unsetCursor()
            return
        super().keyReleaseEvent(ev)

    # -- mouse -----------------------------------------------------------------------------
    def mousePressEvent(self, ev: QMouseEvent) -> None:
        if self.search.isVisible():
            self.search.close_popup()
        if self.inline.active:
            self.inline.commit()
        self.setFocus(Qt.MouseFocusReason)
        pos = self._scene_pos(ev)
        self._last_scene_pos = pos
        if ev.button() == Qt.MiddleButton or (ev.button() == Qt.LeftButton and self._space):
            self._pan = ev.position().toPoint()
            self.viewport().setCursor(Qt.ClosedHandCursor)
            return
        if ev.button() == Qt.RightButton:
            self._context_menu(ev, pos)
            return
        if ev.button() != Qt.LeftButton:
            return
        ctrl = bool(ev.modifiers() & (Qt.ControlModifier | Qt.ShiftModifier))
        item = self.gs.item_at(pos, self.viewportTransform())
        self._set_selected_wire(None)
        if isinstance(item, NodeItem):
            self._press_node(item, pos, ctrl)
            return
        if isinstance(item, RerouteItem):
            self._select(item, ctrl)
            self._begin_move(pos, anchor=item.pos())
            return
        if isinstance(item, WireItem):
            if not ctrl:
                self.gs.clearSelection()
            self._set_selected_wire(item.key)
            return
        if isinstance(item, GroupItem):
            kind = item.hit(item.mapFromScene(pos))
            if kind == "resize":
                self._resize = (item.index, item.scene_rect(), pos)
                return
            self._select(item, ctrl)
            self._begin_move(pos, anchor=item.pos())
            return
        if not ctrl:
            self.gs.clearSelection()
        super().mousePressEvent(ev)  # rubber band

    def _press_node(self, item: NodeItem, pos: QPointF, ctrl: bool) -> None:
        local = item.mapFromScene(pos)
        hit = item.hit(local)
        nid = item.node_id
        if hit.kind == "output":
            self._begin_wire(item, hit.name, from_output=True)
            return
        if hit.kind in ("input", "param_socket"):
            link = self.doc.graph.link_into(nid, hit.name)
            if link is not None and link.src in self.gs.node_items:
                # lift the wire off this input: it follows the mouse from its source
                src = self.gs.node_items[link.src]
                self._begin_wire(src, link.output, from_output=True, detached=link)
                return
            if hit.kind == "input":
                self._begin_wire(item, hit.name, from_output=False)
                return
        self._select(item, ctrl, keep_if_selected=True)
        if hit.kind == "collapse":
            self.doc.toggle_collapsed([nid])
            return
        if hit.kind in ("param", "param_left", "param_right", "param_socket"):
            self._press_param(item, hit.kind, hit.name, pos)
            return
        if hit.kind == "control":
            self._control_menu(item, hit.name)
            return
        self._begin_move(pos, anchor=item.pos())

    def _select(self, item, ctrl: bool, keep_if_selected: bool = True) -> None:
        if ctrl:
            item.setSelected(not item.isSelected())
        elif not (keep_if_selected and item.isSelected()):
            self.gs.clearSelection()
            item.setSelected(True)
        if isinstance(item, NodeItem):
            self._z += 0.001
            item.setZValue(self._z)

    def _set_selected_wire(self, key: tuple[str, str] | None) -> None:
        if self.selected_wire == key:
            return
        old = self.gs.wires.get(self.selected_wire) if self.selected_wire else None
        self.selected_wire = key
        if old is not None:
            old.highlighted = False
            old.update()
        new = self.gs.wires.get(key) if key else None
        if new is not None:
            new.highlighted = True
            new.update()

    def mouseMoveEvent(self, ev: QMouseEvent) -> None:
        pos = self._scene_pos(ev)
        self._last_scene_pos = pos
        if self._pan is not None:
            p = ev.position().toPoint()
            d = p - self._pan
            self._pan = p
            h, v = self.horizontalScrollBar(), self.verticalScrollBar()
            h.setValue(h.value() - d.x())
            v.setValue(v.value() - d.y())
            return
        if self._wire is not None:
            self._wire.item.set_end(pos)
            return
        if self._move is not None:
            self._drag_move(pos)
            return
        if self._param is not None:
            self._drag_param(pos)
            return
        if self._resize is not None:
            idx, start, press = self._resize
            if idx < len(self.gs.group_items):
                d = pos - press
                r = QRectF(start.topLeft(), start.size())
                r.setWidth(max(start.width() + d.x(), 120))
                r.setHeight(max(start.height() + d.y(), 80))
                self.gs.group_items[idx].set_rect(r)
            return
        super().mouseMoveEvent(ev)

    def mouseReleaseEvent(self, ev: QMouseEvent) -> None:
        pos = self._scene_pos(ev)
        if self._pan is not None and ev.button() in (Qt.MiddleButton, Qt.LeftButton):
            self._pan = None
            self.viewport().setCursor(Qt.OpenHandCursor) if self._space else self.viewport().unsetCursor()
            return
        if self._wire is not None:
            self._end_wire(pos)
            return
        if self._move is not None:
            self._end_move()
            return
        if self._param is not None:
            self._end_param(pos)
            return
        if self._resize is not None:
            idx = self._resize[0]
            self._resize = None
            if idx < len(self.gs.group_items):
                r = self.gs.group_items[idx].scene_rect()
                groups = [copy.deepcopy(g) for g in self.doc.graph.groups]
                groups[idx].rect = (round(r.x()), round(r.y()), round(r.width()), round(r.height()))
                self.doc.move({}, groups=(list(self.doc.graph.groups), groups))
            return
        super().mouseReleaseEvent(ev)

    def mouseDoubleClickEvent(self, ev: QMouseEvent) -> None:
        if ev.button() != Qt.LeftButton:
            return
        pos = self._scene_pos(ev)
        item = self.gs.item_at(pos, self.viewportTransform())
        if isinstance(item, NodeItem):
            hit = item.hit(item.mapFromScene(pos))
            if hit.kind == "title":
                self.edit_title(item)
            return
        if isinstance(item, WireItem):
            self.doc.add_reroute(item.key, (pos.x(), pos.y()))
            return
        if isinstance(item, GroupItem) and item.hit(item.mapFromScene(pos)) == "title":
            self.edit_group_title(item)
            return
        if item is None:
            self.open_search(ev.position().toPoint())

    # -- moving ----------------------------------------------------------------------------
    def _begin_move(self, pos: QPointF, anchor: QPointF) -> None:
        mv = _Move(pos, anchor)
        groups = [it for it in self.gs.selectedItems() if isinstance(it, GroupItem)]
        for it in self.gs.selectedItems():
            if isinstance(it, NodeItem):
                mv.nodes[it.node_id] = it.pos()
            elif isinstance(it, RerouteItem):
                mv.reroutes[(it.key, it.index)] = it.pos()
        for g in groups:
            mv.groups[g.index] = g.pos()
            for nid in graphops.nodes_in_rect(self.doc.graph, g.group.rect):
                item = self.gs.node_items.get(nid)
                if item is not None:
                    mv.nodes[nid] = item.pos()
            # reroute points inside the frame move with it
            rect = g.scene_rect()
            for key, items in self.gs.reroute_items.items():
                for it in items:
                    if rect.contains(it.pos()):
                        mv.reroutes[(key, it.index)] = it.pos()
        moving = set(mv.nodes)
        moving_points = {key for key, _ in mv.reroutes}
        for key, wire in self.gs.wires.items():
            link = wire.link
            ends = (link.src in moving) + (link.dst in moving)
            if ends == 0 and key not in moving_points:
                continue
            has_points = key in self.gs.reroute_items
            all_points = has_points and all((key, it.index) in mv.reroutes
                                            for it in self.gs.reroute_items[key])
            if ends == 2 and (not has_points or all_points):
                mv.rigid.append(wire)
            else:
                mv.loose.add(key)
        self._move = mv

    def _drag_move(self, pos: QPointF) -> None:
        mv = self._move
        delta = pos - mv.start
        if not mv.moved and (abs(delta.x()) + abs(delta.y())) * self.zoom < CLICK_SLOP:
            return
        mv.moved = True
        if self.snap:
            target = mv.anchor + delta
            snapped = QPointF(round(target.x() / GRID) * GRID, round(target.y() / GRID) * GRID)
            delta = snapped - mv.anchor
        items = self.gs.node_items
        for nid, start in mv.nodes.items():
            item = items.get(nid)
            if item is not None:
                item.setPos(start + delta)
        for (key, idx), start in mv.reroutes.items():
            its = self.gs.reroute_items.get(key)
            if its is not None and idx < len(its):
                its[idx].setPos(start + delta)
        for idx, start in mv.groups.items():
            if idx < len(self.gs.group_items):
                self.gs.group_items[idx].setPos(start + delta)
        for wire in mv.rigid:  # same shape, shifted
            wire.setPos(delta)
        self.gs.refresh_overview()
        self.gs.mark_wires(mv.loose)
        self.gs.flush_wires()  # once per mouse event, however many nodes moved

    def _end_move(self) -> None:
        mv, self._move = self._move, None
        if not mv.moved:
            return
        g = self.doc.graph
        nodes = {}
        for nid in mv.nodes:
            item = self.gs.node_items.get(nid)
            if item is not None and nid in g.nodes:
                p = item.pos()
                nodes[nid] = (tuple(g.nodes[nid].pos), (round(p.x()), round(p.y())))
        links = {}
        keys = {key for key, _ in mv.reroutes}
        for key in keys:
            link = g.link_into(*key)
            its = self.gs.reroute_items.get(key)
            if link is None or its is None:
                continue
            pts = [(it.pos().x(), it.pos().y()) for it in its]
            links[key] = (link, graphops.with_reroutes(link, pts))
        groups = None
        if mv.groups:
            new = [copy.deepcopy(grp) for grp in g.groups]
            for idx in mv.groups:
                if idx < len(new) and idx < len(self.gs.group_items):
                    p = self.gs.group_items[idx].pos()
                    x, y, w, h = new[idx].rect
                    new[idx].rect = (round(p.x()), round(p.y()), w, h)
            groups = (list(g.groups), new)
        self.doc.move(nodes, links, groups)
        # the move command set the rounded positions; wires follow
        self.gs.flush_wires()

    # -- wires -----------------------------------------------------------------------------
    def _begin_wire(self, item: NodeItem, socket: str, from_output: bool,
                    detached: Link | None = None) -> None:
        reg = self.doc.registry
        if from_output:
            t = item.output_type(socket)
            anchor = item.output_pos(socket)
        else:
            t = item.input_type(socket) or "*"
            anchor = item.input_pos(socket)
        drag = WireDrag(t, from_output, item.node_id, socket)
        wire = DragWire(theme.color(reg.color(t)), anchor, from_output)
        self.gs.addItem(wire)
        self._wire = _WireGesture(drag, wire, detached)
        if detached is not None:
            w = self.gs.wires.get((detached.dst, detached.input))
            if w is not None:
                w.setVisible(False)
        self.gs.set_wire_drag(drag)

    def _end_wire(self, pos: QPointF) -> None:
        g, self._wire = self._wire, None
        self.gs.removeItem(g.item)
        self.gs.set_wire_drag(None)
        if g.detached is not None:
            w = self.gs.wires.get((g.detached.dst, g.detached.input))
            if w is not None:
                w.setVisible(True)
        self.viewport().update()
        drag = g.drag
        target = self.gs.item_at(pos, self.viewportTransform())
        if isinstance(target, NodeItem) and target.node_id != drag.node_id:
            self._drop_wire_on_node(g, target, pos)
            return
        if isinstance(target, NodeItem):
            return  # dropped back on its own node: nothing
        if g.detached is not None:
            self.doc.disconnect(g.detached.dst, g.detached.input)
            return
        self._open_wire_search(drag, pos)

    def _drop_wire_on_node(self, g: _WireGesture, target: NodeItem, pos: QPointF) -> None:
        drag = g.drag
        doc = self.doc
        hit = target.hit(target.mapFromScene(pos))
        nid = target.node_id
        if drag.from_output:
            if hit.kind in ("input", "param_socket", "param", "param_left", "param_right"):
                names = [hit.name]  # an explicit socket: that one or nothing
            else:
                names = target.compatible_inputs(drag.type)
                free = [n for n in names if doc.graph.link_into(nid, n) is None]
                names = free + [n for n in names if n not in free]
            for name in names:
                if g.detached is not None and (g.detached.dst, g.detached.input) == (nid, name):
                    return  # put back where it was
                if doc.can_connect(drag.node_id, drag.socket, nid, name):
                    if g.detached is not None:
                        doc.undo.beginMacro("Move wire")
                        doc.disconnect(g.detached.dst, g.detached.input)
                        doc.connect(drag.node_id, drag.socket, nid, name)
                        doc.undo.endMacro()
                    else:
                        doc.connect(drag.node_id, drag.socket, nid, name)
                    return
            return  # refused: incompatible
        if hit.kind == "output":
            names = [hit.name]
        else:
            names = [n for n, t, _ in target.outputs if doc.registry.compatible(t, drag.type)]
        for name in names:
            if doc.can_connect(nid, name, drag.node_id, drag.socket):
                doc.connect(nid, name, drag.node_id, drag.socket)
                return

    def _open_wire_search(self, drag: WireDrag, pos: QPointF) -> None:
        reg = self.doc.registry
        if drag.from_output:
            def accept(spec, t=drag.type):
                return bool(accepting_inputs(spec, t, reg))
            hint = f"Nodes that take {drag.type}"
        else:
            def accept(spec, t=drag.type):
                return bool(providing_outputs(spec, t, reg))
            hint = f"Nodes that give {drag.type}"
        self.open_search(self.mapFromScene(pos), accept, hint,
                         ctx={"pos": pos, "drag": drag})

    # -- search ----------------------------------------------------------------------------
    def open_search(self, viewport_pos: QPoint, accept=None, hint: str = "",
                    ctx: dict | None = None) -> None:
        """Open the node search at ``viewport_pos``; the chosen type is added there."""
        self.inline.commit()
        self._search_ctx = ctx or {"pos": self.mapToScene(viewport_pos), "drag": None}
        self.search.open(self._to_view(viewport_pos), accept, hint)

    def _search_chosen(self, type_id: str) -> None:
        ctx, self._search_ctx = self._search_ctx or {}, None
        pos: QPointF = ctx.get("pos") or self.mapToScene(self.viewport().rect().center())
        drag: WireDrag | None = ctx.get("drag")
        if drag is None:
            nid = self.doc.add_node(type_id, (pos.x(), pos.y()))
        elif drag.from_output:
            nid = self.doc.add_node(type_id, (pos.x() + 10, pos.y() - TITLE_H - 10),
                                    link_from=(drag.node_id, drag.socket))
        else:
            nid = self.doc.add_node(type_id, (pos.x() - 230, pos.y() - TITLE_H - 10),
                                    link_to=(drag.node_id, drag.socket))
        item = self.gs.node_items.get(nid)
        if item is not None:
            self.gs.clearSelection()
            item.setSelected(True)
        self.setFocus()

    # -- params ----------------------------------------------------------------------------
    def _press_param(self, item: NodeItem, kind: str, name: str, pos: QPointF) -> None:
        spec = item.spec
        p = spec.param(name) if spec is not None else None
        if p is None:
            return
        nid = item.node_id
        if name in self.doc.graph.inputs_of(nid):
            return  # fed by a wire: the value is not used
        value = self.doc.graph.nodes[nid].params.get(name, p.default)
        if p.kind == BOOLEAN:
            self.doc.set_param(nid, name, not bool(value))
            return
        if kind in ("param_left", "param_right"):
            d = -1 if kind == "param_left" else 1
            choices = self._choices(p) if p.kind == COMBO else ()
            self.doc.set_param(nid, name, editors.stepped(p, value, d, choices))
            return
        if p.kind == COMBO:
            self._combo_menu(item, p, value)
            return
        if p.kind in (INT, FLOAT):
            self._param = _ParamGesture(nid, name, value, pos)
            return
        if p.kind == STRING:
            self.edit_param(item, name)

    def _drag_param(self, pos: QPointF) -> None:
        g = self._param
        dx = pos.x() - g.press.x()
        if not g.dragging and abs(dx) * self.zoom < CLICK_SLOP:
            return
        g.dragging = True
        item = self.gs.node_items.get(g.node_id)
        if item is None or item.spec is None:
            return
        p = item.spec.param(g.name)
        value = editors.dragged(p, g.start_value, dx)
        if self.doc.graph.nodes[g.node_id].params.get(g.name) != value:
            self.doc.graph.set_param(g.node_id, g.name, value)  # live; one undo step on release

    def _end_param(self, pos: QPointF) -> None:
        g, self._param = self._param, None
        if g.node_id not in self.doc.graph.nodes:
            return
        if g.dragging:
            value = self.doc.graph.nodes[g.node_id].params.get(g.name)
            # put the old value back so the command records a real change
            self.doc.graph.set_param(g.node_id, g.name, g.start_value)
            self.doc.set_param(g.node_id, g.name, value)
            return
        item = self.gs.node_items.get(g.node_id)
        if item is not None:
            self.edit_param(item, g.name)

    def _choices(self, p) -> tuple:
        try:
            return tuple(p.resolve_choices(getattr(self.doc, "options", None)))
        except Exception:
            return ()

    def _combo_menu(self, item: NodeItem, p, value) -> None:
        menu = QMenu(self)
        for c in self._choices(p):
            a = menu.addAction(str(c))
            a.setCheckable(True)
            a.setChecked(c == value)
            a.triggered.connect(lambda _=False, c=c, nid=item.node_id:
                                self.doc.set_param(nid, p.name, c))
        row = item._row_by_name[p.name]
        at = self.mapFromScene(item.mapToScene(row.rect.bottomLeft()))
        menu.popup(self.viewport().mapToGlobal(at))
        self._menu = menu

    def _control_menu(self, item: NodeItem, name: str) -> None:
        from nodegraph.registry import CONTROL_MODES

        menu = QMenu(self)
        cur = item.node.control_after_run.get(name, item.spec.param(name).control_after_run)
        for mode in CONTROL_MODES:
            a = menu.addAction(mode)
            a.setCheckable(True)
            a.setChecked(mode == cur)
            a.triggered.connect(lambda _=False, m=mode, nid=item.node_id:
                                self.doc.set_control(nid, name, m))
        row = item._row_by_name[name]
        at = self.mapFromScene(item.mapToScene(row.control.bottomLeft()))
        menu.popup(self.viewport().mapToGlobal(at))
        self._menu = menu

    def edit_param(self, item: NodeItem, name: str) -> None:
        """Open the text editor over a param row (numbers and strings)."""
        p = item.spec.param(name) if item.spec is not None else None
        row = item._row_by_name.get(name)
        if p is None or row is None:
            return
        nid = item.node_id
        value = self.doc.graph.nodes[nid].params.get(name, p.default)
        rect = self.mapFromScene(item.mapToScene(row.rect)).boundingRect()
        text = str(value) if p.kind != FLOAT else format_value(p, value)

        def commit(txt: str) -> None:
            if nid not in self.doc.graph.nodes:
                return
            try:
                v = editors.parse_text(p, txt)
            except ValueError:
                return
            self.doc.set_param(nid, name, v)

        def end() -> None:
            self.gs.editing = None
            it = self.gs.node_items.get(nid)
            if it is not None:
                it.update()

        self.gs.editing = (nid, name)
        item.update()
        self.inline.begin(rect, text, multiline=p.kind == STRING and p.multiline,
                          pixel_size=round(11 * self.zoom), on_commit=commit, on_end=end,
                          key=(nid, name))

    def edit_title(self, item: NodeItem) -> None:
        nid = item.node_id
        rect = self.mapFromScene(item.mapToScene(QRectF(18, 2, item.w - 22, TITLE_H - 4))
                                 ).boundingRect()
        self.inline.begin(rect, item.title_text(), multiline=False,
                          pixel_size=round(12 * self.zoom),
                          on_commit=lambda t: self.doc.set_title(nid, t.strip()))

    def edit_group_title(self, item: GroupItem) -> None:
        idx = item.index
        rect = self.mapFromScene(item.mapToScene(QRectF(4, 2, item.rect.width() - 8, 26))
                                 ).boundingRect()
        self.inline.begin(rect, item.group.title, multiline=False,
                          pixel_size=round(15 * self.zoom),
                          on_commit=lambda t: self.doc.rename_group(idx, t.strip() or "Group"))

    # -- context menu ------------------------------------------------------------------------
    def _context_menu(self, ev: QMouseEvent, pos: QPointF) -> None:
        item = self.gs.item_at(pos, self.viewportTransform())
        menu = QMenu(self)
        if isinstance(item, NodeItem):
            if not item.isSelected():
                self.gs.clearSelection()
                item.setSelected(True)
            for name in ("bypass", "mute", "collapse", None, "copy", "duplicate", "group",
                         None, "delete"):
                menu.addSeparator() if name is None else menu.addAction(self.actions_by_name[name])
            menu.addAction("Rename…", lambda: self.edit_title(item))
        elif isinstance(item, WireItem):
            key = item.key
            menu.addAction("Add reroute point",
                           lambda: self.doc.add_reroute(key, (pos.x(), pos.y())))
            menu.addAction("Disconnect", lambda: self.doc.disconnect(*key))
        else:
            menu.addAction("Add node…", lambda: self.open_search(ev.position().toPoint()))
            menu.addAction(self.actions_by_name["paste"])
            menu.addAction(self.actions_by_name["fit_all"])
        menu.popup(ev.globalPosition().toPoint())
        self._menu = menu

    # -- selection-wide edits ------------------------------------------------------------------
    def selection(self) -> tuple[list[str], list[int], dict[tuple[str, str], list[int]]]:
        nodes, groups, reroutes = [], [], {}
        for it in self.gs.selectedItems():
            if isinstance(it, NodeItem):
                nodes.append(it.node_id)
            elif isinstance(it, GroupItem):
                groups.append(it.index)
            elif isinstance(it, RerouteItem):
                reroutes.setdefault(it.key, []).append(it.index)
        return nodes, groups, reroutes

    def delete_selection(self) -> None:
        nodes, groups, reroutes = self.selection()
        links = []
        if self.selected_wire is not None:
            link = self.doc.graph.link_into(*self.selected_wire)
            if link is not None:
                links.append(link)
            self.selected_wire = None
        self.doc.delete(nodes, links, groups, reroutes)

    def copy_selection(self) -> bool:
        ids = self.gs.selected_node_ids()
        if not ids:
            return False
        text = self.doc.copy_text(ids)
        mime = QMimeData()
        mime.setData(graphops.FRAGMENT_MIME, text.encode("utf-8"))
        mime.setText(text)
        QApplication.clipboard().setMimeData(mime)
        return True

    def cut_selection(self) -> None:
        if self.copy_selection():
            self.doc.undo.beginMacro("Cut")
            self.delete_selection()
            self.doc.undo.endMacro()

    def paste(self) -> list[str]:
        mime = QApplication.clipboard().mimeData()
        if mime is None:
            return []
        if mime.hasFormat(graphops.FRAGMENT_MIME):
            text = bytes(mime.data(graphops.FRAGMENT_MIME)).decode("utf-8")
        else:
            text = mime.text()
        if not text:
            return []
        at = self.mapToScene(self._cursor_view_pos())
        ids = self.doc.paste(text, (at.x(), at.y()))
        self._select_ids(ids)
        return ids

    def duplicate_selection(self) -> list[str]:
        ids = self.doc.duplicate(self.gs.selected_node_ids())
        self._select_ids(ids)
        return ids

    def _select_ids(self, ids: list[str]) -> None:
        if not ids:
            return
        self.gs.clearSelection()
        for nid in ids:
            item = self.gs.node_items.get(nid)
            if item is not None:
                item.setSelected(True)

    def select_all(self) -> None:
        for item in self.gs.node_items.values():
            item.setSelected(True)

    def group_selection(self) -> None:
        self.doc.group(self.gs.selected_node_ids())

    # -- drops -----------------------------------------------------------------------------
    def dragEnterEvent(self, ev) -> None:
        md = ev.mimeData()
        if md.hasFormat(NODE_TYPE_MIME) or md.hasUrls():
            ev.acceptProposedAction()
        else:
            ev.ignore()

    def dragMoveEvent(self, ev) -> None:
        self.dragEnterEvent(ev)

    def dropEvent(self, ev) -> None:
        md = ev.mimeData()
        if md.hasFormat(NODE_TYPE_MIME):
            type_id = bytes(md.data(NODE_TYPE_MIME)).decode()
            pos = self.mapToScene(ev.position().toPoint())
            if type_id in self.doc.registry:
                self.doc.add_node(type_id, (pos.x(), pos.y()))
            ev.acceptProposedAction()
            return
        if md.hasUrls():
            paths = [u.toLocalFile() for u in md.urls() if u.isLocalFile()]
            if paths:
                self.files_dropped.emit(paths)
                ev.acceptProposedAction()
                return
        ev.ignore()

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:
        if len(self.doc.graph):
            return
        # an empty graph: say how to start
        painter.save()
        painter.resetTransform()
        r = self.viewport().rect()
        f = painter.font()
        f.setPixelSize(15)
        painter.setFont(f)
        painter.setPen(theme.TEXT_FAINT)
        painter.drawText(r, Qt.AlignCenter,
                         "Double-click or press Tab to add a node\n"
                         "Drag a node from the library · drop a graph file or a PNG here")
        painter.restore()

    def scrollContentsBy(self, dx: int, dy: int) -> None:
        if self.inline.active and (dx or dy):
            self.inline.commit()
        super().scrollContentsBy(dx, dy)
