"""Latent nodes: EmptyLatentImage, LatentUpscale, LatentUpscaleBy, LatentFromBatch."""
from __future__ import annotations

import pytest
import torch

from nodes.latent import empty_latent_image, latent_from_batch, latent_upscale, latent_upscale_by
from nodes.sd.resize import common_upscale


def batch(n: int = 4, h: int = 8, w: int = 12) -> dict:
    return {"samples": torch.randn(n, 4, h, w, generator=torch.Generator().manual_seed(0))}


def test_empty_latent_image_is_zeros_of_an_eighth_of_the_size():
    latent = empty_latent_image(width=512, height=768, batch_size=3)
    assert latent["samples"].shape == (3, 4, 96, 64)
    assert latent["samples"].dtype == torch.float32
    assert torch.count_nonzero(latent["samples"]) == 0
    assert set(latent) == {"samples"}


def test_empty_latent_image_refuses_a_width_that_is_not_a_multiple_of_8():
    with pytest.raises(ValueError, match=r"width 100 is not a multiple of 8.*use 96 or 104"):
        empty_latent_image(width=100, height=64, batch_size=1)


def test_empty_latent_image_refuses_an_empty_batch():
    with pytest.raises(ValueError, match="batch_size 0"):
        empty_latent_image(width=64, height=64, batch_size=0)


def test_latent_upscale_resizes_to_the_pixel_size_divided_by_8():
    src = batch()
    out = latent_upscale(samples=src, upscale_method="bilinear", width=192, height=128, crop="disabled")
    assert out["samples"].shape == (4, 4, 16, 24)
    expected = torch.nn.functional.interpolate(src["samples"], size=(16, 24), mode="bilinear")
    torch.testing.assert_close(out["samples"], expected)


def test_latent_upscale_zero_side_keeps_the_aspect_ratio():
    out = latent_upscale(samples=batch(h=8, w=12), upscale_method="nearest-exact", width=0, height=128,
                         crop="disabled")
    assert out["samples"].shape[2:] == (16, 24)


def test_latent_upscale_center_crop_cuts_to_the_target_aspect_first():
    src = batch(h=8, w=16)
    out = latent_upscale(samples=src, upscale_method="nearest-exact", width=64, height=64, crop="center")
    torch.testing.assert_close(out["samples"], src["samples"][:, :, :, 4:12])


def test_latent_upscale_bislerp_keeps_values_at_an_integer_factor_of_one():
    src = batch()
    out = latent_upscale(samples=src, upscale_method="bislerp", width=96, height=64, crop="disabled")
    torch.testing.assert_close(out["samples"], src["samples"], atol=1e-5, rtol=1e-5)


def test_latent_upscale_keeps_the_batch_index():
    src = dict(batch(n=2), batch_index=[5, 6])
    out = latent_upscale(samples=src, upscale_method="area", width=192, height=128, crop="disabled")
    assert out["batch_index"] == [5, 6]
    assert out["samples"].shape == (2, 4, 16, 24)


def test_latent_upscale_by_scales_each_side_and_rounds():
    src = batch(h=8, w=12)
    out = latent_upscale_by(samples=src, upscale_method="bicubic", scale_by=1.5)
    assert out["samples"].shape[2:] == (12, 18)
    torch.testing.assert_close(out["samples"], common_upscale(src["samples"], 18, 12, "bicubic"))
    assert src["samples"].shape[2:] == (8, 12)


def test_latent_from_batch_slices_and_records_the_batch_positions():
    src = batch(n=4)
    out = latent_from_batch(samples=src, batch_index=1, length=2)
    torch.testing.assert_close(out["samples"], src["samples"][1:3], rtol=0, atol=0)
    assert out["batch_index"] == [1, 2]
    assert "batch_index" not in src


def test_latent_from_batch_clamps_to_the_batch():
    out = latent_from_batch(samples=batch(n=3), batch_index=10, length=5)
    assert out["samples"].shape[0] == 1 and out["batch_index"] == [2]


def test_latent_from_batch_of_a_slice_keeps_the_original_positions():
    first = latent_from_batch(samples=batch(n=4), batch_index=1, length=3)
    second = latent_from_batch(samples=first, batch_index=1, length=2)
    assert second["batch_index"] == [2, 3]


def test_latent_from_batch_slices_a_per_image_noise_mask():
    src = dict(batch(n=4), noise_mask=torch.arange(4.0).reshape(4, 1, 1, 1).expand(4, 1, 8, 12))
    out = latent_from_batch(samples=src, batch_index=2, length=2)
    assert out["noise_mask"][:, 0, 0, 0].tolist() == [2.0, 3.0]
