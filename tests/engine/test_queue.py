"""The run queue: snapshots run in order on one worker; pending items can be cancelled, moved and
cleared; the running one interrupted; every change is a typed event; each run lands in the history."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from nodegraph import Graph, RunOptions, String, node
from nodegraph.api import Session
from nodegraph.events import NodeFinished, NodeStarted, Progress, RunFinished, RunStarted
from nodegraph.executor import OutputCache
from nodegraph.history import History
from nodegraph.queue import (ItemEvent, ItemFinished, ItemQueued, ItemsRemoved, ItemStarted,
                             QueueReordered, RunQueue)

from .conftest import ngtest

GATES: dict[str, threading.Event] = {}


@node("Gate", category="debug", params=[String("name", "")], outputs={"value": "INT"},
      not_cacheable=True)
def gate(name: str, ctx) -> int:
    """Blocks until the test opens its gate (interruptible)."""
    while not GATES[name].wait(0.005):
        ctx.check_interrupt()
    return 1


@pytest.fixture
def queue(registry, tmp_path: Path):
    registry.add_node(gate)
    session = Session(registry, options=RunOptions(output_dir=tmp_path / "out"), cache=OutputCache())
    q = RunQueue(session, History())
    yield q
    for event in GATES.values():
        event.set()
    q.close()
    GATES.clear()


def sink_graph(value: int, *, gate_name: str | None = None, steps: int | None = None,
               fail: bool = False) -> Graph:
    """Const(value) → Sink, optionally with a Gate, a Steps node or a failing node feeding Sink.extra."""
    g = Graph()
    const = g.add_node("Const", {"value": value})
    sink = g.add_node("Sink")
    g.connect(const, "value", sink, "value")
    extra = None
    if gate_name is not None:
        extra = g.add_node("Gate", {"name": gate_name})
    elif steps is not None:
        extra = g.add_node("Steps", {"steps": steps, "sleep": 0.002})
    elif fail:
        extra = g.add_node("Fail", {"fail": True})
    if extra is not None:
        g.connect(extra, "value", sink, "extra")
    return g


def hold(queue: RunQueue, name: str = "hold") -> threading.Event:
    """Queue an item that blocks the worker until the returned gate is opened."""
    GATES[name] = threading.Event()
    queue.put(sink_graph(-1, gate_name=name))
    deadline = time.monotonic() + 10
    while queue.running() is None:
        assert time.monotonic() < deadline, "the worker never started the gate item"
        time.sleep(0.002)
    return GATES[name]


def test_items_run_in_order_of_number_and_front_jumps_ahead(queue):
    opened = hold(queue)
    a = queue.put(sink_graph(1))
    b = queue.put(sink_graph(2))
    c = queue.put(sink_graph(3), front=True)
    d = queue.put(sink_graph(4), number=a.number + 0.5)
    assert [i.id for i in queue.pending()] == [c.id, a.id, d.id, b.id]
    opened.set()
    assert queue.wait_idle(10)
    assert ngtest.SINK == [-1, 3, 1, 4, 2]


def test_a_queued_graph_is_a_snapshot_of_the_graph_as_it_was(queue):
    opened = hold(queue)
    graph = sink_graph(5)
    queue.put(graph)
    graph.set_param(graph.nodes["1"], "value", 6)
    opened.set()
    assert queue.wait_idle(10)
    assert ngtest.SINK == [-1, 5]


def test_cancel_removes_only_the_named_pending_items(queue):
    opened = hold(queue)
    running = queue.running()
    a, b = queue.put(sink_graph(1)), queue.put(sink_graph(2))
    removed = queue.cancel([a.id, running.id, "no-such-id"])
    assert [i.id for i in removed] == [a.id]
    assert [i.id for i in queue.pending()] == [b.id]
    opened.set()
    assert queue.wait_idle(10)
    assert ngtest.SINK == [-1, 2]
    assert a.id not in queue.history


def test_clear_drops_pending_items_and_the_running_one_finishes(queue):
    opened = hold(queue)
    queue.put(sink_graph(1))
    queue.put(sink_graph(2))
    assert len(queue.clear()) == 2
    assert queue.pending() == [] and queue.remaining() == 1
    opened.set()
    assert queue.wait_idle(10)
    assert ngtest.SINK == [-1]
    assert [e.status for e in queue.history.entries()] == ["success"]


def test_move_puts_an_item_where_asked_and_renumbers_it_between_its_neighbours(queue):
    opened = hold(queue)
    a, b, c = (queue.put(sink_graph(v)) for v in (1, 2, 3))
    assert queue.move(c.id, 0)
    assert queue.move(a.id, 99)
    order = queue.pending()
    assert [i.id for i in order] == [c.id, b.id, a.id]
    numbers = [i.number for i in order]
    assert numbers == sorted(numbers) and len(set(numbers)) == 3
    assert not queue.move("no-such-id", 0)
    opened.set()
    assert queue.wait_idle(10)
    assert ngtest.SINK == [-1, 3, 2, 1]


def test_interrupt_stops_the_running_item_and_the_next_one_runs(queue):
    seen_progress = threading.Event()
    queue.subscribe(lambda e: isinstance(e, ItemEvent) and isinstance(e.event, Progress)
                    and seen_progress.set())
    long = queue.put(sink_graph(1, steps=100_000))
    after = queue.put(sink_graph(2))
    assert seen_progress.wait(10)
    assert not queue.interrupt("not-the-running-one")
    assert queue.interrupt(long.id)
    assert queue.wait_idle(10)
    first, second = queue.history.entries()
    assert (first.id, first.status) == (long.id, "interrupted")
    assert first.error["node_id"] == "3" and first.error["node_type"] == "Steps"
    assert (second.id, second.status) == (after.id, "success")
    assert ngtest.SINK == [2]


def test_a_failing_item_is_recorded_with_its_node_and_the_queue_goes_on(queue):
    bad = queue.put(sink_graph(1, fail=True))
    good = queue.put(sink_graph(2))
    assert queue.wait_idle(10)
    failed = queue.history.get(bad.id)
    assert failed.status == "error"
    assert failed.error["node_id"] == "3" and failed.error["node_type"] == "Fail"
    assert failed.error["exception_type"] == "RuntimeError"
    assert "boom" in failed.error["message"] and "Traceback" in failed.error["traceback"]
    assert failed.executed == ("1",)
    assert queue.history.get(good.id).status == "success"


def test_subscribers_get_typed_events_in_run_order(queue):
    events = []
    unsubscribe = queue.subscribe(events.append)
    item = queue.put(sink_graph(7))
    assert queue.wait_idle(10)
    unsubscribe()
    queue.put(sink_graph(8))
    assert queue.wait_idle(10)
    kinds = [type(e.event).__name__ if isinstance(e, ItemEvent) else type(e).__name__ for e in events]
    assert kinds == ["ItemQueued", "ItemStarted", "RunStarted", "NodeStarted", "NodeFinished",
                     "NodeStarted", "NodeFinished", "RunFinished", "ItemFinished"]
    assert all(e.item.id == item.id for e in events)
    assert isinstance(events[0], ItemQueued) and events[0].index == 0
    assert isinstance(events[-1], ItemFinished) and events[-1].entry.status == "success"
    assert events[-1].entry.outputs == {"2": {"values": [7]}}


def test_cancel_clear_and_move_announce_themselves(queue):
    events = []
    opened = hold(queue)
    queue.subscribe(events.append)
    a, b = queue.put(sink_graph(1)), queue.put(sink_graph(2))
    queue.move(b.id, 0)
    queue.cancel([a.id])
    queue.clear()
    changes = [e for e in events if not isinstance(e, ItemQueued)]
    assert changes[0] == QueueReordered((b.id, a.id))
    assert [(type(e), [i.id for i in e.items], e.reason) for e in changes[1:]] == [
        (ItemsRemoved, [a.id], "cancelled"), (ItemsRemoved, [b.id], "cleared")]
    opened.set()


def test_targets_limit_the_run_to_the_named_outputs(queue):
    g = sink_graph(1)
    other = g.add_node("Sink")
    g.connect("1", "value", other, "value")
    queue.put(g, targets=[other.id])
    assert queue.wait_idle(10)
    entry = queue.history.entries()[-1]
    assert entry.executed == ("1", other.id)
    assert entry.targets == (other.id,)


def test_between_runs_calls_wait_for_the_running_item(queue):
    order = []
    queue.subscribe(lambda e: isinstance(e, ItemFinished) and order.append("finished"))
    opened = hold(queue)
    queue.between_runs(lambda: order.append(("call", threading.current_thread().name)))
    time.sleep(0.05)
    assert order == []
    opened.set()
    assert queue.wait_idle(10)
    assert order == ["finished", ("call", "nodegraph-queue")]


def test_items_queued_from_many_threads_each_run_exactly_once(queue):
    ids: list[str] = []
    lock = threading.Lock()

    def submit(start: int) -> None:
        for v in range(start, start + 25):
            item = queue.put(sink_graph(v))
            with lock:
                ids.append(item.id)

    threads = [threading.Thread(target=submit, args=(k * 25,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert queue.wait_idle(30)
    assert sorted(ngtest.SINK) == list(range(100))
    assert sorted(e.id for e in queue.history.entries()) == sorted(ids)


def test_the_history_entry_has_timing_seed_and_prompt_summary(queue):
    g = Graph()
    seeded = g.add_node("Seeded", {"seed": 1234, "steps": 3})
    text = g.add_node("Text", {"text": "  a red\n fox  "})
    sink = g.add_node("Sink")
    g.connect(seeded, "value", sink, "value")
    g.connect(text, "text", sink, "extra")
    before = time.time()
    queue.put(g)
    assert queue.wait_idle(10)
    entry = queue.history.entries()[-1]
    assert before <= entry.started_at <= entry.finished_at <= time.time()
    assert entry.duration == entry.finished_at - entry.started_at
    assert (entry.seed, entry.summary) == (1234, "a red fox")
    assert entry.graph == g


def test_a_closed_queue_refuses_new_items(queue):
    queue.close()
    with pytest.raises(RuntimeError, match="closed"):
        queue.put(sink_graph(1))


def test_started_and_finished_events_carry_the_same_item(queue):
    events = []
    queue.subscribe(lambda e: isinstance(e, (ItemStarted, ItemFinished)) and events.append(e))
    item = queue.put(sink_graph(3))
    assert queue.wait_idle(10)
    started, finished = events
    assert started.item is item and finished.item is item
    assert finished.entry.started_at == started.started_at


def test_run_events_of_an_item_come_between_its_start_and_finish(queue):
    events = []
    queue.subscribe(events.append)
    queue.put(sink_graph(1))
    queue.put(sink_graph(2))
    assert queue.wait_idle(10)
    current = None
    for e in events:
        if isinstance(e, ItemStarted):
            current = e.item.id
        elif isinstance(e, ItemEvent):
            assert e.item.id == current
            assert isinstance(e.event, (RunStarted, NodeStarted, NodeFinished, RunFinished))
        elif isinstance(e, ItemFinished):
            assert e.item.id == current
            current = None
