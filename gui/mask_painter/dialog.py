"""The mask painter's window: the canvas, its tools (brush, eraser, size, hardness, invert, clear, undo,
redo, fit) and Save / Cancel.

Save writes a new picture file (see :mod:`.files`) and points the Load Image node at it — one step of
the document's undo. A file that cannot be written (a read-only input folder, a full disk) is said in
the window, which stays open with the painting as it was.
"""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QButtonGroup, QDialog, QHBoxLayout, QLabel, QPushButton, QSlider, QToolButton,
                               QVBoxLayout, QWidget)

from nodegraph.errors import NodeGraphError

from .canvas import MaskCanvas
from .files import LOAD_IMAGE, Picture, save_picture


def _slider(lo: int, hi: int, value: int) -> QSlider:
    s = QSlider(Qt.Horizontal)
    s.setRange(lo, hi)
    s.setValue(value)
    s.setFixedWidth(130)
    return s


class MaskPainter(QDialog):
    """Paints the mask of ``picture`` for Load Image node ``node_id`` of document ``doc``."""

    def __init__(self, doc, node_id: str, picture: Picture, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc, self.node_id, self.picture = doc, node_id, picture
        self.saved_name: str | None = None
        self.setWindowTitle(f"Mask Editor — {picture.name}")
        self.canvas = MaskCanvas(picture.rgb, picture.mask, self)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addLayout(self._tools())
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self.status)
        layout.addLayout(self._buttons())
        self._shortcuts()
        self.canvas.mask_changed.connect(self._update_history_buttons)
        self.graph = doc.graph  # another graph opened meanwhile has no node of ours
        self._update_history_buttons()
        self.resize(760, 640)
        self.canvas.setFocus()

    # -- building --------------------------------------------------------------------------------
    def _tools(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.brush_button, self.eraser_button = QToolButton(self), QToolButton(self)
        self.tools = QButtonGroup(self)
        for button, name, text in ((self.brush_button, "brush", "Brush (B)"), (self.eraser_button, "eraser", "Eraser (E)")):
            button.setText(text)
            button.setCheckable(True)
            button.clicked.connect(lambda _=False, n=name: self.set_tool(n))
            self.tools.addButton(button)
            row.addWidget(button)
        self.brush_button.setChecked(True)
        self.size_slider = _slider(1, 512, int(self.canvas.brush_size))
        self.size_slider.valueChanged.connect(lambda v: setattr(self.canvas, "brush_size", float(v)))
        self.hardness_slider = _slider(0, 100, round(self.canvas.hardness * 100))
        self.hardness_slider.valueChanged.connect(lambda v: setattr(self.canvas, "hardness", v / 100.0))
        row.addWidget(QLabel("Size"))
        row.addWidget(self.size_slider)
        row.addWidget(QLabel("Hardness"))
        row.addWidget(self.hardness_slider)
        self.invert_button = self._button(row, "Invert", self.canvas.invert)
        self.clear_button = self._button(row, "Clear", self.canvas.clear)
        self.undo_button = self._button(row, "Undo", self.canvas.undo)
        self.redo_button = self._button(row, "Redo", self.canvas.redo)
        self._button(row, "Fit", self.canvas.fit)
        row.addStretch(1)
        return row

    def _button(self, row: QHBoxLayout, text: str, slot) -> QToolButton:
        b = QToolButton(self)
        b.setText(text)
        b.clicked.connect(lambda _=False: slot())
        row.addWidget(b)
        return b

    def _buttons(self) -> QHBoxLayout:
        row = QHBoxLayout()
        row.addWidget(QLabel("Left: paint · Middle or Space+left: pan · Wheel: zoom · [ ]: size", self))
        row.addStretch(1)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.clicked.connect(self.reject)
        self.save_button = QPushButton("Save to node", self)
        self.save_button.setDefault(True)
        self.save_button.clicked.connect(self.save)
        row.addWidget(self.cancel_button)
        row.addWidget(self.save_button)
        return row

    def _shortcuts(self) -> None:
        keys = {QKeySequence.Undo: self.canvas.undo, QKeySequence.Redo: self.canvas.redo,
                "B": lambda: self.set_tool("brush"), "E": lambda: self.set_tool("eraser"),
                "I": self.canvas.invert, "[": lambda: self._grow(1 / 1.25), "]": lambda: self._grow(1.25)}
        for key, slot in keys.items():
            QShortcut(QKeySequence(key), self, activated=slot)

    # -- actions ---------------------------------------------------------------------------------
    def set_tool(self, name: str) -> None:
        self.canvas.tool = name
        (self.brush_button if name == "brush" else self.eraser_button).setChecked(True)
        self.canvas.update()

    def _grow(self, factor: float) -> None:
        self.size_slider.setValue(max(1, round(self.size_slider.value() * factor)))

    def _update_history_buttons(self) -> None:
        self.undo_button.setEnabled(self.canvas.history.can_undo())
        self.redo_button.setEnabled(self.canvas.history.can_redo())

    def save(self) -> bool:
        """Write the new picture and point the node at it (one document undo step). On failure the
        window says why and stays open; nothing in the document changes."""
        try:
            name = save_picture(self.picture, self.canvas.mask)
        except (NodeGraphError, OSError) as exc:
            self.status.setStyleSheet("color: #e05555;")
            self.status.setText(f"Not saved: {exc}")
            return False
        self.saved_name = name
        node = self.doc.graph.nodes.get(self.node_id) if self.doc.graph is self.graph else None
        if node is None or node.type != LOAD_IMAGE:
            self.status.setStyleSheet("")
            self.status.setText(f"Saved as {name} in {self.picture.folder}; its Load Image node is gone, "
                                "so no node reads it yet.")
            return True
        self.doc.set_param(self.node_id, "image", name)
        self.accept()
        return True
