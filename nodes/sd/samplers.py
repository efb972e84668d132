"""Samplers: update rules that walk a latent down a schedule of sigmas to a clean sample.

Every sampler has k-diffusion's signature

    sample_<name>(model, x, sigmas, extra_args=None, callback=None, disable=None, **options) -> x

where `model(x, sigma, **extra_args)` returns the denoised estimate D(x; σ) for a batch of σ, and
`callback` (if given) receives {"x", "i", "sigma", "sigma_hat", "denoised"} once per step. A
callback that raises stops sampling at once (that is how an interrupt works). `extra_args["seed"]`
seeds the noise of ancestral and SDE samplers exactly as ComfyUI does (see `noise.py`).

Notation: x is a latent in "sigma space" (x = x_0 + σ·ε); λ = −log σ is the half-log-SNR, h the
step in λ. The rules follow Karras et al. 2022 (Euler, Heun, churn), DPM-Solver (Lu et al. 2022),
DPM-Solver++ (Lu et al. 2022b), UniPC (Zhao et al. 2023) and k-diffusion/ComfyUI's variants of them;
each function's docstring says where it departs from the textbook rule to follow ComfyUI.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from .noise import BrownianTreeNoiseSampler, default_noise_sampler

Denoiser = Callable[..., torch.Tensor]
SamplerCallback = Callable[[dict], None]


# -- helpers named for the math ---------------------------------------------------------------
def _bcast(sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor | float:
    if isinstance(sigma, torch.Tensor) and sigma.ndim == 1:
        return sigma.view(-1, *([1] * (x.ndim - 1)))
    return sigma


def to_d(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """dx/dσ of the probability-flow ODE: (x − D(x; σ)) / σ."""
    return (x - denoised) / _bcast(sigma, x)


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


def lms_coefficient(order: int, t: np.ndarray, i: int, j: int) -> float:
    """∫_{t_i}^{t_{i+1}} ℓ_j(τ) dτ for the Lagrange basis ℓ_j through t_i, t_{i−1}, …, t_{i−order+1}
    that is 1 at t_{i−j} (integrated exactly: ℓ_j is a polynomial)."""
    if order - 1 > i:
        raise ValueError(f"LMS order {order} needs {order} previous steps, step {i} has {i + 1}")
    nodes = [float(t[i - k]) for k in range(order) if k != j]
    basis = np.polynomial.Polynomial([1.0])
    for r in nodes:
        basis = basis * np.polynomial.Polynomial([-r, 1.0]) / (float(t[i - j]) - r)
    antiderivative = basis.integ()
    return float(antiderivative(float(t[i + 1])) - antiderivative(float(t[i])))


def _report(callback: SamplerCallback | None, x, i, sigma, sigma_hat, denoised) -> None:
    if callback is not None:
        callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma_hat, "denoised": denoised})


def _noise_sampler(x: torch.Tensor, extra_args: dict, noise_sampler):
    return noise_sampler if noise_sampler is not None else default_noise_sampler(x, seed=extra_args.get("seed"))


def _brownian_sampler(x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict, noise_sampler):
    if noise_sampler is not None:
        return noise_sampler
    sigma_min, sigma_max = sigmas[sigmas > 0].min(), sigmas.max()
    return BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=extra_args.get("seed"))


def _churn(x, sigma, steps, s_churn, s_tmin, s_tmax, s_noise, noise_sampler):
    """Karras et al.'s "churn": raise σ to σ̂ = σ(1 + γ) by adding noise. Returns (x, σ̂)."""
    gamma = min(s_churn / steps, 2**0.5 - 1) if s_churn > 0 and s_tmin <= sigma <= s_tmax else 0.0
    if gamma <= 0:
        return x, sigma
    sigma_hat = sigma * (gamma + 1)
    return x + noise_sampler(sigma, sigma_hat) * s_noise * (sigma_hat**2 - sigma**2) ** 0.5, sigma_hat


