"""Custom-sampling nodes (ComfyUI's nodes_custom_sampler, nodes_align_your_steps, nodes_gits,
nodes_advanced_samplers): each against its stated formula (k-diffusion's schedule functions where it has
them, else numpy written here), and through the executor."""
from __future__ import annotations

import importlib.util
import math
import sys
import types

import numpy as np
import pytest
import torch
from nodekit import FakeContext, options_for

from nodes import custom_sampling as C
from nodes import sampler_nodes as N
from nodes.conditioning import clip_text_encode
from nodes.latent import empty_latent_image
from nodes.sampling import cfg_guider, disable_noise, random_noise, sampler_custom_advanced
from nodes.sd.model_sampling import ModelSamplingDiscrete
from nodes.sd.samplers import Sampler
from nodes.sd.samplers_sde import ERSDEScaler, SATau

MS = ModelSamplingDiscrete()
# torchsde rounds its Brownian tree's ends and warns when asked at exactly σ_max (see nodes/sd/noise.py)
pytestmark = pytest.mark.filterwarnings("ignore:Should have (ta|tb):UserWarning")


@pytest.fixture(scope="module")
def kdiff():
    """k-diffusion 0.1.1's sampling module (its package __init__ needs more than we have; see tests/sampling)."""
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None:
        pytest.skip("k-diffusion is not installed (test-only reference)")
    package = types.ModuleType("k_diffusion")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules.setdefault("k_diffusion", package)
    return importlib.import_module("k_diffusion.sampling")


@pytest.fixture
def ctx(models_dir):
    return FakeContext(options_for(models_dir))


# -- scheduler nodes ------------------------------------------------------------------------------------
def test_karras_exponential_and_polyexponential_nodes_equal_k_diffusion(kdiff):
    torch.testing.assert_close(C.karras_scheduler(steps=9, sigma_max=14.6, sigma_min=0.03, rho=5.0),
                               kdiff.get_sigmas_karras(9, 0.03, 14.6, rho=5.0), rtol=1e-6, atol=0)
    torch.testing.assert_close(C.exponential_scheduler(steps=9, sigma_max=14.6, sigma_min=0.03),
                               kdiff.get_sigmas_exponential(9, 0.03, 14.6), rtol=1e-6, atol=0)
    torch.testing.assert_close(C.polyexponential_scheduler(steps=9, sigma_max=14.6, sigma_min=0.03, rho=2.0),
                               kdiff.get_sigmas_polyexponential(9, 0.03, 14.6, rho=2.0), rtol=1e-6, atol=0)


def test_vp_scheduler_follows_the_vp_sde():
    """σ(t) = √(exp(β_d t²/2 + β_min t) − 1), t = 1 … ε_s, in float64 with expm1 (k-diffusion's exp(·) − 1
    loses ~1e-3 relative in float32 at t = ε_s, where the exponent is 1e-4; ComfyUI uses expm1)."""
    t = np.linspace(1, 0.001, 8)
    expected = np.append(np.sqrt(np.expm1(19.9 * t**2 / 2 + 0.1 * t)), 0.0)
    ours = C.vp_scheduler(steps=8, beta_d=19.9, beta_min=0.1, eps_s=0.001)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-5)  # float32 t and exponent


def test_laplace_scheduler_places_log_sigma_at_laplace_quantiles():
    """λ(x) = μ − β·sgn(½ − x)·ln(1 − 2|½ − x| + 10⁻⁵), clamped to [σ_min, σ_max]; no final 0 (ComfyUI's)."""
    x = np.linspace(0, 1, 7)
    lam = 0.2 - 0.7 * np.sign(0.5 - x) * np.log(1 - 2 * np.abs(0.5 - x) + 1e-5)
    expected = np.clip(np.exp(lam), 0.03, 14.6)
    ours = C.laplace_scheduler(steps=7, sigma_max=14.6, sigma_min=0.03, mu=0.2, beta=0.7)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-5)
    assert ours[-1] > 0 and ours[3] == pytest.approx(math.exp(0.2), rel=1e-5)


def test_beta_sampling_scheduler_uses_beta_quantiles_of_the_timesteps(load):
    from scipy.stats import beta as beta_distribution

    model, _, _ = load("sd1")
    ours = C.beta_sampling_scheduler(model=model, steps=6, alpha=0.8, beta=0.4)
    ts = np.rint(beta_distribution.ppf(1 - np.linspace(0, 1, 6, endpoint=False), 0.8, 0.4) * 999).astype(int)
    expected = [float(MS.sigmas[t]) for k, t in enumerate(ts) if k == 0 or t != ts[k - 1]] + [0.0]
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-6)


