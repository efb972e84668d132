"""The executor: pruning, order, caching by signature, events, failures, interrupts, bypass."""
from __future__ import annotations

import threading

import pytest

from nodegraph import (Graph, GraphValidationError, Interrupted, NodeExecutionError, RunOptions)
from nodegraph.events import (NodeFailed, NodeFinished, Progress, RunFailed, RunFinished,
                              RunInterrupted, RunStarted)
from nodegraph.executor import CacheEntry, Executor, OutputCache, estimate_nbytes, shared_cache

from .conftest import ngtest


def sinked(g: Graph, src, output: str = "value"):
    s = g.add_node("Sink")
    g.connect(src, output, s, "value")
    return s


def test_a_run_computes_what_the_output_node_needs(executor, chain, calls):
    result = executor.run(chain)
    assert ngtest.SINK == [5]
    assert result.ui == {"4": {"values": [5]}}
    assert calls == {"Const": 2, "Add": 1, "Sink": 1}  # the stray Const(99) was pruned


def test_plan_is_a_topological_order_of_the_needed_nodes(executor, chain):
    order = executor.plan(chain)
    assert sorted(order) == ["1", "2", "3", "4"]
    assert order.index("3") > max(order.index("1"), order.index("2")) and order[-1] == "4"


def test_a_second_run_takes_everything_from_the_cache(executor, chain, calls):
    executor.run(chain)
    calls.clear()
    result = executor.run(chain)
    assert calls == {}
    assert result.stats.executed == [] and sorted(result.stats.cached) == ["1", "2", "3", "4"]
    assert result.ui == {"4": {"values": [5]}}  # an output node's ui comes back from the cache


def test_changing_a_param_reruns_that_node_and_what_is_downstream_only(executor, chain, calls):
    executor.run(chain)
    calls.clear()
    chain.set_param("2", "value", 10)
    result = executor.run(chain)
    assert result.stats.executed == ["2", "3", "4"] and result.stats.cached == ["1"]
    assert ngtest.SINK[-1] == 12


def test_setting_a_param_back_finds_the_old_outputs_in_the_cache(executor, chain, calls):
    executor.run(chain)
    chain.set_param("2", "value", 10)
    executor.run(chain)
    chain.set_param("2", "value", 3)
    calls.clear()
    executor.run(chain)
    assert calls == {}


def test_a_param_written_at_its_default_has_the_same_signature_as_a_missing_one(executor, calls):
    g1, g2 = Graph(), Graph()
    sinked(g1, g1.add_node("Seeded"))
    sinked(g2, g2.add_node("Seeded", {"seed": 0, "steps": 20}))
    executor.run(g1)
    calls.clear()
    executor.run(g2)
    assert calls == {}


def test_a_new_seed_reruns_the_node(executor, calls):
    g = Graph()
    s = g.add_node("Seeded", {"seed": 1})
    sinked(g, s)
    executor.run(g)
    g.set_param(s, "seed", 2)
    calls.clear()
    executor.run(g)
    assert calls["Seeded"] == 1 and ngtest.SINK[-1] == 2020


def test_editing_a_list_param_in_place_is_noticed(executor, calls):
    g = Graph()
    t = g.add_node("Text", {"text": "a"})
    sinked(g, t, "text")
    t.params["text"] = "b"  # direct edits of params count too
    executor.run(g)
    assert ngtest.SINK[-1] == "b"


def test_a_not_cacheable_node_and_everything_after_it_run_every_time(executor, calls):
    g = Graph()
    d = g.add_node("Double")
    g.connect(g.add_node("Random"), "value", d, "x")
    sinked(g, d)
    executor.run(g)
    calls.clear()
    executor.run(g)
    assert calls == {"Random": 1, "Double": 1, "Sink": 1}
    assert ngtest.SINK[-1] == ngtest.SINK[-2] + 2


def test_a_changed_fingerprint_reruns_the_node(executor, calls, tmp_path):
    f = tmp_path / "in.txt"
    f.write_text("one")
    g = Graph()
    sinked(g, g.add_node("ReadFile", {"path": str(f)}), "text")
    executor.run(g)
    calls.clear()
    executor.run(g)
    assert calls == {}
    f.write_text("two")
    executor.run(g)
    assert calls["ReadFile"] == 1 and ngtest.SINK[-1] == "two"


