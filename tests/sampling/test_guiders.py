"""What CFG++ samplers get from the guiders (the unconditional prediction, even at cfg 1), DualCFGGuider's
two guidance formulas, and seeded stochastic samplers being bit-identical run to run through KSampler."""
from __future__ import annotations

import pytest
import torch

from nodes.sd import ksampler as K
from nodes.sd.diffusion_model import DiffusionModel
from nodes.sd.dual_cfg import DualCFGGuider
from nodes.sd.guidance import BasicGuider, CFGGuider
from nodes.sd.model_sampling import ModelSamplingDiscrete
from nodes.sd.patches import NO_PATCHES

from conftest import ToyUNet


def make_model():
    return DiffusionModel(ToyUNet(), ModelSamplingDiscrete(), "sd1", 0.18215)


def prompt(seed: int, **options):
    return [[torch.randn(1, 77, 8, generator=torch.Generator().manual_seed(seed)), options]]


X = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
SIGMA = torch.tensor([2.5, 2.5])


def capturing():
    """(dict, patches): a post-CFG hook as a CFG++ sampler adds it, keeping the unconditional prediction."""
    captured: dict = {}

    def keep(step):
        captured["uncond"] = step.uncond_denoised
        return step.denoised

    return captured, NO_PATCHES.add(post_cfg=keep, disable_cfg1_optimization=True)


def single(model, conditioning):
    """D(x; σ) for one prompt alone (cfg 1, no negative pass)."""
    guider = BasicGuider(model, conditioning)
    guider.prepare(X.shape, X.device)
    return guider(X, SIGMA)


def test_cfg_guider_hands_out_the_negative_prediction():
    model = make_model()
    guider = CFGGuider(model, prompt(1), prompt(2), cfg=4.0)
    guider.prepare(X.shape, X.device)
    captured, hook = capturing()
    guider(X, SIGMA, patches=hook)
    torch.testing.assert_close(captured["uncond"], single(model, prompt(2)), rtol=0, atol=1e-6)


def test_cfg_one_still_runs_the_negative_for_a_cfg_pp_sampler():
    """ComfyUI turns its cfg-1 shortcut off for CFG++ samplers: cond and uncond share a batch of 4."""
    model = make_model()
    K.sample(model, {"samples": torch.zeros(2, 4, 8, 8)}, prompt(1), prompt(2), seed=1, steps=2, cfg=1.0,
             sampler_name="euler_cfg_pp", scheduler="karras")
    assert [c["batch"] for c in model.unet.calls] == [4, 4]
    model.unet.calls.clear()
    K.sample(model, {"samples": torch.zeros(2, 4, 8, 8)}, prompt(1), prompt(2), seed=1, steps=2, cfg=1.0,
             sampler_name="euler", scheduler="karras")
    assert [c["batch"] for c in model.unet.calls] == [2, 2]


def test_euler_cfg_pp_through_the_guider_follows_the_unconditional_noise():
    """One step of euler_cfg_pp from σ₀ to σ₁: x₁ = D + σ₁·(x₀ − U)/σ₀ with the guider's D and U."""
    model = make_model()
    sigmas = torch.tensor([2.5, 1.0])
    guider = CFGGuider(model, prompt(1), prompt(2), cfg=1.5)
    out = guider.sample(X.clone(), torch.zeros_like(X), K.Sampler("euler_cfg_pp"), sigmas, seed=0)
    start = X * 2.5  # an empty latent plus noise·σ₀ (σ₀ is below σ_max: not a full denoise)
    captured, hook = capturing()
    d = guider(start, SIGMA, patches=hook)
    expected = model.process_out(d + 1.0 * (start - captured["uncond"]) / 2.5)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_basic_guider_gives_cfg_pp_a_zero_unconditional_prediction_as_comfyui():
    """BasicGuider has no negative: ComfyUI's batch then leaves the uncond slot at its zero start."""
    model = make_model()
    guider = BasicGuider(model, prompt(1))
    guider.prepare(X.shape, X.device)
    captured, hook = capturing()
    guider(X, SIGMA, patches=hook)
    assert torch.count_nonzero(captured["uncond"]) == 0


@pytest.mark.parametrize("style", ["regular", "nested"])
def test_dual_cfg_guider_applies_its_formula(style):
    model = make_model()
    c1, c2, neg = prompt(1), prompt(2), prompt(3)
    guider = DualCFGGuider(model, c1, c2, neg, cfg_conds=3.0, cfg_cond2_negative=2.0, style=style)
    guider.prepare(X.shape, X.device)
    captured, hook = capturing()
    out = guider(X, SIGMA, patches=hook)
    d1, d2, dn = single(model, c1), single(model, c2), single(model, neg)
    if style == "regular":
        expected, uncond = dn + (d2 - dn) * 2.0 + (d1 - d2) * 3.0, dn
    else:
        expected, uncond = dn + 2.0 * (d2 + (d1 - d2) * 3.0 - dn), d2
    # batch of 3 prompts vs one prompt per call: the ToyUNet works per sample, so only float32 summation
    # order can differ (~1e-7 relative on values of order 1, amplified ≤ 10× by the guidance scales)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(captured["uncond"], uncond, rtol=0, atol=1e-6)


def test_dual_cfg_guider_skips_predictions_a_scale_of_one_makes_unused():
    model = make_model()
    guider = DualCFGGuider(model, prompt(1), prompt(2), prompt(3), cfg_conds=1.0, cfg_cond2_negative=1.0)
    guider.prepare(X.shape, X.device)
    out = guider(X, SIGMA)
    assert [c["batch"] for c in model.unet.calls] == [2]  # cond1 only
    torch.testing.assert_close(out, single(model, prompt(1)), rtol=0, atol=1e-6)


def test_dual_cfg_guider_encodes_cond2_as_a_negative_prompt():
    guider = DualCFGGuider(make_model(), prompt(1), prompt(2), prompt(3))
    assert [e.options.get("prompt_type") for e in guider.original["middle"]] == ["negative"]
    assert "prompt_type" not in guider.original["positive"][0].options


def test_dual_cfg_guider_rejects_an_unknown_style():
    with pytest.raises(ValueError, match="style must be one of regular, nested"):
        DualCFGGuider(make_model(), prompt(1), prompt(2), prompt(3), style="stacked")


STOCHASTIC = ["euler_ancestral_cfg_pp", "exp_heun_2_x0_sde", "dpmpp_2s_ancestral_cfg_pp", "res_multistep_ancestral",
              "res_multistep_ancestral_cfg_pp", "er_sde", "seeds_2", "seeds_3", "sa_solver", "sa_solver_pece",
              "dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde", "euler_ancestral", "lcm", "ddpm"]


@pytest.mark.parametrize("sampler_name", STOCHASTIC)
def test_seeded_stochastic_sampler_is_bit_identical_run_to_run(sampler_name):
    def run(seed):
        return K.sample(make_model(), {"samples": torch.zeros(1, 4, 8, 8)}, prompt(1), prompt(2), seed=seed,
                        steps=5, cfg=3.0, sampler_name=sampler_name, scheduler="karras")["samples"]

    first = run(7)
    assert torch.equal(first, run(7))
    assert not torch.allclose(first, run(8), atol=1e-4)
