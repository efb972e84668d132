"""Export to ComfyUI's API ("prompt") format: what SaveImage embeds as the PNG ``prompt`` chunk."""
from __future__ import annotations

import subprocess
import sys

from nodekit import ROOT

from nodegraph import Graph
from nodegraph.comfy import to_api_prompt
from nodegraph.format import load
from nodes import builtin_specs

SPECS = builtin_specs()


def test_txt2img_example_exports_as_comfyuis_default_workflow():
    prompt = to_api_prompt(load(ROOT / "examples" / "txt2img.json"), SPECS)
    assert sorted(prompt, key=int) == ["3", "4", "5", "6", "7", "8", "9"]
    assert prompt["3"] == {
        "class_type": "KSampler",
        "inputs": {"seed": 42, "steps": 20, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal",
                   "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
                   "latent_image": ["5", 0]},
        "_meta": {"title": "Sampler"},
    }
    assert prompt["4"]["inputs"] == {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}
    assert prompt["6"]["inputs"]["clip"] == ["4", 1]  # CLIP is the loader's second output
    assert prompt["8"]["inputs"] == {"samples": ["3", 0], "vae": ["4", 2]}


def test_outputs_are_referenced_by_index_in_their_nodes_order():
    prompt = to_api_prompt(load(ROOT / "examples" / "txt2img_split.json"), SPECS)
    assert prompt["8"]["inputs"]["samples"] == ["14", 0]
    graph = load(ROOT / "examples" / "txt2img_split.json")
    graph.disconnect("8", "samples")
    graph.connect("14", "denoised_output", "8", "samples")
    assert to_api_prompt(graph, SPECS)["8"]["inputs"]["samples"] == ["14", 1]


def test_params_left_at_their_default_are_written_out():
    graph = Graph()
    graph.add_node("EmptyLatentImage", {}, id="1")
    assert to_api_prompt(graph, SPECS)["1"]["inputs"] == {"width": 512, "height": 512, "batch_size": 1}


def test_a_link_into_a_param_becomes_a_link_input():
    graph = Graph()
    graph.add_node("LoadImage", {"image": "a.png"}, id="1")
    graph.add_node("ImageScale", {"width": 10}, id="2")
    graph.add_node("EmptyLatentImage", {}, id="3")
    graph.connect("1", "IMAGE", "2", "image")
    graph.add_node("example_pack.Number", {}, id="4")
    graph.connect("4", "INT", "3", "width")  # from a node ComfyUI does not know: the param value stays
    specs = dict(SPECS)
    assert to_api_prompt(graph, specs)["3"]["inputs"]["width"] == 512
    assert to_api_prompt(graph, specs)["2"]["inputs"]["image"] == ["1", 0]


def test_bypassed_nodes_are_wired_through_and_muted_nodes_left_out():
    graph = load(ROOT / "examples" / "hiresfix.json")
    graph.set_mode("10", "bypassed")  # the latent upscale
    graph.add_node("PreviewImage", {}, id="20", mode="muted")
    graph.connect("8", "IMAGE", "20", "images")
    prompt = to_api_prompt(graph, SPECS)
    assert "10" not in prompt and "20" not in prompt
    assert prompt["11"]["inputs"]["latent_image"] == ["3", 0]


def test_nodes_of_other_packs_and_everything_fed_by_them_are_left_out():
    graph = Graph()
    graph.add_node("other_pack.MakeImage", {}, id="1")
    graph.add_node("ImageScaleBy", {"upscale_method": "area", "scale_by": 2.0}, id="2")
    graph.add_node("SaveImage", {"filename_prefix": "x"}, id="3")
    graph.add_node("EmptyLatentImage", {}, id="4")
    graph.connect("1", "IMAGE", "2", "image")
    graph.connect("2", "IMAGE", "3", "images")
    assert list(to_api_prompt(graph, SPECS)) == ["4"]


def test_exporting_does_not_import_torch():
    code = ("import sys\n"
            "from nodegraph.comfy import to_api_prompt\n"
            "from nodegraph.format import load\n"
            "from nodes import builtin_specs\n"
            "p = to_api_prompt(load('examples/img2img.json'), builtin_specs())\n"
            "assert p['10']['class_type'] == 'LoadImage'\n"
            "assert 'torch' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_inputs_only_comfyui_has_are_filled_with_its_defaults():
    graph = Graph()
    graph.add_node("VAEDecodeTiled", {"tile_size": 256}, id="1")
    graph.add_node("LoadImage", {"image": "a.png"}, id="2")
    graph.add_node("CheckpointLoaderSimple", {"ckpt_name": "a.safetensors"}, id="3")
    graph.add_node("VAEEncode", {}, id="4")
    graph.connect("2", "IMAGE", "4", "pixels")
    graph.connect("3", "VAE", "4", "vae")
    graph.connect("4", "LATENT", "1", "samples")
    graph.connect("3", "VAE", "1", "vae")
    assert to_api_prompt(graph, SPECS)["1"]["inputs"] == {
        "samples": ["4", 0], "vae": ["3", 2], "tile_size": 256, "overlap": 64,
        "temporal_size": 64, "temporal_overlap": 8}
