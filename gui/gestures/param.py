"""A press on a param row: a toggle flips, an arrow steps, a choice opens its menu, a string opens
the text editor — and a number starts a :class:`ParamDrag`: dragged, it changes live (one undo
step on release); clicked without moving, it opens the text editor."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QPointF
from PySide6.QtGui import QMouseEvent

from nodegraph.registry import BOOLEAN, COMBO, FLOAT, INT, STRING

from .. import editors
from ..items.node import NodeItem
from . import CLICK_SLOP, Gesture

if TYPE_CHECKING:
    from ..view import GraphView


def press_param(view: GraphView, item: NodeItem, kind: str, name: str,
                pos: QPointF) -> Gesture | None:
    """What a press on the row of param ``name`` does (``kind``: the part of the row hit); a
    gesture when the press starts one."""
    spec = item.spec
    p = spec.param(name) if spec is not None else None
    if p is None:
        return None
    doc, nid = view.doc, item.node_id
    if name in doc.graph.inputs_of(nid):
        return None  # fed by a wire: the value is not used
    value = doc.graph.nodes[nid].params.get(name, p.default)
    if p.kind == BOOLEAN:
        doc.set_param(nid, name, not bool(value))
    elif kind in ("param_left", "param_right"):
        choices = editors.param_choices(p, doc) if p.kind == COMBO else ()
        doc.set_param(nid, name, editors.stepped(p, value, -1 if kind == "param_left" else 1,
                                                 choices))
    elif p.kind == COMBO:
        view.menus.combo(item, p, value)
    elif p.kind in (INT, FLOAT):
        return ParamDrag(view, nid, name, value, pos)
    elif p.kind == STRING:
        view.edit_param(item, name)
    return None


class ParamDrag(Gesture):
    """A number being dragged: one step per few pixels, set live on the graph (the scene and the
    params panel follow); the release records it as one undo step."""

    def __init__(self, view: GraphView, node_id: str, name: str, start_value: Any, press: QPointF):
        super().__init__(view)
        self.node_id, self.name, self.start_value, self.press = node_id, name, start_value, press
        self.dragging = False

    def move(self, pos: QPointF, ev: QMouseEvent) -> None:
        view = self.view
        dx = pos.x() - self.press.x()
        if not self.dragging and abs(dx) * view.zoom < CLICK_SLOP:
            return
        self.dragging = True
        item = view.gs.node_items.get(self.node_id)
        if item is None or item.spec is None:
            return
        value = editors.dragged(item.spec.param(self.name), self.start_value, dx)
        graph = view.doc.graph
        if graph.nodes[self.node_id].params.get(self.name) != value:
            graph.set_param(self.node_id, self.name, value)  # live; one undo step on release

    def release(self, pos: QPointF, ev: QMouseEvent) -> None:
        doc = self.view.doc
        if self.node_id not in doc.graph.nodes:
            return
        if self.dragging:
            value = doc.graph.nodes[self.node_id].params.get(self.name)
            # put the old value back so the command records a real change
            doc.graph.set_param(self.node_id, self.name, self.start_value)
            doc.set_param(self.node_id, self.name, value)
            return
        item = self.view.gs.node_items.get(self.node_id)
        if item is not None:
            self.view.edit_param(item, self.name)
