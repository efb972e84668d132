"""Progress counters and their two displays."""
from __future__ import annotations

import io
import json

from nodegraph.batch.progress import JsonProgress, ProgressTracker, TextProgress


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def feed(tracker, clock):
    tracker({"event": "start", "total": 10, "skipped": 2, "out": "o", "workers": 2,
             "backend": "local"})
    tracker({"event": "worker_ready", "worker": "a", "host": "h1"})
    tracker({"event": "worker_ready", "worker": "b", "host": "h2"})
    clock.now += 2
    for worker in ("a", "a", "b"):
        tracker({"event": "item_done", "worker": worker, "seconds": 0.5, "index": 0})
    tracker({"event": "retry", "index": 3, "attempt": 2, "reason": "x"})
    tracker({"event": "worker_lost", "worker": "b", "reason": "node died", "index": 3})


def test_counters_rate_eta_and_per_worker_throughput():
    clock = Clock()
    seen = []
    tracker = ProgressTracker([seen.append], clock=clock)
    feed(tracker, clock)
    snap = tracker.snapshot()
    assert (snap["total"], snap["done"], snap["done_this_run"], snap["retries"]) == (10, 5, 3, 1)
    assert snap["items_per_s"] == 1.5  # 3 items in the 2 s since the first worker was ready
    assert snap["eta_s"] == round(5 / 1.5, 1)  # 5 items left
    assert snap["workers"]["a"] == {"done": 2, "alive": True, "host": "h1", "items_per_s": 1.0}
    assert snap["workers"]["b"]["alive"] is False
    assert [e["event"] for e in seen].count("progress") >= 3  # one after each finished item


def test_finish_event_carries_the_counters():
    clock = Clock()
    seen = []
    tracker = ProgressTracker([seen.append], clock=clock)
    feed(tracker, clock)
    tracker({"event": "finish", "interrupted": False, "model_loads": 2})
    assert seen[-1]["event"] == "finish" and seen[-1]["done"] == 5 and seen[-1]["model_loads"] == 2


def test_json_progress_writes_one_parsable_line_per_event():
    stream = io.StringIO()
    sink = JsonProgress(stream)
    sink({"event": "start", "total": 3})
    sink({"event": "item_done", "index": 0, "files": ["a.png"]})
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["start", "item_done"]


def test_text_status_line_shows_done_rate_eta_retries_and_workers():
    clock = Clock()
    stream = io.StringIO()
    tracker = ProgressTracker([TextProgress(stream, every=0, clock=clock)], clock=clock)
    feed(tracker, clock)
    text = stream.getvalue()
    assert "batch: 10 item(s)" in text and "2 already done" in text
    assert "3/10  0.50 items/s  ETA 0:14" in text  # drawn after each finished item
    assert TextProgress.status(tracker.snapshot()) == \
        "5/10  1.50 items/s  ETA 0:03  retries 1  failed 0  [a:1.00/s b:0.50/s†]"
    assert "worker b lost while running item 3: node died" in text
