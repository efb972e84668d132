"""Compositing nodes against independent numpy transcriptions of their formulas (Porter and Duff's operator
table, the blend modes as written in the W3C compositing spec and ComfyUI) and OpenCV's bilinear resize for
masks of another size."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nodes.compositing import (image_blend, image_composite_masked, join_image_with_alpha,
                               latent_composite_masked, porter_duff_image_composite, split_image_with_alpha)

cv2 = pytest.importorskip("cv2", reason="OpenCV is the test reference (pip install opencv-python-headless)")


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def bilinear(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """OpenCV's INTER_LINEAR (pixel centres at half-integers, no antialiasing), mask by mask."""
    return np.stack([cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR) for m in mask])


def paste_reference(dest, src, x, y, weight):
    """dest [B,H,W,C] with src [B,h,w,C] pasted at (x, y) through weight [B,h,w], cut at the edges."""
    out = dest.copy()
    h, w = min(src.shape[1], dest.shape[1] - y), min(src.shape[2], dest.shape[2] - x)
    m = weight[:, :h, :w, None]
    out[:, y:y + h, x:x + w] = m * src[:, :h, :w] + (1 - m) * dest[:, y:y + h, x:x + w]
    return out


# -- ImageCompositeMasked, LatentCompositeMasked ------------------------------------------------------------
def test_image_composite_without_mask_pastes_the_source_cut_at_the_edge():
    dest, src = rand(2, 10, 12, 3, seed=1), rand(2, 6, 8, 3, seed=2)
    out = image_composite_masked(destination=dest, source=src, x=7, y=6, resize_source=False)
    expected = paste_reference(dest.numpy(), src.numpy(), 7, 6, np.ones((2, 6, 8), np.float32))
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-7)


def test_image_composite_resizes_a_mask_of_another_size_to_the_source():
    dest, src, mask = rand(1, 12, 12, 3, seed=1), rand(1, 8, 6, 3, seed=2), rand(1, 3, 5, seed=3)
    out = image_composite_masked(destination=dest, source=src, x=2, y=3, resize_source=False, mask=mask)
    weight = bilinear(mask.numpy(), 8, 6)
    np.testing.assert_allclose(out.numpy(), paste_reference(dest.numpy(), src.numpy(), 2, 3, weight), atol=1e-6)


def test_image_composite_fits_source_and_mask_batches_to_the_destination():
    """As ComfyUI's repeat_to_batch_size: a shorter batch is repeated, a longer one cut."""
    dest, src, mask = rand(3, 6, 6, 3, seed=1), rand(2, 4, 4, 3, seed=2), rand(5, 4, 4, seed=3)
    out = image_composite_masked(destination=dest, source=src, x=1, y=1, resize_source=False, mask=mask)
    src_b, mask_b = src.numpy()[[0, 1, 0]], mask.numpy()[:3]
    np.testing.assert_allclose(out.numpy(), paste_reference(dest.numpy(), src_b, 1, 1, mask_b), atol=1e-6)


def test_image_composite_resize_source_stretches_it_over_the_destination():
    dest, src = rand(1, 8, 10, 3, seed=1), rand(1, 4, 5, 3, seed=2)
    out = image_composite_masked(destination=dest, source=src, x=0, y=0, resize_source=True)
    stretched = np.stack([cv2.resize(s, (10, 8), interpolation=cv2.INTER_LINEAR) for s in src.numpy()])
    np.testing.assert_allclose(out.numpy(), stretched, atol=1e-6)


def test_image_composite_gives_an_rgb_source_an_opaque_alpha_on_an_rgba_destination():
    dest, src = rand(1, 4, 4, 4, seed=1), rand(1, 2, 2, 3, seed=2)
    out = image_composite_masked(destination=dest, source=src, x=0, y=0, resize_source=False)
    assert out.shape == (1, 4, 4, 4) and torch.all(out[0, :2, :2, 3] == 1.0)
    torch.testing.assert_close(out[0, :2, :2, :3], src[0])


def test_latent_composite_masked_works_in_latent_pixels_of_eight():
    dest, src = {"samples": torch.randn(1, 4, 8, 8), "batch_index": [5]}, {"samples": torch.randn(1, 4, 3, 3)}
    mask = rand(1, 24, 24, seed=4)  # image-sized: resized to the source latent's 3×3
    out = latent_composite_masked(destination=dest, source=src, x=23, y=40, resize_source=False, mask=mask)
    weight = bilinear(mask.numpy(), 3, 3)
    d, s = dest["samples"].numpy().transpose(0, 2, 3, 1), src["samples"].numpy().transpose(0, 2, 3, 1)
    expected = paste_reference(d, s, 2, 5, weight).transpose(0, 3, 1, 2)  # x 23 → 2, y 40 → 5
    np.testing.assert_allclose(out["samples"].numpy(), expected, atol=1e-6)
    assert out["batch_index"] == [5]


