"""Samplers that step the probability-flow ODE dx/dσ = (x − D(x; σ))/σ directly in σ (Karras et al.
2022): Euler, Heun, Heun++ ("heunpp2"), DPM-Solver-2, linear multistep, iPNDM (fixed and variable
step), DEIS and gradient estimation.

Each has k-diffusion's signature `sample_<name>(model, x, sigmas, extra_args=None, callback=None,
disable=None, **options)`; docstrings say where a rule follows ComfyUI rather than the textbook.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .samplers_common import ancestral_noise, churn, report, to_d, with_uncond


@torch.no_grad()
def sample_euler(model, x, sigmas, extra_args=None, callback=None, disable=None,
                 s_churn=0.0, s_tmin=0.0, s_tmax=float("inf"), s_noise=1.0, noise_sampler=None):
    """Euler's method on the probability-flow ODE (Karras et al. 2022, Alg. 2 with Euler steps).

    With s_churn > 0 the churn noise comes from the seeded noise sampler (ComfyUI: the global RNG).
    """
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    steps = len(sigmas) - 1
    churn_noise = ancestral_noise(x, extra_args, noise_sampler) if s_churn > 0 else None
    for i in range(steps):
        x, sigma_hat = churn(x, sigmas[i], steps, s_churn, s_tmin, s_tmax, s_noise, churn_noise)
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = to_d(x, sigma_hat, denoised)
        report(callback, x, i, sigmas[i], sigma_hat, denoised)
        x = x + d * (sigmas[i + 1] - sigma_hat)
    return x


@torch.no_grad()
def sample_heun(model, x, sigmas, extra_args=None, callback=None, disable=None,
                s_churn=0.0, s_tmin=0.0, s_tmax=float("inf"), s_noise=1.0, noise_sampler=None):
    """Heun's second-order method (Karras et al. 2022, Alg. 2); an Euler step onto σ = 0."""
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    steps = len(sigmas) - 1
    churn_noise = ancestral_noise(x, extra_args, noise_sampler) if s_churn > 0 else None
    for i in range(steps):
        x, sigma_hat = churn(x, sigmas[i], steps, s_churn, s_tmin, s_tmax, s_noise, churn_noise)
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = to_d(x, sigma_hat, denoised)
        report(callback, x, i, sigmas[i], sigma_hat, denoised)
        dt = sigmas[i + 1] - sigma_hat
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1] * s_in, **extra_args))
            x = x + (d + d_2) / 2 * dt
    return x


@torch.no_grad()
def sample_heunpp2(model, x, sigmas, extra_args=None, callback=None, disable=None,
                   s_churn=0.0, s_tmin=0.0, s_tmax=float("inf"), s_noise=1.0, noise_sampler=None):
    """Heun++ (sd-webui-samplers-scheduler's "heunpp2", as ComfyUI runs it): besides the slope d at σ̂,
    Euler predictions give slopes d₂ at σ_{i+1} and d₃ at σ_{i+2}; the step uses their blend with
    weights w₂ = σ_{i+1}/(3σ₀), w₃ = σ_{i+2}/(3σ₀), w₁ = 1 − w₂ − w₃ (σ₀ the schedule's first sigma).
    Before the last step only d₂ (w₂ = σ_{i+1}/(2σ₀)); the last step is Euler. Churn noise is seeded.
    """
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    steps, s_end = len(sigmas) - 1, sigmas[-1]
    churn_noise = ancestral_noise(x, extra_args, noise_sampler) if s_churn > 0 else None

    def slope(x_, sigma):
        return to_d(x_, sigma, model(x_, sigma * s_in, **extra_args))

    for i in range(steps):
        x, sigma_hat = churn(x, sigmas[i], steps, s_churn, s_tmin, s_tmax, s_noise, churn_noise)
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = to_d(x, sigma_hat, denoised)
        report(callback, x, i, sigmas[i], sigma_hat, denoised)
        dt = sigmas[i + 1] - sigma_hat
        if sigmas[i + 1] == s_end:
            x = x + d * dt
            continue
        x_2 = x + d * dt
        d_2 = slope(x_2, sigmas[i + 1])
        if sigmas[i + 2] == s_end:
            w_2 = sigmas[i + 1] / (2 * sigmas[0])
            x = x + ((1 - w_2) * d + w_2 * d_2) * dt
            continue
        d_3 = slope(x_2 + d_2 * (sigmas[i + 2] - sigmas[i + 1]), sigmas[i + 2])
        w_2, w_3 = sigmas[i + 1] / (3 * sigmas[0]), sigmas[i + 2] / (3 * sigmas[0])
        x = x + ((1 - w_2 - w_3) * d + w_2 * d_2 + w_3 * d_3) * dt
    return x


