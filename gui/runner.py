"""Runs a graph on a worker thread through the engine's API and reports back with Qt signals.

The run works on a copy of the graph (the user may keep editing), so the executor's cache decides
what re-runs: after a param edit only the changed node and what depends on it run again. The
engine's events (:mod:`nodegraph.events`) are forwarded as they are, by a queued signal, together
with the QImages made from them on the worker thread (images shown by a node, a progress
preview). Progress is coalesced (at most one update per node every 40 ms, plus the last step).
Stop asks the executor to interrupt: a node that reports progress stops at its next step.
"""
from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot
from PySide6.QtGui import QImage

from nodegraph import events as ev
from nodegraph.api import Session
from nodegraph.errors import GraphValidationError, Interrupted, NodeExecutionError, Problem
from nodegraph.graph import Graph
from nodegraph.validate import errors

from .images import to_qimages, ui_images

PROGRESS_INTERVAL = 0.04


@dataclass
class RunOutcome:
    """How a run ended: status is finished, failed, interrupted, invalid or error."""

    status: str
    message: str = ""
    node_id: str | None = None
    seconds: float = 0.0
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


class _Worker(QObject):
    event = Signal(object, object)  # an engine event, the QImages made from it (a list)
    done = Signal(object)  # RunOutcome

    def __init__(self, session: Session, graph: Graph):
        super().__init__()
        self.session = session
        self.graph = graph
        self.stop = threading.Event()  # this run's own: a Stop before the run starts still counts
        self._last_progress: dict[str, float] = {}

    @Slot()
    def run(self) -> None:
        t0 = time.perf_counter()
        try:
            result = self.session.run(self.graph, on_event=self._on_event, validate=False, stop=self.stop)
            s = result.stats
            out = RunOutcome("finished", s.summary(), seconds=s.total_seconds,
                             executed=list(s.executed), cached=list(s.cached))
        except Interrupted as exc:
            s = exc.stats
            out = RunOutcome("interrupted", "run stopped", exc.node_id,
                             s.total_seconds if s else 0.0,
                             list(s.executed) if s else [], list(s.cached) if s else [])
        except NodeExecutionError as exc:
            s = exc.stats
            out = RunOutcome("failed", str(exc), exc.node_id,
                             s.total_seconds if s else 0.0,
                             list(s.executed) if s else [], list(s.cached) if s else [])
        except GraphValidationError as exc:
            out = RunOutcome("invalid", str(exc), problems=exc.problems)
        except Exception as exc:  # a bug somewhere: report it, keep the editor alive
            out = RunOutcome("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}",
                             seconds=time.perf_counter() - t0)
        self.done.emit(out)

    def _on_event(self, e: ev.Event) -> None:
        if isinstance(e, ev.Progress):
            if not self._progress_due(e):
                return
            images = _safe_images(to_qimages, e.preview, limit=1) if e.preview is not None else []
        elif isinstance(e, (ev.NodeFinished, ev.NodeCached)):
            images = _safe_images(ui_images, e.ui)
        else:
            images = []
        self.event.emit(e, images)

    def _progress_due(self, e: ev.Progress) -> bool:
        """At most one progress update per node every PROGRESS_INTERVAL, and always the last."""
        now = time.perf_counter()
        if now - self._last_progress.get(e.node_id, 0.0) < PROGRESS_INTERVAL and e.step < e.total:
            return False
        self._last_progress[e.node_id] = now
        return True


def _safe_images(convert: Any, what: Any, **kw: Any) -> list[QImage]:
    try:
        return convert(what, **kw)
    except Exception:
        return []


class Runner(QObject):
    """One run at a time for one editor window.

    Signals: ``problems(list[Problem])`` before a run (validation); ``event(engine event,
    list[QImage])`` for each event of the run (:mod:`nodegraph.events`, in the engine's order;
    the images are those a finished or cached node shows, or a progress preview);
    ``run_finished(RunOutcome)`` at the end, also when validation stopped the run.
    """

    problems = Signal(list)
    event = Signal(object, object)
    run_finished = Signal(object)

    def __init__(self, session: Session, parent: QObject | None = None):
        super().__init__(parent)
        self.session = session
        self._thread: QThread | None = None
        self._worker: _Worker | None = None
        self.last: RunOutcome | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def validate(self, graph: Graph) -> list[Problem]:
        try:
            return self.session.validate(graph)
        except Exception as exc:
            return [Problem("validate_failed", f"validation failed: {type(exc).__name__}: {exc}")]

    def start(self, graph: Graph) -> bool:
        """Validate, then run a copy of ``graph`` on a worker thread. False if nothing started
        (already running, or validation found errors: see the ``problems`` signal)."""
        if self.running:
            return False
        problems = self.validate(graph)
        self.problems.emit(problems)
        if errors(problems):
            out = RunOutcome("invalid", f"{len(errors(problems))} problem(s); nothing ran",
                             problems=problems)
            self.last = out
            self.run_finished.emit(out)
            return False
        thread = QThread(self)
        worker = _Worker(self.session, graph.copy())
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.event.connect(self.event)
        worker.done.connect(self._on_done)
        self._thread, self._worker = thread, worker
        thread.start()
        return True

    def stop(self) -> None:
        """Ask the run to stop (it ends with status "interrupted" at the next step)."""
        if self._worker is not None:
            self._worker.stop.set()

    def wait(self, ms: int = 30000) -> bool:
        """Block until the worker thread ends (shutdown and tests)."""
        return self._thread.wait(ms) if self._thread is not None else True

    @Slot(object)
    def _on_done(self, out: RunOutcome) -> None:
        thread, self._thread, self._worker = self._thread, None, None
        if thread is not None:
            thread.quit()
            thread.wait(5000)
            thread.deleteLater()
        self.last = out
        self.run_finished.emit(out)
