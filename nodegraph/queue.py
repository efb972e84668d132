"""The run queue: graphs waiting to run (snapshots), one worker running them in order, a history.

    queue = RunQueue(session)                  # anything with ``registry`` and Session.run's signature
    item = queue.put(graph)                    # a snapshot of the graph joins the queue
    unsubscribe = queue.subscribe(print)       # typed events: ItemQueued, ItemStarted, ItemEvent, ...
    queue.wait_idle()
    queue.history.entries()[-1].status         # "success", "error" or "interrupted"

Items run one at a time on the queue's worker thread, lowest ``number`` first (ComfyUI's ordering:
each new item gets the next number; ``front=True`` gives a negative one, so it runs before the
others). Pending items can be cancelled, moved and cleared; the running one can be interrupted.
Every change is announced to the subscribers as a frozen event (see :data:`QueueEvent`); the
executor's own events for the running item arrive wrapped in :class:`ItemEvent`. Callbacks run on
the thread that made the change (the worker for run events): hand them to your own thread (the
editor through a Qt signal, the HTTP server through its event loop) and return quickly.

No Qt, no torch. The editor's Queue and History panels and ``nodegraph serve`` share these objects.
"""
from __future__ import annotations

import bisect
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, Union

from .context import RunOptions
from .errors import GraphValidationError, Interrupted, NodeExecutionError
from .events import Event, NodeCached, NodeFinished, NodeStarted
from .graph import Graph
from .history import History, HistoryEntry, HistoryRemoved, summarize
from .registry import Registry

log = logging.getLogger("nodegraph.queue")


class Runner(Protocol):
    """What the queue runs items with: :class:`nodegraph.api.Session` is one."""

    registry: Registry

    def run(self, graph: Graph, *, on_event: Any = None, outputs: Iterable[str] | None = None,
            validate: bool = True, options: RunOptions | None = None,
            stop: threading.Event | None = None) -> Any: ...


@dataclass(frozen=True)
class QueueItem:
    """A graph waiting to run (or running). ``graph`` is a snapshot: editing the original does not
    change what runs. ``targets`` are the output nodes to compute (None: all of them); ``validate``
    False skips the run's own validation (for a client that validated on submission). ``extra`` is
    the client's (the HTTP server keeps ComfyUI's prompt and ``extra_data`` there)."""

    id: str
    number: float
    graph: Graph
    targets: tuple[str, ...] | None = None
    options: RunOptions | None = None
    validate: bool = True
    client_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)


# -- events ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ItemQueued:
    item: QueueItem
    index: int
    """Its place among the pending items (0 runs next)."""


@dataclass(frozen=True)
class ItemsRemoved:
    """Pending items left the queue without running: ``reason`` is "cancelled" or "cleared"."""

    items: tuple[QueueItem, ...]
    reason: str


@dataclass(frozen=True)
class QueueReordered:
    """The pending items are now in this order (ids)."""

    ids: tuple[str, ...]


@dataclass(frozen=True)
class ItemStarted:
    item: QueueItem
    started_at: float


@dataclass(frozen=True)
class ItemEvent:
    """An executor event (:mod:`nodegraph.events`) of the running item."""

    item: QueueItem
    event: Event


@dataclass(frozen=True)
class ItemFinished:
    """The item ran (whatever the outcome: ``entry.status``); ``entry`` is now in the history."""

    item: QueueItem
    entry: HistoryEntry


QueueEvent = Union[ItemQueued, ItemsRemoved, QueueReordered, ItemStarted, ItemEvent, ItemFinished,
                   HistoryRemoved]
Subscriber = Callable[[QueueEvent], None]


