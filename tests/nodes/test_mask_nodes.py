"""Mask nodes against independent computations: numpy transcriptions of ComfyUI's formulas, OpenCV's
grey dilation/erosion, and files written with Pillow."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from nodekit import FakeContext, options_for
from PIL import Image

from nodes.mask import (crop_mask, feather_mask, grow_mask, image_color_to_mask, image_to_mask, invert_mask,
                        load_image_mask, mask_composite, mask_preview, mask_to_image, solid_mask, threshold_mask)

cv2 = pytest.importorskip("cv2", reason="OpenCV is the test reference (pip install opencv-python-headless)")


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# -- loading -------------------------------------------------------------------------------------------
@pytest.fixture
def rgba_file(tmp_path):
    pixels = np.random.default_rng(3).integers(0, 256, size=(5, 7, 4), dtype=np.uint8)
    path = tmp_path / "rgba.png"
    Image.fromarray(pixels, "RGBA").save(path)
    return path, pixels.astype(np.float32) / 255.0


def test_load_image_mask_alpha_is_one_minus_alpha_like_load_image(rgba_file):
    from nodes.image import load_image

    path, pixels = rgba_file
    mask = load_image_mask(image=str(path), channel="alpha")
    np.testing.assert_allclose(mask[0].numpy(), 1.0 - pixels[..., 3], atol=1e-7)
    torch.testing.assert_close(mask, load_image(image=str(path))[1], rtol=0, atol=0)


@pytest.mark.parametrize("channel,index", [("red", 0), ("green", 1), ("blue", 2)])
def test_load_image_mask_colour_channels_are_their_values(rgba_file, channel, index):
    path, pixels = rgba_file
    mask = load_image_mask(image=str(path), channel=channel)
    assert mask.shape == (1, 5, 7)
    np.testing.assert_allclose(mask[0].numpy(), pixels[..., index], atol=1e-7)


def test_load_image_mask_of_an_image_without_alpha_is_zeros_of_its_size(tmp_path):
    Image.new("RGB", (6, 4), (10, 20, 30)).save(tmp_path / "rgb.png")
    mask = load_image_mask(image=str(tmp_path / "rgb.png"), channel="alpha")
    assert mask.shape == (1, 4, 6) and torch.count_nonzero(mask) == 0


# -- conversions ---------------------------------------------------------------------------------------
def test_mask_to_image_repeats_the_mask_in_three_channels():
    mask = rand(2, 3, 4)
    image = mask_to_image(mask=mask)
    assert image.shape == (2, 3, 4, 3)
    for c in range(3):
        torch.testing.assert_close(image[..., c], mask, rtol=0, atol=0)


def test_mask_to_image_takes_a_single_two_dimensional_mask():
    assert mask_to_image(mask=rand(3, 4)).shape == (1, 3, 4, 3)


@pytest.mark.parametrize("channel,index", [("red", 0), ("green", 1), ("blue", 2), ("alpha", 3)])
def test_image_to_mask_takes_one_channel_as_it_is(channel, index):
    image = rand(2, 3, 4, 4)
    torch.testing.assert_close(image_to_mask(image=image, channel=channel), image[..., index], rtol=0, atol=0)


def test_image_to_mask_alpha_of_an_rgb_image_says_there_is_none():
    with pytest.raises(ValueError, match=r"\(1, 3, 4, 3\) has no alpha channel"):
        image_to_mask(image=rand(1, 3, 4, 3), channel="alpha")


def test_image_color_to_mask_matches_pixels_rounded_to_bytes():
    # (255, 128, 0) exactly, then the same colour 0.4/255 off (rounds to it), then 0.6/255 off (does not)
    image = torch.tensor([[[[1.0, 128 / 255, 0.0], [1.0, 128.4 / 255, 0.0], [1.0, 128.6 / 255, 0.0],
                            [0.0, 0.0, 0.0]]]])
    mask = image_color_to_mask(image=image, color=0xFF8000)
    assert mask.tolist() == [[[1.0, 1.0, 0.0, 0.0]]]


def test_image_color_to_mask_clamps_out_of_range_values_first():
    image = torch.tensor([[[[1.3, -0.2, 1.0]]]])
    assert image_color_to_mask(image=image, color=0xFF00FF).item() == 1.0


def test_solid_mask_is_one_value_everywhere():
    mask = solid_mask(value=0.25, width=5, height=3)
    assert mask.shape == (1, 3, 5) and torch.all(mask == 0.25)


def test_invert_mask_is_one_minus_the_mask():
    mask = rand(2, 3, 3)
    torch.testing.assert_close(invert_mask(mask=mask), 1.0 - mask)


def test_threshold_mask_is_strictly_above_the_value():
    mask = torch.tensor([[[0.2, 0.5, 0.50001, 0.9]]])
    assert threshold_mask(mask=mask, value=0.5).tolist() == [[[0.0, 0.0, 1.0, 1.0]]]


# -- cropping and compositing ------------------------------------------------------------------------------
def test_crop_mask_cuts_the_rectangle_and_stops_at_the_edge():
    mask = rand(2, 6, 8)
    torch.testing.assert_close(crop_mask(mask=mask, x=3, y=1, width=2, height=4), mask[:, 1:5, 3:5])
    assert crop_mask(mask=mask, x=5, y=4, width=10, height=10).shape == (2, 2, 3)


def test_crop_mask_starting_outside_the_mask_names_the_mask_size():
    with pytest.raises(ValueError, match=r"\(9, 2\), outside the 8×6 mask"):
        crop_mask(mask=rand(1, 6, 8), x=9, y=2, width=2, height=2)


def composite_reference(dest, src, x, y, op):
    """MaskComposite transcribed in numpy: the op on the overlapping rectangle, then clamp."""
    out = dest.copy()
    h = max(0, min(src.shape[1], dest.shape[1] - y))
    w = max(0, min(src.shape[2], dest.shape[2] - x))
    d, s = out[:, y:y + h, x:x + w], src[:, :h, :w]
    binary = {"and": np.logical_and, "or": np.logical_or, "xor": np.logical_xor}
    if op in binary:
        region = binary[op](np.round(d) != 0, np.round(s) != 0).astype(np.float32)
    else:
        region = {"multiply": d * s, "add": d + s, "subtract": d - s}[op]
    out[:, y:y + h, x:x + w] = region
    return np.clip(out, 0, 1)


@pytest.mark.parametrize("op", ["multiply", "add", "subtract", "and", "or", "xor"])
@pytest.mark.parametrize("x,y", [(0, 0), (3, 2), (6, 5), (20, 1)])
def test_mask_composite_matches_the_formula(op, x, y):
    dest, src = rand(2, 7, 9, seed=1), rand(2, 4, 5, seed=2)
    expected = composite_reference(dest.numpy(), src.numpy(), x, y, op)
    np.testing.assert_allclose(mask_composite(destination=dest, source=src, x=x, y=y, operation=op).numpy(),
                               expected, atol=1e-7)


def test_mask_composite_applies_one_source_to_every_destination_mask():
    dest, src = rand(3, 5, 5, seed=1), rand(1, 2, 2, seed=2)
    out = mask_composite(destination=dest, source=src, x=1, y=1, operation="multiply")
    for b in range(3):
        np.testing.assert_allclose(out[b].numpy(), composite_reference(dest[b:b + 1].numpy(), src.numpy(), 1, 1,
                                                                        "multiply")[0], atol=1e-7)


def test_mask_composite_refuses_a_source_batch_that_does_not_fit():
    with pytest.raises(ValueError, match=r"destination \(2, 5, 5\) and source \(3, 2, 2\) have batches of 2 and 3"):
        mask_composite(destination=rand(2, 5, 5), source=rand(3, 2, 2), x=0, y=0, operation="add")


# -- feathering, growing ----------------------------------------------------------------------------------
def test_feather_mask_ramps_each_edge_from_one_over_n_to_one():
    out = feather_mask(mask=torch.ones(1, 4, 6), left=2, top=1, right=3, bottom=2)
    cols = np.array([1 / 2, 1, 1, 1, 2 / 3, 1 / 3])
    rows = np.array([1, 1, 1, 1 / 2])
    np.testing.assert_allclose(out[0].numpy(), np.outer(rows, cols), atol=1e-7)


def test_feather_mask_right_edge_leaves_the_left_column_alone():
    """ComfyUI indexes the right edge with -0 for its outermost step and so scales column 0; not here."""
    out = feather_mask(mask=torch.ones(1, 2, 5), left=0, top=0, right=2, bottom=0)
    np.testing.assert_allclose(out[0, 0].numpy(), [1, 1, 1, 1, 0.5], atol=1e-7)


def test_feather_wider_than_the_mask_is_capped_at_its_size():
    out = feather_mask(mask=torch.ones(1, 1, 3), left=10, top=0, right=0, bottom=0)
    np.testing.assert_allclose(out[0, 0].numpy(), [1 / 3, 2 / 3, 1], atol=1e-7)


CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
SQUARE = np.ones((3, 3), np.uint8)


@pytest.mark.parametrize("expand", [1, 2, 5, -1, -3])
@pytest.mark.parametrize("tapered", [True, False])
def test_grow_mask_is_repeated_3x3_dilation_or_erosion(expand, tapered):
    """OpenCV's dilate/erode with ``iterations`` and its default border (pixels outside ignored) is ComfyUI's
    repeated scipy grey_dilation/grey_erosion with a 3×3 cross or square footprint."""
    mask = rand(3, 11, 14, seed=expand + 10 * tapered)
    mask[0] = (mask[0] > 0.9).float()  # a sparse hard mask too
    kernel = CROSS if tapered else SQUARE
    op = cv2.dilate if expand > 0 else cv2.erode
    expected = np.stack([op(m, kernel, iterations=abs(expand)) for m in mask.numpy()])
    out = grow_mask(mask=mask, expand=expand, tapered_corners=tapered)
    np.testing.assert_array_equal(out.numpy(), expected)  # max/min of the same values: exact


@pytest.mark.parametrize("tapered", [True, False])
def test_growing_more_than_the_mask_size_fills_it_as_many_steps_would(tapered):
    mask = torch.zeros(1, 6, 9)
    mask[0, 2, 3] = 0.7
    expected = cv2.dilate(mask[0].numpy(), CROSS if tapered else SQUARE, iterations=40)
    np.testing.assert_array_equal(grow_mask(mask=mask, expand=5000, tapered_corners=tapered)[0].numpy(), expected)
    assert torch.all(grow_mask(mask=mask, expand=5000, tapered_corners=tapered) == 0.7)


def test_grow_mask_by_zero_is_the_mask():
    mask = rand(1, 4, 4)
    torch.testing.assert_close(grow_mask(mask=mask, expand=0, tapered_corners=True), mask, rtol=0, atol=0)


# -- preview -----------------------------------------------------------------------------------------------
def test_mask_preview_shows_the_mask_as_a_grey_picture(tmp_path):
    mask = torch.tensor([[[0.0, 0.5], [1.0, 0.25]]])
    ctx = FakeContext(options_for(tmp_path))
    mask_preview(mask=mask, ctx=ctx)
    with Image.open(ctx.ui["images"][0]) as img:
        pixels = np.asarray(img.convert("RGB"))
    assert pixels[..., 0].tolist() == [[0, 127], [255, 63]] and (pixels == pixels[..., :1]).all()
