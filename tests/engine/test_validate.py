"""Validation collects every problem, each with node id, field, code and a message saying what to do."""
from __future__ import annotations

import pytest

from nodegraph import Graph, GraphValidationError, Registry, RunOptions
from nodegraph.graph import Link
from nodegraph.registry import Combo, NodeSpec, PackInfo
from nodegraph.validate import build_plan, errors, validate, validate_file


def sink_of(g: Graph, src, output: str = "value"):
    s = g.add_node("Sink")
    g.connect(src, output, s, "value")
    return s


def only(problems, code):
    found = [p for p in problems if p.code == code]
    assert len(found) == 1, problems
    return found[0]


def test_a_correct_graph_has_no_problems(registry, chain):
    assert validate(chain, registry) == []


def test_a_param_below_its_minimum_reads_like_the_cli_line(registry):
    g = Graph()
    g.add_node("KSampler", {"steps": 0}, id="12")
    g.add_node("Sink", id="13")
    g.connect("12", "LATENT", "13", "value")
    (p,) = validate(g, registry)
    assert str(p) == "node 12 (KSampler) param steps: 0 is below the minimum 1"
    assert (p.code, p.node_id, p.field, p.param) == ("below_min", "12", "param steps", "steps")


def test_every_problem_is_collected_not_only_the_first(registry):
    g = Graph()
    k = g.add_node("KSampler", {"steps": 0, "cfg": 500.0, "sampler_name": "eulr", "seed": "x"})
    sink_of(g, k, "LATENT")
    assert sorted(p.code for p in validate(g, registry)) == [
        "above_max", "bad_choice", "below_min", "wrong_kind"]


def test_wrong_kind_says_what_was_expected(registry):
    g = Graph()
    sink_of(g, g.add_node("Const", {"value": "3"}))
    p = only(validate(g, registry), "wrong_kind")
    assert p.message == "'3' is a string, expected a whole number such as 20"


def test_missing_params_take_their_defaults_without_a_problem(registry):
    g = Graph()
    sink_of(g, g.add_node("KSampler"), "LATENT")
    assert validate(g, registry) == []


def test_an_unknown_param_is_only_a_warning(registry):
    g = Graph()
    sink_of(g, g.add_node("Const", {"value": 1, "colour": "red"}))
    p = only(validate(g, registry), "unknown_param")
    assert p.severity == "warning" and errors([p]) == [] and str(p).startswith("warning: ")


def test_unknown_type_says_to_install_the_pack(registry):
    registry.packs.append(PackInfo("fancy", "folder", "folder", status="failed", error="SyntaxError"))
    g = Graph()
    g.add_node("fancy.Glow")
    g.add_node("Sink")
    p = only(validate(g, registry), "unknown_type")
    assert "node pack 'fancy' failed to load (SyntaxError)" in p.message
    assert "install the pack" in p.message


def test_missing_required_input_names_its_type(registry):
    g = Graph()
    add = g.add_node("Add")
    g.connect(g.add_node("Const"), "value", add, "a")
    sink_of(g, add, "sum")
    p = only(validate(g, registry), "missing_input")
    assert p.field == "input b" and "connect an output of type INT" in p.message


def test_an_unconnected_optional_input_is_fine(registry):
    g = Graph()
    add = g.add_node("AddOptional")
    g.connect(g.add_node("Const"), "value", add, "a")
    sink_of(g, add, "sum")
    assert validate(g, registry) == []


def test_link_from_a_missing_node(registry):
    g = Graph()
    s = g.add_node("Sink")
    g.add_link(Link("404", "value", s.id, "value"))
    p = only(validate(g, registry), "missing_node")
    assert "node '404', which does not exist" in p.message


def test_link_from_a_missing_output_lists_the_outputs_there_are(registry):
    g = Graph()
    sink_of(g, g.add_node("Pair"), "middle")
    p = only(validate(g, registry), "missing_output")
    assert "it has: low, high" in p.message


def test_link_into_an_input_that_does_not_exist(registry):
    g = Graph()
    c = g.add_node("Const")
    d = g.add_node("Double")
    g.connect(c, "value", d, "x")
    g.connect(c, "value", d, "y")
    sink_of(g, d)
    p = only(validate(g, registry), "unknown_input")
    assert p.field == "input y"


