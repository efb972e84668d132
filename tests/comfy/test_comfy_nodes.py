"""The built-in nodes imported workflows need besides the SD pack's: notes, and ImageScaleToTotalPixels."""
from __future__ import annotations

import pytest
import torch

from nodegraph import Graph
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
