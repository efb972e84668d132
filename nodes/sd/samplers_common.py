"""What the sampler families share: the math helpers, the noise they inject, and the hooks into the
guided denoiser (its model sampling, and the unconditional prediction that CFG++ samplers read
through a post-CFG model-patch hook).

Notation: x is a latent in "sigma space" (x = x_0 + σ·ε); λ = −log σ is the half-log-SNR, h the
step in λ. For the discrete VP models of SD1/SD2/SDXL, ComfyUI's α_t = σ_t·e^(λ_t) is 1, so the
exponential-integrator rules below are written without it.
"""
from __future__ import annotations

from typing import Callable

import torch

from .model_sampling import ModelSamplingDiscrete
from .noise import BrownianTreeNoiseSampler, default_noise_sampler
from .patches import NO_PATCHES

Denoiser = Callable[..., torch.Tensor]
SamplerCallback = Callable[[dict], None]


# -- helpers named for the math ---------------------------------------------------------------
def bcast(sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor | float:
    """A [B] sigma reshaped to broadcast over x; scalars unchanged."""
    if isinstance(sigma, torch.Tensor) and sigma.ndim == 1:
        return sigma.view(-1, *([1] * (x.ndim - 1)))
    return sigma


def to_d(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """dx/dσ of the probability-flow ODE: (x − D(x; σ)) / σ."""
    return (x - denoised) / bcast(sigma, x)


def ancestral_step(sigma_from: torch.Tensor, sigma_to: torch.Tensor, eta: float = 1.0):
    """Split a step σ_from → σ_to into a deterministic move to σ_down plus fresh noise of size σ_up.

    σ_down² + σ_up² = σ_to²; eta = 1 re-noises as much as DDPM's posterior, eta = 0 not at all.
    """
    if not eta:
        return sigma_to, 0.0
    sigma_up = min(sigma_to, eta * (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5)
    sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
    return sigma_down, sigma_up


def half_log_snr(sigma: torch.Tensor) -> torch.Tensor:
    """λ = −log σ."""
    return sigma.log().neg()


def sigma_at(lam: torch.Tensor) -> torch.Tensor:
    """σ = e^(−λ)."""
    return lam.neg().exp()


def dpm_solver_1(x: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """First-order DPM-Solver++ (= DDIM) step σ → σ_next: x' = (σ'/σ)·x − (e^(−h) − 1)·D."""
    h = half_log_snr(sigma_next) - half_log_snr(sigma)
    return (sigma_next / sigma) * x - torch.expm1(-h) * denoised


def h_phi_1(h: torch.Tensor) -> torch.Tensor:
    """h·φ₁(h) = e^h − 1 (exponential-integrator weight)."""
    return torch.expm1(h)


def h_phi_2(h: torch.Tensor) -> torch.Tensor:
    """h·φ₂(h) = (e^h − 1 − h)/h."""
    return (torch.expm1(h) - h) / h


# -- the sampling loop's plumbing ---------------------------------------------------------------
def report(callback: SamplerCallback | None, x, i, sigma, sigma_hat, denoised) -> None:
    if callback is not None:
        callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma_hat, "denoised": denoised})


def ancestral_noise(x: torch.Tensor, extra_args: dict, noise_sampler):
    """The seeded per-step noise of ancestral samplers (see noise.default_noise_sampler)."""
    return noise_sampler if noise_sampler is not None else default_noise_sampler(x, seed=extra_args.get("seed"))


def brownian_noise(x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict, noise_sampler):
    """The seeded Brownian-tree noise of SDE samplers over the schedule's (σ_min, σ_max)."""
    if noise_sampler is not None:
        return noise_sampler
    sigma_min, sigma_max = sigmas[sigmas > 0].min(), sigmas.max()
    return BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=extra_args.get("seed"))


def model_sampling_of(extra_args: dict) -> ModelSamplingDiscrete:
    """The model's noise schedule, which the guided sampling loop passes in extra_args
    ("model_sampling"); SD's default schedule for a bare denoiser (tests)."""
    ms = extra_args.get("model_sampling")
    return ms if ms is not None else ModelSamplingDiscrete()


def churn(x, sigma, steps, s_churn, s_tmin, s_tmax, s_noise, noise_sampler):
    """Karras et al.'s "churn": raise σ to σ̂ = σ(1 + γ) by adding noise. Returns (x, σ̂)."""
    gamma = min(s_churn / steps, 2**0.5 - 1) if s_churn > 0 and s_tmin <= sigma <= s_tmax else 0.0
    if gamma <= 0:
        return x, sigma
    sigma_hat = sigma * (gamma + 1)
    return x + noise_sampler(sigma, sigma_hat) * s_noise * (sigma_hat**2 - sigma**2) ** 0.5, sigma_hat


def with_uncond(model: Denoiser, extra_args: dict) -> Callable[[torch.Tensor, torch.Tensor], tuple]:
    """For CFG++ samplers: a denoiser returning (guided D, unconditional D).

    It adds a post-CFG hook to the call (as ComfyUI's CFG++ samplers do) that reads the guider's
    unconditional prediction and turns the guider's cfg-1 shortcut off, so that prediction is
    computed even at cfg = 1. A denoiser without guidance runs no hooks; its unconditional
    prediction is its only one.
    """
    capture: dict[str, torch.Tensor] = {}

    def keep_uncond(step) -> torch.Tensor:
        capture["uncond"] = step.uncond_denoised
        return step.denoised

    extra = extra_args.get("patches") or NO_PATCHES
    args = dict(extra_args, patches=extra.add(post_cfg=keep_uncond, disable_cfg1_optimization=True))

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        capture.clear()
        denoised = model(x, sigma, **args)
        return denoised, capture.get("uncond", denoised)

    return denoise
