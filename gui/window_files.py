"""The editor window's file commands (a mixin of :class:`gui.window.MainWindow`): new, open, save,
save as, export to ComfyUI's API format, recent files, dropped files, crash recovery, and the run
history's "Restore graph". Each command that reads the graph commits the text still being typed
first (:meth:`FileCommands.commit_edits`)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QTimer
from PySide6.QtGui import QImage

from nodegraph.errors import GraphLoadError
from nodegraph.graph import Graph
from nodegraph.history import HistoryEntry

from .batch.dialog import show_batch_dialog
from .files import RecoveryEntry, find_recoverable

if TYPE_CHECKING:
    from .window import MainWindow


class FileCommands:
    """File commands of the window (``self`` is the MainWindow)."""

    def commit_edits(self) -> None:
        """Commit the text still being typed (in the canvas's editor or the params panel) as one
        undo step each, keeping the editor open: every action that reads the graph calls this."""
        self.view.inline.flush()
        self.params.flush()

    def maybe_save(self) -> bool:
        """Ask about unsaved changes; False if the user cancelled."""
        self.commit_edits()
        if not self.doc.dirty:
            return True
        answer = self.dialogs.unsaved(self.doc.display_name())
        if answer == "cancel":
            return False
        if answer == "save":
            return self.save()
        return True

    def new_file(self) -> None:
        if self.maybe_save():
            self.autosaver.discard()
            self.doc.replace_graph(Graph(), None)

    def new_window(self) -> MainWindow:
        """Another window: same session (node packs, output cache, loaded models) and the same
        run queue and history; its own runs on its canvas (Stop stops only that window's run)."""
        from . import app

        return app.open_window(self.session, self.settings, shared=self.runner.shared)

    def open_file(self, path: str | os.PathLike[str] | None = None) -> bool:
        if not self.maybe_save():
            return False
        if path is None:
            start = str(self.doc.path.parent) if self.doc.path else os.getcwd()
            path = self.dialogs.open_path(start)
            if not path:
                return False
        return self.load(path)

    def load(self, path: str | os.PathLike[str]) -> bool:
        """Open a graph file (or a PNG saved by NodeGraph) without asking anything."""
        try:
            opened = self.doc.open(path)
        except GraphLoadError as exc:
            self.dialogs.error("Cannot open graph", str(exc))
            self.log.append(str(exc), "error")
            return False
        self.autosaver.discard()
        self.settings.add_recent(path)
        copy = " as an untitled copy (Save asks where)" if self.doc.origin is not None else ""
        self.log.append(f"opened {path}{copy}")
        for line in opened.report.lines() if opened.report is not None else []:
            self.log.append(line, "warning")
        QTimer.singleShot(0, self.view.fit_all)
        self.view.fit_all()
        self._revalidate.start(0)  # problems show as soon as the file is open
        return True

    def save(self) -> bool:
        self.commit_edits()
        if self.doc.path is None:
            return self.save_as()
        return self._write(self.doc.path)

    def save_as(self) -> bool:
        self.commit_edits()
        name = self.doc.origin.name if self.doc.origin is not None else "graph.json"
        start = str(self.doc.path) if self.doc.path else os.path.join(os.getcwd(), name)
        path = self.dialogs.save_path(start)
        if not path:
            return False
        return self._write(Path(path))

    def _write(self, path: Path) -> bool:
        try:
            self.doc.save(path)
        except Exception as exc:
            self.dialogs.error("Cannot save", f"{path}: {exc}")
            return False
        self.autosaver.discard()
        self.settings.add_recent(path)
        self.statusBar().showMessage(f"Saved {path}", 4000)
        self._update_title()
        return True

    def export_comfy(self) -> bool:
        """Write the graph in ComfyUI's API format (asks where; says which nodes cannot go)."""
        from nodegraph.comfy import export_prompt
        from nodegraph.errors import NodeGraphError
        from nodegraph.fileio import write_text_atomic

        self.commit_edits()
        try:
            prompt = export_prompt(self.doc.graph, self.doc.registry.nodes)
        except NodeGraphError as exc:
            self.dialogs.error("Cannot export", str(exc))
            return False
        stem = Path(self.doc.display_name().split(" ")[0]).stem
        path = self.dialogs.save_path(os.path.join(os.getcwd(), f"{stem}-api.json"),
                                      "Export ComfyUI API", "ComfyUI API prompts (*.json)")
        if not path:
            return False
        try:
            write_text_atomic(Path(path), json.dumps(prompt, indent=2, ensure_ascii=False) + "\n")
        except NodeGraphError as exc:
            self.dialogs.error("Cannot export", str(exc))
            return False
        self.log.append(f"exported {len(prompt)} node(s) in ComfyUI's API format:", files=[path])
        return True

    def show_batch(self) -> None:
        self.commit_edits()
        show_batch_dialog(self)

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        files = self.settings.recent_files()
        for f in files:
            self.recent_menu.addAction(f, lambda f=f: self.open_file(f))
        if not files:
            self.recent_menu.addAction("(none)").setEnabled(False)

    def _files_dropped(self, paths: list[str]) -> None:
        for p in paths:
            if Path(p).suffix.lower() in (".json", ".png", ".webp"):
                self.open_file(p)
                return

    def dragEnterEvent(self, ev) -> None:
        if ev.mimeData().hasUrls():
            ev.acceptProposedAction()

    def dropEvent(self, ev) -> None:
        self._files_dropped([u.toLocalFile() for u in ev.mimeData().urls() if u.isLocalFile()])

    def offer_recovery(self) -> int:
        """Offer each autosave left by a crashed session; returns how many were recovered.
        The first goes into this window if it is empty, the others into new windows."""
        count = 0
        for entry in find_recoverable(self.settings.recovery_dir):
            if not self.dialogs.recover(entry):
                entry.discard()
                continue
            target = self
            if len(self.doc.graph) or self.doc.dirty or count:
                target = self.new_window()
            if target.recover(entry):
                count += 1
        return count

    def recover(self, entry: RecoveryEntry) -> bool:
        from nodegraph import format as graph_format

        try:
            graph = graph_format.load(entry.graph_file)
        except GraphLoadError as exc:
            self.dialogs.error("Cannot recover", str(exc))
            return False
        original = Path(entry.original) if entry.original else None
        self.doc.replace_graph(graph, original)
        self.doc.recovered = True
        entry.discard()
        self.autosaver.changed()
        self.autosaver.autosave()
        self._update_title()
        self.log.append(f"recovered {entry.describe()}")
        self.view.fit_all()
        return True

    # -- history ---------------------------------------------------------------------------
    def show_history_entry(self, entry: HistoryEntry) -> None:
        """The images a past run wrote, in the viewer (those still on disk)."""
        images = [img for img in (QImage(p) for p in entry.images) if not img.isNull()]
        self.viewer.show_images(images, entry.summary[:60])
        if entry.images and not images:
            self.statusBar().showMessage("The images of that run are no longer on disk", 6000)

    def restore_history_entry(self, entry: HistoryEntry) -> bool:
        """Open the graph a past run ran (untitled: Save asks where)."""
        if not self.maybe_save():
            return False
        self.autosaver.discard()
        self.doc.replace_graph(entry.graph.copy(), None)
        self.log.append(f"restored the graph of the run of "
                        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(entry.started_at))}")
        self.view.fit_all()
        self._revalidate.start(0)
        return True

