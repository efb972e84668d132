"""The editor's side of the engine's run queue (:class:`nodegraph.queue.RunQueue`): Qt signals, no
queue logic of its own.

A window's Runner validates a snapshot of its graph and puts it in the queue (Run during a run
queues another snapshot); the queue's worker thread runs the items one after another. The queue
announces everything on that thread; the Runner turns the announcements into Qt signals delivered
on the UI thread, together with the QImages made from them on the worker thread (images shown by a
node, a progress preview). Progress is coalesced (at most one update per node every 40 ms, plus the
last step). Signals:

- ``problems(list[Problem])`` after validating what Run was asked to queue;
- ``event(engine event, list[QImage])`` for each executor event (:mod:`nodegraph.events`) of this
  window's items, in the engine's order;
- ``run_finished(RunOutcome)`` when one of this window's items ended (also when validation kept it
  from being queued, or Stop took it out of the queue before it started);
- ``queue_changed(queue event)`` for every change of the queue and its history, whoever made it (the
  Queue and History panels follow it).

Windows opened from a window share its queue (one run at a time on this machine); each window sees
its own items' runs on its canvas, and Stop stops only those.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QImage

from nodegraph import events as ev
from nodegraph import queue as q
from nodegraph.api import Session
from nodegraph.errors import Problem
from nodegraph.graph import Graph
from nodegraph.history import History, HistoryEntry
from nodegraph.validate import errors

from .images import to_qimages, ui_images

PROGRESS_INTERVAL = 0.04


@dataclass
class RunOutcome:
    """How one queued run of this window ended: status is finished, failed, interrupted, invalid
    (validation kept it from being queued), cancelled (taken out of the queue before it ran) or
    error (a bug outside any node; ``message`` has the traceback)."""

    status: str
    message: str = ""
    node_id: str | None = None
    seconds: float = 0.0
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    item_id: str | None = None


class SharedQueue:
    """A RunQueue and the windows using it: the last one to leave closes it."""

    def __init__(self, queue: q.RunQueue):
        self.queue = queue
        self.users = 0

    def join(self) -> q.RunQueue:
        self.users += 1
        return self.queue

    def leave(self) -> None:
        self.users -= 1
        if self.users <= 0:
            self.queue.close(timeout=10.0)


class _Relay(QObject):
    """Carries queue events from the queue's thread to the UI thread (a queued signal)."""

    got = Signal(object, object)  # queue event, QImages made from it


