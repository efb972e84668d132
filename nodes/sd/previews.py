"""Cheap live previews: a fixed linear map from the 4 latent channels to RGB.

For Stable Diffusion's own VAE the projection is, per model family, the least-squares fit published
in ComfyUI's `comfy/latent_formats.py` (`SD15.latent_rgb_factors`, `SDXL.latent_rgb_factors` and
`latent_rgb_factors_bias`); it maps a latent in the U-Net's (scaled) space to RGB in −1…1. Used as
data (12 numbers each), not code. A checkpoint whose VAE has another architecture (the shipped demo
model's tiny one) gets a projection fitted to its own VAE (preview_fit.py): the SD factors would
give it wrong colours. A preview costs one 4×3 matrix product per latent
pixel: nothing next to a U-Net step.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

_SD15_FACTORS = (  # rows: latent channel; columns: R, G, B
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)
_SDXL_FACTORS = (
    (0.3651, 0.4232, 0.4341),
    (-0.2533, -0.0042, 0.1068),
    (0.1076, 0.1111, -0.0362),
    (-0.3165, -0.2492, -0.2188),
)
_SDXL_BIAS = (0.1084, -0.0175, -0.0011)

Projection = tuple[tuple[tuple[float, ...], ...], tuple[float, ...]]
"""(factors: one row of R, G, B weights per latent channel, bias: R, G, B)."""

LATENT_RGB: dict[str, Projection] = {
    "sd1": (_SD15_FACTORS, (0.0, 0.0, 0.0)),
    "sd2": (_SD15_FACTORS, (0.0, 0.0, 0.0)),  # SD2 shares SD1's VAE
    "sdxl": (_SDXL_FACTORS, _SDXL_BIAS),
    "sdxl_refiner": (_SDXL_FACTORS, _SDXL_BIAS),
}


def latent_to_rgb(latent: torch.Tensor, family: str, projection: Projection | None = None) -> np.ndarray:
    """Preview of the first image of a latent in U-Net space ([B, 4, H, W] or [4, H, W]), with
    ``projection`` (e.g. fitted to the checkpoint's VAE), else the family's published one.

    Returns a uint8 array [H, W, 3] (one pixel per latent pixel, i.e. 1/8 of the image size).
    """
    if projection is None:
        try:
            projection = LATENT_RGB[family]
        except KeyError:
            raise ValueError(f"latent_to_rgb: no preview projection for family {family!r}; "
                             f"known: {', '.join(LATENT_RGB)}") from None
    factors, bias = projection
    if latent.ndim == 4:
        latent = latent[0]
    if latent.ndim != 3 or latent.shape[0] != len(factors):
        raise ValueError(f"latent_to_rgb: expected a latent [B, {len(factors)}, H, W] or [{len(factors)}, H, W], "
                         f"got shape {tuple(latent.shape)}")
    weight = torch.tensor(factors, dtype=torch.float32)
    rgb = torch.einsum("chw,cr->hwr", latent.detach().float().cpu(), weight) + torch.tensor(bias)
    return ((rgb + 1.0) / 2.0).clamp(0, 1).mul(255).to(torch.uint8).numpy()


@dataclass
class StepInfo:
    """What a sampling loop reports after each step (the `callback` argument of `ksampler.sample`).

    step: 0-based step index; total: number of steps; sigma: the step's noise level;
    x: the current latent and denoised: the model's denoised estimate, both in U-Net space.
    `preview()` renders `denoised` to a small RGB image on request.
    """

    step: int
    total: int
    sigma: float
    x: torch.Tensor
    denoised: torch.Tensor
    family: str = field(default="sd1")
    projection: Projection | Callable[[], Projection] | None = None
    """The model's own preview projection, or what computes it the first time it is needed (None:
    the family's published one)."""

    def preview(self) -> np.ndarray:
        """uint8 [H/8, W/8, 3] image of the denoised estimate (first image of the batch)."""
        projection = self.projection() if callable(self.projection) else self.projection
        return latent_to_rgb(self.denoised, self.family, projection)


StepCallback = Callable[[StepInfo], None]
