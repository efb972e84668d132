"""The Queue panel: the engine's run queue as a list — the running item, the pending ones in run
order, then the items that finished in this session (newest first).

A Qt view of :class:`nodegraph.queue.RunQueue` and nothing more: it reads the queue's state when
the queue announces a change (the Runner's ``queue_changed`` signal) and calls the queue's own
methods for Cancel (selected pending items), Up/Down (reorder) and Clear (every pending item).
"""
from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QHBoxLayout, QPushButton, QTreeWidget, QTreeWidgetItem, QVBoxLayout,
                               QWidget)

from nodegraph import events as ev
from nodegraph import queue as q

from .. import theme

MAX_FINISHED = 50
ID_ROLE = Qt.UserRole
_STATUS_COLORS = {"running": theme.STATE_COLORS["running"], "pending": QColor("#9aa0a6"),
                  "success": theme.STATE_COLORS["done"], "error": theme.STATE_COLORS["failed"],
                  "interrupted": theme.STATE_COLORS["interrupted"], "cancelled": QColor("#6b7075")}


class QueuePanel(QWidget):
    def __init__(self, queue: q.RunQueue, parent: QWidget | None = None):
        super().__init__(parent)
        self.queue = queue
        self.finished: list[tuple[str, str, str, str]] = []  # (id, label, status, time text)
        self._progress: dict[str, str] = {}  # running item id -> what it is doing
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(4)
        self.tree = QTreeWidget(self)
        self.tree.setHeaderLabels(["#", "graph", "state", "time"])
        self.tree.setRootIsDecorated(False)
        self.tree.setSelectionMode(QTreeWidget.ExtendedSelection)
        self.tree.setColumnWidth(0, 44)
        self.tree.setColumnWidth(1, 200)
        self.tree.setColumnWidth(2, 220)
        self.tree.itemSelectionChanged.connect(self._update_buttons)
        lay.addWidget(self.tree, 1)
        bar = QHBoxLayout()
        self.cancel_btn = self._button(bar, "Cancel", "Take the selected pending runs out of the queue",
                                       self.cancel_selected)
        self.up_btn = self._button(bar, "Up", "Run the selected pending run earlier", lambda: self.move(-1))
        self.down_btn = self._button(bar, "Down", "Run the selected pending run later", lambda: self.move(1))
        bar.addStretch(1)
        self.clear_btn = self._button(bar, "Clear", "Take every pending run out of the queue",
                                      lambda: self.queue.clear())
        lay.addLayout(bar)
        self.refresh()

    def _button(self, bar: QHBoxLayout, text: str, tip: str, slot: Any) -> QPushButton:
        b = QPushButton(text, self)
        b.setToolTip(tip)
        b.clicked.connect(slot)
        bar.addWidget(b)
        return b

    # -- following the queue -------------------------------------------------------------------
    def on_queue_event(self, qe: Any) -> None:
        if isinstance(qe, q.ItemEvent):
            self._item_event(qe)
            return
        if isinstance(qe, q.ItemFinished):
            e = qe.entry
            self._add_finished(qe.item, e.status, f"{e.duration:.1f} s")
            self._progress.pop(qe.item.id, None)
        elif isinstance(qe, q.ItemsRemoved):
            for item in qe.items:
                self._add_finished(item, "cancelled", "")
        self.refresh()

    def _item_event(self, qe: q.ItemEvent) -> None:
        e = qe.event
        if isinstance(e, ev.NodeStarted):
            node = qe.item.graph.nodes.get(e.node_id)
            self._progress[qe.item.id] = f"running {node.label if node else e.node_id}"
        elif isinstance(e, ev.Progress):
            node = qe.item.graph.nodes.get(e.node_id)
            self._progress[qe.item.id] = f"running {node.label if node else e.node_id} {e.step}/{e.total}"
        else:
            return
        row = self._row(qe.item.id)
        if row is not None:
            row.setText(2, self._progress[qe.item.id])

    def _add_finished(self, item: q.QueueItem, status: str, took: str) -> None:
        self.finished.insert(0, (item.id, _label(item), status, took))
        del self.finished[MAX_FINISHED:]

    def refresh(self) -> None:
        """Rebuild the list from the queue (the selection is kept)."""
        selected = set(self.selected_ids())
        self.tree.clear()
        running = self.queue.running()
        if running is not None:
            self._add_row(running, "running", self._progress.get(running.id, "running"), "")
        for n, item in enumerate(self.queue.pending(), 1):
            self._add_row(item, "pending", f"pending ({n} in line)", "")
        for item_id, label, status, took in self.finished:
            self._add_row(None, status, status, took, item_id, label)
        for i in range(self.tree.topLevelItemCount()):
            row = self.tree.topLevelItem(i)
            row.setSelected(row.data(0, ID_ROLE) in selected)
        self._update_buttons()

    def _add_row(self, item: q.QueueItem | None, status: str, state: str, took: str,
                 item_id: str = "", label: str = "") -> None:
        number = "" if item is None else f"{item.number:g}"
        row = QTreeWidgetItem([number, label or _label(item), state, took])
        row.setData(0, ID_ROLE, item.id if item is not None else item_id)
        row.setData(1, ID_ROLE, status)
        row.setForeground(2, _STATUS_COLORS.get(status, theme.TEXT_DIM))
        if item is not None:
            row.setToolTip(1, f"queued {time.strftime('%H:%M:%S', time.localtime(item.created_at))}")
        self.tree.addTopLevelItem(row)

    def _row(self, item_id: str) -> QTreeWidgetItem | None:
        for i in range(self.tree.topLevelItemCount()):
            row = self.tree.topLevelItem(i)
            if row.data(0, ID_ROLE) == item_id:
                return row
        return None

    # -- acting on the queue -------------------------------------------------------------------
    def selected_ids(self, status: str | None = None) -> list[str]:
        return [r.data(0, ID_ROLE) for r in self.tree.selectedItems()
                if status is None or r.data(1, ID_ROLE) == status]

    def cancel_selected(self) -> None:
        self.queue.cancel(self.selected_ids("pending"))

    def move(self, step: int) -> None:
        """Move the selected pending item ``step`` places (negative: earlier)."""
        ids = self.selected_ids("pending")
        order = [i.id for i in self.queue.pending()]
        if len(ids) == 1 and ids[0] in order:
            self.queue.move(ids[0], max(0, order.index(ids[0]) + step))

    def _update_buttons(self) -> None:
        pending = self.selected_ids("pending")
        self.cancel_btn.setEnabled(bool(pending))
        self.up_btn.setEnabled(len(pending) == 1)
        self.down_btn.setEnabled(len(pending) == 1)
        self.clear_btn.setEnabled(bool(self.queue.pending()))


def _label(item: q.QueueItem | None) -> str:
    if item is None:
        return ""
    return str(item.extra.get("label") or item.client_id or "graph")
