"""Editor benchmark (offscreen): open-and-first-paint, drag frames, zoomed-out repaint.

For graphs of 100, 500 and 2000 nodes (text-to-image pipelines of 7 nodes, a group every 4th;
node types from tests/gui/testpack, shaped like the SD pack's):

- open: load the file into a 1600x1000 editor window, fit it, and paint the canvas once;
- drag: median time of one frame while dragging 50 selected nodes at zoom 1: the mouse-move event
  is processed (nodes move, wires are recomputed) and the viewport repaints what changed
  (``processEvents``, the way a real frame happens);
- drag_full: the same with a full repaint of the viewport each frame (worst case);
- zoomout: repaint of the whole viewport with every node in view (level-of-detail boxes).

The reference, measured in the same run and interleaved, is the same drag on a scene of plain
``QGraphicsRectItem``s (Qt's own cheapest items, same count, sizes and selection): the ratio tells
what our painting costs over Qt's floor. Run it with ``flock /tmp/ng-heavy.lock``. The last line
is JSON with ``open_500_s``, ``drag_500_ms``, ``drag_2000_ms``, ``zoomout_2000_ms``, and:

- ``fit_text_px``: the smallest text height in screen pixels right after opening each of ComfyUI's
  classic templates (comfyui-workflow-templates) in a 1600x1000 window, which fits it (target ≥ 9);
- ``queue_submit_ms``: Ctrl+Enter pressed on the canvas while a run is going → the queued item is
  listed in the Queue panel (median of several presses; target ≤ 50).
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("NODEGRAPH_TESTING", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "gui"))

from PySide6.QtCore import QEvent, QObject, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QKeyEvent, QMouseEvent  # noqa: E402
from PySide6.QtWidgets import (QApplication, QGraphicsItem, QGraphicsRectItem,  # noqa: E402
                               QGraphicsScene, QGraphicsView)

import graphs  # noqa: E402
from textsize import texts_in_view  # noqa: E402
from gui import app as gui_app  # noqa: E402
from gui.files import AppSettings  # noqa: E402
from nodegraph import format as graph_format  # noqa: E402
from nodegraph.api import Session  # noqa: E402

SIZES = (100, 500, 2000)
DRAG_FRAMES = 60
SELECTED = 50


class _PaintCounter(QObject):
    def __init__(self):
        super().__init__()
        self.count = 0

    def eventFilter(self, obj, ev):
        if ev.type() == QEvent.Paint:
            self.count += 1
        return False


def _send(vp, kind, pt: QPointF, view) -> None:
    p = QPointF(view.mapFromScene(pt))
    t = {"press": QEvent.MouseButtonPress, "move": QEvent.MouseMove,
         "release": QEvent.MouseButtonRelease}[kind]
    buttons = Qt.NoButton if kind == "release" else Qt.LeftButton
    btn = Qt.NoButton if kind == "move" else Qt.LeftButton
    QApplication.sendEvent(vp, QMouseEvent(t, p, QPointF(vp.mapToGlobal(p.toPoint())), btn,
                                           buttons, Qt.NoModifier))


def _drag_frames(view, grab_pt: QPointF, full: bool, counter: _PaintCounter) -> list[float]:
    """Press on a selected node's title, then DRAG_FRAMES moves; time of each frame in ms."""
    app = QApplication.instance()
    vp = view.viewport()
    _send(vp, "press", grab_pt, view)
    times = []
    for i in range(1, DRAG_FRAMES + 1):
        dx = 3.0 * i
        dy = 2.0 * ((i % 10) - 5)
        t0 = time.perf_counter()
        _send(vp, "move", grab_pt + QPointF(dx, dy), view)
        if full:
            vp.repaint()
        else:
            before = counter.count
            app.processEvents()
            if counter.count == before:  # nothing painted yet: force the frame
                vp.repaint()
        times.append((time.perf_counter() - t0) * 1000)
    _send(vp, "release", grab_pt + QPointF(3.0 * DRAG_FRAMES, 0), view)
    app.processEvents()
    return times