def test_sd_turbo_scheduler_takes_every_hundredth_timestep(load):
    model, _, _ = load("sd1")
    ours = C.sd_turbo_scheduler(model=model, steps=3, denoise=0.75)  # enters int(7.5) → 3 steps in
    expected = [float(MS.sigmas[t]) for t in (699, 599, 499)] + [0.0]
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-6)


def test_align_your_steps_interpolates_log_sigma_and_takes_the_denoise_tail():
    ten = C.align_your_steps_scheduler(model_type="SDXL", steps=10, denoise=1.0)
    published = [14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141,
                 0.5550693289, 0.3798540708, 0.2332364134, 0.1114188177]
    np.testing.assert_allclose(ten.numpy(), published + [0.0], rtol=1e-6)
    five = C.align_your_steps_scheduler(model_type="SD1", steps=5, denoise=0.6)
    sd1 = np.log([14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092,
                  0.9642583904, 0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582])
    at = np.exp(np.interp(np.linspace(0, 1, 6), np.linspace(0, 1, 11), sd1[::-1]))[::-1]
    np.testing.assert_allclose(five.numpy(), list(at[-4:-1]) + [0.0], rtol=1e-6)  # round(5·0.6) = 3 steps


def test_gits_scheduler_reads_its_table_and_interpolates_long_schedules():
    from nodes.sd.sigma_schedules import gits_noise_levels

    table = gits_noise_levels()
    assert len(table) == 15 and [len(rows) for rows in table.values()] == [19] * 15
    ten = C.gits_scheduler(coeff=1.2, steps=10, denoise=1.0)
    np.testing.assert_allclose(ten.numpy()[:-1], table["1.20"][8][:-1], rtol=1e-6)
    assert ten[-1] == 0 and len(ten) == 11
    long = C.gits_scheduler(coeff=0.9, steps=30, denoise=1.0)
    assert len(long) == 31 and long[0] == pytest.approx(14.61464119) and bool((long[1:] < long[:-1]).all())


def test_gits_scheduler_refuses_a_coefficient_off_its_grid():
    with pytest.raises(ValueError, match=r"coeff 0\.83 has no schedule; use one of 0\.80, 0\.85"):
        C.gits_scheduler(coeff=0.83, steps=10, denoise=1.0)


# -- sigma nodes --------------------------------------------------------------------------------------------
SIGMAS = torch.tensor([14.6, 7.0, 3.0, 1.0, 0.3, 0.0])


def test_split_sigmas_denoise_gives_the_tail_a_denoised_sampler_runs():
    high, low = C.split_sigmas_denoise(sigmas=SIGMAS, denoise=0.6)  # round(5·0.6) = 3 steps
    assert low.tolist() == pytest.approx([3.0, 1.0, 0.3, 0.0]) and high.tolist() == pytest.approx([14.6, 7.0, 3.0])


def test_flip_sigmas_reverses_and_lifts_a_leading_zero():
    assert C.flip_sigmas(sigmas=SIGMAS).tolist() == pytest.approx([0.0001, 0.3, 1.0, 3.0, 7.0, 14.6])


def test_set_first_sigma_replaces_only_the_first():
    out = C.set_first_sigma(sigmas=SIGMAS, sigma=20.0)
    assert out.tolist() == pytest.approx([20.0, 7.0, 3.0, 1.0, 0.3, 0.0]) and SIGMAS[0] == pytest.approx(14.6)


@pytest.mark.parametrize("spacing,fractions", [("linear", [1 / 3, 2 / 3]),
                                               ("cosine", [math.sin(math.pi / 6), math.sin(math.pi / 3)]),
                                               ("sine", [1 - math.cos(math.pi / 6), 1 - math.cos(math.pi / 3)])])
def test_extend_intermediate_sigmas_splits_the_steps_in_range(spacing, fractions):
    out = C.extend_intermediate_sigmas(sigmas=SIGMAS, steps=3, start_at_sigma=8.0, end_at_sigma=2.0, spacing=spacing)
    inserted = [7.0 + f * (3.0 - 7.0) for f in fractions] + [3.0 + f * (1.0 - 3.0) for f in fractions]
    assert out.tolist() == pytest.approx([14.6, 7.0, *inserted[:2], 3.0, *inserted[2:], 1.0, 0.3, 0.0], rel=1e-6)


