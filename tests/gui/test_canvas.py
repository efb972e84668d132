"""Editing on the canvas the way a user does: events go to the view's viewport; assertions are on
the graph and on the pixels drawn."""
from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from conftest import (click, double_click, drag, drag_viewport, input_socket, item_point, mouse, output_socket,
                      pixel, row_point, wheel)
from nodegraph.graph import Graph

P = "testpack."


def two_nodes(kind_a="SolidImage", kind_b="Preview") -> Graph:
    g = Graph()
    g.add_node(P + kind_a, {}, id="1", pos=(0, 0))
    g.add_node(P + kind_b, {}, id="2", pos=(400, 40))
    return g


def close_to(c: QColor, hex_color: str, tol: int = 40) -> bool:
    want = QColor(hex_color)
    return all(abs(a - b) <= tol for a, b in ((c.red(), want.red()), (c.green(), want.green()),
                                              (c.blue(), want.blue())))


def fill_defaults(win, g: Graph) -> Graph:
    for n in g.nodes.values():
        n.params = {**win.doc.registry[n.type].default_params(), **n.params}
    return g


# -- adding nodes -----------------------------------------------------------------------------
def test_tab_opens_search_and_enter_adds_the_best_match(window, qtbot: QtBot):
    view = window.view
    mouse(view, "move", QPointF(100, 100), Qt.NoButton)
    qtbot.keyClick(view.viewport(), Qt.Key_Tab)
    assert view.search.isVisible()
    qtbot.keyClicks(view.search.edit, "solid img")
    assert view.search.results()[0] == P + "SolidImage"
    qtbot.keyClick(view.search.edit, Qt.Key_Return)
    nodes = list(window.doc.graph.nodes.values())
    assert [n.type for n in nodes] == [P + "SolidImage"]
    assert nodes[0].params["width"] == 64  # defaults filled in
    assert abs(nodes[0].pos[0] - 100) <= 1 and abs(nodes[0].pos[1] - 100) <= 1
    # the node is drawn: its title band has the "image" category colour
    assert close_to(pixel(view, item_point(view, nodes[0].id, 120, 5)), "#2e6b5b")
    window.doc.undo.undo()
    assert len(window.doc.graph) == 0
    assert not window.view.gs.node_items
    window.doc.undo.redo()
    assert [n.type for n in window.doc.graph.nodes.values()] == [P + "SolidImage"]


def test_double_click_on_empty_canvas_opens_search(window):
    double_click(window.view, QPointF(50, 50))
    assert window.view.search.isVisible()
    assert window.view.search.hint.isHidden()  # not filtered


def test_library_double_click_adds_node(window):
    lib = window.library
    lib.filter.setText("invert")
    item = lib.tree.topLevelItem(0)
    assert item.data(0, Qt.UserRole) == "example_pack.InvertImage"
    lib.tree.itemActivated.emit(item, 0)
    assert [n.type for n in window.doc.graph.nodes.values()] == ["example_pack.InvertImage"]


# -- wiring -------------------------------------------------------------------------------------
def test_dragging_output_to_compatible_input_connects(make_window):
    win = make_window(two_nodes())
    view = win.view
    drag(view, output_socket(view, "1", "IMAGE"), input_socket(view, "2", "images"))
    links = win.doc.graph.links
    assert [(lk.src, lk.output, lk.dst, lk.input) for lk in links] == [("1", "IMAGE", "2", "images")]
    # the wire is drawn in the IMAGE colour between the sockets
    wire = view.gs.wires[("2", "images")]
    mid = wire.path().pointAtPercent(0.5)
    assert close_to(pixel(view, mid), "#64b5f6", 50)
    win.doc.undo.undo()
    assert win.doc.graph.links == []
    assert ("2", "images") not in view.gs.wires
    win.doc.undo.redo()
    assert len(win.doc.graph.links) == 1


def test_dragging_to_an_incompatible_input_is_refused(make_window):
    win = make_window(two_nodes("Number", "Preview"))
    view = win.view
    drag(view, output_socket(view, "1", "FLOAT"), input_socket(view, "2", "images"))
    assert win.doc.graph.links == []
    assert win.doc.undo.count() == 0


