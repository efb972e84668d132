"""The analyser reads the demo world's own renders exactly (so its verdicts on generated images mean something)."""
import numpy as np
import pytest

from shape_analyser import analyse, demo_data, largest_region, stray_marks


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


def test_clean_renders_have_no_stray_marks_at_both_sizes():
    scenes = list(demo_data.scenes(seed=6, count=120, combinations=demo_data.all_combinations()))
    for size in (64, 128):
        for scene in scenes:
            assert stray_marks(demo_data.render(scene, size)) == [], (scene, size)


def blotched(size: int, y: int, x: int, side: int, colour=(40, 170, 60)) -> np.ndarray:
    """A white square on black at the top left with a ``side``×``side`` block of ``colour`` at (y, x)."""
    scene = demo_data.Scene("white", "square", "black", x=0.1, y=0.1, side=0.4)
    image = demo_data.render(scene, size).copy()
    image[y:y + side, x:x + side] = colour
    return image


def test_a_4x4_block_away_from_the_shape_is_a_stray_mark_of_16_pixels():
    assert stray_marks(blotched(128, 110, 112, 4)) == [16]


def test_a_3x3_block_is_too_small_to_count():
    assert stray_marks(blotched(128, 110, 112, 3)) == []


def test_a_block_within_a_small_colour_distance_of_the_background_does_not_count():
    near_black = tuple(c + 15 for c in demo_data.PALETTE["black"])  # 26 from black in RGB distance
    assert stray_marks(blotched(128, 100, 100, 8, colour=near_black)) == []


def test_a_mark_beside_the_shape_counts_beyond_the_shapes_edge_margin():
    # the square spans 13..63 at 128×128; a block from 66 lies 3 pixels off its edge
    marks = stray_marks(blotched(128, 30, 66, 8))
    assert len(marks) == 1 and 8 <= marks[0] <= 64, marks


def test_a_second_piece_of_the_shapes_colour_is_a_stray_mark():
    assert stray_marks(blotched(128, 100, 100, 10, colour=demo_data.PALETTE["white"])) == [100]


def test_stray_mark_sizes_scale_with_the_image_side():
    assert stray_marks(blotched(64, 55, 56, 2)) == [4]  # a 4×4 block at 128×128
    assert stray_marks(blotched(64, 55, 56, 1)) == []
