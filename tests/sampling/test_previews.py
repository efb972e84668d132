"""Live previews: a fixed 4→3 linear projection of the latent (ComfyUI's latent_rgb_factors), as uint8."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nodes.sd.previews import LATENT_RGB, StepInfo, latent_to_rgb


def test_preview_is_the_projection_mapped_from_minus_one_one_to_bytes():
    latent = torch.zeros(1, 4, 2, 3)
    latent[0, 0] = 1.0  # only channel 0: RGB = its factor row (0.3512, 0.2297, 0.3227)
    image = latent_to_rgb(latent, "sd1")
    assert image.shape == (2, 3, 3) and image.dtype == np.uint8
    expected = [int((v + 1) / 2 * 255) for v in (0.3512, 0.2297, 0.3227)]
    assert image[1, 2].tolist() == expected


def test_sdxl_preview_adds_its_bias():
    image = latent_to_rgb(torch.zeros(4, 1, 1), "sdxl")
    assert image[0, 0].tolist() == [int((b + 1) / 2 * 255) for b in (0.1084, -0.0175, -0.0011)]


def test_preview_clamps_out_of_range_colours():
    image = latent_to_rgb(torch.full((1, 4, 1, 2), 50.0) * torch.tensor([1.0, 0, 0, -1.0]).view(1, 4, 1, 1), "sd1")
    assert set(image.flatten().tolist()) <= {0, 255}


def test_every_family_has_a_projection():
    assert set(LATENT_RGB) == {"sd1", "sd2", "sdxl", "sdxl_refiner"}


def test_preview_uses_the_first_image_of_a_batch():
    latent = torch.randn(3, 4, 2, 2)
    assert np.array_equal(latent_to_rgb(latent, "sd1"), latent_to_rgb(latent[0], "sd1"))


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="no preview projection for family 'sd9'"):
        latent_to_rgb(torch.zeros(4, 2, 2), "sd9")
    with pytest.raises(ValueError, match=r"expected a latent \[B, 4, H, W\]"):
        latent_to_rgb(torch.zeros(16, 2, 2), "sd1")


def test_step_info_renders_its_denoised_latent():
    denoised = torch.randn(1, 4, 3, 5)
    info = StepInfo(step=0, total=1, sigma=1.0, x=torch.zeros(1, 4, 3, 5), denoised=denoised, family="sdxl")
    assert np.array_equal(info.preview(), latent_to_rgb(denoised, "sdxl"))
