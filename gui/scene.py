"""The scene: items that follow a Graph.

The Graph is the one source of truth. The scene registers a listener on it and creates, updates
or removes items for each GraphChange, whoever made the change (an undo command, a script, a
run's seed update). Items never change the graph themselves.

Wires whose nodes moved are marked dirty and recomputed together, once per frame
(:meth:`GraphScene.flush_wires`), however many nodes moved.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QLine, QPointF, QRectF, QTimer, Signal
from PySide6.QtGui import QImage, QPainter, QPen
from PySide6.QtWidgets import QGraphicsItem, QGraphicsScene

from nodegraph.errors import Problem
from nodegraph.graph import ChangeKind, Graph, GraphChange, Link
from nodegraph.registry import Registry

from . import graphops, theme
from .items.group import GroupItem
from .items.node import LOD_BOX, NodeItem
from .items.overview import OverviewItem
from .items.reroute import RerouteItem
from .items.wire import WireItem

GRID = 20
SCENE_HALF = 200_000.0
_KEEP_GEOMETRY = frozenset({ChangeKind.PARAM_CHANGED, ChangeKind.MODE_CHANGED,
                            ChangeKind.CONTROL_CHANGED, ChangeKind.GROUPS_CHANGED})
"""Changes after which the zoomed-out overview only repaints (no node or wire moved)."""


@dataclass(frozen=True)
class WireDrag:
    """A wire being dragged: its socket type, and whether it started at an output."""

    type: str
    from_output: bool
    node_id: str
    socket: str


class GraphScene(QGraphicsScene):
    """Items for one graph; emits ``graph_changed`` after each change it followed."""

    graph_changed = Signal(object)  # GraphChange

    def __init__(self, graph: Graph, registry: Registry, parent=None):
        super().__init__(parent)
        self.registry = registry
        self.graph: Graph = Graph()
        self.setItemIndexMethod(QGraphicsScene.BspTreeIndex)
        self.setSceneRect(QRectF(-SCENE_HALF, -SCENE_HALF, 2 * SCENE_HALF, 2 * SCENE_HALF))
        self.node_items: dict[str, NodeItem] = {}
        self.wires: dict[tuple[str, str], WireItem] = {}
        self.reroute_items: dict[tuple[str, str], list[RerouteItem]] = {}
        self.group_items: list[GroupItem] = []
        self._wires_of: dict[str, set[tuple[str, str]]] = {}
        self._dirty: set[tuple[str, str]] = set()
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.setInterval(0)
        self._flush_timer.timeout.connect(self.flush_wires)
        self.selectionChanged.connect(lambda: self.refresh_overview(geometry=False))
        self.decorated: set[NodeItem] = set()  # nodes with a run state or problems
        self.wire_drag: WireDrag | None = None
        self.cache_nodes = True  # pixmap cache per node while zoomed in (see set_zoom)
        self.overview_on = False  # zoomed out: one item paints every node and wire (set_zoom)
        self.overview: OverviewItem | None = None
        self.editing: tuple[str, str] | None = None
        self.show_grid = True
        self._handlers: dict[ChangeKind, Callable[[GraphChange], None]] = {
            ChangeKind.NODE_ADDED: self._node_added,
            ChangeKind.NODE_REMOVED: self._node_removed,
            ChangeKind.LINK_ADDED: self._link_added,
            ChangeKind.LINK_REMOVED: self._link_removed,
            ChangeKind.PARAM_CHANGED: self._node_repaint,
            ChangeKind.CONTROL_CHANGED: self._node_repaint,
            ChangeKind.MODE_CHANGED: self._mode_changed,
            ChangeKind.NODE_CHANGED: self._node_changed,
            ChangeKind.EXTRA_CHANGED: self._node_changed,
            ChangeKind.GROUPS_CHANGED: self._groups_changed,
        }
        """What the scene does for each kind of change (after it, the overview and
        ``graph_changed`` follow for every kind)."""
        self.set_graph(graph)

    # -- building --------------------------------------------------------------------------
    def set_graph(self, graph: Graph) -> None:
        """Show ``graph`` (replacing any previous one) and follow its changes."""
        if self.graph is not None:
            try:
                self.graph.remove_listener(self._on_change)
            except ValueError:
                pass
        self.overview = None  # deleted by clear()
        self.clear()
        self.node_items.clear()
        self.wires.clear()
        self.reroute_items.clear()
        self.group_items = []
        self.decorated = set()
        self._wires_of.clear()
        self._dirty.clear()
        self.graph = graph
        self.overview = OverviewItem(self)
        self.overview.setVisible(self.overview_on)
        self.addItem(self.overview)
        for node in graph.nodes.values():
            self._add_node_item(node.id)
        for link in graph.iter_links():
            self._add_wire(link)
        self._rebuild_groups()
        graph.add_listener(self._on_change)

    def detach(self) -> None:
        """Stop following the graph (before the scene goes away)."""
        try:
            self.graph.remove_listener(self._on_change)
        except ValueError:
            pass

    def _add_node_item(self, node_id: str) -> NodeItem:
        node = self.graph.nodes[node_id]
        item = NodeItem(self, node, self.registry.get(node.type))
        if self.cache_nodes:
            item.setCacheMode(QGraphicsItem.DeviceCoordinateCache)
        if self.overview_on:
            item.setFlag(QGraphicsItem.ItemHasNoContents, True)
            self.overview.update()
        self.addItem(item)
        self.node_items[node_id] = item
        return item

    def _add_wire(self, link: Link) -> None:
        key = (link.dst, link.input)
        old = self.wires.pop(key, None)
        if old is not None:
            self._drop_wire(old)
        wire = WireItem(self, link)
        if self.overview_on:
            wire.setFlag(QGraphicsItem.ItemHasNoContents, True)
        self.addItem(wire)
        self.wires[key] = wire
        self._wires_of.setdefault(link.src, set()).add(key)
        self._wires_of.setdefault(link.dst, set()).add(key)
        points = graphops.reroutes(link)
        if points:
            items = [RerouteItem(key, i, pt, wire.color) for i, pt in enumerate(points)]
            for it in items:
                self.addItem(it)
            self.reroute_items[key] = items

    def _drop_wire(self, wire: WireItem) -> None:
        key = wire.key
        for nid in (wire.link.src, wire.link.dst):
            keys = self._wires_of.get(nid)
            if keys is not None:
                keys.discard(key)
        for it in self.reroute_items.pop(key, []):
            self.removeItem(it)
        self._dirty.discard(key)
        self.removeItem(wire)

    def _rebuild_groups(self) -> None:
        for it in self.group_items:
            self.removeItem(it)
        self.group_items = []
        for i, g in enumerate(self.graph.groups):
            it = GroupItem(i, g)
            self.addItem(it)
            self.group_items.append(it)

    # -- following the graph -----------------------------------------------------------------
    def _on_change(self, ch: GraphChange) -> None:
        handler = self._handlers.get(ch.kind)
        if handler is not None:
            handler(ch)
        self.refresh_overview(geometry=ch.kind not in _KEEP_GEOMETRY)
        self.graph_changed.emit(ch)

    def _node_added(self, ch: GraphChange) -> None:
        self._add_node_item(ch.node_id)
        # links loaded before their node (possible in files) get their wires now
        for key in list(self._wires_of.get(ch.node_id, ())):
            self._mark(key)

    def _node_removed(self, ch: GraphChange) -> None:
        item = self.node_items.pop(ch.node_id, None)
        if item is not None:
            self.decorated.discard(item)
            self.removeItem(item)

    def _link_added(self, ch: GraphChange) -> None:
        self._add_wire(ch.link)
        self._touch_ends(ch.link)

    def _link_removed(self, ch: GraphChange) -> None:
        wire = self.wires.get((ch.link.dst, ch.link.input))
        if wire is not None and wire.link == ch.link:
            del self.wires[wire.key]
            self._drop_wire(wire)
        self._touch_ends(ch.link)

    def _node_repaint(self, ch: GraphChange) -> None:
        """A param or a control mode: the node paints it, its size stays."""
        item = self.node_items.get(ch.node_id)
        if item is not None:
            item.update()

    def _mode_changed(self, ch: GraphChange) -> None:
        item = self.node_items.get(ch.node_id)
        if item is not None:
            item.update()
            for key in self._wires_of.get(ch.node_id, ()):
                w = self.wires.get(key)
                if w is not None:
                    w.update()

    def _node_changed(self, ch: GraphChange) -> None:
        """An editor field (pos, size, title, color) or an extra (``collapsed``)."""
        item = self.node_items.get(ch.node_id)
        if item is None:
            return
        if ch.kind == ChangeKind.NODE_CHANGED and ch.name == "pos":
            x, y = ch.new
            if item.pos() != QPointF(x, y):
                item.setPos(float(x), float(y))
        elif ch.kind == ChangeKind.EXTRA_CHANGED or ch.name in ("title", "size"):
            item.relayout()
        item.update()
        self.node_moved(ch.node_id)

    def _groups_changed(self, ch: GraphChange) -> None:
        self._rebuild_groups()

    def _touch_ends(self, link: Link) -> None:
        for nid in (link.src, link.dst):
            item = self.node_items.get(nid)
            if item is not None:
                if item.spec is None:
                    item.relayout()
                    self.node_moved(nid)
                item.update()

    def set_zoom(self, scale: float) -> None:
        """Zoomed in, each node is painted once into a pixmap and blitted while it moves or the
        view pans; zoomed out to boxes, painting directly is cheaper than keeping pixmaps."""
        want = scale >= LOD_BOX
        if want != self.cache_nodes:
            self.cache_nodes = want
            mode = QGraphicsItem.DeviceCoordinateCache if want else QGraphicsItem.NoCache
            for item in self.node_items.values():
                item.setCacheMode(mode)
        overview = scale < LOD_BOX
        if overview != self.overview_on:
            self.overview_on = overview
            # items stay (they take clicks and rubber-band selection) but paint nothing
            for item in self.node_items.values():
                item.setFlag(QGraphicsItem.ItemHasNoContents, overview)
            for wire in self.wires.values():
                wire.setFlag(QGraphicsItem.ItemHasNoContents, overview)
            self.overview.setVisible(overview)

    def refresh_overview(self, geometry: bool = True) -> None:
        """Something drawn in the overview changed (call freely; nothing happens zoomed in).
        ``geometry``: nodes or wires moved or changed (rebuild), else only marks changed."""
        ov = self.overview
        if ov is None:
            return
        try:
            if geometry:
                ov._batches = None
            if self.overview_on:
                ov.update()
        except RuntimeError:  # the scene is being torn down
            self.overview = None

    def set_wire_drag(self, drag: WireDrag | None) -> None:
        """Start or end a wire drag: every node repaints its sockets (highlighted or dimmed)."""
        self.wire_drag = drag
        for item in self.node_items.values():
            item.update()
        for wire in self.wires.values():
            wire.update()

    # -- wires -----------------------------------------------------------------------------
    def _mark(self, key: tuple[str, str]) -> None:
        self._dirty.add(key)
        if not self._flush_timer.isActive():
            self._flush_timer.start()

    def node_moved(self, node_id: str) -> None:
        """The node's item moved or changed size: its wires need new paths (once per frame)."""
        keys = self._wires_of.get(node_id)
        if keys:
            self._dirty.update(keys)
            if not self._flush_timer.isActive():
                self._flush_timer.start()

    def mark_wires(self, keys) -> None:
        """These wires need new paths (recomputed together by flush_wires)."""
        if keys:
            self._dirty.update(keys)
            if not self._flush_timer.isActive():
                self._flush_timer.start()

    def flush_wires(self) -> None:
        """Recompute the paths of every dirty wire (call once per frame while dragging)."""
        self._flush_timer.stop()
        dirty, self._dirty = self._dirty, set()
        for key in dirty:
            wire = self.wires.get(key)
            if wire is not None:
                wire.update_path()
        if dirty:
            self.refresh_overview()

    # -- run state and problems ----------------------------------------------------------------
    def clear_run_state(self) -> None:
        for item in self.node_items.values():
            if item.state is not None or item.error:
                item.set_state(None)

    def set_problems(self, problems: list[Problem]) -> None:
        """Mark nodes (and their params/inputs) that validation found problems with: errors in
        red, warnings (e.g. on nodes no output needs) in orange."""
        errors: dict[str, dict[str | None, str]] = {}
        warnings: dict[str, dict[str | None, str]] = {}
        for pr in problems:
            if pr.node_id is not None:
                table = errors if pr.severity == "error" else warnings
                table.setdefault(pr.node_id, {})[pr.field] = pr.message
        for nid, item in self.node_items.items():
            new, warned = errors.get(nid, {}), warnings.get(nid, {})
            if new != item.problems or warned != item.warnings:
                item.problems, item.warnings = new, warned
                item.update()
                if new or warned:
                    self.decorated.add(item)
        self.refresh_overview(geometry=False)

    def set_node_images(self, node_id: str, images: list[QImage]) -> None:
        item = self.node_items.get(node_id)
        if item is not None:
            item.set_images(images)
            self.node_moved(node_id)
            self.refresh_overview()

    # -- queries ---------------------------------------------------------------------------
    def selected_node_ids(self) -> list[str]:
        return [it.node_id for it in self.selectedItems() if isinstance(it, NodeItem)]

    def nodes_rect(self, ids: list[str] | None = None) -> QRectF:
        """Bounding rectangle of the given (default: all) nodes and groups."""
        rect = QRectF()
        items = (self.node_items.values() if ids is None
                 else [self.node_items[i] for i in ids if i in self.node_items])
        for it in items:
            rect = rect.united(it.sceneBoundingRect())
        if ids is None:
            for g in self.group_items:
                rect = rect.united(g.sceneBoundingRect())
        return rect

    def item_at(self, pos: QPointF, transform) -> QGraphicsItem | None:
        """The top item under ``pos``, ignoring group bodies (they let clicks through)."""
        for it in self.items(pos, deviceTransform=transform):
            if isinstance(it, GroupItem):
                if it.hit(it.mapFromScene(pos)) is None:
                    continue
            return it
        return None

    # -- background ------------------------------------------------------------------------
    def drawBackground(self, painter: QPainter, rect: QRectF) -> None:
        painter.fillRect(rect, theme.CANVAS)
        if not self.show_grid:
            return
        t = painter.worldTransform()
        scale = t.m11()
        step = GRID
        while step * scale < 12:
            step *= 5
        major = step * 5
        dev = t.mapRect(rect).toAlignedRect()
        painter.save()
        painter.resetTransform()  # integer device coordinates: the raster engine's fast lines
        painter.setRenderHint(QPainter.Antialiasing, False)
        for spacing, color in ((step, theme.GRID_MINOR), (major, theme.GRID_MAJOR)):
            if spacing * scale < 12:
                continue
            lines = []
            x = math.floor(rect.left() / spacing) * spacing
            while x <= rect.right():
                if spacing == major or x % major:
                    xd = round(x * scale + t.dx())
                    lines.append(QLine(xd, dev.top(), xd, dev.bottom()))
                x += spacing
            y = math.floor(rect.top() / spacing) * spacing
            while y <= rect.bottom():
                if spacing == major or y % major:
                    yd = round(y * scale + t.dy())
                    lines.append(QLine(dev.left(), yd, dev.right(), yd))
                y += spacing
            painter.setPen(QPen(color, 1))
            painter.drawLines(lines)
        painter.restore()
