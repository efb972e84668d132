"""Sampling nodes, whole (KSampler, KSamplerAdvanced) and in parts (RandomNoise, DisableNoise,
CFGGuider, BasicGuider, KSamplerSelect, BasicScheduler, SplitSigmas, SamplerCustomAdvanced).

The work is nodes/sd/ksampler.py's; for the same settings the parts give the same latent as the
whole. Every sampling node reports each step to the run (``ctx.progress``, with a cheap preview of
the denoised latent), so a stop request takes effect after the current step.

The sampler and scheduler lists are written out here so that listing nodes does not import torch;
a test keeps them equal to nodes/sd's.
"""
from __future__ import annotations

from typing import Any

from nodegraph import Combo, Float, Int, RunContext, node
from nodegraph.registry import InputSpec

from .runtime import on_device, step_reporter

SAMPLER_NAMES = (
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2", "exp_heun_2_x0",
    "exp_heun_2_x0_sde", "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde",
    "dpmpp_2m_sde_gpu", "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm",
    "lcm", "ipndm", "ipndm_v", "deis", "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp", "er_sde", "seeds_2",
    "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc", "uni_pc_bh2",
)
SCHEDULER_NAMES = ("simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
                   "linear_quadratic", "kl_optimal")
MAX_SEED = 2**64 - 1


def seed_param(name: str) -> Any:
    return Int(name, 0, min=0, max=MAX_SEED, control_after_run="randomize",
               description="the random seed of the initial noise (and of the sampler's own noise)")


def steps_param() -> Any:
    return Int("steps", 20, min=1, max=10000, description="number of sampling steps")


def cfg_param() -> Any:
    return Float("cfg", 8.0, min=0.0, max=100.0, step=0.1,
                 description="classifier-free guidance scale: how strongly to follow the prompt")


def _denoise() -> Any:
    return Float("denoise", 1.0, min=0.0, max=1.0, step=0.01,
                 description="how much of the schedule to run: 1 = from pure noise, less keeps more "
                             "of the input latent (image-to-image)")


_SAMPLER = Combo("sampler_name", SAMPLER_NAMES, "euler",
                 description="the sampling algorithm (ComfyUI's list; the *_cfg_pp ones use CFG++ and want a low cfg)")
_SCHEDULER = Combo("scheduler", SCHEDULER_NAMES, "simple",
                   description="how the noise levels are spaced over the steps (ComfyUI's list and default)")


def _inputs(*names_types: tuple[str, str]) -> list[InputSpec]:
    return [InputSpec(n, t) for n, t in names_types]


