"""The bottom panel: run log, per-node timings of the last run, and problems (click one to go to
its node).

The log is rich text so that files a run wrote are links (click one to open its folder). The
Problems tab lists validation problems (errors red, warnings orange) and the failures of the last
run; a failure keeps its traceback behind "Details…" (right-click the row).
"""
from __future__ import annotations

import html
import time
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QPoint, Qt, QUrl, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QMenu, QTabWidget, QTextBrowser, QTreeWidget, QTreeWidgetItem, QWidget

from nodegraph.errors import Problem

from .. import theme

WARNING = QColor("#ffa726")
_LEVEL_COLORS = {"error": "#ef7a78", "warning": "#ffb74d"}
DETAILS_ROLE = Qt.UserRole + 1


@dataclass(frozen=True)
class Failure:
    """A node (or the run itself, ``node_id`` None) that failed in the last run: the message shown on
    the node, and the traceback behind "Details"."""

    node_id: str | None
    node_type: str | None
    message: str
    details: str


class LogPanel(QTabWidget):
    """``node_activated(node id)`` when the user double-clicks a timing or a problem;
    ``details_requested(title, text)`` for a failure's "Details…"; ``file_activated(path)`` when a
    written file's link is clicked."""

    node_activated = Signal(str)
    details_requested = Signal(str, str)
    file_activated = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.log = QTextBrowser(self)
        self.log.setOpenLinks(False)
        self.log.document().setMaximumBlockCount(5000)
        self.log.anchorClicked.connect(self._link_clicked)
        self.timings = QTreeWidget(self)
        self.timings.setHeaderLabels(["node", "type", "state", "seconds"])
        self.timings.setRootIsDecorated(False)
        self.timings.setAlternatingRowColors(True)
        self.problems = QTreeWidget(self)
        self.problems.setHeaderLabels(["node", "where", "problem"])
        self.problems.setRootIsDecorated(False)
        self.problems.setWordWrap(True)
        self.problems.setContextMenuPolicy(Qt.CustomContextMenu)
        self.problems.customContextMenuRequested.connect(self._problem_menu)
        self.addTab(self.log, "Log")
        self.addTab(self.timings, "Timings")
        self.addTab(self.problems, "Problems")
        self._rows: dict[str, QTreeWidgetItem] = {}
        self._validation: list[Problem] = []
        self.failures: list[Failure] = []
        self.menu: QMenu | None = None
        for tree in (self.timings, self.problems):
            tree.itemActivated.connect(self._activated)
            tree.setColumnWidth(0, 90)
            tree.setColumnWidth(1, 170)

    def append(self, text: str, level: str = "info", files: list[str] = ()) -> None:
        """One line (``files``: paths shown after the text as links that open their folder)."""
        stamp = time.strftime("%H:%M:%S")
        prefix = "" if level == "info" else level.upper() + ": "
        body = html.escape(f"{prefix}{text}").replace("\n", "<br>")
        links = " ".join(f'<a href="{QUrl.fromLocalFile(str(Path(f).resolve())).toString()}">'
                         f"{html.escape(str(f))}</a>" for f in files)
        color = _LEVEL_COLORS.get(level)
        line = f"{stamp}  {body}{' ' + links if links else ''}"
        self.log.append(f'<span style="color:{color}">{line}</span>' if color else line)

    def _link_clicked(self, url: QUrl) -> None:
        if url.isLocalFile():
            self.file_activated.emit(url.toLocalFile())

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
        """Validation's problems (the last run's failures stay listed)."""
        self._validation = list(problems)
        self._fill_problems()
        if any(p.severity == "error" for p in problems):
            self.setCurrentWidget(self.problems)

    def add_failure(self, failure: Failure) -> None:
        """A failure of the run: listed (in red, first) until the next run starts."""
        self.failures.append(failure)
        self._fill_problems()
        self.setCurrentWidget(self.problems)

    def clear_failures(self) -> None:
        if self.failures:
            self.failures = []
            self._fill_problems()

    def _fill_problems(self) -> None:
        self.problems.clear()
        for f in self.failures:
            it = QTreeWidgetItem([f.node_id or "", "run", f.message])
            it.setData(0, Qt.UserRole, f.node_id)
            it.setData(0, DETAILS_ROLE, f.details)
            it.setForeground(2, theme.PROBLEM)
            it.setToolTip(2, f"{f.message}\n\nRight-click: Details… (the traceback)")
            self.problems.addTopLevelItem(it)
        for p in self._validation:
            it = QTreeWidgetItem([p.node_id or "", p.field or "", p.message])
            it.setData(0, Qt.UserRole, p.node_id)
            it.setForeground(2, theme.PROBLEM if p.severity == "error" else WARNING)
            it.setToolTip(2, str(p))
            self.problems.addTopLevelItem(it)
        n = len(self._validation) + len(self.failures)
        self.setTabText(2, f"Problems ({n})" if n else "Problems")

    def _problem_menu(self, at: QPoint) -> None:
        item = self.problems.itemAt(at)
        if item is None:
            return
        menu = QMenu(self)
        nid = item.data(0, Qt.UserRole)
        if nid:
            menu.addAction("Go to node", lambda: self.node_activated.emit(nid))
        details = item.data(0, DETAILS_ROLE)
        if details:
            menu.addAction("Details…", lambda: self.details_requested.emit(
                f"Node {nid} failed" if nid else "The run failed", details))
        self.menu = menu
        menu.popup(self.problems.viewport().mapToGlobal(at))

    def _activated(self, item: QTreeWidgetItem) -> None:
        nid = item.data(0, Qt.UserRole)
        if nid:
            self.node_activated.emit(nid)
