"""Custom-sampling nodes with ComfyUI's names, params and results: SamplerCustom, AddNoise,
DualCFGGuider, the scheduler nodes (KarrasScheduler … GITSScheduler) and the sigma nodes
(SplitSigmasDenoise, FlipSigmas, SetFirstSigma, ExtendIntermediateSigmas, SamplingPercentToSigma,
ManualSigmas). The parametrised sampler nodes are in sampler_nodes.py; KSamplerSelect, BasicScheduler,
SplitSigmas, the noise sources and SamplerCustomAdvanced in sampling.py.

The work is nodes/sd's (ksampler, dual_cfg, schedulers, sigma_schedules); a SIGMAS value is a 1-D
float32 tensor on the CPU.
"""
from __future__ import annotations

from typing import Any

from nodegraph import Boolean, Combo, Float, Int, RunContext, String, node
from nodegraph.registry import InputSpec
from nodegraph.errors import InputError

from .runtime import on_device, step_reporter
from .sampling import cfg_param, seed_param, steps_param

SCHEDULERS = "sampling/custom_sampling/schedulers"
SIGMAS = "sampling/custom_sampling/sigmas"
SD_SIGMA_MAX, SD_SIGMA_MIN = 14.614642, 0.0291675


def _inputs(*names_types: tuple[str, str]) -> list[InputSpec]:
    return [InputSpec(n, t) for n, t in names_types]


def check_sigmas(sigmas: Any, name: str = "sigmas") -> Any:
    """The SIGMAS tensor, or a ValueError saying what the input should be."""
    import torch

    if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1:
        got = tuple(sigmas.shape) if isinstance(sigmas, torch.Tensor) else type(sigmas).__name__
        raise InputError(f"{name} must be a SIGMAS value (a 1-D list of noise levels), got {got}; connect a "
                         "scheduler node's output")
    return sigmas


def _sigma_range(rho: float | None = None) -> list:
    params = [Float("sigma_max", SD_SIGMA_MAX, min=0.0, max=5000.0, step=0.01,
                    description="the first (highest) noise level; SD1/SD2/SDXL's is 14.614642"),
              Float("sigma_min", SD_SIGMA_MIN, min=0.0, max=5000.0, step=0.01,
                    description="the last noise level before 0; SD1/SD2/SDXL's is 0.0291675")]
    if rho is not None:
        params.append(Float("rho", rho, min=0.0, max=100.0, step=0.01, description="the curve's exponent ρ"))
    return params


def _denoise() -> Any:
    return Float("denoise", 1.0, min=0.0, max=1.0, step=0.01,
                 description="run only the last part of the schedule (less keeps more of the input latent)")


