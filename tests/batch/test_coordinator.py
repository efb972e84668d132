"""The coordinator against a fake pool: exactly once, re-sending lost work, errors, stopping."""
from __future__ import annotations

from collections import Counter

import pytest

from nodegraph.batch.coordinator import BatchAborted, Coordinator

from .fakes import FakePool, items


class Recorder:
    def __init__(self):
        self.done: list[tuple[int, str, int]] = []
        self.failed: list[tuple[int, str, str, int]] = []
        self.events: list[dict] = []

    def on_done(self, item, result, worker, attempt):
        self.done.append((item.index, worker, attempt))

    def on_failed(self, item, kind, error, worker, attempt):
        self.failed.append((item.index, kind, error, attempt))


def run(pool, n=10, workers=2, **kw):
    rec = Recorder()
    coordinator = Coordinator(pool, items(n), workers=workers, on_done=rec.on_done,
                              on_failed=rec.on_failed, emit=rec.events.append, poll=0, **kw)
    return coordinator, coordinator.run(), rec


def test_every_item_is_done_exactly_once():
    pool = FakePool()
    _, summary, rec = run(pool, n=10, workers=3)
    assert sorted(i for i, _, _ in rec.done) == list(range(10))
    assert sorted(summary.done) == list(range(10))
    assert summary.retries == 0 and not summary.failed
    assert pool.closed == "closed"


def test_items_are_handed_out_in_order():
    pool = FakePool()
    run(pool, n=6, workers=2)
    assert [index for _, index, _ in pool.runs] == list(range(6))


def test_no_more_workers_than_items_are_started():
    pool = FakePool()
    run(pool, n=2, workers=5)
    assert pool.started == ["w1", "w2"]


def test_an_item_lost_with_its_worker_is_resent_to_a_live_worker_once():
    pool = FakePool(deaths={4: 1})
    _, summary, rec = run(pool, n=10, workers=2)
    assert Counter(i for i, _, _ in rec.done) == Counter(range(10))
    runs_of_4 = [(w, a) for w, i, a in pool.runs if i == 4]
    assert len(runs_of_4) == 2 and runs_of_4[0][0] != runs_of_4[1][0]
    assert [a for _, a in runs_of_4] == [1, 2]
    assert summary.retries == 1 and summary.replacements == 1


def test_model_loads_are_workers_plus_replacements():
    pool = FakePool(deaths={2: 1, 7: 1})
    _, summary, _ = run(pool, n=12, workers=2)
    # Each worker (the dead ones had finished items before dying) loaded its model once.
    assert summary.model_loads == summary.workers_started == 2 + summary.replacements == 4


def test_an_item_that_kills_every_worker_is_given_up_after_three_attempts():
    pool = FakePool(deaths={3: 99})
    _, summary, rec = run(pool, n=6, workers=2)
    assert [(i, kind, a) for i, kind, _, a in rec.failed] == [(3, "lost", 3)]
    assert "given up after 3 attempts" in summary.failed[3]
    assert sorted(i for i, _, _ in rec.done) == [0, 1, 2, 4, 5]
    assert sum(1 for _, i, _ in pool.runs if i == 3) == 3


def test_graph_errors_are_reported_and_not_retried():
    pool = FakePool(errors={1, 5})
    _, summary, rec = run(pool, n=8, workers=2)
    assert sorted((i, kind, a) for i, kind, _, a in rec.failed) == [(1, "graph", 1), (5, "graph", 1)]
    assert sum(1 for _, i, _ in pool.runs if i in (1, 5)) == 2
    assert summary.retries == 0 and summary.replacements == 0
    assert len(rec.done) == 6


def test_stop_lets_running_items_finish_and_hands_out_no_more():
    holder = {}

    def stop_at_third(pool, worker, task):
        if task["index"] == 2:
            holder["coordinator"].stop()

    pool = FakePool(on_submit=stop_at_third)
    rec = Recorder()
    coordinator = holder["coordinator"] = Coordinator(
        pool, items(10), workers=2, on_done=rec.on_done, on_failed=rec.on_failed, poll=0)
    summary = coordinator.run()
    assert sorted(i for i, _, _ in rec.done) == [0, 1, 2]
    assert summary.interrupted is True
    assert pool.closed == "closed"


def test_workers_that_never_start_abort_the_batch_with_the_reason():
    pool = FakePool(start_failures=100)
    with pytest.raises(BatchAborted, match="workers keep dying .*could not import the node packs"):
        run(pool, n=4, workers=2)
    assert pool.closed == "killed"


def test_a_failed_start_is_replaced_and_the_batch_completes():
    pool = FakePool(start_failures=1)
    _, summary, rec = run(pool, n=5, workers=2)
    assert sorted(i for i, _, _ in rec.done) == list(range(5))
    assert summary.replacements == 1


def test_a_late_duplicate_answer_is_ignored():
    from nodegraph.batch.coordinator import ItemFinished

    pool = FakePool()
    original = pool.submit

    def twice(worker, task):
        original(worker, task)
        if task["index"] == 0:
            pool.events.append(ItemFinished(worker, 0, {"status": "ok", "outputs": []}))

    pool.submit = twice
    _, _, rec = run(pool, n=3, workers=1)
    assert [i for i, _, _ in rec.done] == [0, 1, 2]


def test_progress_events_tell_starts_losses_and_retries():
    pool = FakePool(deaths={1: 1})
    _, _, rec = run(pool, n=3, workers=1)
    kinds = [e["event"] for e in rec.events]
    assert kinds.count("worker_ready") == 2
    assert {"worker_lost", "retry", "item_started"} <= set(kinds)
    retry = next(e for e in rec.events if e["event"] == "retry")
    assert retry["index"] == 1 and retry["attempt"] == 2
