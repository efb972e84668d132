"""examples/controlnet.json validates and runs on the shipped demo models (no download, any CPU), and its
picture shows the feature: the prompted triangle, in the prompted colours, where the hint's outline is."""
from __future__ import annotations

import numpy as np
from PIL import Image
from shape_analyser import ROOT, analyse, demo_data
from test_controlnet_quality import LANDED_IOU, iou, landed_mask

from nodegraph import api

EXAMPLE = ROOT / "examples" / "controlnet.json"
HINT = ROOT / "examples" / "input" / "demo_outline.png"


# what examples/input/demo_outline.png outlines (the test below checks that it does)
SCENE = demo_data.Scene("yellow", "triangle", "blue", x=0.40, y=0.08, side=0.52)


def test_the_hint_image_is_the_outline_of_the_scene_it_is_said_to_be():
    assert np.array_equal(np.asarray(Image.open(HINT).convert("RGB")), demo_data.edges(SCENE, 64, 1.5))


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
    assert iou(landed_mask(image, "yellow", "blue"), demo_data.silhouette(SCENE, 128)) >= LANDED_IOU
