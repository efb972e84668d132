"""The in-place text editor over the canvas: typing a param's value, a node's title or a group's
title (one real widget, :class:`gui.editors.InlineEditor`, placed over the painted row)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QRectF

from nodegraph.registry import FLOAT, STRING

from . import editors
from .items.group import GroupItem
from .items.node import TITLE_H, NodeItem, format_value

if TYPE_CHECKING:
    from .view import GraphView


def edit_param(view: GraphView, item: NodeItem, name: str) -> None:
    """Open the text editor over a param row (numbers and strings)."""
    p = item.spec.param(name) if item.spec is not None else None
    row = item.row(name)
    if p is None or row is None:
        return
    nid = item.node_id
    value = view.doc.graph.nodes[nid].params.get(name, p.default)
    rect = view.mapFromScene(item.mapToScene(row.rect)).boundingRect()
    text = str(value) if p.kind != FLOAT else format_value(p, value)

    def commit(txt: str) -> None:
        if nid not in view.doc.graph.nodes:
            return
        try:
            v = editors.parse_text(p, txt)
        except ValueError:
            return
        view.doc.set_param(nid, name, v)

    def end() -> None:
        view.gs.editing = None
        it = view.gs.node_items.get(nid)
        if it is not None:
            it.update()

    view.gs.editing = (nid, name)
    item.update()
    view.inline.begin(rect, text, multiline=p.kind == STRING and p.multiline,
                      pixel_size=round(11 * view.zoom), on_commit=commit, on_end=end,
                      key=(nid, name))

def edit_title(view: GraphView, item: NodeItem) -> None:
    nid = item.node_id
    rect = view.mapFromScene(item.mapToScene(QRectF(18, 2, item.w - 22, TITLE_H - 4))
                             ).boundingRect()
    view.inline.begin(rect, item.title_text(), multiline=False,
                      pixel_size=round(12 * view.zoom),
                      on_commit=lambda t: view.doc.set_title(nid, t.strip()))

def edit_group_title(view: GraphView, item: GroupItem) -> None:
    idx = item.index
    rect = view.mapFromScene(item.mapToScene(QRectF(4, 2, item.rect.width() - 8, 26))
                             ).boundingRect()
    view.inline.begin(rect, item.group.title, multiline=False,
                      pixel_size=round(15 * view.zoom),
                      on_commit=lambda t: view.doc.rename_group(idx, t.strip() or "Group"))
