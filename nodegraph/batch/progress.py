"""Progress of a batch: counters every event updates, and two ways of showing them.

Events are dicts with an ``"event"`` field (documented in docs/batch.md, "JSON progress"):
``start``, ``worker_starting``, ``worker_ready``, ``worker_lost``, ``item_started``, ``retry``,
``item_done``, ``item_failed``, ``progress`` (the counters, at most every ``interval`` seconds and
after each finished item) and ``finish``. :class:`ProgressTracker` adds the counters to each
``progress``/``finish`` event; :class:`TextProgress` draws one status line on a terminal (a line
every few seconds otherwise); :class:`JsonProgress` writes each event as one JSON line.
"""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

Sink = Callable[[dict[str, Any]], None]


@dataclass
class _WorkerStats:
    ready_at: float | None = None
    done: int = 0
    busy_seconds: float = 0.0
    alive: bool = True
    host: str = ""


@dataclass
class ProgressTracker:
    """Counts done/failed/retries, rate, ETA and per-worker throughput from the events."""

    sinks: list[Sink] = field(default_factory=list)
    interval: float = 1.0
    clock: Callable[[], float] = time.monotonic
    total: int = 0
    skipped: int = 0  # done before this run (resume)
    done: int = 0
    failed: int = 0
    retries: int = 0
    workers: dict[str, _WorkerStats] = field(default_factory=dict)
    started_at: float | None = None
    first_ready: float | None = None
    _last_emit: float = 0.0

    def __call__(self, event: dict[str, Any]) -> None:
        now = self.clock()
        kind = event.get("event")
        if kind == "start":
            self.total = int(event.get("total", 0))
            self.skipped = int(event.get("skipped", 0))
            self.started_at = now
        elif kind == "worker_ready":
            stats = self.workers.setdefault(str(event["worker"]), _WorkerStats())
            stats.ready_at = now
            stats.host = str(event.get("host", ""))
            if self.first_ready is None:
                self.first_ready = now
        elif kind == "worker_lost":
            self.workers.setdefault(str(event["worker"]), _WorkerStats()).alive = False
        elif kind == "retry":
            self.retries += 1
        elif kind == "item_done":
            self.done += 1
            stats = self.workers.setdefault(str(event.get("worker")), _WorkerStats())
            stats.done += 1
            stats.busy_seconds += float(event.get("seconds", 0.0))
        elif kind == "item_failed":
            self.failed += 1
        if kind == "finish":
            event = {**event, **self.snapshot()}
        self._send(event)
        if kind in ("item_done", "item_failed") or (
                kind != "progress" and now - self._last_emit >= self.interval):
            self._last_emit = now
            self._send({"event": "progress", **self.snapshot()})

    def tick(self) -> None:
        """Emit a ``progress`` event if ``interval`` has passed (call it while waiting)."""
        now = self.clock()
        if now - self._last_emit >= self.interval:
            self._last_emit = now
            self._send({"event": "progress", **self.snapshot()})

    def _send(self, event: dict[str, Any]) -> None:
        for sink in self.sinks:
            sink(event)

    def snapshot(self) -> dict[str, Any]:
        """The counters as a ``progress`` event carries them."""
        now = self.clock()
        since = self.first_ready if self.first_ready is not None else self.started_at
        elapsed = max(now - since, 1e-9) if since is not None else 0.0
        rate = self.done / elapsed if self.done and elapsed else 0.0
        remaining = max(self.total - self.skipped - self.done - self.failed, 0)
        eta = remaining / rate if rate > 0 else None
        workers = {}
        for name, w in sorted(self.workers.items()):
            alive_for = (now - w.ready_at) if w.ready_at is not None else 0.0
            workers[name] = {"done": w.done, "alive": w.alive, "host": w.host,
                             "items_per_s": round(w.done / alive_for, 4) if alive_for > 0 else 0.0}
        return {"total": self.total, "done": self.skipped + self.done, "done_this_run": self.done,
                "skipped": self.skipped, "failed": self.failed, "retries": self.retries,
                "items_per_s": round(rate, 4), "eta_s": round(eta, 1) if eta is not None else None,
                "elapsed_s": round(now - self.started_at, 2) if self.started_at is not None else 0.0,
                "workers": workers}


class JsonProgress:
    """Each event as one JSON line on ``stream`` (stdout by default), flushed at once."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout

    def __call__(self, event: dict[str, Any]) -> None:
        self.stream.write(json.dumps(event, sort_keys=True, ensure_ascii=False, default=str) + "\n")
        self.stream.flush()


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class TextProgress:
    """A status line for people: ``done/total  rate  ETA  retries  per-worker items/s``. On a
    terminal it redraws one line; otherwise it prints a line every ``every`` seconds. Worker losses,
    retries and failures are printed as lines of their own."""

    def __init__(self, stream: TextIO | None = None, *, every: float = 10.0,
                 clock: Callable[[], float] = time.monotonic):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = every
        self.clock = clock
        self._last = -1e9
        self._drawn = False

    def _line(self, text: str) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[2K")
            self._drawn = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "start":
            skipped = event.get("skipped", 0)
            self._line(f"batch: {event['total']} item(s) in {event['out']}"
                       + (f", {skipped} already done" if skipped else "")
                       + f"; {event.get('workers', '?')} {event.get('backend', '')} worker(s)")
        elif kind == "worker_lost":
            where = f" while running item {event['index']}" if event.get("index") is not None else ""
            self._line(f"worker {event['worker']} lost{where}: {event['reason']}")
        elif kind == "item_failed":
            self._line(f"item {event['index']} failed ({event['kind']}): "
                       f"{str(event['error']).splitlines()[0] if event['error'] else ''}")
        elif kind == "progress":
            now = self.clock()
            if self.tty:
                self.stream.write("\r\x1b[2K" + self.status(event))
                self.stream.flush()
                self._drawn = True
            elif now - self._last >= self.every:
                self._last = now
                self._line(self.status(event))
        elif kind == "finish":
            state = "interrupted (resume with --resume)" if event.get("interrupted") else "finished"
            self._line(f"{state}: {event['done']}/{event['total']} done, {event['failed']} failed, "
                       f"{event['retries']} retried, {event.get('model_loads', 0)} model load(s), "
                       f"{_duration(event.get('elapsed_s'))}")

    @staticmethod
    def status(p: dict[str, Any]) -> str:
        workers = " ".join(f"{n}:{w['items_per_s']:.2f}/s" + ("" if w["alive"] else "†")
                           for n, w in p["workers"].items())
        return (f"{p['done']}/{p['total']}  {p['items_per_s']:.2f} items/s  "
                f"ETA {_duration(p['eta_s'])}  retries {p['retries']}  failed {p['failed']}  "
                f"[{workers}]")
