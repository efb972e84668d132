"""The main window: canvas in the centre, node library left, params and image viewer right, log
at the bottom, Run/Stop toolbar with a device and memory readout, and the File/Edit/View/Run menus.

One window edits one Document. Every question the window asks the user (unsaved changes, crash
recovery, file names, errors) goes through ``self.dialogs``, which tests replace.
"""
from __future__ import annotations

import os
import random
import sys
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (QDockWidget, QFileDialog, QLabel, QMainWindow, QMessageBox,
                               QSizePolicy, QToolBar, QWidget)

from nodegraph.api import Session
from nodegraph.errors import GraphLoadError, Problem
from nodegraph.graph import ChangeKind, Graph, GraphChange

from .batch.dialog import show_batch_dialog
from .document import Document
from .files import AppSettings, Autosaver, RecoveryEntry, find_recoverable
from .panels.library import NodeLibrary
from .panels.log import LogPanel
from .panels.packs import PacksDialog
from .panels.params import ParamsPanel
from .panels.viewer import ImageViewer
from .run_display import RunDisplay
from .runner import RunOutcome, Runner
from .view import GraphView

GRAPH_FILTER = "Graphs and ComfyUI workflows (*.json *.png *.webp);;All files (*)"
_CHANGES_RESULTS = frozenset({ChangeKind.PARAM_CHANGED, ChangeKind.MODE_CHANGED,
                              ChangeKind.LINK_ADDED, ChangeKind.LINK_REMOVED})
"""Edits after which a node's last results (and those downstream) are stale."""


class Dialogs:
    """The questions the window asks. Tests swap in an object with the same methods."""

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

    def save_path(self, start: str) -> str | None:
        path, _ = QFileDialog.getSaveFileName(self.parent, "Save graph", start,
                                              "NodeGraph graphs (*.json)")
        if path and not Path(path).suffix:
            path += ".json"
        return path or None

    def error(self, title: str, text: str) -> None:
        QMessageBox.warning(self.parent, title, text)


