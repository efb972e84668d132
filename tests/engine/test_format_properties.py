"""Property tests: random valid graphs round-trip unchanged; random corruptions of valid files give
only the documented errors (GraphLoadError on load, Problems from validation), never another
exception."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodegraph import Graph, GraphLoadError, Problem
from nodegraph.format import dumps, loads
from nodegraph.graph import NODE_MODES, Group, Link, Node
from nodegraph.registry import CONTROL_MODES
from nodegraph.validate import validate

from .conftest import make_registry

SCHEMA = jsonschema.Draft202012Validator(
    json.loads((Path(__file__).resolve().parents[2] / "docs" / "graph.schema.json").read_text()))
REGISTRY = make_registry()
TYPES = sorted(REGISTRY.nodes) + ["Unknown", "pack.Thing"]
NAMES = ["value", "sum", "text", "a", "b", "x", "low", "high", "seed", "steps", "which", "enabled"]
SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

finite = st.floats(allow_nan=False, allow_infinity=False)
number = st.one_of(st.integers(-10**6, 10**6), finite)
# Mostly printable text, with some control characters, accents, CJK and emoji.
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",), max_codepoint=0x1F600)
               | st.sampled_from("\u00e9\u4e2d\U0001F600\n\t\"\\"), max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | finite | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=4)


def extras(known: tuple[str, ...]) -> st.SearchStrategy[dict]:
    return st.dictionaries(text.filter(lambda k: k not in known), json_values, max_size=2)


@st.composite
def graphs(draw: st.DrawFn) -> Graph:
    ids = draw(st.lists(st.one_of(st.integers(1, 500).map(str), text.filter(bool)),
                        unique=True, max_size=8))
    g = Graph(meta=draw(st.dictionaries(text, json_values, max_size=3)),
              extra=draw(extras(("format", "version", "nodes", "links", "groups", "meta"))))
    for node_id in ids:
        g.add(Node(
            id=node_id, type=draw(st.sampled_from(TYPES) | text.filter(bool)),
            params=draw(st.dictionaries(st.sampled_from(NAMES) | text, json_values, max_size=4)),
            pos=(draw(number), draw(number)),
            size=draw(st.none() | st.tuples(number, number)),
            title=draw(st.none() | text), color=draw(st.none() | text),
            mode=draw(st.sampled_from(NODE_MODES)),
            control_after_run=draw(st.dictionaries(text, st.sampled_from(CONTROL_MODES), max_size=2)),
            extra=draw(extras(("type", "params", "pos", "size", "title", "color", "mode",
                               "control_after_run")))))
    # Links only from earlier to later nodes: a DAG.
    for j, dst in enumerate(ids):
        for input_name in draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=3)):
            if j == 0:
                break
            src = ids[draw(st.integers(0, j - 1))]
            g.add_link(Link(src, draw(st.sampled_from(NAMES)), dst, input_name,
                            draw(extras(("from", "output", "to", "input")))))
    for _ in range(draw(st.integers(0, 2))):
        g.groups.append(Group(draw(text), tuple(draw(st.lists(number, min_size=4, max_size=4))),
                              draw(st.none() | text), draw(extras(("title", "rect", "color")))))
    return g


@SETTINGS
@given(graphs())
def test_random_graphs_round_trip_through_the_file_unchanged_and_match_the_schema(graph):
    text_ = dumps(graph)
    again = loads(text_)
    assert again == graph
    assert dumps(again) == text_
    SCHEMA.validate(json.loads(text_))


def load_and_validate(data: str | bytes) -> None:
    """What any client does with a file: only GraphLoadError or a list of Problems may come out."""
    try:
        graph = loads(data)
    except GraphLoadError as exc:
        assert exc.problems and all(isinstance(p, Problem) and p.message for p in exc.problems)
        return
    problems = validate(graph, REGISTRY)
    assert all(isinstance(p, Problem) for p in problems)
    str(problems)


@SETTINGS
@given(graphs(), st.data())
def test_truncated_files_give_only_documented_errors(graph, data):
    text_ = dumps(graph)
    load_and_validate(text_[: data.draw(st.integers(0, len(text_)))])


@SETTINGS
@given(graphs(), st.data())
def test_files_with_random_bytes_written_over_them_give_only_documented_errors(graph, data):
    raw = bytearray(dumps(graph).encode())
    for _ in range(data.draw(st.integers(1, 5))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos:pos + 1] = data.draw(st.binary(min_size=1, max_size=3))
    load_and_validate(bytes(raw))


@SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes_give_only_documented_errors(raw):
    load_and_validate(raw)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


@SETTINGS
@given(graphs(), st.data())
def test_wrong_types_and_deleted_fields_give_only_documented_errors(graph, data):
    doc = json.loads(dumps(graph))
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if data.draw(st.booleans()):
            del parent[path[-1]]  # works for dict keys and list indexes
        else:
            parent[path[-1]] = data.draw(json_values)
    load_and_validate(json.dumps(doc))
