"""Starting the editor, the library's drag and drop, the image viewer's actions."""
from __future__ import annotations

from PySide6.QtCore import QMimeData, QPointF, Qt
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QImage
from PySide6.QtWidgets import QApplication

from graphs import image_graph
from nodegraph import format as graph_format

P = "testpack."


def test_main_opens_the_given_file_and_returns_0(tmp_path, monkeypatch, qtbot):
    from gui import app as gui_app

    path = tmp_path / "g.json"
    graph_format.save(image_graph(), path)
    seen = {}

    def fake_loop(app):  # instead of app.exec(): look at the window, close it
        win = gui_app._windows[-1]
        seen["title"] = win.windowTitle()
        seen["nodes"] = len(win.doc.graph)
        seen["types"] = sorted({n.type for n in win.doc.graph.nodes.values()})
        win.close()
        return 0

    monkeypatch.setattr(gui_app, "_run_event_loop", fake_loop)
    monkeypatch.setenv("NODEGRAPH_PLUGIN_PATH", str(tmp_path / "none"))
    assert gui_app.main([str(path)]) == 0
    assert seen["title"] == "g.json — NodeGraph" and seen["nodes"] == 3


def test_dragging_a_type_from_the_library_onto_the_canvas_adds_it(window):
    view = window.view
    mime = QMimeData()
    mime.setData("application/x-nodegraph-node-type", (P + "Number").encode())
    vp = view.viewport()
    at = view.mapFromScene(QPointF(120, 80))
    enter = QDragEnterEvent(at, Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(vp, enter)
    QApplication.sendEvent(vp, QDropEvent(QPointF(at), Qt.CopyAction, mime, Qt.LeftButton,
                                          Qt.NoModifier))
    (node,) = window.doc.graph.nodes.values()
    assert node.type == P + "Number" and node.pos == (120, 80)


def test_viewer_saves_and_copies_the_image(window, tmp_path):
    img = QImage(40, 30, QImage.Format_RGB888)
    img.fill(Qt.green)
    window.viewer.show_images([img, img.copy()], "test")
    assert window.viewer.label.text().startswith("1/2")
    out = window.viewer.save_as(str(tmp_path / "saved.png"))
    assert QImage(out).size() == img.size()
    window.viewer.copy()
    assert QApplication.clipboard().image().pixelColor(5, 5).green() == 255
    window.viewer.page(1)
    assert window.viewer.index == 1


def test_a_new_window_shares_the_queue_but_stop_stops_only_its_own_run(window, qtbot):
    g = image_graph()
    g.nodes["2"].params.update(steps=60, delay=0.01)
    window.doc.replace_graph(g, None)
    other = window.new_window()
    try:
        assert other.session is window.session and other.runner.queue is window.runner.queue
        other.doc.replace_graph(image_graph(), None)
        assert window.run() and other.run()
        assert window.runner.queue.remaining() == 2
        other.stop()  # its run has not started: it leaves the queue; the first one goes on
        with qtbot.waitSignal(window.runner.run_finished, timeout=10_000) as blocker:
            pass
        assert blocker.args[0].status == "finished"
        assert other.runner.last.status == "cancelled"
    finally:
        other.close()
