"""The mask painter ("Open in Mask Editor" on a Load Image node, as in ComfyUI): paint the mask of the
node's picture with a brush and an eraser (size, hardness), invert, clear, undo, zoom and pan; saving
writes the picture with the mask as its alpha to a new file in the input folder and points the node at
it. Load Image nodes show their picture with the mask tinted over it (:mod:`.preview`).

- :mod:`.brush`   the numpy arithmetic (dabs, strokes, the painter's undo history)
- :mod:`.files`   the node's picture, and where the painting is saved
- :mod:`.canvas`  the painting widget
- :mod:`.dialog`  the window with its tools
- :mod:`.preview` the Load Image nodes' previews on the graph canvas
"""
from __future__ import annotations

from PySide6.QtWidgets import QMenu, QMessageBox

from .files import LOAD_IMAGE, open_picture
from .preview import InputPreviews

__all__ = ["InputPreviews", "add_node_actions", "open_mask_painter"]


def add_node_actions(menu: QMenu, view, node_id: str) -> None:
    """The node menu's "Open in Mask Editor" for a Load Image node whose image is not fed by a wire."""
    node = view.doc.graph.nodes.get(node_id)
    if node is None or node.type != LOAD_IMAGE or view.doc.graph.link_into(node_id, "image") is not None:
        return
    menu.addSeparator()
    menu.addAction("Open in Mask Editor…", lambda: open_mask_painter(view, node_id))


def open_mask_painter(view, node_id: str):
    """Open the painter on node ``node_id``'s picture (a window of its own; returns it). A picture that
    cannot be opened is reported through the window's dialogs (or a message box) and returns None."""
    from nodegraph.errors import NodeGraphError

    from .dialog import MaskPainter

    node = view.doc.graph.node(node_id)
    try:
        picture = open_picture(str(node.params.get("image", "")))
    except (NodeGraphError, OSError) as exc:
        dialogs = getattr(view.window(), "dialogs", None)
        if dialogs is not None:
            dialogs.error("Cannot open the Mask Editor", str(exc))
        else:
            QMessageBox.warning(view, "Cannot open the Mask Editor", str(exc))
        return None
    painter = MaskPainter(view.doc, node_id, picture, view.window())
    view.mask_painter = painter  # kept alive while it shows
    painter.show()
    return painter
