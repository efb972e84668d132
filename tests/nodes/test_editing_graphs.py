"""Mask and compositing nodes in graphs run by the executor: a mask read from a file's alpha, masks of another
size resized to what they apply to, and batch mismatches refused with the node and both shapes named."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nodegraph import NodeExecutionError


@pytest.fixture
def rgba_file(tmp_path):
    pixels = np.zeros((8, 8, 4), np.uint8)
    pixels[..., 0] = 200
    pixels[..., 3] = 255
    pixels[2:6, 2:6, 3] = 0  # a transparent hole: mask 1 there
    path = tmp_path / "hole.png"
    Image.fromarray(pixels, "RGBA").save(path)
    return path


def test_load_image_alpha_mask_pastes_the_source_only_where_the_image_was_transparent(session, rgba_file):
    graph = session.new_graph()
    graph.add_node("LoadImage", {"image": str(rgba_file)}, id="1")
    graph.add_node("EmptyImage", {"width": 8, "height": 8, "batch_size": 1, "color": 0x0000FF}, id="2")
    graph.add_node("ImageCompositeMasked", {"x": 0, "y": 0, "resize_source": False}, id="3")
    graph.add_node("SaveImage", {"filename_prefix": "hole"}, id="4")
    graph.connect("1", "IMAGE", "3", "destination")
    graph.connect("2", "IMAGE", "3", "source")
    graph.connect("1", "MASK", "3", "mask")
    graph.connect("3", "IMAGE", "4", "images")
    result = session.run(graph)
    with Image.open(result.ui["4"]["files"][0]) as img:
        pixels = np.asarray(img.convert("RGB"))
    assert pixels[4, 4].tolist() == [0, 0, 255] and pixels[0, 0].tolist() == [200, 0, 0]


def test_a_mask_of_another_size_is_resized_to_the_source(session):
    graph = session.new_graph()
    graph.add_node("EmptyImage", {"width": 16, "height": 16, "batch_size": 1, "color": 0}, id="1")
    graph.add_node("EmptyImage", {"width": 8, "height": 8, "batch_size": 1, "color": 0xFFFFFF}, id="2")
    graph.add_node("SolidMask", {"value": 0.5, "width": 100, "height": 60}, id="3")
    graph.add_node("ImageCompositeMasked", {"x": 4, "y": 4, "resize_source": False}, id="4")
    graph.connect("1", "IMAGE", "4", "destination")
    graph.connect("2", "IMAGE", "4", "source")
    graph.connect("3", "MASK", "4", "mask")
    graph.add_node("SaveImage", {"filename_prefix": "half"}, id="5")
    graph.connect("4", "IMAGE", "5", "images")
    with Image.open(session.run(graph).ui["5"]["files"][0]) as img:
        pixels = np.asarray(img.convert("RGB"))
    assert pixels.shape == (16, 16, 3)
    assert (pixels[4:12, 4:12] == 127).all()  # white through a 0.5 mask: 127.5, truncated as ComfyUI saves
    assert (pixels[:4] == 0).all() and (pixels[:, 12:] == 0).all()


def test_a_batch_mismatch_names_the_node_and_both_shapes(session):
    graph = session.new_graph()
    graph.add_node("EmptyImage", {"width": 8, "height": 8, "batch_size": 2, "color": 0}, id="1")
    graph.add_node("EmptyImage", {"width": 8, "height": 8, "batch_size": 3, "color": 0}, id="2")
    graph.add_node("ImageBlend", {"blend_factor": 0.5, "blend_mode": "normal"}, id="3")
    graph.add_node("PreviewImage", {}, id="4")
    graph.connect("1", "IMAGE", "3", "image1")
    graph.connect("2", "IMAGE", "3", "image2")
    graph.connect("3", "IMAGE", "4", "images")
    with pytest.raises(NodeExecutionError) as info:
        session.run(graph)
    assert (info.value.node_id, info.value.node_type) == ("3", "ImageBlend")
    assert "image1 (2, 8, 8, 3) and image2 (3, 8, 8, 3) have batches of 2 and 3" in str(info.value)
