"""Readable at every zoom: text is never drawn below 9 screen pixels, titles stay written down to zoom
0.15, keyboard zoom, and the minimap of large graphs."""
from __future__ import annotations

import pytest
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from graphs import big_graph, pipeline
from nodegraph.graph import Graph
from textsize import texts_in_view

def one_pipeline() -> Graph:
    g = Graph()
    pipeline(g, 0, 0)
    return g


def at_zoom(win, zoom: float):
    win.view.set_zoom(zoom)
    win.view.centerOn(win.scene.nodes_rect().center())
    QApplication.processEvents()
    return texts_in_view(win.view)


def written(title: str, texts: list[tuple[float, str]]) -> bool:
    """Whether ``title`` was drawn, whole or shortened with an ellipsis."""
    return any(t == title or (t.endswith("…") and title.startswith(t[:-1])) for _, t in texts)


@pytest.mark.parametrize("zoom", [1.0, 0.7, 0.5, 0.35, 0.2, 0.15])
def test_no_text_is_drawn_below_9_pixels_and_every_title_in_view_is_written(make_window, zoom):
    win = make_window(one_pipeline())
    texts = at_zoom(win, zoom)
    assert min(px for px, _ in texts) >= 9.0
    in_view = [it.title_text() for it in win.scene.node_items.values()
               if win.view.visible_scene_rect().contains(it.sceneBoundingRect())]
    assert in_view and all(written(title, texts) for title in in_view)


def test_values_are_written_while_their_rows_can_hold_9_pixel_text(make_window):
    win = make_window(one_pipeline())
    assert "euler" in {text for _, text in at_zoom(win, 0.6)}
    assert "euler" not in {text for _, text in at_zoom(win, 0.3)}  # rows are 6.6 px tall there


def test_below_zoom_015_nothing_is_written(make_window):
    win = make_window(one_pipeline())
    assert at_zoom(win, 0.12) == []


def test_keyboard_zoom_in_out_and_back_to_100_percent(make_window, qtbot):
    win = make_window(one_pipeline())
    vp = win.view.viewport()
    qtbot.keyClick(vp, Qt.Key_Equal, Qt.ControlModifier)
    assert win.view.zoom == pytest.approx(1.25)
    qtbot.keyClick(vp, Qt.Key_Minus, Qt.ControlModifier)
    qtbot.keyClick(vp, Qt.Key_Minus, Qt.ControlModifier)
    assert win.view.zoom == pytest.approx(0.8)
    qtbot.keyClick(vp, Qt.Key_0, Qt.ControlModifier)
    assert win.view.zoom == pytest.approx(1.0)


def press_on(widget, x: float, y: float) -> None:
    p = QPointF(x, y)
    for kind, buttons in ((QEvent.MouseButtonPress, Qt.LeftButton), (QEvent.MouseButtonRelease, Qt.NoButton)):
        QApplication.sendEvent(widget, QMouseEvent(kind, p, QPointF(widget.mapToGlobal(p.toPoint())),
                                                   Qt.LeftButton, buttons, Qt.NoModifier))


def minimap_of_a_large_graph(make_window):
    """A window on 100 nodes at zoom 1 (most of them out of view) and its minimap."""
    win = make_window(big_graph(100))
    win.view.set_zoom(1.0)
    win.view.centerOn(0, 0)
    QApplication.processEvents()
    return win, win.view.minimap


def view_centred_on(win, scene_point: QPointF) -> bool:
    centre = win.view.visible_scene_rect().center()
    return abs(centre.x() - scene_point.x()) < 3 and abs(centre.y() - scene_point.y()) < 3


def test_the_minimap_shows_a_large_graph_and_a_click_moves_the_view_there(make_window):
    win, minimap = minimap_of_a_large_graph(make_window)
    assert minimap.isVisible()
    spot = minimap.to_map(win.scene.nodes_rect()).bottomRight() - QPointF(3, 3)
    press_on(minimap, spot.x(), spot.y())
    assert view_centred_on(win, minimap.to_scene(spot))


def test_dragging_on_the_minimap_pans_the_view_along(make_window):
    win, minimap = minimap_of_a_large_graph(make_window)
    area = minimap.to_map(win.scene.nodes_rect())
    start, end = area.topLeft() + QPointF(4, 4), area.center()

    def send(kind, p, button, buttons):
        glob = QPointF(minimap.mapToGlobal(p.toPoint()))
        QApplication.sendEvent(minimap, QMouseEvent(kind, p, glob, button, buttons, Qt.NoModifier))

    send(QEvent.MouseButtonPress, start, Qt.LeftButton, Qt.LeftButton)
    for i in range(1, 6):
        send(QEvent.MouseMove, start + (end - start) * (i / 5), Qt.NoButton, Qt.LeftButton)
    assert view_centred_on(win, minimap.to_scene(end))
    send(QEvent.MouseButtonRelease, end, Qt.LeftButton, Qt.NoButton)


def test_the_minimap_hides_when_the_graph_fits_or_when_turned_off(make_window):
    win = make_window(big_graph(100))
    win.view.set_zoom(1.0)
    QApplication.processEvents()
    assert win.view.minimap.isVisible()
    win.view.actions_by_name["minimap"].trigger()
    assert not win.view.minimap.isVisible()
    win.view.actions_by_name["minimap"].trigger()
    win.view.fit_all()
    QApplication.processEvents()
    assert not win.view.minimap.isVisible()  # everything is in view already


def test_an_imported_comfyui_template_opens_with_text_of_at_least_9_pixels(qtbot):
    from comfyui_workflow_templates import get_templates_path

    from nodegraph.api import Session
    from nodegraph.plugins import load_registry

    from gui.window import MainWindow

    registry = load_registry(builtin=True, entry_points=False, folders=[], user=False)
    win = MainWindow(Session(registry))
    qtbot.addWidget(win)
    win.resize(1600, 1000)
    win.show()
    qtbot.waitExposed(win)
    assert win.load(f"{get_templates_path()}/default.json")
    QApplication.processEvents()
    texts = texts_in_view(win.view)
    assert texts and min(px for px, _ in texts) >= 9.0
    assert {"KSampler", "Load Checkpoint", "Save Image"} <= {t for _, t in texts}
    win.doc.undo.setClean()
    win.close()
