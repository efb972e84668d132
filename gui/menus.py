"""The canvas's menus: the right-click menu (for a node, a wire or the empty canvas), a choice
param's values, and a seed's "control after run" modes. Each item is a view action or one
Document call."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QPoint, QPointF
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QMenu

from nodegraph.registry import CONTROL_MODES, ParamSpec

from .editors import param_choices
from .mask_painter import add_node_actions
from .items.node import NodeItem
from .items.wire import WireItem

if TYPE_CHECKING:
    from .view import GraphView

NODE_MENU = ("bypass", "mute", "collapse", None, "copy", "duplicate", "group", None, "delete")
"""The view actions a node's menu lists (None: a separator)."""


class CanvasMenus:
    """Menus over ``view``; ``shown`` is the last one opened (kept alive while it shows)."""

    def __init__(self, view: GraphView):
        self.view = view
        self.shown: QMenu | None = None

    def _popup(self, menu: QMenu, at: QPoint) -> None:
        menu.popup(at)
        self.shown = menu

    def context(self, ev: QMouseEvent, pos: QPointF) -> None:
        """The right-click menu for what is under ``pos``."""
        view = self.view
        item = view.gs.item_at(pos, view.viewportTransform())
        menu = QMenu(view)
        if isinstance(item, NodeItem):
            if not item.isSelected():
                view.gs.clearSelection()
                item.setSelected(True)
            for name in NODE_MENU:
                menu.addSeparator() if name is None else menu.addAction(view.actions_by_name[name])
            menu.addAction("Rename…", lambda: view.edit_title(item))
            if item.state == "failed":
                menu.addAction("Error details…", lambda: view.details_requested.emit(item.node_id))
            add_node_actions(menu, view, item.node_id)
        elif isinstance(item, WireItem):
            key = item.key
            menu.addAction("Add reroute point",
                           lambda: view.doc.add_reroute(key, (pos.x(), pos.y())))
            menu.addAction("Disconnect", lambda: view.doc.disconnect(*key))
        else:
            menu.addAction("Add node…", lambda: view.open_search(ev.position().toPoint()))
            menu.addAction(view.actions_by_name["paste"])
            menu.addAction(view.actions_by_name["fit_all"])
        self._popup(menu, ev.globalPosition().toPoint())

    def combo(self, item: NodeItem, p: ParamSpec, value: Any) -> None:
        """The values of choice param ``p`` under its row, the current one checked."""
        view = self.view
        menu = QMenu(view)
        for c in param_choices(p, view.doc):
            a = menu.addAction(str(c))
            a.setCheckable(True)
            a.setChecked(c == value)
            a.triggered.connect(lambda _=False, c=c, nid=item.node_id:
                                view.doc.set_param(nid, p.name, c))
        self._popup(menu, self._below(item, item.row(p.name).rect.bottomLeft()))

    def control(self, item: NodeItem, name: str) -> None:
        """The "control after run" modes of param ``name`` under its control row."""
        view = self.view
        menu = QMenu(view)
        cur = item.node.control_after_run.get(name, item.spec.param(name).control_after_run)
        for mode in CONTROL_MODES:
            a = menu.addAction(mode)
            a.setCheckable(True)
            a.setChecked(mode == cur)
            a.triggered.connect(lambda _=False, m=mode, nid=item.node_id:
                                view.doc.set_control(nid, name, m))
        self._popup(menu, self._below(item, item.row(name).control.bottomLeft()))

    def _below(self, item: NodeItem, local: QPointF) -> QPoint:
        view = self.view
        return view.viewport().mapToGlobal(view.mapFromScene(item.mapToScene(local)))
