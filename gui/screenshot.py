"""Render the editor with a graph to a PNG, offscreen or under Xvfb (README and reviews).

    python -m gui.screenshot GRAPH OUT.png [--run] [--size 1600x1000] [--zoom fit|FACTOR]
                                           [--select NODE_ID] [--canvas-only]

``--run`` runs the graph first and waits for it (its outputs show on the nodes and in the
viewer). Without a display the offscreen platform is used. Settings and recovery files go to a
temporary folder, never to the user's.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def _parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m gui.screenshot", description=__doc__.split("\n")[0])
    ap.add_argument("graph", help="graph file (or PNG saved by NodeGraph); '-' for an empty editor")
    ap.add_argument("out", help="PNG to write")
    ap.add_argument("--run", action="store_true", help="run the graph before the screenshot")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the run")
    ap.add_argument("--size", default="1600x1000", help="window size WxH")
    ap.add_argument("--zoom", default="fit", help="'fit' or a zoom factor such as 0.2")
    ap.add_argument("--select", default=None, help="select this node id (its params show)")
    ap.add_argument("--canvas-only", action="store_true", help="grab only the canvas")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(list(sys.argv[1:] if argv is None else argv))
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QCoreApplication

    from nodegraph.api import Session

    from . import app as gui_app
    from .files import AppSettings

    qapp = gui_app.ensure_app()
    w, h = (int(v) for v in args.size.lower().split("x"))
    settings = AppSettings.in_folder(Path(tempfile.mkdtemp(prefix="nodegraph-shot-")))
    win = gui_app.open_window(Session(), settings)
    win.resize(w, h)
    if args.graph != "-":
        if not win.load(args.graph):
            print(f"cannot open {args.graph}", file=sys.stderr)
            return 1
    for _ in range(5):
        QCoreApplication.processEvents()
    win.view.fit_all()
    if args.run:
        if not win.run():
            print("the graph did not run (see its problems)", file=sys.stderr)
        deadline = time.monotonic() + args.timeout
        while win.runner.running and time.monotonic() < deadline:
            QCoreApplication.processEvents()
            time.sleep(0.01)
        for _ in range(5):
            QCoreApplication.processEvents()
        win.view.fit_all()
    if args.zoom != "fit":
        win.view.set_zoom(float(args.zoom))
        win.view.centerOn(win.scene.nodes_rect().center())
    if args.select:
        win.focus_node(args.select)
        win.view.fit_all() if args.zoom == "fit" else None
    for _ in range(5):
        QCoreApplication.processEvents()
    target = win.view if args.canvas_only else win
    img = target.grab()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    ok = img.save(args.out)
    print(f"wrote {args.out} ({img.width()}x{img.height()})" if ok else f"could not write {args.out}")
    win.doc.undo.setClean()
    win.doc.recovered = False
    win.close()
    qapp.processEvents()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
