"""Running from the editor: the worker thread, node states, images, stop, errors, the cache."""
from __future__ import annotations

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor

from conftest import item_point, pixel, row_point, click
from graphs import image_graph
from nodegraph.graph import Graph

P = "testpack."


def run_and_wait(win, qtbot, timeout=10_000):
    with qtbot.waitSignal(win.runner.run_finished, timeout=timeout) as blocker:
        win.run()
    return blocker.args[0]


def test_run_shows_the_output_image_on_the_node_and_in_the_viewer(make_window, qtbot):
    win = make_window(image_graph())
    out = run_and_wait(win, qtbot)
    assert out.status == "finished"
    assert sorted(out.executed) == ["1", "2", "3"]
    img = win.viewer.current()
    assert img is not None and (img.width(), img.height()) == (64, 48)
    assert img.pixelColor(10, 10) == QColor(255, 0, 0)
    item = win.scene.node_items["3"]
    assert item.state == "done" and item.image_rect is not None
    # the red image is painted inside the preview node
    centre = item.mapToScene(item.image_rect.center())
    c = pixel(win.view, centre)
    assert c.red() > 200 and c.green() < 40 and c.blue() < 40
    assert win.log.timings.topLevelItemCount() == 3


def test_editing_a_param_reruns_only_what_changed(make_window, qtbot):
    win = make_window(image_graph())
    run_and_wait(win, qtbot)
    click(win.view, row_point(win.view, "2", "steps", "right"))  # 3 -> 4 steps
    assert win.scene.node_items["2"].state is None  # stale marks go away
    assert win.scene.node_items["1"].state == "done"
    out = run_and_wait(win, qtbot)
    assert out.cached == ["1"] and sorted(out.executed) == ["2", "3"]
    assert win.scene.node_items["1"].state == "cached"
    # a cached node is outlined in the "cached" colour
    cs = [pixel(win.view, item_point(win.view, "1", x, 60)) for x in (-2, -1, 0)]
    assert any(abs(c.green() - QColor("#26a69a").green()) < 30 and c.red() < 80 for c in cs)


def test_stop_interrupts_a_running_node_within_a_step(make_window, qtbot):
    g = image_graph()
    g.nodes["2"].params.update(steps=2000, delay=0.01)
    win = make_window(g)
    assert win.run()
    qtbot.waitUntil(lambda: win.scene.node_items["2"].progress is not None, timeout=5000)
    assert win.act_stop.isEnabled()
    with qtbot.waitSignal(win.runner.run_finished, timeout=3000) as blocker:
        qtbot.keyClick(win.view.viewport(), Qt.Key_Escape)
    out = blocker.args[0]
    assert out.status == "interrupted" and out.node_id == "2"
    assert win.scene.node_items["2"].state == "interrupted"
    assert win.act_run.isEnabled() and not win.act_stop.isEnabled()


def test_stop_right_after_run_is_never_lost_to_the_worker_starting(make_window, qtbot):
    g = image_graph()
    g.nodes["2"].params.update(steps=2000, delay=0.01)
    win = make_window(g)
    for _ in range(3):
        with qtbot.waitSignal(win.runner.run_finished, timeout=5000) as blocker:
            assert win.run()
            win.stop()  # before the worker thread has begun the run
        # taken out of the queue if it had not started yet, else stopped at its first step
        assert blocker.args[0].status in ("cancelled", "interrupted")
        assert not win.runner.running


def test_progress_shows_on_the_node_with_its_preview(make_window, qtbot):
    g = image_graph()
    g.nodes["2"].params.update(steps=400, delay=0.01)
    win = make_window(g)
    assert win.run()
    item = win.scene.node_items["2"]
    qtbot.waitUntil(lambda: item.preview is not None and item.progress[0] >= 2, timeout=5000)
    assert item.state == "running" and item.progress[1] == 400
    assert item.image_rect is not None  # the live preview is laid out on the node
    win.stop()
    qtbot.waitUntil(lambda: not win.runner.running, timeout=5000)


def test_validation_problems_highlight_nodes_before_anything_runs(make_window, qtbot):
    g = Graph()
    g.add_node(P + "Preview", {}, id="1", pos=(0, 0))  # its images input is not connected
    g.add_node(P + "SolidImage", {"width": 0}, id="2", pos=(0, 200))  # below the minimum
    g.add_node(P + "Preview", {}, id="3", pos=(300, 200))
    g.connect("2", "IMAGE", "3", "images")
    win = make_window(g)
    out = run_and_wait(win, qtbot)
    assert out.status == "invalid"
    items = win.scene.node_items
    assert "input images" in items["1"].problems
    assert "param width" in items["2"].problems
    assert win.log.problems.topLevelItemCount() >= 2
    # the problem node is outlined in red
    c = pixel(win.view, item_point(win.view, "1", 0.3, items["1"].h - 8))
    assert c.red() > 180 and c.green() < 120
    # the bad param row is outlined too
    row = items["2"]._row_by_name["width"].rect
    c = pixel(win.view, items["2"].mapToScene(QPointF(row.center().x(), row.top() + 0.3)))
    assert c.red() > 150 and c.green() < 120
    assert all(it.state is None for it in items.values())  # nothing ran


