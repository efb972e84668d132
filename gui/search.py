"""Fuzzy node search: a scoring function and the popup the canvas opens (Tab, double-click, or
a wire dropped on empty canvas, then filtered to node types that fit the wire).

Ranking: an exact name first, then names that start with the query, then names with a word that
does, then the rest; within each, built-in nodes before a pack's, then the better fuzzy score
(shorter names win ties). The popup is wide enough for the categories it lists: a name may be
shortened, a category is not."""
from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QPoint, QRect, QSize, Qt, Signal
from PySide6.QtGui import QFontMetrics, QPainter
from PySide6.QtWidgets import (QFrame, QLabel, QLineEdit, QListWidget, QListWidgetItem,
                               QStyle, QStyledItemDelegate, QStyleOptionViewItem, QVBoxLayout,
                               QWidget)

from nodegraph.registry import BUILTIN_PACK, NodeSpec, Registry

from . import theme
from .tips import plain_text

_SEPARATORS = " ._-/:"
MIN_WIDTH = 360
CHROME = 34
"""Pixels of the popup's width that rows do not get (margins, frame, scroll bar)."""


def fuzzy_score(query: str, text: str) -> float | None:
    """How well ``query`` matches ``text`` (higher is better), or None if it does not.

    Every query character must appear in order. A substring beats scattered letters; letters at
    word starts (after a space, dot, underscore, or a lower→upper case change) and runs of
    consecutive letters score extra; shorter texts win ties.
    """
    q = query.strip().lower()
    if not q:
        return 0.0
    low = text.lower()
    pos = low.find(q)
    if pos >= 0:
        start = pos == 0 or text[pos - 1] in _SEPARATORS or (text[pos].isupper()
                                                             and text[pos - 1].islower())
        return 200.0 + (40.0 if pos == 0 else 20.0 if start else 0.0) + 30.0 * len(q) / len(low)
    score = 0.0
    i = 0
    prev = -2
    for ch in q:
        j = low.find(ch, i)
        if j < 0:
            return None
        word_start = j == 0 or text[j - 1] in _SEPARATORS or (text[j].isupper()
                                                              and text[j - 1].islower())
        score += 10.0 if word_start else 1.0
        if j == prev + 1:
            score += 5.0
        prev = j
        i = j + 1
    return score + 10.0 * len(q) / len(low)


def score_spec(query: str, spec: NodeSpec) -> float | None:
    """Best score of the query (each word must match) over a node type's names and category."""
    words = query.split()
    if not words:
        return 0.0
    total = 0.0
    for w in words:
        best = None
        for text, weight in ((spec.display_name, 1.0), (spec.type_id, 0.9),
                             (spec.category, 0.5), (spec.pack, 0.4)):
            if not text:
                continue
            s = fuzzy_score(w, text)
            if s is not None and (best is None or s * weight > best):
                best = s * weight
        if best is None:
            return None
        total += best
    return total


def name_tier(query: str, spec: NodeSpec) -> int:
    """3: the query is a name of the type (display name or id, pack prefix left out); 2: a name
    starts with it; 1: a word of the display name does; 0: neither."""
    q = " ".join(query.lower().split())
    if not q:
        return 0
    names = (spec.display_name.lower(), spec.type_id.rsplit(".", 1)[-1].lower())
    if q in names:
        return 3
    if any(n.startswith(q) for n in names):
        return 2
    words = spec.display_name.lower().replace("(", " ").split()
    return 1 if any(" ".join(words[i:]).startswith(q) for i in range(len(words))) else 0


def rank(registry: Registry, query: str,
         accept: Callable[[NodeSpec], bool] | None = None, limit: int = 200) -> list[NodeSpec]:
    """Node types matching ``query`` (and ``accept``), best first (see the module docstring)."""
    scored = []
    for spec in registry.nodes.values():
        if accept is not None and not accept(spec):
            continue
        s = score_spec(query, spec)
        if s is not None:
            builtin = spec.pack in ("", BUILTIN_PACK)
            scored.append((-name_tier(query, spec), not builtin, -s, spec.display_name.lower(),
                           spec.type_id, spec))
    scored.sort(key=lambda t: t[:5])
    return [t[-1] for t in scored[:limit]]


PAD, GAP = 10, 12
"""Pixels left and right of a row, and between a name and its category."""


def row_texts(name: str, side: str, width: int, fm: QFontMetrics) -> tuple[str, str]:
    """The name and category a row of ``width`` pixels shows: the category whole (unless it alone
    is wider than 3/4 of the row), the name shortened to what is left."""
    avail = width - 2 * PAD
    side_w = min(fm.horizontalAdvance(side) + 2, avail * 3 // 4)  # +2: elidedText rounds
    return (fm.elidedText(name, Qt.ElideRight, max(0, avail - side_w - GAP)),
            fm.elidedText(side, Qt.ElideLeft, side_w))


class _Delegate(QStyledItemDelegate):
    """Name on the left, category and pack dimmed on the right."""

    def paint(self, p: QPainter, option: QStyleOptionViewItem, index) -> None:
        p.save()
        selected = option.state & QStyle.State_Selected
        if selected:
            p.fillRect(option.rect, theme.color("#3d5a80"))
        r = option.rect.adjusted(PAD, 0, -PAD, 0)
        fm = QFontMetrics(option.font)
        name, side = row_texts(index.data(Qt.DisplayRole), index.data(Qt.UserRole + 1) or "",
                               option.rect.width(), fm)
        side_w = fm.horizontalAdvance(side)
        p.setPen(theme.TEXT)
        p.drawText(QRect(r.left(), r.top(), r.width() - side_w - GAP, r.height()),
                   Qt.AlignVCenter | Qt.AlignLeft, name)
        p.setPen(theme.TEXT_FAINT if not selected else theme.TEXT_DIM)
        p.drawText(QRect(r.right() - side_w, r.top(), side_w, r.height()),
                   Qt.AlignVCenter | Qt.AlignRight, side)
        p.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index) -> QSize:
        return QSize(200, 26)