# -- sampling -----------------------------------------------------------------------------------------
@node("SamplerCustom", category="sampling/custom_sampling",
      inputs=_inputs(("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                     ("sampler", "SAMPLER"), ("sigmas", "SIGMAS"), ("latent_image", "LATENT")),
      params=[Boolean("add_noise", True, description="start from seeded noise added to the latent; off "
                                                     "starts from the latent as it is"),
              seed_param("noise_seed"), cfg_param()],
      outputs={"output": "LATENT", "denoised_output": "LATENT"})
def sampler_custom(model: Any, positive: Any, negative: Any, sampler: Any, sigmas: Any, latent_image: dict,
                   add_noise: bool, noise_seed: int, cfg: float, ctx: RunContext) -> tuple[dict, dict]:
    """Sample with classifier-free guidance from a sampler and a noise schedule (a SAMPLER and SIGMAS
    input), the one-node form of RandomNoise + CFGGuider + SamplerCustomAdvanced.

    output is the sampled latent, denoised_output the model's last estimate of the clean latent. With
    add_noise off the sampler's own noise (ancestral/SDE samplers) is still seeded by noise_seed.
    """
    from nodes.sd.ksampler import CFGGuider, DisableNoise, RandomNoise, sample_custom

    check_sigmas(sigmas)
    ctx.check_interrupt()
    noise = RandomNoise(noise_seed) if add_noise else DisableNoise()
    with on_device(ctx.options, model.unet):
        return sample_custom(noise, CFGGuider(model, positive, negative, cfg), sampler, sigmas, latent_image,
                             callback=step_reporter(ctx), seed=noise_seed)


@node("AddNoise", category="sampling/custom_sampling/noise",
      inputs=_inputs(("model", "MODEL"), ("noise", "NOISE"), ("sigmas", "SIGMAS"), ("latent_image", "LATENT")),
      outputs={"LATENT": "LATENT"})
def add_noise_node(model: Any, noise: Any, sigmas: Any, latent_image: dict) -> dict:
    """Add the noise source's noise to a latent, scaled to the schedule's span (first sigma minus last):
    the latent a sampler would start from at that noise level (use with DisableNoise downstream)."""
    from nodes.sd.ksampler import add_noise

    return add_noise(model, noise, check_sigmas(sigmas), latent_image)


@node("DualCFGGuider", category="sampling/custom_sampling/guiders",
      inputs=_inputs(("model", "MODEL"), ("cond1", "CONDITIONING"), ("cond2", "CONDITIONING"),
                     ("negative", "CONDITIONING")),
      params=[Float("cfg_conds", 8.0, min=0.0, max=100.0, step=0.1,
                    description="guidance of cond1 away from cond2"),
              Float("cfg_cond2_negative", 8.0, min=0.0, max=100.0, step=0.1,
                    description="guidance of cond2 away from the negative"),
              Combo("style", ("regular", "nested"),
                    description="regular: the two guidance terms add up; nested: cond1's guidance is "
                                "applied first and the result is guided away from the negative")],
      outputs={"GUIDER": "GUIDER"})
def dual_cfg_guider(model: Any, cond1: Any, cond2: Any, negative: Any, cfg_conds: float,
                    cfg_cond2_negative: float, style: str) -> Any:
    """A model guided by two prompts and a negative: cond2 is guided away from the negative with
    cfg_cond2_negative, and cond1 away from cond2 with cfg_conds (e.g. a style prompt and a subject prompt)."""
    from nodes.sd.dual_cfg import DualCFGGuider

    return DualCFGGuider(model, cond1, cond2, negative, cfg_conds, cfg_cond2_negative, style)


# -- schedulers ---------------------------------------------------------------------------------------
@node("KarrasScheduler", category=SCHEDULERS, params=[steps_param(), *_sigma_range(rho=7.0)],
      outputs={"SIGMAS": "SIGMAS"})
def karras_scheduler(steps: int, sigma_max: float, sigma_min: float, rho: float) -> Any:
    """Karras et al.'s schedule: noise levels evenly spaced in σ^(1/ρ) from sigma_max to sigma_min, then 0."""
    from nodes.sd.schedulers import karras_sigmas

    return karras_sigmas(steps, sigma_min, sigma_max, rho)


@node("ExponentialScheduler", category=SCHEDULERS, params=[steps_param(), *_sigma_range()],
      outputs={"SIGMAS": "SIGMAS"})
def exponential_scheduler(steps: int, sigma_max: float, sigma_min: float) -> Any:
    """Noise levels evenly spaced in log σ from sigma_max to sigma_min, then 0."""
    from nodes.sd.schedulers import exponential_sigmas

    return exponential_sigmas(steps, sigma_min, sigma_max)


@node("PolyexponentialScheduler", category=SCHEDULERS, params=[steps_param(), *_sigma_range(rho=1.0)],
      outputs={"SIGMAS": "SIGMAS"})
def polyexponential_scheduler(steps: int, sigma_max: float, sigma_min: float, rho: float) -> Any:
    """log σ falling from log sigma_max to log sigma_min as r^ρ for r from 1 to 0 (ρ = 1: exponential;
    larger ρ spends more steps at low noise), then 0."""
    from nodes.sd.sigma_schedules import polyexponential

    return polyexponential(steps, sigma_min, sigma_max, rho)


@node("LaplaceScheduler", category=SCHEDULERS,
      params=[steps_param(), *_sigma_range(),
              Float("mu", 0.0, min=-10.0, max=10.0, step=0.1, description="the centre μ of log σ"),
              Float("beta", 0.5, min=0.0, max=10.0, step=0.1, description="the spread β of log σ")],
      outputs={"SIGMAS": "SIGMAS"})
def laplace_scheduler(steps: int, sigma_max: float, sigma_min: float, mu: float, beta: float) -> Any:
    """log σ at evenly spaced quantiles of a Laplace(μ, β) distribution, clamped to [sigma_min, sigma_max]
    (more steps near e^μ). As in ComfyUI the schedule has steps values and ends at sigma_min, not 0."""
    from nodes.sd.sigma_schedules import laplace

    return laplace(steps, sigma_min, sigma_max, mu, beta)


@node("VPScheduler", category=SCHEDULERS,
      params=[steps_param(),
              Float("beta_d", 19.9, min=0.0, max=5000.0, step=0.01, description="the VP SDE's β_d"),
              Float("beta_min", 0.1, min=0.0, max=5000.0, step=0.01, description="the VP SDE's β_min"),
              Float("eps_s", 0.001, min=0.0, max=1.0, step=0.0001, description="the last time step ε_s")],
      outputs={"SIGMAS": "SIGMAS"})
def vp_scheduler(steps: int, beta_d: float, beta_min: float, eps_s: float) -> Any:
    """The continuous variance-preserving schedule σ(t) = √(exp(β_d·t²/2 + β_min·t) − 1) for t from 1
    to eps_s, then 0."""
    from nodes.sd.sigma_schedules import vp

    return vp(steps, beta_d, beta_min, eps_s)


@node("BetaSamplingScheduler", category=SCHEDULERS, inputs={"model": "MODEL"},
      params=[steps_param(),
              Float("alpha", 0.6, min=0.0, max=50.0, step=0.01, description="the Beta distribution's α"),
              Float("beta", 0.6, min=0.0, max=50.0, step=0.01, description="the Beta distribution's β")],
      outputs={"SIGMAS": "SIGMAS"})
def beta_sampling_scheduler(model: Any, steps: int, alpha: float, beta: float) -> Any:
    """The model's training timesteps at quantiles of a Beta(α, β) distribution (the "beta" scheduler with
    its shape exposed; α = β < 1 puts more steps at both ends), then 0."""
    from nodes.sd.schedulers import beta as beta_schedule

    return beta_schedule(model.model_sampling, steps, alpha, beta).float().cpu()


@node("SDTurboScheduler", category=SCHEDULERS, inputs={"model": "MODEL"},
      params=[Int("steps", 1, min=1, max=10, description="number of steps (SD Turbo needs 1 to 4)"), _denoise()],
      outputs={"SIGMAS": "SIGMAS"})
def sd_turbo_scheduler(model: Any, steps: int, denoise: float) -> Any:
    """SD Turbo's schedule: the noise levels of timesteps 999, 899, …, 99, entered 10 − int(10·denoise)
    steps in, then 0."""
    from nodes.sd.sigma_schedules import sd_turbo

    return sd_turbo(model.model_sampling, steps, denoise)


@node("AlignYourStepsScheduler", category=SCHEDULERS,
      params=[Combo("model_type", ("SD1", "SDXL", "SVD"), description="the family the schedule was optimised for"),
              Int("steps", 10, min=1, max=10000, description="number of sampling steps"), _denoise()],
      outputs={"SIGMAS": "SIGMAS"})
def align_your_steps_scheduler(model_type: str, steps: int, denoise: float) -> Any:
    """NVIDIA's "Align Your Steps" schedule: 10-step noise levels optimised for the model family, spread
    log-linearly over other step counts; with denoise < 1 its last round(steps·denoise) steps."""
    from nodes.sd.sigma_schedules import align_your_steps

    return align_your_steps(model_type, steps, denoise)


@node("GITSScheduler", category=SCHEDULERS,
      params=[Float("coeff", 1.20, min=0.80, max=1.50, step=0.05,
                    description="the search's coefficient (0.80 to 1.50 in steps of 0.05)"),
              Int("steps", 10, min=2, max=1000, description="number of sampling steps"), _denoise()],
      outputs={"SIGMAS": "SIGMAS"})
def gits_scheduler(coeff: float, steps: int, denoise: float) -> Any:
    """The GITS schedule (Geometry-Inspired Time Scheduling, found by search for SD1.5) for coeff and
    steps; with denoise < 1 its last round(steps·denoise) steps."""
    from nodes.sd.sigma_schedules import gits

    return gits(coeff, steps, denoise)


# -- sigma nodes ----------------------------------------------------------------------------------------
@node("SplitSigmasDenoise", category=SIGMAS, inputs={"sigmas": "SIGMAS"}, params=[_denoise()],
      outputs={"high_sigmas": "SIGMAS", "low_sigmas": "SIGMAS"})
def split_sigmas_denoise(sigmas: Any, denoise: float) -> tuple[Any, Any]:
    """Split a schedule so that the low part is its last round(steps·denoise) steps (what a sampler with
    that denoise would run) and the high part the steps before; both keep the sigma at the split."""
    from nodes.sd.sigma_schedules import split_by_denoise

    return split_by_denoise(check_sigmas(sigmas), denoise)


@node("FlipSigmas", category=SIGMAS, inputs={"sigmas": "SIGMAS"}, outputs={"SIGMAS": "SIGMAS"})
def flip_sigmas(sigmas: Any) -> Any:
    """Reverse a schedule (to go from a clean latent back to noise, e.g. for inversion); a first sigma of
    0 becomes 0.0001."""
    from nodes.sd.sigma_schedules import flip

    return flip(check_sigmas(sigmas))


@node("SetFirstSigma", category=SIGMAS, inputs={"sigmas": "SIGMAS"},
      params=[Float("sigma", 136.0, min=0.0, max=20000.0, step=0.001, description="the new first sigma")],
      outputs={"SIGMAS": "SIGMAS"})
def set_first_sigma(sigmas: Any, sigma: float) -> Any:
    """Replace the first sigma of a schedule (the noise level sampling starts from)."""
    sigmas = check_sigmas(sigmas)
    if len(sigmas) == 0:
        raise InputError("sigmas is empty: there is no first sigma to set")
    out = sigmas.clone()
    out[0] = sigma
    return out


@node("ExtendIntermediateSigmas", category=SIGMAS, inputs={"sigmas": "SIGMAS"},
      params=[Int("steps", 2, min=1, max=100, description="each extended step becomes this many"),
              Float("start_at_sigma", -1.0, min=-1.0, max=20000.0, step=0.01,
                    description="extend steps starting at or below this sigma (-1: no limit)"),
              Float("end_at_sigma", 12.0, min=0.0, max=20000.0, step=0.01,
                    description="extend steps starting at or above this sigma"),
              Combo("spacing", ("linear", "cosine", "sine"),
                    description="where the new sigmas go: evenly (linear), nearer the step's end (cosine) "
                                "or nearer its start (sine)")],
      outputs={"SIGMAS": "SIGMAS"})
def extend_intermediate_sigmas(sigmas: Any, steps: int, start_at_sigma: float, end_at_sigma: float,
                               spacing: str) -> Any:
    """Split the steps of a schedule whose sigma lies between end_at_sigma and start_at_sigma into `steps`
    smaller steps each (more model calls where they matter)."""
    from nodes.sd.sigma_schedules import extend_intermediate

    return extend_intermediate(check_sigmas(sigmas), steps, start_at_sigma, end_at_sigma, spacing)


@node("SamplingPercentToSigma", category=SIGMAS, inputs={"model": "MODEL"},
      params=[Float("sampling_percent", 0.0, min=0.0, max=1.0, step=0.0001,
                    description="how far through sampling (0 = start, 1 = end)"),
              Boolean("return_actual_sigma", False,
                      description="at 0 and 1 give the model's largest and smallest sigma instead of the "
                                  "values used for interval checks (999999999.9 and 0)")],
      outputs={"sigma_value": "FLOAT"})
def sampling_percent_to_sigma(model: Any, sampling_percent: float, return_actual_sigma: bool) -> float:
    """The model's noise level after sampling_percent of the way (the sigma a start/end percent refers to)."""
    ms = model.model_sampling
    if return_actual_sigma and sampling_percent == 0.0:
        return float(ms.sigma_max)
    if return_actual_sigma and sampling_percent == 1.0:
        return float(ms.sigma_min)
    return float(ms.percent_to_sigma(sampling_percent))


@node("ManualSigmas", category=SIGMAS,
      params=[String("sigmas", "1, 0.5", description="the noise levels, highest first, separated by commas "
                                                     "(SD1/SD2/SDXL start at 14.6 and should end with 0)")],
      outputs={"SIGMAS": "SIGMAS"})
def manual_sigmas(sigmas: str) -> Any:
    """A schedule typed by hand: every number in the text, in order."""
    from nodes.sd.sigma_schedules import manual

    return manual(sigmas)


NODES = [sampler_custom, add_noise_node, dual_cfg_guider, karras_scheduler, exponential_scheduler,
         polyexponential_scheduler, laplace_scheduler, vp_scheduler, beta_sampling_scheduler, sd_turbo_scheduler,
         align_your_steps_scheduler, gits_scheduler, split_sigmas_denoise, flip_sigmas, set_first_sigma,
         extend_intermediate_sigmas, sampling_percent_to_sigma, manual_sigmas]