@torch.no_grad()
def sample_dpm_2(model, x, sigmas, extra_args=None, callback=None, disable=None,
                 s_churn=0.0, s_tmin=0.0, s_tmax=float("inf"), s_noise=1.0, noise_sampler=None):
    """DPM-Solver-2 in σ: the derivative at the log-midpoint σ_mid = √(σ σ') drives the full step."""
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    steps = len(sigmas) - 1
    churn_noise = ancestral_noise(x, extra_args, noise_sampler) if s_churn > 0 else None
    for i in range(steps):
        x, sigma_hat = churn(x, sigmas[i], steps, s_churn, s_tmin, s_tmax, s_noise, churn_noise)
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = to_d(x, sigma_hat, denoised)
        report(callback, x, i, sigmas[i], sigma_hat, denoised)
        if sigmas[i + 1] == 0:
            x = x + d * (sigmas[i + 1] - sigma_hat)
        else:
            sigma_mid = sigma_hat.log().lerp(sigmas[i + 1].log(), 0.5).exp()
            x_2 = x + d * (sigma_mid - sigma_hat)
            d_2 = to_d(x_2, sigma_mid, model(x_2, sigma_mid * s_in, **extra_args))
            x = x + d_2 * (sigmas[i + 1] - sigma_hat)
    return x


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
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            current = min(i + 1, order)
            coeffs = [lms_coefficient(current, t, i, j) for j in range(current)]
            x = x + sum(c * d for c, d in zip(coeffs, reversed(ds)))
    return x


# -- iPNDM (Zhang & Chen 2023, "Fast sampling of diffusion models with exponential integrator") ---
IPNDM_WEIGHTS = {1: (1.0,), 2: (3 / 2, -1 / 2), 3: (23 / 12, -16 / 12, 5 / 12),
                 4: (55 / 24, -59 / 24, 37 / 24, -9 / 24)}
"""Adams–Bashforth weights for the newest slope first (equal steps), by order."""


def ipndm_v_weights(h: list[float]) -> tuple[float, ...]:
    """Variable-step Adams–Bashforth weights of iPNDM-v, newest slope first.

    h = [h_n, h_{n−1}, …]: the step about to be taken and the previous ones (h_k = σ_{k+1} − σ_k,
    so all negative); the number of weights is len(h). Orders 2 and 3 reduce to Adams–Bashforth on
    equal steps; ComfyUI's order-4 weights (kept as they are) sum to 1 only on equal or geometric steps.
    """
    if len(h) == 1:
        return (1.0,)
    a = h[0] / h[1]
    if len(h) == 2:
        return (1 + a / 2, -a / 2)
    b = h[1] / h[2]
    t1 = (1 - h[0] / (3 * (h[0] + h[1])) * (h[0] * (h[0] + h[1])) / (h[1] * (h[1] + h[2]))) / 2
    if len(h) == 3:
        return (1 + a / 2 + t1, -a / 2 - (1 + b) * t1, t1 * b)
    c = h[1] * (h[1] + h[2]) / (h[2] * (h[2] + h[3]))
    t2 = (((1 - h[0] / (3 * (h[0] + h[1]))) / 2 + (1 - h[0] / (2 * (h[0] + h[1]))) * h[0] / (6 * (h[0] + h[1] + h[2])))
          * (h[0] * (h[0] + h[1]) * (h[0] + h[1] + h[2])) / (h[1] * (h[1] + h[2]) * (h[1] + h[2] + h[3])))
    return (1 + a / 2 + t1 + t2,
            -a / 2 - (1 + b) * t1 - (1 + b + c) * t2,
            t1 * b + (b + c * (1 + h[2] / h[3])) * t2,
            -t2 * c * b)