class SearchPopup(QFrame):
    """A floating search box over the canvas. ``chosen(type_id)`` when the user picks one."""

    chosen = Signal(str)
    closed = Signal()

    def __init__(self, registry: Registry, parent: QWidget):
        super().__init__(parent)
        self.setObjectName("searchPopup")
        self.registry = registry
        self.accept_fn: Callable[[NodeSpec], bool] | None = None
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.setSpacing(4)
        self.hint = QLabel(self)
        self.hint.setStyleSheet("color: #9aa0a6; padding: 0 2px;")
        self.edit = QLineEdit(self)
        self.edit.setPlaceholderText("Search nodes…")
        self.list = QListWidget(self)
        self.list.setItemDelegate(_Delegate(self.list))
        self.list.setUniformItemSizes(True)
        lay.addWidget(self.hint)
        lay.addWidget(self.edit)
        lay.addWidget(self.list)
        self.resize(MIN_WIDTH, 340)
        self.edit.textChanged.connect(self.refresh)
        self.edit.installEventFilter(self)
        self.list.itemActivated.connect(self._activate)
        self.list.itemClicked.connect(self._activate)
        self.hide()

    def open(self, at: QPoint, accept: Callable[[NodeSpec], bool] | None = None,
             hint: str = "") -> None:
        """Show at ``at`` (parent coordinates), kept inside the parent."""
        self.accept_fn = accept
        self.hint.setText(hint)
        self.hint.setVisible(bool(hint))
        self.edit.blockSignals(True)
        self.edit.clear()
        self.edit.blockSignals(False)
        self.refresh()
        par = self.parentWidget().rect()
        x = max(0, min(at.x(), par.width() - self.width()))
        y = max(0, min(at.y(), par.height() - self.height()))
        self.move(x, y)
        self.show()
        self.raise_()
        self.edit.setFocus(Qt.PopupFocusReason)

    def refresh(self) -> None:
        self.list.clear()
        for spec in rank(self.registry, self.edit.text(), self.accept_fn):
            it = QListWidgetItem(spec.display_name)
            side = spec.category or ""
            if spec.pack and spec.pack != "builtin":
                side = f"{side} · {spec.pack}" if side else spec.pack
            it.setData(Qt.UserRole, spec.type_id)
            it.setData(Qt.UserRole + 1, side)
            it.setToolTip(f"{spec.type_id}\n{plain_text(spec.description)}".strip())
            self.list.addItem(it)
        if self.list.count():
            self.list.setCurrentRow(0)
        self._fit_width()

    def _fit_width(self) -> None:
        """As wide as the longest name and category need (categories are not cut), within the
        canvas."""
        fm = QFontMetrics(self.list.font())
        need = MIN_WIDTH
        for i in range(self.list.count()):
            it = self.list.item(i)
            need = max(need, fm.horizontalAdvance(it.text()) + fm.horizontalAdvance(
                it.data(Qt.UserRole + 1) or "") + 2 * PAD + GAP + CHROME)
        par = self.parentWidget()
        width = min(need, par.width() - 8) if par is not None else need
        if width != self.width():
            self.resize(width, self.height())
            if par is not None and self.x() + width > par.width():
                self.move(max(0, par.width() - width), self.y())

    def results(self) -> list[str]:
        return [self.list.item(i).data(Qt.UserRole) for i in range(self.list.count())]

    def _activate(self, item: QListWidgetItem) -> None:
        type_id = item.data(Qt.UserRole)
        self.close_popup()
        self.chosen.emit(type_id)

    def close_popup(self) -> None:
        if self.isVisible():
            self.hide()
            self.closed.emit()

    def eventFilter(self, obj: QObject, ev: QEvent) -> bool:
        if obj is self.edit and ev.type() == QEvent.ShortcutOverride \
                and ev.key() in (Qt.Key_Escape, Qt.Key_Return, Qt.Key_Enter):
            ev.accept()  # these keys belong to the search box, not to window shortcuts
            return True
        if obj is self.edit and ev.type() == QEvent.KeyPress:
            key = ev.key()
            if key in (Qt.Key_Down, Qt.Key_Up, Qt.Key_PageDown, Qt.Key_PageUp):
                row = self.list.currentRow()
                step = {Qt.Key_Down: 1, Qt.Key_Up: -1, Qt.Key_PageDown: 8, Qt.Key_PageUp: -8}[key]
                self.list.setCurrentRow(max(0, min(self.list.count() - 1, row + step)))
                return True
            if key in (Qt.Key_Return, Qt.Key_Enter):
                item = self.list.currentItem()
                if item is not None:
                    self._activate(item)
                return True
            if key == Qt.Key_Escape:
                self.close_popup()
                return True
        return super().eventFilter(obj, ev)