def test_fixing_a_problem_clears_its_highlight(make_window, qtbot):
    g = Graph()
    g.add_node(P + "SolidImage", {"width": 0}, id="1", pos=(0, 0))
    g.add_node(P + "Preview", {}, id="2", pos=(300, 0))
    g.connect("1", "IMAGE", "2", "images")
    win = make_window(g)
    run_and_wait(win, qtbot)
    assert win.scene.node_items["1"].problems
    win.doc.set_param("1", "width", 16)
    qtbot.waitUntil(lambda: not win.scene.node_items["1"].problems, timeout=3000)


def test_a_failing_node_turns_red_with_its_message(make_window, qtbot):
    g = image_graph()
    g.add_node(P + "Fail", {"message": "out of paint"}, id="4", pos=(300, 250))
    g.connect("1", "IMAGE", "4", "image")
    g.connect("4", "IMAGE", "3", "images")
    win = make_window(g)
    out = run_and_wait(win, qtbot)
    assert out.status == "failed" and out.node_id == "4"
    item = win.scene.node_items["4"]
    assert item.state == "failed" and "out of paint" in item.error
    # the message box under the node is drawn in red tones
    c = pixel(win.view, item.mapToScene(QPointF(3, item.h + 8)))
    assert c.red() > c.green() + 30
    assert "out of paint" in win.log.log.toPlainText()


def test_seed_control_after_run_advances_the_seed_as_an_undo_step(make_window, qtbot):
    g = Graph()
    g.add_node(P + "Seeded", {"seed": 5}, id="1", pos=(0, 0))
    g.add_node(P + "SolidImage", {}, id="2", pos=(0, 200))
    g.add_node(P + "Preview", {}, id="3", pos=(300, 200))
    g.connect("2", "IMAGE", "3", "images")
    g.connect("1", "FLOAT", "2", "red")  # a link into a param overrides it
    win = make_window(g)
    out = run_and_wait(win, qtbot)
    assert out.status == "finished"
    assert win.doc.graph.nodes["1"].params["seed"] == 6  # "increment" is the default
    win.doc.undo.undo()
    assert win.doc.graph.nodes["1"].params["seed"] == 5


def test_runs_do_not_block_the_ui(make_window, qtbot):
    g = image_graph()
    g.nodes["2"].params.update(steps=50, delay=0.02)
    win = make_window(g)
    assert win.run()
    # the UI thread keeps handling edits while the worker runs
    win.doc.set_title("1", "Red")
    assert win.runner.running
    assert win.doc.graph.nodes["1"].title == "Red"
    qtbot.waitUntil(lambda: not win.runner.running, timeout=10_000)


def test_the_runner_forwards_the_engines_events_in_order_with_their_images(registry, qtbot, tmp_path):
    from nodegraph import events as ev
    from nodegraph.api import Session
    from nodegraph.context import RunOptions
    from nodegraph.executor import OutputCache

    from gui.runner import Runner

    runner = Runner(Session(registry, options=RunOptions(output_dir=tmp_path), cache=OutputCache()))
    heard = []
    runner.event.connect(lambda e, images: heard.append((e, images)))
    with qtbot.waitSignal(runner.run_finished, timeout=10_000):
        assert runner.start(image_graph())
    steps = [(type(e), getattr(e, "node_id", None)) for e, _ in heard if not isinstance(e, ev.Progress)]
    assert steps == [(ev.RunStarted, None),
                     (ev.NodeStarted, "1"), (ev.NodeFinished, "1"),
                     (ev.NodeStarted, "2"), (ev.NodeFinished, "2"),
                     (ev.NodeStarted, "3"), (ev.NodeFinished, "3"), (ev.RunFinished, None)]
    progress = [(e, images) for e, images in heard if isinstance(e, ev.Progress)]
    last, preview = progress[-1]
    assert (last.step, last.total) == (3, 3)  # coalescing never drops the last step
    assert preview[0].size().toTuple() == (8, 8) and preview[0].pixelColor(0, 0) == QColor(255, 255, 255)
    shown = dict((e.node_id, images) for e, images in heard if isinstance(e, ev.NodeFinished))
    assert shown["1"] == [] and shown["2"] == []
    assert [(i.width(), i.height()) for i in shown["3"]] == [(64, 48)]
    assert shown["3"][0].pixelColor(10, 10) == QColor(255, 0, 0)


