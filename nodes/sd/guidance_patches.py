"""Guidance model patches: hooks that change how the predictions for the prompts combine.

Notation: x the sigma-space latent, σ its noise level, C and U the denoised predictions for the
positive and the negative prompt, s the guidance scale, D the guided result. Norms, dot products
and standard deviations are per sample over all of its channels and pixels unless said otherwise.

- `RescaleCFG(m)` (Lin et al. 2023, §3.4), a CFG function: in v-space, v = (x/(σ²+1) − D̂)·√(σ²+1)/σ,
  v_cfg = v_U + s·(v_C − v_U), v_r = v_cfg·std(v_C)/std(v_cfg) (unbiased std), v = m·v_r + (1−m)·v_cfg,
  back to D = x/(σ²+1) − v·σ/√(σ²+1).
- `APG(eta, norm_threshold, momentum)` (Sadat et al. 2024), pre-CFG: g = C − U, with momentum
  g ← momentum·g_prev + g (reset when σ rises), g ← g·min(1, r/‖g‖) (r > 0), g = g⊥ + eta·g∥ split
  along C; the positive prediction becomes U + g + (C − U)/s, so that CFG yields U + s·g + (C − U).
- `TCFG` (Kwon et al. 2025), pre-CFG: the negative's noise U_ε = x − U keeps only its component along
  the first right singular vector of the 2-row matrix [U_ε; C_ε]: U ← x − (U_ε·v₁)v₁.
- `CFGZeroStar` (Fan et al. 2025), post-CFG: α = ⟨x − C, x − U⟩/(‖x − U‖² + 1e-8),
  D ← D + U·(α − 1) + s·U·(1 − α).
- `CFGNorm(strength)`, post-CFG: D ← D·strength·clamp(‖C‖_c / (‖D‖_c + 1e-8), 0, 1), norms over the
  channels at each pixel.

Per-run state (APG's running average) lives in the sampling run, not on the model value.
"""
from __future__ import annotations

import torch

from .patches import GuidanceStep


def _per_sample(sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return sigma.reshape(-1, *([1] * (like.ndim - 1))).to(like)


class RescaleCFG:
    """CFG with the result's standard deviation rescaled towards the positive prediction's, in v-space."""

    def __init__(self, multiplier: float) -> None:
        self.multiplier = float(multiplier)

    def __call__(self, step: GuidanceStep) -> torch.Tensor:
        x = step.input
        sigma = _per_sample(step.sigma, x)
        root = (sigma**2 + 1.0) ** 0.5
        x_scaled = x / (sigma**2 + 1.0)

        def to_v(denoised: torch.Tensor) -> torch.Tensor:
            return (x_scaled - denoised) * root / sigma

        v_cond, v_uncond = to_v(step.cond_denoised), to_v(step.uncond_denoised)
        v_cfg = v_uncond + step.cond_scale * (v_cond - v_uncond)
        ratio = v_cond.std(dim=(1, 2, 3), keepdim=True) / v_cfg.std(dim=(1, 2, 3), keepdim=True)
        v = self.multiplier * (v_cfg * ratio) + (1.0 - self.multiplier) * v_cfg
        return x_scaled - v * sigma / root


def _project(vector: torch.Tensor, onto: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(parallel, orthogonal) parts of ``vector`` relative to the direction of ``onto``, per sample."""
    unit = torch.nn.functional.normalize(onto, dim=[-1, -2, -3])
    parallel = (vector * unit).sum(dim=[-1, -2, -3], keepdim=True) * unit
    return parallel, vector - parallel


class APG:
    """Adaptive projected guidance: the guidance direction with momentum, a norm cap, and its part
    parallel to the positive prediction scaled by ``eta``."""

    def __init__(self, eta: float, norm_threshold: float, momentum: float) -> None:
        self.eta, self.norm_threshold, self.momentum = float(eta), float(norm_threshold), float(momentum)

    def __call__(self, step: GuidanceStep) -> list:
        out = step.conds_out
        if len(out) < 2 or step.cond_scale == 0:  # s = 0: CFG keeps U whatever C is (ComfyUI divides by 0)
            return out
        cond, uncond = out[0], out[1]
        state = step.run.scratch(self)
        sigma = float(step.sigma.reshape(-1)[0])
        if state.get("sigma") is not None and sigma > state["sigma"]:
            state["average"] = None  # a new schedule started
        state["sigma"] = sigma
        guidance = cond - uncond
        if self.momentum != 0:
            if state.get("average") is not None:
                guidance = self.momentum * state["average"] + guidance
            state["average"] = guidance
        if self.norm_threshold > 0:
            norm = guidance.norm(p=2, dim=[-1, -2, -3], keepdim=True)
            guidance = guidance * torch.minimum(torch.ones_like(norm), self.norm_threshold / norm)
        parallel, orthogonal = _project(guidance, cond)
        modified = orthogonal + self.eta * parallel
        return [uncond + modified + (cond - uncond) / step.cond_scale, uncond] + list(out[2:])


def tangential_damping(cond_noise: torch.Tensor, uncond_noise: torch.Tensor) -> torch.Tensor:
    """The negative's noise projected on the first right singular vector of [uncond; cond], per sample."""
    batch = cond_noise.shape[0]
    u = uncond_noise.reshape(batch, 1, -1).float()
    c = cond_noise.reshape(batch, 1, -1).float()
    _, _, vh = torch.linalg.svd(torch.cat((u, c), dim=1), full_matrices=False)
    v1 = vh[:, 0:1, :]
    return ((u @ v1.transpose(-2, -1)) * v1).reshape_as(uncond_noise).to(uncond_noise.dtype)


def tcfg(step: GuidanceStep) -> list:
    """TCFG's pre-CFG hook: the negative prediction with its tangential noise component removed."""
    out = step.conds_out
    if len(out) < 2 or any(c is None for c in step.conds[:2]):
        return out
    x = step.input
    damped = tangential_damping(x - out[0], x - out[1])
    return [out[0], x - damped] + list(out[2:])


def _optimized_scale(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    p, n = positive.reshape(positive.shape[0], -1), negative.reshape(negative.shape[0], -1)
    alpha = (p * n).sum(dim=1, keepdim=True) / ((n**2).sum(dim=1, keepdim=True) + 1e-8)
    return alpha.reshape([positive.shape[0]] + [1] * (positive.ndim - 1))


def cfg_zero_star(step: GuidanceStep) -> torch.Tensor:
    """CFG-Zero*'s post-CFG hook: the negative prediction rescaled by the optimal scale α."""
    x, uncond = step.input, step.uncond_denoised
    alpha = _optimized_scale(x - step.cond_denoised, x - uncond)
    return step.denoised + uncond * (alpha - 1.0) + step.cond_scale * uncond * (1.0 - alpha)


class CFGNorm:
    """Caps the guided result's per-pixel channel norm at the positive prediction's, then scales it."""

    def __init__(self, strength: float) -> None:
        self.strength = float(strength)

    def __call__(self, step: GuidanceStep) -> torch.Tensor:
        denoised = step.denoised
        cond_norm = torch.norm(step.cond_denoised, dim=1, keepdim=True)
        ratio = (cond_norm / (torch.norm(denoised, dim=1, keepdim=True) + 1e-8)).clamp(min=0.0, max=1.0)
        return denoised * ratio * self.strength
