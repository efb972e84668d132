"""The mask painter, driven through real mouse events: opened from a Load Image node's menu; brush and
eraser with size and hardness; invert, clear and its own undo; zoom and pan; saving a new picture with the
mask as its alpha and pointing the node at it (one document undo step); the node's preview with the mask
tinted over it; a read-only input folder reported with the painting kept open."""
from __future__ import annotations

import json
import math
import os
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import click, item_point
from PIL import Image
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication

from nodegraph.graph import Graph
from nodegraph.plugins import load_registry

ROOT = Path(__file__).resolve().parents[2]
W, H = 48, 32


@pytest.fixture(scope="module")
def registry():
    """The built-in pack (Load Image) instead of the editor tests' stand-in packs."""
    return load_registry(builtin=True, entry_points=False, folders=[], user=False)


@pytest.fixture
def input_dir(tmp_path, monkeypatch) -> Path:
    """An input folder first in Load Image's search, holding picture.png (RGB, no alpha: an empty mask)."""
    folder = tmp_path / "input"
    folder.mkdir()
    yy, xx = np.mgrid[0:H, 0:W]
    rgb = np.stack([xx * 5, yy * 7, np.full_like(xx, 90)], -1).astype(np.uint8)
    Image.fromarray(rgb).save(folder / "picture.png")
    monkeypatch.setenv("NODEGRAPH_INPUT", str(folder))
    return folder


def load_image_graph(name: str = "picture.png") -> Graph:
    g = Graph()
    g.add_node("LoadImage", {"image": name}, id="1", pos=(0, 0))
    return g


@pytest.fixture
def painter(make_window, input_dir):
    """The painter opened through the node's right-click menu (its "Open in Mask Editor…" item)."""
    win = make_window(load_image_graph())
    view = win.view
    click(view, item_point(view, "1", 60, 10), Qt.RightButton)
    menu = view._menu
    (action,) = [a for a in menu.actions() if a.text() == "Open in Mask Editor…"]
    menu.close()
    action.trigger()
    dialog = view.mask_painter
    dialog.canvas.fit()
    QApplication.processEvents()
    yield dialog
    dialog.close()


def send(canvas, kind, image_pt, button=Qt.LeftButton, buttons=None):
    """A mouse event at an image point (pixel coordinates of the picture) on the canvas."""
    pos = canvas.to_widget(QPointF(*image_pt))
    types = {"press": QEvent.MouseButtonPress, "move": QEvent.MouseMove, "release": QEvent.MouseButtonRelease}
    if buttons is None:
        buttons = Qt.NoButton if kind == "release" else button
    ev = QMouseEvent(types[kind], pos, QPointF(canvas.mapToGlobal(pos.toPoint())),
                     Qt.NoButton if kind == "move" else button, buttons, Qt.NoModifier)
    QApplication.sendEvent(canvas, ev)


def stroke(canvas, a, b, steps=8, button=Qt.LeftButton):
    send(canvas, "press", a, button)
    for i in range(1, steps + 1):
        t = i / steps
        send(canvas, "move", (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t), button)
    send(canvas, "release", b, button)


def set_brush(dialog, size: int, hardness: float) -> None:
    dialog.size_slider.setValue(size)
    dialog.hardness_slider.setValue(round(hardness * 100))


def test_the_menu_of_a_load_image_node_opens_the_painter_on_its_picture_with_its_empty_mask(painter):
    assert painter.isVisible()
    assert painter.canvas.mask.shape == (H, W)
    assert not painter.canvas.mask.any()  # no alpha: nothing masked
    assert painter.picture.path.name == "picture.png"


def test_other_nodes_have_no_mask_editor_item(make_window, input_dir):
    g = load_image_graph()
    g.add_node("EmptyImage", {}, id="2", pos=(400, 0))
    win = make_window(g)
    click(win.view, item_point(win.view, "2", 60, 10), Qt.RightButton)
    assert "Open in Mask Editor…" not in [a.text() for a in win.view._menu.actions()]
    win.view._menu.close()


def test_a_hard_brush_stroke_masks_the_pixels_within_its_radius_and_nothing_else(painter):
    set_brush(painter, 6, 1.0)
    stroke(painter.canvas, (10, 16), (30, 16))
    mask = painter.canvas.mask
    rows, cols = np.mgrid[0:H, 0:W] + 0.5
    # distance of each pixel centre to the segment (10,16)-(30,16); the dabs are at most 1 pixel apart
    dist = np.hypot(np.maximum(np.maximum(10 - cols, cols - 30), 0), rows - 16)
    assert (mask[dist <= 2.5] == 1).all()
    assert (mask[dist > 3.0] == 0).all()


