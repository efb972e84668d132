"""Settings, recent files, autosave and crash recovery.

Each open document is autosaved every few seconds, when it changed, to
``<recovery dir>/<document id>.json`` with a ``.meta.json`` beside it (original path, process id,
time). Saving or closing the document cleanly removes them, so whatever is left in the folder when
the editor starts came from a session that crashed: the editor offers to recover it.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, QSettings, QTimer

from nodegraph import format as graph_format
from nodegraph.fileio import write_text_atomic

from .document import Document

MAX_RECENT = 10
AUTOSAVE_MS = 5000


class AppSettings:
    """The QSettings the editor uses and where its recovery files go.

    Tests pass their own (an INI file and a folder in a temp dir); with ``NODEGRAPH_TESTING=1``
    the default is a fresh temp folder too, so nothing touches the real user's settings.
    """

    def __init__(self, qsettings: QSettings, recovery_dir: Path, autosave_ms: int = AUTOSAVE_MS,
                 history_dir: Path | None = None):
        self.qsettings = qsettings
        self.recovery_dir = Path(recovery_dir)
        self.autosave_ms = autosave_ms
        self.history_dir = Path(history_dir) if history_dir is not None else None
        """Where the run history is kept (None: in memory only). By default the user data folder's
        ``history/``, which ``nodegraph serve`` keeps its history in too."""

    @classmethod
    def default(cls) -> AppSettings:
        if os.environ.get("NODEGRAPH_TESTING") == "1":
            root = Path(tempfile.mkdtemp(prefix="nodegraph-gui-"))
            return cls(QSettings(str(root / "settings.ini"), QSettings.IniFormat), root / "recovery")
        import platformdirs

        from nodegraph.history import default_history_folder

        state = platformdirs.user_state_path("nodegraph", appauthor=False)
        return cls(QSettings("NodeGraph", "NodeGraph"), state / "recovery",
                   history_dir=default_history_folder())

    @classmethod
    def in_folder(cls, root: Path, autosave_ms: int = AUTOSAVE_MS) -> AppSettings:
        root = Path(root)
        return cls(QSettings(str(root / "settings.ini"), QSettings.IniFormat), root / "recovery",
                   autosave_ms, root / "history")

    # -- recent files ------------------------------------------------------------------------
    def recent_files(self) -> list[str]:
        value = self.qsettings.value("recentFiles", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def add_recent(self, path: str | os.PathLike[str]) -> None:
        p = str(Path(path).resolve())
        files = [f for f in self.recent_files() if f != p]
        self.qsettings.setValue("recentFiles", [p, *files][:MAX_RECENT])
        self.qsettings.sync()

    def remove_recent(self, path: str) -> None:
        self.qsettings.setValue("recentFiles", [f for f in self.recent_files() if f != path])


@dataclass
class RecoveryEntry:
    """A document autosaved by an editor that did not close it."""

    graph_file: Path
    meta_file: Path
    original: str | None
    saved_at: float

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.saved_at))
        name = Path(self.original).name if self.original else "an untitled graph"
        return f"{name} (autosaved {when})"

    def discard(self) -> None:
        self.graph_file.unlink(missing_ok=True)
        self.meta_file.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def find_recoverable(folder: Path) -> list[RecoveryEntry]:
    """Autosaves left by editors that are no longer running, newest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    out = []
    for meta_file in folder.glob("*.meta.json"):
        graph_file = meta_file.with_name(meta_file.name[: -len(".meta.json")] + ".json")
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not graph_file.is_file():
            meta_file.unlink(missing_ok=True)
            continue
        pid = meta.get("pid")
        if isinstance(pid, int) and _pid_alive(pid):
            continue  # that editor is still open (or it is us)
        out.append(RecoveryEntry(graph_file, meta_file, meta.get("path"),
                                 float(meta.get("time", graph_file.stat().st_mtime))))
    out.sort(key=lambda e: -e.saved_at)
    return out


class Autosaver(QObject):
    """Writes the document to the recovery folder every ``interval`` ms while it has unsaved
    changes; removes the copy when the document is saved or closed."""

    def __init__(self, doc: Document, folder: Path, interval: int = AUTOSAVE_MS,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.doc = doc
        self.before_save: Callable[[], None] | None = None
        """Called before each autosave (the window commits text still being typed)."""
        self.folder = Path(folder)
        self.generation = 0
        self._saved_generation = -1
        self.timer = QTimer(self)
        self.timer.setInterval(interval)
        self.timer.timeout.connect(self.autosave)
        self.timer.start()
        doc.undo.cleanChanged.connect(self._clean_changed)

    @property
    def graph_file(self) -> Path:
        return self.folder / f"{self.doc.doc_id}.json"

    @property
    def meta_file(self) -> Path:
        return self.folder / f"{self.doc.doc_id}.meta.json"

    def changed(self) -> None:
        """The graph changed (called for each graph change)."""
        self.generation += 1

    def autosave(self) -> bool:
        """Write the recovery copy now if there is something new to keep. True if written."""
        if self.before_save is not None:
            self.before_save()
        if not self.doc.dirty:
            self.discard()
            return False
        if self.generation == self._saved_generation and self.graph_file.exists():
            return False
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            text = graph_format.dumps(self.doc.graph)
        except Exception:
            return False
        write_text_atomic(self.graph_file, text)
        meta = {"path": str(self.doc.path) if self.doc.path else None, "pid": os.getpid(),
                "time": time.time()}
        write_text_atomic(self.meta_file, json.dumps(meta))
        self._saved_generation = self.generation
        return True

    def _clean_changed(self, clean: bool) -> None:
        if clean and not self.doc.recovered:
            self.discard()

    def discard(self) -> None:
        self.graph_file.unlink(missing_ok=True)
        self.meta_file.unlink(missing_ok=True)
        self._saved_generation = -1

    def stop(self) -> None:
        self.timer.stop()