def test_sampling_percent_to_sigma_follows_the_model_schedule(load):
    model, _, _ = load("sd1")
    assert C.sampling_percent_to_sigma(model=model, sampling_percent=0.25, return_actual_sigma=False) == \
        pytest.approx(float(MS.sigma(torch.tensor(0.75 * 999))), rel=1e-6)
    assert C.sampling_percent_to_sigma(model=model, sampling_percent=0.0, return_actual_sigma=False) == 999999999.9
    assert C.sampling_percent_to_sigma(model=model, sampling_percent=0.0, return_actual_sigma=True) == \
        pytest.approx(float(MS.sigma_max))
    assert C.sampling_percent_to_sigma(model=model, sampling_percent=1.0, return_actual_sigma=True) == \
        pytest.approx(float(MS.sigma_min))


def test_manual_sigmas_reads_every_number():
    assert C.manual_sigmas(sigmas="14.6, 7,3.5 1 .25 0").tolist() == pytest.approx([14.6, 7, 3.5, 1, 0.25, 0])


def test_manual_sigmas_names_a_malformed_number():
    with pytest.raises(ValueError, match=r"'1\.\.5' in .* is not a number"):
        C.manual_sigmas(sigmas="14.6, 1..5, 0")


def test_a_sigma_node_refuses_a_non_schedule_input():
    with pytest.raises(ValueError, match="sigmas must be a SIGMAS value"):
        C.flip_sigmas(sigmas=[14.6, 0.0])


# -- sampling nodes ---------------------------------------------------------------------------------------
def prompts(load, ctx):
    _, clip, _ = load("sd1")
    return (clip_text_encode(clip=clip, text="a red fox", ctx=ctx), clip_text_encode(clip=clip, text="blurry", ctx=ctx))


def test_sampler_custom_equals_its_parts(load, ctx):
    model, _, _ = load("sd1")
    pos, neg = prompts(load, ctx)
    sigmas = C.karras_scheduler(steps=4, sigma_max=14.614642, sigma_min=0.0291675, rho=7.0)
    sampler = N.sampler_dpmpp_2m_sde(solver_type="heun", eta=0.8, s_noise=1.0, noise_device="cpu")
    latent = empty_latent_image(width=64, height=64, batch_size=1)
    whole = C.sampler_custom(model=model, positive=pos, negative=neg, sampler=sampler, sigmas=sigmas,
                             latent_image=latent, add_noise=True, noise_seed=11, cfg=4.0, ctx=ctx)
    parts = sampler_custom_advanced(noise=random_noise(noise_seed=11), guider=cfg_guider(model=model, positive=pos,
                                    negative=neg, cfg=4.0), sampler=sampler, sigmas=sigmas, latent_image=latent, ctx=ctx)
    for a, b in zip(whole, parts):
        torch.testing.assert_close(a["samples"], b["samples"], rtol=0, atol=0)


