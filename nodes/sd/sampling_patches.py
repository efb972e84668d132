"""Model-sampling patches: the noise schedule and prediction type a model samples with, as ComfyUI's
ModelSamplingDiscrete and ModelSamplingContinuousEDM nodes choose them (an object patch on the MODEL
value: `DiffusionModel.with_model_sampling`).

edm_playground_v2.5 also changes the latent format: Playground v2.5 normalises each latent channel
with its own mean and standard deviation, z = (x − μ)·0.5/σ.
"""
from __future__ import annotations

from typing import Any

import torch

from .model_sampling import (ModelSampling, ModelSamplingContinuousEDM, ModelSamplingCosmosRFlow,
                             ModelSamplingDiscrete, ModelSamplingDiscreteDistilled)

DISCRETE_SAMPLINGS = ("eps", "v_prediction", "lcm", "x0", "img_to_img")
CONTINUOUS_EDM_SAMPLINGS = ("v_prediction", "edm", "edm_playground_v2.5", "eps", "cosmos_rflow")
_PREDICTION = {"eps": "eps", "v_prediction": "v", "lcm": "lcm", "x0": "x0", "img_to_img": "img_to_img",
               "edm": "edm", "edm_playground_v2.5": "edm"}


class PlaygroundLatentFormat:
    """Playground v2.5's latent normalisation (per-channel mean and standard deviation, scale 0.5)."""

    scale_factor = 0.5
    mean = (-1.6574, 1.886, -1.383, 2.5155)
    std = (8.4927, 5.9022, 6.5498, 5.2299)

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.mean, device=like.device, dtype=like.dtype).view(1, 4, 1, 1)
        std = torch.tensor(self.std, device=like.device, dtype=like.dtype).view(1, 4, 1, 1)
        return mean, std

    def process_in(self, latent: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(latent)
        return (latent - mean) * self.scale_factor / std

    def process_out(self, latent: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(latent)
        return latent * std / self.scale_factor + mean


def discrete_sampling(current: Any, sampling: str, zsnr: bool) -> ModelSampling:
    """ModelSamplingDiscrete's schedule: the model's β range with ``sampling``'s prediction type
    (lcm: on the 50-step distilled subset), rescaled to zero terminal SNR if ``zsnr``."""
    if sampling not in DISCRETE_SAMPLINGS:
        raise ValueError(f"sampling must be one of {', '.join(DISCRETE_SAMPLINGS)}, got {sampling!r}")
    start = getattr(current, "linear_start", 0.00085)
    end = getattr(current, "linear_end", 0.012)
    kind = ModelSamplingDiscreteDistilled if sampling == "lcm" else ModelSamplingDiscrete
    return kind(_PREDICTION[sampling], start, end, zsnr=zsnr)


def continuous_edm_sampling(sampling: str, sigma_max: float, sigma_min: float) -> tuple[ModelSampling, Any]:
    """ModelSamplingContinuousEDM's (schedule, latent format or None): log-linear sigmas from sigma_min
    to sigma_max; σ_data 0.5 for the edm kinds, 1 otherwise."""
    if sampling not in CONTINUOUS_EDM_SAMPLINGS:
        raise ValueError(f"sampling must be one of {', '.join(CONTINUOUS_EDM_SAMPLINGS)}, got {sampling!r}")
    if sampling == "cosmos_rflow":
        return ModelSamplingCosmosRFlow(sigma_min, sigma_max, 1.0), None
    sigma_data = 0.5 if sampling.startswith("edm") else 1.0
    latent_format = PlaygroundLatentFormat() if sampling == "edm_playground_v2.5" else None
    return ModelSamplingContinuousEDM(_PREDICTION[sampling], sigma_min, sigma_max, sigma_data), latent_format
