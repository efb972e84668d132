"""Stable Diffusion's discrete noise schedule and what a sampler needs from it.

The U-Net was trained on 1000 discrete timesteps with betas = linspace(√β_start, √β_end, 1000)².
Samplers work in "sigma space" (x_σ = x_0 + σ·ε, Karras et al. 2022), so this module converts
between the two and between the U-Net's raw output (ε or v) and the denoised estimate x̂_0:

    σ_t = √((1 − ᾱ_t) / ᾱ_t)            ᾱ_t = Π_{s ≤ t} (1 − β_s)
    U-Net input   x / √(σ² + σ_d²)       (σ_d = 1: the variance-preserving scaling)
    eps:  x̂_0 = x − σ·ε̂
    v:    x̂_0 = x·σ_d²/(σ² + σ_d²) − v̂·σ·σ_d/√(σ² + σ_d²)

Conventions follow ComfyUI's `ModelSamplingDiscrete` (same float64 schedule stored as float32,
σ → timestep as the nearest log σ, timestep → σ by log-linear interpolation), so that the same
seed gives the same numbers.
"""
from __future__ import annotations

import math
from typing import Literal

import torch

Prediction = Literal["eps", "v"]


def _per_sample(sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a [B] (or scalar) sigma so it broadcasts over a [B, C, H, W] tensor."""
    sigma = torch.as_tensor(sigma, device=like.device)
    if sigma.ndim == 0:
        return sigma
    return sigma.view(sigma.shape[:1] + (1,) * (like.ndim - 1))


class ModelSamplingDiscrete:
    """The discrete VP schedule of SD1.x/SD2.x/SDXL seen from sigma space.

    Args:
        prediction: what the U-Net predicts: "eps" (noise) or "v" (velocity, SD2-v models).
        linear_start, linear_end: β at the first and last timestep (SD: 0.00085 and 0.012).
        timesteps: number of training timesteps (SD: 1000).
    """

    sigma_data = 1.0

    def __init__(
        self,
        prediction: Prediction = "eps",
        linear_start: float = 0.00085,
        linear_end: float = 0.012,
        timesteps: int = 1000,
    ) -> None:
        if prediction not in ("eps", "v"):
            raise ValueError(f"ModelSamplingDiscrete: prediction must be 'eps' or 'v', got {prediction!r}")
        if timesteps < 2:
            raise ValueError(f"ModelSamplingDiscrete: timesteps must be at least 2, got {timesteps}")
        self.prediction: Prediction = prediction
        self.linear_start = linear_start
        self.linear_end = linear_end
        betas = torch.linspace(linear_start**0.5, linear_end**0.5, timesteps, dtype=torch.float64) ** 2
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        sigmas = ((1.0 - alphas_cumprod) / alphas_cumprod) ** 0.5
        self.alphas_cumprod = alphas_cumprod.float()
        self.sigmas = sigmas.float()
        self.log_sigmas = sigmas.log().float()

    def __repr__(self) -> str:
        return (f"ModelSamplingDiscrete(prediction={self.prediction!r}, linear_start={self.linear_start}, "
                f"linear_end={self.linear_end}, timesteps={len(self.sigmas)})")

    def to(self, device: torch.device | str) -> "ModelSamplingDiscrete":
        """Keep the tables on `device` (where the sampling loop runs); returns self."""
        self.sigmas = self.sigmas.to(device)
        self.log_sigmas = self.log_sigmas.to(device)
        self.alphas_cumprod = self.alphas_cumprod.to(device)
        return self

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    # -- time conversions -------------------------------------------------------------------
    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """The training timestep whose log σ is nearest to log `sigma` (int64, same shape)."""
        sigma = torch.as_tensor(sigma)
        log_sigma = sigma.log().to(self.log_sigmas.device)
        distance = (log_sigma - self.log_sigmas[:, None]).abs()
        return distance.argmin(dim=0).view(sigma.shape).to(sigma.device)

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        """σ at a (fractional) timestep: linear interpolation of log σ between neighbours."""
        timestep = torch.as_tensor(timestep)
        t = timestep.float().to(self.log_sigmas.device).clamp(0, len(self.sigmas) - 1)
        low, high, w = t.floor().long(), t.ceil().long(), t.frac()
        log_sigma = (1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]
        return log_sigma.exp().to(timestep.device)

    def percent_to_sigma(self, percent: float) -> float:
        """σ reached after `percent` (0..1) of the schedule; 0 → "before the start", 1 → 0."""
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        return self.sigma(torch.tensor((1.0 - percent) * 999.0)).item()

    # -- model input / output ---------------------------------------------------------------
    def calculate_input(self, sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Scale a sigma-space latent to the U-Net's unit-variance input: x / √(σ² + σ_d²)."""
        sigma = _per_sample(sigma, x)
        return x / (sigma**2 + self.sigma_data**2) ** 0.5

    def calculate_denoised(self, sigma: torch.Tensor, model_output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Turn the U-Net's raw output (ε̂ or v̂) at noisy input `x` into the denoised x̂_0."""
        sigma = _per_sample(sigma, model_output)
        if self.prediction == "eps":
            return x - model_output * sigma
        sd2 = self.sigma_data**2
        return x * sd2 / (sigma**2 + sd2) - model_output * sigma * self.sigma_data / (sigma**2 + sd2) ** 0.5

    def noise_scaling(self, sigma: torch.Tensor, noise: torch.Tensor, latent_image: torch.Tensor,
                      max_denoise: bool = False) -> torch.Tensor:
        """The sampler's starting point: latent + noise·σ, or noise·√(1 + σ²) for a full denoise.

        √(1 + σ²) is the total standard deviation of an SD latent (unit variance) noised to σ:
        it is what a pure-noise start must have (ComfyUI's `max_denoise` rule).
        """
        sigma = _per_sample(sigma, noise)
        if max_denoise:
            noise = noise * torch.sqrt(1.0 + sigma**2.0)
        else:
            noise = noise * sigma
        return noise + latent_image

    def inverse_noise_scaling(self, sigma: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """Identity for the VP/VE parametrisation (kept so the sampling loop reads like ComfyUI's)."""
        return latent

    def is_max_denoise(self, sigmas: torch.Tensor) -> bool:
        """True when a schedule starts at (or above) σ_max, i.e. from pure noise."""
        sigma_max, first = float(self.sigma_max), float(sigmas[0])
        return math.isclose(sigma_max, first, rel_tol=1e-05) or first > sigma_max
