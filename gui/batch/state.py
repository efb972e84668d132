"""What a batch's progress events said so far: counters, workers, failures and the log messages
the dialog shows (docs/batch.md, "JSON progress"); one ``apply`` per event, in stream order."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .report import format_duration


@dataclass
class WorkerInfo:
    """One row of the workers table."""

    name: str
    host: str = ""
    pid: int | None = None
    threads: int | None = None
    done: int = 0
    items_per_s: float = 0.0
    alive: bool = True
    ready: bool = False
    item: int | None = None  # the item it runs now
    reason: str = ""  # why it was lost
    stopped: bool = False  # the batch finished (its workers were closed)

    def status(self) -> str:
        if not self.alive:
            return "lost"
        if self.stopped:
            return "stopped"
        if not self.ready:
            return "starting…"
        return f"alive · item {self.item}" if self.item is not None else "alive · idle"


@dataclass
class BatchState:
    """Everything the events said so far (docs/batch.md, "JSON progress")."""

    started: bool = False
    finished: bool = False
    total: int = 0
    todo: int = 0
    skipped: int = 0
    done: int = 0  # including skipped
    done_this_run: int = 0
    failed: int = 0
    retries: int = 0
    items_per_s: float = 0.0
    eta_s: float | None = None
    elapsed_s: float = 0.0
    backend: str = ""
    out: str = ""
    resume: bool = False
    interrupted: bool = False
    model_loads: int = 0
    workers_started: int = 0
    replacements: int = 0
    workers: dict[str, WorkerInfo] = field(default_factory=dict)
    failures: dict[int, str] = field(default_factory=dict)  # item index → error
    files: list[str] = field(default_factory=list)  # outputs written this run
    log: list[str] = field(default_factory=list)
    error: list[str] = field(default_factory=list)  # why the batch refused to start or stopped

    def worker(self, name: Any) -> WorkerInfo:
        key = str(name)
        if key not in self.workers:
            self.workers[key] = WorkerInfo(key)
        return self.workers[key]

    def apply(self, event: dict[str, Any]) -> list[str]:
        """Update from one event; returns the log messages it adds (also kept in ``log``)."""
        kind = event.get("event")
        handler = getattr(self, f"_on_{kind}", None) if isinstance(kind, str) else None
        messages = handler(event) if handler is not None else None
        messages = list(messages or [])
        self.log.extend(messages)
        return messages

    def _counters(self, e: dict[str, Any]) -> None:
        for name in ("total", "done", "done_this_run", "skipped", "failed", "retries"):
            if isinstance(e.get(name), int):
                setattr(self, name, e[name])
        if isinstance(e.get("items_per_s"), (int, float)):
            self.items_per_s = float(e["items_per_s"])
        if "eta_s" in e:
            self.eta_s = float(e["eta_s"]) if isinstance(e["eta_s"], (int, float)) else None
        if isinstance(e.get("elapsed_s"), (int, float)):
            self.elapsed_s = float(e["elapsed_s"])
        workers = e.get("workers")
        if isinstance(workers, dict):
            for name, w in workers.items():
                if not isinstance(w, dict):
                    continue
                info = self.worker(name)
                info.done = int(w.get("done", info.done))
                info.items_per_s = float(w.get("items_per_s", info.items_per_s))
                info.alive = bool(w.get("alive", info.alive))
                info.host = str(w.get("host") or info.host)

    def _on_start(self, e: dict[str, Any]) -> list[str]:
        self.started = True
        self.total = int(e.get("total", 0))
        self.skipped = int(e.get("skipped", 0))
        self.done = self.skipped
        self.todo = int(e.get("todo", self.total - self.skipped))
        self.backend = str(e.get("backend", ""))
        self.out = str(e.get("out", ""))
        self.resume = bool(e.get("resume", False))
        text = (f"batch of {self.total} item(s), {self.todo} to do"
                + (f" ({self.skipped} done before)" if self.skipped else "")
                + f"; {e.get('workers', '?')} {self.backend} worker(s)")
        version = e.get("progress_version")
        if isinstance(version, int) and version > 1:
            text += (f" — progress events version {version}; this editor reads version 1, "
                     "some figures may be missing")
        return [text]

    def _on_worker_starting(self, e: dict[str, Any]) -> list[str]:
        info = self.worker(e.get("worker"))
        info.alive, info.ready, info.item = True, False, None
        return [f"starting replacement worker {info.name}"] if e.get("replacement") else []

    def _on_worker_ready(self, e: dict[str, Any]) -> list[str]:
        info = self.worker(e.get("worker"))
        info.ready = info.alive = True
        info.host = str(e.get("host") or info.host)
        info.pid = int(e["pid"]) if isinstance(e.get("pid"), int) else info.pid
        info.threads = int(e["threads"]) if isinstance(e.get("threads"), int) else info.threads
        return []

    def _on_worker_lost(self, e: dict[str, Any]) -> list[str]:
        info = self.worker(e.get("worker"))
        info.alive, info.item = False, None
        info.reason = str(e.get("reason", ""))
        where = f" while running item {e['index']}" if e.get("index") is not None else ""
        return [f"worker {info.name} lost{where}: {info.reason}"]

    def _on_item_started(self, e: dict[str, Any]) -> list[str]:
        self.worker(e.get("worker")).item = int(e["index"]) if e.get("index") is not None else None
        return []

    def _on_retry(self, e: dict[str, Any]) -> list[str]:
        self.retries += 1
        return [f"item {e.get('index')} goes back to the queue (attempt {e.get('attempt')}): "
                f"{e.get('reason', '')}"]

    def _on_item_done(self, e: dict[str, Any]) -> list[str]:
        self.done += 1
        self.done_this_run += 1
        info = self.worker(e.get("worker"))
        info.done += 1
        info.item = None
        self.files.extend(str(f) for f in e.get("files", []) or [])
        return []

    def _on_item_failed(self, e: dict[str, Any]) -> list[str]:
        self.failed += 1
        index = int(e.get("index", -1))
        error = str(e.get("error") or "")
        self.failures[index] = error
        if e.get("worker") is not None:
            self.worker(e.get("worker")).item = None
        first = error.strip().splitlines()[0] if error.strip() else "(no message)"
        return [f"item {index} failed ({e.get('kind', '?')}): {first}"]

    def _on_progress(self, e: dict[str, Any]) -> list[str]:
        self._counters(e)
        return []

    def _on_error(self, e: dict[str, Any]) -> list[str]:
        # The same lines reach the log from stderr; keep them for the summary only.
        self.error = [str(m) for m in e.get("messages", []) or []]
        return []

    def _on_finish(self, e: dict[str, Any]) -> list[str]:
        self._counters(e)
        self.finished = True
        self.interrupted = bool(e.get("interrupted", False))
        self.model_loads = int(e.get("model_loads", 0) or 0)
        self.workers_started = int(e.get("workers_started", 0) or 0)
        self.replacements = int(e.get("replacements", 0) or 0)
        for info in self.workers.values():
            info.item = None
            info.stopped = True
        state = "interrupted" if self.interrupted else "finished"
        return [f"{state}: {self.done}/{self.total} done, {self.failed} failed, "
                f"{self.retries} retried, {self.model_loads} model load(s), "
                f"{format_duration(self.elapsed_s)}"]