def test_a_soft_brush_falls_off_linearly_from_hardness_times_the_radius(painter):
    set_brush(painter, 20, 0.5)  # radius 10: full out to 5, zero at 10
    canvas = painter.canvas
    send(canvas, "press", (24.5, 16.5))
    send(canvas, "release", (24.5, 16.5))
    for col, expected in ((24, 1.0), (29, 1.0), (31, 0.6), (33, 0.2), (35, 0.0)):
        d = abs(col + 0.5 - 24.5)
        assert math.isclose(canvas.mask[16, col], min(1.0, max(0.0, (10 - d) / 5)), abs_tol=1e-6)
        assert math.isclose(canvas.mask[16, col], expected, abs_tol=1e-6)


def test_the_eraser_takes_back_what_the_brush_painted(painter):
    set_brush(painter, 8, 1.0)
    stroke(painter.canvas, (5, 10), (40, 10))
    painter.eraser_button.click()
    stroke(painter.canvas, (20, 10), (40, 10))
    mask = painter.canvas.mask
    assert mask[10, 8] == 1 and mask[10, 12] == 1
    assert (mask[6:15, 21:40] == 0).all()


def test_invert_clear_undo_and_redo_are_the_painters_own_and_leave_the_document_alone(painter):
    set_brush(painter, 8, 1.0)
    canvas, doc = painter.canvas, painter.doc
    undo_steps = doc.undo.count()
    stroke(canvas, (5, 5), (20, 5))
    painted = canvas.mask.copy()
    painter.invert_button.click()
    np.testing.assert_array_equal(canvas.mask, 1 - painted)
    painter.clear_button.click()
    assert not canvas.mask.any()
    painter.undo_button.click()
    np.testing.assert_array_equal(canvas.mask, 1 - painted)
    painter.undo_button.click()
    np.testing.assert_array_equal(canvas.mask, painted)
    painter.undo_button.click()
    assert not canvas.mask.any() and not painter.undo_button.isEnabled()
    painter.redo_button.click()
    np.testing.assert_array_equal(canvas.mask, painted)
    assert doc.undo.count() == undo_steps


def test_the_wheel_zooms_about_the_cursor_and_the_middle_button_pans(painter):
    canvas = painter.canvas
    at = canvas.to_widget(QPointF(12, 8))
    before = canvas.scale
    wheel = QWheelEvent(at, QPointF(canvas.mapToGlobal(at.toPoint())), QPoint(0, 0), QPoint(0, 240),
                        Qt.NoButton, Qt.NoModifier, Qt.NoScrollPhase, False)
    QApplication.sendEvent(canvas, wheel)
    assert math.isclose(canvas.scale, before * 1.44, rel_tol=1e-9)
    assert canvas.to_image(at) == QPointF(12, 8)  # the point under the cursor stays there
    offset = QPointF(canvas.offset)
    send(canvas, "press", (12, 8), Qt.MiddleButton)
    send(canvas, "move", (22, 8), Qt.MiddleButton)  # image coordinates before the pan: 10 px right
    send(canvas, "release", (22, 8), Qt.MiddleButton)
    moved = canvas.offset - offset
    assert math.isclose(moved.x(), 10 * canvas.scale, rel_tol=1e-9) and moved.y() == 0
    assert not canvas.mask.any()  # panning paints nothing


def test_saving_writes_a_new_picture_with_the_mask_as_alpha_and_points_the_node_at_it(painter, input_dir):
    original = (input_dir / "picture.png").read_bytes()
    set_brush(painter, 10, 0.3)
    stroke(painter.canvas, (8, 8), (40, 24))
    mask = painter.canvas.mask.copy()
    doc = painter.doc
    steps = doc.undo.count()
    painter.save_button.click()
    assert not painter.isVisible()
    name = doc.graph.node("1").params["image"]
    assert name == "picture-mask_00001_.png"
    assert (input_dir / "picture.png").read_bytes() == original
    assert doc.undo.count() == steps + 1
    # Load Image reads the painted mask back (8-bit alpha: within half a step) and the same pixels
    from nodes.image import load_image

    image, loaded = load_image(name)
    np.testing.assert_allclose(loaded[0].numpy(), mask, atol=0.5 / 255 + 1e-6)
    np.testing.assert_array_equal(np.rint(image[0].numpy() * 255),
                                  np.asarray(Image.open(input_dir / "picture.png"), np.float32))
    doc.undo.undo()
    assert doc.graph.node("1").params["image"] == "picture.png"


def test_saving_again_makes_another_new_file(painter, input_dir):
    painter.save_button.click()
    assert painter.doc.graph.node("1").params["image"] == "picture-mask_00001_.png"
    from gui.mask_painter import open_mask_painter

    again = open_mask_painter(painter.parent().view, "1")
    again.save_button.click()
    assert painter.doc.graph.node("1").params["image"] == "picture-mask_00002_.png"
    assert sorted(p.name for p in input_dir.iterdir()) == [
        "picture-mask_00001_.png", "picture-mask_00002_.png", "picture.png"]


