"""Nothing typed is lost: every action that reads the graph first commits the text still being typed
(in the params panel or in the canvas's own editor), as one undo step."""
from __future__ import annotations

import json

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPlainTextEdit

from conftest import click, FakeDialogs, row_point  # at import: later, "conftest" is another folder's
from nodegraph.graph import Graph

P = "testpack."


def text_graph() -> Graph:
    """A prompt feeding a saved text file (example pack), nothing with a seed."""
    g = Graph()
    g.add_node("example_pack.PromptTemplate", {"subject": "a cat", "template": "{subject}"}, id="1",
               pos=(0, 0))
    g.add_node("example_pack.SaveText", {"filename_prefix": "typed"}, id="2", pos=(400, 0))
    g.connect("1", "text", "2", "text")
    return g


def prompt_graph() -> Graph:
    g = Graph()
    g.add_node(P + "Text", {"text": "old prompt"}, id="1", pos=(0, 0))
    return g


def typing_in_the_panel(win, qtbot, node_id: str, param: str, text: str) -> QPlainTextEdit:
    """Select the node on the canvas, then type into its param's box in the params panel."""
    click(win.view, win.scene.node_items[node_id].mapToScene(60, 10))
    box = win.params._widgets[param]
    box.setFocus()
    qtbot.keyClick(box, Qt.Key_End, Qt.ControlModifier)
    qtbot.keyClicks(box, text)
    return box


def typing_on_the_canvas(win, qtbot, node_id: str, param: str, text: str):
    """Double-click a prompt row on the canvas (its editor opens), then type."""
    click(win.view, row_point(win.view, node_id, param))
    editor = win.view.inline.widget
    assert editor is not None
    qtbot.keyClick(editor, Qt.Key_End, Qt.ControlModifier)
    qtbot.keyClicks(editor, text)
    return editor


def test_ctrl_enter_in_the_params_panel_runs_the_text_being_typed(make_window, qtbot):
    win = make_window(text_graph())
    box = typing_in_the_panel(win, qtbot, "1", "template", " in a hat")
    steps = win.doc.undo.count()
    with qtbot.waitSignal(win.runner.run_finished, timeout=10_000):
        qtbot.keyClick(box, Qt.Key_Return, Qt.ControlModifier)
    ran = win.runner.history.entries()[-1]
    assert ran.graph.nodes["1"].params["template"] == "{subject} in a hat"
    assert win.doc.graph.nodes["1"].params["template"] == "{subject} in a hat"
    assert win.doc.undo.count() == steps + 1  # the typing is one undo step
    assert win.params._widgets["template"] is box  # the editor stayed open


def test_ctrl_s_while_typing_on_the_canvas_saves_the_new_text(make_window, qtbot, tmp_path):
    win = make_window(prompt_graph())
    path = tmp_path / "typed.json"
    win.doc.path = path
    editor = typing_on_the_canvas(win, qtbot, "1", "text", " and new words")
    qtbot.keyClick(editor, Qt.Key_S, Qt.ControlModifier)
    saved = json.loads(path.read_text())
    assert saved["nodes"]["1"]["params"]["text"] == "old prompt and new words"
    assert not win.doc.dirty
    win.doc.undo.undo()
    assert win.doc.graph.nodes["1"].params["text"] == "old prompt"


def test_closing_while_typing_asks_to_save_the_typed_text_and_prints_no_error(make_window, qtbot,
                                                                              tmp_path, capfd):
    win = make_window(prompt_graph())
    path = tmp_path / "closing.json"
    win.dialogs.unsaved_answer = "save"
    win.dialogs.save_answer = str(path)
    typing_in_the_panel(win, qtbot, "1", "text", ", at night")
    assert not win.doc.dirty  # nothing committed yet: only typed
    win.close()
    assert ("unsaved", "untitled") in win.dialogs.asked
    assert json.loads(path.read_text())["nodes"]["1"]["params"]["text"] == "old prompt, at night"
    assert "RuntimeError" not in capfd.readouterr().err


def test_selecting_another_node_commits_what_was_typed(make_window, qtbot):
    g = prompt_graph()
    g.add_node(P + "Number", {}, id="2", pos=(0, 300))
    win = make_window(g)
    typing_in_the_panel(win, qtbot, "1", "text", "!")
    click(win.view, win.scene.node_items["2"].mapToScene(60, 10))
    assert win.params.node_id == "2"
    assert win.doc.graph.nodes["1"].params["text"] == "old prompt!"


def test_the_window_losing_focus_commits_what_was_typed(make_window, qtbot):
    win = make_window(prompt_graph())
    typing_in_the_panel(win, qtbot, "1", "text", " (kept)")
    other = make_window()
    other.activateWindow()
    qtbot.waitUntil(lambda: not win.isActiveWindow(), timeout=3000)
    assert win.doc.graph.nodes["1"].params["text"] == "old prompt (kept)"


def test_autosave_keeps_the_text_being_typed_and_the_editor_stays_open(make_window, qtbot):
    win = make_window(prompt_graph())
    editor = typing_on_the_canvas(win, qtbot, "1", "text", " typed")
    assert win.autosaver.autosave()
    saved = json.loads(win.autosaver.graph_file.read_text())
    assert saved["nodes"]["1"]["params"]["text"] == "old prompt typed"
    assert win.view.inline.widget is editor


def test_save_as_while_typing_writes_the_new_text(make_window, qtbot, tmp_path):
    win = make_window(prompt_graph())
    path = tmp_path / "saved-as.json"
    win.dialogs.save_answer = str(path)
    typing_on_the_canvas(win, qtbot, "1", "text", ", saved as")
    win.act_save_as.trigger()
    assert json.loads(path.read_text())["nodes"]["1"]["params"]["text"] == "old prompt, saved as"



def test_export_to_comfyui_while_typing_exports_the_new_text(qtbot, tmp_path):

    from gui.files import AppSettings
    from gui.window import MainWindow
    from nodegraph.api import Session
    from nodegraph.plugins import load_registry

    registry = load_registry(builtin=True, entry_points=False, folders=[], user=False)  # ComfyUI's types
    win = MainWindow(Session(registry), AppSettings.in_folder(tmp_path / "appdata"))
    win.dialogs = FakeDialogs()
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    g = Graph()
    g.add_node("PrimitiveStringMultiline", {"value": "old prompt"}, id="1", pos=(0, 0))
    win.doc.replace_graph(g, None)
    path = tmp_path / "prompt-api.json"
    win.dialogs.save_answer = str(path)
    typing_in_the_panel(win, qtbot, "1", "value", ", exported")
    win.act_export.trigger()
    assert json.loads(path.read_text())["1"]["inputs"]["value"] == "old prompt, exported"
    win.doc.undo.setClean()
    win.close()
