"""Parametrised sampler nodes (ComfyUI's Sampler* nodes): a SAMPLER with its options set, for
SamplerCustom / SamplerCustomAdvanced. Names, params (order, defaults, ranges) and the options they set
are ComfyUI's; the update rules are nodes/sd's samplers.

A "noise_device" of gpu or cpu picks ComfyUI's *_gpu or plain sampler name; here both keep the
Brownian tree on the CPU, so they give the same result.
"""
from __future__ import annotations

from typing import Any

from nodegraph import Boolean, Combo, Float, Int, node

CATEGORY = "sampling/custom_sampling/samplers"
NOISE_DEVICES = ("gpu", "cpu")


def _eta(default: float = 1.0, maximum: float = 100.0) -> Any:
    return Float("eta", default, min=0.0, max=maximum, step=0.01,
                 description="how much fresh noise each step adds (0: none, deterministic)")


def _s_noise(maximum: float = 100.0) -> Any:
    return Float("s_noise", 1.0, min=0.0, max=maximum, step=0.01, description="scale of the added noise")


def _noise_device() -> Any:
    return Combo("noise_device", NOISE_DEVICES, description="where ComfyUI draws the SDE noise (same result here)")


def _sampler(name: str, **options: Any) -> Any:
    from nodes.sd.samplers import Sampler

    return Sampler(name, options)


@node("SamplerEulerAncestral", category=CATEGORY, params=[_eta(), _s_noise()], outputs={"SAMPLER": "SAMPLER"})
def sampler_euler_ancestral(eta: float, s_noise: float) -> Any:
    """Euler ancestral with its noise amount (eta) and noise scale set."""
    return _sampler("euler_ancestral", eta=eta, s_noise=s_noise)


@node("SamplerEulerAncestralCFGPP", display_name="SamplerEulerAncestralCFG++", category=CATEGORY,
      params=[_eta(maximum=1.0), _s_noise(maximum=10.0)], outputs={"SAMPLER": "SAMPLER"})
def sampler_euler_ancestral_cfg_pp(eta: float, s_noise: float) -> Any:
    """Euler ancestral with CFG++ (the step follows the unconditional prediction; use a low cfg, about 1–2)."""
    return _sampler("euler_ancestral_cfg_pp", eta=eta, s_noise=s_noise)


@node("SamplerEulerCFGpp", display_name="SamplerEulerCFG++", category=CATEGORY,
      params=[Combo("version", ("regular", "alternative"),
                    description="regular: the euler_cfg_pp sampler; alternative: Euler on the slope "
                                "(x − 2·cond + uncond)/σ")],
      outputs={"SAMPLER": "SAMPLER"})
def sampler_euler_cfg_pp(version: str) -> Any:
    """Euler with CFG++ (use a low cfg, about 1–2), in ComfyUI's regular or alternative form."""
    return _sampler("euler_cfg_pp_alternative" if version == "alternative" else "euler_cfg_pp")


@node("SamplerLMS", category=CATEGORY,
      params=[Int("order", 4, min=1, max=100, description="how many past steps the multistep rule uses")],
      outputs={"SAMPLER": "SAMPLER"})
def sampler_lms(order: int) -> Any:
    """Linear multistep with its order set."""
    return _sampler("lms", order=order)


@node("SamplerDPMPP_3M_SDE", category=CATEGORY, params=[_eta(), _s_noise(), _noise_device()],
      outputs={"SAMPLER": "SAMPLER"})
def sampler_dpmpp_3m_sde(eta: float, s_noise: float, noise_device: str) -> Any:
    """DPM++ 3M SDE with its noise amount and scale set."""
    return _sampler("dpmpp_3m_sde" if noise_device == "cpu" else "dpmpp_3m_sde_gpu", eta=eta, s_noise=s_noise)


@node("SamplerDPMPP_2M_SDE", category=CATEGORY,
      params=[Combo("solver_type", ("midpoint", "heun"), description="the second-order correction's form"),
              _eta(), _s_noise(), _noise_device()],
      outputs={"SAMPLER": "SAMPLER"})
