"""Sessions own what runs share — the output cache and the packs' resources — and start afresh."""
from __future__ import annotations

from nodegraph import Graph, RunContext, node
from nodegraph.api import Session, default_session
from nodegraph.cache import shared_cache
from nodegraph.resources import Resources, default_resources, resources_for


def doubled(g: Graph, value: int) -> str:
    a = g.add_node("Const", {"value": value})
    d = g.add_node("Double")
    g.connect(a, "value", d, "x")
    g.connect(d, "value", g.add_node("Sink"), "value")
    return d.id


def test_a_new_session_has_its_own_cache_so_nothing_comes_from_another_sessions_runs(registry, calls):
    g = Graph()
    doubled(g, 4)
    first, second = Session(registry), Session(registry)
    first.run(g)
    first.run(g)
    second.run(g)
    assert calls["Double"] == 2
    assert first.cache is not second.cache and first.resources is not second.resources


def test_sessions_share_a_cache_and_resources_when_given_them(registry, calls):
    g = Graph()
    doubled(g, 4)
    first = Session(registry)
    second = Session(registry, options=first.options, cache=first.cache)
    first.run(g)
    second.run(g)
    assert calls["Double"] == 1 and second.resources is first.resources


def test_the_default_session_holds_the_process_wide_cache_and_resources():
    assert default_session() is default_session()
    assert default_session().cache is shared_cache()
    assert default_session().resources is default_resources() is resources_for(None)


def test_nodes_see_the_resources_of_the_session_that_runs_them(registry):
    seen = []

    @node("Peek", output_node=True)
    def peek(ctx: RunContext) -> None:
        resources = resources_for(ctx.options)
        seen.append((resources, dict(resources.run_memo or {})))
        resources.run_memo["asked"] = True

    registry.add_node(peek)
    g = Graph()
    g.add_node("Peek")
    session = Session(registry)
    session.run(g)
    assert seen == [(session.resources, {})]
    assert session.resources.run_memo is None  # the memo lasts one run


def test_resources_make_an_object_once_and_can_replace_it():
    resources = Resources()
    made = resources.get("pack.thing", list)
    assert resources.get("pack.thing", dict) is made
    assert resources.replace("pack.thing", {"other": 1}) is made
    assert resources.peek("pack.thing") == {"other": 1}
    resources.clear()
    assert resources.peek("pack.thing") is None


def test_a_runs_stats_count_the_model_files_its_nodes_report_reading(registry):
    @node("Loader", params=[], outputs={"value": "INT"})
    def loader(ctx: RunContext) -> int:
        ctx.model_loaded()
        return 1

    registry.add_node(loader)
    g = Graph()
    g.connect(g.add_node("Loader"), "value", g.add_node("Sink"), "value")
    session = Session(registry)
    assert session.run(g).stats.model_loads == 1
    assert session.run(g).stats.model_loads == 0  # cached: nothing read