def test_sampler_custom_without_noise_still_seeds_the_samplers_noise(load, ctx):
    """ComfyUI passes noise_seed to the sampler even when add_noise is off (DisableNoise's seed is 0)."""
    model, _, _ = load("sd1")
    pos, neg = prompts(load, ctx)
    sigmas = C.karras_scheduler(steps=3, sigma_max=14.614642, sigma_min=0.0291675, rho=7.0)
    start = {"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2)) * 14.6}
    runs = [C.sampler_custom(model=model, positive=pos, negative=neg, sampler=Sampler("euler_ancestral"), sigmas=sigmas,
                             latent_image=start, add_noise=False, noise_seed=seed, cfg=4.0, ctx=ctx)[0]["samples"]
            for seed in (5, 6)]
    assert not torch.allclose(runs[0], runs[1], atol=1e-4)


def test_add_noise_scales_noise_to_the_schedules_span(load):
    model, _, _ = load("sd1")
    latent = {"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(4)), "batch_index": [0]}
    sigmas = torch.tensor([6.0, 2.0, 0.5])
    out = C.add_noise_node(model=model, noise=random_noise(noise_seed=3), sigmas=sigmas, latent_image=latent)
    noise = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(3))
    expected = (latent["samples"] * model.latent_scale + noise * 5.5) / model.latent_scale
    torch.testing.assert_close(out["samples"], expected, rtol=1e-6, atol=1e-6)
    assert out["batch_index"] == [0]
    assert C.add_noise_node(model=model, noise=disable_noise(), sigmas=torch.zeros(0), latent_image=latent) is latent


def test_dual_cfg_guider_node_samples(load, ctx):
    model, _, _ = load("sd1")
    pos, neg = prompts(load, ctx)
    guider = C.dual_cfg_guider(model=model, cond1=pos, cond2=neg, negative=neg, cfg_conds=3.0,
                               cfg_cond2_negative=1.0, style="regular")
    out, _ = sampler_custom_advanced(noise=random_noise(noise_seed=1), guider=guider, sampler=Sampler("euler"),
                                     sigmas=C.karras_scheduler(steps=3, sigma_max=14.6, sigma_min=0.03, rho=7.0),
                                     latent_image=empty_latent_image(width=64, height=64, batch_size=1), ctx=ctx)
    # cond2 = negative and cfg_cond2_negative = 1: the result is plain CFG of cond1 against the negative
    plain, _ = sampler_custom_advanced(noise=random_noise(noise_seed=1), guider=cfg_guider(model=model, positive=pos,
                                       negative=neg, cfg=3.0), sampler=Sampler("euler"),
                                       sigmas=C.karras_scheduler(steps=3, sigma_max=14.6, sigma_min=0.03, rho=7.0),
                                       latent_image=empty_latent_image(width=64, height=64, batch_size=1), ctx=ctx)
    torch.testing.assert_close(out["samples"], plain["samples"], rtol=1e-5, atol=1e-5)


# -- parametrised sampler nodes -----------------------------------------------------------------------------
SAMPLER_NODES = [
    (N.sampler_euler_ancestral, dict(eta=0.5, s_noise=0.9), "euler_ancestral", dict(eta=0.5, s_noise=0.9)),
    (N.sampler_euler_ancestral_cfg_pp, dict(eta=0.5, s_noise=1.0), "euler_ancestral_cfg_pp", dict(eta=0.5, s_noise=1.0)),
    (N.sampler_euler_cfg_pp, dict(version="regular"), "euler_cfg_pp", {}),
    (N.sampler_euler_cfg_pp, dict(version="alternative"), "euler_cfg_pp_alternative", {}),
    (N.sampler_lms, dict(order=3), "lms", dict(order=3)),
    (N.sampler_dpmpp_3m_sde, dict(eta=0.5, s_noise=1.0, noise_device="gpu"), "dpmpp_3m_sde_gpu", dict(eta=0.5, s_noise=1.0)),
    (N.sampler_dpmpp_2m_sde, dict(solver_type="heun", eta=1.0, s_noise=1.0, noise_device="cpu"), "dpmpp_2m_sde",
     dict(eta=1.0, s_noise=1.0, solver_type="heun")),
    (N.sampler_dpmpp_sde, dict(eta=1.0, s_noise=1.0, r=0.3, noise_device="cpu"), "dpmpp_sde", dict(eta=1.0, s_noise=1.0, r=0.3)),
    (N.sampler_dpmpp_2s_ancestral, dict(eta=0.7, s_noise=1.0), "dpmpp_2s_ancestral", dict(eta=0.7, s_noise=1.0)),
    (N.sampler_seeds2, dict(solver_type="phi_2", eta=0.0, s_noise=1.0, r=1.0), "seeds_2",
     dict(eta=0.0, s_noise=1.0, r=1.0, solver_type="phi_2")),
    (N.sampler_lcm_upscale, dict(scale_ratio=1.5, scale_steps=-1, upscale_method="bilinear"), "lcm_upscale",
     dict(total_upscale=1.5, upscale_method="bilinear", upscale_steps=None)),
]


@pytest.mark.parametrize("node_fn,params,name,options", SAMPLER_NODES, ids=[s[0].type_id for s in SAMPLER_NODES])
def test_sampler_node_sets_comfyuis_sampler_and_options(node_fn, params, name, options):
    sampler = node_fn(**params)
    assert (sampler.name, sampler.options) == (name, options)


def test_dpm_adaptative_node_passes_every_tolerance():
    sampler = N.sampler_dpm_adaptative(order=2, rtol=0.1, atol=0.01, h_init=0.1, pcoeff=0.1, icoeff=0.9, dcoeff=0.05,
                                       accept_safety=0.8, eta=0.0, s_noise=1.0)
    assert sampler.name == "dpm_adaptive" and sampler.options == dict(
        order=2, rtol=0.1, atol=0.01, h_init=0.1, pcoeff=0.1, icoeff=0.9, dcoeff=0.05, accept_safety=0.8, eta=0.0,
        s_noise=1.0)


@pytest.mark.parametrize("solver_type,eta,scale_at_2", [("ER-SDE", 0.5, 2 * (math.exp(2**0.3) + 10) ** 0.5),
                                                        ("Reverse-time SDE", 1.0, 4.0), ("ODE", 1.0, 2.0)])
def test_er_sde_node_builds_the_noise_scale_function(solver_type, eta, scale_at_2):
    sampler = N.sampler_er_sde(solver_type=solver_type, max_stage=2, eta=eta, s_noise=1.0)
    assert sampler.name == "er_sde" and sampler.options["max_stage"] == 2
    assert float(sampler.options["noise_scaler"](torch.tensor(2.0))) == pytest.approx(scale_at_2, rel=1e-6)
    assert sampler.options["s_noise"] == (0.0 if solver_type == "ODE" else 1.0)


def test_er_sde_node_with_eta_zero_is_the_ode():
    sampler = N.sampler_er_sde(solver_type="ER-SDE", max_stage=3, eta=0.0, s_noise=1.0)
    assert sampler.options["noise_scaler"] == ERSDEScaler("ODE", 0.0) and sampler.options["s_noise"] == 0.0


def test_sa_solver_node_turns_percents_into_the_models_sigmas(load):
    model, _, _ = load("sd1")
    sampler = N.sampler_sa_solver(model=model, eta=0.7, sde_start_percent=0.1, sde_end_percent=0.6, s_noise=1.0,
                                  predictor_order=2, corrector_order=3, use_pece=True, simple_order_2=False)
    assert sampler.name == "sa_solver" and sampler.options["use_pece"] and sampler.options["corrector_order"] == 3
    assert sampler.options["tau_func"] == SATau(MS.percent_to_sigma(0.1), MS.percent_to_sigma(0.6), 0.7)


@pytest.mark.parametrize("node_fn,params,name,options", SAMPLER_NODES[:4] + SAMPLER_NODES[9:],
                         ids=[s[0].type_id + s[2] for s in SAMPLER_NODES[:4] + SAMPLER_NODES[9:]])
def test_sampler_node_output_samples_a_finite_latent(load, ctx, node_fn, params, name, options):
    model, _, _ = load("sd1")
    pos, neg = prompts(load, ctx)
    out, _ = sampler_custom_advanced(noise=random_noise(noise_seed=1), guider=cfg_guider(model=model, positive=pos,
                                     negative=neg, cfg=2.0), sampler=node_fn(**params),
                                     sigmas=C.karras_scheduler(steps=4, sigma_max=14.6, sigma_min=0.03, rho=7.0),
                                     latent_image=empty_latent_image(width=64, height=64, batch_size=1), ctx=ctx)
    size = 12 if name == "lcm_upscale" else 8  # grown by 1.5 over the first steps
    assert out["samples"].shape == (1, 4, size, size) and torch.isfinite(out["samples"]).all()


# -- through the executor --------------------------------------------------------------------------------------
def test_a_custom_sampling_graph_runs_in_the_executor_like_the_direct_calls(session, load, ctx):
    graph = session.new_graph()
    graph.add_node("CheckpointLoaderSimple", {"ckpt_name": "sd1.safetensors"}, id="ckpt")
    graph.add_node("CLIPTextEncode", {"text": "a red fox"}, id="pos")
    graph.add_node("CLIPTextEncode", {"text": "blurry"}, id="neg")
    graph.add_node("EmptyLatentImage", {"width": 64, "height": 64, "batch_size": 1}, id="latent")
    graph.add_node("AlignYourStepsScheduler", {"model_type": "SD1", "steps": 4, "denoise": 1.0}, id="ays")
    graph.add_node("SamplingPercentToSigma", {"sampling_percent": 0.05, "return_actual_sigma": False}, id="pct")
    graph.add_node("SetFirstSigma", {"sigma": 136.0}, id="first")
    graph.add_node("SamplerSEEDS2", {"solver_type": "phi_1", "eta": 1.0, "s_noise": 1.0, "r": 0.5}, id="sampler")
    graph.add_node("SamplerCustom", {"add_noise": True, "noise_seed": 21, "cfg": 3.5}, id="sample")
    graph.add_node("VAEDecode", {}, id="decode")
    graph.add_node("PreviewImage", {}, id="preview")
    for src, out, dst, name in [("ckpt", "CLIP", "pos", "clip"), ("ckpt", "CLIP", "neg", "clip"),
                                ("ckpt", "MODEL", "pct", "model"), ("ays", "SIGMAS", "first", "sigmas"),
                                ("pct", "sigma_value", "first", "sigma"), ("ckpt", "MODEL", "sample", "model"),
                                ("pos", "CONDITIONING", "sample", "positive"), ("neg", "CONDITIONING", "sample", "negative"),
                                ("sampler", "SAMPLER", "sample", "sampler"), ("first", "SIGMAS", "sample", "sigmas"),
                                ("latent", "LATENT", "sample", "latent_image"), ("sample", "output", "decode", "samples"),
                                ("ckpt", "VAE", "decode", "vae"), ("decode", "IMAGE", "preview", "images")]:
        graph.connect(src, out, dst, name)
    result = session.run(graph, outputs=["sample", "first"])

    model, _, _ = load("sd1")
    pos, neg = prompts(load, ctx)
    sigmas = C.set_first_sigma(sigmas=C.align_your_steps_scheduler(model_type="SD1", steps=4, denoise=1.0),
                               sigma=MS.percent_to_sigma(0.05))
    torch.testing.assert_close(result.output("first"), sigmas, rtol=0, atol=0)
    direct, _ = C.sampler_custom(model=model, positive=pos, negative=neg, sampler=N.sampler_seeds2(
        solver_type="phi_1", eta=1.0, s_noise=1.0, r=0.5), sigmas=sigmas, latent_image=empty_latent_image(
        width=64, height=64, batch_size=1), add_noise=True, noise_seed=21, cfg=3.5, ctx=ctx)
    torch.testing.assert_close(result.output("sample", "output")["samples"], direct["samples"], rtol=0, atol=0)


# -- the lists ---------------------------------------------------------------------------------------------------
COMFYUI_SAMPLERS = (  # comfy/samplers.py: KSAMPLER_NAMES + ["ddim", "uni_pc", "uni_pc_bh2"]
    "euler euler_cfg_pp euler_ancestral euler_ancestral_cfg_pp heun heunpp2 exp_heun_2_x0 exp_heun_2_x0_sde dpm_2 "
    "dpm_2_ancestral lms dpm_fast dpm_adaptive dpmpp_2s_ancestral dpmpp_2s_ancestral_cfg_pp dpmpp_sde dpmpp_sde_gpu "
    "dpmpp_2m dpmpp_2m_cfg_pp dpmpp_2m_sde dpmpp_2m_sde_gpu dpmpp_2m_sde_heun dpmpp_2m_sde_heun_gpu dpmpp_3m_sde "
    "dpmpp_3m_sde_gpu ddpm lcm ipndm ipndm_v deis res_multistep res_multistep_cfg_pp res_multistep_ancestral "
    "res_multistep_ancestral_cfg_pp gradient_estimation gradient_estimation_cfg_pp er_sde seeds_2 seeds_3 sa_solver "
    "sa_solver_pece ddim uni_pc uni_pc_bh2").split()
COMFYUI_SCHEDULERS = "simple sgm_uniform karras exponential ddim_uniform beta normal linear_quadratic kl_optimal".split()


def test_ksampler_offers_comfyuis_samplers_and_schedulers_in_its_order(registry):
    params = {p.name: p for p in registry["KSampler"].params}
    assert list(params["sampler_name"].choices) == COMFYUI_SAMPLERS and params["sampler_name"].default == "euler"
    assert list(params["scheduler"].choices) == COMFYUI_SCHEDULERS and params["scheduler"].default == "simple"


def test_the_comfyui_page_lists_what_the_registry_has(registry):
    import re

    from nodekit import ROOT

    doc = (ROOT / "docs" / "comfyui.md").read_text()
    section = doc[doc.index("## Samplers and schedulers"):doc.index("## Differences worth knowing")]

    def bullet(label: str) -> str:
        return section.split(label)[1].split("\n- ")[0].split("\n\n")[0]

    assert re.findall(r"[a-z0-9_]+", bullet("**Samplers (44):**")) == COMFYUI_SAMPLERS
    assert re.findall(r"[a-z0-9_]+", bullet("**Schedulers (9):**")) == COMFYUI_SCHEDULERS
    nodes = set(re.findall(r"\b[A-Z][A-Za-z0-9_]+", bullet("**Custom sampling:**")))
    assert nodes <= set(registry.nodes), sorted(nodes - set(registry.nodes))
    assert len(nodes) == 38
