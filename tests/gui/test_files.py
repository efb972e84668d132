"""Files: save and reopen, PNGs with an embedded graph, unsaved changes, autosave and recovery,
recent files and the restored layout."""
from __future__ import annotations

import json
import os

from PIL import Image, PngImagePlugin
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from conftest import click, drag, item_point, output_socket, row_point
from graphs import image_graph, pipeline
from nodegraph import format as graph_format
from nodegraph.graph import Graph

P = "testpack."


def edited_graph(win):
    """Make a few edits through the canvas (a move, a param, a link, a reroute, a group)."""
    view = win.view
    drag(view, item_point(view, "3", 60, 10), item_point(view, "3", 100, 50))
    click(view, row_point(view, "1", "width", "right"))
    view.select_all()
    view.group_selection()


def test_save_then_reopen_gives_the_identical_file(make_window, tmp_path):
    win = make_window(image_graph())
    edited_graph(win)
    path = tmp_path / "g.json"
    win.dialogs.save_answer = str(path)
    assert win.save()  # no file name yet: asks for one
    first = path.read_bytes()
    assert not win.doc.dirty and "g.json" in win.windowTitle() and "*" not in win.windowTitle()
    other = make_window()
    assert other.load(path)
    assert other.doc.graph == win.doc.graph
    assert other.save()
    assert path.read_bytes() == first
    assert json.loads(first)["groups"][0]["title"] == "Group"


def test_save_is_atomic_and_leaves_no_temp_files(make_window, tmp_path):
    win = make_window(image_graph())
    path = tmp_path / "a.json"
    path.write_text("old contents")
    win.doc.path = path
    assert win.save()
    assert graph_format.load(path) == win.doc.graph
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["a.json"]


def test_dropping_a_png_saved_by_nodegraph_opens_its_graph(make_window, tmp_path):
    g = Graph()
    pipeline(g, 0, 0)
    png = tmp_path / "out.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("nodegraph", graph_format.dumps(g))
    Image.new("RGB", (8, 8), (10, 20, 30)).save(png, pnginfo=info)
    win = make_window()
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(png))])
    vp = win.view.viewport()
    enter = QDragEnterEvent(QPoint(50, 50), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(vp, enter)
    assert enter.isAccepted()
    ev = QDropEvent(QPointF(50, 50), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(vp, ev)
    assert len(win.doc.graph) == 7
    assert win.doc.graph == g
    assert win.doc.path is None  # a PNG is not the graph's file: Save asks for a name


def test_opening_a_broken_file_reports_the_error_and_keeps_the_graph(make_window, tmp_path):
    win = make_window(image_graph())
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "nodegraph", "version": 1, "nodes": 3}')
    assert not win.load(bad)
    assert win.dialogs.errors and "nodes" in win.dialogs.errors[0][1]
    assert len(win.doc.graph) == 3


def test_closing_with_unsaved_changes_asks_and_cancel_keeps_the_window(make_window):
    win = make_window()
    win.doc.add_node(P + "Number", (0, 0))
    assert win.doc.dirty and win.windowTitle().startswith("untitled*")
    win.dialogs.unsaved_answer = "cancel"
    assert not win.close()
    assert win.isVisible()
    assert win.dialogs.asked[-1] == ("unsaved", "untitled")
    win.dialogs.unsaved_answer = "discard"
    assert win.close()


def test_new_asks_to_save_first(make_window, tmp_path):
    win = make_window(image_graph())
    win.doc.set_title("1", "Red")
    win.dialogs.unsaved_answer = "save"
    win.dialogs.save_answer = str(tmp_path / "kept.json")
    win.new_file()
    assert graph_format.load(tmp_path / "kept.json").nodes["1"].title == "Red"
    assert len(win.doc.graph) == 0 and win.doc.path is None


def test_autosave_writes_a_recovery_copy_and_saving_removes_it(make_window, settings, tmp_path):
    win = make_window(image_graph())
    saver = win.autosaver
    assert not saver.autosave()  # nothing changed yet
    win.doc.set_title("1", "Red")
    assert saver.autosave()
    copy = graph_format.load(saver.graph_file)
    assert copy.nodes["1"].title == "Red"
    meta = json.loads(saver.meta_file.read_text())
    assert meta["pid"] == os.getpid()
    assert not saver.autosave()  # unchanged since: not written again
    win.dialogs.save_answer = str(tmp_path / "saved.json")
    win.save()
    assert not saver.graph_file.exists() and not saver.meta_file.exists()


def test_autosave_runs_on_its_timer(make_window, qtbot, tmp_path):
    from gui.files import AppSettings

    fast = AppSettings.in_folder(tmp_path / "fast", autosave_ms=50)
    win = make_window(image_graph(), settings_=fast)
    win.doc.set_title("1", "Red")
    qtbot.waitUntil(win.autosaver.graph_file.exists, timeout=3000)


def test_recovery_after_a_crash_restores_the_unsaved_graph(make_window, settings, tmp_path):
    win = make_window(image_graph())
    win.doc.path = tmp_path / "work.json"
    drag(win.view, output_socket(win.view, "1", "IMAGE"), QPointF(600, 400))  # opens search
    win.view.search.close_popup()
    win.doc.set_title("2", "Slowly")
    win.doc.set_param("1", "green", 0.5)
    assert win.autosaver.autosave()
    expected = win.doc.graph.copy()
    # simulate a crash: the process that wrote the autosave is gone
    meta = json.loads(win.autosaver.meta_file.read_text())
    meta["pid"] = 2**22 + 12345
    win.autosaver.meta_file.write_text(json.dumps(meta))
    win.autosaver.stop()
    win.close = lambda: True  # the crashed window never closes cleanly

    fresh = make_window()
    assert fresh.offer_recovery() == 1
    assert fresh.dialogs.asked[0][0] == "recover"
    assert fresh.doc.graph == expected
    assert fresh.doc.dirty and fresh.doc.path == tmp_path / "work.json"
    assert "*" in fresh.windowTitle()
    # the crashed copy is gone; the recovered document has its own autosave
    left = sorted(p.name for p in settings.recovery_dir.iterdir())
    assert left == sorted([fresh.autosaver.graph_file.name, fresh.autosaver.meta_file.name])


def test_declining_recovery_deletes_the_autosave(make_window, settings):
    win = make_window(image_graph())
    win.doc.set_title("1", "Red")
    win.autosaver.autosave()
    meta = json.loads(win.autosaver.meta_file.read_text())
    meta["pid"] = 2**22 + 12345
    win.autosaver.meta_file.write_text(json.dumps(meta))
    win.autosaver.stop()
    fresh = make_window()
    fresh.dialogs.recover_answer = False
    assert fresh.offer_recovery() == 0
    assert not win.autosaver.graph_file.exists()
    assert len(fresh.doc.graph) == 0


def test_recent_files_are_kept_in_the_test_settings(make_window, settings, tmp_path):
    win = make_window(image_graph())
    for name in ("a.json", "b.json"):
        win.dialogs.save_answer = str(tmp_path / name)
        win.save_as()
    assert settings.recent_files()[:2] == [str((tmp_path / "b.json").resolve()),
                                           str((tmp_path / "a.json").resolve())]
    assert str(tmp_path) in settings.qsettings.fileName()


def test_dock_layout_is_restored(make_window, settings):
    win = make_window()
    win.log_dock.hide()
    win.save_layout()
    win.close()
    again = make_window()
    assert again.log_dock.isHidden()