# -- run what the outputs need; failures told once, with their details ----------------------------
def test_a_broken_node_no_output_needs_is_a_warning_on_the_node_and_the_run_goes_on(make_window, qtbot):
    g = image_graph()
    g.add_node(P + "Slow", {"steps": 0}, id="9", pos=(0, 300))  # pasted beside: unconnected, bad
    win = make_window(g)
    out = run_and_wait(win, qtbot)
    assert out.status == "finished" and sorted(out.executed) == ["1", "2", "3"]
    item = win.scene.node_items["9"]
    assert set(item.warnings) == {"input image", "param steps"} and not item.problems
    rows = [win.log.problems.topLevelItem(i) for i in range(win.log.problems.topLevelItemCount())]
    assert {r.text(0) for r in rows} == {"9"}
    assert all("no output needs this node" in r.text(2) for r in rows)
    c = pixel(win.view, item_point(win.view, "9", 0.3, item.h - 8))  # outlined in orange
    assert c.red() > 200 and 120 < c.green() < 190 and c.blue() < 90


def test_problems_show_as_soon_as_a_file_is_opened(make_window, qtbot, tmp_path):
    from nodegraph import format as graph_format

    g = Graph()
    g.add_node(P + "Preview", {}, id="1", pos=(0, 0))  # nothing feeds its images
    path = graph_format.save(g, tmp_path / "broken.json")
    win = make_window()
    assert win.load(path)
    qtbot.waitUntil(lambda: "input images" in win.scene.node_items["1"].problems, timeout=3000)
    assert win.log.tabText(2) == "Problems (1)"


def failing_graph(node_type: str, message: str) -> Graph:
    g = image_graph()
    g.add_node(P + node_type, {"message": message}, id="4", pos=(300, 250))
    g.connect("1", "IMAGE", "4", "image")
    g.connect("4", "IMAGE", "3", "images")
    return g


def test_a_failure_on_purpose_shows_its_message_alone_logged_once_and_listed(make_window, qtbot):
    win = make_window(failing_graph("Refuse", "the mask is smaller than the image; resize it"))
    out = run_and_wait(win, qtbot)
    assert out.status == "failed" and out.node_id == "4"
    assert win.scene.node_items["4"].error == "the mask is smaller than the image; resize it"
    assert win.log.log.toPlainText().count("the mask is smaller than the image") == 1
    row = win.log.problems.topLevelItem(0)
    assert (row.text(0), row.text(2)) == ("4", "the mask is smaller than the image; resize it")


def test_a_bug_names_its_exception_and_details_give_its_traceback(make_window, qtbot):
    win = make_window(failing_graph("Fail", "out of paint"))
    run_and_wait(win, qtbot)
    item = win.scene.node_items["4"]
    assert item.error == "ValueError: out of paint"
    log = win.log.log.toPlainText()
    assert log.count("out of paint") == 1 and "a bug" in log and "Traceback" not in log
    # right-click the failed node: its menu offers the details
    click(win.view, item.mapToScene(QPointF(60, 10)), Qt.RightButton)
    (action,) = [a for a in win.view.menus.shown.actions() if a.text() == "Error details…"]
    action.trigger()
    (title, text), = win.dialogs.details_shown
    assert "Node 4 failed" in title and "Traceback" in text and "ValueError: out of paint" in text


def test_the_problems_tab_gives_a_failures_details_on_request(make_window, qtbot):
    win = make_window(failing_graph("Refuse", "no"))
    run_and_wait(win, qtbot)
    tree = win.log.problems
    rect = tree.visualItemRect(tree.topLevelItem(0))
    tree.customContextMenuRequested.emit(rect.center())
    (action,) = [a for a in win.log.menu.actions() if a.text() == "Details…"]
    action.trigger()
    (title, text), = win.dialogs.details_shown
    assert "NodeError: no" in text


def test_files_a_run_writes_are_links_that_open_their_folder(make_window, qtbot, tmp_path):
    g = Graph()
    g.add_node("example_pack.PromptTemplate", {}, id="1", pos=(0, 0))
    g.add_node("example_pack.SaveText", {"filename_prefix": "linked"}, id="2", pos=(400, 0))
    g.connect("1", "text", "2", "text")
    win = make_window(g)
    run_and_wait(win, qtbot)
    written = str(tmp_path / "out" / "linked_00001.txt")
    browser = win.log.log
    found = browser.document().find(written)
    assert not found.isNull() and found.charFormat().isAnchor()
    browser.setTextCursor(found)
    at = browser.cursorRect(found).center()
    at.setX(at.x() - 20)  # inside the link's text
    click_widget(browser.viewport(), at)
    assert win.dialogs.folders_opened == [written]


def click_widget(widget, at):
    from PySide6.QtCore import QEvent, QPointF as F
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    for kind, buttons in ((QEvent.MouseButtonPress, Qt.LeftButton), (QEvent.MouseButtonRelease, Qt.NoButton)):
        QApplication.sendEvent(widget, QMouseEvent(kind, F(at), F(widget.mapToGlobal(at)), Qt.LeftButton,
                                                   buttons, Qt.NoModifier))