def test_latent_composite_masked_refuses_latents_of_different_models():
    with pytest.raises(ValueError, match=r"destination \(1, 4, 8, 8\) and source \(1, 16, 4, 4\) have 4 and 16 "
                                         "channels"):
        latent_composite_masked(destination={"samples": torch.zeros(1, 4, 8, 8)},
                                source={"samples": torch.zeros(1, 16, 4, 4)}, x=0, y=0, resize_source=False)


# -- ImageBlend ------------------------------------------------------------------------------------------------
def blend_reference(a, b, f, mode):
    """The blend modes: W3C compositing spec for multiply/screen/overlay/soft-light, ComfyUI for difference
    (a − b, signed), then a·(1 − f) + B(a, b)·f clamped."""
    def d(x):
        return np.where(x <= 0.25, ((16 * x - 12) * x + 4) * x, np.sqrt(x))

    blended = {
        "normal": b,
        "multiply": a * b,
        "screen": a + b - a * b,
        "overlay": np.where(a <= 0.5, a * 2 * b, 1 - 2 * (1 - a) * (1 - b)),  # hard light with roles swapped
        "soft_light": np.where(b <= 0.5, a - (1 - 2 * b) * a * (1 - a), a + (2 * b - 1) * (d(a) - a)),
        "difference": a - b,
    }[mode]
    return np.clip(a * (1 - f) + blended * f, 0, 1)


@pytest.mark.parametrize("mode", ["normal", "multiply", "screen", "overlay", "soft_light", "difference"])
def test_image_blend_matches_the_blend_mode_formulas(mode):
    a, b = rand(2, 5, 6, 3, seed=1), rand(2, 5, 6, 3, seed=2)
    out = image_blend(image1=a, image2=b, blend_factor=0.7, blend_mode=mode)
    np.testing.assert_allclose(out.numpy(), blend_reference(a.numpy(), b.numpy(), 0.7, mode), atol=1e-6)


def test_image_blend_uses_a_single_image_for_every_image_of_the_other_batch():
    a, b = rand(3, 4, 4, 3, seed=1), rand(1, 4, 4, 3, seed=2)
    out = image_blend(image1=a, image2=b, blend_factor=0.5, blend_mode="multiply")
    np.testing.assert_allclose(out.numpy(), blend_reference(a.numpy(), b.numpy(), 0.5, "multiply"), atol=1e-6)


def test_image_blend_refuses_batches_that_do_not_combine_naming_both_shapes():
    with pytest.raises(ValueError, match=r"image1 \(2, 4, 4, 3\) and image2 \(3, 4, 4, 3\) have batches of 2 and 3"):
        image_blend(image1=rand(2, 4, 4, 3), image2=rand(3, 4, 4, 3), blend_factor=0.5, blend_mode="normal")


def test_image_blend_resizes_image2_to_image1():
    out = image_blend(image1=rand(1, 8, 6, 3), image2=rand(1, 4, 4, 3), blend_factor=1.0, blend_mode="normal")
    assert out.shape == (1, 8, 6, 3)


# -- Porter-Duff ----------------------------------------------------------------------------------------------
CLASSIC = {  # Porter & Duff (1984): (F_source, F_destination) as functions of the two alphas
    "CLEAR": lambda sa, da: (0 * sa, 0 * da), "SRC": lambda sa, da: (1 + 0 * sa, 0 * da),
    "DST": lambda sa, da: (0 * sa, 1 + 0 * da), "SRC_OVER": lambda sa, da: (1 + 0 * sa, 1 - sa),
    "DST_OVER": lambda sa, da: (1 - da, 1 + 0 * da), "SRC_IN": lambda sa, da: (da, 0 * da),
    "DST_IN": lambda sa, da: (0 * sa, sa), "SRC_OUT": lambda sa, da: (1 - da, 0 * da),
    "DST_OUT": lambda sa, da: (0 * sa, 1 - sa), "SRC_ATOP": lambda sa, da: (da, 1 - sa),
    "DST_ATOP": lambda sa, da: (1 - da, sa), "XOR": lambda sa, da: (1 - da, 1 - sa),
}


