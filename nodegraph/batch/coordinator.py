"""The scheduler: hands items to workers, one at a time each, and sees every item through.

It knows workers only through a :class:`Pool` (local processes, Ray actors, or a fake in tests):

- an idle worker gets the next item; a finished item goes to ``on_done`` (which writes it);
- an item lost with a dead worker (or node) goes back to the front of the queue for a live
  worker, and a replacement worker is started; after ``max_attempts`` losses the item is given up
  (it may be what kills workers);
- an error raised by the graph itself (bad input, out of memory, a model that differs) is reported
  through ``on_failed`` and not retried: running it again would fail again;
- :meth:`stop` (Ctrl-C) stops handing out items; running ones finish, and what is left is
  resumable. A second Ctrl-C (KeyboardInterrupt) closes the pool at once.

Events for progress are plain dicts passed to ``emit`` (see progress.py for their fields).
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .items import Item

MAX_ATTEMPTS = 3


# -- what a pool reports --------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkerReady:
    worker: str
    info: dict[str, Any]


@dataclass(frozen=True)
class ItemFinished:
    """A worker answered for an item: ``result["status"]`` is "ok" or "error" (see worker.py)."""

    worker: str
    index: int
    result: dict[str, Any]


@dataclass(frozen=True)
class WorkerLost:
    """A worker died (its process, actor or node); ``index`` is the item it was running, if any."""

    worker: str
    reason: str
    index: int | None = None
    started: bool = True  # False: it never became ready (e.g. failed to start)


PoolEvent = WorkerReady | ItemFinished | WorkerLost


class Pool(Protocol):
    """Workers the coordinator drives; every call returns at once except :meth:`wait`."""

    def start_worker(self) -> str:
        """Start one worker (asynchronously); returns its name. It reports WorkerReady later."""

    def submit(self, worker: str, task: dict[str, Any]) -> None:
        """Give a ready, idle worker one item (``task``: index, key, overrides, models, attempt)."""

    def wait(self, timeout: float) -> list[PoolEvent]:
        """Events that happened, waiting up to ``timeout`` seconds for the first."""

    def close(self, *, kill: bool = False) -> None:
        """Stop every worker (``kill``: at once, without letting running items finish)."""


class BatchAborted(RuntimeError):
    """The batch cannot go on (e.g. no worker can start); the message says why."""


@dataclass
class Summary:
    """What a coordinator run did."""

    done: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)  # index -> error
    retries: int = 0
    workers_started: int = 0
    replacements: int = 0
    model_loads: int = 0
    interrupted: bool = False
    seconds: float = 0.0


OnDone = Callable[[Item, dict[str, Any], str, int], None]
OnFailed = Callable[[Item, str, str, "str | None", int], None]


class Coordinator:
    """Runs ``items`` on ``workers`` workers of ``pool`` (see the module docstring)."""

    def __init__(self, pool: Pool, items: Sequence[Item], *, workers: int,
                 on_done: OnDone, on_failed: OnFailed,
                 emit: Callable[[dict[str, Any]], None] | None = None,
                 tick: Callable[[], None] | None = None,
                 max_attempts: int = MAX_ATTEMPTS, max_replacements: int | None = None,
                 start_timeout: float = 600.0, poll: float = 0.5):
        if workers < 1:
            raise ValueError("a batch needs at least one worker")
        self.pool = pool
        self.items = {item.index: item for item in items}
        self.queue: deque[int] = deque(item.index for item in items)
        self.workers = workers
        self.on_done = on_done
        self.on_failed = on_failed
        self.emit = emit or (lambda event: None)
        self.tick = tick or (lambda: None)
        self.max_attempts = max_attempts
        self.max_replacements = (3 * workers + 3) if max_replacements is None else max_replacements
        self.start_timeout = start_timeout
        self.poll = poll
        self.attempts: dict[int, int] = {}
        self.running: dict[str, int] = {}  # worker -> index
        self.idle: list[str] = []
        self.starting: set[str] = set()
        self.loads: dict[str, int] = {}  # worker -> model loads it reported
        self.summary = Summary()
        self.done_set: set[int] = set()
        self._stopping = False
        self._last_life = time.monotonic()
        self._last_loss = ""

    def stop(self) -> None:
        """Hand out no more items; the running ones finish (safe from a signal handler)."""
        self._stopping = True

    @property
    def stopping(self) -> bool:
        return self._stopping

    # -- main loop -------------------------------------------------------------------------
    def run(self) -> Summary:
        t0 = time.monotonic()
        try:
            for _ in range(min(self.workers, len(self.queue))):
                self._start_worker(replacement=False)
            while True:
                self._hand_out()
                if not self.running and (not self.queue or self._stopping):
                    break
                if not self.running and not self.idle and not self.starting:
                    self._replace("no worker left")
                self._check_starvation()
                for event in self.pool.wait(self.poll):
                    self._handle(event)
                self.tick()
            self.pool.close()
        except BaseException:
            self.pool.close(kill=True)
            raise
        finally:
            self.summary.interrupted = self._stopping and bool(self.queue)
            self.summary.model_loads = sum(self.loads.values())
            self.summary.seconds = time.monotonic() - t0
        return self.summary

    def _hand_out(self) -> None:
        while self.idle and self.queue and not self._stopping:
            worker = self.idle.pop(0)
            index = self.queue.popleft()
            item = self.items[index]
            attempt = self.attempts.get(index, 0) + 1
            self.attempts[index] = attempt
            self.running[worker] = index
            self.pool.submit(worker, {"index": index, "key": item.key, "models": item.models,
                                      "overrides": item.overrides_json(), "attempt": attempt})
            self.emit({"event": "item_started", "index": index, "worker": worker,
                       "attempt": attempt})

    def _start_worker(self, *, replacement: bool) -> None:
        name = self.pool.start_worker()
        self.starting.add(name)
        self.summary.workers_started += 1
        if replacement:
            self.summary.replacements += 1
        self.emit({"event": "worker_starting", "worker": name, "replacement": replacement})

    def _replace(self, reason: str) -> None:
        if not self.queue and not self.running:
            return
        if self._stopping:
            return
        if self.summary.replacements >= self.max_replacements:
            if not self.running and not self.idle and not self.starting:
                raise BatchAborted(f"workers keep dying ({self.summary.replacements} replaced; last: "
                                   f"{self._last_loss or reason}); the batch stops here and can be "
                                   "resumed with --resume once the cause is fixed")
            return
        self._start_worker(replacement=True)

    def _check_starvation(self) -> None:
        if self.running or self.idle:
            self._last_life = time.monotonic()
            return
        if time.monotonic() - self._last_life > self.start_timeout:
            raise BatchAborted(f"no worker became ready within {self.start_timeout:.0f} s "
                               f"({len(self.starting)} starting; last problem: "
                               f"{self._last_loss or 'none reported'}). Check that the cluster has "
                               "free resources for the workers, then resume with --resume")

    # -- events ----------------------------------------------------------------------------
    def _handle(self, event: PoolEvent) -> None:
        if isinstance(event, WorkerReady):
            self.starting.discard(event.worker)
            self.idle.append(event.worker)
            self._last_life = time.monotonic()
            self.emit({"event": "worker_ready", "worker": event.worker, **event.info})
        elif isinstance(event, ItemFinished):
            self._finished(event)
        elif isinstance(event, WorkerLost):
            self._lost(event)

    def _finished(self, event: ItemFinished) -> None:
        worker, index, result = event.worker, event.index, event.result
        if self.running.get(worker) == index:
            del self.running[worker]
            self.idle.append(worker)
        item = self.items.get(index)
        if item is None or index in self.summary.failed or index in self.done_set:
            return  # a late duplicate
        attempt = self.attempts.get(index, 1)
        if "model_loads" in result:
            self.loads[worker] = int(result["model_loads"])
        if result.get("status") == "ok":
            self.on_done(item, result, worker, attempt)
            self.summary.done.append(index)
            self.done_set.add(index)
        else:
            kind = str(result.get("kind", "graph"))
            error = str(result.get("error", "unknown error"))
            self.summary.failed[index] = error
            self.on_failed(item, kind, error, worker, attempt)

    def _lost(self, event: WorkerLost) -> None:
        worker = event.worker
        self.starting.discard(worker)
        if worker in self.idle:
            self.idle.remove(worker)
        index = self.running.pop(worker, event.index)
        self._last_loss = f"{worker}: {event.reason}"
        self.emit({"event": "worker_lost", "worker": worker, "reason": event.reason,
                   "index": index})
        if index is not None and index not in self.done_set and index not in self.summary.failed:
            attempts = self.attempts.get(index, 1)
            item = self.items[index]
            if attempts >= self.max_attempts:
                error = (f"given up after {attempts} attempts: each time the worker running it was "
                         f"lost (last: {event.reason})")
                self.summary.failed[index] = error
                self.on_failed(item, "lost", error, worker, attempts)
            else:
                self.queue.appendleft(index)
                self.summary.retries += 1
                self.emit({"event": "retry", "index": index, "attempt": attempts + 1,
                           "reason": event.reason})
        self._replace(event.reason)
