"""SDE samplers: DPM-Solver++ SDE (singlestep, 2M, 3M; Lu et al. 2022b, k-diffusion's forms) with
Brownian-tree noise, the extended reverse-time SDE solver ER-SDE (Cui et al. 2023, arXiv:2309.06169)
and the stochastic Adams solver SA-Solver (Xue et al. 2023, arXiv:2309.05019) with seeded per-step noise.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .samplers_common import (ancestral_noise, ancestral_step, brownian_noise, dpm_solver_1, half_log_snr,
                              model_sampling_of, report, sigma_at)


# -- SDE samplers (Brownian-tree noise) -----------------------------------------------------------
@torch.no_grad()
def sample_dpmpp_sde(model, x, sigmas, extra_args=None, callback=None, disable=None,
                     eta=1.0, s_noise=1.0, noise_sampler=None, r=1 / 2):
    """DPM-Solver++ (stochastic, singlestep): an ancestral DPM-Solver++(1) step to λ_s + r·h evaluates
    D there; the full ancestral step uses (1 − 1/(2r))·D + 1/(2r)·D_mid. Onto σ = 0: the denoised estimate."""
    if len(sigmas) <= 1:
        return x
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = brownian_noise(x, sigmas, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    fac = 1 / (2 * r)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
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
    noise_sampler = brownian_noise(x, sigmas, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    old_denoised, h, h_last = None, None, None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
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
    noise_sampler = brownian_noise(x, sigmas, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    denoised_1 = denoised_2 = None
    h = h_1 = h_2 = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
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


# -- ER-SDE-Solver ----------------------------------------------------------------------------------
def er_sde_noise_scaler(x: torch.Tensor) -> torch.Tensor:
    """ER-SDE's default noise scale function Φ(x) = x·(e^(x^0.3) + 10) (the paper's ER-SDE 5)."""
    return x * ((x**0.3).exp() + 10.0)


ER_SDE_SOLVER_TYPES = ("ER-SDE", "Reverse-time SDE", "ODE")


@dataclass(frozen=True)
class ERSDEScaler:
    """The noise scale functions of the SamplerER_SDE node, with stochastic strength η:
    "ER-SDE" x·(e^(x^0.3) + 10)^η, "Reverse-time SDE" x^(η+1), "ODE" x (no noise)."""

    solver_type: str
    eta: float = 1.0

    def __post_init__(self) -> None:
        if self.solver_type not in ER_SDE_SOLVER_TYPES:
            raise ValueError(f"er_sde: solver_type must be one of {', '.join(ER_SDE_SOLVER_TYPES)}, "
                             f"got {self.solver_type!r}")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.solver_type == "ER-SDE":
            return x * ((x**0.3).exp() + 10.0) ** self.eta
        if self.solver_type == "Reverse-time SDE":
            return x ** (self.eta + 1)
        return x


ER_SDE_POINTS = 200
"""Riemann-sum points of the stage-2/3 integrals (ComfyUI's choice)."""


@torch.no_grad()
def sample_er_sde(model, x, sigmas, extra_args=None, callback=None, disable=None, s_noise=1.0,
                  noise_sampler=None, noise_scaler=None, max_stage=3):
    """ER-SDE-Solver-3 (VP, data prediction) in the variable λ_ER = σ/α = σ, with noise scale Φ:

        x' = r·x + (1 − r)·D + (Δ + S₁·Φ(σ'))·D′ + (Δ²/2 + S₂·Φ(σ'))·D″ + √(σ'² − r²σ²)·n
        r = Φ(σ')/Φ(σ), Δ = σ' − σ, S₁ = ∫ 1/Φ, S₂ = ∫ (λ − σ)/Φ over [σ', σ] (200-point sums),

    D′, D″ divided differences of past D's in σ (stages 2 and 3 once there is history, up to
    max_stage). Onto σ = 0 it returns D.
    """
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = ancestral_noise(x, extra_args, noise_sampler)
    scaler = er_sde_noise_scaler if noise_scaler is None else noise_scaler
    s_in = x.new_ones([x.shape[0]])
    points = torch.arange(0, ER_SDE_POINTS, dtype=sigmas.dtype, device=sigmas.device)
    old_denoised = old_slope = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        stage = min(max_stage, i + 1)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            s, t = sigmas[i], sigmas[i + 1]
            r = scaler(t) / scaler(s)
            x = r * x + (1 - r) * denoised
            if stage >= 2:
                dt = t - s
                step = -dt / ER_SDE_POINTS
                positions = t + points * step
                scaled = scaler(positions)
                slope = (denoised - old_denoised) / (s - sigmas[i - 1])
                x = x + (dt + torch.sum(1 / scaled) * step * scaler(t)) * slope
                if stage >= 3:
                    curvature = (slope - old_slope) / ((s - sigmas[i - 2]) / 2)
                    s_u = torch.sum((positions - s) / scaled) * step
                    x = x + (dt**2 / 2 + s_u * scaler(t)) * curvature
                old_slope = slope
            if s_noise > 0:
                spread = (t**2 - s**2 * r**2).sqrt().nan_to_num(nan=0.0)
                x = x + noise_sampler(s, t) * s_noise * spread
        old_denoised = denoised
    return x


# -- SA-Solver --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SATau:
    """SA-Solver's stochasticity τ(σ): `eta` while start_sigma ≥ σ ≥ end_sigma, else 0 (an ODE step)."""

    start_sigma: float
    end_sigma: float
    eta: float = 1.0

    def __call__(self, sigma: torch.Tensor | float) -> float:
        if self.eta <= 0:
            return 0.0
        return float(self.eta) if self.start_sigma >= float(sigma) >= self.end_sigma else 0.0


def sa_solver_coefficients(lambdas: torch.Tensor, lam_s: float, lam_t: float, tau: float,
                           simple_order_2: bool = False, corrector: bool = False) -> torch.Tensor:
    """Weights b_j of the stochastic Adams step over [λ_s, λ_t] for the D's at `lambdas` (oldest first):
    b_j = ∫ (1+τ²)·e^(−(1+τ²)(λ_t − λ))·ℓ_j(λ) dλ, ℓ_j the Lagrange basis through `lambdas`
    (Gauss–Legendre quadrature in float64, exact to rounding for these smooth integrands).

    `simple_order_2` with two points uses the paper's simplified order-2 weights (its Appendix D).
    """
    nodes = [float(v) for v in lambdas]
    k = 1.0 + tau**2
    h = lam_t - lam_s
    if simple_order_2 and len(nodes) == 2:
        if corrector:
            b_1 = 0.5 * k * h
            return torch.tensor([-np.expm1(-h * k) - b_1, b_1], dtype=torch.float64)
        b_2 = 0.5 * k * h**2 / (nodes[-2] - lam_s)
        return torch.tensor([b_2, -np.expm1(-h * k) - b_2], dtype=torch.float64)
    points, weights = np.polynomial.legendre.leggauss(24)
    lam = lam_s + (points + 1) * h / 2
    kernel = k * np.exp(-k * (lam_t - lam)) * weights * h / 2
    out = []
    for j, node in enumerate(nodes):
        basis = np.ones_like(lam)
        for m, other in enumerate(nodes):
            if m != j:
                basis *= (lam - other) / (node - other)
        out.append(float(np.sum(kernel * basis)))
    return torch.tensor(out, dtype=torch.float64)


def _adams(preds: list[torch.Tensor], b: torch.Tensor) -> torch.Tensor:
    return sum(w * d for w, d in zip(b.tolist(), preds))


@torch.no_grad()
def sample_sa_solver(model, x, sigmas, extra_args=None, callback=None, disable=None, tau_func=None,
                     s_noise=1.0, noise_sampler=None, predictor_order=3, corrector_order=4, use_pece=False,
                     simple_order_2=False):
    """SA-Solver: stochastic Adams predictor (order ≤ predictor_order) and corrector (≤ corrector_order,
    from step 1, re-using the next step's evaluation) in λ, data prediction:

        x' = (σ'/σ)·e^(−τ²h)·x + Σ_j b_j·D_j + σ'·√(1 − e^(−2τ²h))·s_noise·n

    τ = tau_func(σ') (default: 1 between 20% and 80% of the schedule, else 0). Orders drop near the
    end of a schedule that reaches 0; `use_pece` re-evaluates D at the corrected state (one more model
    call per step). Returns the state at the last sigma (D when that is 0).
    """
    if len(sigmas) <= 1:
        return x
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = ancestral_noise(x, extra_args, noise_sampler)
    if tau_func is None:
        ms = model_sampling_of(extra_args)
        tau_func = SATau(ms.percent_to_sigma(0.2), ms.percent_to_sigma(0.8), eta=1.0)
    s_in = x.new_ones([x.shape[0]])
    lambdas = half_log_snr(sigmas.double()).tolist()
    steps = len(sigmas) - 1
    ends_at_zero = float(sigmas[-1]) == 0
    x_pred, h, tau, noise = x, 0.0, 0.0, None
    preds: list[torch.Tensor] = []
    for i in range(steps):
        denoised = model(x_pred, sigmas[i] * s_in, **extra_args)
        report(callback, x_pred, i, sigmas[i], sigmas[i], denoised)
        preds = (preds + [denoised])[-max(predictor_order, corrector_order):]
        p = min(predictor_order, len(preds))
        c = 0 if i == 0 or (sigmas[i + 1] == 0 and not use_pece) else min(corrector_order, len(preds))
        if ends_at_zero:
            p, c = min(p, steps - 1 - i), min(c, steps - i)
        if c == 0:
            x = x_pred
        else:  # correct the step from x (the state at σ_{i−1}) with the newest D included
            b = sa_solver_coefficients(lambdas[i - c + 1:i + 1], lambdas[i - 1], lambdas[i], tau, simple_order_2, True)
            x = sigmas[i] / sigmas[i - 1] * np.exp(-(tau**2) * h) * x + _adams(preds[-c:], b)
            if noise is not None:
                x = x + noise
            if use_pece:
                denoised = preds[-1] = model(x, sigmas[i] * s_in, **extra_args)
        if sigmas[i + 1] == 0:
            x_pred = denoised
            continue
        tau = tau_func(sigmas[i + 1])
        b = sa_solver_coefficients(lambdas[i - p + 1:i + 1], lambdas[i], lambdas[i + 1], tau, simple_order_2)
        h = lambdas[i + 1] - lambdas[i]
        x_pred = sigmas[i + 1] / sigmas[i] * np.exp(-(tau**2) * h) * x + _adams(preds[-p:], b)
        noise = None
        if tau > 0 and s_noise > 0:
            noise = noise_sampler(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * np.sqrt(-np.expm1(-2 * tau**2 * h)) * s_noise
            x_pred = x_pred + noise
    return x_pred


@torch.no_grad()
def sample_sa_solver_pece(model, x, sigmas, extra_args=None, callback=None, disable=None, tau_func=None,
                          s_noise=1.0, noise_sampler=None, predictor_order=3, corrector_order=4,
                          simple_order_2=False):
    """SA-Solver in PECE mode (predict, evaluate, correct, evaluate): two model calls per step."""
    return sample_sa_solver(model, x, sigmas, extra_args, callback, disable, tau_func, s_noise, noise_sampler,
                            predictor_order, corrector_order, use_pece=True, simple_order_2=simple_order_2)
