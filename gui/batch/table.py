"""The Batch dialog's sweep table: one row per swept param — a node combo, a param combo and the
values field (``0:8``, ``a,b``, ``@file``). The rows as data are :class:`~gui.batch.sweeps.SweepRow`."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QApplication, QComboBox, QHBoxLayout, QHeaderView,
                               QLineEdit, QTableWidget, QToolButton, QWidget)

from .. import theme
from .sweeps import SEED_PARAMS, SweepRow, node_params, sweepable_nodes

SPEC_HINT = "0:100 · 0:1000:7 · a,b,c · @file"


class SpecEdit(QWidget):
    """The SPEC cell: a line edit and a "…" button that picks an ``@file``."""

    def __init__(self, spec: str, pick_file: Callable[[], str | None], parent: QWidget | None = None):
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        self.edit = QLineEdit(spec, self)
        self.edit.setCursorPosition(0)
        self.edit.setPlaceholderText(SPEC_HINT)
        self.edit.setToolTip("0:100 (100 values) · 0:1000:7 (a step) · a,b,c (a list) · "
                             "@file (one value a line)")
        self.button = QToolButton(self)
        self.button.setText("…")
        self.button.setToolTip("Take the values from a text file, one a line (@file)")
        self.button.clicked.connect(lambda: self._pick(pick_file))
        lay.addWidget(self.edit, 1)
        lay.addWidget(self.button)

    def _pick(self, pick_file: Callable[[], str | None]) -> None:
        path = pick_file()
        if path:
            self.edit.setText("@" + path)


class SweepTable(QTableWidget):
    """The sweeps of ``doc``'s graph. ``changed`` fires when rows come or go or a row's node or
    param changes (count again now); ``typed`` while values are typed (count after a pause).
    ``pick_file()`` answers the "…" button of a values field."""

    changed = Signal()
    typed = Signal()

    def __init__(self, doc: Any, pick_file: Callable[[], str | None], parent: QWidget | None = None):
        super().__init__(0, 3, parent)
        self.doc = doc
        self.pick_file = pick_file
        self.setObjectName("sweepTable")
        self.setHorizontalHeaderLabels(["Node", "Param", "Values"])
        self.verticalHeader().setVisible(False)
        self.setSelectionMode(QAbstractItemView.NoSelection)
        self.setFocusPolicy(Qt.NoFocus)
        header = self.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.Interactive)
        header.setSectionResizeMode(1, QHeaderView.Interactive)
        header.setSectionResizeMode(2, QHeaderView.Stretch)
        self.setColumnWidth(0, 210)
        self.setColumnWidth(1, 140)
        self.verticalHeader().setDefaultSectionSize(32)
        self.setMinimumHeight(110)

    # -- rows ------------------------------------------------------------------------------------
    def add_row(self, row: SweepRow | None = None) -> int:
        """Append a row (a fresh one: the first node without a sweep, its first param, empty
        values). Returns its index."""
        graph, reg = self.doc.graph, self.doc.registry
        nodes = sweepable_nodes(graph, reg)
        if row is None:
            used = {r.node for r in self.rows()}
            free = [n for n, _ in nodes if n not in used] or [n for n, _ in nodes]
            node = free[0] if free else ""
            params = node_params(graph, reg, node)
            row = SweepRow(node, params[0] if params else "", "")
        i = self.rowCount()
        self.insertRow(i)
        node_combo = QComboBox(self)
        node_combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        param_combo = QComboBox(self)
        spec = SpecEdit(row.spec, self.pick_file, self)
        self.setCellWidget(i, 0, node_combo)
        self.setCellWidget(i, 1, param_combo)
        self.setCellWidget(i, 2, spec)
        self._fill_nodes(node_combo, nodes, row.node)
        self._fill_params(node_combo, param_combo, row.param)
        node_combo.currentIndexChanged.connect(
            lambda _i, n=node_combo, p=param_combo: self._node_chosen(n, p))
        param_combo.currentIndexChanged.connect(lambda _i: self.changed.emit())
        spec.edit.textChanged.connect(lambda _t: self.typed.emit())
        self.changed.emit()
        return i

    def remove_selected_row(self) -> None:
        """Remove the row being edited (the one holding the focus, else the last one)."""
        if self.rowCount() == 0:
            return
        i = self._focused_row()
        self.removeRow(i if i is not None else self.rowCount() - 1)
        self.changed.emit()

    def set_rows(self, rows: Sequence[SweepRow]) -> None:
        """Replace the rows."""
        self.setRowCount(0)
        for row in rows:
            self.add_row(row)
        self.changed.emit()

    def rows(self) -> list[SweepRow]:
        """The table as it stands."""
        found = []
        for i in range(self.rowCount()):
            node, param, spec = self._row_widgets(i)
            if node is None:
                continue
            found.append(SweepRow(str(node.currentData() or ""), str(param.currentData() or ""),
                                  spec.edit.text().strip()))
        return found

    def spec_edit(self, i: int) -> QLineEdit:
        """The values field of row ``i``."""
        return self._row_widgets(i)[2].edit

    def show_errors(self, row_errors: dict[int, str]) -> None:
        """Outline the values field of each row that has an error; its tooltip says which."""
        for i in range(self.rowCount()):
            _n, _p, spec = self._row_widgets(i)
            bad = i in row_errors
            spec.edit.setStyleSheet(f"border: 1px solid {theme.PROBLEM.name()};" if bad else "")
            spec.edit.setToolTip(row_errors.get(i, SPEC_HINT))

    def refresh_nodes(self) -> None:
        """The graph's nodes changed: refill the node combos (selections kept)."""
        nodes = sweepable_nodes(self.doc.graph, self.doc.registry)
        for i in range(self.rowCount()):
            node, param, _spec = self._row_widgets(i)
            current_node = str(node.currentData() or "")
            current_param = str(param.currentData() or "")
            self._fill_nodes(node, nodes, current_node)
            self._fill_params(node, param, current_param)
        self.changed.emit()

    # -- cells -----------------------------------------------------------------------------------
    def _focused_row(self) -> int | None:
        widget = QApplication.focusWidget()
        while widget is not None:
            for i in range(self.rowCount()):
                if widget in self._row_widgets(i):
                    return i
            widget = widget.parentWidget()
        return None

    def _row_widgets(self, i: int) -> tuple[Any, Any, Any]:
        return self.cellWidget(i, 0), self.cellWidget(i, 1), self.cellWidget(i, 2)

    def _fill_nodes(self, combo: QComboBox, nodes: list[tuple[str, str]], current: str) -> None:
        combo.blockSignals(True)
        combo.clear()
        for node_id, label in nodes:
            combo.addItem(label, node_id)
        if current and combo.findData(current) < 0:  # a node that is gone: keep it, marked
            combo.addItem(f"{current} · (not in the graph)", current)
        combo.setCurrentIndex(max(0, combo.findData(current)) if combo.count() else -1)
        combo.blockSignals(False)

    def _fill_params(self, node_combo: QComboBox, combo: QComboBox, current: str) -> None:
        graph, reg = self.doc.graph, self.doc.registry
        node_id = str(node_combo.currentData() or "")
        combo.blockSignals(True)
        combo.clear()
        spec = reg.get(graph.nodes[node_id].type) if node_id in graph.nodes else None
        for p in (spec.params if spec is not None else ()):
            combo.addItem(p.name, p.name)
            combo.setItemData(combo.count() - 1, f"{p.kind}" + (f" — {p.description}"
                                                                 if p.description else ""),
                              Qt.ToolTipRole)
        index = combo.findData(current) if current else -1
        if index < 0:
            seedish = [combo.findData(n) for n in SEED_PARAMS if combo.findData(n) >= 0]
            index = seedish[0] if seedish and not current else (0 if combo.count() else -1)
        combo.setCurrentIndex(index)
        combo.blockSignals(False)

    def _node_chosen(self, node_combo: QComboBox, param_combo: QComboBox) -> None:
        self._fill_params(node_combo, param_combo, str(param_combo.currentData() or ""))
        self.changed.emit()
