"""The canvas view: turns mouse and keyboard input into Document edits.

Items do not handle events themselves; the view finds what is under the cursor (a socket, a param
row, a title, a wire, a group's title bar, empty canvas) and starts the gesture for it — one object
per gesture (:mod:`gui.gestures`: move, wire, param drag, group resize, pan) that follows the mouse
until the button comes up. Each finished gesture is one Document call, i.e. one undo step. The
view also zooms to the cursor (wheel; Ctrl+= / Ctrl+- / Ctrl+0 at the centre), rubber-band selects,
opens the node search and the in-place text editor, shows tooltips from the specs' descriptions and
a minimap of large graphs (:mod:`gui.minimap`); its menus are in :mod:`gui.menus`, copy and paste in
:mod:`gui.clipboard`. New nodes land where they were asked for or at the nearest free spot
(:mod:`gui.placement`).
"""
from __future__ import annotations

from PySide6.QtCore import QEvent, QPoint, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QAction, QHelpEvent, QKeySequence, QMouseEvent, QPainter, QWheelEvent
from PySide6.QtWidgets import QFrame, QGraphicsView, QMenu, QToolTip

from nodegraph.graph import ChangeKind, GraphChange, Node

from . import editors, inline, placement, theme, tips
from .clipboard import CanvasClipboard
from .document import Document
from .gestures import Gesture
from .gestures.move import MoveGesture
from .gestures.pan import PanGesture
from .gestures.param import press_param
from .gestures.resize import GroupResize
from .gestures.wire import WireGesture
from .items.group import GroupItem
from .items.node import TITLE_H, NodeItem
from .items.reroute import RerouteItem
from .items.wire import WireItem
from .mask_painter import InputPreviews
from .menus import CanvasMenus
from .minimap import Minimap
from .scene import GraphScene, WireDrag
from .search import SearchPopup

NODE_TYPE_MIME = "application/x-nodegraph-node-type"
MIN_SCALE, MAX_SCALE = 0.04, 3.0
KEY_ZOOM = 1.25
"""Each Ctrl+= / Ctrl+- zooms by this factor."""