@node("KSampler", display_name="KSampler", category="sampling",
      inputs=_inputs(("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                     ("latent_image", "LATENT")),
      params=[seed_param("seed"), steps_param(), cfg_param(), _SAMPLER, _SCHEDULER, _denoise()],
      outputs={"LATENT": "LATENT"})
def ksampler(model: Any, positive: Any, negative: Any, latent_image: dict, seed: int, steps: int,
             cfg: float, sampler_name: str, scheduler: str, denoise: float, ctx: RunContext) -> dict:
    """Denoise a latent with a model, guided by a positive and a negative prompt.

    Starts from seeded noise (added to the input latent, scaled by ``denoise``), runs ``steps`` steps of
    ``sampler_name`` on ``scheduler``'s noise levels with classifier-free guidance ``cfg``. The same
    checkpoint, settings and seed give ComfyUI's image (in fp32).
    """
    from nodes.sd.ksampler import sample

    ctx.check_interrupt()
    with on_device(ctx.options, model.unet):
        return sample(model, latent_image, positive, negative, seed=seed, steps=steps, cfg=cfg,
                      sampler_name=sampler_name, scheduler=scheduler, denoise=denoise,
                      callback=step_reporter(ctx))


@node("KSamplerAdvanced", display_name="KSampler (Advanced)", category="sampling",
      inputs=_inputs(("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                     ("latent_image", "LATENT")),
      params=[Combo("add_noise", ("enable", "disable")), seed_param("noise_seed"), steps_param(), cfg_param(),
              _SAMPLER, _SCHEDULER,
              Int("start_at_step", 0, min=0, max=10000, description="first step of the schedule to run"),
              Int("end_at_step", 10000, min=0, max=10000, description="step to stop at (exclusive)"),
              Combo("return_with_leftover_noise", ("disable", "enable"))],
      outputs={"LATENT": "LATENT"})
def ksampler_advanced(model: Any, positive: Any, negative: Any, latent_image: dict, add_noise: str,
                      noise_seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str,
                      start_at_step: int, end_at_step: int, return_with_leftover_noise: str,
                      ctx: RunContext) -> dict:
    """KSampler over a part of the schedule: steps ``start_at_step`` to ``end_at_step`` of ``steps``.

    ``add_noise`` disable starts from the latent as it is (e.g. the leftover noise of a previous
    pass); ``return_with_leftover_noise`` enable stops at the noise level reached instead of
    finishing at zero noise (to hand over to another sampler, e.g. SDXL base → refiner).
    """
    from nodes.sd.ksampler import sample

    ctx.check_interrupt()
    with on_device(ctx.options, model.unet):
        return sample(model, latent_image, positive, negative, seed=noise_seed, steps=steps, cfg=cfg,
                      sampler_name=sampler_name, scheduler=scheduler, denoise=1.0,
                      add_noise=add_noise != "disable", start_step=start_at_step, end_step=end_at_step,
                      return_with_leftover_noise=return_with_leftover_noise == "enable",
                      callback=step_reporter(ctx))


@node("RandomNoise", display_name="RandomNoise", category="sampling/custom_sampling/noise",
      params=[seed_param("noise_seed")], outputs={"NOISE": "NOISE"})
def random_noise(noise_seed: int) -> Any:
    """Seeded initial noise (the same noise KSampler draws for that seed)."""
    from nodes.sd.ksampler import RandomNoise

    return RandomNoise(noise_seed)


@node("DisableNoise", display_name="DisableNoise", category="sampling/custom_sampling/noise",
      outputs={"NOISE": "NOISE"})
def disable_noise() -> Any:
    """No initial noise: sampling starts from the latent as it is."""
    from nodes.sd.ksampler import DisableNoise

    return DisableNoise()


@node("CFGGuider", display_name="CFGGuider", category="sampling/custom_sampling/guiders",
      inputs=_inputs(("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING")),
      params=[cfg_param()], outputs={"GUIDER": "GUIDER"})
def cfg_guider(model: Any, positive: Any, negative: Any, cfg: float) -> Any:
    """A model guided by a positive and a negative prompt with classifier-free guidance scale ``cfg``."""
    from nodes.sd.ksampler import CFGGuider

    return CFGGuider(model, positive, negative, cfg)


@node("BasicGuider", display_name="BasicGuider", category="sampling/custom_sampling/guiders",
      inputs=_inputs(("model", "MODEL"), ("conditioning", "CONDITIONING")), outputs={"GUIDER": "GUIDER"})
def basic_guider(model: Any, conditioning: Any) -> Any:
    """A model guided by one prompt, without classifier-free guidance (for distilled models such as Turbo)."""
    from nodes.sd.ksampler import BasicGuider

    return BasicGuider(model, conditioning)


@node("KSamplerSelect", display_name="KSamplerSelect", category="sampling/custom_sampling/samplers",
      params=[_SAMPLER], outputs={"SAMPLER": "SAMPLER"})
def ksampler_select(sampler_name: str) -> Any:
    """A sampling algorithm by name."""
    from nodes.sd.ksampler import Sampler

    return Sampler(sampler_name)


@node("BasicScheduler", display_name="BasicScheduler", category="sampling/custom_sampling/schedulers",
      inputs={"model": "MODEL"}, params=[_SCHEDULER, steps_param(), _denoise()], outputs={"SIGMAS": "SIGMAS"})
def basic_scheduler_node(model: Any, scheduler: str, steps: int, denoise: float) -> Any:
    """The noise levels (sigmas) of ``steps`` steps of ``scheduler`` for the model, ending at 0; with
    ``denoise`` < 1 the last ``steps`` steps of a longer schedule."""
    from nodes.sd.ksampler import basic_scheduler

    return basic_scheduler(model.model_sampling, scheduler, steps, denoise)


@node("SplitSigmas", display_name="SplitSigmas", category="sampling/custom_sampling/sigmas",
      inputs={"sigmas": "SIGMAS"},
      params=[Int("step", 0, min=0, max=10000, description="the step at which to split")],
      outputs={"high_sigmas": "SIGMAS", "low_sigmas": "SIGMAS"})
def split_sigmas(sigmas: Any, step: int) -> tuple[Any, Any]:
    """Split a schedule at ``step``: the high part is its first ``step`` steps, the low part the rest
    (both keep the sigma at the split, so run one after the other they cover the whole schedule)."""
    return sigmas[:step + 1], sigmas[step:]


@node("SamplerCustomAdvanced", display_name="SamplerCustomAdvanced", category="sampling/custom_sampling",
      inputs=_inputs(("noise", "NOISE"), ("guider", "GUIDER"), ("sampler", "SAMPLER"), ("sigmas", "SIGMAS"),
                     ("latent_image", "LATENT")),
      outputs={"output": "LATENT", "denoised_output": "LATENT"})
def sampler_custom_advanced(noise: Any, guider: Any, sampler: Any, sigmas: Any, latent_image: dict,
                            ctx: RunContext) -> tuple[dict, dict]:
    """Sample from its parts: a noise source, a guider, a sampler and a noise schedule.

    ``output`` is the sampled latent; ``denoised_output`` the model's last estimate of the clean latent
    (the same unless the schedule stops above zero noise).
    """
    from nodes.sd.ksampler import sample_custom

    ctx.check_interrupt()
    with on_device(ctx.options, guider.model.unet):
        return sample_custom(noise, guider, sampler, sigmas, latent_image, callback=step_reporter(ctx))


NODES = [ksampler, ksampler_advanced, random_noise, disable_noise, cfg_guider, basic_guider,
         ksampler_select, basic_scheduler_node, split_sigmas, sampler_custom_advanced]
