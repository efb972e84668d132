"""The editor's "Batch…" dialog: build sweeps of the open graph, run ``nodegraph batch`` in a child
process and follow its JSON progress (docs/batch.md, "From the editor").

The dialog snapshots the document's graph (no need to save it first), starts
``python -m nodegraph batch SNAPSHOT --out DIR --sweep … --progress json``
(:class:`~gui.batch.process.BatchProcess`) and shows what its events say. Closing the dialog or
its window while a batch runs asks first and stops the batch — no process outlives the editor.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, QProcess, Qt, QTimer, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QApplication, QButtonGroup, QCheckBox, QDialog, QFileDialog,
                               QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QMessageBox,
                               QPushButton, QRadioButton, QSpinBox, QSplitter, QVBoxLayout, QWidget)

from nodegraph.api import Session
from nodegraph.errors import UsageError
from nodegraph.graph import ChangeKind, Graph, GraphChange

from .. import theme
from .command import (BatchRequest, build_argv, child_environment, default_out_dir, shown_command,
                      write_snapshot)
from .process import BatchProcess
from .state import BatchState
from .run_view import RunView
from .sweeps import SweepCount, SweepRow, count_items, default_rows
from .table import SweepTable

MANIFEST = "manifest.json"
STOP_TIMEOUT_MS = 20_000
"""Closing while a batch runs: how long running items get to finish before the batch is killed."""


class BatchDialog(QDialog):
    """Non-modal: build a sweep of ``doc``'s graph, run it with ``nodegraph batch``, follow it.

    Questions and file pickers go through attributes tests may replace: ``ask_directory(start)``,
    ``ask_file(start)``, ``confirm_close()`` (→ ``"stop"`` or ``"cancel"``), ``open_url(QUrl)``.
    After a run, ``state`` holds what its events said, ``exit_code`` and ``summary`` how it ended.
    """

    def __init__(self, doc: Any, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc = doc
        self.session = session
        self.setWindowTitle("Batch")
        self.setModal(False)
        self.setObjectName("batchDialog")
        self.ask_directory: Callable[[str], str | None] = self._ask_directory
        self.ask_file: Callable[[str], str | None] = self._ask_file
        self.confirm_close: Callable[[], str] = self._confirm_close
        self.open_url: Callable[[QUrl], Any] = QDesktopServices.openUrl
        self.batch: BatchProcess | None = None
        self.state = BatchState()
        self.count = SweepCount(1, [])
        self.summary: tuple[str, str] | None = None
        self.exit_code: int | None = None
        self._snapshot_dir: Path | None = None
        self._out_edited = False
        self._listening: Graph | None = None
        self._recount_timer = _single_shot(self, 200, self.recount)
        self._refresh_timer = _single_shot(self, 100, lambda: self.table.refresh_nodes())
        self._build()
        self._reset_stop_button()
        self._reset_rows()
        self.out_edit.setText(str(self._default_out()))
        self._out_edited = False
        self._check_folder()
        self.recount()
        self._update_buttons()
        doc.graph_replaced.connect(self._graph_replaced)
        self._listen(doc.graph)
        if parent is not None:
            parent.installEventFilter(self)
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self._kill_now)
        self.resize(780, 820)

    @property
    def process(self) -> QProcess | None:
        """The running batch's process (None when no batch runs)."""
        return self.batch.process if self.batch is not None else None

    # -- building ----------------------------------------------------------------------------
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        split = QSplitter(Qt.Vertical, self)
        split.setChildrenCollapsible(False)
        lay.addWidget(split, 1)
        setup = QWidget(split)
        s_lay = QVBoxLayout(setup)
        s_lay.setContentsMargins(0, 0, 0, 0)
        s_lay.addWidget(self._build_sweeps(setup), 1)
        s_lay.addWidget(self._build_output(setup))
        self.run_view = RunView(split)
        # what tests and users look at, by the names they had before the view was its own widget
        self.progress, self.status_label = self.run_view.progress, self.run_view.status_label
        self.worker_table = self.run_view.worker_table
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)
        lay.addLayout(self._build_buttons())

    def _build_sweeps(self, parent: QWidget) -> QGroupBox:
        sweeps = QGroupBox("Sweeps — the last one varies fastest", parent)
        sw_lay = QVBoxLayout(sweeps)
        self.table = SweepTable(self.doc, lambda: self.ask_file(self._base_dir()), sweeps)
        self.table.changed.connect(self.recount)
        self.table.typed.connect(lambda: self._recount_timer.start())
        sw_lay.addWidget(self.table, 1)
        row = QHBoxLayout()
        self.add_button = QPushButton("Add sweep", sweeps)
        self.add_button.clicked.connect(lambda: self.add_row())
        self.remove_button = QPushButton("Remove sweep", sweeps)
        self.remove_button.clicked.connect(self.remove_selected_row)
        self.remove_button.setFocusPolicy(Qt.NoFocus)  # the row being edited keeps the focus
        self.remove_button.setToolTip("Remove the sweep being edited (else the last one)")
        self.count_label = QLabel(sweeps)
        self.count_label.setObjectName("countLabel")
        self.count_label.setWordWrap(True)
        self.count_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        row.addWidget(self.add_button)
        row.addWidget(self.remove_button)
        row.addSpacing(12)
        row.addWidget(self.count_label, 1)
        sw_lay.addLayout(row)
        return sweeps

    def _build_output(self, parent: QWidget) -> QGroupBox:
        where = QGroupBox("Output and workers", parent)
        form = QFormLayout(where)
        out_row = QHBoxLayout()
        self.out_edit = QLineEdit(where)
        self.out_edit.textEdited.connect(self._out_text_edited)
        self.out_edit.textChanged.connect(lambda _t: self._check_folder())
        self.browse_button = QPushButton("Browse…", where)
        self.browse_button.clicked.connect(self._browse)
        out_row.addWidget(self.out_edit, 1)
        out_row.addWidget(self.browse_button)
        form.addRow("Folder", out_row)
        self.resume_check = QCheckBox("Resume the batch in this folder", where)
        self.resume_note = QLabel(where)
        self.resume_note.setWordWrap(True)
        self.resume_note.setAlignment(Qt.AlignLeft | Qt.AlignTop)  # right under the checkbox
        self.resume_note.setStyleSheet(f"color: {theme.TEXT_DIM.name()};")
        res = QVBoxLayout()
        res.setSpacing(0)
        res.addWidget(self.resume_check)
        res.addWidget(self.resume_note)
        res.setContentsMargins(0, 0, 0, 0)
        form.addRow("", res)
        form.addRow("Workers", self._build_workers(where))
        return where

    def _build_workers(self, parent: QWidget) -> QHBoxLayout:
        workers_row = QHBoxLayout()
        self.local_radio = QRadioButton("Local processes", parent)
        self.local_radio.setChecked(True)
        self.workers_spin = QSpinBox(parent)
        self.workers_spin.setRange(1, max(1, os.cpu_count() or 1))
        self.workers_spin.setValue(1)
        self.workers_spin.setToolTip("worker processes on this machine (each loads the models once)")
        self.ray_radio = QRadioButton("Ray cluster", parent)
        self.ray_edit = QLineEdit(parent)
        self.ray_edit.setPlaceholderText("host:6379 or auto")
        self.ray_edit.setEnabled(False)
        group = QButtonGroup(self)
        group.addButton(self.local_radio)
        group.addButton(self.ray_radio)
        self.local_radio.toggled.connect(self._backend_toggled)
        self.ray_edit.textChanged.connect(lambda _t: self._update_buttons())
        workers_row.addWidget(self.local_radio)
        workers_row.addWidget(self.workers_spin)
        workers_row.addSpacing(16)
        workers_row.addWidget(self.ray_radio)
        workers_row.addWidget(self.ray_edit, 1)
        return workers_row

    def _build_buttons(self) -> QHBoxLayout:
        buttons = QHBoxLayout()
        self.start_button = QPushButton("Start", self)
        self.start_button.setObjectName("startBatch")
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop", self)
        self.stop_button.setObjectName("stopBatch")
        self.stop_button.clicked.connect(self.stop)
        self.open_button = QPushButton("Open folder", self)
        self.open_button.clicked.connect(self.open_folder)
        self.close_button = QPushButton("Close", self)
        self.close_button.setAutoDefault(False)
        self.close_button.clicked.connect(self.reject)
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        buttons.addStretch(1)
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.close_button)
        return buttons

    # -- the sweep table ---------------------------------------------------------------------
    def add_row(self, row: SweepRow | None = None) -> int:
        """Append a row (see :meth:`SweepTable.add_row`); returns its index."""
        return self.table.add_row(row)

    def remove_selected_row(self) -> None:
        """Remove the row being edited (the one holding the focus, else the last one)."""
        self.table.remove_selected_row()

    def set_rows(self, rows: Sequence[SweepRow]) -> None:
        """Replace the table's rows."""
        self.table.set_rows(rows)

    def rows(self) -> list[SweepRow]:
        """The table as it stands."""
        return self.table.rows()

    def spec_edit(self, i: int) -> QLineEdit:
        """The values field of row ``i``."""
        return self.table.spec_edit(i)

    def _reset_rows(self) -> None:
        self.set_rows(default_rows(self.doc.graph, self.doc.registry))

    # -- following the document --------------------------------------------------------------
    def _listen(self, graph: Graph) -> None:
        if self._listening is graph:
            return
        self._unlisten()
        graph.add_listener(self._graph_changed)
        self._listening = graph

    def _unlisten(self) -> None:
        if self._listening is not None:
            try:
                self._listening.remove_listener(self._graph_changed)
            except ValueError:
                pass
            self._listening = None

    def _graph_changed(self, change: GraphChange) -> None:
        if change.kind in (ChangeKind.NODE_ADDED, ChangeKind.NODE_REMOVED, ChangeKind.NODE_CHANGED):
            self._refresh_timer.start()
        elif change.kind == ChangeKind.PARAM_CHANGED:
            self._recount_timer.start()  # e.g. a COMBO's choices may depend on other params

    def _graph_replaced(self) -> None:
        self._listen(self.doc.graph)
        if not self._out_edited and not self.running:
            self.out_edit.setText(str(self._default_out()))
            self._out_edited = False
        self._reset_rows()

    def showEvent(self, ev: Any) -> None:
        self._listen(self.doc.graph)
        self.table.refresh_nodes()
        if not self.running:
            self._check_folder()  # a batch may have appeared (or gone) meanwhile
        super().showEvent(ev)

    def hideEvent(self, ev: Any) -> None:
        self._unlisten()
        super().hideEvent(ev)

    # -- counting ----------------------------------------------------------------------------
    def _base_dir(self) -> str:
        return str(self.doc.path.parent) if getattr(self.doc, "path", None) else os.getcwd()

    def recount(self) -> SweepCount:
        """Count the items (the engine's sweep parser) and show it, or the first error."""
        self._recount_timer.stop()
        self.count = count_items(self.doc.graph, self.doc.registry, self.rows(),
                                 options=self.session.options, base_dir=self._base_dir())
        if self.count.ok:
            self.count_label.setText(self.count.describe())
            self.count_label.setStyleSheet("")
        else:
            self.count_label.setText(str(self.count.error))
            self.count_label.setStyleSheet(f"color: {theme.PROBLEM.name()};")
        self.table.show_errors(self.count.row_errors)
        if not self.running and not self.state.started:
            self.run_view.show_count(self.count.total if self.count.ok else 0)
        self._update_buttons()
        return self.count

    # -- output folder and workers -----------------------------------------------------------
    def _default_out(self) -> Path:
        return default_out_dir(self.session.options.output_dir, getattr(self.doc, "path", None))

    def out_dir(self) -> Path | None:
        text = self.out_edit.text().strip()
        return Path(text).expanduser().absolute() if text else None

    def _out_text_edited(self, _text: str) -> None:
        self._out_edited = True

    def _browse(self) -> None:
        out = self.out_dir()
        start = str(out if out is not None and out.exists() else
                    (out.parent if out is not None else Path.cwd()))
        path = self.ask_directory(start)
        if path:
            self.out_edit.setText(path)
            self._out_edited = True

    def _check_folder(self) -> None:
        """Auto-check Resume (and say why) when the folder already holds a batch."""
        out = self.out_dir()
        has_batch = out is not None and (out / MANIFEST).is_file()
        if has_batch:
            self.resume_check.setChecked(True)
            self.resume_note.setText(
                "This folder already holds a batch (manifest.json): Resume continues it and skips "
                "the items already done. It is refused if the graph or the sweeps changed since — "
                "choose another folder for a different batch.")
        else:
            self.resume_check.setChecked(False)
            self.resume_note.setText("A new batch is started in this folder.")
        self.resume_check.setEnabled(has_batch and not self.running)
        self._update_buttons()

    def _backend_toggled(self, local: bool) -> None:
        self.workers_spin.setEnabled(local and not self.running)
        self.ray_edit.setEnabled(not local and not self.running)
        self._update_buttons()

    # -- running -----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.batch is not None and self.batch.running

    def request(self, graph_file: Path) -> BatchRequest:
        """The request the dialog's fields make, for a graph snapshot file."""
        out = self.out_dir()
        if out is None:
            raise UsageError("choose an output folder")
        opts = self.session.options
        ray = self.ray_edit.text().strip() if self.ray_radio.isChecked() else None
        return BatchRequest(graph_file=graph_file, out_dir=out, sweeps=self.rows(),
                            workers=self.workers_spin.value(), ray=ray or None,
                            resume=self.resume_check.isChecked(),
                            models_dirs=tuple(opts.models_dirs), device=opts.device,
                            dtype=opts.dtype, base_dir=Path(self._base_dir()))

    def start(self) -> bool:
        """Snapshot the graph and start ``nodegraph batch``; False (and why, shown) if it cannot."""
        if self.running:
            return False
        if not self.recount().ok:
            self._show_status("error", str(self.count.error))
            return False
        self._cleanup_snapshot()
        stem = self.doc.path.stem if getattr(self.doc, "path", None) else "untitled"
        try:
            self._snapshot_dir = Path(tempfile.mkdtemp(prefix="nodegraph-batch-graph-"))
            graph_file = write_snapshot(self.doc.graph, self._snapshot_dir, stem)
            argv = build_argv(self.request(graph_file))
        except (OSError, UsageError) as exc:
            self._cleanup_snapshot()
            self._show_status("error", f"Cannot start the batch: {exc}")
            return False
        name = self.doc.display_name() if hasattr(self.doc, "display_name") else stem
        batch = BatchProcess(argv, child_environment(dict(os.environ)), (str(graph_file), name), self)
        batch.log.connect(self.run_view.log)
        batch.changed.connect(lambda: self.run_view.show_state(self.state))
        batch.ended.connect(self._end)
        self.state, self.summary, self.exit_code = batch.state, None, None
        self.run_view.starting()
        self._reset_stop_button()
        self.run_view.log("$ " + shown_command(argv), "dim")
        self.batch = batch
        batch.start()
        self._update_buttons()
        return True

    def stop(self) -> None:
        """First press: SIGINT (running items finish, nothing new starts, the folder stays
        resumable). Second press: kill the batch (its local workers die with it)."""
        if not self.running:
            return
        first = not self.batch.stop_requested
        self.batch.stop()
        if first:
            self.stop_button.setText("Kill")
            self.stop_button.setToolTip("Kill the batch now (the folder stays resumable)")

    def _reset_stop_button(self) -> None:
        self.stop_button.setText("Stop")
        self.stop_button.setToolTip("Running items finish, no new ones start; the folder stays "
                                    "resumable. Press again to kill the batch.")

    def _kill_now(self) -> None:
        """The application quits: no batch outlives it."""
        if self.batch is not None:
            self.batch.kill_now()

    def shutdown(self, timeout_ms: int = STOP_TIMEOUT_MS) -> None:
        """Stop a running batch and wait for it: SIGINT, then kill after ``timeout_ms``."""
        if not self.running:
            return
        self.batch.shutdown(timeout_ms)
        QApplication.processEvents()

    def _end(self, summary: tuple[str, str]) -> None:
        batch, self.batch = self.batch, None
        self.summary = summary
        self.exit_code = batch.exit_code if batch is not None else None
        self._reset_stop_button()
        self._cleanup_snapshot()
        self.run_view.show_state(self.state)
        self.run_view.show_status(*summary)
        self.run_view.log(summary[1].splitlines()[0], "warn" if summary[0] != "ok" else "")
        self._check_folder()
        self._update_buttons()
        if batch is not None:
            batch.deleteLater()

    def _cleanup_snapshot(self) -> None:
        if self._snapshot_dir is not None:
            shutil.rmtree(self._snapshot_dir, ignore_errors=True)
            self._snapshot_dir = None

    # -- showing -----------------------------------------------------------------------------
    def _show_status(self, level: str, text: str) -> None:
        self.run_view.show_status(level, text)

    def log_lines(self) -> list[str]:
        """The log's texts (for tests and copying)."""
        return self.run_view.lines()

    def _update_buttons(self) -> None:
        running = self.running
        ready = (self.count.ok and self.out_dir() is not None
                 and (self.local_radio.isChecked() or bool(self.ray_edit.text().strip())))
        self.start_button.setEnabled(ready and not running)
        self.stop_button.setEnabled(running)
        out = self.out_dir()
        self.open_button.setEnabled(out is not None and out.is_dir())
        for w in (self.table, self.add_button, self.remove_button, self.out_edit,
                  self.browse_button, self.local_radio, self.ray_radio):
            w.setEnabled(not running)
        self.workers_spin.setEnabled(not running and self.local_radio.isChecked())
        self.ray_edit.setEnabled(not running and self.ray_radio.isChecked())
        self.resume_check.setEnabled(not running and out is not None and (out / MANIFEST).is_file())

    def open_folder(self) -> None:
        out = self.out_dir()
        if out is not None and out.is_dir():
            self.open_url(QUrl.fromLocalFile(str(out)))

    # -- closing -----------------------------------------------------------------------------
    def _ask_directory(self, start: str) -> str | None:
        return QFileDialog.getExistingDirectory(self, "Batch folder", start) or None

    def _ask_file(self, start: str) -> str | None:
        path, _ = QFileDialog.getOpenFileName(self, "Values, one a line", start,
                                              "Text files (*.txt);;All files (*)")
        return path or None

    def _confirm_close(self) -> str:
        box = QMessageBox(QMessageBox.Question, "A batch is running",
                          "Stop the batch? Running items finish and are kept; Start it again with "
                          "Resume to do the rest.", QMessageBox.NoButton, self)
        stop = box.addButton("Stop batch", QMessageBox.AcceptRole)
        box.addButton("Keep running", QMessageBox.RejectRole)
        box.exec()
        return "stop" if box.clickedButton() is stop else "cancel"

    def may_close(self) -> bool:
        """True when nothing runs, or the user agreed to stop the batch (it is then stopped)."""
        if not self.running:
            return True
        if self.confirm_close() != "stop":
            return False
        self.shutdown()
        return True

    def reject(self) -> None:
        """Close, Esc and the title bar's close button (QDialog.closeEvent calls reject) all
        come here: a running batch is stopped first, if the user agrees."""
        if self.may_close():
            super().reject()

    def eventFilter(self, obj: QObject, ev: QEvent) -> bool:
        """The parent window closes: stop a running batch first (or keep both open)."""
        if obj is self.parent() and ev.type() == QEvent.Close and self.running:
            if not self.may_close():
                ev.ignore()
                return True
        return super().eventFilter(obj, ev)


def _single_shot(parent: QObject, ms: int, slot: Callable[[], Any]) -> QTimer:
    timer = QTimer(parent)
    timer.setSingleShot(True)
    timer.setInterval(ms)
    timer.timeout.connect(slot)
    return timer


def show_batch_dialog(window: Any) -> BatchDialog:
    """Show the window's Batch dialog (created on first use; one per window)."""
    dialog = window.findChild(BatchDialog)
    if dialog is None:
        dialog = BatchDialog(window.doc, window.session, window)
    dialog.show()
    dialog.raise_()
    dialog.activateWindow()
    return dialog
