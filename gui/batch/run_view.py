"""The Batch dialog's lower half: how the batch goes — a progress bar, the stats line, how it
ended, one row per worker, and the log."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QAbstractItemView, QHeaderView, QLabel, QListView, QListWidget,
                               QListWidgetItem, QProgressBar, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from .. import theme
from .report import stats_text
from .state import BatchState, WorkerInfo

WORKER_COLUMNS = ["Worker", "Host", "Done", "Items/s", "Status"]


class RunView(QWidget):
    """Shows a :class:`BatchState` (:meth:`show_state`), the end (:meth:`show_status`) and log
    lines (:meth:`log`)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.progress = QProgressBar(self)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("%v / %m items")
        self.progress.setTextVisible(True)
        lay.addWidget(self.progress)
        self.stats_label = QLabel("not started", self)
        self.stats_label.setObjectName("statsLabel")
        lay.addWidget(self.stats_label)
        self.status_label = QLabel(self)
        self.status_label.setObjectName("statusLabel")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.status_label.hide()
        lay.addWidget(self.status_label)
        self.worker_table = self._build_worker_table()
        lay.addWidget(self.worker_table, 1)
        self.log_list = QListWidget(self)
        self.log_list.setObjectName("batchLog")
        self.log_list.setMinimumHeight(80)
        self.log_list.setWordWrap(True)
        self.log_list.setResizeMode(QListView.Adjust)  # re-wrap long lines when resized
        self.log_list.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        lay.addWidget(self.log_list, 1)

    def _build_worker_table(self) -> QTableWidget:
        table = QTableWidget(0, len(WORKER_COLUMNS), self)
        table.setObjectName("workerTable")
        table.setHorizontalHeaderLabels(WORKER_COLUMNS)
        table.verticalHeader().setVisible(False)
        table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        table.setSelectionMode(QAbstractItemView.NoSelection)
        header = table.horizontalHeader()
        for col in range(4):
            header.setSectionResizeMode(col, QHeaderView.ResizeToContents)
        header.setSectionResizeMode(4, QHeaderView.Stretch)
        table.setMinimumHeight(80)
        return table

    # -- before and at the start ---------------------------------------------------------------
    def show_count(self, total: int) -> None:
        """No batch yet: the bar says how many items Start would run."""
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(0)
        self.progress.setFormat(f"0 / {total:,} items")

    def starting(self) -> None:
        """A batch starts: log, workers and the last status go; the bar is busy until the start
        event says how many items there are."""
        self.log_list.clear()
        self.worker_table.setRowCount(0)
        self.status_label.hide()
        self.progress.setRange(0, 0)
        self.stats_label.setText("starting…")

    # -- while it runs -------------------------------------------------------------------------
    def show_state(self, s: BatchState) -> None:
        if s.started:
            self.progress.setFormat("%v / %m items")
            self.progress.setRange(0, max(1, s.total))
            self.progress.setValue(min(s.done, max(1, s.total)))
            self.stats_label.setText(stats_text(s))
        workers = list(s.workers.values())
        self.worker_table.setRowCount(len(workers))
        for r, w in enumerate(workers):
            self._show_worker(r, w)

    def _show_worker(self, r: int, w: WorkerInfo) -> None:
        cells = [w.name, w.host, str(w.done), f"{w.items_per_s:.2f}", w.status()]
        for c, text in enumerate(cells):
            item = self.worker_table.item(r, c)
            if item is None:
                item = QTableWidgetItem()
                if c in (2, 3):
                    item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                self.worker_table.setItem(r, c, item)
            item.setText(text)
        status = self.worker_table.item(r, 4)
        status.setForeground(theme.PROBLEM if not w.alive else
                             theme.STATE_COLORS["done"] if w.ready else theme.TEXT_DIM)
        status.setToolTip(w.reason or (f"pid {w.pid}, {w.threads} thread(s)" if w.pid else ""))

    def show_status(self, level: str, text: str) -> None:
        """How the batch ended (or why it could not start): level ok, warn or error."""
        color = {"ok": theme.STATE_COLORS["done"], "warn": theme.STATE_COLORS["interrupted"]}.get(
            level, theme.PROBLEM)
        self.status_label.setStyleSheet(f"color: {color.name()}; font-weight: 600;")
        self.status_label.setText(text)
        self.status_label.show()

    # -- the log ---------------------------------------------------------------------------------
    def log(self, text: str, style: str = "") -> None:
        """Add a line; style "warn" or "dim" colours it."""
        item = QListWidgetItem(text)
        if style == "warn":
            item.setForeground(theme.STATE_COLORS["interrupted"])
        elif style == "dim":
            item.setForeground(theme.TEXT_DIM)
        self.log_list.addItem(item)
        self.log_list.scrollToBottom()

    def lines(self) -> list[str]:
        return [self.log_list.item(i).text() for i in range(self.log_list.count())]