def test_while_dragging_compatible_inputs_highlight_and_others_dim(make_window):
    g = two_nodes()
    g.add_node(P + "TextEncode", {}, id="3", pos=(400, 300))
    win = make_window(g)
    view = win.view
    a = output_socket(view, "1", "IMAGE")
    mouse(view, "press", a)
    mouse(view, "move", a + QPointF(60, 60), buttons=Qt.LeftButton)
    ok = pixel(view, input_socket(view, "2", "images") + QPointF(-7.5, 0))  # the white ring
    assert ok.lightness() > 200
    clip = pixel(view, input_socket(view, "3", "clip"))  # CLIP input: dimmed
    assert clip.lightness() < QColor("#ffd54f").lightness() - 40
    mouse(view, "release", a + QPointF(60, 60))


def test_dropping_a_wire_on_empty_canvas_opens_filtered_search_and_connects(make_window, qtbot):
    g = Graph()
    g.add_node(P + "SolidImage", {}, id="1", pos=(0, 0))
    win = make_window(g)
    view = win.view
    drop = QPointF(450, 150)
    drag(view, output_socket(view, "1", "IMAGE"), drop)
    assert view.search.isVisible()
    results = view.search.results()
    assert P + "Preview" in results and "example_pack.InvertImage" in results
    assert P + "Number" not in results and P + "TextEncode" not in results
    qtbot.keyClicks(view.search.edit, "preview")
    qtbot.keyClick(view.search.edit, Qt.Key_Return)
    new = [n for n in win.doc.graph.nodes.values() if n.id != "1"]
    assert [n.type for n in new] == [P + "Preview"]
    assert [(lk.src, lk.dst, lk.input) for lk in win.doc.graph.links] == [("1", new[0].id, "images")]
    win.doc.undo.undo()  # one step removes node and link
    assert len(win.doc.graph) == 1 and win.doc.graph.links == []


def test_dragging_a_connected_input_away_disconnects(make_window):
    g = two_nodes()
    g.connect("1", "IMAGE", "2", "images")
    win = make_window(g)
    view = win.view
    drag(view, input_socket(view, "2", "images"), QPointF(300, 400))
    assert win.doc.graph.links == []
    win.doc.undo.undo()
    assert len(win.doc.graph.links) == 1


def test_connecting_into_a_connected_input_replaces_the_link(make_window):
    g = two_nodes()
    g.add_node(P + "SolidImage", {}, id="3", pos=(0, 300))
    g.connect("1", "IMAGE", "2", "images")
    win = make_window(g)
    view = win.view
    drag(view, output_socket(view, "3", "IMAGE"), input_socket(view, "2", "images"))
    assert [(lk.src, lk.dst) for lk in win.doc.graph.links] == [("3", "2")]
    win.doc.undo.undo()
    assert [(lk.src, lk.dst) for lk in win.doc.graph.links] == [("1", "2")]


# -- params -------------------------------------------------------------------------------------
def test_clicking_a_number_arrow_steps_it(make_window):
    win = make_window(fill_defaults_graph := two_nodes())
    fill_defaults(win, fill_defaults_graph)
    view = win.view
    click(view, row_point(view, "1", "width", "right"))
    assert win.doc.graph.nodes["1"].params["width"] == 72  # step 8
    click(view, row_point(view, "1", "width", "left"))
    click(view, row_point(view, "1", "width", "left"))
    assert win.doc.graph.nodes["1"].params["width"] == 56
    win.doc.undo.undo()
    assert win.doc.graph.nodes["1"].params["width"] == 64


def test_dragging_a_number_changes_it_in_one_undo_step(make_window):
    win = make_window(two_nodes())
    view = win.view
    a = row_point(view, "1", "red")
    drag(view, a, a - QPointF(30, 0), steps=10)  # 30 px left = 5 steps of 0.01
    assert win.doc.graph.nodes["1"].params["red"] == 0.95
    assert win.doc.undo.count() == 1
    win.doc.undo.undo()
    assert win.doc.graph.nodes["1"].params.get("red", 1.0) == 1.0


