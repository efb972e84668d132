"""Noise schedules: for a number of steps, the decreasing sigmas a sampler walks through.

Each scheduler maps (model sampling, steps) to a float32 tensor of sigmas that ends in 0.
The definitions are ComfyUI's (`comfy/samplers.py`), so the same scheduler name gives the same
sigmas; "karras" and "exponential" are the schedules of Karras et al. (2022) and k-diffusion.
The schedules that only custom-sampling nodes offer (polyexponential, VP, Laplace, SD Turbo,
Align Your Steps, GITS) are in `sigma_schedules.py`.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from .model_sampling import ModelSamplingDiscrete


def _append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def _check_steps(name: str, steps: int) -> None:
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"scheduler {name!r}: steps must be a positive integer, got {steps!r}")


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. (2022), eq. 5: evenly spaced in σ^(1/ρ) from sigma_max down to sigma_min, then 0."""
    _check_steps("karras", steps)
    lo, hi = float(sigma_min) ** (1 / rho), float(sigma_max) ** (1 / rho)
    ramp = torch.linspace(0, 1, steps)
    return _append_zero((hi + ramp * (lo - hi)) ** rho)


def exponential_sigmas(steps: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """Evenly spaced in log σ from sigma_max down to sigma_min, then 0."""
    _check_steps("exponential", steps)
    log_sigmas = torch.linspace(math.log(float(sigma_max)), math.log(float(sigma_min)), steps)
    return _append_zero(log_sigmas.exp())


def karras(ms: ModelSamplingDiscrete, steps: int, rho: float = 7.0) -> torch.Tensor:
    """`karras_sigmas` over the model's σ range."""
    return karras_sigmas(steps, float(ms.sigma_min), float(ms.sigma_max), rho)


def exponential(ms: ModelSamplingDiscrete, steps: int) -> torch.Tensor:
    """`exponential_sigmas` over the model's σ range."""
    return exponential_sigmas(steps, float(ms.sigma_min), float(ms.sigma_max))


def normal(ms: ModelSamplingDiscrete, steps: int) -> torch.Tensor:
    """Evenly spaced in (fractional) training timestep, from t(σ_max) to t(σ_min) inclusive."""
    _check_steps("normal", steps)
    start, end = ms.timestep(ms.sigma_max), ms.timestep(ms.sigma_min)
    return _append_zero(ms.sigma(torch.linspace(start, end, steps)))


def sgm_uniform(ms: ModelSamplingDiscrete, steps: int) -> torch.Tensor:
    """Like `normal` but with steps+1 points of which the last (t(σ_min)) is dropped (SGM's spacing)."""
    _check_steps("sgm_uniform", steps)
    start, end = ms.timestep(ms.sigma_max), ms.timestep(ms.sigma_min)
    return _append_zero(ms.sigma(torch.linspace(start, end, steps + 1)[:-1]))


def simple(ms: ModelSamplingDiscrete, steps: int) -> torch.Tensor:
    """Every (len/steps)-th training sigma, counted down from σ_max."""
    _check_steps("simple", steps)
    stride = len(ms.sigmas) / steps
    picked = [ms.sigmas[-(1 + int(k * stride))] for k in range(steps)]
    return _append_zero(torch.stack(picked).float().cpu())


def ddim_uniform(ms: ModelSamplingDiscrete, steps: int) -> torch.Tensor:
    """DDIM's uniform timesteps 1, 1+c, 1+2c, … (c = len // steps), highest first.

    As in ComfyUI this may give more than `steps` sigmas when len is not a multiple of steps.
    """
    _check_steps("ddim_uniform", steps)
    stride = max(len(ms.sigmas) // steps, 1)
    picked = ms.sigmas[1::stride].flip(0)
    return _append_zero(picked.float().cpu())


def linear_quadratic(ms: ModelSamplingDiscrete, steps: int, threshold_noise: float = 0.025,
                     linear_steps: int | None = None) -> torch.Tensor:
    """Mochi's schedule (genmo, as ComfyUI scales it by σ_max): σ/σ_max = 1 − u with u rising linearly
    from 0 to threshold_noise over the first steps//2 steps, then quadratically to 1 (continuous in u and
    its slope at the join); one step is [σ_max, 0]."""
    _check_steps("linear_quadratic", steps)
    if steps == 1:
        return torch.tensor([1.0, 0.0]) * ms.sigma_max.cpu().float()
    n_lin = steps // 2 if linear_steps is None else linear_steps
    n_quad = steps - n_lin
    excess = n_lin - threshold_noise * steps
    quad = excess / (n_lin * n_quad**2)
    lin = threshold_noise / n_lin - 2 * excess / n_quad**2
    const = quad * n_lin**2
    u = [k * threshold_noise / n_lin for k in range(n_lin)]
    u += [quad * k**2 + lin * k + const for k in range(n_lin, steps)] + [1.0]
    return torch.tensor([1.0 - v for v in u], dtype=torch.float32) * ms.sigma_max.cpu().float()


def kl_optimal_sigmas(steps: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """The KL-optimal schedule (Sabour et al. 2024, "Align Your Steps", eq. for the KL bound): evenly
    spaced in arctan σ from sigma_max down to sigma_min, then 0. One step is [sigma_max, 0] (ComfyUI's
    formula divides by steps − 1 and gives NaN there)."""
    _check_steps("kl_optimal", steps)
    ramp = torch.arange(steps, dtype=torch.float32) / max(steps - 1, 1)
    sigmas = torch.zeros(steps + 1)
    sigmas[:-1] = (ramp * math.atan(sigma_min) + (1 - ramp) * math.atan(sigma_max)).tan()
    return sigmas


def kl_optimal(ms: ModelSamplingDiscrete, steps: int) -> torch.Tensor:
    """`kl_optimal_sigmas` over the model's σ range."""
    return kl_optimal_sigmas(steps, float(ms.sigma_min), float(ms.sigma_max))


def beta(ms: ModelSamplingDiscrete, steps: int, alpha: float = 0.6, beta_: float = 0.6) -> torch.Tensor:
    """Timesteps at quantiles of a Beta(α, β) distribution (Lee et al. 2024, arXiv:2407.12173).

    t_k = rint(F⁻¹(1 − k/steps) · (len − 1)) for k = 0 … steps−1, repeated timesteps dropped.
    """
    _check_steps("beta", steps)
    last = len(ms.sigmas) - 1
    picked: list[int] = []
    for k in range(steps):
        # k·(1/steps) and round-half-even, exactly as numpy.linspace and numpy.rint compute them
        t = round(beta_ppf(1.0 - k * (1.0 / steps), alpha, beta_) * last)
        if not picked or t != picked[-1]:
            picked.append(t)
    return _append_zero(ms.sigmas[torch.tensor(picked)].float().cpu())


# -- the Beta distribution's quantile function, without scipy ---------------------------------
def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _betainc_continued_fraction(x: float, a: float, b: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz), valid for x < (a+1)/(a+b+2)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 500):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < 1e-16:
            break
    return result


def beta_cdf(x: float, a: float, b: float) -> float:
    """Regularised incomplete beta function I_x(a, b), the CDF of Beta(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(a * math.log(x) + b * math.log1p(-x) - _log_beta(a, b))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betainc_continued_fraction(x, a, b) / a
    return 1.0 - front * _betainc_continued_fraction(1.0 - x, b, a) / b


def beta_ppf(p: float, a: float, b: float) -> float:
    """Quantile function of Beta(a, b): the x in [0, 1] with I_x(a, b) = p (bisection to float precision)."""
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    if a == b:  # symmetric: the median is exactly 1/2, and the lower tail is solved more precisely
        if p == 0.5:
            return 0.5
        if p > 0.5:
            return 1.0 - beta_ppf(1.0 - p, a, b)
    lo, hi = 0.0, 1.0
    while True:
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi:
            return mid
        if beta_cdf(mid, a, b) < p:
            lo = mid
        else:
            hi = mid


# -- registry ----------------------------------------------------------------------------------
# In the order of ComfyUI's KSampler list (its first, "simple", is its default).
SCHEDULERS: dict[str, Callable[[ModelSamplingDiscrete, int], torch.Tensor]] = {
    "simple": simple,
    "sgm_uniform": sgm_uniform,
    "karras": karras,
    "exponential": exponential,
    "ddim_uniform": ddim_uniform,
    "beta": beta,
    "normal": normal,
    "linear_quadratic": linear_quadratic,
    "kl_optimal": kl_optimal,
}
SCHEDULER_NAMES: list[str] = list(SCHEDULERS)


def calculate_sigmas(model_sampling: ModelSamplingDiscrete, scheduler: str, steps: int) -> torch.Tensor:
    """Sigmas of the named scheduler for `steps` steps (float32, on the CPU, ending in 0)."""
    try:
        fn = SCHEDULERS[scheduler]
    except KeyError:
        raise ValueError(f"unknown scheduler {scheduler!r}; choose one of {', '.join(SCHEDULER_NAMES)}") from None
    return fn(model_sampling, steps).float().cpu()


def basic_scheduler(model_sampling: ModelSamplingDiscrete, scheduler: str, steps: int,
                    denoise: float = 1.0) -> torch.Tensor:
    """ComfyUI's BasicScheduler node: the last steps+1 sigmas of a schedule for int(steps/denoise) steps.

    denoise ≤ 0 gives an empty tensor (nothing to sample).
    """
    total = steps
    if denoise < 1.0:
        if denoise <= 0.0:
            return torch.zeros(0)
        total = int(steps / denoise)
    return calculate_sigmas(model_sampling, scheduler, total)[-(steps + 1):]
