"""New nodes: defaults that work for a beginner (the first model file, the checkpoint's native size),
placed at the cursor or the nearest free spot, never on top of another node."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from safetensors.numpy import save_file

from conftest import FakeDialogs, mouse  # at import: later, "conftest" is another folder's
from gui.defaults import checkpoint_size
from nodegraph.graph import Graph

P = "testpack."
DEMO = "demo-shapes.safetensors"


def add_from_library(win, qtbot, query: str, type_id: str) -> str:
    """Type in the library's filter, double-click the node type: returns the new node's id."""
    lib = win.library
    lib.filter.setText(query)
    tree = lib.tree
    item = next(tree.topLevelItem(i) for i in range(tree.topLevelItemCount())
                if tree.topLevelItem(i).data(0, Qt.UserRole) == type_id)
    before = set(win.doc.graph.nodes)
    at = tree.visualItemRect(item).center()
    qtbot.mouseClick(tree.viewport(), Qt.LeftButton, pos=at)  # a double-click: press, release, press
    qtbot.mouseDClick(tree.viewport(), Qt.LeftButton, pos=at)
    (new,) = set(win.doc.graph.nodes) - before
    return new


@pytest.fixture
def sd_window(qtbot, settings, tmp_path):
    """A window on the built-in Stable Diffusion pack (the shipped demo checkpoint is its only model)."""
    from nodegraph.api import Session
    from nodegraph.context import RunOptions
    from nodegraph.plugins import load_registry

    from gui.window import MainWindow

    registry = load_registry(builtin=True, entry_points=False, folders=[], user=False)
    win = MainWindow(Session(registry, options=RunOptions(output_dir=tmp_path / "out")), settings)
    win.dialogs = FakeDialogs()
    qtbot.addWidget(win)
    win.resize(1400, 860)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.doc.undo.setClean()
    win.close()


def test_a_new_load_checkpoint_picks_the_first_checkpoint_offered(sd_window, qtbot):
    nid = add_from_library(sd_window, qtbot, "load checkpoint", "CheckpointLoaderSimple")
    assert sd_window.doc.graph.nodes[nid].params["ckpt_name"] == DEMO
    assert sd_window.runner.validate(sd_window.doc.graph)[0].code == "no_output_node"  # no ckpt problem


def test_a_new_empty_latent_takes_the_native_size_of_the_graphs_checkpoint(sd_window, qtbot):
    add_from_library(sd_window, qtbot, "load checkpoint", "CheckpointLoaderSimple")
    nid = add_from_library(sd_window, qtbot, "empty latent", "EmptyLatentImage")
    params = sd_window.doc.graph.nodes[nid].params
    assert (params["width"], params["height"]) == (64, 64)  # the demo checkpoint says modelspec.resolution 64x64


def test_without_a_checkpoint_in_the_graph_empty_latent_keeps_its_default(sd_window, qtbot):
    nid = add_from_library(sd_window, qtbot, "empty latent", "EmptyLatentImage")
    assert sd_window.doc.graph.nodes[nid].params["width"] == 512


def write_checkpoint(path, keys, metadata=None):
    save_file({k: np.zeros(1, np.float32) for k in keys}, str(path), metadata=metadata)
    return path


@pytest.mark.parametrize("keys, size", [
    (["model.diffusion_model.input_blocks.0.0.weight", "cond_stage_model.transformer.x"], (512, 512)),
    (["model.diffusion_model.input_blocks.0.0.weight", "cond_stage_model.model.x"], (768, 768)),
    (["model.diffusion_model.input_blocks.0.0.weight", "conditioner.embedders.1.model.x"], (1024, 1024)),
])
def test_without_a_stated_resolution_the_familys_usual_size_is_used(tmp_path, keys, size):
    assert checkpoint_size(str(write_checkpoint(tmp_path / "m.safetensors", keys))) == size


def test_a_stated_resolution_wins_and_is_rounded_to_the_latent_grid(tmp_path):
    path = write_checkpoint(tmp_path / "m.safetensors", ["model.diffusion_model.input_blocks.0.0.weight"],
                            {"modelspec.resolution": "1000x772"})
    assert checkpoint_size(str(path)) == (1000, 768)


def test_a_file_that_is_not_safetensors_gives_no_size(tmp_path):
    (tmp_path / "m.ckpt").write_bytes(b"PK\x03\x04 not a header")
    assert checkpoint_size(str(tmp_path / "m.ckpt")) is None


# -- placement ----------------------------------------------------------------------------------
def overlaps(win, a: str, b: str) -> bool:
    items = win.scene.node_items
    return items[a].sceneBoundingRect().intersects(items[b].sceneBoundingRect())


def test_a_library_node_lands_at_the_cursor_when_the_spot_is_free(make_window, qtbot):
    win = make_window(Graph())
    mouse(win.view, "move", QPointF(40, 30), Qt.NoButton)
    nid = add_from_library(win, qtbot, "solid", P + "SolidImage")
    assert win.doc.graph.nodes[nid].pos == (40, 30)


def test_a_library_node_never_lands_on_another_node(make_window, qtbot):
    g = Graph()
    g.add_node(P + "Slow", {}, id="1", pos=(0, 0))
    win = make_window(g)
    mouse(win.view, "move", QPointF(20, 20), Qt.NoButton)  # over node 1
    first = add_from_library(win, qtbot, "preview", P + "Preview")
    second = add_from_library(win, qtbot, "preview", P + "Preview")
    assert not overlaps(win, first, "1") and not overlaps(win, second, "1")
    assert not overlaps(win, first, second)
    x, y = win.doc.graph.nodes[first].pos
    assert abs(x - 20) + abs(y - 20) < 400  # nearby, not far away


def test_a_node_from_the_search_moves_off_the_node_under_the_cursor(make_window, qtbot):
    g = Graph()
    g.add_node(P + "Slow", {}, id="1", pos=(0, 0))
    win = make_window(g)
    mouse(win.view, "move", QPointF(30, 40), Qt.NoButton)
    qtbot.keyClick(win.view.viewport(), Qt.Key_Tab)
    qtbot.keyClicks(win.view.search.edit, "preview image")
    qtbot.keyClick(win.view.search.edit, Qt.Key_Return)
    (nid,) = set(win.doc.graph.nodes) - {"1"}
    assert not overlaps(win, nid, "1")