def test_the_cache_is_shared_across_graphs(executor, calls):
    first = Graph()
    a = first.add_node("Const", {"value": 4})
    d = first.add_node("Double")
    first.connect(a, "value", d, "x")
    sinked(first, d)
    second = Graph()  # different ids, same computation feeding another output
    a2 = second.add_node("Const", {"value": 4}, id="a")
    d2 = second.add_node("Double", id="b")
    second.connect(a2, "value", d2, "x")
    second.connect(d2, "value", second.add_node("Sink", id="c"), "value")
    executor.run(first)
    calls.clear()
    executor.run(second)
    assert calls == {}


def test_executors_share_the_process_wide_cache_by_default(registry):
    assert Executor(registry).cache is shared_cache() is Executor(registry).cache


def test_outputs_can_be_requested_from_any_node(executor, chain):
    result = executor.run(chain, outputs=["3", "stray"])
    assert result.outputs == {"3": {"sum": 5}, "stray": {"value": 99}}
    assert result.output("3") == 5 and result.output(chain.nodes["stray"], "value") == 99


def test_a_node_with_several_outputs_returns_a_tuple(executor):
    g = Graph()
    p = g.add_node("Pair", {"value": 10})
    s = g.add_node("Sink")
    g.connect(p, "high", s, "value")
    g.connect(p, "low", s, "extra")
    assert executor.run(g, outputs=[p.id]).outputs[p.id] == {"low": 9, "high": 11}


def test_a_wrong_number_of_returned_values_fails_the_node_with_a_clear_message(executor):
    g = Graph()
    b = g.add_node("BadReturn")
    s = g.add_node("Sink")
    g.connect(b, "a", s, "value")
    with pytest.raises(NodeExecutionError, match="must return a tuple of 2 values"):
        executor.run(g)


def test_a_link_into_a_param_overrides_the_param_value(executor):
    g = Graph()
    u = g.add_node("Upper", {"text": "ignored"})
    g.connect(g.add_node("Text", {"text": "from link"}), "text", u, "text")
    sinked(g, u, "text")
    executor.run(g)
    assert ngtest.SINK == ["FROM LINK"]


def test_an_unconnected_optional_input_uses_the_functions_default(executor):
    g = Graph()
    a = g.add_node("AddOptional")
    g.connect(g.add_node("Const", {"value": 1}), "value", a, "a")
    sinked(g, a, "sum")
    executor.run(g)
    assert ngtest.SINK == [101]


def test_nodes_see_the_run_options_and_their_id(registry, tmp_path):
    g = Graph()
    sinked(g, g.add_node("Options", id="opt"))
    Executor(registry, OutputCache()).run(g, options=RunOptions(device="cpu", output_dir=tmp_path))
    assert ngtest.SINK == [f"cpu|{tmp_path}|opt"]


def test_events_arrive_in_order(executor, chain):
    events = []
    executor.run(chain, outputs=["3"], on_event=events.append)
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunFinished"
    assert isinstance(events[0], RunStarted) and events[0].node_ids[-1] == "3"
    finished = [e for e in events if isinstance(e, NodeFinished)]
    assert [e.node_id for e in finished][-1] == "3" and all(e.seconds >= 0 for e in finished)
    assert kinds.count("NodeStarted") == 3
    events.clear()
    executor.run(chain, outputs=["3"], on_event=[events.append])
    assert [type(e).__name__ for e in events].count("NodeCached") == 3
    assert isinstance(events[-1], RunFinished)
    assert sorted(events[-1].stats.cached) == ["1", "2", "3"]


def test_progress_events_carry_step_total_and_preview(executor):
    g = Graph()
    sinked(g, g.add_node("Steps", {"steps": 3}))
    progress = []
    executor.run(g, on_event=lambda e: progress.append(e) if isinstance(e, Progress) else None)
    assert [(p.step, p.total, p.preview) for p in progress] == [
        (1, 3, "preview 1"), (2, 3, "preview 2"), (3, 3, "preview 3")]
    assert progress[0].node_id == "1"


def test_a_callback_that_raises_does_not_break_the_run(executor, chain, caplog):
    def bad(event):
        raise ValueError("callback bug")

    executor.run(chain, on_event=bad)
    assert ngtest.SINK == [5] and "callback bug" in caplog.text


