"""The editor's look: one dark palette for widgets and the colours the canvas paints with.

Everything visual that more than one module uses lives here, so the canvas, the panels and the
screenshots agree. Colours are plain ``#rrggbb`` strings turned into QColor once.
"""
from __future__ import annotations

import hashlib

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

# -- canvas -------------------------------------------------------------------------------------
CANVAS = QColor("#1b1c1f")
GRID_MINOR = QColor("#232529")
GRID_MAJOR = QColor("#2b2e33")
NODE_BODY = QColor("#2a2c31")
NODE_BORDER = QColor("#101113")
NODE_SELECTED = QColor("#f2b53a")
ROW_BG = QColor("#1d1f22")
ROW_HOVER = QColor("#25282c")
TEXT = QColor("#e8eaed")
TEXT_DIM = QColor("#9aa0a6")
TEXT_FAINT = QColor("#6b7075")
TITLE_TEXT = QColor("#f5f5f5")
GROUP_FILL_ALPHA = 42

STATE_COLORS = {
    "queued": QColor("#78909c"),
    "running": QColor("#f2b53a"),
    "cached": QColor("#26a69a"),
    "done": QColor("#66bb6a"),
    "failed": QColor("#ef5350"),
    "interrupted": QColor("#ffa726"),
}
PROBLEM = QColor("#ef5350")
WARNING = QColor("#ffa726")
BYPASS_TINT = QColor(156, 82, 196, 70)
HIGHLIGHT = QColor("#ffffff")

_CATEGORY_COLORS = {
    "loaders": "#34577e",
    "conditioning": "#7a5b26",
    "sampling": "#6a3f7c",
    "latent": "#7c3b5d",
    "image": "#2e6b5b",
    "text": "#4b6a2c",
    "upscaling": "#2d5f73",
    "mask": "#3f6e3a",
    "advanced": "#5b4b3a",
    "utils": "#4a4f57",
}
_FALLBACK = ["#3d5a80", "#6d4c7d", "#7d5a3c", "#3c7d6a", "#7d3c4f", "#56703a", "#3c607d", "#705a7d"]
_color_cache: dict[str, QColor] = {}


def color(text: str | None, default: str = "#8c8c8c") -> QColor:
    """QColor of ``#rrggbb`` (cached; invalid names give ``default``)."""
    key = text or default
    c = _color_cache.get(key)
    if c is None:
        c = QColor(key)
        if not c.isValid():
            c = QColor(default)
        _color_cache[key] = c
    return c


def category_color(category: str) -> QColor:
    """The title-bar colour of a node category: known ones fixed, others stable by hash."""
    first = (category or "").split("/")[0].strip().lower()
    name = _CATEGORY_COLORS.get(first)
    if name is None:
        digest = hashlib.md5(first.encode()).digest()
        name = _FALLBACK[digest[0] % len(_FALLBACK)]
    return color(name)


def node_font(pixel_size: int = 12, bold: bool = False) -> QFont:
    """Fonts painted on the canvas are sized in scene pixels (they zoom with the view)."""
    f = QFont(QApplication.font())
    f.setPixelSize(pixel_size)
    f.setBold(bold)
    f.setHintingPreference(QFont.PreferNoHinting)
    return f


def configure_high_dpi() -> None:
    """Call before the QApplication exists: fractional scale factors pass through unrounded."""
    QGuiApplication.setHighDpiScaleFactorRoundingPolicy(
        Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)