def test_typing_a_value_in_the_inline_editor(make_window, qtbot):
    win = make_window(two_nodes())
    view = win.view
    click(view, row_point(view, "1", "height"))
    editor = view.inline.widget
    assert editor is not None and editor.isVisible()
    editor.selectAll()
    qtbot.keyClicks(editor, "100")
    qtbot.keyClick(editor, Qt.Key_Return)
    assert view.inline.widget is None  # the widget exists only while editing
    assert win.doc.graph.nodes["1"].params["height"] == 100
    win.doc.undo.undo()
    assert win.doc.graph.nodes["1"].params.get("height", 48) == 48


def test_multiline_prompt_commits_on_ctrl_enter_and_escape_cancels(make_window, qtbot):
    g = Graph()
    g.add_node(P + "Text", {"text": "hello"}, id="1", pos=(0, 0))
    win = make_window(g)
    view = win.view
    click(view, row_point(view, "1", "text"))
    ed = view.inline.widget
    ed.selectAll()
    qtbot.keyClicks(ed, "a red fox")
    qtbot.keyClick(ed, Qt.Key_Return)  # a new line, not a commit
    qtbot.keyClicks(ed, "in snow")
    qtbot.keyClick(ed, Qt.Key_Return, Qt.ControlModifier)
    assert win.doc.graph.nodes["1"].params["text"] == "a red fox\nin snow"
    click(view, row_point(view, "1", "text"))
    qtbot.keyClicks(view.inline.widget, "zzz")
    qtbot.keyClick(view.inline.widget, Qt.Key_Escape)
    assert win.doc.graph.nodes["1"].params["text"] == "a red fox\nin snow"


def test_toggle_and_combo_arrows(make_window):
    g = Graph()
    g.add_node(P + "Save", {}, id="1", pos=(0, 0))
    g.add_node(P + "Sampler", {}, id="2", pos=(300, 0))
    win = make_window(g)
    view = win.view
    click(view, row_point(view, "1", "embed_graph", "right"))
    assert win.doc.graph.nodes["1"].params["embed_graph"] is False
    click(view, row_point(view, "2", "sampler_name", "right"))
    assert win.doc.graph.nodes["2"].params["sampler_name"] == "euler_ancestral"
    click(view, row_point(view, "2", "scheduler", "left"))
    assert win.doc.graph.nodes["2"].params["scheduler"] == "simple"  # wraps around


def test_params_panel_edits_through_undo(make_window):
    win = make_window(two_nodes())
    win.view.gs.node_items["1"].setSelected(True)
    assert win.params.node_id == "1"
    w = win.params._widgets["width"]
    w.setValue(128)
    w.editingFinished.emit()
    assert win.doc.graph.nodes["1"].params["width"] == 128
    win.doc.undo.undo()
    assert w.value() == 64  # the panel follows the graph


# -- selection, moving, deleting -------------------------------------------------------------------
def test_moving_a_selection_is_one_undo_step(make_window):
    win = make_window(two_nodes())
    view = win.view
    view.select_all()
    title = item_point(view, "1", 100, 10)
    drag(view, title, title + QPointF(50, 30), steps=8)
    g = win.doc.graph
    assert g.nodes["1"].pos == (50, 30) and g.nodes["2"].pos == (450, 70)
    assert win.doc.undo.count() == 1
    win.doc.undo.undo()
    assert g.nodes["1"].pos == (0, 0) and g.nodes["2"].pos == (400, 40)
    assert view.gs.node_items["2"].pos() == QPointF(400, 40)


def test_a_drag_keeps_the_mouse_until_its_own_button_comes_up(make_window):
    win = make_window(two_nodes())
    view = win.view
    title = item_point(view, "1", 100, 10)
    mouse(view, "press", title)
    mouse(view, "move", title + QPointF(20, 0), buttons=Qt.LeftButton)
    both = Qt.LeftButton | Qt.RightButton
    mouse(view, "press", title + QPointF(20, 0), Qt.RightButton, buttons=both)  # no menu
    mouse(view, "release", title + QPointF(20, 0), Qt.RightButton, buttons=Qt.LeftButton)
    mouse(view, "move", title + QPointF(50, 30), buttons=Qt.LeftButton)
    assert view.gs.node_items["1"].pos() == QPointF(50, 30)  # still following the mouse
    mouse(view, "release", title + QPointF(50, 30))
    assert win.doc.graph.nodes["1"].pos == (50, 30) and win.doc.undo.count() == 1
    assert view._menu is None


