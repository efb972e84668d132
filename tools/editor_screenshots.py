"""Render the editor screenshots of README.md and docs/ (offscreen, 1600x1000; run from the repository
root; a few minutes on a CPU): ``python tools/editor_screenshots.py [OUT_DIR [SHOT ...]]`` (default
docs/images, every shot; a shot is named by its function below).

- editor-demo.png: examples/demo.json after a run (its output on the canvas and in the viewer);
- editor-comfyui-template.png: ComfyUI's default template just after File > Open (the window fits it);
- editor-queue-history.png: the demo running with two more runs queued, the History of earlier runs;
- editor-failure.png: a node failing during a run, listed in the Problems tab.

Settings, history and outputs go to a temporary folder, never to the user's.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("NODEGRAPH_TESTING", "1")  # no user folders or caches touched
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from PySide6.QtCore import QCoreApplication, Qt  # noqa: E402

from gui import app as gui_app  # noqa: E402
from gui.files import AppSettings  # noqa: E402
from nodegraph.api import Session  # noqa: E402
from nodegraph.context import RunOptions  # noqa: E402
from nodegraph.graph import Graph  # noqa: E402

DEMO = REPO / "examples" / "demo.json"


def settle(seconds: float = 0.3) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QCoreApplication.processEvents()
        time.sleep(0.01)


def wait_idle(win, timeout: float = 900.0) -> None:
    deadline = time.monotonic() + timeout
    while win.runner.running and time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.02)
    settle()


def window(tmp: Path, name: str):
    settings = AppSettings.in_folder(tmp / name)
    session = Session(options=RunOptions(output_dir=tmp / "output"))
    win = gui_app.open_window(session, settings)
    win.resize(1600, 1000)
    settle()
    return win


def save(win, out: Path) -> None:
    settle()
    img = win.grab()
    img.save(str(out))
    print(f"wrote {out} ({img.width()}x{img.height()})", flush=True)


def close(win) -> None:
    win.doc.undo.setClean()
    win.doc.recovered = False
    win.close()
    settle(0.1)


def demo_run(tmp: Path, out: Path) -> None:
    win = window(tmp, "demo")
    win.load(DEMO)
    win.run()
    wait_idle(win)
    win.view.fit_all()
    save(win, out / "editor-demo.png")
    close(win)


def comfy_template(tmp: Path, out: Path) -> None:
    from comfyui_workflow_templates import get_templates_path

    win = window(tmp, "template")
    win.load(Path(get_templates_path()) / "default.json")
    save(win, out / "editor-comfyui-template.png")
    close(win)


def queue_and_history(tmp: Path, out: Path) -> None:
    win = window(tmp, "queue")
    win.load(DEMO)
    prompts = ("a red circle on a green background", "a white square on a black background")
    for text in prompts:
        win.doc.set_param("2", "text", text)
        win.run()
        wait_idle(win)
    win.doc.set_param("5", "steps", 60)  # long enough to be caught running
    for text in ("a blue triangle on a yellow background", "an orange circle on a purple background",
                 "a green square on a white background"):
        win.doc.set_param("2", "text", text)
        win.run()
    win.removeDockWidget(win.history_dock)  # beside the Queue (a user can drag it there) rather than a tab
    win.addDockWidget(Qt.BottomDockWidgetArea, win.history_dock, Qt.Horizontal)
    win.history_dock.show()
    win.queue_dock.raise_()
    win.resizeDocks([win.queue_dock], [240], Qt.Vertical)
    win.resizeDocks([win.queue_dock, win.history_dock], [800, 600], Qt.Horizontal)
    win.history_panel.list.setCurrentRow(0)
    deadline = time.monotonic() + 300
    while not any(f"/{win.doc.graph.nodes['5'].params['steps']}" in win.queue_panel.tree.topLevelItem(i).text(2)
                  for i in range(win.queue_panel.tree.topLevelItemCount())) and time.monotonic() < deadline:
        settle(0.05)
    settle(1.5)
    save(win, out / "editor-queue-history.png")
    win.runner.cancel_all()
    wait_idle(win)
    close(win)


def failure(tmp: Path, out: Path) -> None:
    """The demo's picture turned into a mask from its alpha channel, which an RGB image lacks."""
    from nodegraph import format as graph_format

    graph: Graph = graph_format.load(DEMO)
    graph.add_node("ImageToMask", {"channel": "alpha"}, id="20", pos=(1500, 420))
    graph.add_node("MaskToImage", {}, id="21", pos=(1760, 420))
    graph.add_node("PreviewImage", {}, id="22", pos=(2000, 420))
    graph.connect("6", "IMAGE", "20", "image")
    graph.connect("20", "MASK", "21", "mask")
    graph.connect("21", "IMAGE", "22", "images")
    path = tmp / "mask-from-alpha.json"
    graph_format.save(graph, path)
    win = window(tmp, "failure")
    win.load(path)
    win.run()
    wait_idle(win)
    win.view.fit_all()
    win.focus_node("20")
    win.view.fit_all()
    save(win, out / "editor-failure.png")
    close(win)


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else REPO / "docs" / "images"
    out.mkdir(parents=True, exist_ok=True)
    gui_app.ensure_app()
    tmp = Path(tempfile.mkdtemp(prefix="nodegraph-shots-"))
    only = set(argv[1:])
    for shot in (comfy_template, demo_run, queue_and_history, failure):
        if not only or shot.__name__ in only:
            shot(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
