"""The graph model: stable ids, links by input, editing methods, listeners."""
from __future__ import annotations

import pytest

from nodegraph import Graph, Group, UsageError
from nodegraph import format as graph_format
from nodegraph.graph import ChangeKind, GraphChange


def test_new_ids_count_up_and_are_never_reused_after_a_removal():
    g = Graph()
    a, b = g.add_node("Const"), g.add_node("Const")
    assert (a.id, b.id) == ("1", "2")
    g.remove_node(b)
    assert g.add_node("Const").id == "3"


def test_new_ids_continue_after_the_largest_numeric_id():
    g = Graph()
    g.add_node("Const", id="41")
    g.add_node("Const", id="sampler")
    assert g.add_node("Const").id == "42"


def test_adding_a_node_with_a_used_id_is_refused():
    g = Graph()
    g.add_node("Const", id="1")
    with pytest.raises(UsageError, match="already used"):
        g.add_node("Const", id="1")


def test_connecting_an_input_again_replaces_its_link():
    g = Graph()
    a, b, c = g.add_node("Const"), g.add_node("Const"), g.add_node("Add")
    g.connect(a, "value", c, "a")
    g.connect(b, "value", c, "a")
    assert [(link.src, link.input) for link in g.links] == [("2", "a")]
    assert g.links_from(a) == []


def test_connect_refuses_a_node_that_is_not_in_the_graph():
    g = Graph()
    a = g.add_node("Const")
    with pytest.raises(UsageError, match="no node '9'"):
        g.connect(a, "value", "9", "a")


def test_removing_a_node_removes_its_links_both_ways():
    g = Graph()
    a, add, sink = g.add_node("Const"), g.add_node("Add"), g.add_node("Sink")
    g.connect(a, "value", add, "a")
    g.connect(add, "sum", sink, "value")
    g.remove_node(add)
    assert g.links == [] and g.inputs_of(sink) == {} and g.links_from(a) == []


def test_find_uses_the_id_first_then_a_unique_title():
    g = Graph()
    a = g.add_node("Const", title="Seed")
    g.add_node("Const", title="Twice")
    g.add_node("Const", title="Twice")
    assert g.find("1") is a and g.find("Seed") is a
    with pytest.raises(UsageError, match="2 nodes are titled 'Twice'"):
        g.find("Twice")
    with pytest.raises(UsageError, match="no node has the id or title 'nope'"):
        g.find("nope")


def test_listeners_hear_every_edit_in_order():
    g = Graph()
    heard: list[GraphChange] = []
    g.add_listener(heard.append)
    a, b = g.add_node("Const"), g.add_node("Add")
    g.connect(a, "value", b, "a")
    g.set_param(a, "value", 5)
    g.set_mode(b, "bypassed")
    g.update_node(a, pos=(10, 20))
    g.remove_node(a)
    assert [c.kind for c in heard] == ["node_added", "node_added", "link_added", "param_changed",
                                      "mode_changed", "node_changed", "link_removed",
                                      "node_removed"]
    assert heard[3].old is None and heard[3].new == 5 and a.pos == (10, 20)


def test_structural_edits_bump_the_revision_but_param_edits_do_not():
    g = Graph()
    a = g.add_node("Const")
    r = g.revision
    g.set_param(a, "value", 1)
    assert g.revision == r
    g.add_node("Add")
    assert g.revision > r


def test_copy_is_equal_and_independent():
    g = Graph(meta={"k": [1]})
    a, b = g.add_node("Const", {"value": 1}), g.add_node("Add")
    g.connect(a, "value", b, "a")
    c = g.copy()
    assert c == g
    c.set_param("1", "value", 2)
    c.meta["k"].append(2)
    assert g.nodes["1"].params["value"] == 1 and g.meta == {"k": [1]} and c != g


def test_modes_are_checked():
    g = Graph()
    a = g.add_node("Const")
    with pytest.raises(UsageError, match="normal, muted, bypassed"):
        g.set_mode(a, "off")


