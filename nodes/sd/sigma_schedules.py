"""Noise schedules that ComfyUI offers only as custom-sampling nodes (PolyexponentialScheduler,
VPScheduler, LaplaceScheduler, SDTurboScheduler, AlignYourStepsScheduler, GITSScheduler), and the
edits its sigma nodes make (SplitSigmasDenoise, FlipSigmas, ExtendIntermediateSigmas, ManualSigmas).

Float32 tensors on the CPU, like every SIGMAS value; formulas and tables as ComfyUI's, each
function's docstring says where they come from.
"""
from __future__ import annotations

import functools
import json
import math
import re
from pathlib import Path

import numpy as np
import torch

from .model_sampling import ModelSamplingDiscrete


def _append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def polyexponential(steps: int, sigma_min: float, sigma_max: float, rho: float = 1.0) -> torch.Tensor:
    """k-diffusion's polyexponential schedule: log σ = log σ_min + r^ρ·(log σ_max − log σ_min) for r
    from 1 down to 0 in `steps` points (ρ = 1: the exponential schedule), then 0."""
    ramp = torch.linspace(1, 0, steps) ** rho
    return _append_zero(torch.exp(ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min)))


def vp(steps: int, beta_d: float = 19.9, beta_min: float = 0.1, eps_s: float = 1e-3) -> torch.Tensor:
    """The continuous VP schedule (Song et al. 2021): σ(t) = √(exp(β_d·t²/2 + β_min·t) − 1) for t from 1
    down to eps_s in `steps` points, then 0."""
    t = torch.linspace(1, eps_s, steps)
    return _append_zero(torch.sqrt(torch.special.expm1(beta_d * t**2 / 2 + beta_min * t)))


def laplace(steps: int, sigma_min: float, sigma_max: float, mu: float = 0.0, beta: float = 0.5) -> torch.Tensor:
    """Laplace schedule (Hang et al. 2024, arXiv:2407.03297): log σ at the quantiles of a Laplace(μ, β)
    distribution, λ = μ − β·sgn(½ − x)·log(1 − 2|½ − x| + 10⁻⁵) for x from 0 to 1, clamped to
    [σ_min, σ_max]. As ComfyUI's, it ends at σ_min (no 0 is appended): `steps` points, steps − 1 steps."""
    x = torch.linspace(0, 1, steps)
    lam = mu - beta * torch.sign(0.5 - x) * torch.log(1 - 2 * torch.abs(0.5 - x) + 1e-5)
    return torch.clamp(torch.exp(lam), min=sigma_min, max=sigma_max)


def sd_turbo(ms: ModelSamplingDiscrete, steps: int, denoise: float = 1.0) -> torch.Tensor:
    """SD Turbo's schedule: the sigmas of timesteps 999, 899, …, 99 (ten), starting 10 − int(10·denoise)
    steps in and taking `steps` of them, then 0."""
    start = 10 - int(10 * denoise)
    timesteps = torch.flip(torch.arange(1, 11) * 100 - 1, (0,))[start:start + steps]
    return _append_zero(ms.sigma(timesteps).float().cpu())


def loglinear_interp(levels, num: int) -> np.ndarray:
    """`num` points of a decreasing sequence, interpolated linearly in log σ over evenly spaced positions."""
    levels = np.asarray(levels, dtype=np.float64)
    log_rising = np.log(levels[::-1])
    new = np.interp(np.linspace(0, 1, num), np.linspace(0, 1, len(levels)), log_rising)
    return np.exp(new)[::-1].copy()


AYS_NOISE_LEVELS = {
    "SD1": [14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092,
            0.9642583904, 0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582],
    "SDXL": [14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141,
             0.5550693289, 0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582],
    "SVD": [700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002],
}
"""Align Your Steps (Sabour et al. 2024, arXiv:2404.14507): the optimised 10-step noise levels NVIDIA
published for each model family (its "how to" page), as ComfyUI's AlignYourStepsScheduler uses them."""


def _tail(levels, steps: int, denoise: float) -> torch.Tensor:
    """The last round(steps·denoise) steps of a (steps+1)-point schedule, its last point set to 0."""
    if denoise <= 0.0:
        return torch.zeros(0)
    total = round(steps * denoise) if denoise < 1.0 else steps
    sigmas = np.array(levels[-(total + 1):], dtype=np.float64)
    sigmas[-1] = 0
    return torch.tensor(sigmas, dtype=torch.float32)


