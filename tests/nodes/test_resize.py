"""Resampling with ComfyUI's common_upscale semantics (LatentUpscale / ImageScale and their "By" forms)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from nodes.sd.resize import (bislerp, common_upscale, lanczos, scale_image, scale_image_by, scale_latent,
                             scale_latent_by, slerp_vectors)


def grid(h: int, w: int, c: int = 1) -> torch.Tensor:
    return torch.arange(h * w * c, dtype=torch.float32).reshape(1, c, h, w)


# -- torch interpolation modes ----------------------------------------------------------------------
def test_nearest_exact_doubles_each_value_into_a_2x2_block():
    out = common_upscale(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]), 4, 4, "nearest-exact")
    assert out.tolist() == [[[[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]]]


def test_bilinear_samples_at_pixel_centres_without_aligning_corners():
    out = common_upscale(torch.tensor([[[[0.0, 1.0]]]]), 4, 1, "bilinear")
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([0.0, 0.25, 0.75, 1.0]))


def test_area_downscale_is_the_mean_of_each_block():
    x = torch.randn(2, 4, 8, 12, generator=torch.Generator().manual_seed(0))
    out = common_upscale(x, 4, 2, "area")
    expected = x.reshape(2, 4, 2, 4, 4, 3).mean(dim=(3, 5))
    torch.testing.assert_close(out, expected)


def test_bicubic_keeps_a_constant_and_overshoots_at_a_step():
    const = common_upscale(torch.full((1, 1, 3, 3), 0.7), 7, 5, "bicubic")
    torch.testing.assert_close(const, torch.full((1, 1, 5, 7), 0.7))
    step = common_upscale(torch.tensor([[[[0.0, 0.0, 1.0, 1.0]]]]), 16, 1, "bicubic")
    assert step.min() < 0 and step.max() > 1  # the cubic kernel's ringing, unlike bilinear


def test_center_crop_keeps_the_middle_of_a_wider_input():
    x = grid(4, 8)
    out = common_upscale(x, 4, 4, "nearest-exact", "center")
    torch.testing.assert_close(out, x[..., 2:6])


def test_center_crop_keeps_the_middle_of_a_taller_input():
    x = grid(9, 3)
    out = common_upscale(x, 3, 3, "nearest-exact", "center")
    torch.testing.assert_close(out, x[:, :, 3:6, :])


def test_center_crop_uses_comfyuis_rounding_for_odd_margins():
    x = grid(4, 7)  # aspect 7/4 to 1: crop round((7 - 4) / 2) = 2 columns on each side
    torch.testing.assert_close(common_upscale(x, 2, 2, "nearest-exact", "center"),
                               common_upscale(x[..., 2:5], 2, 2, "nearest-exact"))


def test_disabled_crop_squashes_the_whole_input():
    x = grid(4, 8)
    torch.testing.assert_close(common_upscale(x, 4, 4, "area", "disabled"), F.avg_pool2d(x, (1, 2)))


# -- bislerp --------------------------------------------------------------------------------------
def test_bislerp_of_identical_neighbours_preserves_them():
    v = torch.tensor([0.3, -1.2, 2.0, 0.5])
    x = v.reshape(1, 4, 1, 1).expand(2, 4, 3, 5).contiguous()
    out = bislerp(x, 11, 7)
    torch.testing.assert_close(out, v.reshape(1, 4, 1, 1).expand(2, 4, 7, 11))


def test_bislerp_turns_directions_along_the_great_circle_and_interpolates_lengths():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 3.0])  # 90 degrees apart, lengths 1 and 3
    x = torch.stack([a, b], dim=-1).reshape(1, 2, 1, 2)
    out = bislerp(x, 4, 1)[0, :, 0].T  # width 2 -> 4 samples the source at 0 (clamped), 0.25, 0.75, 1 (clamped)

    def expected(t: float) -> list[float]:
        angle, length = t * math.pi / 2, (1 - t) * 1 + t * 3
        return [length * math.cos(angle), length * math.sin(angle)]

    torch.testing.assert_close(out, torch.tensor([expected(0), expected(0.25), expected(0.75), expected(1)]))


def test_bislerp_keeps_lengths_that_bilinear_interpolation_shrinks():
    x = torch.randn(1, 4, 6, 6, generator=torch.Generator().manual_seed(2))
    x = x / x.norm(dim=1, keepdim=True)  # unit vectors in every pixel
    slerped = common_upscale(x, 15, 15, "bislerp").norm(dim=1)
    linear = common_upscale(x, 15, 15, "bilinear").norm(dim=1)
    torch.testing.assert_close(slerped, torch.ones_like(slerped))
    assert linear.min() < 0.9  # averaging unit vectors shortens them


def test_bislerp_blends_opposite_vectors_linearly_and_zero_vectors_without_nan():
    a, b = torch.tensor([[2.0, 0.0], [0.0, 0.0]]), torch.tensor([[-2.0, 0.0], [0.0, 4.0]])
    out = slerp_vectors(a, b, torch.tensor([[0.25], [0.5]]))
    torch.testing.assert_close(out[0], 0.75 * a[0] + 0.25 * b[0])  # opposite: linear
    torch.testing.assert_close(out[1], torch.tensor([0.0, 2.0 * math.sin(math.pi / 4)]))  # from zero: no NaN


def test_bislerp_downscales_and_keeps_the_dtype():
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(3)).half()
    out = common_upscale(x, 5, 9, "bislerp")
    assert out.shape == (1, 4, 9, 5) and out.dtype == torch.float16 and torch.isfinite(out).all()


# -- lanczos --------------------------------------------------------------------------------------
def test_lanczos_equals_pillows_resize_of_the_8_bit_image():
    rng = np.random.default_rng(4)
    pixels = rng.integers(0, 256, (2, 9, 13, 3), dtype=np.uint8)
    x = torch.from_numpy(pixels.astype(np.float32) / 255.0).movedim(-1, 1)
    out = common_upscale(x, 20, 17, "lanczos")
    for i in range(2):
        ref = np.asarray(Image.fromarray(pixels[i]).resize((20, 17), Image.Resampling.LANCZOS))
        torch.testing.assert_close(out[i].movedim(0, -1), torch.from_numpy(ref.astype(np.float32) / 255.0))


def test_lanczos_clips_to_0_1_and_quantises_to_8_bits_as_comfyui():
    x = torch.tensor([[[[-0.5, 0.3, 1.7, 0.5]]]])
    out = lanczos(x, 4, 1)  # same size: Pillow leaves the pixels as they are
    torch.testing.assert_close(out, torch.tensor([[[[0.0, 76 / 255, 1.0, 127 / 255]]]]))


def test_lanczos_handles_grey_and_many_channel_inputs():
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, (5, 8, 8), dtype=np.uint8)  # 5 channels, resized one by one
    x = torch.from_numpy(pixels.astype(np.float32) / 255.0)[None]
    out = lanczos(x, 3, 6)
    for c in range(5):
        ref = np.asarray(Image.fromarray(pixels[c]).resize((3, 6), Image.Resampling.LANCZOS))
        torch.testing.assert_close(out[0, c], torch.from_numpy(ref.astype(np.float32) / 255.0))
    assert lanczos(x[:, :1], 3, 6).shape == (1, 1, 6, 3)
    torch.testing.assert_close(lanczos(x[:, :1], 3, 6), out[:, :1])


# -- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    (dict(method="linear"),
     "upscale_method 'linear' is not one of nearest-exact, bilinear, area, bicubic, bislerp, lanczos"),
    (dict(crop="middle"), "crop 'middle' is not one of disabled, center"),
    (dict(width=0), "width must be a whole number of at least 1, not 0"),
    (dict(height=2.5), "height must be a whole number of at least 1, not 2.5"),
    (dict(samples=torch.zeros(3, 4, 4)), r"samples must be a tensor \[B,C,H,W\]; got \(3, 4, 4\)"),
])
def test_bad_arguments_are_named(kwargs, message):
    args = dict(samples=torch.zeros(1, 3, 4, 4), width=8, height=8, method="bilinear", crop="disabled") | kwargs
    with pytest.raises(ValueError, match=message):
        common_upscale(**args)


# -- node semantics ----------------------------------------------------------------------------------
def test_image_scale_resizes_an_image_batch_in_bhwc():
    image = torch.rand(2, 6, 4, 3)
    out = scale_image(image, "nearest-exact", 8, 12)
    assert out.shape == (2, 12, 8, 3)
    torch.testing.assert_close(out[:, ::2, ::2], image)


def test_image_scale_with_a_zero_side_keeps_the_aspect_ratio_and_both_zero_is_a_no_op():
    image = torch.rand(1, 30, 40, 3)
    assert scale_image(image, "bilinear", 0, 15).shape == (1, 15, 20, 3)
    assert scale_image(image, "bilinear", 10, 0).shape == (1, 8, 10, 3)  # round(30 * 10 / 40) = 8
    assert scale_image(image, "bilinear", 0, 0) is image


def test_image_scale_by_rounds_each_side():
    assert scale_image_by(torch.rand(1, 10, 7, 3), "area", 1.5).shape == (1, 15, 10, 3)  # round(10.5) = 10


def test_latent_upscale_takes_pixel_sizes_of_at_least_64_and_divides_by_8():
    latent = torch.randn(1, 4, 8, 12)
    assert scale_latent(latent, "bislerp", 192, 128).shape == (1, 4, 16, 24)
    assert scale_latent(latent, "nearest-exact", 0, 96).shape == (1, 4, 12, 18)  # width 144 px
    assert scale_latent(latent, "bilinear", 16, 16).shape == (1, 4, 8, 8)  # raised to 64 px
    assert scale_latent(latent, "bilinear", 0, 0) is latent


def test_latent_upscale_by_scales_the_latent_sides():
    latent = torch.randn(1, 4, 8, 12)
    out = scale_latent_by(latent, "nearest-exact", 1.5)
    assert out.shape == (1, 4, 12, 18)