def test_a_failing_node_stops_the_run_with_an_error_naming_it(executor, calls):
    g = Graph()
    f = g.add_node("Fail", id="7")
    g.connect(g.add_node("Const", id="1"), "value", f, "x")
    sinked(g, f)
    events = []
    with pytest.raises(NodeExecutionError) as exc:
        executor.run(g, on_event=events.append)
    err = exc.value
    assert (err.node_id, err.node_type) == ("7", "Fail")
    assert str(err) == "node 7 (Fail) failed: RuntimeError: boom: the test node failed on purpose"
    assert isinstance(err.__cause__, RuntimeError) and "test node failed" in err.traceback_text
    assert calls["Sink"] == 0
    failed = next(e for e in events if isinstance(e, NodeFailed))
    assert failed.node_id == "7" and isinstance(failed.error, RuntimeError)
    assert isinstance(events[-1], RunFailed) and err.stats.executed == ["1"]


def test_after_a_failure_the_next_run_resumes_where_it_failed(executor, calls):
    g = Graph()
    f = g.add_node("Fail")
    g.connect(g.add_node("Const"), "value", f, "x")
    sinked(g, f)
    with pytest.raises(NodeExecutionError):
        executor.run(g)
    g.set_param(f, "fail", False)
    calls.clear()
    result = executor.run(g)
    assert result.stats.cached == ["2"] and result.stats.executed == ["1", "3"]


def test_interrupt_from_another_thread_stops_within_one_step(executor, calls):
    g = Graph()
    sinked(g, g.add_node("Steps", {"steps": 1000, "sleep": 0.002}))
    seen = []

    def on_event(e):
        seen.append(e)
        if isinstance(e, Progress) and e.step == 3:
            threading.Thread(target=executor.interrupt).start()

    with pytest.raises(Interrupted) as exc:
        executor.run(g, on_event=on_event)
    steps = [e.step for e in seen if isinstance(e, Progress)]
    assert 3 <= steps[-1] <= 5  # one more step may finish while the thread starts
    assert exc.value.node_id == "1" and isinstance(seen[-1], RunInterrupted)
    assert calls["Sink"] == 0


def test_interrupted_work_is_not_cached_and_the_next_run_starts_fresh(executor, calls):
    g = Graph()
    sinked(g, g.add_node("Steps", {"steps": 3}))

    def stop_at_2(e):
        if isinstance(e, Progress) and e.step == 2:
            executor.interrupt()

    with pytest.raises(Interrupted):
        executor.run(g, on_event=stop_at_2)
    result = executor.run(g)
    assert result.stats.executed == ["1", "2"]


def test_a_stop_event_set_before_the_run_starts_still_stops_it(executor, calls):
    """A client that starts runs on another thread hands each its own event: a Stop that lands
    before the run begins is not wiped out by the run's start (as executor.interrupt() would be)."""
    g = Graph()
    sinked(g, g.add_node("Steps", {"steps": 3}))
    stop = threading.Event()
    stop.set()
    with pytest.raises(Interrupted):
        executor.run(g, stop=stop)
    assert calls["Steps"] == 0 and stop.is_set()
    result = executor.run(g, stop=threading.Event())  # a fresh event: runs normally
    assert result.stats.executed == ["1", "2"]


def test_interrupt_also_stops_a_run_given_its_own_stop_event(executor, calls):
    g = Graph()
    sinked(g, g.add_node("Steps", {"steps": 100}))
    stop = threading.Event()

    def at_2(e):
        if isinstance(e, Progress) and e.step == 2:
            executor.interrupt()

    with pytest.raises(Interrupted):
        executor.run(g, on_event=at_2, stop=stop)
    assert stop.is_set()


def test_a_callback_raising_interrupted_stops_the_run(executor):
    g = Graph()
    sinked(g, g.add_node("Steps", {"steps": 10}))

    def stop(e):
        if isinstance(e, Progress):
            raise Interrupted(e.node_id)

    with pytest.raises(Interrupted):
        executor.run(g, on_event=stop)


def test_a_bypassed_node_passes_its_input_of_the_same_type_through(executor, calls):
    g = Graph()
    d = g.add_node("Double", mode="bypassed")
    g.connect(g.add_node("Const", {"value": 21}), "value", d, "x")
    sinked(g, d)
    executor.run(g)
    assert ngtest.SINK == [21] and calls["Double"] == 0


def test_bypassing_a_node_then_enabling_it_reruns_downstream(executor, calls):
    g = Graph()
    d = g.add_node("Double", mode="bypassed")
    g.connect(g.add_node("Const", {"value": 21}), "value", d, "x")
    sinked(g, d)
    executor.run(g)
    g.set_mode(d, "normal")
    executor.run(g)
    assert ngtest.SINK == [21, 42]


