"""The questions and messages the editor window puts to the user (unsaved changes, crash recovery,
file names, errors, a failure's details, opening a folder). Tests swap in an object with the same
methods (tests/gui/conftest.py's FakeDialogs)."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from .files import RecoveryEntry

GRAPH_FILTER = "Graphs and ComfyUI workflows (*.json *.png *.webp);;All files (*)"


class Dialogs:
    """The window's dialogs, each a method returning the user's answer."""

    def __init__(self, parent: QWidget):
        self.parent = parent

    def unsaved(self, name: str) -> str:
        """"save", "discard" or "cancel"."""
        r = QMessageBox.question(self.parent, "Unsaved changes",
                                 f"Save the changes to {name} before closing it?",
                                 QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel,
                                 QMessageBox.Save)
        return {QMessageBox.Save: "save", QMessageBox.Discard: "discard"}.get(r, "cancel")

    def recover(self, entry: RecoveryEntry) -> bool:
        r = QMessageBox.question(self.parent, "Recover unsaved work",
                                 f"NodeGraph did not close normally. Recover {entry.describe()}?\n"
                                 "(No: the autosaved copy is deleted.)",
                                 QMessageBox.Yes | QMessageBox.No, QMessageBox.Yes)
        return r == QMessageBox.Yes

    def open_path(self, start: str) -> str | None:
        path, _ = QFileDialog.getOpenFileName(self.parent, "Open graph", start, GRAPH_FILTER)
        return path or None

    def save_path(self, start: str, title: str = "Save graph",
                  filter: str = "NodeGraph graphs (*.json)") -> str | None:
        path, _ = QFileDialog.getSaveFileName(self.parent, title, start, filter)
        if path and not Path(path).suffix:
            path += ".json"
        return path or None

    def error(self, title: str, text: str) -> None:
        QMessageBox.warning(self.parent, title, text)

    def details(self, title: str, text: str) -> None:
        """A failure's details (its traceback), selectable."""
        box = QMessageBox(QMessageBox.Warning, title, title, QMessageBox.Close, self.parent)
        box.setInformativeText("The traceback is under Show Details.")
        box.setDetailedText(text)
        box.exec()

    def open_folder(self, path: str) -> None:
        """Show the folder holding ``path`` in the desktop's file manager."""
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(path).parent)))