def test_snap_to_grid_rounds_positions(make_window):
    win = make_window(two_nodes())
    view = win.view
    view.actions_by_name["snap"].trigger()
    title = item_point(view, "1", 100, 10)
    drag(view, title, title + QPointF(33, 47))
    assert win.doc.graph.nodes["1"].pos == (40, 40)


def test_rubber_band_selects_nodes(make_window):
    win = make_window(two_nodes())
    view = win.view
    drag(view, QPointF(-40, -60), QPointF(250, 200), steps=5)
    assert win.view.gs.selected_node_ids() == ["1"]


def test_delete_key_removes_selection_and_undo_restores_links(make_window, qtbot):
    g = two_nodes()
    g.connect("1", "IMAGE", "2", "images")
    win = make_window(g)
    view = win.view
    click(view, item_point(view, "1", 100, 10))
    qtbot.keyClick(view.viewport(), Qt.Key_Delete)
    assert list(win.doc.graph.nodes) == ["2"] and win.doc.graph.links == []
    win.doc.undo.undo()
    assert sorted(win.doc.graph.nodes) == ["1", "2"] and len(win.doc.graph.links) == 1
    assert ("2", "images") in view.gs.wires


def test_copy_paste_makes_new_nodes_with_their_links(make_window, qtbot):
    g = two_nodes()
    g.connect("1", "IMAGE", "2", "images")
    g.nodes["1"].params["red"] = 0.25
    win = make_window(g)
    view = win.view
    view.select_all()
    qtbot.keyClick(view.viewport(), Qt.Key_C, Qt.ControlModifier)
    text = QApplication.clipboard().text()
    assert '"format": "nodegraph"' in text
    mouse(view, "move", QPointF(100, 300), Qt.NoButton)
    qtbot.keyClick(view.viewport(), Qt.Key_V, Qt.ControlModifier)
    graph = win.doc.graph
    assert len(graph) == 4
    new = sorted(set(graph.nodes) - {"1", "2"}, key=int)
    assert [graph.nodes[i].type for i in new] == [P + "SolidImage", P + "Preview"]
    assert graph.nodes[new[0]].params["red"] == 0.25
    assert graph.nodes[new[0]].pos == (100, 300)  # pasted at the cursor
    assert graph.link_into(new[1], "images").src == new[0]
    assert sorted(view.gs.selected_node_ids(), key=int) == new
    win.doc.undo.undo()
    assert sorted(graph.nodes) == ["1", "2"]


def test_paste_works_between_windows(make_window, qtbot):
    a = make_window(two_nodes())
    b = make_window()
    a.view.select_all()
    a.view.copy_selection()
    b.view.paste()
    assert sorted(n.type for n in b.doc.graph.nodes.values()) == [P + "Preview", P + "SolidImage"]


def test_duplicate(make_window, qtbot):
    win = make_window(two_nodes())
    click(win.view, item_point(win.view, "1", 100, 10))
    qtbot.keyClick(win.view.viewport(), Qt.Key_D, Qt.ControlModifier)
    assert len(win.doc.graph) == 3
    new = win.view.gs.selected_node_ids()[0]
    assert win.doc.graph.nodes[new].pos == (30, 30)


# -- groups, bypass, collapse, reroutes --------------------------------------------------------
def test_group_frames_selection_and_moves_its_nodes(make_window, qtbot):
    win = make_window(two_nodes())
    view = win.view
    view.select_all()
    qtbot.keyClick(view.viewport(), Qt.Key_G, Qt.ControlModifier)
    g = win.doc.graph
    assert len(g.groups) == 1
    x, y, w, h = g.groups[0].rect
    assert x < 0 and y < 0 and x + w > 400
    view.gs.clearSelection()
    title = QPointF(x + 60, y + 12)
    drag(view, title, title + QPointF(100, 0))
    assert g.groups[0].rect[0] == x + 100
    assert g.nodes["1"].pos == (100, 0) and g.nodes["2"].pos == (500, 40)
    win.doc.undo.undo()  # the move
    assert g.nodes["1"].pos == (0, 0) and g.groups[0].rect[0] == x
    win.doc.undo.undo()  # the group
    assert g.groups == []