class MainWindow(QMainWindow):
    def __init__(self, session: Session, settings: AppSettings | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.settings = settings or AppSettings.default()
        self.dialogs = Dialogs(self)
        self.doc = Document(session.registry, parent=self)
        self.view = GraphView(self.doc, self)
        self.view.files_dropped.connect(self._files_dropped)
        self.setCentralWidget(self.view)
        self.runner = Runner(session, self)
        self.autosaver = Autosaver(self.doc, self.settings.recovery_dir, self.settings.autosave_ms,
                                   self)
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)
        self._problems: list[Problem] = []
        self._advancing = False
        self._revalidate = QTimer(self)
        self._revalidate.setSingleShot(True)
        self._revalidate.setInterval(300)
        self._revalidate.timeout.connect(self._validate_quietly)
        self._build_panels()
        self._build_actions()
        self._connect()
        self._update_title()
        self._update_run_actions()
        self.resize(1480, 900)
        self._restore_layout()
        self._readout_timer = QTimer(self)
        self._readout_timer.setInterval(2000)
        self._readout_timer.timeout.connect(self._update_readout)
        self._readout_timer.start()
        self._update_readout()

    @property
    def scene(self):
        return self.view.gs

    # -- building --------------------------------------------------------------------------
    def _dock(self, title: str, name: str, widget: QWidget, area) -> QDockWidget:
        d = QDockWidget(title, self)
        d.setObjectName(name)
        d.setWidget(widget)
        d.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetFloatable
                      | QDockWidget.DockWidgetClosable)
        self.addDockWidget(area, d)
        return d

    def _build_panels(self) -> None:
        self.library = NodeLibrary(self.doc.registry, self)
        self.library.add_requested.connect(self._add_from_library)
        self.params = ParamsPanel(self.doc, self)
        self.viewer = ImageViewer(self)
        self.log = LogPanel(self)
        self.log.node_activated.connect(self.focus_node)
        self.library_dock = self._dock("Nodes", "libraryDock", self.library, Qt.LeftDockWidgetArea)
        self.params_dock = self._dock("Params", "paramsDock", self.params, Qt.RightDockWidgetArea)
        self.viewer_dock = self._dock("Image", "viewerDock", self.viewer, Qt.RightDockWidgetArea)
        self.log_dock = self._dock("Run", "logDock", self.log, Qt.BottomDockWidgetArea)
        self.run_display = RunDisplay(self.doc, self.scene, self.log, self.viewer)
        self.splitDockWidget(self.params_dock, self.viewer_dock, Qt.Vertical)
        self._layout_restored = False

    def _default_dock_sizes(self) -> None:
        self.resizeDocks([self.library_dock, self.params_dock], [210, 330], Qt.Horizontal)
        self.resizeDocks([self.params_dock, self.viewer_dock], [420, 380], Qt.Vertical)
        self.resizeDocks([self.log_dock], [160], Qt.Vertical)

    def showEvent(self, ev) -> None:
        super().showEvent(ev)
        if not self._layout_restored:
            self._layout_restored = True
            self._default_dock_sizes()

    def _action(self, text: str, slot, keys=None, tip: str = "") -> QAction:
        a = QAction(text, self)
        if keys:
            a.setShortcuts([QKeySequence(k) for k in (keys if isinstance(keys, list) else [keys])])
        if tip:
            a.setToolTip(tip)
        a.triggered.connect(slot)
        self.addAction(a)
        return a

    def _build_actions(self) -> None:
        self.act_new = self._action("&New", self.new_file, QKeySequence.New)
        self.act_new_window = self._action("New &Window", self.new_window, "Ctrl+Shift+N")
        self.act_open = self._action("&Open…", lambda: self.open_file(), QKeySequence.Open)
        self.act_save = self._action("&Save", self.save, QKeySequence.Save)
        self.act_save_as = self._action("Save &As…", self.save_as, QKeySequence.SaveAs)
        self.act_close = self._action("&Close Window", self.close, QKeySequence.Close)
        self.act_undo = self.doc.undo.createUndoAction(self, "&Undo")
        self.act_undo.setShortcuts(QKeySequence.Undo)
        self.act_redo = self.doc.undo.createRedoAction(self, "&Redo")
        self.act_redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        self.addAction(self.act_undo)
        self.addAction(self.act_redo)
        self.act_run = self._action("Run", self.run, ["Ctrl+Return", "Ctrl+Enter"],
                                    "Run the graph (Ctrl+Enter)")
        self.act_stop = self._action("Stop", self.stop, "Esc", "Stop the run (Esc)")
        self.act_packs = self._action("Node &Packs…", self.show_packs)
        self.act_batch = self._action("&Batch…", lambda: show_batch_dialog(self),
                                      tip="Run sweeps of this graph with nodegraph batch")
        self._build_menus()
        self._build_toolbar()
        self.statusBar().showMessage("Ready", 3000)

    def _build_menus(self) -> None:
        va = self.view.actions_by_name
        mb = self.menuBar()
        m = mb.addMenu("&File")
        for a in (self.act_new, self.act_new_window, self.act_open):
            m.addAction(a)
        self.recent_menu = m.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        m.addSeparator()
        for a in (self.act_save, self.act_save_as):
            m.addAction(a)
        m.addSeparator()
        m.addAction(self.act_close)
        m = mb.addMenu("&Edit")
        m.addAction(self.act_undo)
        m.addAction(self.act_redo)
        m.addSeparator()
        for name in ("cut", "copy", "paste", "duplicate", "delete", None, "select_all", None,
                     "search", "group", "bypass", "mute", "collapse"):
            m.addSeparator() if name is None else m.addAction(va[name])
        m = mb.addMenu("&View")
        for name in ("fit", "fit_all", "snap"):
            m.addAction(va[name])
        m.addSeparator()
        for d in (self.library_dock, self.params_dock, self.viewer_dock, self.log_dock):
            m.addAction(d.toggleViewAction())
        m = mb.addMenu("&Run")
        m.addAction(self.act_run)
        m.addAction(self.act_stop)
        m.addSeparator()
        m.addAction(self.act_batch)
        m = mb.addMenu("&Help")
        m.addAction(self.act_packs)

    def _build_toolbar(self) -> None:
        tb = QToolBar("Run", self)
        tb.setObjectName("runToolbar")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonTextOnly)
        self.addToolBar(Qt.TopToolBarArea, tb)
        tb.addAction(self.act_run)
        tb.widgetForAction(self.act_run).setObjectName("runButton")
        tb.addAction(self.act_stop)
        tb.widgetForAction(self.act_stop).setObjectName("stopButton")
        tb.addSeparator()
        tb.addAction(self.view.actions_by_name["fit_all"])
        tb.addAction(self.act_undo)
        tb.addAction(self.act_redo)
        spacer = QWidget(tb)
        spacer.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
        tb.addWidget(spacer)
        self.readout = QLabel(tb)
        self.readout.setObjectName("readout")
        tb.addWidget(self.readout)

    def _connect(self) -> None:
        self.scene.selectionChanged.connect(self._selection_changed)
        self.scene.graph_changed.connect(self._graph_changed)
        self.doc.undo.cleanChanged.connect(lambda _c: self._update_title())
        self.doc.path_changed.connect(self._update_title)
        self.doc.graph_replaced.connect(self._graph_replaced)
        self.runner.problems.connect(self._show_problems)
        self.runner.event.connect(self.run_display.on_event)
        self.runner.run_finished.connect(self._run_finished)

    # -- layout persistence ---------------------------------------------------------------------
    def _restore_layout(self) -> None:
        qs = self.settings.qsettings
        geo = qs.value("window/geometry")
        state = qs.value("window/state")
        if isinstance(geo, QByteArray):
            self.restoreGeometry(geo)
        if isinstance(state, QByteArray) and self.restoreState(state):
            self._layout_restored = True
        snap = qs.value("canvas/snap", False)
        self.view.actions_by_name["snap"].setChecked(snap in (True, "true"))
        self.view.snap = self.view.actions_by_name["snap"].isChecked()

    def save_layout(self) -> None:
        qs = self.settings.qsettings
        qs.setValue("window/geometry", self.saveGeometry())
        qs.setValue("window/state", self.saveState())
        qs.setValue("canvas/snap", self.view.snap)
        qs.sync()

    # -- title, readout ----------------------------------------------------------------------
    def _update_title(self) -> None:
        star = "*" if self.doc.dirty else ""
        self.setWindowTitle(f"{self.doc.display_name()}{star} — NodeGraph")
        self._shown_dirty = self.doc.dirty

    def _update_readout(self) -> None:
        dev = self.session.options.device
        if dev == "auto":
            dev = "cpu"
            torch = sys.modules.get("torch")
            try:
                if torch is not None and torch.cuda.is_available():
                    dev = "cuda"
            except Exception:
                pass
        mem = _rss_mb()
        mem_text = f"{mem:,.0f} MB" if mem is not None else "?"
        self.readout.setText(f"device {dev}  ·  memory {mem_text}")

    # -- files -----------------------------------------------------------------------------
    def maybe_save(self) -> bool:
        """Ask about unsaved changes; False if the user cancelled."""
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
        """Another window: same node packs and output cache, its own runs (Stop stops only
        that window's run)."""
        from . import app

        s = self.session
        return app.open_window(Session(s.registry, options=s.options, cache=s.executor.cache),
                               self.settings)

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
        self.log.append(f"opened {path}")
        for line in opened.report.lines() if opened.report is not None else []:
            self.log.append(line, "warning")
        QTimer.singleShot(0, self.view.fit_all)
        self.view.fit_all()
        return True

    def save(self) -> bool:
        if self.doc.path is None:
            return self.save_as()
        return self._write(self.doc.path)

    def save_as(self) -> bool:
        start = str(self.doc.path) if self.doc.path else os.path.join(os.getcwd(), "graph.json")
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

    def closeEvent(self, ev: QCloseEvent) -> None:
        if not self.maybe_save():
            ev.ignore()
            return
        if self.runner.running:
            self.runner.stop()
            self.runner.wait(10000)
        self.autosaver.stop()
        self.autosaver.discard()
        self.save_layout()
        self.scene.detach()
        ev.accept()

    # -- editing glue ------------------------------------------------------------------------
    def _add_from_library(self, type_id: str) -> None:
        c = self.view.mapToScene(self.view.viewport().rect().center())
        nid = self.doc.add_node(type_id, (c.x() - 100, c.y() - 40))
        item = self.scene.node_items.get(nid)
        if item is not None:
            self.scene.clearSelection()
            item.setSelected(True)

    def _selection_changed(self) -> None:
        try:
            ids = self.scene.selected_node_ids()
        except RuntimeError:
            return
        self.params.show_node(ids[0] if len(ids) == 1 else None)
        if len(ids) == 1:
            item = self.scene.node_items.get(ids[0])
            if item is not None and item.images:
                self.viewer.show_images(item.images, item.title_text())

    def _graph_changed(self, ch: GraphChange) -> None:
        self.autosaver.changed()
        self.params.on_graph_change(ch)
        if ch.kind in _CHANGES_RESULTS and not self._advancing:
            self.run_display.mark_stale(ch.node_id)
        if self._problems:
            self._revalidate.start()
        if self.doc.dirty != getattr(self, "_shown_dirty", None):
            self._update_title()

    def _graph_replaced(self) -> None:
        self._problems = []
        self.log.set_problems([])
        self.params.show_node(None)
        self.viewer.show_images([])
        self._update_title()

    def focus_node(self, node_id: str) -> None:
        item = self.scene.node_items.get(node_id)
        if item is None:
            return
        self.scene.clearSelection()
        item.setSelected(True)
        self.view.centerOn(item)

    def show_packs(self) -> None:
        PacksDialog(self.doc.registry, self).exec()

    # -- running ---------------------------------------------------------------------------
    def run(self) -> bool:
        """Validate and run the graph on the worker thread (False if it did not start)."""
        if self.runner.running:
            return False
        self.view.inline.commit()
        self.scene.clear_run_state()
        started = self.runner.start(self.doc.graph)
        self._update_run_actions()
        if started:
            self.log.append("run started")
        return started

    def stop(self) -> None:
        if self.runner.running:
            self.runner.stop()
            self.log.append("stopping…")

    def _update_run_actions(self) -> None:
        running = self.runner.running
        self.act_run.setEnabled(not running)
        self.act_stop.setEnabled(running)

    def _validate_quietly(self) -> None:
        self._show_problems(self.runner.validate(self.doc.graph))

    def _show_problems(self, problems: list[Problem]) -> None:
        self._problems = [p for p in problems if p.severity == "error"]
        self.scene.set_problems(problems)
        self.log.set_problems(problems)
        by_node: dict[str, dict[str | None, str]] = {}
        for p in problems:
            if p.node_id is not None and p.severity == "error":
                by_node.setdefault(p.node_id, {})[p.field] = p.message
        self.params.set_problems(by_node)
        errs = self._problems
        if errs:
            self.statusBar().showMessage(f"{len(errs)} problem(s): {errs[0]}", 8000)

    def _run_finished(self, out: RunOutcome) -> None:
        self._update_run_actions()
        if out.status == "invalid":
            self.log.append(f"nothing ran: {out.message}", "error")
            return
        self.run_display.run_ended(interrupted=out.status == "interrupted")
        level = {"finished": "info", "interrupted": "warning"}.get(out.status, "error")
        text = {"finished": f"run finished: {out.message}",
                "interrupted": f"run stopped ({len(out.executed)} ran, {len(out.cached)} cached)",
                }.get(out.status, out.message)
        self.log.append(text, level)
        self.statusBar().showMessage(text.splitlines()[0], 6000)
        changes = self.session.advance_controls(self.doc.graph.copy(), random.Random())
        self._advancing = True  # the new seeds are for the next run: keep this run's marks
        try:
            self.doc.apply_seed_controls(changes)
        finally:
            self._advancing = False


def _rss_mb() -> float | None:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except Exception:
        pass
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except Exception:
        return None