# -- the queue ------------------------------------------------------------------------------------
class RunQueue:
    """Pending items in run order, at most one running, a :class:`History` of finished ones.

    The worker thread starts with the first :meth:`put` (or :meth:`start`); :meth:`close` stops it.
    The queue announces the history's changes to its subscribers (it takes ``history.on_change``).
    """

    def __init__(self, runner: Runner, history: History | None = None):
        self.runner = runner
        self.history = history if history is not None else History()
        self.history.on_change = self._emit
        self._pending: list[QueueItem] = []
        self._running: QueueItem | None = None
        self._stop: threading.Event | None = None
        self._calls: list[Callable[[], Any]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition(threading.RLock())
        self._subscribers: list[Subscriber] = []
        self._thread: threading.Thread | None = None
        self._closing = False

    # -- subscribing -----------------------------------------------------------------------
    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(event)`` for every queue event from now on; returns the unsubscriber."""
        with self._cond:
            self._subscribers = [*self._subscribers, callback]

        def unsubscribe() -> None:
            with self._cond:
                self._subscribers = [s for s in self._subscribers if s is not callback]

        return unsubscribe

    def _emit(self, event: QueueEvent) -> None:
        for callback in self._subscribers:  # a copy-on-write list: safe without the lock
            try:
                callback(event)
            except Exception:
                log.exception("a queue subscriber raised on %s", type(event).__name__)

    # -- reading ---------------------------------------------------------------------------
    def pending(self) -> list[QueueItem]:
        """The pending items, next to run first."""
        with self._cond:
            return list(self._pending)

    def running(self) -> QueueItem | None:
        return self._running

    def remaining(self) -> int:
        """Pending items plus the running one (ComfyUI's ``queue_remaining``)."""
        with self._cond:
            return len(self._pending) + (self._running is not None)

    def get(self, item_id: str) -> QueueItem | None:
        """A pending or running item by id."""
        with self._cond:
            if self._running is not None and self._running.id == item_id:
                return self._running
            return next((i for i in self._pending if i.id == item_id), None)

    # -- changing --------------------------------------------------------------------------
    def put(self, graph: Graph, *, targets: Iterable[str] | None = None, number: float | None = None,
            front: bool = False, options: RunOptions | None = None, validate: bool = True,
            client_id: str | None = None, extra: dict[str, Any] | None = None,
            item_id: str | None = None, snapshot: bool = True) -> QueueItem:
        """Queue ``graph`` (copied unless ``snapshot=False``: then it must not change any more).

        Without ``number`` the item gets the next number (negated with ``front``, so it runs before
        every item queued without it); items run in order of number, then of arrival."""
        with self._cond:
            if self._closing:
                raise RuntimeError("the queue is closed")
            serial = next(self._counter)
            if number is None:
                number = float(-serial if front else serial)
            item = QueueItem(item_id or str(uuid.uuid4()), float(number),
                             graph.copy() if snapshot else graph,
                             None if targets is None else tuple(targets), options, validate,
                             client_id, dict(extra or {}))
            index = bisect.bisect_right([i.number for i in self._pending], item.number)
            self._pending.insert(index, item)
            self._ensure_worker()
            self._cond.notify_all()
        self._emit(ItemQueued(item, index))
        return item

    def cancel(self, ids: Iterable[str]) -> list[QueueItem]:
        """Remove pending items by id (unknown or running ids are ignored); returns those removed."""
        wanted = set(ids)
        with self._cond:
            removed = tuple(i for i in self._pending if i.id in wanted)
            self._pending = [i for i in self._pending if i.id not in wanted]
        if removed:
            self._emit(ItemsRemoved(removed, "cancelled"))
        return list(removed)

    def clear(self) -> list[QueueItem]:
        """Remove every pending item (the running one goes on: :meth:`interrupt` stops it)."""
        with self._cond:
            removed, self._pending = tuple(self._pending), []
        if removed:
            self._emit(ItemsRemoved(removed, "cleared"))
        return list(removed)

    def move(self, item_id: str, index: int) -> bool:
        """Move a pending item to ``index`` among the pending ones (0: runs next; clamped). Its
        number changes to sit between its new neighbours'. False if it is not pending."""
        with self._cond:
            pos = next((k for k, i in enumerate(self._pending) if i.id == item_id), None)
            if pos is None:
                return False
            item = self._pending.pop(pos)
            index = max(0, min(index, len(self._pending)))
            before = self._pending[index - 1].number if index > 0 else None
            after = self._pending[index].number if index < len(self._pending) else None
            if before is None and after is None:
                number = item.number
            elif before is None:
                number = after - 1.0
            elif after is None:
                number = before + 1.0
            else:
                number = (before + after) / 2.0
            self._pending.insert(index, replace(item, number=number))
            order = tuple(i.id for i in self._pending)
        self._emit(QueueReordered(order))
        return True

    def interrupt(self, item_id: str | None = None) -> bool:
        """Stop the running item (only if it is ``item_id``, when given). True if one was asked to stop."""
        with self._cond:
            running, stop = self._running, self._stop
            if running is None or stop is None or (item_id is not None and running.id != item_id):
                return False
            stop.set()
            return True

    def between_runs(self, fn: Callable[[], Any]) -> None:
        """Call ``fn()`` on the worker thread when no item is running (before the next one starts),
        e.g. to free memory."""
        with self._cond:
            self._calls.append(fn)
            self._ensure_worker()
            self._cond.notify_all()

    # -- the worker ------------------------------------------------------------------------
    def start(self) -> None:
        with self._cond:
            self._ensure_worker()

    def _ensure_worker(self) -> None:
        if self._thread is None and not self._closing:
            self._thread = threading.Thread(target=self._work, name="nodegraph-queue", daemon=True)
            self._thread.start()

    def close(self, timeout: float | None = 10.0) -> None:
        """Drop pending items, interrupt the running one and stop the worker."""
        with self._cond:
            self._closing = True
            if self._stop is not None:
                self._stop.set()
            self._pending.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is pending or running; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending or self._running is not None or self._calls:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def _work(self) -> None:
        while True:
            with self._cond:
                while not (self._pending or self._calls or self._closing):
                    self._cond.wait()
                if self._closing:
                    return
                calls, self._calls = self._calls, []
                item = None
                if not calls:
                    item = self._pending.pop(0)
                    self._running, self._stop = item, threading.Event()
                    stop = self._stop
            if calls:
                self._call_all(calls)
                continue
            assert item is not None
            entry = self._execute(item, stop)
            self.history.add(entry)
            with self._cond:
                self._running, self._stop = None, None
                self._cond.notify_all()
            self._emit(ItemFinished(item, entry))

    def _call_all(self, calls: list[Callable[[], Any]]) -> None:
        for fn in calls:
            try:
                fn()
            except Exception:
                log.exception("a between-runs call raised")
        with self._cond:
            self._cond.notify_all()

    def _execute(self, item: QueueItem, stop: threading.Event) -> HistoryEntry:
        started = time.time()
        self._emit(ItemStarted(item, started))
        record = _RunRecord(item, self._emit)
        status, error = "success", None
        try:
            self.runner.run(item.graph, on_event=record, outputs=item.targets, validate=item.validate,
                            options=item.options, stop=stop)
        except NodeExecutionError as exc:
            status, error = "error", _node_error(exc)
        except Interrupted as exc:
            node_id = exc.node_id or record.current
            node = item.graph.nodes.get(node_id) if node_id is not None else None
            status, error = "interrupted", {
                "node_id": node_id, "node_type": node.type if node is not None else None,
                "message": str(exc), "exception_type": "Interrupted", "traceback": ""}
        except GraphValidationError as exc:
            first = next((p for p in exc.problems if p.node_id is not None), exc.problems[0]
                         if exc.problems else None)
            status, error = "error", {
                "node_id": first.node_id if first else None, "node_type": first.node_type if first else None,
                "message": str(exc), "exception_type": "GraphValidationError", "traceback": ""}
        except Exception as exc:  # a bug outside any node: keep the worker alive and say what happened
            log.exception("queue item %s failed outside its nodes", item.id)
            status, error = "error", {"node_id": None, "node_type": None, "message": str(exc),
                                      "exception_type": type(exc).__name__, "traceback": ""}
        seed, summary = summarize(item.graph, self.runner.registry)
        return HistoryEntry(item.id, item.number, status, started, time.time(), item.graph,
                            record.outputs, tuple(record.executed), tuple(record.cached), item.targets,
                            error, seed, summary, dict(item.extra))


class _RunRecord:
    """The executor callback of one item: relays its events and keeps what the history needs."""

    def __init__(self, item: QueueItem, emit: Callable[[QueueEvent], None]):
        self.item = item
        self.emit = emit
        self.outputs: dict[str, dict[str, Any]] = {}
        self.executed: list[str] = []
        self.cached: list[str] = []
        self.current: str | None = None  # the node that started last

    def __call__(self, event: Event) -> None:
        if isinstance(event, NodeStarted):
            self.current = event.node_id
        elif isinstance(event, NodeFinished):
            self.executed.append(event.node_id)
            if event.ui:
                self.outputs[event.node_id] = event.ui
        elif isinstance(event, NodeCached):
            self.cached.append(event.node_id)
            if event.ui:
                self.outputs[event.node_id] = event.ui
        self.emit(ItemEvent(self.item, event))


def _node_error(exc: NodeExecutionError) -> dict[str, Any]:
    cause = exc.error
    return {"node_id": exc.node_id, "node_type": exc.node_type,
            "message": str(cause) or type(cause).__name__,
            "exception_type": _type_name(type(cause)), "traceback": exc.traceback_text}


def _type_name(cls: type) -> str:
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