# -- ODE samplers -------------------------------------------------------------------------------
@torch.no_grad()
def sample_euler(model, x, sigmas, extra_args=None, callback=None, disable=None,
                 s_churn=0.0, s_tmin=0.0, s_tmax=float("inf"), s_noise=1.0, noise_sampler=None):
    """Euler's method on the probability-flow ODE (Karras et al. 2022, Alg. 2 with Euler steps).

    With s_churn > 0 the churn noise comes from the seeded noise sampler (ComfyUI: the global RNG).
    """
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    steps = len(sigmas) - 1
    churn_noise = _noise_sampler(x, extra_args, noise_sampler) if s_churn > 0 else None
    for i in range(steps):
        x, sigma_hat = _churn(x, sigmas[i], steps, s_churn, s_tmin, s_tmax, s_noise, churn_noise)
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = to_d(x, sigma_hat, denoised)
        _report(callback, x, i, sigmas[i], sigma_hat, denoised)
        x = x + d * (sigmas[i + 1] - sigma_hat)
    return x


@torch.no_grad()
def sample_heun(model, x, sigmas, extra_args=None, callback=None, disable=None,
                s_churn=0.0, s_tmin=0.0, s_tmax=float("inf"), s_noise=1.0, noise_sampler=None):
    """Heun's second-order method (Karras et al. 2022, Alg. 2); an Euler step onto σ = 0."""
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    steps = len(sigmas) - 1
    churn_noise = _noise_sampler(x, extra_args, noise_sampler) if s_churn > 0 else None
    for i in range(steps):
        x, sigma_hat = _churn(x, sigmas[i], steps, s_churn, s_tmin, s_tmax, s_noise, churn_noise)
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = to_d(x, sigma_hat, denoised)
        _report(callback, x, i, sigmas[i], sigma_hat, denoised)
        dt = sigmas[i + 1] - sigma_hat
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1] * s_in, **extra_args))
            x = x + (d + d_2) / 2 * dt
    return x


@torch.no_grad()
def sample_dpm_2(model, x, sigmas, extra_args=None, callback=None, disable=None,
                 s_churn=0.0, s_tmin=0.0, s_tmax=float("inf"), s_noise=1.0, noise_sampler=None):
    """DPM-Solver-2 in σ: the derivative at the log-midpoint σ_mid = √(σ σ') drives the full step."""
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    steps = len(sigmas) - 1
    churn_noise = _noise_sampler(x, extra_args, noise_sampler) if s_churn > 0 else None
    for i in range(steps):
        x, sigma_hat = _churn(x, sigmas[i], steps, s_churn, s_tmin, s_tmax, s_noise, churn_noise)
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = to_d(x, sigma_hat, denoised)
        _report(callback, x, i, sigmas[i], sigma_hat, denoised)
        if sigmas[i + 1] == 0:
            x = x + d * (sigmas[i + 1] - sigma_hat)
        else:
            sigma_mid = sigma_hat.log().lerp(sigmas[i + 1].log(), 0.5).exp()
            x_2 = x + d * (sigma_mid - sigma_hat)
            d_2 = to_d(x_2, sigma_mid, model(x_2, sigma_mid * s_in, **extra_args))
            x = x + d_2 * (sigmas[i + 1] - sigma_hat)
    return x


