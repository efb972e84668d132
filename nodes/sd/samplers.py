"""Samplers: update rules that walk a latent down a schedule of sigmas to a clean sample.

Every sampler has k-diffusion's signature

    sample_<name>(model, x, sigmas, extra_args=None, callback=None, disable=None, **options) -> x

where `model(x, sigma, **extra_args)` returns the denoised estimate D(x; σ) for a batch of σ, and
`callback` (if given) receives {"x", "i", "sigma", "sigma_hat", "denoised"} once per step. A
callback that raises stops sampling at once (that is how an interrupt works). `extra_args["seed"]`
seeds the noise of ancestral and SDE samplers exactly as ComfyUI does (see `noise.py`);
`extra_args["model_sampling"]` is the model's noise schedule (SA-Solver's default τ interval).

The rules live in one module per family (samplers_karras, samplers_exponential, samplers_ancestral,
samplers_sde, samplers_dpm_solver, samplers_unipc; shared helpers in samplers_common); this module
is the registry: ComfyUI's sampler names, in the order of its KSampler list, and the `Sampler` value.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .samplers_ancestral import (sample_ddpm, sample_dpm_2_ancestral, sample_dpmpp_2s_ancestral,
                                 sample_dpmpp_2s_ancestral_cfg_pp, sample_euler_ancestral,
                                 sample_euler_ancestral_cfg_pp, sample_euler_cfg_pp,
                                 sample_euler_cfg_pp_alternative, sample_lcm, sample_lcm_upscale)
from .samplers_common import Denoiser, SamplerCallback
from .samplers_dpm_solver import sample_dpm_adaptive, sample_dpm_fast
from .samplers_exponential import (sample_dpmpp_2m, sample_dpmpp_2m_cfg_pp, sample_exp_heun_2_x0,
                                   sample_exp_heun_2_x0_sde, sample_res_multistep, sample_res_multistep_ancestral,
                                   sample_res_multistep_ancestral_cfg_pp, sample_res_multistep_cfg_pp,
                                   sample_seeds_2, sample_seeds_3)
from .samplers_karras import (sample_deis, sample_dpm_2, sample_euler, sample_gradient_estimation,
                              sample_gradient_estimation_cfg_pp, sample_heun, sample_heunpp2, sample_ipndm,
                              sample_ipndm_v, sample_lms)
from .samplers_sde import (sample_dpmpp_2m_sde, sample_dpmpp_2m_sde_heun, sample_dpmpp_3m_sde, sample_dpmpp_sde,
                           sample_er_sde, sample_sa_solver, sample_sa_solver_pece)
from .samplers_unipc import sample_uni_pc, sample_uni_pc_bh2

# ComfyUI's "*_gpu" names differ only in keeping the Brownian tree on the latent's device; here the
# tree always lives on the CPU, which is identical on CPU (and differs from ComfyUI on CUDA).
SAMPLER_FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "euler": sample_euler,
    "euler_cfg_pp": sample_euler_cfg_pp,
    "euler_ancestral": sample_euler_ancestral,
    "euler_ancestral_cfg_pp": sample_euler_ancestral_cfg_pp,
    "heun": sample_heun,
    "heunpp2": sample_heunpp2,
    "exp_heun_2_x0": sample_exp_heun_2_x0,
    "exp_heun_2_x0_sde": sample_exp_heun_2_x0_sde,
    "dpm_2": sample_dpm_2,
    "dpm_2_ancestral": sample_dpm_2_ancestral,
    "lms": sample_lms,
    "dpm_fast": sample_dpm_fast,
    "dpm_adaptive": sample_dpm_adaptive,
    "dpmpp_2s_ancestral": sample_dpmpp_2s_ancestral,
    "dpmpp_2s_ancestral_cfg_pp": sample_dpmpp_2s_ancestral_cfg_pp,
    "dpmpp_sde": sample_dpmpp_sde,
    "dpmpp_sde_gpu": sample_dpmpp_sde,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_2m_cfg_pp": sample_dpmpp_2m_cfg_pp,
    "dpmpp_2m_sde": sample_dpmpp_2m_sde,
    "dpmpp_2m_sde_gpu": sample_dpmpp_2m_sde,
    "dpmpp_2m_sde_heun": sample_dpmpp_2m_sde_heun,
    "dpmpp_2m_sde_heun_gpu": sample_dpmpp_2m_sde_heun,
    "dpmpp_3m_sde": sample_dpmpp_3m_sde,
    "dpmpp_3m_sde_gpu": sample_dpmpp_3m_sde,
    "ddpm": sample_ddpm,
    "lcm": sample_lcm,
    "ipndm": sample_ipndm,
    "ipndm_v": sample_ipndm_v,
    "deis": sample_deis,
    "res_multistep": sample_res_multistep,
    "res_multistep_cfg_pp": sample_res_multistep_cfg_pp,
    "res_multistep_ancestral": sample_res_multistep_ancestral,
    "res_multistep_ancestral_cfg_pp": sample_res_multistep_ancestral_cfg_pp,
    "gradient_estimation": sample_gradient_estimation,
    "gradient_estimation_cfg_pp": sample_gradient_estimation_cfg_pp,
    "er_sde": sample_er_sde,
    "seeds_2": sample_seeds_2,
    "seeds_3": sample_seeds_3,
    "sa_solver": sample_sa_solver,
    "sa_solver_pece": sample_sa_solver_pece,
    "ddim": sample_euler,  # ComfyUI's "ddim" is Euler (plus seeded noise for the inpainting blend)
    "uni_pc": sample_uni_pc,
    "uni_pc_bh2": sample_uni_pc_bh2,
}
SAMPLER_NAMES: list[str] = list(SAMPLER_FUNCTIONS)

NODE_SAMPLER_FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "lcm_upscale": sample_lcm_upscale,
    "euler_cfg_pp_alternative": sample_euler_cfg_pp_alternative,
}
"""Rules that only a parametrised sampler node offers (SamplerLCMUpscale, SamplerEulerCFGpp)."""

# Samplers that, under KSampler, compute steps+1 sigmas and drop the second-to-last one (ComfyUI).
DISCARD_PENULTIMATE_SIGMA_SAMPLERS = frozenset({"dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"})


@dataclass(frozen=True)
class Sampler:
    """A SAMPLER value (KSamplerSelect's and the Sampler* nodes' output): an update rule by name plus
    its options, passed as keyword arguments (e.g. eta, s_noise, r, solver_type)."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in SAMPLER_FUNCTIONS and self.name not in NODE_SAMPLER_FUNCTIONS:
            raise ValueError(f"unknown sampler {self.name!r}; choose one of {', '.join(SAMPLER_NAMES)}")

    @property
    def function(self) -> Callable[..., torch.Tensor]:
        return SAMPLER_FUNCTIONS.get(self.name) or NODE_SAMPLER_FUNCTIONS[self.name]

    @property
    def random_inpaint_noise(self) -> bool:
        """ComfyUI's "ddim" blends masked regions with its own seeded noise instead of the initial noise."""
        return self.name == "ddim"

    def __call__(self, model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
                 callback: SamplerCallback | None = None) -> torch.Tensor:
        return self.function(model, x, sigmas, extra_args=extra_args, callback=callback, **self.options)
