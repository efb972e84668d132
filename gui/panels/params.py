"""The params panel: the selected node's title, mode and params with real widgets (one node at a
time, so widgets are cheap here), its description and its problems. Edits go through the
Document (one undo step each); the panel follows graph changes made anywhere else."""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout,
                               QLabel, QLineEdit, QPlainTextEdit, QScrollArea, QSpinBox,
                               QVBoxLayout, QWidget)

from nodegraph.graph import ChangeKind, GraphChange, Node
from nodegraph.registry import (BOOLEAN, COMBO, CONTROL_MODES, FLOAT, INT, STRING, NodeSpec,
                                ParamSpec)

from ..document import Document
from ..items.node import float_decimals

_INT32 = 2**31 - 1
_NOTHING = object()
_SHOWN_FIELDS = frozenset({ChangeKind.PARAM_CHANGED, ChangeKind.MODE_CHANGED, ChangeKind.NODE_CHANGED,
                           ChangeKind.CONTROL_CHANGED, ChangeKind.EXTRA_CHANGED})
"""Changes of a node that the panel's widgets show (they are synced, not rebuilt)."""


class ParamsPanel(QScrollArea):
    def __init__(self, doc: Document, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc = doc
        self.node_id: str | None = None
        self.problems: dict[str, dict[str | None, str]] = {}
        self.setWidgetResizable(True)
        self.setFrameShape(QScrollArea.NoFrame)
        self._widgets: dict[str, QWidget] = {}
        self._typed: set[str] = set()  # widgets holding text the user changed and did not commit
        self._updating = False
        self._detached = False
        self.show_node(None)

    # -- building --------------------------------------------------------------------------
    def show_node(self, node_id: str | None) -> None:
        """Show the params of ``node_id`` (None: a hint); what was typed for the node shown so far
        is committed first."""
        self.flush()
        self.node_id = node_id if node_id in self.doc.graph.nodes else None
        self._widgets = {}
        self._typed = set()
        body = QWidget()
        lay = QVBoxLayout(body)
        lay.setContentsMargins(10, 10, 10, 10)
        lay.setSpacing(8)
        self.setWidget(body)
        if self.node_id is None:
            lay.addWidget(_note("Select a node to see its params.\n\nTab or double-click the canvas "
                                "to add a node; drag from an output to connect.", "#7d8287"))
            lay.addStretch(1)
            return
        node = self.doc.graph.nodes[self.node_id]
        spec = self.doc.registry.get(node.type)
        self._add_header(lay, node, spec)
        if spec is None:
            lay.addWidget(_note(self.doc.registry.unknown_type_message(node.type), "#ef5350"))
            lay.addStretch(1)
            return
        lay.addLayout(self._param_form(node, spec))
        self.problem_label = _note("", "#ef5350")
        lay.addWidget(self.problem_label)
        self._show_problems()
        if spec.description:
            lay.addWidget(_note(spec.description, "#9aa0a6"))
        lay.addStretch(1)

    def _add_header(self, lay: QVBoxLayout, node: Node, spec: NodeSpec | None) -> None:
        """Title (editable), type and id, mode."""
        title = QLineEdit(node.title or "")
        title.setPlaceholderText(spec.display_name if spec else node.type)
        title.editingFinished.connect(lambda: self._commit_title(title.text()))
        title.textEdited.connect(lambda _t: self._typed.add("__title"))
        self._widgets["__title"] = title
        lay.addWidget(title)
        info = QLabel(f"<span style='color:#9aa0a6'>{node.type}</span> · id {node.id}")
        lay.addWidget(info)
        mode = QComboBox()
        mode.addItems(["normal", "bypassed", "muted"])
        mode.setCurrentText(node.mode)
        mode.activated.connect(lambda _i: self._commit_mode(mode.currentText()))
        self._widgets["__mode"] = mode
        row = QHBoxLayout()
        row.addWidget(QLabel("mode"))
        row.addWidget(mode, 1)
        lay.addLayout(row)

    def _param_form(self, node: Node, spec: NodeSpec) -> QFormLayout:
        """One row per param (disabled when a wire feeds it), and "after run" under a seed."""
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignRight)
        form.setSpacing(6)
        linked = self.doc.graph.inputs_of(node.id)
        for p in spec.params:
            w = self._editor(p, node.params.get(p.name, p.default))
            if p.name in linked:
                w.setEnabled(False)
                w.setToolTip("fed by a wire")
            self._widgets[p.name] = w
            label = QLabel(p.name)
            if p.description:
                label.setToolTip(p.description)
                w.setToolTip(p.description)
            form.addRow(label, w)
            if p.control_after_run is not None:
                ctl = QComboBox()
                ctl.addItems(list(CONTROL_MODES))
                ctl.setCurrentText(node.control_after_run.get(p.name, p.control_after_run))
                ctl.activated.connect(lambda _i, n=p.name, c=ctl:
                                      self.doc.set_control(self.node_id, n, c.currentText()))
                self._widgets["__control " + p.name] = ctl
                form.addRow(QLabel("after run"), ctl)
        return form

    def _editor(self, p: ParamSpec, value: Any) -> QWidget:
        name = p.name
        if p.kind == INT and (p.min is None or p.min >= -_INT32) and (p.max is not None
                                                                       and p.max <= _INT32):
            w = QSpinBox()
            w.setRange(int(p.min if p.min is not None else -_INT32), int(p.max))
            w.setSingleStep(int(p.step or 1))
            w.setValue(int(value))
            w.editingFinished.connect(lambda: self._commit(name, w.value()))
            w.valueChanged.connect(lambda _v: self._mark_typed(name))
            return w
        if p.kind == FLOAT:
            w = QDoubleSpinBox()
            w.setDecimals(float_decimals(p))
            w.setRange(p.min if p.min is not None else -1e9, p.max if p.max is not None else 1e9)
            w.setSingleStep(p.step or 0.1)
            w.setValue(float(value))
            w.editingFinished.connect(lambda: self._commit(name, round(w.value(), w.decimals())))
            w.valueChanged.connect(lambda _v: self._mark_typed(name))
            return w
        if p.kind == BOOLEAN:
            w = QCheckBox()
            w.setChecked(bool(value))
            w.toggled.connect(lambda on: self._commit(name, bool(on)))
            return w
        if p.kind == COMBO:
            w = QComboBox()
            try:
                choices = list(p.resolve_choices())
            except Exception:
                choices = []
            for c in choices:
                w.addItem(str(c), c)
            i = choices.index(value) if value in choices else -1
            if i < 0:
                w.addItem(f"{value} (missing)", value)
                i = w.count() - 1
            w.setCurrentIndex(i)
            w.activated.connect(lambda i: self._commit(name, w.itemData(i)))
            return w
        if p.kind == STRING and p.multiline:
            w = QPlainTextEdit()
            w.setPlainText(str(value))
            w.setFixedHeight(96)
            w.installEventFilter(self)
            w.textChanged.connect(lambda: self._mark_typed(name))
            return w
        # STRING, and INT beyond 32 bits (seeds): a line edit
        w = QLineEdit(str(value))
        w.editingFinished.connect(lambda: self._commit_text(p, w.text()))
        w.textEdited.connect(lambda _t: self._typed.add(name))
        return w

    # -- committing ------------------------------------------------------------------------
    def _mark_typed(self, name: str) -> None:
        if not self._updating:
            self._typed.add(name)

    def flush(self) -> None:
        """Commit every value typed and not yet committed (one undo step; the widgets stay)."""
        typed, self._typed = self._typed, set()
        if self._detached or not typed or self.node_id not in self.doc.graph.nodes:
            return
        node = self.doc.graph.nodes[self.node_id]
        spec = self.doc.registry.get(node.type)
        changes = []
        for name in sorted(typed):
            value = self._typed_value(name, self._widgets.get(name), spec)
            if value is _NOTHING:
                continue
            if name == "__title":
                if (value.strip() or None) != node.title:
                    changes.append((name, value))
            elif spec is not None and spec.param(name) is not None:
                p = spec.param(name)
                if node.params.get(name, p.default) != value or name not in node.params:
                    changes.append((name, value))
        if len(changes) > 1:
            self.doc.undo.beginMacro("Edit params")
        for name, value in changes:
            self._commit_title(value) if name == "__title" else self._commit(name, value)
        if len(changes) > 1:
            self.doc.undo.endMacro()

    def _typed_value(self, name: str, w: QWidget | None, spec: NodeSpec | None) -> Any:
        """What widget ``name`` holds, as the value it would commit (_NOTHING: nothing valid)."""
        if name == "__title" and isinstance(w, QLineEdit):
            return w.text()
        if isinstance(w, QPlainTextEdit):
            return w.toPlainText()
        if isinstance(w, QDoubleSpinBox):
            w.interpretText()
            return round(w.value(), w.decimals())
        if isinstance(w, QSpinBox):
            w.interpretText()
            return w.value()
        p = spec.param(name) if spec is not None else None
        if isinstance(w, QLineEdit) and p is not None:
            if p.kind != INT:
                return w.text()
            try:
                return int(w.text().strip())
            except ValueError:
                return _NOTHING
        return _NOTHING

    def detach(self) -> None:
        """The window is closing: commit nothing any more (the document goes first)."""
        self._detached = True
        for w in self._widgets.values():
            w.removeEventFilter(self)

    def _commit(self, name: str, value: Any) -> None:
        if (self._updating or self._detached or self.node_id is None
                or self.node_id not in self.doc.graph.nodes):
            return
        self._typed.discard(name)
        self.doc.set_param(self.node_id, name, value)

    def _commit_text(self, p: ParamSpec, text: str) -> None:
        if p.kind == INT:
            try:
                value: Any = int(text.strip())
            except ValueError:
                self._sync()
                return
        else:
            value = text
        self._commit(p.name, value)

    def _commit_title(self, text: str) -> None:
        self._typed.discard("__title")
        if not self._updating and not self._detached and self.node_id in self.doc.graph.nodes:
            self.doc.set_title(self.node_id, text.strip() or None)

    def _commit_mode(self, mode: str) -> None:
        if self._updating or self.node_id not in self.doc.graph.nodes:
            return
        node = self.doc.graph.nodes[self.node_id]
        if node.mode != mode:
            self.doc.toggle_mode([self.node_id], mode if mode != "normal" else node.mode)

    def eventFilter(self, obj: QObject, ev: QEvent) -> bool:
        if isinstance(obj, QPlainTextEdit) and ev.type() == QEvent.FocusOut:
            for name, w in self._widgets.items():
                if w is obj:
                    self._commit(name, obj.toPlainText())
        return False

    # -- following -------------------------------------------------------------------------
    def on_graph_change(self, ch: GraphChange) -> None:
        if self.node_id is None or ch.node_id != self.node_id:
            return
        if ch.kind == ChangeKind.NODE_REMOVED:
            self.show_node(None)
        elif ch.kind in (ChangeKind.LINK_ADDED, ChangeKind.LINK_REMOVED):
            self.show_node(self.node_id)
        elif ch.kind in _SHOWN_FIELDS:
            self._sync()

    def _sync(self) -> None:
        """Put the node's current values into the widgets (without committing)."""
        if self.node_id not in self.doc.graph.nodes:
            return
        node = self.doc.graph.nodes[self.node_id]
        spec = self.doc.registry.get(node.type)
        self._updating = True
        try:
            for name, w in self._widgets.items():
                if name == "__title":
                    w.setText(node.title or "")
                elif name == "__mode":
                    w.setCurrentText(node.mode)
                elif name.startswith("__control "):
                    pname = name[len("__control "):]
                    p = spec.param(pname) if spec else None
                    w.setCurrentText(node.control_after_run.get(
                        pname, p.control_after_run if p else "fixed"))
                elif spec is not None and spec.param(name) is not None:
                    p = spec.param(name)
                    v = node.params.get(name, p.default)
                    if isinstance(w, QSpinBox):
                        w.setValue(int(v))
                    elif isinstance(w, QDoubleSpinBox):
                        w.setValue(float(v))
                    elif isinstance(w, QCheckBox):
                        w.setChecked(bool(v))
                    elif isinstance(w, QComboBox):
                        i = w.findData(v)
                        if i >= 0:
                            w.setCurrentIndex(i)
                    elif isinstance(w, QPlainTextEdit):
                        if w.toPlainText() != str(v):
                            w.setPlainText(str(v))
                    elif isinstance(w, QLineEdit):
                        w.setText(str(v))
        finally:
            self._updating = False

    def set_problems(self, by_node: dict[str, dict[str | None, str]]) -> None:
        self.problems = by_node
        self._show_problems()

    def _show_problems(self) -> None:
        label = getattr(self, "problem_label", None)
        if label is None or self.node_id is None:
            return
        try:
            probs = self.problems.get(self.node_id, {})
            label.setText("\n".join(f"{k + ': ' if k else ''}{v}" for k, v in probs.items()))
            label.setVisible(bool(probs))
        except RuntimeError:
            pass  # the label was deleted with a previous page


def _note(text: str, color: str) -> QLabel:
    """A wrapped line of text in ``color``."""
    label = QLabel(text)
    label.setWordWrap(True)
    label.setStyleSheet(f"color: {color};")
    return label
