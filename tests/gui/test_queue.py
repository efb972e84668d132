"""A queue and a history: Run during a run queues the graph as it is then; the Queue panel lists,
cancels, reorders and clears; the History panel shows past runs, their images and their graphs, and
keeps them across restarts."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor

from conftest import click, row_point
from graphs import image_graph
from nodegraph.graph import Graph

P = "testpack."


def slow_graph(steps: int = 300) -> Graph:
    g = image_graph()
    g.nodes["2"].params.update(steps=steps, delay=0.01)
    return g


def ctrl_enter(win, qtbot) -> None:
    qtbot.keyClick(win.view.viewport(), Qt.Key_Return, Qt.ControlModifier)


def rows(panel) -> list[tuple[str, str]]:
    """(graph label, state) of each row of the Queue panel."""
    tree = panel.tree
    return [(tree.topLevelItem(i).text(1), tree.topLevelItem(i).data(1, Qt.UserRole))
            for i in range(tree.topLevelItemCount())]


def select_row(panel, index: int) -> None:
    tree = panel.tree
    tree.clearSelection()
    tree.topLevelItem(index).setSelected(True)


def wait_running(win, qtbot) -> None:
    qtbot.waitUntil(lambda: win.runner.queue.running() is not None, timeout=5000)


def test_run_during_a_run_queues_the_graph_as_it_is_then(make_window, qtbot):
    win = make_window(slow_graph(40))
    ctrl_enter(win, qtbot)
    wait_running(win, qtbot)
    assert win.act_run.isEnabled()
    click(win.view, row_point(win.view, "1", "red", "left"))  # 1.00 -> 0.99, after the first Run
    ctrl_enter(win, qtbot)
    assert [state for _, state in rows(win.queue_panel)] == ["running", "pending"]
    qtbot.waitUntil(lambda: len(win.runner.history) == 2 and not win.runner.running, timeout=20_000)
    first, second = win.runner.history.entries()
    assert first.graph.nodes["1"].params["red"] == 1.0 and second.graph.nodes["1"].params["red"] == 0.99
    assert [state for _, state in rows(win.queue_panel)] == ["success", "success"]
    assert win.viewer.current().pixelColor(1, 1) == QColor(252, 0, 0)  # 0.99 red: the second run's


def test_the_queue_panel_cancels_a_pending_run(make_window, qtbot):
    win = make_window(slow_graph())
    ctrl_enter(win, qtbot)
    ctrl_enter(win, qtbot)
    wait_running(win, qtbot)
    panel = win.queue_panel
    select_row(panel, 1)
    qtbot.mouseClick(panel.cancel_btn, Qt.LeftButton)
    assert [state for _, state in rows(panel)] == ["running", "cancelled"]
    assert win.runner.queue.pending() == []
    win.stop()
    qtbot.waitUntil(lambda: not win.runner.running, timeout=5000)


def test_the_queue_panel_reorders_and_clears_pending_runs(make_window, qtbot):
    win = make_window(slow_graph())
    for _ in range(3):
        ctrl_enter(win, qtbot)
    wait_running(win, qtbot)
    panel = win.queue_panel
    pending = [i.id for i in win.runner.queue.pending()]
    select_row(panel, 2)  # the second pending run
    qtbot.mouseClick(panel.up_btn, Qt.LeftButton)
    assert [i.id for i in win.runner.queue.pending()] == [pending[1], pending[0]]
    qtbot.mouseClick(panel.clear_btn, Qt.LeftButton)
    assert win.runner.queue.pending() == []
    assert [state for _, state in rows(panel)] == ["running", "cancelled", "cancelled"]
    win.stop()
    qtbot.waitUntil(lambda: not win.runner.running, timeout=5000)


def run_once(win, qtbot) -> None:
    with qtbot.waitSignal(win.runner.run_finished, timeout=10_000):
        ctrl_enter(win, qtbot)


def seeded_image_graph() -> Graph:
    """A seed feeding a solid image that is saved as a PNG (the history refers to it by path)."""
    g = image_graph()
    g.add_node(P + "Seeded", {"seed": 7}, id="5", pos=(0, 250))
    g.connect("5", "FLOAT", "1", "green")
    g.nodes["3"].type = P + "SavePNG"
    return g


def test_the_history_lists_a_run_with_thumbnail_time_seed_and_shows_its_images(make_window, qtbot):
    win = make_window(seeded_image_graph())
    run_once(win, qtbot)
    panel = win.history_panel
    assert panel.list.count() == 1
    item = panel.list.item(0)
    assert "seed 7" in item.text() and " s · " in item.text()
    qtbot.waitUntil(lambda: not item.icon().isNull(), timeout=3000)
    win.viewer.show_images([])
    rect = panel.list.visualItemRect(item)
    qtbot.mouseClick(panel.list.viewport(), Qt.LeftButton, pos=rect.center())
    assert win.viewer.current() is not None and win.viewer.current().size().toTuple() == (64, 48)


def test_restore_graph_opens_the_graph_a_past_run_ran(make_window, qtbot):
    win = make_window(seeded_image_graph())
    run_once(win, qtbot)
    assert win.doc.graph.nodes["5"].params["seed"] == 8  # advanced for the next run
    win.doc.set_title("3", "Edited since")
    win.dialogs.unsaved_answer = "discard"
    panel = win.history_panel
    panel.list.setCurrentRow(0)
    qtbot.mouseClick(panel.restore_btn, Qt.LeftButton)
    assert ("unsaved", "untitled") in win.dialogs.asked
    assert win.doc.graph.nodes["5"].params["seed"] == 7 and win.doc.graph.nodes["3"].title is None
    assert win.doc.path is None


def test_the_history_is_kept_across_restarts(make_window, qtbot, settings):
    win = make_window(seeded_image_graph())
    run_once(win, qtbot)
    win.close()
    again = make_window(settings_=settings)
    assert again.history_panel.list.count() == 1
    assert "seed 7" in again.history_panel.list.item(0).text()
    assert settings.history_dir is not None and any(settings.history_dir.iterdir())