def test_set_control_sets_and_clears_a_params_mode_and_says_both():
    g = Graph()
    a = g.add_node("KSampler")
    heard: list[GraphChange] = []
    g.add_listener(heard.append)
    g.set_control(a, "seed", "increment")
    g.set_control(a, "seed", None)
    assert a.control_after_run == {}
    assert [(c.kind, c.node_id, c.name, c.old, c.new) for c in heard] == [
        (ChangeKind.CONTROL_CHANGED, "1", "seed", None, "increment"),
        (ChangeKind.CONTROL_CHANGED, "1", "seed", "increment", None)]


def test_set_control_refuses_a_mode_that_does_not_exist():
    g = Graph()
    a = g.add_node("KSampler")
    with pytest.raises(UsageError, match="fixed, increment, decrement, randomize"):
        g.set_control(a, "seed", "sometimes")
    assert a.control_after_run == {}


def test_set_extra_keeps_a_field_in_the_file_and_none_removes_it():
    g = Graph()
    a = g.add_node("Const")
    heard: list[GraphChange] = []
    g.add_listener(heard.append)
    g.set_extra(a, "collapsed", True)
    assert graph_format.loads(graph_format.dumps(g)).nodes["1"].extra == {"collapsed": True}
    g.set_extra(a, "collapsed", None)
    assert a.extra == {}
    assert [(c.kind, c.name, c.old, c.new) for c in heard] == [
        (ChangeKind.EXTRA_CHANGED, "collapsed", None, True),
        (ChangeKind.EXTRA_CHANGED, "collapsed", True, None)]


def test_set_groups_stores_copies_and_says_old_and_new():
    g = Graph()
    first = Group("Inputs", (0, 0, 100, 50))
    heard: list[GraphChange] = []
    g.add_listener(heard.append)
    g.set_groups([first])
    first.title = "changed after the call"
    g.set_groups([])
    assert g.groups == []
    assert [c.kind for c in heard] == [ChangeKind.GROUPS_CHANGED] * 2
    assert heard[0].new == [Group("Inputs", (0, 0, 100, 50))] and heard[1].old == heard[0].new


def test_editor_only_edits_leave_the_revision_alone():
    g = Graph()
    a = g.add_node("KSampler")
    r = g.revision
    g.set_control(a, "seed", "randomize")
    g.set_extra(a, "collapsed", True)
    g.set_groups([Group("All", (0, 0, 10, 10))])
    g.update_node(a, title="Sampler")
    assert g.revision == r


def test_change_kinds_are_their_names():
    assert ChangeKind.PARAM_CHANGED == "param_changed" and str(ChangeKind.LINK_ADDED) == "link_added"
    assert ChangeKind("groups_changed") is ChangeKind.GROUPS_CHANGED


def test_upstream_is_every_node_a_node_depends_on_through_links():
    g = Graph()
    a, b, c, stray = (g.add_node("Const") for _ in range(4))
    g.connect(a, "value", b, "x")
    g.connect(b, "value", c, "x")
    assert g.upstream([c]).nodes == {a.id, b.id, c.id}
    assert g.upstream([b]).nodes == {a.id, b.id}
    assert stray.id not in g.upstream([c]).nodes
    assert {(lk.src, lk.dst) for lk in g.upstream([c]).links} == {(a.id, b.id), (b.id, c.id)}


def test_upstream_does_not_follow_links_from_the_nodes_through_rejects():
    g = Graph()
    a, b, c = g.add_node("Const"), g.add_node("Const", mode="muted"), g.add_node("Add")
    g.connect(a, "value", b, "x")
    g.connect(b, "value", c, "a")
    assert g.upstream([c], through=lambda n: n.mode != "muted").nodes == {c.id}


def test_cycles_lists_the_nodes_of_each_cycle_and_nothing_for_a_dag():
    g = Graph()
    a, b, c, d = (g.add_node("Double") for _ in range(4))
    g.connect(a, "value", b, "x")
    g.connect(b, "value", c, "x")
    assert g.cycles() == []
    g.connect(c, "value", a, "x")
    g.connect(d, "value", d, "x")
    assert g.cycles() == [["1", "2", "3"], ["4"]]
    assert g.cycles(["1", "2"]) == []
