"""The History panel: past runs, newest first — a thumbnail, when, how long, the seed and the
prompt. Clicking a run shows its images in the image viewer; "Restore graph" opens the graph it
ran (its snapshot).

A Qt view of :class:`nodegraph.history.History` (the engine keeps the last 200 runs in the user data
folder, outputs by path): it follows the Runner's ``queue_changed`` signal. Thumbnails are read from
the output files a few at a time, so opening a long history does not hold up the window.
"""
from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QIcon, QImageReader, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget

from nodegraph import queue as q
from nodegraph.history import History, HistoryEntry, HistoryRemoved

from .. import theme

THUMB = 56
ID_ROLE = Qt.UserRole
THUMBS_PER_TICK = 6
_STATUS_COLORS = {"error": theme.STATE_COLORS["failed"], "interrupted": theme.STATE_COLORS["interrupted"]}


class HistoryPanel(QWidget):
    """``entry_chosen(HistoryEntry)`` when a run is clicked; ``restore_requested(HistoryEntry)`` for
    "Restore graph"."""

    entry_chosen = Signal(object)
    restore_requested = Signal(object)

    def __init__(self, history: History, parent: QWidget | None = None):
        super().__init__(parent)
        self.history = history
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(4)
        self.list = QListWidget(self)
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setUniformItemSizes(True)
        self.list.setWordWrap(False)
        self.list.itemClicked.connect(self._clicked)
        self.list.itemActivated.connect(self._clicked)
        self.list.itemSelectionChanged.connect(self._update_buttons)
        lay.addWidget(self.list, 1)
        bar = QHBoxLayout()
        self.restore_btn = QPushButton("Restore graph", self)
        self.restore_btn.setToolTip("Open the graph this run ran (unsaved changes are asked about first)")
        self.restore_btn.clicked.connect(self._restore)
        bar.addWidget(self.restore_btn)
        bar.addStretch(1)
        lay.addLayout(bar)
        self._thumbs_due: list[str] = []
        self._thumb_timer = QTimer(self)
        self._thumb_timer.setInterval(0)
        self._thumb_timer.timeout.connect(self._load_some_thumbnails)
        for entry in self.history.entries():
            self._insert(entry)
        self._update_buttons()

    # -- following the history ---------------------------------------------------------------
    def on_queue_event(self, qe: Any) -> None:
        if isinstance(qe, q.ItemFinished):
            self._insert(qe.entry)
        elif isinstance(qe, HistoryRemoved):
            gone = set(qe.ids)
            for i in reversed(range(self.list.count())):
                if qe.cleared or self.list.item(i).data(ID_ROLE) in gone:
                    self.list.takeItem(i)

    def _insert(self, entry: HistoryEntry) -> None:
        item = QListWidgetItem(describe(entry))
        item.setData(ID_ROLE, entry.id)
        item.setToolTip(f"{entry.summary or '(no prompt)'}\n\n{len(entry.images)} image(s); "
                        f"status {entry.status}" + (f": {entry.error.get('message', '')}"
                                                    if entry.error else ""))
        color = _STATUS_COLORS.get(entry.status)
        if color is not None:
            item.setForeground(color)
        self.list.insertItem(0, item)
        if entry.thumbnail:
            self._thumbs_due.append(entry.id)
            self._thumb_timer.start()

    def _load_some_thumbnails(self) -> None:
        due, self._thumbs_due = self._thumbs_due[:THUMBS_PER_TICK], self._thumbs_due[THUMBS_PER_TICK:]
        for entry_id in due:
            entry, item = self.history.get(entry_id), self._item(entry_id)
            if entry is None or item is None or not entry.thumbnail:
                continue
            reader = QImageReader(entry.thumbnail)
            size = reader.size()
            if size.isValid():
                reader.setScaledSize(size.scaled(THUMB, THUMB, Qt.KeepAspectRatio))
            image = reader.read()
            if not image.isNull():
                item.setIcon(QIcon(QPixmap.fromImage(image)))
        if not self._thumbs_due:
            self._thumb_timer.stop()

    def _item(self, entry_id: str) -> QListWidgetItem | None:
        for i in range(self.list.count()):
            if self.list.item(i).data(ID_ROLE) == entry_id:
                return self.list.item(i)
        return None

    # -- acting --------------------------------------------------------------------------------
    def selected(self) -> HistoryEntry | None:
        item = self.list.currentItem()
        return self.history.get(item.data(ID_ROLE)) if item is not None else None

    def _clicked(self, item: QListWidgetItem) -> None:
        entry = self.history.get(item.data(ID_ROLE))
        if entry is not None:
            self.entry_chosen.emit(entry)

    def _restore(self) -> None:
        entry = self.selected()
        if entry is not None:
            self.restore_requested.emit(entry)

    def _update_buttons(self) -> None:
        self.restore_btn.setEnabled(self.list.currentItem() is not None)


def describe(entry: HistoryEntry) -> str:
    """Two lines: when it ran, for how long, its seed (and outcome); then its prompt."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.started_at))
    parts = [when, f"{entry.duration:.1f} s"]
    if entry.seed is not None:
        parts.append(f"seed {entry.seed}")
    if entry.status != "success":
        parts.append(entry.status)
    summary = entry.summary or "(no prompt)"
    return " · ".join(parts) + "\n" + (summary if len(summary) <= 90 else summary[:89] + "…")
