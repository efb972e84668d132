"""The built-in nodes imported workflows need besides the SD pack's: notes, ImageScaleToTotalPixels, and the
mask, compositing, image, latent and regional-prompt nodes' widgets (order, defaults, ranges)."""
from __future__ import annotations

import pytest
import torch

from comfyrules import PARAMS

from nodegraph import Graph
from nodegraph.comfy import to_api_prompt
from nodegraph.comfy.prompt_text import export_value
from nodegraph.comfy.ui_format import from_workflow
from nodes.image import image_scale_to_total_pixels


def test_a_note_is_never_run_and_never_exported(session, specs):
    from nodegraph.comfy import to_api_prompt

    graph = Graph()
    graph.add_node("Note", {"text": "remember the milk"}, id="1")
    graph.add_node("MarkdownNote", {"text": "# title"}, id="2")
    graph.add_node("EmptyLatentImage", {"width": 64, "height": 64}, id="3")
    assert session.validate(graph)[0].code == "no_output_node"  # notes are not outputs
    assert session.executor.plan(graph, ["3"]) == ["3"]
    assert list(to_api_prompt(graph, specs)) == ["3"]


@pytest.mark.parametrize("steps, size", [(1, (118, 89)), (8, (120, 88))])
def test_scale_to_total_pixels_keeps_the_aspect_and_rounds_as_comfyui(steps, size):
    image = torch.full((1, 48, 64, 3), 0.25)
    out = image_scale_to_total_pixels(image, "bilinear", megapixels=0.01, resolution_steps=steps)
    assert (out.shape[2], out.shape[1]) == size  # 0.01 MP = 10485.76 pixels
    assert torch.allclose(out, torch.full_like(out, 0.25))


# -- the mask, compositing, image, latent and regional-prompt nodes: ComfyUI's widgets ----------------------
@pytest.mark.parametrize("type_id", sorted(PARAMS))
def test_params_follow_comfyuis_widgets_in_order_with_its_defaults_and_ranges(type_id, specs):
    """Imported widget values fill params in order, so the order is what makes workflows map."""
    spec = specs[type_id]
    assert [p.name for p in spec.params] == [entry[0] for entry in PARAMS[type_id]]
    for param, entry in zip(spec.params, PARAMS[type_id]):
        if len(entry) >= 2:
            assert param.default == entry[1], param.name
        if len(entry) == 3:
            assert tuple(param.choices) == entry[2], param.name
        if len(entry) == 4:
            assert (param.min, param.max) == (entry[2], entry[3]), param.name


@pytest.mark.parametrize("type_id", sorted(PARAMS))
def test_every_new_node_has_a_plain_text_description(type_id, specs):
    description = specs[type_id].description
    assert len(description) > 40 and "``" not in description


def test_load_image_mask_keeps_the_upload_widget_value(specs):
    workflow = {"nodes": [{"id": 1, "type": "LoadImageMask", "widgets_values": ["a.png", "red", "image"],
                           "outputs": [{"name": "MASK", "type": "MASK", "links": []}]}], "links": []}
    graph, report = from_workflow(workflow, specs)
    node = graph.nodes["1"]
    assert node.params == {"image": "a.png", "channel": "red"} and not report.notes
    assert to_api_prompt(graph, specs)["1"]["inputs"] == {"image": "a.png", "channel": "red", "upload": "image"}


def test_sdxl_prompt_brackets_are_escaped_on_import_like_clip_text_encodes(specs):
    workflow = {"nodes": [{"id": 1, "type": "CLIPTextEncodeSDXL",
                           "widgets_values": [1024, 1024, 0, 0, 1024, 1024, "a [fox]", "[snow]"]}], "links": []}
    graph, _ = from_workflow(workflow, specs)
    assert graph.nodes["1"].params["text_g"] == r"a \[fox\]" and graph.nodes["1"].params["text_l"] == r"\[snow\]"
    assert export_value("CLIPTextEncodeSDXL", "text_g", graph.nodes["1"].params["text_g"]) == "a [fox]"