class GraphView(QGraphicsView):
    """The canvas for one Document. ``files_dropped(paths)`` for graph files dropped on it;
    ``details_requested(node id)`` for a failed node's "Error details…"."""

    files_dropped = Signal(list)
    details_requested = Signal(str)

    def __init__(self, doc: Document, parent=None):
        self.doc = doc
        self.gs = GraphScene(doc.graph, doc.registry)
        super().__init__(self.gs, parent)
        self.gs.setParent(self)
        doc.graph_replaced.connect(self._graph_replaced)
        doc.node_size_hint = self._node_size
        doc.placer = self._place
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
        self.menus = CanvasMenus(self)
        self.clipboard = CanvasClipboard(self)
        self.input_previews = InputPreviews(self)  # Load Image nodes show their picture and mask
        self._search_ctx: dict | None = None
        self.space_down = False  # Space held: the left button pans
        self._gesture: Gesture | None = None
        self._gesture_button = Qt.NoButton
        self.selected_wire: tuple[str, str] | None = None
        self._last_scene_pos: QPointF | None = None
        self._z = 1.0
        self.actions_by_name: dict[str, QAction] = {}
        self.minimap = Minimap(self)
        self.gs.graph_changed.connect(self._follow_graph)
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
        act("copy", "Copy", QKeySequence.Copy, self.clipboard.copy)
        act("cut", "Cut", QKeySequence.Cut, self.clipboard.cut)
        act("paste", "Paste", QKeySequence.Paste, lambda: self.clipboard.paste())
        act("paste_links", "Paste With Links", "Ctrl+Shift+V", self.clipboard.paste_with_links)
        act("duplicate", "Duplicate", "Ctrl+D", self.clipboard.duplicate)
        act("select_all", "Select All", QKeySequence.SelectAll, self.select_all)
        act("fit", "Fit Selection (or All)", "F", self.fit_selection)
        act("fit_all", "Fit All", ["Shift+F", "Home"], self.fit_all)
        act("zoom_in", "Zoom In", ["Ctrl+=", "Ctrl++"],
            lambda: self.zoom_at(KEY_ZOOM, self.viewport().rect().center()))
        act("zoom_out", "Zoom Out", "Ctrl+-",
            lambda: self.zoom_at(1 / KEY_ZOOM, self.viewport().rect().center()))
        act("zoom_reset", "Actual Size (100%)", "Ctrl+0", lambda: self.set_zoom(1.0))
        minimap = act("minimap", "Minimap", None, lambda: None)
        minimap.setCheckable(True)
        minimap.setChecked(True)
        minimap.toggled.connect(self.minimap.set_enabled)
        act("group", "Group Selection", "Ctrl+G", self.group_selection)
        act("bypass", "Bypass", "Ctrl+B", lambda: self.doc.toggle_mode(self.gs.selected_node_ids(),
                                                                      "bypassed"))
        act("mute", "Mute", "Ctrl+M", lambda: self.doc.toggle_mode(self.gs.selected_node_ids(),
                                                                  "muted"))
        act("collapse", "Collapse / Expand", "Alt+C",
            lambda: self.doc.toggle_collapsed(self.gs.selected_node_ids()))
        act("search", "Add Node…", None, lambda: self.open_search(self.cursor_view_pos()))
        snap = act("snap", "Snap to Grid", None, self._toggle_snap)
        snap.setCheckable(True)

    @property
    def _menu(self) -> QMenu | None:
        """The menu shown last (kept alive while it shows)."""
        return self.menus.shown

    def _toggle_snap(self) -> None:
        self.snap = self.actions_by_name["snap"].isChecked()

    def _graph_replaced(self) -> None:
        self.inline.cancel()
        self.search.close_popup()
        self.selected_wire = None
        self.gs.set_graph(self.doc.graph)
        self.minimap.rebuild()

    def _follow_graph(self, ch: GraphChange) -> None:
        if ch.kind in (ChangeKind.NODE_ADDED, ChangeKind.NODE_REMOVED, ChangeKind.EXTRA_CHANGED) or (
                ch.kind == ChangeKind.NODE_CHANGED and ch.name in ("pos", "size", "title")):
            self.minimap.graph_changed()

    def _place(self, node: Node) -> tuple[float, float]:
        """Where a new node goes: where it was asked for, or the nearest free spot."""
        return placement.free_spot(self.gs, node)

    def _node_size(self, node_id: str) -> tuple[float, float]:
        item = self.gs.node_items.get(node_id)
        return (item.w, item.h) if item is not None else (200.0, 100.0)

    # -- coordinates -------------------------------------------------------------------------
    @property
    def zoom(self) -> float:
        return self.transform().m11()

    def _scene_pos(self, ev) -> QPointF:
        return self.mapToScene(ev.position().toPoint())

    def cursor_view_pos(self) -> QPoint:
        """Where the mouse last was over the canvas (viewport coordinates), else its centre."""
        if self._last_scene_pos is not None:
            p = self.mapFromScene(self._last_scene_pos)
            if self.viewport().rect().contains(p):
                return p
        return self.viewport().rect().center()

    def _to_view(self, viewport_point: QPoint) -> QPoint:
        return self.viewport().mapTo(self, viewport_point)

    def visible_scene_rect(self) -> QRectF:
        """The part of the scene the viewport shows."""
        return self.mapToScene(self.viewport().rect()).boundingRect()

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
        self.minimap.follow()

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
            self.open_search(self.cursor_view_pos())
            return True
        return super().event(ev)

    def viewportEvent(self, ev: QEvent) -> bool:
        if ev.type() == QEvent.Paint:
            self.gs.set_zoom(self.zoom)  # however the zoom changed, pick the node cache mode
            self.minimap.follow()
        if ev.type() == QEvent.ToolTip:
            self._tooltip(ev)
            return True
        # Keys sent to the viewport would otherwise move focus on Tab before reaching the view.
        if ev.type() == QEvent.KeyPress and ev.key() == Qt.Key_Tab and not self.inline.active:
            self.open_search(self.cursor_view_pos())
            return True
        return super().viewportEvent(ev)

    def _tooltip(self, ev: QHelpEvent) -> None:
        """What the param, socket or title under the mouse is (from the spec's descriptions)."""
        pos = self.mapToScene(ev.pos())
        item = self.gs.item_at(pos, self.viewportTransform())
        text = ""
        if isinstance(item, NodeItem):
            text = tips.tooltip(item.spec, item.hit(item.mapFromScene(pos)), item.node.type)
        if text:
            QToolTip.showText(ev.globalPos(), text, self.viewport())
        else:
            QToolTip.hideText()

    def resizeEvent(self, ev) -> None:
        super().resizeEvent(ev)
        self.minimap.follow(force=True)

    def focusNextPrevChild(self, next: bool) -> bool:
        return False  # Tab belongs to the canvas (search)

    def keyPressEvent(self, ev) -> None:
        if ev.key() == Qt.Key_Space and not ev.isAutoRepeat():
            self.space_down = True
            self.viewport().setCursor(Qt.OpenHandCursor)
            return
        super().keyPressEvent(ev)

    def keyReleaseEvent(self, ev) -> None:
        if ev.key() == Qt.Key_Space and not ev.isAutoRepeat():
            self.space_down = False
            self.viewport().unsetCursor()
            return
        super().keyReleaseEvent(ev)

    # -- mouse -----------------------------------------------------------------------------
    def mousePressEvent(self, ev: QMouseEvent) -> None:
        if self._gesture is not None:
            return  # another button while a gesture runs: the gesture keeps the mouse
        self._press(ev)
        self._gesture_button = ev.button()  # its release ends the gesture the press started

    def _press(self, ev: QMouseEvent) -> None:
        if self.search.isVisible():
            self.search.close_popup()
        if self.inline.active:
            self.inline.commit()
        self.setFocus(Qt.MouseFocusReason)
        pos = self._scene_pos(ev)
        self._last_scene_pos = pos
        if ev.button() == Qt.MiddleButton or (ev.button() == Qt.LeftButton and self.space_down):
            self._gesture = PanGesture(self, ev.position().toPoint())
            return
        if ev.button() == Qt.RightButton:
            self.menus.context(ev, pos)
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
            self._gesture = MoveGesture(self, pos, anchor=item.pos())
            return
        if isinstance(item, WireItem):
            if not ctrl:
                self.gs.clearSelection()
            self._set_selected_wire(item.key)
            return
        if isinstance(item, GroupItem):
            kind = item.hit(item.mapFromScene(pos))
            if kind == "resize":
                self._gesture = GroupResize(self, item.index, item.scene_rect(), pos)
                return
            self._select(item, ctrl)
            self._gesture = MoveGesture(self, pos, anchor=item.pos())
            return
        if not ctrl:
            self.gs.clearSelection()
        super().mousePressEvent(ev)  # rubber band

    def _press_node(self, item: NodeItem, pos: QPointF, ctrl: bool) -> None:
        local = item.mapFromScene(pos)
        hit = item.hit(local)
        nid = item.node_id
        if hit.kind == "output":
            self._gesture = WireGesture(self, item, hit.name, from_output=True)
            return
        if hit.kind in ("input", "param_socket"):
            link = self.doc.graph.link_into(nid, hit.name)
            if link is not None and link.src in self.gs.node_items:
                # lift the wire off this input: it follows the mouse from its source
                src = self.gs.node_items[link.src]
                self._gesture = WireGesture(self, src, link.output, from_output=True, detached=link)
                return
            if hit.kind == "input":
                self._gesture = WireGesture(self, item, hit.name, from_output=False)
                return
        self._select(item, ctrl, keep_if_selected=True)
        if hit.kind == "collapse":
            self.doc.toggle_collapsed([nid])
            return
        if hit.kind in ("param", "param_left", "param_right", "param_socket"):
            self._gesture = press_param(self, item, hit.kind, hit.name, pos)
            return
        if hit.kind == "control":
            self.menus.control(item, hit.name)
            return
        self._gesture = MoveGesture(self, pos, anchor=item.pos())

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
        if self._gesture is not None:
            self._gesture.move(pos, ev)
            return
        super().mouseMoveEvent(ev)

    def mouseReleaseEvent(self, ev: QMouseEvent) -> None:
        gesture = self._gesture
        if gesture is not None and ev.button() == self._gesture_button:
            self._gesture = None
            gesture.release(self._scene_pos(ev), ev)
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

    # -- in-place text editing (gui.inline) ----------------------------------------------------
    def edit_param(self, item: NodeItem, name: str) -> None:
        inline.edit_param(self, item, name)

    def edit_title(self, item: NodeItem) -> None:
        inline.edit_title(self, item)

    def edit_group_title(self, item: GroupItem) -> None:
        inline.edit_group_title(self, item)

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
        return self.clipboard.copy()

    def cut_selection(self) -> None:
        self.clipboard.cut()

    def paste(self) -> list[str]:
        return self.clipboard.paste()

    def duplicate_selection(self) -> list[str]:
        return self.clipboard.duplicate()

    def select_ids(self, ids: list[str]) -> None:
        """Select exactly these nodes (nothing changes when there are none)."""
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
