"""The editor's Batch dialog, Qt-free: ``nodegraph batch --progress json`` read as it arrives
(gui.batch.stream) and what its events say (gui.batch.state)."""
from __future__ import annotations

import json

from gui.batch.state import BatchState
from gui.batch.stream import LineBuffer, parse_event

EVENTS = [
    {"event": "start", "progress_version": 1, "total": 5, "skipped": 1, "todo": 4, "workers": 2,
     "backend": "local", "out": "/o", "resume": True},
    {"event": "worker_starting", "worker": "local-1", "replacement": False},
    {"event": "worker_starting", "worker": "local-2", "replacement": False},
    {"event": "worker_ready", "worker": "local-1", "pid": 101, "host": "vm", "threads": 2},
    {"event": "worker_ready", "worker": "local-2", "pid": 102, "host": "vm", "threads": 2},
    {"event": "item_started", "index": 1, "worker": "local-1", "attempt": 1},
    {"event": "item_started", "index": 2, "worker": "local-2", "attempt": 1},
    {"event": "item_done", "index": 1, "key": "k1", "worker": "local-1", "seconds": 0.5,
     "files": ["000001-k1-3-0.png"], "attempt": 1},
    {"event": "worker_lost", "worker": "local-2", "reason": "worker process 102 exited by signal 9",
     "index": 2},
    {"event": "retry", "index": 2, "attempt": 2, "reason": "its worker died"},
    {"event": "worker_starting", "worker": "local-3", "replacement": True},
    {"event": "item_started", "index": 3, "worker": "local-1", "attempt": 1},
    {"event": "item_failed", "index": 3, "key": "k3", "kind": "graph",
     "error": "seed 3 is the one this test graph refuses\nmore detail", "worker": "local-1",
     "attempt": 1},
    {"event": "progress", "total": 5, "done": 2, "done_this_run": 1, "skipped": 1, "failed": 1,
     "retries": 1, "items_per_s": 1.25, "eta_s": 1.6, "elapsed_s": 3.0,
     "workers": {"local-1": {"done": 1, "items_per_s": 0.5, "alive": True, "host": "vm"},
                 "local-2": {"done": 0, "items_per_s": 0.0, "alive": False, "host": "vm"}}},
    {"event": "finish", "total": 5, "done": 4, "done_this_run": 3, "skipped": 1, "failed": 1,
     "retries": 1, "items_per_s": 1.5, "eta_s": None, "elapsed_s": 4.2, "interrupted": False,
     "model_loads": 2, "workers_started": 3, "replacements": 1, "out": "/o",
     "workers": {"local-1": {"done": 2, "items_per_s": 0.6, "alive": True, "host": "vm"},
                 "local-2": {"done": 0, "items_per_s": 0.0, "alive": False, "host": "vm"},
                 "local-3": {"done": 1, "items_per_s": 0.4, "alive": True, "host": "vm"}}},
]
STREAM = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in EVENTS).encode()


def test_lines_split_anywhere_come_out_whole():
    buffer = LineBuffer()
    text = '{"event": "retry", "reason": "ü"}\r\nstderr-ish line\n{"event": "pro'.encode()
    got = []
    for i in range(len(text)):  # one byte at a time: "ü" arrives in two halves
        got += buffer.feed(text[i:i + 1])
    assert got == ['{"event": "retry", "reason": "ü"}', "stderr-ish line"]
    assert buffer.feed(b'gress"}') == [] and buffer.flush() == ['{"event": "progress"}']
    assert buffer.flush() == []


def test_only_json_objects_with_an_event_are_events():
    assert parse_event('{"event": "start", "total": 3}') == {"event": "start", "total": 3}
    assert parse_event("Traceback (most recent call last):") is None
    assert parse_event('{"total": 3}') is None and parse_event('{"event": ') is None
    assert parse_event("[1, 2]") is None


def feed_all(chunks: list[bytes]) -> BatchState:
    buffer, state = LineBuffer(), BatchState()
    for chunk in chunks:
        for line in buffer.feed(chunk):
            event = parse_event(line)
            if event is not None:
                state.apply(event)
    return state


def test_every_event_kind_updates_the_state():
    state = BatchState()
    log = []
    for event in EVENTS[:8]:
        log += state.apply(event)
    assert state.started and (state.total, state.skipped, state.todo) == (5, 1, 4)
    assert state.backend == "local" and state.resume and state.out == "/o"
    assert state.done == 2 and state.done_this_run == 1 and state.files == ["000001-k1-3-0.png"]
    w1, w2 = state.workers["local-1"], state.workers["local-2"]
    assert (w1.pid, w1.host, w1.threads, w1.done, w1.item) == (101, "vm", 2, 1, None)
    assert w2.item == 2 and w2.status() == "alive · item 2" and w1.status() == "alive · idle"
    assert log == ["batch of 5 item(s), 4 to do (1 done before); 2 local worker(s)"]

    assert state.apply(EVENTS[8]) == [
        "worker local-2 lost while running item 2: worker process 102 exited by signal 9"]
    assert not w2.alive and w2.status() == "lost" and w2.item is None
    assert state.apply(EVENTS[9]) == [
        "item 2 goes back to the queue (attempt 2): its worker died"]
    assert state.retries == 1
    assert state.apply(EVENTS[10]) == ["starting replacement worker local-3"]
    assert state.workers["local-3"].status() == "starting…"
    state.apply(EVENTS[11])
    assert state.apply(EVENTS[12]) == [
        "item 3 failed (graph): seed 3 is the one this test graph refuses"]
    assert state.failed == 1 and state.failures == {3: "seed 3 is the one this test graph refuses\n"
                                                       "more detail"}
    assert w1.item is None

    state.apply(EVENTS[13])
    assert (state.done, state.items_per_s, state.eta_s, state.elapsed_s) == (2, 1.25, 1.6, 3.0)
    assert w1.items_per_s == 0.5 and not w2.alive
    assert not state.finished
    assert state.apply(EVENTS[14]) == [
        "finished: 4/5 done, 1 failed, 1 retried, 2 model load(s), 0:04"]
    assert state.finished and not state.interrupted and state.eta_s is None
    assert state.workers["local-1"].status() == "stopped" and w2.status() == "lost"
    assert (state.model_loads, state.workers_started, state.replacements) == (2, 3, 1)
    assert state.workers["local-3"].done == 1 and state.workers["local-1"].done == 2
    assert len(state.log) == 6


def test_the_state_is_the_same_however_the_stream_is_cut():
    whole = feed_all([STREAM])
    for size in (1, 7, 64, 333):
        cut = feed_all([STREAM[i:i + size] for i in range(0, len(STREAM), size)])
        assert cut == whole, size
    assert whole.done == 4 and whole.failed == 1


def test_an_unknown_event_is_ignored_and_a_newer_format_is_noted():
    state = BatchState()
    assert state.apply({"event": "something_new", "x": 1}) == []
    message = state.apply({"event": "start", "progress_version": 2, "total": 1, "todo": 1})
    assert "version 2" in message[0]
