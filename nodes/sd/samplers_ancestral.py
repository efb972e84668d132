"""Ancestral samplers: each step moves deterministically to σ_down and adds fresh seeded noise of size
σ_up (σ_down² + σ_up² = σ_{i+1}², see `ancestral_step`): Euler ancestral, DPM-Solver-2 ancestral,
DPM-Solver++(2S) ancestral, DDPM, LCM, and the CFG++ forms (Chung et al. 2024, arXiv:2406.08070)
whose step restarts from the guided D along the unconditional prediction's direction.
"""
from __future__ import annotations

import numpy as np
import torch

from .noise import ancestral_generator
from .resize import common_upscale
from .samplers_common import (ancestral_noise, ancestral_step, dpm_solver_1, half_log_snr, report, sigma_at,
                              to_d, with_uncond)


@torch.no_grad()
def sample_euler_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None,
                           eta=1.0, s_noise=1.0, noise_sampler=None):
    """Euler step down to σ_down, then add noise of size σ_up (ancestral sampling)."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = ancestral_noise(x, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigma_down == 0:
            x = denoised
        else:
            d = to_d(x, sigmas[i], denoised)
            x = x + d * (sigma_down - sigmas[i]) + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_euler_ancestral_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None,
                                  eta=1.0, s_noise=1.0, noise_sampler=None):
    """Euler ancestral with CFG++: x' = D + σ_down·(x − U)/σ + σ_up·noise (U the unconditional
    prediction, D the guided one); onto σ = 0 it returns D."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = ancestral_noise(x, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    denoise = with_uncond(model, extra_args)
    for i in range(len(sigmas) - 1):
        denoised, uncond = denoise(x, sigmas[i] * s_in)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        x = denoised + to_d(x, sigmas[i], uncond) * sigma_down
        if eta > 0 and s_noise > 0:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_euler_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """Euler with CFG++: x' = D + σ'·(x − U)/σ."""
    return sample_euler_ancestral_cfg_pp(model, x, sigmas, extra_args, callback, disable, eta=0.0, s_noise=0.0)


@torch.no_grad()
def sample_euler_cfg_pp_alternative(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """SamplerEulerCFGpp's "alternative" rule: Euler on the slope (x − 2D + U)/σ, i.e. the ordinary
    slope minus the guidance (D − U) over σ; the step onto σ = 0 included (it lands on 2D − U)."""
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    denoise = with_uncond(model, extra_args)
    for i in range(len(sigmas) - 1):
        denoised, uncond = denoise(x, sigmas[i] * s_in)
        d = to_d(x - denoised + uncond, sigmas[i], denoised)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        x = x + d * (sigmas[i + 1] - sigmas[i])
    return x


@torch.no_grad()
def sample_dpm_2_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None,
                           eta=1.0, s_noise=1.0, noise_sampler=None):
    """DPM-Solver-2 step down to σ_down, then add noise of size σ_up."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = ancestral_noise(x, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
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
    noise_sampler = ancestral_noise(x, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
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
def sample_dpmpp_2s_ancestral_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None,
                                     eta=1.0, s_noise=1.0, noise_sampler=None):
    """DPM-Solver++(2S) ancestral with CFG++: both sub-steps start from x + (D − U) (the guidance moved
    onto the state), the midpoint one with D, the full one with the midpoint's D₂."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = ancestral_noise(x, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    denoise = with_uncond(model, extra_args)
    for i in range(len(sigmas) - 1):
        denoised, uncond = denoise(x, sigmas[i] * s_in)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigma_down == 0:
            x = denoised
        else:
            lam, lam_down = half_log_snr(sigmas[i]), half_log_snr(sigma_down)
            sigma_mid = sigma_at(lam + (lam_down - lam) / 2)
            shifted = x + (denoised - uncond)
            x_2 = dpm_solver_1(shifted, sigmas[i], sigma_mid, denoised)
            denoised_2, _ = denoise(x_2, sigma_mid * s_in)
            x = dpm_solver_1(shifted, sigmas[i], sigma_at(lam_down), denoised_2)
        if sigmas[i + 1] > 0:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_ddpm(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    """DDPM's ancestral step (Ho et al. 2020, Alg. 2) with the ᾱ's implied by consecutive sigmas."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = ancestral_noise(x, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, sigma * s_in, **extra_args)
        report(callback, x, i, sigma, sigma, denoised)
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
    noise_sampler = ancestral_noise(x, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        x = denoised
        if sigmas[i + 1] > 0:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * sigmas[i + 1]
    return x


def lcm_upscale_factors(steps: int, total_upscale: float, upscale_steps: int | None) -> np.ndarray:
    """The size factor after each of the first steps: linspace(1, total_upscale, n)[1:], with n =
    max(steps//2 + 1, 2) by default (steps = number of sigmas), else min(upscale_steps + 1, steps + 1)."""
    if upscale_steps is None:
        n = max(steps // 2 + 1, 2)
    else:
        n = min(upscale_steps + 1, steps + 1)
    return np.linspace(1.0, total_upscale, n)[1:]


@torch.no_grad()
def sample_lcm_upscale(model, x, sigmas, extra_args=None, callback=None, disable=None,
                       total_upscale=2.0, upscale_method="bislerp", upscale_steps=None):
    """LCM sampling that grows the latent: after step i the denoised latent is resized to
    factor_i × the start size (`lcm_upscale_factors`) before the fresh noise σ_{i+1}·n is added.

    The noise is drawn from the seeded ancestral generator at each step's size (ComfyUI draws it
    from torch's global generator, so its result depends on what ran before).
    """
    extra_args = {} if extra_args is None else extra_args
    generator = ancestral_generator(x.device, extra_args.get("seed"))
    factors = lcm_upscale_factors(len(sigmas), total_upscale, upscale_steps)
    height, width = x.shape[-2:]
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * x.new_ones([x.shape[0]]), **extra_args)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        x = denoised
        if i < len(factors):
            x = common_upscale(x, round(width * factors[i]), round(height * factors[i]), upscale_method)
        if sigmas[i + 1] > 0:
            x = x + sigmas[i + 1] * torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
    return x
