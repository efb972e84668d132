"""Dragging a wire: from an output (to an input), from an input (to an output), or lifted off an
input it fed (dropped elsewhere: moved; dropped on empty canvas: removed). Dropped on empty canvas,
a new wire opens the node search for the types that fit, and the chosen node comes connected."""
from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QPointF
from PySide6.QtGui import QMouseEvent

from nodegraph.graph import Link

from .. import theme
from ..document import accepting_inputs, providing_outputs
from ..items.node import NodeItem
from ..items.wire import DragWire
from ..scene import WireDrag
from . import Gesture

if TYPE_CHECKING:
    from ..view import GraphView

EXPLICIT_TARGETS = ("input", "param_socket", "param", "param_left", "param_right")
"""Where on a node a wire from an output may be dropped to name the input it goes into."""


class WireGesture(Gesture):
    """A wire from ``socket`` of ``item`` following the mouse; ``detached`` is the link lifted
    off an input."""

    def __init__(self, view: GraphView, item: NodeItem, socket: str, from_output: bool,
                 detached: Link | None = None):
        super().__init__(view)
        if from_output:
            t = item.output_type(socket)
            anchor = item.output_pos(socket)
        else:
            t = item.input_type(socket) or "*"
            anchor = item.input_pos(socket)
        self.drag = WireDrag(t, from_output, item.node_id, socket)
        self.detached = detached
        self.item = DragWire(theme.color(view.doc.registry.color(t)), anchor, from_output)
        view.gs.addItem(self.item)
        self._show_detached(False)
        view.gs.set_wire_drag(self.drag)

    def _show_detached(self, visible: bool) -> None:
        if self.detached is not None:
            w = self.view.gs.wires.get((self.detached.dst, self.detached.input))
            if w is not None:
                w.setVisible(visible)

    def move(self, pos: QPointF, ev: QMouseEvent) -> None:
        self.item.set_end(pos)

    def release(self, pos: QPointF, ev: QMouseEvent) -> None:
        view = self.view
        view.gs.removeItem(self.item)
        view.gs.set_wire_drag(None)
        self._show_detached(True)
        view.viewport().update()
        target = view.gs.item_at(pos, view.viewportTransform())
        if isinstance(target, NodeItem) and target.node_id != self.drag.node_id:
            self._drop_on_node(target, pos)
        elif isinstance(target, NodeItem):
            return  # dropped back on its own node: nothing
        elif self.detached is not None:
            view.doc.disconnect(self.detached.dst, self.detached.input)
        else:
            self._open_search(pos)

    def _drop_on_node(self, target: NodeItem, pos: QPointF) -> None:
        if self.drag.from_output:
            self._connect_into(target, target.hit(target.mapFromScene(pos)))
        else:
            self._connect_from(target, target.hit(target.mapFromScene(pos)))

    def _connect_into(self, target: NodeItem, hit) -> None:
        """A wire from an output dropped on ``target``: the input under the mouse, else the first
        free compatible input, else the first compatible one."""
        doc, drag, nid = self.view.doc, self.drag, target.node_id
        if hit.kind in EXPLICIT_TARGETS:
            names = [hit.name]  # an explicit socket: that one or nothing
        else:
            names = target.compatible_inputs(drag.type)
            free = [n for n in names if doc.graph.link_into(nid, n) is None]
            names = free + [n for n in names if n not in free]
        detached = self.detached
        for name in names:
            if detached is not None and (detached.dst, detached.input) == (nid, name):
                return  # put back where it was
            if doc.can_connect(drag.node_id, drag.socket, nid, name):
                if detached is not None:
                    doc.undo.beginMacro("Move wire")
                    doc.disconnect(detached.dst, detached.input)
                    doc.connect(drag.node_id, drag.socket, nid, name)
                    doc.undo.endMacro()
                else:
                    doc.connect(drag.node_id, drag.socket, nid, name)
                return
        # refused: incompatible

    def _connect_from(self, target: NodeItem, hit) -> None:
        """A wire from an input dropped on ``target``: the output under the mouse, else its first
        compatible output."""
        doc, drag, nid = self.view.doc, self.drag, target.node_id
        if hit.kind == "output":
            names = [hit.name]
        else:
            names = [n for n, t, _ in target.outputs if doc.registry.compatible(t, drag.type)]
        for name in names:
            if doc.can_connect(nid, name, drag.node_id, drag.socket):
                doc.connect(nid, name, drag.node_id, drag.socket)
                return

    def _open_search(self, pos: QPointF) -> None:
        view, drag, reg = self.view, self.drag, self.view.doc.registry
        if drag.from_output:
            def accept(spec, t=drag.type):
                return bool(accepting_inputs(spec, t, reg))
            hint = f"Nodes that take {drag.type}"
        else:
            def accept(spec, t=drag.type):
                return bool(providing_outputs(spec, t, reg))
            hint = f"Nodes that give {drag.type}"
        view.open_search(view.mapFromScene(pos), accept, hint, ctx={"pos": pos, "drag": drag})