def test_the_node_preview_shows_the_picture_with_the_mask_tinted_over_it(painter, input_dir):
    view = painter.parent().view
    item = view.gs.node_items["1"]
    (plain,) = item.images
    assert (plain.width(), plain.height()) == (W, H)
    untouched = plain.pixelColor(2, 30)
    set_brush(painter, 8, 1.0)
    stroke(painter.canvas, (2, 2), (20, 2))
    painter.save_button.click()
    (shown,) = item.images
    assert shown.pixelColor(2, 30) == untouched  # outside the mask: the picture's own colour
    tinted, source = shown.pixelColor(10, 2), plain.pixelColor(10, 2)
    assert tinted != source and tinted.blue() > source.blue()  # the magenta tint over the mask


READ_ONLY_SCRIPT = textwrap.dedent("""
    import json, sys
    from PySide6.QtWidgets import QApplication
    app = QApplication([])
    from nodegraph.graph import Graph
    from nodegraph.plugins import load_registry
    from gui.document import Document
    from gui.view import GraphView
    from gui.mask_painter import open_mask_painter
    g = Graph()
    g.add_node("LoadImage", {"image": "picture.png"}, id="1")
    doc = Document(load_registry(builtin=True, entry_points=False, folders=[], user=False), g)
    view = GraphView(doc)
    view.show()
    painter = open_mask_painter(view, "1")
    painter.canvas.mask[4:9, 4:9] = 1.0
    saved = painter.save()
    print(json.dumps({"saved": saved, "visible": painter.isVisible(), "status": painter.status.text(),
                      "image": doc.graph.node("1").params["image"], "undo": doc.undo.count(),
                      "painted": float(painter.canvas.mask.sum())}))
""")


def test_a_read_only_input_folder_is_reported_and_the_painting_stays_open(input_dir, tmp_path):
    import unprivileged

    script = tmp_path / "paint.py"
    script.write_text(READ_ONLY_SCRIPT)
    before = sorted(p.name for p in input_dir.iterdir())
    input_dir.chmod(0o555)
    try:
        cmd = unprivileged.python(str(script))
        env = dict(os.environ, PYTHONPATH=str(ROOT), QT_QPA_PLATFORM="offscreen", NODEGRAPH_TESTING="1")
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    finally:
        input_dir.chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["saved"] is False and out["visible"] is True and out["painted"] == 25.0
    assert out["status"].startswith("Not saved: ") and str(input_dir) in out["status"]
    assert out["image"] == "picture.png" and out["undo"] == 0
    assert sorted(p.name for p in input_dir.iterdir()) == before


def test_with_space_held_the_left_button_pans_instead_of_painting(painter, qtbot):
    canvas = painter.canvas
    offset = QPointF(canvas.offset)
    qtbot.keyPress(canvas, Qt.Key_Space)
    send(canvas, "press", (10, 10))
    send(canvas, "move", (10, 16))
    send(canvas, "release", (10, 16))
    qtbot.keyRelease(canvas, Qt.Key_Space)
    assert math.isclose((canvas.offset - offset).y(), 6 * canvas.scale, rel_tol=1e-9)
    assert not canvas.mask.any()
    send(canvas, "press", (10, 10))
    send(canvas, "release", (10, 10))
    assert canvas.mask.any()  # Space up: the left button paints again


def test_a_stroke_shows_tinted_on_the_canvas_at_once(painter):
    canvas = painter.canvas
    set_brush(painter, 8, 1.0)
    at, away = canvas.to_widget(QPointF(24, 16)), canvas.to_widget(QPointF(24, 4))
    before = canvas.grab().toImage()
    send(canvas, "press", (14, 16))
    send(canvas, "move", (34, 16))  # still held: the overlay follows the stroke before it ends
    shown = canvas.grab().toImage()
    send(canvas, "release", (34, 16))
    dpr = shown.devicePixelRatio()

    def colour(img, p):
        return img.pixelColor(int(p.x() * dpr), int(p.y() * dpr))

    assert colour(shown, away) == colour(before, away)
    painted, plain = colour(shown, at), colour(before, at)
    assert painted.blue() > plain.blue() and painted.red() > plain.red()  # magenta over the picture


def test_saving_after_the_node_was_deleted_keeps_the_file_and_says_no_node_reads_it(painter, input_dir):
    doc = painter.doc
    doc.delete(["1"])
    steps = doc.undo.count()
    assert painter.save() is True
    assert painter.isVisible() and "no node reads it" in painter.status.text()
    assert (input_dir / "picture-mask_00001_.png").is_file() and doc.undo.count() == steps


def test_the_new_file_keeps_the_originals_png_text_chunks(make_window, input_dir):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("workflow", '{"nodes": []}')
    Image.new("RGB", (W, H), (10, 20, 30)).save(input_dir / "with_text.png", pnginfo=info)
    from gui.mask_painter import open_mask_painter

    win = make_window(load_image_graph("with_text.png"))
    painter = open_mask_painter(win.view, "1")
    painter.canvas.invert()
    painter.save_button.click()
    saved = Image.open(input_dir / win.doc.graph.node("1").params["image"])
    assert saved.text == {"workflow": '{"nodes": []}'}
    assert np.asarray(saved)[..., 3].max() == 0  # all masked: alpha 0 everywhere
