"""Sample a LATENT: the entry point behind the KSampler, KSamplerAdvanced and SamplerCustomAdvanced nodes.

    out = sample(model, latent, positive, negative, seed=..., steps=20, cfg=8.0,
                 sampler_name="euler", scheduler="normal")

does what ComfyUI's KSampler does: seeded initial noise, the scheduler's sigmas (the last steps+1 of
int(steps/denoise) for denoise < 1; one extra step computed and the penultimate sigma dropped for
dpm_2, dpm_2_ancestral and uni_pc), KSamplerAdvanced's start/end steps and leftover noise, CFG,
and the sampler. `sample_custom` is SamplerCustomAdvanced: the same loop from its parts (a noise
source, a guider, a sampler and sigmas), and the two give identical latents for the same settings.
"""
from __future__ import annotations

from typing import Any

import torch

from .diffusion_model import DiffusionModel
from .guidance import BasicGuider, CFGGuider
from .model_sampling import ModelSamplingDiscrete
from .noise import DisableNoise, RandomNoise, prepare_noise
from .previews import StepCallback, StepInfo
from .samplers import DISCARD_PENULTIMATE_SIGMA_SAMPLERS, SAMPLER_NAMES, Sampler
from .schedulers import SCHEDULER_NAMES, basic_scheduler, calculate_sigmas

__all__ = [
    "sample", "sample_custom", "add_noise", "ksampler_sigmas", "basic_scheduler", "calculate_sigmas",
    "CFGGuider", "BasicGuider", "Sampler", "RandomNoise", "DisableNoise", "StepInfo",
    "SAMPLER_NAMES", "SCHEDULER_NAMES",
]


def ksampler_sigmas(model_sampling: ModelSamplingDiscrete, scheduler: str, steps: int,
                    sampler_name: str = "euler", denoise: float = 1.0) -> torch.Tensor:
    """The sigmas KSampler uses for `steps` steps at `denoise` (ComfyUI's KSampler.set_steps)."""
    if steps < 1:
        raise ValueError(f"KSampler: steps must be at least 1, got {steps}")

    def schedule(n: int) -> torch.Tensor:
        if sampler_name in DISCARD_PENULTIMATE_SIGMA_SAMPLERS:
            sigmas = calculate_sigmas(model_sampling, scheduler, n + 1)
            return torch.cat([sigmas[:-2], sigmas[-1:]])
        return calculate_sigmas(model_sampling, scheduler, n)

    if denoise is None or denoise > 0.9999:
        return schedule(steps)
    if denoise <= 0.0:
        return torch.zeros(0)
    return schedule(int(steps / denoise))[-(steps + 1):]


def _check_latent(latent: Any) -> torch.Tensor:
    if not isinstance(latent, dict) or not isinstance(latent.get("samples"), torch.Tensor):
        raise TypeError("latent must be a LATENT dict {'samples': Tensor[B, C, H, W], ...}")
    samples = latent["samples"]
    if samples.ndim != 4:
        raise ValueError(f"latent 'samples' must be [batch, channels, height, width], got shape {tuple(samples.shape)}")
    return samples


