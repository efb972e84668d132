"""The node library: every node type by pack and category, with fuzzy search.

Double-click adds the node at the centre of the canvas; dragging it onto the canvas adds it where
it is dropped. Built-in nodes are listed by category; a pack's nodes under the pack's name.
"""
from __future__ import annotations

from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtGui import QDrag
from PySide6.QtWidgets import QLineEdit, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from nodegraph.registry import BUILTIN_PACK, Registry

from ..search import rank

NODE_TYPE_MIME = "application/x-nodegraph-node-type"
TYPE_ROLE = Qt.UserRole


class _Tree(QTreeWidget):
    def startDrag(self, actions) -> None:
        item = self.currentItem()
        type_id = item.data(0, TYPE_ROLE) if item is not None else None
        if not type_id:
            return
        mime = QMimeData()
        mime.setData(NODE_TYPE_MIME, type_id.encode())
        drag = QDrag(self)
        drag.setMimeData(mime)
        drag.exec(Qt.CopyAction)


class NodeLibrary(QWidget):
    """``add_requested(type_id)`` when the user double-clicks (or presses Enter on) a node type."""

    add_requested = Signal(str)

    def __init__(self, registry: Registry, parent: QWidget | None = None):
        super().__init__(parent)
        self.registry = registry
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.setSpacing(6)
        self.filter = QLineEdit(self)
        self.filter.setPlaceholderText("Filter nodes…")
        self.filter.setClearButtonEnabled(True)
        self.tree = _Tree(self)
        self.tree.setHeaderHidden(True)
        self.tree.setDragEnabled(True)
        self.tree.setIndentation(14)
        self.tree.setAnimated(False)
        lay.addWidget(self.filter)
        lay.addWidget(self.tree)
        self.filter.textChanged.connect(self.refresh)
        self.tree.itemActivated.connect(self._activated)
        self.refresh()

    def set_registry(self, registry: Registry) -> None:
        self.registry = registry
        self.refresh()

    def refresh(self) -> None:
        query = self.filter.text().strip()
        self.tree.clear()
        if query:
            for spec in rank(self.registry, query, limit=100):
                it = QTreeWidgetItem([spec.display_name])
                it.setData(0, TYPE_ROLE, spec.type_id)
                it.setToolTip(0, f"{spec.type_id}\n{spec.category}\n\n{spec.description}".strip())
                self.tree.addTopLevelItem(it)
            return
        folders: dict[tuple[str, ...], QTreeWidgetItem] = {}

        def folder(path: tuple[str, ...]) -> QTreeWidgetItem:
            if path in folders:
                return folders[path]
            it = QTreeWidgetItem([path[-1]])
            it.setFlags(it.flags() & ~Qt.ItemIsDragEnabled)
            f = it.font(0)
            f.setBold(len(path) == 1)
            it.setFont(0, f)
            if len(path) == 1:
                self.tree.addTopLevelItem(it)
            else:
                folder(path[:-1]).addChild(it)
            folders[path] = it
            return it

        specs = sorted(self.registry.nodes.values(),
                       key=lambda s: (s.pack not in ("", BUILTIN_PACK), s.pack,
                                      s.category.lower(), s.display_name.lower()))
        for spec in specs:
            cats = tuple(c for c in (spec.category or "other").split("/") if c)
            path = cats if spec.pack in ("", BUILTIN_PACK) else (f"pack: {spec.pack}", *cats)
            it = QTreeWidgetItem([spec.display_name])
            it.setData(0, TYPE_ROLE, spec.type_id)
            it.setToolTip(0, f"{spec.type_id}\n\n{spec.description}".strip())
            folder(path).addChild(it)
        self.tree.expandToDepth(0)

    def _activated(self, item: QTreeWidgetItem) -> None:
        type_id = item.data(0, TYPE_ROLE)
        if type_id:
            self.add_requested.emit(type_id)
