"""Differential Diffusion (Levin & Fried 2023; ComfyUI's DifferentialDiffusion): a soft inpainting mask
read as a per-pixel amount of change.

A denoise-mask hook (nodes/sd/patches.py). At each step the mask m (1 = repaint) becomes the binary
mask m ≥ τ, where τ falls linearly in timestep from 1 at the schedule's first σ to 0 at its last:

    τ = (t(σ) − t(σ_to)) / (t(σ_from) − t(σ_to)),  σ_from = σ_0,  σ_to = max(σ_min of the model, σ_last)

with t the model sampling's timestep. So a pixel of mask value 0.3 is held to the input for the
first 70% of the schedule and repainted from then on. With 0 < strength < 1 the result is blended
with the soft mask: strength·[m ≥ τ] + (1 − strength)·m (as in ComfyUI, strength 0 also gives the
binary mask).
"""
from __future__ import annotations

import torch

from nodegraph.errors import NodeError

from .patches import SamplingRun


class DifferentialDiffusion:
    """The denoise-mask hook: ``(sigma, mask, run) -> mask for this step``."""

    def __init__(self, strength: float = 1.0) -> None:
        self.strength = float(strength)

    def threshold(self, sigma: torch.Tensor, run: SamplingRun) -> torch.Tensor:
        """τ for the step at ``sigma`` (a 0-d tensor) of ``run``'s schedule."""
        if run is None or run.sigmas is None:
            raise NodeError("DifferentialDiffusion: the sampler gave no schedule to the mask hook; use it with "
                            "KSampler, KSamplerAdvanced or SamplerCustom(Advanced)")
        ms = run.model.model_sampling
        sigmas = run.sigmas
        sigma_to = torch.maximum(torch.as_tensor(ms.sigma_min, device=sigmas.device), sigmas[-1])
        t_from, t_to = ms.timestep(sigmas[0]).float(), ms.timestep(sigma_to).float()
        t_now = ms.timestep(sigma.reshape(-1)[0].to(sigmas.device)).float()
        span = t_from - t_to
        if float(span) == 0.0:  # a schedule within one timestep: everything is at its end
            return torch.zeros((), device=sigmas.device)
        return (t_now - t_to) / span

    def __call__(self, sigma: torch.Tensor, mask: torch.Tensor, run: SamplingRun) -> torch.Tensor:
        binary = (mask >= self.threshold(sigma, run).to(mask.device)).to(mask.dtype)
        if self.strength and self.strength < 1:
            return self.strength * binary + (1 - self.strength) * mask
        return binary
