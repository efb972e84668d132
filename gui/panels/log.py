"""The bottom panel: run log, per-node timings of the last run, and problems (click one to go to
its node)."""
from __future__ import annotations

import time

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QPlainTextEdit, QTabWidget, QTreeWidget, QTreeWidgetItem,
                               QWidget)

from nodegraph.errors import Problem

from .. import theme


class LogPanel(QTabWidget):
    """``node_activated(node id)`` when the user double-clicks a timing or a problem."""

    node_activated = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.log = QPlainTextEdit(self)
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)
        self.timings = QTreeWidget(self)
        self.timings.setHeaderLabels(["node", "type", "state", "seconds"])
        self.timings.setRootIsDecorated(False)
        self.timings.setAlternatingRowColors(True)
        self.problems = QTreeWidget(self)
        self.problems.setHeaderLabels(["node", "where", "problem"])
        self.problems.setRootIsDecorated(False)
        self.problems.setWordWrap(True)
        self.addTab(self.log, "Log")
        self.addTab(self.timings, "Timings")
        self.addTab(self.problems, "Problems")
        self._rows: dict[str, QTreeWidgetItem] = {}
        for tree in (self.timings, self.problems):
            tree.itemActivated.connect(self._activated)
            tree.setColumnWidth(0, 90)
            tree.setColumnWidth(1, 170)

    def append(self, text: str, level: str = "info") -> None:
        stamp = time.strftime("%H:%M:%S")
        self.log.appendPlainText(f"{stamp}  {'' if level == 'info' else level.upper() + ': '}{text}")

    # -- timings ---------------------------------------------------------------------------
    def start_run(self, node_ids: list[str], types: dict[str, str]) -> None:
        self.timings.clear()
        self._rows = {}
        for nid in node_ids:
            it = QTreeWidgetItem([nid, types.get(nid, ""), "queued", ""])
            it.setData(0, Qt.UserRole, nid)
            self.timings.addTopLevelItem(it)
            self._rows[nid] = it

    def set_state(self, node_id: str, state: str, seconds: float | None = None) -> None:
        it = self._rows.get(node_id)
        if it is None:
            return
        it.setText(2, state)
        it.setForeground(2, theme.STATE_COLORS.get(state, QColor("#9aa0a6")))
        if seconds is not None:
            it.setText(3, f"{seconds:.3f}")
            it.setTextAlignment(3, Qt.AlignRight | Qt.AlignVCenter)

    # -- problems --------------------------------------------------------------------------
    def set_problems(self, problems: list[Problem]) -> None:
        self.problems.clear()
        for p in problems:
            it = QTreeWidgetItem([p.node_id or "", p.field or "", p.message])
            it.setData(0, Qt.UserRole, p.node_id)
            color = theme.PROBLEM if p.severity == "error" else QColor("#ffa726")
            it.setForeground(2, color)
            it.setToolTip(2, str(p))
            self.problems.addTopLevelItem(it)
        n = len(problems)
        self.setTabText(2, f"Problems ({n})" if n else "Problems")
        if any(p.severity == "error" for p in problems):
            self.setCurrentWidget(self.problems)

    def _activated(self, item: QTreeWidgetItem) -> None:
        nid = item.data(0, Qt.UserRole)
        if nid:
            self.node_activated.emit(nid)
