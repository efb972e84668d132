"""Importing ComfyUI's API "prompt" format: params and links by name, titles, kept inputs, placeholders,
an automatic left-to-right layout."""
from __future__ import annotations

import pytest
from comfykit import fixture, shape

from nodegraph import GraphLoadError
from nodegraph.comfy.api_import import from_prompt, is_link
from nodegraph.comfy.common import COMFY_KEY, is_placeholder


def test_comfyuis_documented_example_prompt_imports_node_for_node(specs):
    graph, report = from_prompt(fixture("comfyui_basic_api_example.json"), specs)
    types, params, links = shape(graph)
    assert types == {"3": "KSampler", "4": "CheckpointLoaderSimple", "5": "EmptyLatentImage",
                     "6": "CLIPTextEncode", "7": "CLIPTextEncode", "8": "VAEDecode", "9": "SaveImage"}
    assert params["3"] == {"cfg": 8, "denoise": 1, "sampler_name": "euler", "scheduler": "normal",
                           "seed": 8566257, "steps": 20}
    assert params["6"] == {"text": "masterpiece best quality girl"}
    assert links == {("5", "LATENT", "3", "latent_image"), ("4", "MODEL", "3", "model"),
                     ("7", "CONDITIONING", "3", "negative"), ("6", "CONDITIONING", "3", "positive"),
                     ("4", "CLIP", "6", "clip"), ("4", "CLIP", "7", "clip"), ("3", "LATENT", "8", "samples"),
                     ("4", "VAE", "8", "vae"), ("8", "IMAGE", "9", "images")}
    assert not report.unknown and not report.notes


def test_the_layout_runs_left_to_right_along_every_link(specs):
    graph, _ = from_prompt(fixture("comfyui_basic_api_example.json"), specs)
    for link in graph.links:
        assert graph.nodes[link.src].pos[0] < graph.nodes[link.dst].pos[0], link
    assert graph.nodes["4"].pos[0] == 0  # the loader has no inputs: first column
    assert graph.nodes["9"].pos[0] == max(n.pos[0] for n in graph.nodes.values())


def test_nodes_of_one_column_do_not_overlap(specs):
    graph, _ = from_prompt(fixture("sdxl_simple_example.api.json"), specs)
    by_x: dict[float, list[float]] = {}
    for n in graph.nodes.values():
        by_x.setdefault(n.pos[0], []).append(n.pos[1])
    for ys in by_x.values():
        ys.sort()
        assert all(b - a >= 60 for a, b in zip(ys, ys[1:]))


def test_titles_come_from_meta_unless_they_are_the_types_name(specs):
    prompt = {"1": {"class_type": "EmptyLatentImage", "inputs": {}, "_meta": {"title": "Empty Latent Image"}},
              "2": {"class_type": "EmptyLatentImage", "inputs": {}, "_meta": {"title": "Canvas"}}}
    graph, _ = from_prompt(prompt, specs)
    assert graph.nodes["1"].title is None and graph.nodes["2"].title == "Canvas"


def test_inputs_we_have_no_param_for_are_kept_on_the_node(specs):
    prompt = {"10": {"class_type": "LoadImage", "inputs": {"image": "a.png", "upload": "image"}}}
    node = from_prompt(prompt, specs)[0].nodes["10"]
    assert node.params == {"image": "a.png"} and node.extra[COMFY_KEY] == {"inputs": {"upload": "image"}}


def test_unknown_types_become_placeholders_with_their_inputs_and_links(specs):
    prompt = {"1": {"class_type": "IPAdapterModelLoader", "inputs": {"ipadapter_file": "c.safetensors"}},
              "2": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
              "3": {"class_type": "IPAdapterApply",
                    "inputs": {"weight": 0.8, "ipadapter": ["1", 0], "image": ["2", 0]}},
              "4": {"class_type": "KSampler", "inputs": {"positive": ["3", 0]}}}
    graph, report = from_prompt(prompt, specs)
    assert report.unknown == {"IPAdapterModelLoader": 1, "IPAdapterApply": 1}
    apply = graph.nodes["3"]
    assert is_placeholder(apply) and apply.extra[COMFY_KEY]["inputs"] == prompt["3"]["inputs"]
    assert graph.link_into("3", "image").output == "IMAGE"  # LoadImage's first output, by our name
    assert graph.link_into("4", "positive").output == "output_0"


def test_prompt_brackets_are_escaped(specs):
    prompt = {"6": {"class_type": "CLIPTextEncode", "inputs": {"text": "[a] b", "clip": ["4", 1]}}}
    assert from_prompt(prompt, specs)[0].nodes["6"].params["text"] == "\\[a\\] b"


def test_the_body_of_a_prompt_request_is_accepted(specs):
    body = {"prompt": fixture("comfyui_basic_api_example.json"), "client_id": "x"}
    assert len(from_prompt(body, specs)[0]) == 7


def test_comfyuis_link_test():
    assert is_link(["4", 1]) and is_link([4, 0])
    assert not is_link(["4", "1"]) and not is_link([1.5, 2.5]) and not is_link(["a", 1, 2])


@pytest.mark.parametrize("data, message", [
    ({"3": {"class_type": 5, "inputs": {}}}, "\"class_type\" must be a non-empty string"),
    ({"3": {"class_type": "KSampler", "inputs": []}}, "\"inputs\" must be an object"),
    ({"3": {"inputs": {}}}, "not a ComfyUI API prompt"),
    ([], "not a ComfyUI API prompt"),
])
def test_data_that_is_not_a_prompt_is_a_load_error(specs, data, message):
    with pytest.raises(GraphLoadError, match=message) as exc:
        from_prompt(data, specs)
    assert exc.value.problems[0].code == "bad_comfyui"
