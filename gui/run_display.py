"""Shows a run as it happens: node states, progress and images on the canvas, the Run panel's
timings, the latest images in the viewer.

It follows the engine's events (:mod:`nodegraph.events`) as the Runner forwards them, one
handler per event type; events it has no handler for (the run's own end, which the window
reports from the run's outcome) pass by. A panel that wants more of a run connects to
``Runner.event`` the same way.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtGui import QImage

from nodegraph import events as ev
from nodegraph.errors import NodeGraphError

from .document import Document
from .panels.log import Failure, LogPanel
from .panels.viewer import ImageViewer
from .scene import GraphScene

SHOWN_RESULTS = ("done", "cached", "failed", "interrupted")
"""Node states that show a result of the last run (an edit upstream clears them)."""


class RunDisplay:
    """Puts a run's events on the canvas (``scene``), in the Run panel (``log``) and the image
    ``viewer``."""

    def __init__(self, doc: Document, scene: GraphScene, log: LogPanel, viewer: ImageViewer):
        self.doc, self.scene, self.log, self.viewer = doc, scene, log, viewer
        self._handlers: dict[type, Callable[[Any, list[QImage]], None]] = {
            ev.RunStarted: self._run_started,
            ev.NodeStarted: self._node_started,
            ev.Progress: self._progress,
            ev.NodeFinished: self._node_done,
            ev.NodeCached: self._node_done,
            ev.NodeFailed: self._node_failed,
        }

    def on_event(self, e: ev.Event, images: list[QImage]) -> None:
        """One event of the run, with the QImages the runner made from it."""
        handler = self._handlers.get(type(e))
        if handler is not None:
            handler(e, images)

    def run_ended(self, interrupted: bool) -> None:
        """Nodes still queued lose their mark; the one running shows it was interrupted."""
        for item in self.scene.node_items.values():
            if item.state == "queued":
                item.set_state(None)
            elif item.state == "running":
                item.set_state("interrupted" if interrupted else None)

    def mark_stale(self, node_id: str | None) -> None:
        """An edited node and everything downstream lose their result marks."""
        if node_id is None:
            return
        g = self.doc.graph
        stack, seen = [node_id], set()
        while stack:
            nid = stack.pop()
            if nid in seen:
                continue
            seen.add(nid)
            item = self.scene.node_items.get(nid)
            if item is not None and item.state in SHOWN_RESULTS:
                item.set_state(None)
            stack.extend(lk.dst for lk in g.links_from(nid))

    # -- one handler per event type ------------------------------------------------------------
    def _run_started(self, e: ev.RunStarted, _images: list[QImage]) -> None:
        nodes = self.doc.graph.nodes
        self.log.clear_failures()
        self.log.start_run(list(e.node_ids), {nid: nodes[nid].type for nid in e.node_ids
                                              if nid in nodes})
        for nid in e.node_ids:
            item = self.scene.node_items.get(nid)
            if item is not None:
                item.set_state("queued")

    def _node_started(self, e: ev.NodeStarted, _images: list[QImage]) -> None:
        self.log.set_state(e.node_id, "running")
        item = self.scene.node_items.get(e.node_id)
        if item is not None:
            item.set_state("running")

    def _progress(self, e: ev.Progress, images: list[QImage]) -> None:
        item = self.scene.node_items.get(e.node_id)
        if item is not None:
            preview = images[0] if images else None
            item.set_progress(e.step, e.total, preview)
            if preview is not None:
                self.scene.node_moved(e.node_id)

    def _node_done(self, e: ev.NodeFinished | ev.NodeCached, images: list[QImage]) -> None:
        state = "done" if isinstance(e, ev.NodeFinished) else "cached"
        seconds = e.seconds if isinstance(e, ev.NodeFinished) else None
        self.log.set_state(e.node_id, state, seconds)
        item = self.scene.node_items.get(e.node_id)
        files = [str(f) for f in e.ui.get("files", ())] if isinstance(e, ev.NodeFinished) else []
        if files:
            label = item.title_text() if item is not None else e.node_id
            self.log.append(f"{label} wrote", files=files)
        if item is None:
            return
        item.set_state(state, seconds=seconds)
        if images:
            self.scene.set_node_images(e.node_id, images)
            self.viewer.show_images(images, item.title_text())
        elif item.preview is not None and not item.images:
            item.preview = None  # the progress preview goes when the node has no image to show
            item.relayout()
            self.scene.node_moved(e.node_id)

    def _node_failed(self, e: ev.NodeFailed, _images: list[QImage]) -> None:
        """The message on the node (an error raised on purpose reads as it is; a bug keeps its
        exception's name), once in the log, and in the Problems tab with the traceback behind
        "Details…"."""
        message = failure_message(e.error)
        self.log.set_state(e.node_id, "failed")
        self.log.add_failure(Failure(e.node_id, e.node_type, message, e.traceback))
        hint = ("" if isinstance(e.error, NodeGraphError)
                else " (a bug: right-click the node or its problem for the traceback)")
        self.log.append(f"node {e.node_id} ({e.node_type}) failed: {message}{hint}", "error")
        item = self.scene.node_items.get(e.node_id)
        if item is None:
            return
        item.set_state("failed", error=message)
        self.scene.node_moved(e.node_id)


def failure_message(error: BaseException) -> str:
    """What a failed node shows: the message of an error raised on purpose (NodeGraphError, e.g.
    NodeError), else the exception's name and message (a bug)."""
    text = str(error) or type(error).__name__
    return text if isinstance(error, NodeGraphError) else f"{type(error).__name__}: {text}"