@torch.no_grad()
def sample_lms(model, x, sigmas, extra_args=None, callback=None, disable=None, order=4):
    """Linear multistep (Adams–Bashforth in σ) of up to `order`, using past derivatives.

    The step onto σ = 0 returns the denoised estimate (ComfyUI), not an LMS extrapolation.
    """
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    t = sigmas.detach().cpu().double().numpy()
    ds: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        ds = (ds + [to_d(x, sigmas[i], denoised)])[-order:]
        _report(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            current = min(i + 1, order)
            coeffs = [lms_coefficient(current, t, i, j) for j in range(current)]
            x = x + sum(c * d for c, d in zip(coeffs, reversed(ds)))
    return x


@torch.no_grad()
def sample_dpmpp_2m(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """DPM-Solver++(2M): second-order multistep in λ, extrapolating D from the previous step."""
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    old_denoised = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        _report(callback, x, i, sigmas[i], sigmas[i], denoised)
        h = half_log_snr(sigmas[i + 1]) - half_log_snr(sigmas[i])
        if old_denoised is None or sigmas[i + 1] == 0:
            d_eff = denoised
        else:
            r = (half_log_snr(sigmas[i]) - half_log_snr(sigmas[i - 1])) / h
            d_eff = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
        x = (sigmas[i + 1] / sigmas[i]) * x - torch.expm1(-h) * d_eff
        old_denoised = denoised
    return x


@torch.no_grad()
def sample_uni_pc(model, x, sigmas, extra_args=None, callback=None, disable=None, variant="bh1"):
    """UniPC (Zhao et al. 2023): multistep predictor UniP-p + corrector UniC, data prediction, B(h) variants.

    As ComfyUI: order = min(3, steps − 1) with lower orders to start and to finish, the corrector's
    model evaluation is reused as the next step's history (so steps = model calls), no corrector
    on the last step, and a final σ of 0 is replaced by 0.001 (the result is x at σ = 0.001).
    Run in σ space, where UniPC's VP update x_t = (σ_t/σ_s)x − α_t(e^(−h) − 1)D − α_t B(h)Σρ_k D_k
    loses its α factors (so the callback's x is in σ space; ComfyUI reports its VP-scaled x).
    """
    extra_args = {} if extra_args is None else extra_args
    if variant not in ("bh1", "bh2"):
        raise ValueError(f"uni_pc: variant must be 'bh1' or 'bh2', got {variant!r}")
    sigmas = sigmas.clone()
    if sigmas[-1] == 0:
        sigmas[-1] = 0.001
    steps = len(sigmas) - 1
    order = min(3, steps - 1)
    s_in = x.new_ones([x.shape[0]])

    def denoise(x_, sigma):
        return model(x_, sigma * s_in, **extra_args)

    history: list[tuple[torch.Tensor, torch.Tensor]] = []  # (σ, D(x; σ)) of the last `order` points
    for i in range(steps):
        if i == 0:
            history.append((sigmas[0], denoise(x, sigmas[0])))
        elif i < order:  # warm-up: order i
            x, d_new = unipc_update(x, history, sigmas[i], i, variant, denoise)
            history.append((sigmas[i], d_new))
        else:
            for k in ([i, i + 1] if i == steps - 1 else [i]):  # the last pass also lands on the final σ
                final = k == steps
                x, d_new = unipc_update(x, history, sigmas[k], min(order, steps + 1 - k), variant,
                                        None if final else denoise)
                if not final:
                    history = (history + [(sigmas[k], d_new)])[-order:]
        _report(callback, x, i, sigmas[i], sigmas[i], history[-1][1])
    if steps == 1:
        # No update is made for a single step; ComfyUI's VP-space bookkeeping then returns x·α(σ_0)/α(σ_end).
        x = x * ((1 + sigmas[-1] ** 2) / (1 + sigmas[0] ** 2)) ** 0.5
    return x


def unipc_update(x, history, sigma_t, order, variant, denoise):
    """One UniPC step from the newest history point to σ_t with `order` history points.

    Predictor: x_t = (σ_t/σ_0)·x − (e^(−h) − 1)·D_0 − B(h)·Σ_k ρ_k (D_k − D_0)/r_k.
    Corrector (if `denoise` is given): re-evaluate D_t = D(x_t; σ_t), then redo the step with
    ρ^c over the same differences plus (D_t − D_0). Returns (x_t, D_t or None).
    """
    sigma_0, d_0 = history[-1]
    lam_0, lam_t = half_log_snr(sigma_0), half_log_snr(sigma_t)
    h = lam_t - lam_0
    rks, diffs = [], []
    for sigma_k, d_k in reversed(history[-order:-1]):
        r_k = (half_log_snr(sigma_k) - lam_0) / h
        rks.append(r_k)
        diffs.append((d_k - d_0) / r_k)
    hh = -h
    b_h = hh if variant == "bh1" else torch.expm1(hh)
    rho_p, rho_c = unipc_coefficients(rks, float(hh), variant, order)
    x_t_ = (sigma_t / sigma_0) * x - torch.expm1(hh) * d_0
    x_t = x_t_ - b_h * sum(r * d for r, d in zip(rho_p, diffs)) if diffs else x_t_
    if denoise is None:
        return x_t, None
    d_t = denoise(x_t, sigma_t)
    correction = sum(r * d for r, d in zip(rho_c[:-1], diffs)) + rho_c[-1] * (d_t - d_0)
    return x_t_ - b_h * correction, d_t


def unipc_coefficients(rks, hh: float, variant: str, order: int):
    """Solve UniPC's order conditions R ρ = b for predictor and corrector weights (float64).

    R has rows r^(k−1) (k = 1…order) over nodes (r_1…r_{order−1}, 1);
    b_k = k!·φ_{k+1}(hh)/B(h) with hφ-recursion φ_2 = (e^hh − 1)/hh − 1, φ_{k+1} = φ_k/hh − 1/k!.
    Order-2 predictor and order-1 corrector use the paper's fixed ρ = 1/2.
    """
    nodes = torch.tensor([float(r) for r in rks] + [1.0], dtype=torch.float64)
    hh64 = torch.tensor(hh, dtype=torch.float64)
    b_h = hh64 if variant == "bh1" else torch.expm1(hh64)
    phi = torch.expm1(hh64) / hh64 - 1
    factorial = 1
    rows, b = [], []
    for k in range(1, order + 1):
        rows.append(nodes ** (k - 1))
        b.append(phi * factorial / b_h)
        factorial *= k + 1
        phi = phi / hh64 - 1 / factorial
    R, b = torch.stack(rows), torch.stack(b)
    if order == 2:
        rho_p = [0.5]
    elif len(rks) > 0:
        rho_p = torch.linalg.solve(R[:-1, :-1], b[:-1]).tolist()
    else:
        rho_p = []
    rho_c = [0.5] if order == 1 else torch.linalg.solve(R, b).tolist()
    return rho_p, rho_c


@torch.no_grad()
def sample_uni_pc_bh2(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """UniPC with B(h) = e^h − 1 (the "bh2" variant)."""
    return sample_uni_pc(model, x, sigmas, extra_args, callback, disable, variant="bh2")


# -- ancestral samplers (fresh noise every step) -------------------------------------------------
@torch.no_grad()
def sample_euler_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None,
                           eta=1.0, s_noise=1.0, noise_sampler=None):
    """Euler step down to σ_down, then add noise of size σ_up (ancestral sampling)."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = _noise_sampler(x, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        _report(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigma_down == 0:
            x = denoised
        else:
            d = to_d(x, sigmas[i], denoised)
            x = x + d * (sigma_down - sigmas[i]) + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_dpm_2_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None,
                           eta=1.0, s_noise=1.0, noise_sampler=None):
    """DPM-Solver-2 step down to σ_down, then add noise of size σ_up."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = _noise_sampler(x, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        _report(callback, x, i, sigmas[i], sigmas[i], denoised)
        d = to_d(x, sigmas[i], denoised)
        if sigma_down == 0:
            x = x + d * (sigma_down - sigmas[i])
        else:
            sigma_mid = sigmas[i].log().lerp(sigma_down.log(), 0.5).exp()
            x_2 = x + d * (sigma_mid - sigmas[i])
            d_2 = to_d(x_2, sigma_mid, model(x_2, sigma_mid * s_in, **extra_args))
            x = x + d_2 * (sigma_down - sigmas[i])
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_dpmpp_2s_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None,
                              eta=1.0, s_noise=1.0, noise_sampler=None):
    """DPM-Solver++(2S) singlestep to σ_down (midpoint in λ), then add noise of size σ_up."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = _noise_sampler(x, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        _report(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigma_down == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            lam, lam_down = half_log_snr(sigmas[i]), half_log_snr(sigma_down)
            sigma_mid = sigma_at(lam + (lam_down - lam) / 2)
            x_2 = dpm_solver_1(x, sigmas[i], sigma_mid, denoised)
            denoised_2 = model(x_2, sigma_mid * s_in, **extra_args)
            x = dpm_solver_1(x, sigmas[i], sigma_at(lam_down), denoised_2)
        if sigmas[i + 1] > 0:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_ddpm(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    """DDPM's ancestral step (Ho et al. 2020, Alg. 2) with the ᾱ's implied by consecutive sigmas."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = _noise_sampler(x, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, sigma * s_in, **extra_args)
        _report(callback, x, i, sigma, sigma, denoised)
        alpha_bar, alpha_bar_next = 1 / (sigma**2 + 1), 1 / (sigma_next**2 + 1)
        alpha = alpha_bar / alpha_bar_next
        eps = (x - denoised) / sigma
        x_vp = x / torch.sqrt(1.0 + sigma**2)
        mean = (1 / alpha).sqrt() * (x_vp - (1 - alpha) * eps / (1 - alpha_bar).sqrt())
        if sigma_next > 0:
            posterior_std = ((1 - alpha) * (1 - alpha_bar_next) / (1 - alpha_bar)).sqrt()
            x = (mean + posterior_std * noise_sampler(sigma, sigma_next)) * torch.sqrt(1.0 + sigma_next**2)
        else:
            x = mean
    return x


@torch.no_grad()
def sample_lcm(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    """Latent Consistency Model sampling: jump to D(x; σ_i), then re-noise to σ_{i+1} with fresh noise."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = _noise_sampler(x, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        _report(callback, x, i, sigmas[i], sigmas[i], denoised)
        x = denoised
        if sigmas[i + 1] > 0:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * sigmas[i + 1]
    return x


# -- SDE samplers (Brownian-tree noise) -----------------------------------------------------------
@torch.no_grad()
def sample_dpmpp_sde(model, x, sigmas, extra_args=None, callback=None, disable=None,
                     eta=1.0, s_noise=1.0, noise_sampler=None, r=1 / 2):
    """DPM-Solver++ (stochastic, singlestep): an ancestral DPM-Solver++(1) step to λ_s + r·h evaluates
    D there; the full ancestral step uses (1 − 1/(2r))·D + 1/(2r)·D_mid. Onto σ = 0: the denoised estimate."""
    if len(sigmas) <= 1:
        return x
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = _brownian_sampler(x, sigmas, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    fac = 1 / (2 * r)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        _report(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        lam_s, lam_t = half_log_snr(sigmas[i]), half_log_snr(sigmas[i + 1])
        sigma_mid = sigma_at(lam_s + r * (lam_t - lam_s))
        sigma_down, sigma_up = ancestral_step(sigma_at(lam_s), sigma_mid, eta)
        x_2 = dpm_solver_1(x, sigmas[i], sigma_down, denoised)
        if eta > 0 and s_noise > 0:
            x_2 = x_2 + noise_sampler(sigmas[i], sigma_mid) * s_noise * sigma_up
        denoised_2 = model(x_2, sigma_mid * s_in, **extra_args)
        sigma_down, sigma_up = ancestral_step(sigma_at(lam_s), sigma_at(lam_t), eta)
        x = dpm_solver_1(x, sigmas[i], sigma_down, (1 - fac) * denoised + fac * denoised_2)
        if eta > 0 and s_noise > 0:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde(model, x, sigmas, extra_args=None, callback=None, disable=None,
                        eta=1.0, s_noise=1.0, noise_sampler=None, solver_type="midpoint"):
    """DPM-Solver++(2M) SDE: the exact SDE step for D held constant over [λ, λ + h] (decay e^(−(1+η)h),
    noise σ'·√(1 − e^(−2ηh))) plus a second-order correction from the previous D."""
    if len(sigmas) <= 1:
        return x
    if solver_type not in ("heun", "midpoint"):
        raise ValueError(f"dpmpp_2m_sde: solver_type must be 'heun' or 'midpoint', got {solver_type!r}")
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = _brownian_sampler(x, sigmas, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    old_denoised, h, h_last = None, None, None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        _report(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            h = half_log_snr(sigmas[i + 1]) - half_log_snr(sigmas[i])
            h_eta = h * (eta + 1)
            x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x + (-h_eta).expm1().neg() * denoised
            if old_denoised is not None:
                r = h_last / h
                if solver_type == "heun":
                    x = x + ((-h_eta).expm1().neg() / (-h_eta) + 1) * (1 / r) * (denoised - old_denoised)
                else:
                    x = x + 0.5 * (-h_eta).expm1().neg() * (1 / r) * (denoised - old_denoised)
            if eta > 0 and s_noise > 0:
                noise = noise_sampler(sigmas[i], sigmas[i + 1])
                x = x + noise * sigmas[i + 1] * (-2 * h * eta).expm1().neg().sqrt() * s_noise
        old_denoised, h_last = denoised, h
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde_heun(model, x, sigmas, extra_args=None, callback=None, disable=None,
                             eta=1.0, s_noise=1.0, noise_sampler=None):
    """DPM-Solver++(2M) SDE with the Heun-type second-order correction."""
    return sample_dpmpp_2m_sde(model, x, sigmas, extra_args, callback, disable, eta, s_noise, noise_sampler, "heun")


@torch.no_grad()
def sample_dpmpp_3m_sde(model, x, sigmas, extra_args=None, callback=None, disable=None,
                        eta=1.0, s_noise=1.0, noise_sampler=None):
    """DPM-Solver++(3M) SDE: as 2M SDE with second and third-order corrections from two previous Ds."""
    if len(sigmas) <= 1:
        return x
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = _brownian_sampler(x, sigmas, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    denoised_1 = denoised_2 = None
    h = h_1 = h_2 = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        _report(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            h = half_log_snr(sigmas[i + 1]) - half_log_snr(sigmas[i])
            h_eta = h * (eta + 1)
            x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x + (-h_eta).expm1().neg() * denoised
            phi_2 = h_eta.neg().expm1() / h_eta + 1
            if h_2 is not None:
                r0, r1 = h_1 / h, h_2 / h
                d1_0 = (denoised - denoised_1) / r0
                d1_1 = (denoised_1 - denoised_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi_3 = phi_2 / h_eta - 0.5
                x = x + phi_2 * d1 - phi_3 * d2
            elif h_1 is not None:
                x = x + phi_2 * (denoised - denoised_1) / (h_1 / h)
            if eta > 0 and s_noise > 0:
                noise = noise_sampler(sigmas[i], sigmas[i + 1])
                x = x + noise * sigmas[i + 1] * (-2 * h * eta).expm1().neg().sqrt() * s_noise
        denoised_1, denoised_2 = denoised, denoised_1
        h_1, h_2 = h, h_1
    return x


# -- registry ------------------------------------------------------------------------------------
# ComfyUI's "*_gpu" names differ only in keeping the Brownian tree on the latent's device; here the
# tree always lives on the CPU, which is identical on CPU (and differs from ComfyUI on CUDA).
SAMPLER_FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "euler": sample_euler,
    "euler_ancestral": sample_euler_ancestral,
    "heun": sample_heun,
    "dpm_2": sample_dpm_2,
    "dpm_2_ancestral": sample_dpm_2_ancestral,
    "lms": sample_lms,
    "dpmpp_2s_ancestral": sample_dpmpp_2s_ancestral,
    "dpmpp_sde": sample_dpmpp_sde,
    "dpmpp_sde_gpu": sample_dpmpp_sde,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_2m_sde": sample_dpmpp_2m_sde,
    "dpmpp_2m_sde_gpu": sample_dpmpp_2m_sde,
    "dpmpp_2m_sde_heun": sample_dpmpp_2m_sde_heun,
    "dpmpp_2m_sde_heun_gpu": sample_dpmpp_2m_sde_heun,
    "dpmpp_3m_sde": sample_dpmpp_3m_sde,
    "dpmpp_3m_sde_gpu": sample_dpmpp_3m_sde,
    "ddpm": sample_ddpm,
    "lcm": sample_lcm,
    "ddim": sample_euler,  # ComfyUI's "ddim" is Euler (plus seeded noise for the inpainting blend)
    "uni_pc": sample_uni_pc,
    "uni_pc_bh2": sample_uni_pc_bh2,
}
SAMPLER_NAMES: list[str] = list(SAMPLER_FUNCTIONS)

# Samplers that, under KSampler, compute steps+1 sigmas and drop the second-to-last one (ComfyUI).
DISCARD_PENULTIMATE_SIGMA_SAMPLERS = frozenset({"dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"})


@dataclass(frozen=True)
class Sampler:
    """A SAMPLER value (ComfyUI's KSamplerSelect output): an update rule by name plus its options.

    `options` are passed as keyword arguments (e.g. eta, s_noise, r, solver_type).
    """

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in SAMPLER_FUNCTIONS:
            raise ValueError(f"unknown sampler {self.name!r}; choose one of {', '.join(SAMPLER_NAMES)}")

    @property
    def function(self) -> Callable[..., torch.Tensor]:
        return SAMPLER_FUNCTIONS[self.name]

    @property
    def random_inpaint_noise(self) -> bool:
        """ComfyUI's "ddim" blends masked regions with its own seeded noise instead of the initial noise."""
        return self.name == "ddim"

    def __call__(self, model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
                 callback: SamplerCallback | None = None) -> torch.Tensor:
        return self.function(model, x, sigmas, extra_args=extra_args, callback=callback, **self.options)
