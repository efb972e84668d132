"""ComfyUI habits (Ctrl+Shift+V keeps input links; tooltips from the specs' descriptions; primitive
nodes) and files (shipped or read-only graphs open as untitled copies)."""
from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QHelpEvent
from PySide6.QtWidgets import QApplication, QToolTip

from conftest import click, input_socket, item_point, mouse, row_point
from graphs import image_graph

P = "testpack."
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def copy_node_3(win, qtbot):
    click(win.view, item_point(win.view, "3", 60, 10))
    qtbot.keyClick(win.view.viewport(), Qt.Key_C, Qt.ControlModifier)
    mouse(win.view, "move", item_point(win.view, "3", 60, 200), Qt.NoButton)


def test_ctrl_shift_v_pastes_with_the_input_links_kept(make_window, qtbot):
    win = make_window(image_graph())
    copy_node_3(win, qtbot)
    qtbot.keyClick(win.view.viewport(), Qt.Key_V, Qt.ControlModifier | Qt.ShiftModifier)
    (new,) = set(win.doc.graph.nodes) - {"1", "2", "3"}
    link = win.doc.graph.link_into(new, "images")
    assert link is not None and (link.src, link.output) == ("2", "IMAGE")
    assert win.doc.graph.link_into("3", "images").src == "2"  # the original keeps its link
    win.doc.undo.undo()
    assert set(win.doc.graph.nodes) == {"1", "2", "3"} and len(win.doc.graph.links) == 2


def test_ctrl_v_pastes_without_the_input_links(make_window, qtbot):
    win = make_window(image_graph())
    copy_node_3(win, qtbot)
    qtbot.keyClick(win.view.viewport(), Qt.Key_V, Qt.ControlModifier)
    (new,) = set(win.doc.graph.nodes) - {"1", "2", "3"}
    assert win.doc.graph.link_into(new, "images") is None


def tooltip_at(win, scene_point) -> str:
    vp = win.view.viewport()
    at = win.view.mapFromScene(scene_point)
    QApplication.sendEvent(vp, QHelpEvent(QEvent.ToolTip, at, vp.mapToGlobal(at)))
    return QToolTip.text()


def test_hovering_a_param_or_socket_tells_what_it_is_in_plain_text(make_window):
    win = make_window(image_graph())
    text = tooltip_at(win, row_point(win.view, "2", "steps"))
    assert text.startswith("steps (INT)")
    text = tooltip_at(win, input_socket(win.view, "3", "images"))
    assert text.startswith("images (IMAGE)")
    title = tooltip_at(win, item_point(win.view, "3", 60, 10))
    assert title.startswith("Preview Image (testpack.Preview)") and "Shows its images" in title


def test_node_descriptions_lose_their_restructuredtext_markup():
    from gui.tips import plain_text

    text = ("Resize to ``width``×``height`` (see :func:`scale`), `crop` first;\nthe **rest**\nkept.\n\n"
            "Second paragraph.")
    assert plain_text(text) == "Resize to width×height (see scale), crop first; the rest kept.\n\nSecond paragraph."


# -- files ----------------------------------------------------------------------------------------
def test_a_shipped_example_opens_as_an_untitled_copy_and_save_asks_where(make_window, qtbot, tmp_path):
    win = make_window()
    before = (EXAMPLES / "hello.json").read_bytes()
    assert win.load(EXAMPLES / "hello.json")
    assert win.doc.path is None and win.windowTitle().startswith("hello.json (copy)")
    win.dialogs.save_answer = str(tmp_path / "mine.json")
    qtbot.keyClick(win.view.viewport(), Qt.Key_S, Qt.ControlModifier)
    assert win.dialogs.asked[-1][0] == "save" and win.dialogs.asked[-1][1].endswith("hello.json")
    assert (tmp_path / "mine.json").is_file() and (EXAMPLES / "hello.json").read_bytes() == before
    assert win.doc.path == tmp_path / "mine.json"


def test_a_file_the_user_cannot_write_opens_as_an_untitled_copy(make_window, tmp_path, monkeypatch):
    from nodegraph import format as graph_format

    path = graph_format.save(image_graph(), tmp_path / "locked.json")
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == path and mode == os.W_OK
                        else real(p, mode))  # as the OS answers for a read-only file (root never is refused)
    win = make_window()
    assert win.load(path)
    assert win.doc.path is None and win.doc.origin == path


def test_a_writable_file_keeps_its_name(make_window, tmp_path):
    from nodegraph import format as graph_format

    path = graph_format.save(image_graph(), tmp_path / "mine.json")
    win = make_window()
    assert win.load(path)
    assert win.doc.path == path and win.windowTitle().startswith("mine.json")


def test_tooltips_at_an_empty_spot_say_nothing(make_window):
    win = make_window(image_graph())
    QToolTip.hideText()
    assert tooltip_at(win, item_point(win.view, "1", -300, -300)) == ""
