"""Image transform and batch nodes against numpy: crops, flips, rotations, inversion, empty images, batches,
and ImagePadForOutpaint's canvas and feathered mask (against a transcription of ComfyUI's pixel loop)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nodes.image_ops import (empty_image, get_image_size, image_batch, image_crop, image_flip, image_from_batch,
                             image_invert, image_pad_for_outpaint, image_rotate, repeat_image_batch)


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def test_image_crop_cuts_the_rectangle():
    image = rand(2, 10, 12, 3)
    np.testing.assert_array_equal(image_crop(image=image, width=4, height=3, x=5, y=2).numpy(),
                                  image.numpy()[:, 2:5, 5:9])


def test_image_crop_start_past_the_edge_moves_to_the_last_pixel():
    image = rand(1, 10, 12, 3)
    out = image_crop(image=image, width=5, height=5, x=40, y=3)
    np.testing.assert_array_equal(out.numpy(), image.numpy()[:, 3:8, 11:12])


@pytest.mark.parametrize("method,axis", [("x-axis: vertically", 1), ("y-axis: horizontally", 2)])
def test_image_flip(method, axis):
    image = rand(2, 4, 5, 3)
    np.testing.assert_array_equal(image_flip(image=image, flip_method=method).numpy(), np.flip(image.numpy(), axis))


@pytest.mark.parametrize("rotation,turns", [("none", 0), ("90 degrees", 1), ("180 degrees", 2), ("270 degrees", 3)])
def test_image_rotate_turns_clockwise(rotation, turns):
    image = rand(2, 4, 6, 3)
    expected = np.rot90(image.numpy(), k=-turns, axes=(1, 2))  # numpy's positive k turns counter-clockwise
    np.testing.assert_array_equal(image_rotate(image=image, rotation=rotation).numpy(), expected)


def test_a_quarter_turn_puts_the_top_left_pixel_top_right():
    image = torch.zeros(1, 2, 3, 3)
    image[0, 0, 0] = 1.0
    assert image_rotate(image=image, rotation="90 degrees")[0, 0, 1].tolist() == [1.0, 1.0, 1.0]


def test_image_invert_is_one_minus_every_channel():
    image = rand(1, 3, 3, 4)
    torch.testing.assert_close(image_invert(image=image), 1 - image)


def test_empty_image_fills_the_colour_channels_from_0xrrggbb():
    out = empty_image(width=5, height=3, batch_size=2, color=0xFF8001)
    assert out.shape == (2, 3, 5, 3)
    np.testing.assert_allclose(out[1, 2, 4].numpy(), [1.0, 128 / 255, 1 / 255], atol=1e-7)


def test_get_image_size_is_width_height_batch():
    assert get_image_size(image=rand(3, 7, 11, 3)) == (11, 7, 3)


def test_image_batch_appends_and_resizes_image2_to_image1():
    a, b = rand(2, 8, 8, 3, seed=1), rand(1, 8, 8, 3, seed=2)
    out = image_batch(image1=a, image2=b)
    np.testing.assert_array_equal(out.numpy(), np.concatenate([a.numpy(), b.numpy()]))
    assert image_batch(image1=a, image2=rand(3, 4, 6, 3)).shape == (5, 8, 8, 3)


def test_image_batch_gives_an_opaque_alpha_to_the_image_without_one():
    out = image_batch(image1=rand(1, 4, 4, 3), image2=rand(1, 4, 4, 4))
    assert out.shape == (2, 4, 4, 4) and torch.all(out[0, ..., 3] == 1.0)


def test_repeat_image_batch_repeats_the_whole_batch():
    image = rand(2, 3, 3, 3)
    out = repeat_image_batch(image=image, amount=3)
    np.testing.assert_array_equal(out.numpy(), np.concatenate([image.numpy()] * 3))


@pytest.mark.parametrize("index,length,expected", [(1, 2, [1, 2]), (3, 10, [3]), (9, 1, [3]), (-1, 1, [3]),
                                                   (-3, 2, [1, 2]), (-9, 1, [0])])
def test_image_from_batch_takes_a_clamped_slice(index, length, expected):
    image = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 2, 2, 3)
    out = image_from_batch(image=image, batch_index=index, length=length)
    assert out[:, 0, 0, 0].tolist() == expected


# -- ImagePadForOutpaint -----------------------------------------------------------------------------------
def outpaint_reference(image, left, top, right, bottom, feathering):
    """ComfyUI's expand_image, pixel by pixel."""
    b, h, w, c = image.shape
    canvas = np.full((b, h + top + bottom, w + left + right, c), 0.5, np.float32)
    canvas[:, top:top + h, left:left + w] = image
    mask = np.ones((h + top + bottom, w + left + right), np.float32)
    inner = np.zeros((h, w), np.float32)
    if feathering > 0 and feathering * 2 < h and feathering * 2 < w:
        for i in range(h):
            for j in range(w):
                dt = i if top != 0 else h
                db = h - i if bottom != 0 else h
                dl = j if left != 0 else w
                dr = w - j if right != 0 else w
                d = min(dt, db, dl, dr)
                if d < feathering:
                    inner[i, j] = ((feathering - d) / feathering) ** 2
    mask[top:top + h, left:left + w] = inner
    return canvas, mask[None]


@pytest.mark.parametrize("pads,feathering", [((8, 0, 16, 8), 4), ((0, 24, 0, 0), 5), ((8, 8, 8, 8), 0),
                                             ((16, 0, 0, 8), 10), ((8, 0, 0, 0), 9)])
def test_image_pad_for_outpaint_matches_comfyuis_canvas_and_mask(pads, feathering):
    image = rand(2, 18, 20, 3)
    canvas, mask = image_pad_for_outpaint(image, *pads, feathering)
    ref_canvas, ref_mask = outpaint_reference(image.numpy(), *pads, feathering)
    np.testing.assert_array_equal(canvas.numpy(), ref_canvas)
    np.testing.assert_allclose(mask.numpy(), ref_mask, atol=1e-7)


def test_outpaint_mask_by_hand():
    """4×6 image padded 8 on the left, feathering 2: the two columns next to the new area get
    ((2 − d)/2)² = 1 and 1/4; the rest of the image 0; the new area 1."""
    _, mask = image_pad_for_outpaint(torch.zeros(1, 6, 6, 3), 8, 0, 0, 0, 2)
    assert mask.shape == (1, 6, 14)
    np.testing.assert_allclose(mask[0, 3].numpy(), [1] * 8 + [1, 0.25, 0, 0, 0, 0])