def test_a_muted_node_is_left_out_and_an_optional_input_from_it_stays_empty(executor):
    g = Graph()
    a = g.add_node("AddOptional")
    g.connect(g.add_node("Const", {"value": 1}), "value", a, "a")
    g.connect(g.add_node("Const", {"value": 5}, mode="muted"), "value", a, "b")
    sinked(g, a, "sum")
    executor.run(g)
    assert ngtest.SINK == [101]


def test_planning_problems_raise_validation_errors(executor):
    g = Graph()
    g.add_node("Const")
    with pytest.raises(GraphValidationError, match="no .*output node"):
        executor.run(g)
    g2 = Graph()
    s = g2.add_node("Sink")
    g2.connect(g2.add_node("NoSuchType"), "x", s, "value")
    with pytest.raises(GraphValidationError, match="unknown node type 'NoSuchType'"):
        executor.run(g2)


def test_a_cycle_cannot_run(executor):
    g = Graph()
    a, b = g.add_node("Double"), g.add_node("Double")
    g.connect(a, "value", b, "x")
    g.connect(b, "value", a, "x")
    sinked(g, b)
    with pytest.raises(GraphValidationError) as exc:
        executor.run(g)
    assert exc.value.problems[0].code == "cycle"


def test_structural_edits_after_a_run_are_planned_again(executor, chain):
    executor.run(chain)
    chain.disconnect("3", "b")
    chain.connect("stray", "value", "3", "b")
    executor.run(chain)
    assert ngtest.SINK[-1] == 101


def test_the_cache_evicts_the_least_recently_used_entry_beyond_its_entry_limit():
    cache = OutputCache(max_entries=2)
    for key in "abc":
        cache.put(key, CacheEntry((key,), {}, 0))
        if key == "b":
            cache.get("a")  # a is now more recent than b
    assert "a" in cache and "c" in cache and "b" not in cache and cache.evictions == 1


def test_the_cache_evicts_by_estimated_bytes():
    cache = OutputCache(max_bytes=1000)
    cache.put("a", CacheEntry((ngtest.Blob(600),), {}, 600))
    cache.put("b", CacheEntry((ngtest.Blob(600),), {}, 600))
    assert list(cache._data) == ["b"] and cache.nbytes == 600
    cache.put("huge", CacheEntry((), {}, 5000))
    assert "huge" not in cache


def test_a_run_keeps_working_when_the_cache_is_too_small_for_its_outputs(registry, calls):
    g = Graph()
    blob = g.add_node("MakeBlob", {"nbytes": 10_000})
    sinked(g, blob, "blob")
    ex = Executor(registry, OutputCache(max_bytes=1000))
    ex.run(g)
    calls.clear()
    ex.run(g)
    assert calls["MakeBlob"] == 1  # not cached (too big), so it runs again


def test_nbytes_estimates_arrays_inside_dicts_lists_and_tuples():
    latent = {"samples": ngtest.Blob(4096), "batch_index": [0, 1]}
    assert estimate_nbytes(latent) == 4096
    assert estimate_nbytes([ngtest.Blob(10), (ngtest.Blob(5), "abc")]) == 18
    assert estimate_nbytes(3) == 0


def test_run_stats_count_executed_and_cached_nodes_with_seconds(executor, chain):
    stats = executor.run(chain).stats
    assert sorted(stats.executed) == ["1", "2", "3", "4"] and set(stats.seconds) == set(stats.executed)
    assert stats.total_seconds >= sum(stats.seconds.values())
    assert "4 node(s) ran, 0 cached" in stats.summary()


def test_a_different_dtype_or_device_reruns_everything(executor, chain, calls):
    executor.run(chain, options=RunOptions(dtype="fp32"))
    calls.clear()
    executor.run(chain, options=RunOptions(dtype="bf16"))
    assert calls == {"Const": 2, "Add": 1, "Sink": 1}


def test_a_different_output_folder_reruns_only_the_output_nodes(executor, chain, calls, tmp_path):
    executor.run(chain, options=RunOptions(output_dir=tmp_path / "a"))
    calls.clear()
    executor.run(chain, options=RunOptions(output_dir=tmp_path / "b"))
    assert calls == {"Sink": 1}
