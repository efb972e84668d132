"""ComfyUI workflows with model patches: the default SD1.5 template with a chain of patch nodes spliced
between its checkpoint and its KSampler (each written the way ComfyUI saves it, widget values in
ComfyUI's order) imports with no placeholder, keeps every value under its ComfyUI name, and runs.
(comfyui-workflow-templates 0.2.11 has no SD1/SDXL template using these nodes; those that use CFGNorm or
CFGZeroStar are Flux/Qwen/Wan workflows, whose other nodes stay placeholders — but not these.)"""
from __future__ import annotations

import copy
import json

import pytest
from comfykit import templates_dir
from PIL import Image

from nodegraph.comfy.ui_format import from_workflow
from nodegraph.validate import errors

# type, widget values as ComfyUI saves them, and the param names they must land under
CHAIN = [
    ("ModelSamplingDiscrete", ["v_prediction", True], ["sampling", "zsnr"]),
    ("RescaleCFG", [0.7], ["multiplier"]),
    ("FreeU_V2", [1.3, 1.4, 0.9, 0.2], ["b1", "b2", "s1", "s2"]),
    ("PatchModelAddDownscale", [3, 2.0, 0.0, 0.35, True, "bicubic", "bislerp"],
     ["block_number", "downscale_factor", "start_percent", "end_percent", "downscale_after_skip",
      "downscale_method", "upscale_method"]),
    ("HyperTile", [256, 2, 0, False], ["tile_size", "swap_size", "max_depth", "scale_depth"]),
    ("TomePatchModel", [0.3], ["ratio"]),
    ("UNetSelfAttentionMultiply", [1.1, 1.0, 0.9, 1.0], ["q", "k", "v", "out"]),
    ("UNetCrossAttentionMultiply", [1.0, 1.2, 1.0, 0.8], ["q", "k", "v", "out"]),
    ("SelfAttentionGuidance", [0.5, 2.0], ["scale", "blur_sigma"]),
    ("PerturbedAttentionGuidance", [3.0], ["scale"]),
    ("APG", [1.0, 5.0, -0.5], ["eta", "norm_threshold", "momentum"]),
    ("TCFG", [], []),
    ("CFGZeroStar", [], []),
    ("CFGNorm", [1.0], ["strength"]),
    ("DifferentialDiffusion", [1.0], ["strength"]),
]


def patched_default() -> dict:
    """The default template with CHAIN spliced into the checkpoint → KSampler model link (link 1)."""
    workflow = json.loads((templates_dir() / "default.json").read_text(encoding="utf-8"))
    workflow = copy.deepcopy(workflow)
    source, next_id, next_link = (4, 0), 100, 100
    for type_id, widgets, _ in CHAIN:
        workflow["links"].append([next_link, source[0], source[1], next_id, 0, "MODEL"])
        workflow["nodes"].append({"id": next_id, "type": type_id, "pos": [0, 0], "size": [300, 100], "flags": {},
                                  "order": 0, "mode": 0,
                                  "inputs": [{"name": "model", "type": "MODEL", "link": next_link}],
                                  "outputs": [{"name": "MODEL", "type": "MODEL", "links": []}],
                                  "properties": {"Node name for S&R": type_id}, "widgets_values": widgets})
        source, next_id, next_link = (next_id, 0), next_id + 1, next_link + 1
    for link in workflow["links"]:
        if link[0] == 1:  # checkpoint MODEL → KSampler model now comes from the last patch
            link[1], link[2] = source
    workflow["last_node_id"], workflow["last_link_id"] = next_id, next_link
    return workflow


def test_a_workflow_with_every_sd_patch_node_imports_each_value_under_its_comfyui_name(registry):
    graph, report = from_workflow(patched_default(), registry.nodes)
    assert not report.unknown
    for node_id, (type_id, widgets, names) in zip(range(100, 100 + len(CHAIN)), CHAIN):
        node = graph.nodes[str(node_id)]
        assert node.type == type_id
        assert {k: node.params[k] for k in names} == dict(zip(names, widgets))


def test_it_validates_and_runs_end_to_end(session):
    graph, _ = from_workflow(patched_default(), session.registry.nodes)
    for assignment in ("5.width=64", "5.height=64", "3.steps=2"):
        session.set(graph, assignment)
    assert errors(session.validate(graph)) == []
    result = session.run(graph)
    with Image.open(result.ui["9"]["files"][0]) as image:
        assert image.size == (64, 64)


@pytest.mark.parametrize("name", ["image_qwen_image_edit", "wan2.1_fun_inp", "flux_fill_inpaint_example"])
def test_templates_using_patch_nodes_no_longer_hold_them_as_placeholders(name, registry):
    """Flux/Qwen/Wan workflows using CFGNorm, CFGZeroStar or DifferentialDiffusion (with its strength widget)."""
    workflow = json.loads((templates_dir() / f"{name}.json").read_text(encoding="utf-8"))
    graph, report = from_workflow(workflow, registry.nodes)
    assert report.unknown and not {"CFGNorm", "CFGZeroStar", "DifferentialDiffusion"} & set(report.unknown)
    for node in graph.nodes.values():
        if node.type == "DifferentialDiffusion":
            assert node.params["strength"] == 1.0