STYLESHEET = """
QMainWindow, QDialog { background: #1f2023; }
QDockWidget { color: #d0d3d6; titlebar-close-icon: none; }
QDockWidget::title { background: #26282c; padding: 5px 8px; border-bottom: 1px solid #141517; }
QToolBar { background: #26282c; border: none; border-bottom: 1px solid #141517; spacing: 4px; padding: 3px; }
QToolButton { color: #e8eaed; padding: 4px 10px; border-radius: 4px; }
QToolButton:hover { background: #33363b; }
QToolButton:disabled { color: #5f6368; }
QToolButton#runButton { background: #2e7d32; font-weight: bold; }
QToolButton#runButton:hover { background: #388e3c; }
QToolButton#runButton:disabled { background: #2a3a2b; color: #7b8a7c; }
QToolButton#stopButton { background: #6d2a2a; }
QToolButton#stopButton:disabled { background: #2f2626; color: #7a6a6a; }
QLineEdit, QPlainTextEdit, QTextEdit, QSpinBox, QDoubleSpinBox, QComboBox {
    background: #17181b; color: #e8eaed; border: 1px solid #3a3d42; border-radius: 4px;
    padding: 3px 5px; selection-background-color: #3d5a80; }
QAbstractSpinBox { padding-left: 6px; }
QAbstractSpinBox::up-button, QAbstractSpinBox::down-button { width: 0px; border: none; }
QLineEdit:focus, QPlainTextEdit:focus, QSpinBox:focus, QDoubleSpinBox:focus, QComboBox:focus {
    border: 1px solid #f2b53a; }
QTreeView, QTreeWidget, QListWidget, QTableWidget {
    background: #1b1c1f; color: #dadce0; border: none; alternate-background-color: #202226;
    selection-background-color: #3d5a80; outline: 0; }
QTreeView::item, QListWidget::item { padding: 3px 2px; }
QHeaderView::section { background: #26282c; color: #aeb2b7; border: none; padding: 4px 6px; }
QTabWidget::pane { border: none; }
QTabBar::tab { background: #222428; color: #aeb2b7; padding: 5px 14px; border: none; }
QTabBar::tab:selected { background: #2d3035; color: #f1f3f4; }
QStatusBar { background: #26282c; color: #aeb2b7; }
QLabel#readout { color: #aeb2b7; padding: 0 8px; }
QMenu { background: #26282c; color: #e8eaed; border: 1px solid #3a3d42; }
QMenu::item:selected { background: #3d5a80; }
QMenuBar { background: #26282c; color: #dadce0; }
QMenuBar::item:selected { background: #33363b; }
QScrollBar:vertical { background: #1b1c1f; width: 10px; }
QScrollBar::handle:vertical { background: #3a3d42; border-radius: 4px; min-height: 24px; }
QScrollBar:horizontal { background: #1b1c1f; height: 10px; }
QScrollBar::handle:horizontal { background: #3a3d42; border-radius: 4px; min-width: 24px; }
QScrollBar::add-line, QScrollBar::sub-line { width: 0; height: 0; }
QFrame#searchPopup { background: #26282c; border: 1px solid #4a4e55; border-radius: 6px; }
QPushButton { background: #33363b; color: #e8eaed; border: 1px solid #44474d; border-radius: 4px;
    padding: 4px 12px; }
QPushButton:hover { background: #3b3f45; }
"""


def apply(app: QApplication) -> None:
    """Fusion style, a dark palette and the stylesheet above."""
    app.setStyle("Fusion")
    pal = QPalette()
    roles = {
        QPalette.Window: "#1f2023", QPalette.WindowText: "#e8eaed", QPalette.Base: "#17181b",
        QPalette.AlternateBase: "#202226", QPalette.ToolTipBase: "#2d3035",
        QPalette.ToolTipText: "#e8eaed", QPalette.Text: "#e8eaed", QPalette.Button: "#2d3035",
        QPalette.ButtonText: "#e8eaed", QPalette.BrightText: "#ff6e6e", QPalette.Link: "#64b5f6",
        QPalette.Highlight: "#3d5a80", QPalette.HighlightedText: "#ffffff",
        QPalette.PlaceholderText: "#6b7075",
    }
    for role, name in roles.items():
        pal.setColor(role, QColor(name))
    for role in (QPalette.Text, QPalette.ButtonText, QPalette.WindowText):
        pal.setColor(QPalette.Disabled, role, QColor("#5f6368"))
    app.setPalette(pal)
    app.setStyleSheet(STYLESHEET)