def _ipndm(model, x, sigmas, extra_args, callback, max_order, variable):
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    t = [float(s) for s in sigmas]
    slopes: list[torch.Tensor] = []  # newest last
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        slopes = (slopes + [to_d(x, sigmas[i], denoised)])[-max_order:]
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        order = min(max_order, i + 1)
        if variable:
            weights = ipndm_v_weights([t[i + 1 - k] - t[i - k] for k in range(order)])
        else:
            weights = IPNDM_WEIGHTS[order]
        x = x + (sigmas[i + 1] - sigmas[i]) * sum(w * d for w, d in zip(weights, reversed(slopes)))
    return x


@torch.no_grad()
def sample_ipndm(model, x, sigmas, extra_args=None, callback=None, disable=None, max_order=4):
    """Improved PNDM: Adams–Bashforth of up to `max_order` (≤ 4) on the slopes in σ, with equal-step
    weights whatever the spacing; orders 1, 2, … to start; the step onto σ = 0 returns D."""
    if not 1 <= max_order <= 4:
        raise ValueError(f"ipndm: max_order must be 1 to 4, got {max_order}")
    return _ipndm(model, x, sigmas, extra_args, callback, max_order, variable=False)


@torch.no_grad()
def sample_ipndm_v(model, x, sigmas, extra_args=None, callback=None, disable=None, max_order=4):
    """iPNDM with variable-step Adams–Bashforth weights (exact for the actual σ spacing)."""
    if not 1 <= max_order <= 4:
        raise ValueError(f"ipndm_v: max_order must be 1 to 4, got {max_order}")
    return _ipndm(model, x, sigmas, extra_args, callback, max_order, variable=True)


# -- DEIS (Zhang & Chen 2023), "tab" variant as ComfyUI runs it -------------------------------------
DEIS_VP = {"sigma_min": 0.002, "sigma_max": 80.0, "eps_s": 1e-3, "points": 10000}
"""ComfyUI maps σ to the time of a VP SDE fitted to EDM's default range (σ 0.002…80 at t = ε_s…1)
whatever the model's own range, and integrates each coefficient with a 10000-point Riemann sum."""