def test_type_mismatch_names_both_types(registry):
    g = Graph()
    d = g.add_node("Double")
    g.connect(g.add_node("Text"), "text", d, "x")
    sink_of(g, d)
    p = only(validate(g, registry), "type_mismatch")
    assert "gives STRING but this takes INT" in p.message


def test_a_link_into_a_param_must_carry_the_params_kind(registry):
    g = Graph()
    u = g.add_node("Upper")
    g.connect(g.add_node("Text"), "text", u, "text")  # STRING into a STRING param: fine
    g.connect(g.add_node("Const"), "value", u, "enabled")  # INT into a BOOLEAN param
    sink_of(g, u, "text")
    p = only(validate(g, registry), "type_mismatch")
    assert p.field == "param enabled" and "takes BOOLEAN" in p.message


def test_a_linked_param_is_not_range_checked(registry):
    g = Graph()
    u = g.add_node("Upper", {"text": 5})  # the wrong value is overridden by the link
    g.connect(g.add_node("Text"), "text", u, "text")
    sink_of(g, u, "text")
    assert validate(g, registry) == []


def test_a_cycle_lists_its_nodes(registry):
    g = Graph()
    a, b, c = g.add_node("Double"), g.add_node("Double"), g.add_node("Double")
    g.connect(a, "value", b, "x")
    g.connect(b, "value", c, "x")
    g.connect(c, "value", a, "x")
    sink_of(g, c)
    p = only(validate(g, registry), "cycle")
    assert p.message.startswith("nodes 1, 2, 3 form a cycle")


def test_a_self_loop_is_a_cycle(registry):
    g = Graph()
    a = g.add_node("Double")
    g.connect(a, "value", a, "x")
    sink_of(g, a)
    assert only(validate(g, registry), "cycle").node_id == "1"


def test_no_output_node(registry):
    g = Graph()
    g.add_node("Const")
    p = only(validate(g, registry), "no_output_node")
    assert "add one" in p.message


def test_a_muted_node_is_not_checked_and_a_muted_output_does_not_count(registry):
    g = Graph()
    g.add_node("Const", {"value": "bad"}, mode="muted")
    g.add_node("Sink", mode="muted")
    assert [p.code for p in validate(g, registry)] == ["no_output_node"]


def test_a_required_input_from_a_muted_node_is_a_problem(registry):
    g = Graph()
    c = g.add_node("Const", mode="muted")
    sink_of(g, c)
    assert "which is muted" in only(validate(g, registry), "muted_source").message


def test_a_bypassed_node_needs_an_input_of_the_output_type_to_pass_through(registry):
    g = Graph()
    t = g.add_node("Text", mode="bypassed")  # no STRING input to pass
    sink_of(g, t, "text")
    d = g.add_node("Double", mode="bypassed")
    g.connect(g.add_node("Const"), "value", d, "x")
    sink_of(g, d)
    p = only(validate(g, registry), "bypassed_source")
    assert p.node_id == "2"


def test_choices_come_from_the_provider_with_the_given_options():
    reg = Registry()
    models = NodeSpec("Models", lambda name: name, params=(Combo("name", lambda o: [
        p.name for p in o.models_dirs]),), outputs={"x": "STRING"}, output_node=True)
    reg.add_node(models)
    g = Graph()
    g.add_node("Models", {"name": "b"})
    assert validate(g, reg, RunOptions(models_dirs=("a", "b"))) == []
    assert validate(g, reg, RunOptions(models_dirs=("a",)))[0].code == "bad_choice"


def test_a_failing_choices_provider_is_a_problem_not_a_crash():
    def broken(options):
        raise OSError("disk gone")

    reg = Registry()
    reg.add_node(NodeSpec("M", lambda name: name, params=(Combo("name", broken),),
                          output_node=True))
    g = Graph()
    g.add_node("M", {"name": "x"})
    p = only(validate(g, reg), "choices_failed")
    assert "OSError: disk gone" in p.message


def test_validate_file_returns_load_problems_for_a_broken_file(tmp_path, registry):
    path = tmp_path / "g.json"
    path.write_text('{"format": "nodegraph", "version": 1, "nodes": {')
    graph, problems = validate_file(path, registry)
    assert graph is None and [p.code for p in problems] == ["not_json"]


