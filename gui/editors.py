"""Param editing on the canvas: value arithmetic for the painted rows, and the one real widget
that exists while a value (or a title) is being typed.

Rows are painted by the node item. Clicking an arrow steps a number or a choice, dragging a
number changes it live (one undo step on release), clicking a toggle flips it; only typing opens
a widget — a QLineEdit, or a QPlainTextEdit for multi-line prompts — placed over the row as a
child of the viewport, and removed when the edit is committed (Enter, Ctrl+Enter for prompts,
focus leaving) or cancelled (Esc).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QEvent, QObject, QRect, Qt
from PySide6.QtGui import QFont, QKeyEvent
from PySide6.QtWidgets import QLineEdit, QPlainTextEdit, QWidget

from nodegraph.registry import BOOLEAN, COMBO, FLOAT, INT, ParamSpec

from .items.node import float_decimals

DRAG_PIXELS_PER_STEP = 6.0


def clamp(param: ParamSpec, value: float) -> float:
    if param.min is not None:
        value = max(param.min, value)
    if param.max is not None:
        value = min(param.max, value)
    return value


def step_size(param: ParamSpec) -> float:
    if param.step:
        return float(param.step)
    return 1.0 if param.kind == INT else 0.1 if param.kind == FLOAT else 1.0


def as_kind(param: ParamSpec, value: float) -> Any:
    """A number in the param's kind (INT rounds, FLOAT rounds to the shown decimals)."""
    if param.kind == INT:
        return int(round(value))
    return round(float(value), float_decimals(param) + 2)


def stepped(param: ParamSpec, value: Any, direction: int, choices: tuple = ()) -> Any:
    """The value one step up (+1) or down (-1): numbers by their step, choices by position
    (wrapping), booleans flip."""
    if param.kind in (INT, FLOAT):
        base = value if isinstance(value, (int, float)) else (param.default or 0)
        return as_kind(param, clamp(param, base + direction * step_size(param)))
    if param.kind == COMBO:
        if not choices:
            return value
        try:
            i = list(choices).index(value)
        except ValueError:
            i = -1 if direction > 0 else 0
        return choices[(i + direction) % len(choices)]
    if param.kind == BOOLEAN:
        return not bool(value)
    return value


def dragged(param: ParamSpec, start: Any, dx: float) -> Any:
    """The value after dragging ``dx`` scene pixels from ``start`` (one step per few pixels)."""
    base = start if isinstance(start, (int, float)) else (param.default or 0)
    steps = math.trunc(dx / DRAG_PIXELS_PER_STEP)
    return as_kind(param, clamp(param, base + steps * step_size(param)))


def param_choices(param: ParamSpec, doc: Any) -> tuple:
    """A COMBO's choices as the editor offers them (none if they cannot be listed now)."""
    try:
        return tuple(param.resolve_choices(getattr(doc, "options", None)))
    except Exception:
        return ()


def parse_text(param: ParamSpec, text: str) -> Any:
    """A typed value for ``text`` (ValueError if it is not one); numbers are clamped."""
    if param.kind == INT:
        return int(clamp(param, int(round(float(text.strip())))))
    if param.kind == FLOAT:
        v = float(text.strip())
        if not math.isfinite(v):
            raise ValueError(f"{text!r} is not a finite number")
        return as_kind(param, clamp(param, v))
    return text


class InlineEditor(QObject):
    """The one text editor on the canvas. ``begin`` shows it over a rectangle of the viewport;
    ``on_commit(text)`` runs when the user confirms."""

    def __init__(self, viewport: QWidget):
        super().__init__(viewport)
        self.viewport = viewport
        self.widget: QLineEdit | QPlainTextEdit | None = None
        self.on_commit: Callable[[str], None] | None = None
        self.on_end: Callable[[], None] | None = None
        self.key: Any = None

    @property
    def active(self) -> bool:
        return self.widget is not None

    def begin(self, rect: QRect, text: str, *, multiline: bool, pixel_size: int,
              on_commit: Callable[[str], None], on_end: Callable[[], None] | None = None,
              key: Any = None) -> QWidget:
        self.cancel()
        w: QLineEdit | QPlainTextEdit
        if multiline:
            w = QPlainTextEdit(self.viewport)
            w.setPlainText(text)
            w.selectAll()
        else:
            w = QLineEdit(self.viewport)
            w.setText(text)
            w.selectAll()
        f = QFont(w.font())
        f.setPixelSize(max(9, pixel_size))
        w.setFont(f)
        w.setGeometry(rect)
        w.installEventFilter(self)
        self.widget = w
        self.on_commit = on_commit
        self.on_end = on_end
        self.key = key
        w.show()
        w.setFocus(Qt.OtherFocusReason)
        return w

    def text(self) -> str:
        w = self.widget
        if isinstance(w, QPlainTextEdit):
            return w.toPlainText()
        return w.text() if w is not None else ""

    def flush(self) -> None:
        """Commit what is typed so far and keep editing (Run, Save, autosave, … read the graph
        while the editor stays open)."""
        if self.widget is not None and self.on_commit is not None:
            self.on_commit(self.text())

    def commit(self) -> None:
        if self.widget is None:
            return
        text = self.text()
        fn = self.on_commit
        self._end()
        if fn is not None:
            fn(text)

    def cancel(self) -> None:
        if self.widget is not None:
            self._end()

    def _end(self) -> None:
        w, self.widget = self.widget, None
        end, self.on_end = self.on_end, None
        self.on_commit = None
        self.key = None
        if w is not None:
            w.removeEventFilter(self)
            w.hide()
            w.deleteLater()
            self.viewport.setFocus(Qt.OtherFocusReason)
        if end is not None:
            end()

    def eventFilter(self, obj: QObject, ev: QEvent) -> bool:
        if obj is not self.widget:
            return False
        t = ev.type()
        if t == QEvent.ShortcutOverride:
            # Keys the editor needs even though the window binds them (Esc = Stop, Ctrl+Enter = Run).
            k = ev.key()
            if k in (Qt.Key_Escape, Qt.Key_Return, Qt.Key_Enter):
                ev.accept()
                return True
        elif t == QEvent.KeyPress:
            assert isinstance(ev, QKeyEvent)
            k = ev.key()
            if k == Qt.Key_Escape:
                self.cancel()
                return True
            if k in (Qt.Key_Return, Qt.Key_Enter):
                multiline = isinstance(obj, QPlainTextEdit)
                if not multiline or ev.modifiers() & Qt.ControlModifier:
                    self.commit()
                    return True
        elif t == QEvent.FocusOut:
            if self.widget is not None:
                self.commit()
        return False
