"""Exponential integrators in the half-log-SNR λ = −log σ with data prediction: DPM-Solver++(2M)
(Lu et al. 2022b) and its CFG++ form, the RES multistep solver (Zhang et al. 2023, arXiv:2308.02157)
with its ancestral and CFG++ forms, and SEEDS-2/-3 (Gonzalez et al. 2023, arXiv:2305.14267) with the
exponential Heun methods that are special cases of SEEDS-2.

All integrate x' = (σ'/σ)·x − (e^(−h) − 1)·D exactly for constant D and correct for its change; the
stochastic ones (SEEDS with η > 0) decay x by e^(−ηh) more and add matching noise. α = 1 throughout
(SD's discrete VP models; see samplers_common).
"""
from __future__ import annotations

import torch

from .samplers_common import (ancestral_noise, ancestral_step, h_phi_1, h_phi_2, half_log_snr, report,
                              sigma_at, to_d, with_uncond)


@torch.no_grad()
def sample_dpmpp_2m(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """DPM-Solver++(2M): second-order multistep in λ, extrapolating D from the previous step."""
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    old_denoised = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
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
def sample_dpmpp_2m_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """DPM-Solver++(2M) with CFG++ (Chung et al. 2024, as ComfyUI runs it): the decaying part of x is
    re-anchored on the unconditional prediction, x' = D + e^(−h)(x − U) − (e^(−h) − 1)/(2r)·(D − U_prev),
    the second-order term from the previous step's U (first-order to start and onto σ = 0, x' = D)."""
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    denoise = with_uncond(model, extra_args)
    old_uncond = None
    for i in range(len(sigmas) - 1):
        denoised, uncond = denoise(x, sigmas[i] * s_in)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            h = half_log_snr(sigmas[i + 1]) - half_log_snr(sigmas[i])
            x = denoised + torch.exp(-h) * (x - uncond)
            if old_uncond is not None:
                r = (half_log_snr(sigmas[i]) - half_log_snr(sigmas[i - 1])) / h
                x = x - torch.expm1(-h) / (2 * r) * (denoised - old_uncond)
        old_uncond = uncond
    return x


# -- RES multistep ---------------------------------------------------------------------------------
def _phi_1(t: torch.Tensor) -> torch.Tensor:
    return torch.expm1(t) / t


def _phi_2(t: torch.Tensor) -> torch.Tensor:
    return (_phi_1(t) - 1.0) / t


def res_multistep(model, x, sigmas, extra_args=None, callback=None, s_noise=1.0, noise_sampler=None,
                  eta=1.0, cfg_pp=False):
    """Second-order RES multistep (arXiv:2308.02157) toward σ_down of an ancestral split, then noise σ_up.

    The step from λ to λ' = λ(σ_down) uses the current and the previous D with exponential weights
    b₁ = φ₁(−h) − φ₂(−h)/c₂, b₂ = φ₂(−h)/c₂, c₂ = (λ_{i−1} − λ(σ_down of the previous step))/h;
    first step and the step onto σ = 0 are Euler. CFG++: U drives the step, x is shifted by D − U.
    """
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = ancestral_noise(x, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    denoise = with_uncond(model, extra_args) if cfg_pp else None
    old_denoised = old_sigma_down = None
    for i in range(len(sigmas) - 1):
        if cfg_pp:
            denoised, uncond = denoise(x, sigmas[i] * s_in)
        else:
            denoised = uncond = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigma_down == 0 or old_denoised is None:
            if cfg_pp:
                x = denoised + to_d(x, sigmas[i], uncond) * sigma_down
            else:
                x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            lam = half_log_snr(sigmas[i])
            h = half_log_snr(sigma_down) - lam
            c2 = (half_log_snr(sigmas[i - 1]) - half_log_snr(old_sigma_down)) / h
            phi_1, phi_2 = _phi_1(-h), _phi_2(-h)
            b1 = torch.nan_to_num(phi_1 - phi_2 / c2, nan=0.0)
            b2 = torch.nan_to_num(phi_2 / c2, nan=0.0)
            if cfg_pp:
                x = x + (denoised - uncond)
            x = torch.exp(-h) * x + h * (b1 * uncond + b2 * old_denoised)
        if sigmas[i + 1] > 0 and sigma_up:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
        old_denoised, old_sigma_down = uncond, sigma_down
    return x


@torch.no_grad()
def sample_res_multistep(model, x, sigmas, extra_args=None, callback=None, disable=None, s_noise=1.0,
                         noise_sampler=None):
    """RES second-order multistep, deterministic."""
    return res_multistep(model, x, sigmas, extra_args, callback, s_noise, noise_sampler, eta=0.0)


@torch.no_grad()
def sample_res_multistep_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None, s_noise=1.0,
                                noise_sampler=None):
    """RES multistep with CFG++."""
    return res_multistep(model, x, sigmas, extra_args, callback, s_noise, noise_sampler, eta=0.0, cfg_pp=True)


@torch.no_grad()
def sample_res_multistep_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0,
                                   s_noise=1.0, noise_sampler=None):
    """RES multistep toward σ_down with fresh noise σ_up every step."""
    return res_multistep(model, x, sigmas, extra_args, callback, s_noise, noise_sampler, eta=eta)


