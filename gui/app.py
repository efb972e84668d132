"""Starting the editor: ``main(argv) -> exit code`` (called by the project's main.py).

    python main.py                 the demo graph (examples/demo.json) if it exists, else empty
    python main.py GRAPH.json      open a graph file (or a PNG saved by NodeGraph)

On the canvas: Tab or double-click adds a node (fuzzy search); drag from an output to connect
(drop on empty canvas to pick a node that takes it); wheel zooms at the cursor; middle button or
Space+drag pans; F fits the selection (Shift+F / Home: everything); Delete, Ctrl+C/X/V/D,
Ctrl+G groups, Ctrl+B bypasses, Ctrl+M mutes, Alt+C collapses; double-click a wire for a reroute
point, a title to rename. Ctrl+Enter runs, Esc stops, Ctrl+Z / Ctrl+Shift+Z undo and redo.
"""
from __future__ import annotations

import argparse
import atexit
import sys
from pathlib import Path

from PySide6.QtWidgets import QApplication

from nodegraph.api import Session
from nodegraph.context import RunOptions

from . import theme
from .files import AppSettings

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "examples" / "demo.json"

_windows: list = []  # open windows (kept alive here)


def clear_headless_clipboard() -> None:
    """Drop clipboard data we own when there is no desktop to hand it to.

    PySide6 6.11 on the offscreen/minimal platforms crashes at interpreter exit while the
    clipboard still holds a QMimeData that Python put there (reproduced: set any QMimeData, exit
    → SIGSEGV). A real desktop keeps the clipboard, so this only acts on headless platforms.
    """
    app = QApplication.instance()
    if app is not None and app.platformName() in ("offscreen", "minimal"):
        app.clipboard().clear()


def ensure_app(argv: list[str] | None = None) -> QApplication:
    """The QApplication (created, themed, named on first call)."""
    app = QApplication.instance()
    if app is None:
        theme.configure_high_dpi()
        app = QApplication([sys.argv[0] if sys.argv else "nodegraph", *(argv or [])])
        app.setApplicationName("NodeGraph")
        app.setOrganizationName("NodeGraph")
        app.setApplicationDisplayName("NodeGraph")
        theme.apply(app)
        atexit.register(clear_headless_clipboard)
    return app


def open_window(session: Session, settings: AppSettings | None = None, path: str | None = None,
                shared=None):
    """A new editor window (shown), optionally opening ``path``; ``shared``: the run queue of the
    window it was opened from (``gui.runner.SharedQueue``)."""
    from .window import MainWindow

    win = MainWindow(session, settings, shared=shared)
    _windows.append(win)
    win.destroyed.connect(lambda *_: _windows.remove(win) if win in _windows else None)
    win.show()
    if path:
        win.load(path)
    return win


def _parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="nodegraph-editor", description="NodeGraph's editor")
    ap.add_argument("graph", nargs="?", help="graph file or PNG saved by NodeGraph")
    ap.add_argument("--models", action="append", default=[], help="extra models folder")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    ap.add_argument("--dtype", default="auto", help="auto, fp32, fp16 or bf16")
    ap.add_argument("--output", default="output", help="output folder of SaveImage")
    return ap.parse_args(argv)


def start(argv: list[str], settings: AppSettings | None = None):
    """Create the application and the first window (offering crash recovery, then opening the
    file given, else the demo graph). Returns the window."""
    args = _parse(argv)
    ensure_app()
    options = RunOptions(device=args.device, dtype=args.dtype, output_dir=Path(args.output),
                         models_dirs=tuple(Path(m) for m in args.models))
    session = Session(options=options)
    path = args.graph or (str(DEMO) if DEMO.exists() else None)
    win = open_window(session, settings or AppSettings.default())
    recovered = win.offer_recovery()
    if path and not recovered:
        win.load(path)
    return win


def _run_event_loop(app: QApplication) -> int:
    return app.exec()


def main(argv: list[str] | None = None) -> int:
    """Run the editor until its last window closes; the exit code."""
    start(list(sys.argv[1:] if argv is None else argv))
    return _run_event_loop(QApplication.instance())
