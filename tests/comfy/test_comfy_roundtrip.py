"""Round trips: our graph → ComfyUI API → our graph; a ComfyUI prompt → our graph → the same prompt;
a UI workflow → our graph → the prompt ComfyUI itself would queue (checked against an independent
converter and hand-checked fixtures); prompt text brackets both ways."""
from __future__ import annotations

from pathlib import Path

import pytest
from comfykit import FIXTURES, fixture, shape, strip_meta, template
from comfyrules import to_prompt

from nodegraph.comfy.api_import import from_prompt
from nodegraph.comfy.export import export_prompt
from nodegraph.comfy.prompt_text import escape_brackets, to_comfy_text
from nodegraph.comfy.ui_format import from_workflow
from nodegraph.format import load

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.json") if p.name != "hello.json")
CLASSIC = ["default", "image2image", "hiresfix_latent_workflow", "hiresfix_esrgan_workflow", "esrgan_example",
           "latent_upscale_different_prompt_model", "sdxl_simple_example", "sdxl_refiner_prompt_example",
           "area_composition", "area_composition_square_area_for_subject", "inpaint_example",
           "inpaint_model_outpainting"]
API_FIXTURES = ["comfyui_basic_api_example.json", "default.api.json", "image2image.api.json",
                "sdxl_simple_example.api.json", "hiresfix_esrgan_workflow.api.json"]


def effective(graph, specs):
    """Types, params with defaults filled in, links."""
    types, params, links = shape(graph)
    for node_id, values in params.items():
        spec = specs.get(types[node_id])
        if spec is not None:
            params[node_id] = dict(spec.default_params(), **values)
    return types, params, links


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_our_example_graphs_survive_export_and_import(path, specs):
    graph = load(path)
    back, report = from_prompt(export_prompt(graph, specs), specs)
    assert effective(back, specs) == effective(graph, specs)
    assert {n.id: n.title for n in back.nodes.values()} == {n.id: n.title for n in graph.nodes.values()}
    assert not report.unknown


@pytest.mark.parametrize("name", API_FIXTURES)
def test_a_comfyui_prompt_comes_back_unchanged_from_import_and_export(name, specs):
    prompt = fixture(name)
    graph, _ = from_prompt(prompt, specs)
    assert strip_meta(export_prompt(graph, specs)) == prompt


def test_meta_titles_come_back_too(specs):
    prompt = fixture("comfyui_basic_api_example.json")
    for node_id, entry in prompt.items():
        entry["_meta"] = {"title": f"Step {node_id}"}
    graph, _ = from_prompt(prompt, specs)
    assert export_prompt(graph, specs) == prompt


PRIMITIVES = ("PrimitiveInt", "PrimitiveFloat", "PrimitiveString", "PrimitiveStringMultiline", "PrimitiveBoolean")


def values_inlined(prompt):
    """``prompt`` with each primitive node's value written into the inputs it links to and the node
    left out — what ComfyUI's frontend queues for a PrimitiveNode (our import keeps one that feeds
    several params as a primitive node, which a ComfyUI server runs to the same values)."""
    values = {nid: e["inputs"]["value"] for nid, e in prompt.items() if e["class_type"] in PRIMITIVES}
    return {nid: dict(e, inputs={k: values.get(v[0], v) if isinstance(v, list) else v
                                 for k, v in e["inputs"].items()})
            for nid, e in prompt.items() if nid not in values}


@pytest.mark.parametrize("name", CLASSIC)
def test_a_ui_workflow_exports_as_the_prompt_comfyui_would_queue(name, specs):
    graph, _ = from_workflow(template(name), specs)
    assert values_inlined(strip_meta(export_prompt(graph, specs))) == to_prompt(template(name))


@pytest.mark.parametrize("name", [f for f in API_FIXTURES if f.endswith(".api.json")])
def test_the_hand_checked_fixtures_are_what_the_independent_converter_gives(name):
    assert to_prompt(template(name.removesuffix(".api.json"))) == fixture(name)
    assert (FIXTURES / name).read_text().endswith("\n")


# -- prompt text ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["a [red] fox", "\\[x] and ]", "plain (word:1.2)", "[[nested]] \\(y\\)"])
def test_comfyui_prompt_text_survives_escaping_and_export(text):
    assert to_comfy_text(escape_brackets(text)) == text


def test_escaped_text_reads_here_as_comfyui_reads_the_original():
    from nodegraph.prompt_weights import parse_prompt_weights

    for text in ["a [red] fox", "[[x]] (y:1.3) [z", "\\[lit] \\(p\\)"]:
        comfyui_reading = parse_prompt_weights(text, square_brackets=False)
        assert parse_prompt_weights(escape_brackets(text)) == comfyui_reading


def test_square_bracket_weights_written_here_export_as_explicit_weights():
    from nodegraph.prompt_weights import parse_prompt_weights

    text = "a [red] fox, (big:1.2) [[old (grey) coat]] \\[x\\]"
    out = to_comfy_text(text)
    assert "[red]" not in out and "(red:0.9090909090909091)" in out
    ours = parse_prompt_weights(text)
    theirs = parse_prompt_weights(out, square_brackets=False)
    assert [w for _, w in theirs] == [w for _, w in ours] and "".join(p for p, _ in theirs) == "".join(
        p for p, _ in ours)


def test_bypassed_nodes_export_wired_through_as_comfyui_queues_them(specs):
    data = template("hiresfix_latent_workflow")
    for node in data["nodes"]:
        if node["id"] == 10:  # the latent upscale between the two samplers
            node["mode"] = 4
    graph, _ = from_workflow(data, specs)
    prompt = strip_meta(export_prompt(graph, specs))
    assert prompt == to_prompt(data) and prompt["11"]["inputs"]["latent_image"] == ["3", 0]