def sample(model: DiffusionModel, latent: dict, positive: Any, negative: Any, *, seed: int, steps: int,
           cfg: float, sampler_name: str, scheduler: str, denoise: float = 1.0, add_noise: bool = True,
           start_step: int | None = None, end_step: int | None = None, return_with_leftover_noise: bool = False,
           callback: StepCallback | None = None, noise: torch.Tensor | None = None,
           sigmas: torch.Tensor | None = None, sampler: Sampler | None = None,
           max_batch_area: int | None = None) -> dict:
    """Sample a LATENT dict with KSampler / KSamplerAdvanced semantics; returns a new LATENT dict.

    seed: initial noise (and the sampler's own noise); add_noise=False starts from the latent as is.
    start_step/end_step: run only steps [start_step, end_step) of the schedule; unless
    return_with_leftover_noise, the last step still goes to σ = 0 (KSamplerAdvanced).
    noise / sigmas / sampler: override the seeded noise, the scheduler's sigmas, or the sampler
    (a `Sampler` with options) — sampler_name still picks the penultimate-sigma rule.
    callback: called after every step with a `StepInfo` (raise from it to interrupt).
    max_batch_area: memory budget of one U-Net call (batch × latent h × w; None = unbounded).
    """
    latent_image = _check_latent(latent)
    if sampler_name not in SAMPLER_NAMES:
        raise ValueError(f"KSampler: unknown sampler_name {sampler_name!r}; choose one of {', '.join(SAMPLER_NAMES)}")
    if scheduler not in SCHEDULER_NAMES and sigmas is None:
        raise ValueError(f"KSampler: unknown scheduler {scheduler!r}; choose one of {', '.join(SCHEDULER_NAMES)}")
    if noise is None:
        if add_noise:
            noise = prepare_noise(latent_image, seed, latent.get("batch_index"))
        else:
            noise = torch.zeros(latent_image.shape, dtype=torch.float32)
    if sigmas is None:
        sigmas = ksampler_sigmas(model.model_sampling, scheduler, steps, sampler_name, denoise)
    sigmas = sigmas.detach().float().cpu().clone()

    if end_step is not None and end_step < len(sigmas) - 1:
        sigmas = sigmas[: end_step + 1]
        if not return_with_leftover_noise:
            sigmas[-1] = 0
    if start_step is not None:
        if start_step < len(sigmas) - 1:
            sigmas = sigmas[start_step:]
        else:
            out = dict(latent)
            out["samples"] = latent_image.clone()
            return out

    guider = CFGGuider(model, positive, negative, cfg, max_batch_area=max_batch_area)
    samples = guider.sample(noise, latent_image, sampler or Sampler(sampler_name), sigmas,
                            denoise_mask=latent.get("noise_mask"), callback=callback, seed=seed)
    out = dict(latent)
    out["samples"] = samples.to(latent_image.device)
    return out


def sample_custom(noise: RandomNoise | DisableNoise, guider: CFGGuider, sampler: Sampler, sigmas: torch.Tensor,
                  latent: dict, callback: StepCallback | None = None, seed: int | None = None) -> tuple[dict, dict]:
    """SamplerCustomAdvanced (and SamplerCustom): returns (output, denoised_output) LATENT dicts.

    denoised_output is the model's last denoised estimate (the output itself if no step ran).
    `seed` seeds the sampler's own noise (default: the noise source's seed).
    """
    latent_image = _check_latent(latent)
    last: dict[str, torch.Tensor] = {}

    def keep_denoised(info: StepInfo) -> None:
        last["x0"] = info.denoised
        if callback is not None:
            callback(info)

    samples = guider.sample(noise.generate_noise(latent), latent_image, sampler, sigmas,
                            denoise_mask=latent.get("noise_mask"), callback=keep_denoised,
                            seed=noise.seed if seed is None else seed)
    out = dict(latent)
    out["samples"] = samples.to(latent_image.device)
    denoised = out
    if "x0" in last:
        denoised = dict(latent)
        denoised["samples"] = guider.model.process_out(last["x0"].float()).to(latent_image.device)
    return out, denoised


def add_noise(model: DiffusionModel, noise: RandomNoise | DisableNoise, sigmas: torch.Tensor, latent: dict) -> dict:
    """ComfyUI's AddNoise: the latent noised to the schedule's span |σ_first − σ_last| (σ_first for a
    one-sigma schedule), x = latent + noise·σ in the model's scaled space; an empty schedule leaves it.

    An all-zero latent is not scaled in (as for sampling); non-finite values become 0.
    """
    latent_image = _check_latent(latent)
    if len(sigmas) == 0:
        return latent
    noise_t = noise.generate_noise(latent).float()
    scale = (sigmas[0] - sigmas[-1]).abs() if len(sigmas) > 1 else sigmas[0]
    start = latent_image.float()
    if torch.count_nonzero(start) > 0:
        start = model.process_in(start)
    noisy = model.process_out(model.model_sampling.noise_scaling(scale.float().cpu(), noise_t, start.cpu()))
    out = dict(latent)
    out["samples"] = torch.nan_to_num(noisy, nan=0.0, posinf=0.0, neginf=0.0)
    return out

