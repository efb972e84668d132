"""Copy, cut, paste and duplicate on the canvas. The clipboard holds a graph fragment as a graph
file (:func:`gui.graphops.fragment_text`), under its own MIME type and as plain text, so it
pastes into another window, another NodeGraph, or a text editor."""
from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QMimeData
from PySide6.QtWidgets import QApplication

from .graphops import FRAGMENT_MIME

if TYPE_CHECKING:
    from .view import GraphView


class CanvasClipboard:
    """The selected nodes of ``view`` to and from the system clipboard; pasted nodes come at the
    cursor, selected."""

    def __init__(self, view: GraphView):
        self.view = view

    def copy(self) -> bool:
        """Copy the selected nodes (and the links and groups among them); False if none."""
        ids = self.view.gs.selected_node_ids()
        if not ids:
            return False
        text = self.view.doc.copy_text(ids)
        mime = QMimeData()
        mime.setData(FRAGMENT_MIME, text.encode("utf-8"))
        mime.setText(text)
        QApplication.clipboard().setMimeData(mime)
        return True

    def cut(self) -> None:
        """Copy, then delete the selection: one undo step."""
        doc = self.view.doc
        if self.copy():
            doc.undo.beginMacro("Cut")
            self.view.delete_selection()
            doc.undo.endMacro()

    def paste(self, keep_links: bool = False) -> list[str]:
        """Paste a fragment at the cursor; returns the new node ids (none if the clipboard holds
        no graph). ``keep_links``: see :meth:`paste_with_links`."""
        mime = QApplication.clipboard().mimeData()
        if mime is None:
            return []
        if mime.hasFormat(FRAGMENT_MIME):
            text = bytes(mime.data(FRAGMENT_MIME)).decode("utf-8")
        else:
            text = mime.text()
        if not text:
            return []
        view = self.view
        at = view.mapToScene(view.cursor_view_pos())
        ids = view.doc.paste(text, (at.x(), at.y()), keep_links)
        view.select_ids(ids)
        return ids

    def paste_with_links(self) -> list[str]:
        """Ctrl+Shift+V, as in ComfyUI: paste, and wire the pasted nodes' inputs to the nodes that
        fed the copied ones (in the same document, where they still are)."""
        return self.paste(keep_links=True)

    def duplicate(self) -> list[str]:
        """A copy of the selected nodes beside them, selected."""
        ids = self.view.doc.duplicate(self.view.gs.selected_node_ids())
        self.view.select_ids(ids)
        return ids