def porter_duff_reference(cs, ms, cd, md, mode):
    """Straight colours cs/cd [..., C], masks ms/md [..., 1] (1 = transparent) → (colour, mask)."""
    sa, da = 1 - ms, 1 - md
    s, d = cs * sa, cd * da
    if mode in CLASSIC:
        fa, fb = CLASSIC[mode](sa, da)
        alpha, colour = fa * sa + fb * da, fa * s + fb * d
    else:
        union = sa + da - sa * da
        alpha, colour = {
            "ADD": (np.clip(sa + da, 0, 1), np.clip(s + d, 0, 1)),
            "DARKEN": (union, (1 - da) * s + (1 - sa) * d + np.minimum(s, d)),
            "LIGHTEN": (union, (1 - da) * s + (1 - sa) * d + np.maximum(s, d)),
            "MULTIPLY": (sa * da, s * d),
            "SCREEN": (union, s + d - s * d),
            "OVERLAY": (union, np.where(2 * d < da, 2 * s * d, sa * da - 2 * (da - s) * (sa - d))),
        }[mode]
    safe = np.where(alpha > 1e-5, alpha, 1)
    colour = np.where(alpha > 1e-5, colour / safe, 0)
    return np.clip(colour, 0, 1), 1 - alpha


@pytest.mark.parametrize("mode", ["ADD", "CLEAR", "DARKEN", "DST", "DST_ATOP", "DST_IN", "DST_OUT", "DST_OVER",
                                  "LIGHTEN", "MULTIPLY", "OVERLAY", "SCREEN", "SRC", "SRC_ATOP", "SRC_IN",
                                  "SRC_OUT", "SRC_OVER", "XOR"])
def test_porter_duff_matches_the_operator_table(mode):
    src, dst = rand(2, 5, 6, 3, seed=1), rand(2, 5, 6, 3, seed=2)
    ms, md = rand(2, 5, 6, seed=3), rand(2, 5, 6, seed=4)
    ms[0, 0, :3] = 1.0  # fully transparent source pixels
    md[0, 0, :2] = 1.0  # and destination pixels: CLEAR/IN/OUT leave alpha 0 there
    image, mask = porter_duff_image_composite(source=src, source_alpha=ms, destination=dst, destination_alpha=md,
                                              mode=mode)
    colour, alpha_mask = porter_duff_reference(src.numpy(), ms.numpy()[..., None], dst.numpy(), md.numpy()[..., None],
                                               mode)
    np.testing.assert_allclose(image.numpy(), colour, atol=2e-6)
    np.testing.assert_allclose(mask.numpy(), alpha_mask[..., 0], atol=2e-6)


def test_porter_duff_takes_the_smallest_batch_and_the_destination_size():
    image, mask = porter_duff_image_composite(source=rand(3, 4, 4, 3), source_alpha=rand(2, 2, 2),
                                              destination=rand(4, 8, 8, 3), destination_alpha=rand(4, 8, 8),
                                              mode="SRC_OVER")
    assert image.shape == (2, 8, 8, 3) and mask.shape == (2, 8, 8)


# -- alpha ----------------------------------------------------------------------------------------------------
def test_split_image_with_alpha_gives_colours_and_one_minus_alpha():
    rgba = rand(2, 3, 4, 4)
    rgb, mask = split_image_with_alpha(image=rgba)
    torch.testing.assert_close(rgb, rgba[..., :3], rtol=0, atol=0)
    torch.testing.assert_close(mask, 1 - rgba[..., 3], rtol=0, atol=0)


def test_split_image_without_alpha_gives_an_empty_mask():
    _, mask = split_image_with_alpha(image=rand(1, 3, 4, 3))
    assert mask.shape == (1, 3, 4) and torch.count_nonzero(mask) == 0


def test_join_image_with_alpha_resizes_the_mask_and_inverts_it():
    image, mask = rand(2, 6, 8, 3, seed=1), rand(3, 3, 4, seed=2)
    out = join_image_with_alpha(image=image, alpha=mask)
    assert out.shape == (2, 6, 8, 4)
    torch.testing.assert_close(out[..., :3], image)
    np.testing.assert_allclose(out[..., 3].numpy(), 1 - bilinear(mask.numpy()[:2], 6, 8), atol=1e-6)


def test_split_then_join_gives_the_image_back():
    rgba = rand(2, 5, 5, 4)
    torch.testing.assert_close(join_image_with_alpha(*split_image_with_alpha(image=rgba)), rgba, rtol=0, atol=1e-7)
