"""examples/controlnet.json validates and runs on the shipped demo models (no download, any CPU), and its
picture shows the feature: the prompted triangle, in the prompted colours, where the hint's outline is."""
from __future__ import annotations

import numpy as np
from PIL import Image
from shape_analyser import ROOT, analyse
from test_controlnet_quality import LANDED_IOU, iou, landed_mask

from nodegraph import api

EXAMPLE = ROOT / "examples" / "controlnet.json"
HINT = ROOT / "examples" / "input" / "demo_outline.png"


def hinted_region(size: int) -> np.ndarray:
    """The pixels inside the example's outline (the hint's closed curve filled), at ``size``."""
    from scipy import ndimage

    lines = np.asarray(Image.open(HINT).convert("L")) >= 128
    filled = ndimage.binary_fill_holes(lines)
    return np.asarray(Image.fromarray(filled).resize((size, size), Image.Resampling.NEAREST))


def test_the_example_validates_with_only_shipped_models_and_inputs():
    graph = api.load(EXAMPLE)
    assert api.validate(graph) == []
    types = {n.type for n in graph.nodes.values()}
    assert {"ControlNetLoader", "ControlNetApplyAdvanced", "LoadImage"} <= types


def test_the_example_draws_the_prompted_triangle_inside_the_outline(tmp_path):
    graph = api.load(EXAMPLE)
    result = api.run(graph, out_dir=tmp_path)
    files = [f for ui in result.ui.values() for f in ui.get("files", [])]
    assert len(files) == 1
    image = np.asarray(Image.open(files[0]).convert("RGB")) / 255.0
    assert image.shape == (128, 128, 3)  # 64×64, then the demo upscaler's 2×
    found = analyse(image)
    assert (found.colour, found.shape, found.background) == ("yellow", "triangle", "blue"), found
    assert iou(landed_mask(image, "yellow", "blue"), hinted_region(128)) >= LANDED_IOU
