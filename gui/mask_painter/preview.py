"""Load Image nodes show their picture on the canvas, the mask (1 − alpha) tinted over it, as soon as
the node is added or its ``image`` changes (a saved painting, an undo) — without a run."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

from nodegraph.graph import ChangeKind, GraphChange

from .canvas import composite
from .files import LOAD_IMAGE, open_picture

PREVIEW_SIDE = 256
"""Longest side of a node's preview, in pixels."""


def preview_image(name: str) -> QImage | None:
    """The picture named ``name`` with its mask tinted over it, at most PREVIEW_SIDE pixels (None if it
    cannot be read: the node's own run reports why)."""
    try:
        picture = open_picture(name)
    except Exception:  # noqa: BLE001 — any unreadable file just has no preview
        return None
    img = composite(picture.rgb, picture.mask)
    if max(img.width(), img.height()) > PREVIEW_SIDE:
        img = img.scaled(PREVIEW_SIDE, PREVIEW_SIDE, Qt.KeepAspectRatio, Qt.SmoothTransformation)
    return img


class InputPreviews:
    """Keeps the previews of the Load Image nodes of ``view``'s document current."""

    def __init__(self, view):
        self.view = view
        view.gs.graph_changed.connect(self._changed)
        view.doc.graph_replaced.connect(self.refresh_all)
        self.refresh_all()

    def refresh_all(self) -> None:
        for node in list(self.view.doc.graph.nodes.values()):
            if node.type == LOAD_IMAGE:
                self.refresh(node.id)

    def refresh(self, node_id: str) -> None:
        node = self.view.doc.graph.nodes.get(node_id)
        if node is None or node_id not in self.view.gs.node_items:
            return
        img = preview_image(str(node.params.get("image", "")))
        self.view.gs.set_node_images(node_id, [img] if img is not None else [])

    def _changed(self, ch: GraphChange) -> None:
        if ch.kind == ChangeKind.NODE_ADDED or (ch.kind == ChangeKind.PARAM_CHANGED and ch.name == "image"):
            node = self.view.doc.graph.nodes.get(ch.node_id)
            if node is not None and node.type == LOAD_IMAGE:
                self.refresh(ch.node_id)
