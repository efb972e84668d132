"""The analyser reads the demo world's own renders exactly (so its verdicts on generated images mean something)."""
import numpy as np
import pytest

from shape_analyser import analyse, demo_data, largest_region


def test_reads_every_combination_of_a_rendered_scene_at_both_sizes():
    scenes = list(demo_data.scenes(seed=5, count=200, combinations=demo_data.held_out_combinations()
                                   + demo_data.training_combinations()))
    for size in (64, 128):
        for scene in scenes:
            found = analyse(demo_data.render(scene, size))
            assert (found.colour, found.shape, found.background) == (scene.colour, scene.shape, scene.background), (
                scene, size, found)


@pytest.mark.parametrize("shape, expected", [("square", 1.0), ("circle", np.pi / 4), ("triangle", 0.5)])
def test_fill_ratio_is_near_the_geometric_value(shape, expected):
    scene = demo_data.Scene("red", shape, "blue", x=0.2, y=0.2, side=0.6)
    assert analyse(demo_data.render(scene, 128)).fill == pytest.approx(expected, abs=0.04)


def test_float_images_in_0_1_read_like_uint8():
    scene = demo_data.Scene("purple", "circle", "yellow", x=0.3, y=0.1, side=0.5)
    image = demo_data.render(scene)
    a, b = analyse(image), analyse(image.astype(np.float32) / 255.0)
    assert (a.background, a.colour, a.shape) == (b.background, b.colour, b.shape) == ("yellow", "purple", "circle")
    assert a.fill == pytest.approx(b.fill, abs=0.02)


def test_a_plain_image_has_a_background_and_no_shape():
    image = np.full((64, 64, 3), demo_data.PALETTE["green"], dtype=np.uint8)
    found = analyse(image)
    assert (found.background, found.colour, found.shape) == ("green", None, None)


def test_stray_pixels_do_not_stretch_the_shape_box():
    scene = demo_data.Scene("white", "square", "black", x=0.25, y=0.25, side=0.5)
    image = demo_data.render(scene).copy()
    image[5, 58] = demo_data.PALETTE["white"]  # one speck far from the square
    assert analyse(image).shape == "square"


def test_largest_region_keeps_only_the_biggest_4_connected_blob():
    mask = np.zeros((6, 6), dtype=bool)
    mask[0:2, 0:2] = True  # 4 pixels
    mask[3:6, 3:6] = True  # 9 pixels
    mask[2, 2] = True  # touches both only diagonally
    assert largest_region(mask).sum() == 9