def test_bypass_mute_collapse_toggle_and_undo(make_window, qtbot):
    win = make_window(two_nodes())
    view = win.view
    click(view, item_point(view, "1", 100, 10))
    vp = view.viewport()
    qtbot.keyClick(vp, Qt.Key_B, Qt.ControlModifier)
    assert win.doc.graph.nodes["1"].mode == "bypassed"
    qtbot.keyClick(vp, Qt.Key_M, Qt.ControlModifier)
    assert win.doc.graph.nodes["1"].mode == "muted"
    h = view.gs.node_items["1"].h
    qtbot.keyClick(vp, Qt.Key_C, Qt.AltModifier)
    assert win.doc.graph.nodes["1"].extra.get("collapsed") is True
    assert view.gs.node_items["1"].h < h
    for _ in range(3):
        win.doc.undo.undo()
    assert win.doc.graph.nodes["1"].mode == "normal" and "collapsed" not in win.doc.graph.nodes["1"].extra


def test_double_click_on_a_wire_adds_a_reroute_point(make_window):
    g = two_nodes()
    g.connect("1", "IMAGE", "2", "images")
    win = make_window(g)
    view = win.view
    mid = view.gs.wires[("2", "images")].path().pointAtPercent(0.5)
    double_click(view, mid)
    link = win.doc.graph.link_into("2", "images")
    assert len(link.extra["reroutes"]) == 1
    # drag the reroute point down: the wire goes through it
    pt = view.gs.reroute_items[("2", "images")][0].pos()
    drag(view, pt, pt + QPointF(0, 120))
    link = win.doc.graph.link_into("2", "images")
    assert link.extra["reroutes"][0][1] == round(pt.y() + 120)
    path = view.gs.wires[("2", "images")].path()
    assert path.boundingRect().bottom() >= pt.y() + 119
    win.doc.undo.undo()
    win.doc.undo.undo()
    assert "reroutes" not in win.doc.graph.link_into("2", "images").extra


# -- zoom, pan, level of detail ----------------------------------------------------------------
def test_wheel_zooms_around_the_cursor(make_window):
    win = make_window(two_nodes())
    view = win.view
    view.set_zoom(1.0)
    anchor = QPointF(200, 60)
    before = view.mapFromScene(anchor)
    wheel(view, anchor, 240)
    assert view.zoom > 1.3
    after = view.mapFromScene(anchor)
    assert abs(after.x() - before.x()) <= 2 and abs(after.y() - before.y()) <= 2


def test_middle_drag_pans(make_window):
    win = make_window(two_nodes())
    view = win.view
    view.set_zoom(1.0)
    p = QPointF(200, 200)
    before = view.mapFromScene(p)
    drag_viewport(view, before, before + QPoint(100, 50))
    after = view.mapFromScene(p)
    assert abs((after - before).x() - 100) <= 2 and abs((after - before).y() - 50) <= 2


def test_fit_key_frames_all_nodes(make_window, qtbot):
    g = two_nodes()
    g.add_node(P + "Number", {}, id="3", pos=(3000, 2000))
    win = make_window(g)
    qtbot.keyClick(win.view.viewport(), Qt.Key_F)
    vr = win.view.mapToScene(win.view.viewport().rect()).boundingRect()
    assert vr.contains(QPointF(0, 0)) and vr.contains(QPointF(3100, 2050))