def test_problems_serialise_to_json(registry):
    g = Graph()
    g.add_node("Const")
    (p,) = validate(g, registry)
    assert p.to_json()["code"] == "no_output_node"


def test_an_empty_graph_says_so(registry):
    (p,) = validate(Graph(), registry)
    assert p.code == "no_output_node" and "empty" in p.message


def test_a_failing_check_of_unlisted_values_is_a_problem_not_a_crash():
    def broken(value, options):
        raise RuntimeError("checker bug")

    reg = Registry()
    reg.add_node(NodeSpec("M", lambda name: name, output_node=True,
                          params=(Combo("name", ["a"], check_unlisted=broken),)))
    g = Graph()
    g.add_node("M", {"name": "zzz"})
    assert "checker bug" in only(validate(g, reg), "choices_failed").message


def test_the_plan_of_a_run_reports_what_validation_reports_for_the_nodes_it_needs(registry):
    g = Graph()
    add = g.add_node("Add")
    g.connect(g.add_node("Const"), "value", add, "a")
    g.add_link(Link("404", "value", add.id, "b"))
    sink_of(g, add, "sum")
    g.add_node("Add")  # not needed by the run: its missing inputs do not stop it
    with pytest.raises(GraphValidationError) as exc:
        build_plan(g, registry)
    assert exc.value.problems == [only(validate(g, registry), "missing_node")]


def test_the_plan_lists_the_needed_nodes_sources_first(registry, chain):
    plan = build_plan(chain, registry)
    order = list(plan.node_ids)
    assert all(order.index(lk.src) < order.index(lk.dst) for lk in chain.links if lk.src in order)
    assert plan.targets == tuple(n.id for n in chain.nodes.values() if n.type == "Sink")


# -- a run takes what its outputs need: the problems of other nodes are warnings -----------------
def test_problems_of_a_node_no_output_needs_are_warnings_saying_it_does_not_run(registry, chain):
    chain.add_node("KSampler", {"steps": 0}, id="pasted")  # unconnected, out of range
    (p,) = validate(chain, registry)
    assert (p.code, p.node_id, p.severity) == ("below_min", "pasted", "warning")
    assert p.message == "0 is below the minimum 1 (no output needs this node, so it does not run)"
    assert errors(validate(chain, registry)) == []


def test_the_same_problem_on_a_node_an_output_needs_stays_an_error(registry):
    g = Graph()
    sink_of(g, g.add_node("KSampler", {"steps": 0}, id="k"), "LATENT")
    (p,) = validate(g, registry)
    assert (p.code, p.node_id, p.severity) == ("below_min", "k", "error")


def test_a_node_only_a_muted_node_needs_is_not_needed(registry):
    g = Graph()
    bad = g.add_node("Const", {"value": "x"}, id="bad")
    muted = g.add_node("Double", id="m")
    g.connect(bad, "value", muted, "x")
    muted.mode = "muted"
    sink = sink_of(g, g.add_node("Const", {"value": 1}))
    g.connect(muted, "value", sink, "extra")  # an optional input: a muted source gives it nothing
    assert {(p.node_id, p.severity) for p in validate(g, registry)} == {("bad", "warning")}


def test_explicit_targets_decide_what_is_needed(registry, chain):
    chain.nodes["stray"].params["value"] = "x"
    assert errors(validate(chain, registry)) == []
    (p,) = errors(validate(chain, registry, targets=["stray"]))
    assert (p.code, p.node_id) == ("wrong_kind", "stray")


def test_without_any_output_node_every_problem_stays_an_error(registry):
    g = Graph()
    g.add_node("KSampler", {"steps": 0}, id="k")
    assert sorted((p.code, p.severity) for p in validate(g, registry)) == [
        ("below_min", "error"), ("no_output_node", "error")]


def test_a_cycle_no_output_needs_is_a_warning(registry, chain):
    a, b = chain.add_node("Double", id="a"), chain.add_node("Double", id="b")
    chain.connect(a, "value", b, "x")
    chain.connect(b, "value", a, "x")
    (p,) = validate(chain, registry)
    assert (p.code, p.severity) == ("cycle", "warning")


def test_explicit_targets_need_no_output_node(registry):
    g = Graph()
    c = g.add_node("Const", {"value": 3}, id="c")
    assert validate(g, registry, targets=[c]) == []
    assert [p.code for p in validate(g, registry)] == ["no_output_node"]