def _select_block(view, count: int) -> QPointF:
    """Select ``count`` nodes near the first node, centre the view on them at zoom 1; return a
    point on the first selected node's title."""
    gs = view.gs
    items = sorted(gs.node_items.values(), key=lambda it: (it.pos().y() // 600, it.pos().x(), it.pos().y()))
    chosen = items[:count]
    gs.clearSelection()
    for it in chosen:
        it.setSelected(True)
    view.resetTransform()
    first = chosen[0]
    view.centerOn(first.pos() + QPointF(500, 250))
    return first.mapToScene(QPointF(first.w / 2, 10))


def _reference_view(graph_items, size=(1600, 1000)):
    """Plain QGraphicsRectItems at the same places and sizes as our node items."""
    scene = QGraphicsScene()
    scene.setItemIndexMethod(QGraphicsScene.BspTreeIndex)
    scene.setSceneRect(-200_000, -200_000, 400_000, 400_000)
    rects = []
    for it in graph_items:
        r = QGraphicsRectItem(0, 0, it.w, it.h)
        r.setPos(it.pos())
        r.setBrush(Qt.darkGray)
        r.setFlag(QGraphicsItem.ItemIsSelectable, True)
        r.setFlag(QGraphicsItem.ItemIsMovable, True)
        scene.addItem(r)
        rects.append(r)
    view = QGraphicsView(scene)
    view.resize(*size)
    view.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    view.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    view.show()
    return view, scene, rects


def _ref_drag(view, rects, selected_idx, full: bool, counter: _PaintCounter) -> list[float]:
    scene = view.scene()
    scene.clearSelection()
    for i in selected_idx:
        rects[i].setSelected(True)
    first = rects[selected_idx[0]]
    view.resetTransform()
    view.centerOn(first.pos() + QPointF(500, 250))
    pt = first.mapToScene(QPointF(first.rect().width() / 2, 10))
    return _drag_frames(view, pt, full, counter)


def bench_size(n: int, tmp: Path, session: Session) -> dict:
    app = QApplication.instance()
    path = tmp / f"graph_{n}.json"
    graph_format.save(graphs.big_graph(n), path)
    settings = AppSettings.in_folder(tmp / f"settings_{n}")
    # open and first paint (window already shown, as when the user picks File > Open)
    win = gui_app.open_window(session, settings)
    win.resize(1600, 1000)
    app.processEvents()
    t0 = time.perf_counter()
    win.load(path)
    win.view.viewport().repaint()
    open_s = time.perf_counter() - t0
    app.processEvents()
    nodes = len(win.doc.graph)

    counter = _PaintCounter()
    win.view.viewport().installEventFilter(counter)
    pt = _select_block(win.view, SELECTED)
    ids = win.view.gs.selected_node_ids()
    ref_view, _ref_scene, rects = _reference_view(list(win.view.gs.node_items.values()))
    ref_counter = _PaintCounter()
    ref_view.viewport().installEventFilter(ref_counter)
    order = list(win.view.gs.node_items)
    ref_idx = [order.index(i) for i in ids]
    app.processEvents()
    ours, ours_full, ref, ref_full = [], [], [], []
    _drag_frames(win.view, pt, False, counter)  # warm-up
    _ref_drag(ref_view, rects, ref_idx, False, ref_counter)
    for _ in range(3):  # interleaved repetitions
        win.doc.undo.undo()  # put the nodes back where they were
        app.processEvents()
        pt = _select_block(win.view, SELECTED)
        ours += _drag_frames(win.view, pt, False, counter)
        ref += _ref_drag(ref_view, rects, ref_idx, False, ref_counter)
        win.doc.undo.undo()
        pt = _select_block(win.view, SELECTED)
        ours_full += _drag_frames(win.view, pt, True, counter)
        ref_full += _ref_drag(ref_view, rects, ref_idx, True, ref_counter)

    # zoomed out: every node in view (first paint after the zoom, then repaints)
    app.processEvents()
    t0 = time.perf_counter()
    win.view.fit_all()
    win.view.viewport().repaint()
    zoom_first = (time.perf_counter() - t0) * 1000
    app.processEvents()
    zoom = win.view.zoom
    zt = []
    for _ in range(7):
        t0 = time.perf_counter()
        win.view.viewport().repaint()
        zt.append((time.perf_counter() - t0) * 1000)
    ref_view.fitInView(ref_view.scene().itemsBoundingRect(), Qt.KeepAspectRatio)
    rzt = []
    for _ in range(7):
        t0 = time.perf_counter()
        ref_view.viewport().repaint()
        rzt.append((time.perf_counter() - t0) * 1000)

    win.doc.undo.setClean()
    win.close()
    ref_view.close()
    app.processEvents()
    med = statistics.median
    return {
        "nodes": nodes, "open_s": round(open_s, 3),
        "drag_ms": round(med(ours), 2), "drag_ref_ms": round(med(ref), 2),
        "drag_full_ms": round(med(ours_full), 2), "drag_full_ref_ms": round(med(ref_full), 2),
        "zoomout_ms": round(med(zt[2:]), 2), "zoomout_ref_ms": round(med(rzt[2:]), 2),
        "zoomout_scale": round(zoom, 3), "zoomout_first_ms": round(zoom_first, 2),
    }


CLASSIC_TEMPLATES = ("default", "image2image", "hiresfix_latent_workflow", "hiresfix_esrgan_workflow",
                     "esrgan_example", "latent_upscale_different_prompt_model", "sdxl_simple_example")


def bench_fit_text(tmp: Path) -> dict[str, float]:
    """Smallest on-screen text height (px) after File > Open of each classic template (the window
    fits the graph on open), with the built-in nodes."""
    from comfyui_workflow_templates import get_templates_path

    from nodegraph.plugins import load_registry

    app = QApplication.instance()
    session = Session(load_registry(builtin=True, entry_points=False, folders=[], user=False))
    win = gui_app.open_window(session, AppSettings.in_folder(tmp / "settings_templates"))
    win.resize(1600, 1000)
    smallest = {}
    for name in CLASSIC_TEMPLATES:
        assert win.load(Path(get_templates_path()) / f"{name}.json"), name
        app.processEvents()
        texts = texts_in_view(win.view)
        smallest[name] = round(min(px for px, _ in texts), 2) if texts else 0.0
        win.doc.undo.setClean()
    win.close()
    app.processEvents()
    return smallest


def _press_run(view) -> None:
    vp = view.viewport()
    for kind in (QEvent.KeyPress, QEvent.KeyRelease):
        QApplication.sendEvent(vp, QKeyEvent(kind, Qt.Key_Return, Qt.ControlModifier))


def _pending_rows(panel) -> set[str]:
    """Ids of the items the Queue panel lists as pending."""
    from gui.panels.queue import ID_ROLE

    rows = (panel.tree.topLevelItem(i) for i in range(panel.tree.topLevelItemCount()))
    return {row.data(0, ID_ROLE) for row in rows if row.data(1, ID_ROLE) == "pending"}


def bench_queue_submit(tmp: Path, session: Session, presses: int = 9) -> list[float]:
    """ms from Ctrl+Enter during a run to the new pending row in the Queue panel, per press."""
    app = QApplication.instance()
    graph = graphs.image_graph()
    graph.nodes["2"].params.update(steps=10_000, delay=0.05)  # a run that lasts until stopped
    path = tmp / "slow.json"
    graph_format.save(graph, path)
    win = gui_app.open_window(session, AppSettings.in_folder(tmp / "settings_queue"))
    win.resize(1600, 1000)
    win.load(path)
    app.processEvents()
    _press_run(win.view)
    deadline = time.monotonic() + 30
    while (win.runner.queue.running() is None or _pending_rows(win.queue_panel)) and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.005)
    times = []
    for _ in range(presses):
        before = _pending_rows(win.queue_panel)
        t0 = time.perf_counter()
        _press_run(win.view)
        while not _pending_rows(win.queue_panel) - before and time.perf_counter() - t0 < 5:
            app.processEvents()
        times.append((time.perf_counter() - t0) * 1000)
    win.runner.cancel_all()
    win.runner.wait(30_000)
    app.processEvents()
    win.doc.undo.setClean()
    win.close()
    app.processEvents()
    return times


def main() -> None:
    app = gui_app.ensure_app()
    registry = graphs.registry()
    session = Session(registry)
    tmp = Path(tempfile.mkdtemp(prefix="nodegraph-guibench-"))
    results = {}
    bench_size(50, tmp, session)
    for n in SIZES:
        r = bench_size(n, tmp, session)
        results[n] = r
        print(f"{r['nodes']:5d} nodes: open+first paint {r['open_s']:.3f} s | drag frame "
              f"{r['drag_ms']:.2f} ms (plain rects {r['drag_ref_ms']:.2f}) | full-repaint drag "
              f"{r['drag_full_ms']:.2f} ms (plain {r['drag_full_ref_ms']:.2f}) | zoomed out "
              f"(x{r['zoomout_scale']}) {r['zoomout_ms']:.2f} ms (plain {r['zoomout_ref_ms']:.2f}; "
              f"first paint after zooming {r['zoomout_first_ms']:.2f} ms)",
              flush=True)
    fit_text = bench_fit_text(tmp)
    print("smallest text after Open+Fit (px): " + ", ".join(f"{k} {v}" for k, v in fit_text.items()), flush=True)
    submit = bench_queue_submit(tmp, session)
    print("Run during a run -> row in the Queue panel (ms): " + ", ".join(f"{t:.1f}" for t in submit), flush=True)
    del app
    out = {
        "open_100_s": results[100]["open_s"], "open_500_s": results[500]["open_s"],
        "open_2000_s": results[2000]["open_s"],
        "drag_100_ms": results[100]["drag_ms"], "drag_500_ms": results[500]["drag_ms"],
        "drag_2000_ms": results[2000]["drag_ms"],
        "drag_full_500_ms": results[500]["drag_full_ms"],
        "drag_full_2000_ms": results[2000]["drag_full_ms"],
        "drag_ref_2000_ms": results[2000]["drag_ref_ms"],
        "zoomout_500_ms": results[500]["zoomout_ms"], "zoomout_2000_ms": results[2000]["zoomout_ms"],
        "zoomout_ref_2000_ms": results[2000]["zoomout_ref_ms"],
        "zoomout_first_2000_ms": results[2000]["zoomout_first_ms"],
        "fit_text_px": min(fit_text.values()),
        "queue_submit_ms": round(statistics.median(submit), 2),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