def test_zoomed_out_below_the_title_zoom_nodes_are_boxes_without_text(make_window):
    win = make_window(two_nodes())
    view = win.view
    view.set_zoom(0.12)
    view.centerOn(QPointF(200, 50))
    from gui.items.overview import _mix
    from gui import theme

    # one flat box tinted by its category: the same colour wherever there was text or a row
    body = _mix(theme.NODE_BODY, QColor("#2e6b5b"), 0.35).name()
    for x, y in ((30, 60), (100, 80), (150, 110)):
        assert close_to(pixel(view, item_point(view, "1", x, y)), body, 6)
    assert close_to(pixel(view, item_point(view, "1", 100, 10)), "#2e6b5b", 30)


def test_space_and_drag_pans(make_window, qtbot):
    win = make_window(two_nodes())
    view = win.view
    p = QPointF(200, 300)  # empty canvas
    before = view.mapFromScene(p)
    qtbot.keyPress(view.viewport(), Qt.Key_Space)
    drag_viewport(view, before, before + QPoint(-80, 40), button=Qt.LeftButton)
    qtbot.keyRelease(view.viewport(), Qt.Key_Space)
    after = view.mapFromScene(p)
    assert abs((after - before).x() + 80) <= 2 and abs((after - before).y() - 40) <= 2
    assert view.gs.selected_node_ids() == []  # no rubber band happened


def test_clicking_and_moving_work_when_zoomed_out(make_window):
    win = make_window(two_nodes())
    view = win.view
    view.set_zoom(0.1)
    view.centerOn(QPointF(200, 50))
    a = item_point(view, "2", 80, 40)
    drag(view, a, a + QPointF(200, 0))
    assert view.gs.selected_node_ids() == ["2"]
    assert win.doc.graph.nodes["2"].pos[0] >= 590


def test_dragging_from_an_empty_input_to_empty_canvas_offers_nodes_that_give_that_type(
        make_window, qtbot):
    g = Graph()
    g.add_node(P + "Preview", {}, id="1", pos=(400, 0))
    win = make_window(g)
    view = win.view
    drag(view, input_socket(view, "1", "images"), QPointF(100, 100))
    results = view.search.results()
    assert P + "SolidImage" in results and P + "TextEncode" not in results
    qtbot.keyClicks(view.search.edit, "solid")
    qtbot.keyClick(view.search.edit, Qt.Key_Return)
    link = win.doc.graph.link_into("1", "images")
    assert link is not None and win.doc.graph.nodes[link.src].type == P + "SolidImage"


def test_clicking_the_triangle_collapses_and_wires_follow(make_window):
    g = two_nodes()
    g.connect("1", "IMAGE", "2", "images")
    win = make_window(g)
    view = win.view
    click(view, item_point(view, "1", 11, 13))
    item = view.gs.node_items["1"]
    assert item.collapsed and item.h == 26
    QApplication.processEvents()
    start = view.gs.wires[("2", "images")].path().elementAt(0)
    assert abs(start.y - 13) <= 1  # the wire now leaves from the title bar


def test_double_click_on_title_renames(make_window, qtbot):
    win = make_window(two_nodes())
    view = win.view
    double_click(view, item_point(view, "1", 80, 12))
    ed = view.inline.widget
    ed.selectAll()
    qtbot.keyClicks(ed, "Base colour")
    qtbot.keyClick(ed, Qt.Key_Return)
    assert win.doc.graph.nodes["1"].title == "Base colour"
    win.doc.undo.undo()
    assert win.doc.graph.nodes["1"].title is None


def test_cut_removes_and_paste_brings_back(make_window, qtbot):
    win = make_window(two_nodes())
    view = win.view
    click(view, item_point(view, "1", 80, 12))
    qtbot.keyClick(view.viewport(), Qt.Key_X, Qt.ControlModifier)
    assert list(win.doc.graph.nodes) == ["2"]
    assert win.doc.undo.count() == 1  # one step
    view.paste()
    assert sorted(n.type for n in win.doc.graph.nodes.values()) == [P + "Preview", P + "SolidImage"]


