"""Fixtures for the editor's tests: a registry with the test pack, an isolated settings folder,
a shown main window whose dialogs answer from a script, and helpers that drive the canvas with
real mouse and key events sent to the view's viewport."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QEvent, QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QMouseEvent, QWheelEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import graphs  # noqa: E402

from nodegraph.api import Session  # noqa: E402
from nodegraph.context import RunOptions  # noqa: E402
from nodegraph.executor import OutputCache  # noqa: E402


class FakeDialogs:
    """Scripted answers; records what was asked."""

    def __init__(self):
        self.unsaved_answer = "discard"
        self.recover_answer = True
        self.open_answer: str | None = None
        self.save_answer: str | None = None
        self.asked: list[tuple[str, object]] = []
        self.errors: list[tuple[str, str]] = []
        self.details_shown: list[tuple[str, str]] = []
        self.folders_opened: list[str] = []

    def unsaved(self, name):
        self.asked.append(("unsaved", name))
        return self.unsaved_answer

    def recover(self, entry):
        self.asked.append(("recover", entry))
        return self.recover_answer

    def open_path(self, start):
        self.asked.append(("open", start))
        return self.open_answer

    def save_path(self, start, title="Save graph", filter=""):
        self.asked.append(("save", start))
        return self.save_answer

    def error(self, title, text):
        self.errors.append((title, text))

    def details(self, title, text):
        self.details_shown.append((title, text))

    def open_folder(self, path):
        self.folders_opened.append(path)


@pytest.fixture(scope="session", autouse=True)
def _headless_clipboard_emptied_at_exit():
    """The copy/paste tests leave a QMimeData on the clipboard, which crashes PySide6's offscreen
    platform at exit (see gui.app.clear_headless_clipboard)."""
    yield
    from gui.app import clear_headless_clipboard

    clear_headless_clipboard()


@pytest.fixture(scope="session")
def registry():
    return graphs.registry()


@pytest.fixture
def settings(tmp_path):
    from gui.files import AppSettings

    return AppSettings.in_folder(tmp_path / "appdata", autosave_ms=60_000)


@pytest.fixture
def make_window(qtbot, registry, settings, tmp_path):
    """make_window(graph=None) -> a shown MainWindow (dialogs scripted, settings isolated)."""
    from gui.window import MainWindow

    windows = []

    def make(graph=None, settings_=None):
        # each window its own output cache: tests must not see each other's cached results
        session = Session(registry, options=RunOptions(output_dir=tmp_path / "out"),
                          cache=OutputCache())
        win = MainWindow(session, settings_ or settings)
        win.dialogs = FakeDialogs()
        qtbot.addWidget(win)
        win.resize(1400, 860)
        win.show()
        qtbot.waitExposed(win)
        win.activateWindow()
        if graph is not None:
            win.doc.replace_graph(graph, None)
            win.view.resetTransform()  # zoom 1, centred on the nodes
            win.view.centerOn(win.view.gs.nodes_rect().center())
        win.view.setFocus()
        QApplication.processEvents()
        windows.append(win)
        return win

    yield make
    for win in windows:
        if win.runner.running:
            win.runner.stop()
            win.runner.wait(10_000)
        win.doc.undo.setClean()
        win.doc.recovered = False
        win.close()


@pytest.fixture
def window(make_window):
    return make_window()


# -- driving the canvas ----------------------------------------------------------------------
def vp_point(view, scene_pt) -> QPointF:
    return QPointF(view.mapFromScene(QPointF(scene_pt)))


def mouse(view, kind: str, scene_pt, button=Qt.LeftButton, buttons=None, mods=Qt.NoModifier):
    """Send one mouse event (press, move, release, double) at a scene point to the viewport."""
    vp = view.viewport()
    p = vp_point(view, scene_pt)
    g = QPointF(vp.mapToGlobal(p.toPoint()))
    types = {"press": QEvent.MouseButtonPress, "move": QEvent.MouseMove,
             "release": QEvent.MouseButtonRelease, "double": QEvent.MouseButtonDblClick}
    if buttons is None:
        buttons = button if kind in ("press", "move", "double") else Qt.NoButton
    if kind == "move" and buttons == Qt.NoButton:
        button = Qt.NoButton
    ev = QMouseEvent(types[kind], p, g, button, buttons, mods)
    QApplication.sendEvent(vp, ev)


def click(view, scene_pt, button=Qt.LeftButton, mods=Qt.NoModifier):
    mouse(view, "press", scene_pt, button, mods=mods)
    mouse(view, "release", scene_pt, button, mods=mods)


def double_click(view, scene_pt):
    click(view, scene_pt)
    mouse(view, "double", scene_pt)
    mouse(view, "release", scene_pt)


def drag(view, a, b, steps: int = 6, button=Qt.LeftButton, mods=Qt.NoModifier):
    """Press at scene point a, move in steps, release at b."""
    a, b = QPointF(a), QPointF(b)
    mouse(view, "press", a, button, mods=mods)
    for i in range(1, steps + 1):
        mouse(view, "move", a + (b - a) * (i / steps), button, buttons=button, mods=mods)
    mouse(view, "release", b, button, mods=mods)


def drag_viewport(view, a: QPoint, b: QPoint, steps: int = 5, button=Qt.MiddleButton):
    """A drag given in viewport pixels (for panning, where scene points move under the mouse)."""
    vp = view.viewport()
    types = [(QEvent.MouseButtonPress, a, button, button)]
    for i in range(1, steps + 1):
        types.append((QEvent.MouseMove, a + (b - a) * (i / steps), Qt.NoButton, button))
    types.append((QEvent.MouseButtonRelease, b, button, Qt.NoButton))
    for t, p, btn, btns in types:
        pf = QPointF(p)
        QApplication.sendEvent(vp, QMouseEvent(t, pf, QPointF(vp.mapToGlobal(p)), btn, btns,
                                               Qt.NoModifier))


def wheel(view, scene_pt, delta: int):
    vp = view.viewport()
    p = vp_point(view, scene_pt)
    ev = QWheelEvent(p, QPointF(vp.mapToGlobal(p.toPoint())), QPoint(0, 0), QPoint(0, delta),
                     Qt.NoButton, Qt.NoModifier, Qt.NoScrollPhase, False)
    QApplication.sendEvent(vp, ev)


def pixel(view, scene_pt):
    """The colour drawn at a scene point (grabs the view; scrolls there first if needed)."""
    if not view.viewport().rect().adjusted(2, 2, -2, -2).contains(view.mapFromScene(QPointF(scene_pt))):
        view.centerOn(QPointF(scene_pt))
    img = view.grab().toImage()
    p = view.viewport().mapTo(view, view.mapFromScene(QPointF(scene_pt)))
    dpr = img.devicePixelRatio()
    return img.pixelColor(int(p.x() * dpr), int(p.y() * dpr))


def item_point(view, node_id: str, x: float, y: float) -> QPointF:
    """Scene point at (x, y) inside a node item."""
    return view.gs.node_items[node_id].mapToScene(QPointF(x, y))


def output_socket(view, node_id, name) -> QPointF:
    return view.gs.node_items[node_id].output_pos(name)


def input_socket(view, node_id, name) -> QPointF:
    return view.gs.node_items[node_id].input_pos(name)


def row_point(view, node_id, param, where="middle") -> QPointF:
    item = view.gs.node_items[node_id]
    r = item._row_by_name[param].rect
    x = {"left": r.left() + 6, "right": r.right() - 6, "middle": r.center().x()}[where]
    return item.mapToScene(QPointF(x, r.center().y()))