def sampler_dpmpp_2m_sde(solver_type: str, eta: float, s_noise: float, noise_device: str) -> Any:
    """DPM++ 2M SDE with its correction type, noise amount and scale set."""
    return _sampler("dpmpp_2m_sde" if noise_device == "cpu" else "dpmpp_2m_sde_gpu", eta=eta, s_noise=s_noise,
                    solver_type=solver_type)


@node("SamplerDPMPP_SDE", category=CATEGORY,
      params=[_eta(), _s_noise(),
              Float("r", 0.5, min=0.0, max=100.0, step=0.01, description="where in the step (in log σ) the "
                                                                         "intermediate evaluation sits"),
              _noise_device()],
      outputs={"SAMPLER": "SAMPLER"})
def sampler_dpmpp_sde(eta: float, s_noise: float, r: float, noise_device: str) -> Any:
    """DPM++ SDE (singlestep) with its noise amount, scale and midpoint ratio set."""
    return _sampler("dpmpp_sde" if noise_device == "cpu" else "dpmpp_sde_gpu", eta=eta, s_noise=s_noise, r=r)


@node("SamplerDPMPP_2S_Ancestral", category=CATEGORY, params=[_eta(), _s_noise()], outputs={"SAMPLER": "SAMPLER"})
def sampler_dpmpp_2s_ancestral(eta: float, s_noise: float) -> Any:
    """DPM++ 2S ancestral with its noise amount and scale set."""
    return _sampler("dpmpp_2s_ancestral", eta=eta, s_noise=s_noise)


def _tol(name: str, default: float, what: str) -> Any:
    return Float(name, default, min=0.0, max=100.0, step=0.01, description=what)


@node("SamplerDPMAdaptative", category=CATEGORY,
      params=[Int("order", 3, min=2, max=3, description="2: DPM-Solver-12, 3: DPM-Solver-23"),
              _tol("rtol", 0.05, "relative error tolerance per step"),
              _tol("atol", 0.0078, "absolute error tolerance per step"),
              _tol("h_init", 0.05, "the first step size (in log σ)"),
              _tol("pcoeff", 0.0, "step-size controller: proportional gain"),
              _tol("icoeff", 1.0, "step-size controller: integral gain"),
              _tol("dcoeff", 0.0, "step-size controller: derivative gain"),
              _tol("accept_safety", 0.81, "a step is accepted when the controller's factor reaches this"),
              _eta(default=0.0), _s_noise()],
      outputs={"SAMPLER": "SAMPLER"})
def sampler_dpm_adaptative(order: int, rtol: float, atol: float, h_init: float, pcoeff: float, icoeff: float,
                           dcoeff: float, accept_safety: float, eta: float, s_noise: float) -> Any:
    """Adaptive-step DPM-Solver: takes as many steps as its error tolerances need between the schedule's
    first and smallest sigma (the number of steps only sets those two)."""
    return _sampler("dpm_adaptive", order=order, rtol=rtol, atol=atol, h_init=h_init, pcoeff=pcoeff,
                    icoeff=icoeff, dcoeff=dcoeff, accept_safety=accept_safety, eta=eta, s_noise=s_noise)


@node("SamplerER_SDE", category=CATEGORY,
      params=[Combo("solver_type", ("ER-SDE", "Reverse-time SDE", "ODE"), description="the noise scale function"),
              Int("max_stage", 3, min=1, max=3, description="the solver's order (stages)"),
              _eta(maximum=10.0), _s_noise()],
      outputs={"SAMPLER": "SAMPLER"})
def sampler_er_sde(solver_type: str, max_stage: int, eta: float, s_noise: float) -> Any:
    """The extended reverse-time SDE solver with its noise scale function, order and stochastic strength
    (eta 0 or ODE: deterministic)."""
    from nodes.sd.samplers_sde import ERSDEScaler

    if solver_type == "ODE" or eta == 0:
        solver_type, s_noise = "ODE", 0.0
    return _sampler("er_sde", s_noise=s_noise, noise_scaler=ERSDEScaler(solver_type, eta), max_stage=max_stage)