def test_packs_dialog_lists_failed_packs_with_their_error(tmp_path, qtbot):
    from gui.panels.packs import PacksDialog
    from nodegraph.plugins import load_registry

    bad = tmp_path / "broken_pack"
    bad.mkdir()
    (bad / "__init__.py").write_text("import no_such_module_here\n")
    reg = load_registry(builtin=False, entry_points=False,
                        folders=[tmp_path, graphs_pack_folder()])
    dlg = PacksDialog(reg)
    qtbot.addWidget(dlg)
    rows = {dlg.tree.topLevelItem(i).text(0): dlg.tree.topLevelItem(i).text(1)
            for i in range(dlg.tree.topLevelItemCount())}
    assert rows == {"broken_pack": "failed", "testpack": "loaded"}
    assert "no_such_module_here" in dlg.detail.toPlainText()  # the failed one is shown first


def graphs_pack_folder():
    import graphs

    return graphs.HERE / "testpack"


def test_library_lists_pack_nodes_under_the_pack(window):
    tree = window.library.tree
    tops = [tree.topLevelItem(i).text(0) for i in range(tree.topLevelItemCount())]
    assert "pack: testpack" in tops and "pack: example_pack" in tops


def test_rubber_band_selects_when_zoomed_out(make_window):
    win = make_window(two_nodes())
    view = win.view
    view.set_zoom(0.1)
    view.centerOn(QPointF(200, 50))
    drag(view, QPointF(300, -200), QPointF(900, 300))
    assert view.gs.selected_node_ids() == ["2"]


def test_keys_typed_in_the_inline_editor_stay_in_it(make_window, qtbot):
    g = Graph()
    g.add_node(P + "Save", {"filename_prefix": "abc"}, id="1", pos=(0, 0))
    win = make_window(g)
    view = win.view
    click(view, row_point(view, "1", "filename_prefix"))
    ed = view.inline.widget
    ed.end(False)
    for key in (Qt.Key_Backspace, Qt.Key_Delete, Qt.Key_F):
        qtbot.keyClick(ed, key)
    qtbot.keyClick(ed, Qt.Key_C, Qt.ControlModifier)
    qtbot.keyClick(ed, Qt.Key_Return)
    assert list(win.doc.graph.nodes) == ["1"]  # Delete/Backspace did not delete the node
    assert win.doc.graph.nodes["1"].params["filename_prefix"] == "abf"


def test_group_resize_and_delete(make_window, qtbot):
    g = two_nodes()
    from nodegraph.graph import Group

    g.groups.append(Group("Frame", (-40, -60, 300, 300)))
    win = make_window(g)
    view = win.view
    corner = QPointF(-40 + 300 - 4, -60 + 300 - 4)
    drag(view, corner, corner + QPointF(200, 100))
    assert win.doc.graph.groups[0].rect == (-40, -60, 500, 400)
    click(view, QPointF(0, -50))  # the title bar selects the group
    qtbot.keyClick(view.viewport(), Qt.Key_Delete)
    assert win.doc.graph.groups == [] and len(win.doc.graph) == 2  # its nodes stay
    win.doc.undo.undo()
    win.doc.undo.undo()
    assert win.doc.graph.groups[0].rect == (-40, -60, 300, 300)


def test_seed_control_row_menu_sets_the_mode(make_window):
    g = Graph()
    g.add_node(P + "Sampler", {}, id="1", pos=(0, 0))
    win = make_window(g)
    view = win.view
    item = view.gs.node_items["1"]
    ctl = item._row_by_name["seed"].control
    click(view, item.mapToScene(ctl.center()))
    menu = view._menu
    assert menu.isVisible()
    chosen = {a.text(): a for a in menu.actions()}
    assert chosen["fixed"].isChecked()  # the spec's default mode
    chosen["randomize"].trigger()
    assert win.doc.graph.nodes["1"].control_after_run == {"seed": "randomize"}
    win.doc.undo.undo()
    assert win.doc.graph.nodes["1"].control_after_run == {}


def test_clicking_a_combo_value_offers_its_choices(make_window):
    g = Graph()
    g.add_node(P + "Sampler", {}, id="1", pos=(0, 0))
    win = make_window(g)
    view = win.view
    click(view, row_point(view, "1", "scheduler"))
    actions = {a.text(): a for a in view._menu.actions()}
    assert list(actions) == ["normal", "karras", "exponential", "simple"]
    actions["karras"].trigger()
    assert win.doc.graph.nodes["1"].params["scheduler"] == "karras"
