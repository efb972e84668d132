"""The node packs dialog: every pack the engine tried to load, what it registered, and for a
failed pack its error and traceback."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QPlainTextEdit, QSplitter, QTreeWidget,
                               QTreeWidgetItem, QVBoxLayout, QWidget)

from nodegraph.registry import Registry

from .. import theme


class PacksDialog(QDialog):
    def __init__(self, registry: Registry, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Node packs")
        self.resize(760, 460)
        lay = QVBoxLayout(self)
        split = QSplitter(Qt.Vertical, self)
        self.tree = QTreeWidget(split)
        self.tree.setHeaderLabels(["pack", "status", "nodes", "source"])
        self.tree.setRootIsDecorated(False)
        self.detail = QPlainTextEdit(split)
        self.detail.setReadOnly(True)
        lay.addWidget(split, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.Close, self)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)
        for info in registry.packs:
            it = QTreeWidgetItem([info.name, info.status, str(len(info.node_types)), info.source])
            it.setForeground(1, theme.STATE_COLORS["done"] if info.status == "loaded"
                             else theme.PROBLEM)
            text = [f"{info.name} ({info.kind}) — {info.status}", f"source: {info.source}"]
            if info.error:
                text += ["", f"error: {info.error}", "", info.traceback]
            if info.node_types:
                text += ["", "node types:"] + [f"  {t}" for t in info.node_types]
            if info.socket_types:
                text += ["", "socket types: " + ", ".join(info.socket_types)]
            it.setData(0, Qt.UserRole, "\n".join(text))
            self.tree.addTopLevelItem(it)
        self.tree.currentItemChanged.connect(
            lambda cur, _prev: self.detail.setPlainText(cur.data(0, Qt.UserRole) if cur else ""))
        for i in range(3):
            self.tree.resizeColumnToContents(i)
        failed = [i for i in range(self.tree.topLevelItemCount())
                  if self.tree.topLevelItem(i).text(1) != "loaded"]
        if self.tree.topLevelItemCount():
            self.tree.setCurrentItem(self.tree.topLevelItem(failed[0] if failed else 0))