@node("SamplerSASolver", category=CATEGORY, inputs={"model": "MODEL"},
      params=[_eta(maximum=10.0),
              Float("sde_start_percent", 0.2, min=0.0, max=1.0, step=0.001,
                    description="noise is added from this point of sampling …"),
              Float("sde_end_percent", 0.8, min=0.0, max=1.0, step=0.001, description="… to this one"),
              _s_noise(),
              Int("predictor_order", 3, min=1, max=6, description="order of the Adams predictor"),
              Int("corrector_order", 4, min=0, max=6, description="order of the Adams corrector (0: none)"),
              Boolean("use_pece", False, description="evaluate the model again after each correction"),
              Boolean("simple_order_2", False, description="the paper's simplified order-2 weights")],
      outputs={"SAMPLER": "SAMPLER"})
def sampler_sa_solver(model: Any, eta: float, sde_start_percent: float, sde_end_percent: float, s_noise: float,
                      predictor_order: int, corrector_order: int, use_pece: bool, simple_order_2: bool) -> Any:
    """SA-Solver (stochastic Adams predictor-corrector) with its noise interval, orders and mode set."""
    from nodes.sd.samplers_sde import SATau

    ms = model.model_sampling
    tau = SATau(ms.percent_to_sigma(sde_start_percent), ms.percent_to_sigma(sde_end_percent), eta)
    return _sampler("sa_solver", tau_func=tau, s_noise=s_noise, predictor_order=predictor_order,
                    corrector_order=corrector_order, use_pece=use_pece, simple_order_2=simple_order_2)


@node("SamplerSEEDS2", category=CATEGORY,
      params=[Combo("solver_type", ("phi_1", "phi_2"), description="how the two evaluations are combined"),
              Float("eta", 1.0, min=0.0, max=100.0, step=0.01, description="stochastic strength"),
              Float("s_noise", 1.0, min=0.0, max=100.0, step=0.01, description="SDE noise multiplier"),
              Float("r", 0.5, min=0.01, max=1.0, step=0.01,
                    description="relative step size of the intermediate stage")],
      outputs={"SAMPLER": "SAMPLER"})
def sampler_seeds2(solver_type: str, eta: float, s_noise: float, r: float) -> Any:
    """SEEDS-2 with its parameters; it also covers exp_heun_2_x0 (phi_2, r = 1, eta = 0) and
    exp_heun_2_x0_sde (phi_2, r = 1, eta = 1, s_noise = 1)."""
    return _sampler("seeds_2", eta=eta, s_noise=s_noise, r=r, solver_type=solver_type)


@node("SamplerLCMUpscale", category=CATEGORY,
      params=[Float("scale_ratio", 1.0, min=0.1, max=20.0, step=0.01, description="final size ÷ start size"),
              Int("scale_steps", -1, min=-1, max=1000, description="over how many steps to grow (-1: half)"),
              Combo("upscale_method", ("bislerp", "nearest-exact", "bilinear", "area", "bicubic"),
                    description="how the latent is resized")],
      outputs={"SAMPLER": "SAMPLER"})
def sampler_lcm_upscale(scale_ratio: float, scale_steps: int, upscale_method: str) -> Any:
    """LCM sampling that enlarges the latent step by step to scale_ratio × its size (for LCM models)."""
    return _sampler("lcm_upscale", total_upscale=scale_ratio, upscale_method=upscale_method,
                    upscale_steps=None if scale_steps < 0 else scale_steps)


NODES = [sampler_euler_ancestral, sampler_euler_ancestral_cfg_pp, sampler_euler_cfg_pp, sampler_lms,
         sampler_dpmpp_3m_sde, sampler_dpmpp_2m_sde, sampler_dpmpp_sde, sampler_dpmpp_2s_ancestral,
         sampler_dpm_adaptative, sampler_er_sde, sampler_sa_solver, sampler_seeds2, sampler_lcm_upscale]