def align_your_steps(model_type: str, steps: int, denoise: float = 1.0) -> torch.Tensor:
    """AYS levels for `model_type`, log-linearly interpolated to steps + 1 points (unless that is 11),
    the tail for `denoise`, ending in 0."""
    try:
        levels = AYS_NOISE_LEVELS[model_type]
    except KeyError:
        raise ValueError(f"AlignYourStepsScheduler: model_type {model_type!r} is not one of "
                         f"{', '.join(AYS_NOISE_LEVELS)}") from None
    if steps + 1 != len(levels):
        levels = loglinear_interp(levels, steps + 1)
    return _tail(levels, steps, denoise)


@functools.lru_cache(maxsize=1)
def gits_noise_levels() -> dict[str, list[list[float]]]:
    """GITS's searched schedules for SD1.5 by coefficient ("0.80" … "1.50"): see the data file's provenance."""
    path = Path(__file__).with_name("data") / "gits_noise_levels.json"
    return json.loads(path.read_text(encoding="utf-8"))["levels"]


def gits(coeff: float, steps: int, denoise: float = 1.0) -> torch.Tensor:
    """GITS (Chen et al. 2024, arXiv:2405.11326): the searched schedule for `coeff` and `steps` (2 to 20;
    more steps interpolate the 20-step one log-linearly), the tail for `denoise`, ending in 0."""
    table = gits_noise_levels()
    key = f"{round(coeff, 2):.2f}"
    if key not in table:
        raise ValueError(f"GITSScheduler: coeff {coeff} has no schedule; use one of {', '.join(table)}")
    if steps < 2:
        raise ValueError(f"GITSScheduler: steps must be at least 2, got {steps}")
    levels = table[key][steps - 2] if steps <= 20 else loglinear_interp(table[key][-1], steps + 1)
    return _tail(levels, steps, denoise)


# -- sigma edits -------------------------------------------------------------------------------------
def split_by_denoise(sigmas: torch.Tensor, denoise: float) -> tuple[torch.Tensor, torch.Tensor]:
    """SplitSigmasDenoise: the low part is the last round(steps·denoise) steps, the high part the rest;
    both keep the sigma at the split (as ComfyUI: denoise 0 leaves the high part empty, not whole)."""
    total = round(max(sigmas.shape[-1] - 1, 0) * denoise)
    return sigmas[:-total], sigmas[-(total + 1):]


def flip(sigmas: torch.Tensor) -> torch.Tensor:
    """FlipSigmas: the schedule reversed (to run a sampler from clean to noisy); a leading 0 becomes
    0.0001 (a sampler divides by σ)."""
    if len(sigmas) == 0:
        return sigmas
    flipped = sigmas.flip(0)
    if flipped[0] == 0:
        flipped[0] = 0.0001
    return flipped


SPACINGS = {
    "linear": lambda x: x,
    "cosine": lambda x: torch.sin(x * math.pi / 2),
    "sine": lambda x: 1 - torch.cos(x * math.pi / 2),
}


def extend_intermediate(sigmas: torch.Tensor, steps: int, start_at_sigma: float, end_at_sigma: float,
                        spacing: str) -> torch.Tensor:
    """ExtendIntermediateSigmas: between each σ_i (with end_at_sigma ≤ σ_i ≤ start_at_sigma; a negative
    start means no upper bound) and σ_{i+1}, insert steps − 1 sigmas at f(k/steps) of the way, with f
    linear, cosine (sin(πx/2), denser near σ_{i+1}) or sine (1 − cos(πx/2), denser near σ_i)."""
    if spacing not in SPACINGS:
        raise ValueError(f"ExtendIntermediateSigmas: spacing {spacing!r} is not one of {', '.join(SPACINGS)}")
    upper = float("inf") if start_at_sigma < 0 else start_at_sigma
    fractions = SPACINGS[spacing](torch.linspace(0, 1, steps + 1)[1:-1])
    out: list[float] = []
    for i in range(len(sigmas) - 1):
        current, following = sigmas[i], sigmas[i + 1]
        out.append(float(current))
        if end_at_sigma <= current <= upper:
            out.extend((fractions * (following - current) + current).tolist())
    if len(sigmas) > 0:
        out.append(float(sigmas[-1]))
    return torch.tensor(out, dtype=torch.float32)


_NUMBER = re.compile(r"[-+]?(?:\d*\.*\d+)")


def manual(text: str) -> torch.Tensor:
    """ManualSigmas: every number in `text` in order (separators are free: "14.6, 7, 0" or "14.6 7 0";
    ComfyUI's pattern, so "1e-3" reads as 1 and −3)."""
    values = []
    for token in _NUMBER.findall(text):
        try:
            values.append(float(token))
        except ValueError:
            raise ValueError(f"ManualSigmas: {token!r} in {text!r} is not a number; write the sigmas as "
                             "numbers separated by commas, e.g. 14.6, 7.0, 0") from None
    return torch.tensor(values, dtype=torch.float32)