class Runner(QObject):
    """This window's runs through a shared RunQueue (see the module docstring)."""

    problems = Signal(list)
    event = Signal(object, object)
    run_finished = Signal(object)
    queue_changed = Signal(object)

    def __init__(self, session: Session, parent: QObject | None = None, *,
                 shared: SharedQueue | None = None, history: History | None = None,
                 client_id: str = "editor"):
        super().__init__(parent)
        self.session = session
        self.shared = shared or SharedQueue(q.RunQueue(session, history))
        self.queue = self.shared.join()
        self.client_id = client_id
        self.last: RunOutcome | None = None
        self._mine: set[str] = set()  # this window's items, pending or running
        self._stats: dict[str, Any] = {}  # item id -> stats of its run's end event (worker thread)
        self._last_progress: dict[str, float] = {}
        self._relay = _Relay()
        self._relay.got.connect(self._arrived)
        self._unsubscribe = self.queue.subscribe(self._heard)

    @property
    def history(self) -> History:
        return self.queue.history

    @property
    def running(self) -> bool:
        """Whether an item of this window is pending or running."""
        return bool(self._mine)

    def share(self, session: Session, parent: QObject | None = None, client_id: str = "editor") -> Runner:
        """A Runner for another window on this queue."""
        return Runner(session, parent, shared=self.shared, client_id=client_id)

    # -- submitting ------------------------------------------------------------------------
    def validate(self, graph: Graph) -> list[Problem]:
        try:
            return self.session.validate(graph)
        except Exception as exc:
            return [Problem("validate_failed", f"validation failed: {type(exc).__name__}: {exc}")]

    def start(self, graph: Graph, label: str = "") -> bool:
        """Validate a snapshot of ``graph`` and queue it; False if validation found errors (see the
        ``problems`` signal; ``run_finished`` says "invalid")."""
        snapshot = graph.copy()
        problems = self.validate(snapshot)
        self.problems.emit(problems)
        if errors(problems):
            out = RunOutcome("invalid", f"{len(errors(problems))} problem(s); nothing ran",
                             problems=problems)
            self.last = out
            self.run_finished.emit(out)
            return False
        item_id = uuid.uuid4().hex
        self._mine.add(item_id)
        self.queue.put(snapshot, validate=False, client_id=self.client_id, snapshot=False,
                       item_id=item_id, extra={"label": label})
        return True

    def stop(self) -> None:
        """Stop this window's run: the running item is interrupted at its next step; if none of
        this window's items has started yet, the first one leaves the queue."""
        running = self.queue.running()
        if running is not None and running.id in self._mine:
            self.queue.interrupt(running.id)
            return
        pending = [i.id for i in self.queue.pending() if i.id in self._mine]
        if pending and not self.queue.cancel(pending[:1]):
            self.queue.interrupt(pending[0])  # it started in the meantime

    def cancel_all(self) -> None:
        """Take this window's pending items out of the queue and stop its running one."""
        self.queue.cancel([i.id for i in self.queue.pending() if i.id in self._mine])
        self.stop()

    def wait(self, ms: int = 30000) -> bool:
        """Block until none of this window's items is pending or running (shutdown and tests)."""
        deadline = time.monotonic() + ms / 1000
        while self._own_in_queue():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def _own_in_queue(self) -> bool:
        running = self.queue.running()
        return (running is not None and running.id in self._mine) or any(
            i.id in self._mine for i in self.queue.pending())

    def close(self) -> None:
        """This window is going: stop its runs and leave the queue."""
        self._unsubscribe()
        self.cancel_all()
        self.wait(10000)
        self._mine.clear()
        self.shared.leave()

    # -- on the queue's thread -----------------------------------------------------------------
    def _heard(self, qe: Any) -> None:
        images: list[QImage] = []
        if isinstance(qe, q.ItemEvent):
            if qe.item.id not in self._mine:
                return
            e = qe.event
            if isinstance(e, ev.Progress):
                if not self._progress_due(e):
                    return
                images = _safe_images(to_qimages, e.preview, limit=1) if e.preview is not None else []
            elif isinstance(e, (ev.NodeFinished, ev.NodeCached)):
                images = _safe_images(ui_images, e.ui)
            elif isinstance(e, (ev.RunFinished, ev.RunFailed, ev.RunInterrupted)):
                self._stats[qe.item.id] = e.stats
        self._relay.got.emit(qe, images)

    def _progress_due(self, e: ev.Progress) -> bool:
        """At most one progress update per node every PROGRESS_INTERVAL, and always the last."""
        now = time.perf_counter()
        if now - self._last_progress.get(e.node_id, 0.0) < PROGRESS_INTERVAL and e.step < e.total:
            return False
        self._last_progress[e.node_id] = now
        return True

    # -- on the UI thread ------------------------------------------------------------------------
    @Slot(object, object)
    def _arrived(self, qe: Any, images: list[QImage]) -> None:
        if isinstance(qe, q.ItemEvent):
            self.event.emit(qe.event, images)
        self.queue_changed.emit(qe)
        if isinstance(qe, q.ItemFinished) and qe.item.id in self._mine:
            self._mine.discard(qe.item.id)
            self._ended(outcome(qe.entry, self._stats.pop(qe.item.id, None)))
        elif isinstance(qe, q.ItemsRemoved):
            for item in qe.items:
                if item.id in self._mine:
                    self._mine.discard(item.id)
                    self._ended(RunOutcome("cancelled", "taken out of the queue before it ran",
                                           item_id=item.id))

    def _ended(self, out: RunOutcome) -> None:
        self.last = out
        self.run_finished.emit(out)


def outcome(entry: HistoryEntry, stats: Any) -> RunOutcome:
    """The RunOutcome of a finished item (``stats``: its run's RunStats, if the run got that far)."""
    error = entry.error or {}
    executed = list(stats.executed) if stats is not None else list(entry.executed)
    cached = list(stats.cached) if stats is not None else list(entry.cached)
    seconds = stats.total_seconds if stats is not None else entry.duration
    common = dict(seconds=seconds, executed=executed, cached=cached, item_id=entry.id)
    if entry.status == "success":
        return RunOutcome("finished", stats.summary() if stats is not None else "", **common)
    if entry.status == "interrupted":
        return RunOutcome("interrupted", "run stopped", error.get("node_id"), **common)
    if error.get("exception_type") == "GraphValidationError":
        return RunOutcome("invalid", error.get("message", ""), error.get("node_id"), **common)
    if stats is not None and error.get("node_id") is not None:
        return RunOutcome("failed", error.get("message", ""), error["node_id"], **common)
    text = f"{error.get('exception_type', 'Error')}: {error.get('message', '')}"
    return RunOutcome("error", f"{text}\n{error.get('traceback', '')}".rstrip(), **common)


def _safe_images(convert: Any, what: Any, **kw: Any) -> list[QImage]:
    try:
        return convert(what, **kw)
    except Exception:
        return []

