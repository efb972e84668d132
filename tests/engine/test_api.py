"""The Python API: build, edit, validate, run, control-after-run, value parsing."""
from __future__ import annotations

import random

import pytest

from nodegraph import GraphValidationError, UnknownNodeType, UsageError
from nodegraph.api import Session, parse_value
from nodegraph.executor import OutputCache

from .conftest import ngtest


@pytest.fixture
def session(registry, tmp_path):
    return Session(registry, cache=OutputCache())


def test_add_node_fills_every_param_with_its_default(session):
    g = session.new_graph()
    n = session.add_node(g, "KSampler", steps=30)
    assert n.params == {"seed": 0, "steps": 30, "cfg": 8.0, "sampler_name": "euler",
                        "scheduler": "normal", "denoise": 1.0}


def test_add_node_refuses_unknown_params_and_types(session):
    g = session.new_graph()
    with pytest.raises(UsageError, match="has no param.*colour.*its params are value"):
        session.add_node(g, "Const", colour=1)
    with pytest.raises(UnknownNodeType, match="unknown node type 'Nope'"):
        session.add_node(g, "Nope")


def test_build_run_and_read_outputs(session):
    g = session.new_graph()
    a = session.add_node(g, "Const", value=20)
    d = session.add_node(g, "Double")
    g.connect(a, "value", d, "x")
    g.connect(d, "value", session.add_node(g, "Sink"), "value")
    result = session.run(g, outputs=[d.id])
    assert result.output(d) == 40


def test_run_validates_first_and_raises_only_for_errors(session):
    g = session.new_graph()
    c = session.add_node(g, "Const", value=5000)
    g.connect(c, "value", session.add_node(g, "Sink"), "value")
    with pytest.raises(GraphValidationError) as exc:
        session.run(g)
    assert [p.code for p in exc.value.problems] == ["above_max"]
    g.set_param(c, "value", 5)
    g.set_param(c, "note", "unknown params only warn")
    session.run(g)
    assert ngtest.SINK == [5]


def test_run_can_skip_validation(session):
    g = session.new_graph()
    c = session.add_node(g, "Const", value=5000)
    g.connect(c, "value", session.add_node(g, "Sink"), "value")
    session.run(g, validate=False)
    assert ngtest.SINK == [5000]


def test_set_applies_an_assignment_with_a_typed_value(session):
    g = session.new_graph()
    session.add_node(g, "KSampler", title="Main")
    node, name, value = session.set(g, "Main.cfg=6.5")
    assert node.params["cfg"] == 6.5 and (name, value) == ("cfg", 6.5)


def control_graph(session, mode=None, seed=5):
    g = session.new_graph()
    n = session.add_node(g, "Seeded", seed=seed)
    if mode:
        n.control_after_run["seed"] = mode
    return g, n


def test_control_after_run_fixed_leaves_the_seed(session):
    g, n = control_graph(session)  # Seeded's default mode is "fixed"
    assert session.advance_controls(g) == [] and n.params["seed"] == 5


def test_control_after_run_increment_and_decrement(session):
    g, n = control_graph(session, "increment")
    assert session.advance_controls(g) == [(n.id, "seed", 5, 6)]
    n.control_after_run["seed"] = "decrement"
    session.advance_controls(g)
    assert n.params["seed"] == 5


def test_control_after_run_wraps_at_the_limits(session):
    g, n = control_graph(session, "increment", seed=2**64 - 1)
    session.advance_controls(g)
    assert n.params["seed"] == 0
    n.control_after_run["seed"] = "decrement"
    session.advance_controls(g)
    assert n.params["seed"] == 2**64 - 1


def test_control_after_run_randomize_stays_in_range_and_uses_the_given_rng(session):
    g, n = control_graph(session)
    k = session.add_node(g, "KSampler")  # KSampler's seed defaults to "randomize"
    changes = session.advance_controls(g, random.Random(1))
    assert [c[:2] for c in changes] == [(k.id, "seed")]
    assert k.params["seed"] == random.Random(1).randint(0, 2**64 - 1)


@pytest.mark.parametrize("kind, text, value", [
    ("INT", "42", 42), ("INT", "-3", -3), ("FLOAT", "0.5", 0.5), ("FLOAT", "2", 2.0),
    ("BOOLEAN", "true", True), ("BOOLEAN", "No", False), ("BOOLEAN", "1", True),
    ("STRING", "a=b, c", "a=b, c"), ("COMBO", "euler", "euler"),
])
def test_values_are_parsed_by_kind(kind, text, value):
    got = parse_value(kind, text)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("kind, text", [("INT", "4.5"), ("FLOAT", "x"), ("BOOLEAN", "maybe")])
def test_unparseable_values_say_what_was_expected(kind, text):
    with pytest.raises(ValueError, match=repr(text)):
        parse_value(kind, text)


def test_save_and_load_round_trip(session, tmp_path):
    g, _ = control_graph(session, "increment")
    path = session.save(g, tmp_path / "g.json")
    assert session.load(path) == g


def test_run_with_advance_applies_control_after_run_once_it_succeeded(session):
    g, n = control_graph(session, "increment")
    g.connect(n, "value", session.add_node(g, "Sink"), "value")
    session.run(g, advance=True)
    assert ngtest.SINK == [5020] and n.params["seed"] == 6
    session.run(g)
    assert n.params["seed"] == 6


def test_run_goes_on_beside_a_broken_node_no_output_needs(session, chain, calls):
    chain.add_node("KSampler", {"steps": 0}, id="pasted")
    session.run(chain)
    assert ngtest.SINK == [5] and "KSampler" not in calls
    assert [p.severity for p in session.validate(chain)] == ["warning"]
