"""Primitive nodes (ComfyUI's PrimitiveInt, PrimitiveFloat, PrimitiveString, PrimitiveStringMultiline,
PrimitiveBoolean): one value, linked into params of several nodes, drives them all."""
from __future__ import annotations

import sys

import pytest

from nodegraph import Graph
from nodegraph.api import Session
from nodegraph.executor import OutputCache

# ComfyUI's comfy_extras/nodes_primitive.py: id, display name, value kind, output type
COMFYUI = [("PrimitiveInt", "Int", "INT", "INT"), ("PrimitiveFloat", "Float", "FLOAT", "FLOAT"),
           ("PrimitiveString", "String", "STRING", "STRING"),
           ("PrimitiveStringMultiline", "String (Multiline)", "STRING", "STRING"),
           ("PrimitiveBoolean", "Boolean", "BOOLEAN", "BOOLEAN")]


@pytest.mark.parametrize("type_id, name, kind, output", COMFYUI)
def test_each_primitive_has_comfyuis_name_value_and_output(registry, type_id, name, kind, output):
    spec = registry[type_id]
    assert (spec.display_name, spec.category) == (name, "utils/primitive")
    assert [(p.name, p.kind) for p in spec.params] == [("value", kind)] and not spec.inputs
    assert [o.type for o in spec.outputs] == [output]
    assert spec.description and "`" not in spec.description


def test_the_int_is_as_wide_as_comfyuis_and_changes_after_a_run_like_a_seed(registry):
    value = registry["PrimitiveInt"].param("value")
    assert (value.min, value.max) == (-sys.maxsize, sys.maxsize)
    assert value.control_after_run == "randomize"  # ComfyUI's frontend default for control_after_generate
    assert registry["PrimitiveStringMultiline"].param("value").multiline


@pytest.mark.parametrize("type_id, value", [("PrimitiveInt", -7), ("PrimitiveFloat", 2.5),
                                            ("PrimitiveString", "a [b]"), ("PrimitiveBoolean", True),
                                            ("PrimitiveStringMultiline", "two\nlines")])
def test_a_primitive_outputs_its_value(registry, type_id, value):
    assert registry[type_id].function(value=value) == value


def test_one_int_drives_the_params_of_several_nodes(registry, tmp_path):
    g = Graph()
    size = g.add_node("PrimitiveInt", {"value": 24}, id="1")
    for nid in ("2", "3"):
        g.add_node("EmptyLatentImage", {"width": 64, "height": 64}, id=nid)
        g.connect(size, "INT", nid, "width")
    session = Session(registry, cache=OutputCache())
    result = session.run(g, outputs=["2", "3"], out_dir=tmp_path)
    assert [tuple(result.output(n)["samples"].shape) for n in ("2", "3")] == [(1, 4, 8, 3), (1, 4, 8, 3)]