def deis_coefficients(sigmas: torch.Tensor, max_order: int) -> list[list[float]]:
    """DEIS "tab" weights: coefficient j of step i is ∫ ℓ_j(τ) (dσ/dτ) dτ over [t_i, t_{i+1}], ℓ_j the
    Lagrange basis in VP time through t_i, t_{i−1}, … (1 at t_{i−j}); empty for first-order steps.

    VP time: σ² + 1 = exp(β_min·t + β_d·t²/2) with β_d, β_min fitted to DEIS_VP; then
    dσ/dτ = −½ d(log ᾱ)/dτ / √(ᾱ(1 − ᾱ)), ᾱ = 1/(σ² + 1). Computed in float64 with ComfyUI's sum.
    """
    lo, hi, eps_s, n = DEIS_VP["sigma_min"], DEIS_VP["sigma_max"], DEIS_VP["eps_s"], DEIS_VP["points"]
    beta_d = 2 * (math.log(lo**2 + 1) / eps_s - math.log(hi**2 + 1)) / (eps_s - 1)
    beta_min = math.log(hi**2 + 1) - 0.5 * beta_d
    s = sigmas.detach().cpu().double().numpy()
    t = (np.sqrt(beta_min**2 + 2 * beta_d * np.log(s**2 + 1)) - beta_min) / beta_d
    coefficients: list[list[float]] = []
    for i in range(len(t) - 1):
        order = min(i + 1, max_order)
        if order == 1 or s[i + 1] <= 0:
            coefficients.append([])
            continue
        taus = np.linspace(t[i], t[i + 1], n)
        alpha = np.exp(-0.5 * taus**2 * beta_d - taus * beta_min)
        dsigma = 0.5 * (taus * beta_d + beta_min) / np.sqrt(alpha * (1 - alpha))
        nodes = [t[i - k] for k in range(order)]
        row = []
        for j in range(order):
            basis = np.ones_like(taus)
            for k in range(order):
                if k != j:
                    basis *= (taus - nodes[k]) / (nodes[j] - nodes[k])
            row.append(float(np.sum(dsigma * basis) * (t[i + 1] - t[i]) / n))
        coefficients.append(row)
    return coefficients


@torch.no_grad()
def sample_deis(model, x, sigmas, extra_args=None, callback=None, disable=None, max_order=3, deis_mode="tab"):
    """Diffusion Exponential Integrator Sampler: x' = x + Σ_j c_j·d_{i−j} over the last slopes with
    `deis_coefficients`; first-order (Euler) to start and onto σ = 0 (which lands on D)."""
    if deis_mode != "tab":
        raise ValueError(f"deis: only deis_mode 'tab' is supported (ComfyUI's), got {deis_mode!r}")
    if not 1 <= max_order <= 4:
        raise ValueError(f"deis: max_order must be 1 to 4, got {max_order}")
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    coefficients = deis_coefficients(sigmas, max_order)
    slopes: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        slopes = (slopes + [to_d(x, sigmas[i], denoised)])[-max_order:]
        if not coefficients[i]:
            x = x + (sigmas[i + 1] - sigmas[i]) * slopes[-1]
        else:
            x = x + sum(c * d for c, d in zip(coefficients[i], reversed(slopes)))
    return x


# -- gradient estimation (Permenter & Yuan 2024, "Interpreting and improving diffusion models ...") -
def _gradient_estimation(model, x, sigmas, extra_args, callback, ge_gamma, cfg_pp):
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    denoise = with_uncond(model, extra_args) if cfg_pp else None
    old_d = None
    for i in range(len(sigmas) - 1):
        if cfg_pp:
            denoised, uncond = denoise(x, sigmas[i] * s_in)
        else:
            denoised = uncond = model(x, sigmas[i] * s_in, **extra_args)
        d = to_d(x, sigmas[i], uncond)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            x = denoised + d * sigmas[i + 1] if cfg_pp else x + d * dt
            if old_d is not None:
                x = x + (ge_gamma - 1) * (d - old_d) * dt
        old_d = d
    return x


@torch.no_grad()
def sample_gradient_estimation(model, x, sigmas, extra_args=None, callback=None, disable=None, ge_gamma=2.0):
    """Euler plus a gradient-estimation term: d̄ = (γ − 1)(d_i − d_{i−1}) added with the step size
    (γ = 2 extrapolates the slope linearly); the last step onto σ = 0 returns D."""
    return _gradient_estimation(model, x, sigmas, extra_args, callback, ge_gamma, cfg_pp=False)


@torch.no_grad()
def sample_gradient_estimation_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None,
                                      ge_gamma=2.0):
    """Gradient estimation with CFG++ (Chung et al. 2024): the slope uses the unconditional
    prediction and the step restarts from the guided one, x' = D + σ'·(x − D_uncond)/σ."""
    return _gradient_estimation(model, x, sigmas, extra_args, callback, ge_gamma, cfg_pp=True)