@torch.no_grad()
def sample_res_multistep_ancestral_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None,
                                          eta=1.0, s_noise=1.0, noise_sampler=None):
    """Ancestral RES multistep with CFG++."""
    return res_multistep(model, x, sigmas, extra_args, callback, s_noise, noise_sampler, eta=eta, cfg_pp=True)


# -- SEEDS (stochastic explicit exponential derivative-free solvers) ---------------------------------
def _sde_decay(x, sigma_from, sigma_to, h_part, eta):
    """The SDE's deterministic part over a sub-step: (σ_to/σ_from)·e^(−η·h_part)·x."""
    return sigma_to / sigma_from * (-h_part * eta).exp() * x


def _noise_segment(previous, segment, noise_sampler, sigma_from, sigma_to):
    """The unit noise at the end of a sub-step over which the SDE decays by e^(segment) (segment =
    −η·Δλ ≤ 0): the previous sub-step's noise decayed, plus fresh noise √(1 − e^(2·segment))·n, so the
    noises of a step's stages are correlated like one Brownian path."""
    fresh = segment.mul(2).expm1().neg().sqrt() * noise_sampler(sigma_from, sigma_to)
    return fresh if previous is None else previous * segment.exp() + fresh


@torch.no_grad()
def sample_seeds_2(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                   noise_sampler=None, r=0.5, solver_type="phi_1"):
    """SEEDS-2 (VP, data prediction): a stage at λ_s + r·h, then the full step with D blended
    ("phi_1": D + (D₂ − D)/(2r)) or weighted ("phi_2": b₂ = hφ₂/r, b₁ = hφ₁ − b₂). With η > 0 each
    sub-step decays x by e^(−ηh) and adds noise √(1 − e^(−2ηh))·σ; the second sub-step's noise
    continues the first's (correlated as a Brownian path). Onto σ = 0 it returns D.
    """
    if solver_type not in ("phi_1", "phi_2"):
        raise ValueError(f"seeds_2: solver_type must be 'phi_1' or 'phi_2', got {solver_type!r}")
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = ancestral_noise(x, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    inject = eta > 0 and s_noise > 0
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        lam_s, lam_t = half_log_snr(sigmas[i]), half_log_snr(sigmas[i + 1])
        h = lam_t - lam_s
        h_eta = h * (eta + 1)
        sigma_1 = sigma_at(torch.lerp(lam_s, lam_t, r))
        x_2 = _sde_decay(x, sigmas[i], sigma_1, r * h, eta) - h_phi_1(-r * h_eta) * denoised
        if inject:
            sde_noise = _noise_segment(None, -r * h * eta, noise_sampler, sigmas[i], sigma_1)
            x_2 = x_2 + sde_noise * sigma_1 * s_noise
        denoised_2 = model(x_2, sigma_1 * s_in, **extra_args)
        if solver_type == "phi_1":
            update = h_phi_1(-h_eta) * torch.lerp(denoised, denoised_2, 1 / (2 * r))
        else:
            b2 = h_phi_2(-h_eta) / r
            update = (h_phi_1(-h_eta) - b2) * denoised + b2 * denoised_2
        x = _sde_decay(x, sigmas[i], sigmas[i + 1], h, eta) - update
        if inject:
            sde_noise = _noise_segment(sde_noise, (r - 1) * h * eta, noise_sampler, sigma_1, sigmas[i + 1])
            x = x + sde_noise * sigmas[i + 1] * s_noise
    return x


@torch.no_grad()
def sample_seeds_3(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                   noise_sampler=None, r_1=1.0 / 3, r_2=2.0 / 3):
    """SEEDS-3: stages at λ_s + r₁h (first order) and λ_s + r₂h (a₂ = (r₂/r₁)·hφ₂(r₂h)/…, using D₂),
    then the full step with b₃ = hφ₂/r₂ on D₃ and b₁ = hφ₁ − b₃ on D. Noise as in SEEDS-2, three
    correlated segments per step. Onto σ = 0 it returns D."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = ancestral_noise(x, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    inject = eta > 0 and s_noise > 0
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        lam_s, lam_t = half_log_snr(sigmas[i]), half_log_snr(sigmas[i + 1])
        h = lam_t - lam_s
        h_eta = h * (eta + 1)
        sigma_1, sigma_2 = sigma_at(torch.lerp(lam_s, lam_t, r_1)), sigma_at(torch.lerp(lam_s, lam_t, r_2))
        x_2 = _sde_decay(x, sigmas[i], sigma_1, r_1 * h, eta) - h_phi_1(-r_1 * h_eta) * denoised
        if inject:
            sde_noise = _noise_segment(None, -r_1 * h * eta, noise_sampler, sigmas[i], sigma_1)
            x_2 = x_2 + sde_noise * sigma_1 * s_noise
        denoised_2 = model(x_2, sigma_1 * s_in, **extra_args)
        a_2 = r_2 / r_1 * h_phi_2(-r_2 * h_eta)
        a_1 = h_phi_1(-r_2 * h_eta) - a_2
        x_3 = _sde_decay(x, sigmas[i], sigma_2, r_2 * h, eta) - (a_1 * denoised + a_2 * denoised_2)
        if inject:
            sde_noise = _noise_segment(sde_noise, (r_1 - r_2) * h * eta, noise_sampler, sigma_1, sigma_2)
            x_3 = x_3 + sde_noise * sigma_2 * s_noise
        denoised_3 = model(x_3, sigma_2 * s_in, **extra_args)
        b_3 = h_phi_2(-h_eta) / r_2
        b_1 = h_phi_1(-h_eta) - b_3
        x = _sde_decay(x, sigmas[i], sigmas[i + 1], h, eta) - (b_1 * denoised + b_3 * denoised_3)
        if inject:
            sde_noise = _noise_segment(sde_noise, (r_2 - 1) * h * eta, noise_sampler, sigma_2, sigmas[i + 1])
            x = x + sde_noise * sigmas[i + 1] * s_noise
    return x


@torch.no_grad()
def sample_exp_heun_2_x0(model, x, sigmas, extra_args=None, callback=None, disable=None, solver_type="phi_2"):
    """Exponential Heun (second order, data prediction, in λ): SEEDS-2 with r = 1 and η = 0."""
    return sample_seeds_2(model, x, sigmas, extra_args, callback, disable, eta=0.0, s_noise=0.0, r=1.0,
                          solver_type=solver_type)


@torch.no_grad()
def sample_exp_heun_2_x0_sde(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0,
                             s_noise=1.0, noise_sampler=None, solver_type="phi_2"):
    """Stochastic exponential Heun: SEEDS-2 with r = 1."""
    return sample_seeds_2(model, x, sigmas, extra_args, callback, disable, eta=eta, s_noise=s_noise,
                          noise_sampler=noise_sampler, r=1.0, solver_type=solver_type)
