"""CFG over ComfyUI conditioning: one batched call for cond + uncond, areas, strengths, masks, lengths, SDXL y."""
from __future__ import annotations

import pytest
import torch

from nodes.sd.diffusion_model import DiffusionModel
from nodes.sd.guidance import BasicGuider, CFGGuider, calc_cond_batch, parse_conditioning
from nodes.sd.model_sampling import ModelSamplingDiscrete

from conftest import ToyUNet


def make_model(adm_fn=None, adm_channels=0):
    return DiffusionModel(ToyUNet(adm_channels=adm_channels), ModelSamplingDiscrete(), "sd1", 0.18215, adm_fn=adm_fn)


def prompt(seed: int, tokens: int = 77, **options):
    return [[torch.randn(1, tokens, 8, generator=torch.Generator().manual_seed(seed)), options]]


def guided(guider: CFGGuider, x, sigma):
    guider.prepare(x.shape, x.device)
    return guider(x, sigma)


X = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
SIGMA = torch.tensor([2.5, 2.5])


def test_cfg_combines_denoised_predictions():
    model = make_model()
    pos, neg = prompt(1), prompt(2)
    out = guided(CFGGuider(model, pos, neg, cfg=7.5), X, SIGMA)
    cond = model.apply_model(X, SIGMA, pos[0][0].repeat(2, 1, 1))
    uncond = model.apply_model(X, SIGMA, neg[0][0].repeat(2, 1, 1))
    assert torch.allclose(out, uncond + (cond - uncond) * 7.5, atol=1e-5)


def test_cond_and_uncond_share_one_unet_call():
    model = make_model()
    guided(CFGGuider(model, prompt(1), prompt(2), cfg=5.0), X, SIGMA)
    assert [c["batch"] for c in model.unet.calls] == [4]


def test_cfg_one_skips_the_uncond_pass():
    model = make_model()
    out = guided(CFGGuider(model, prompt(1), prompt(2), cfg=1.0), X, SIGMA)
    assert [c["batch"] for c in model.unet.calls] == [2]
    assert torch.equal(out, model.apply_model(X, SIGMA, prompt(1)[0][0].repeat(2, 1, 1)))


def test_memory_budget_splits_calls_without_changing_results():
    model = make_model()
    whole = guided(CFGGuider(model, prompt(1), prompt(2), cfg=5.0), X, SIGMA)
    model.unet.calls.clear()
    split = guided(CFGGuider(model, prompt(1), prompt(2), cfg=5.0, max_batch_area=2 * 16 * 16 + 1), X, SIGMA)
    assert [c["batch"] for c in model.unet.calls] == [2, 2]
    assert torch.allclose(split, whole, rtol=0, atol=1e-6)


def test_prompts_of_different_lengths_are_padded_by_repetition():
    model = make_model()
    long_prompt = prompt(1, tokens=154)
    out = guided(CFGGuider(model, long_prompt, prompt(2, tokens=77), cfg=4.0), X, SIGMA)
    assert [(c["batch"], c["tokens"]) for c in model.unet.calls] == [(4, 154)]
    cond = model.apply_model(X, SIGMA, long_prompt[0][0].repeat(2, 1, 1))
    uncond = model.apply_model(X, SIGMA, prompt(2)[0][0].repeat(2, 1, 1))  # unpadded: repetition changes nothing
    assert torch.allclose(out, uncond + (cond - uncond) * 4.0, atol=1e-5)


def test_lengths_with_a_large_common_multiple_run_separately():
    model = make_model()
    guided(CFGGuider(model, prompt(1, tokens=77 * 5), prompt(2, tokens=77), cfg=4.0), X, SIGMA)
    assert sorted(c["tokens"] for c in model.unet.calls) == [77, 385]


def test_two_area_prompts_each_own_their_half():
    model = make_model()
    left, right = prompt(1, area=(16, 8, 0, 0)), prompt(2, area=(16, 8, 0, 8))
    guider = CFGGuider(model, left + right, prompt(3), cfg=1.0)
    out = guided(guider, X, SIGMA)
    expect_left = model.apply_model(X[:, :, :, 0:8], SIGMA, left[0][0].repeat(2, 1, 1))
    expect_right = model.apply_model(X[:, :, :, 8:16], SIGMA, right[0][0].repeat(2, 1, 1))
    assert torch.allclose(out[..., 0:8], expect_left, atol=1e-6)
    assert torch.allclose(out[..., 8:16], expect_right, atol=1e-6)


def test_area_prompt_blends_with_global_prompt_by_strength_and_feathered_edge():
    """Weights: global 1; area strength 2, ramped over min(8, width // 4) = 2 columns at its inner edge."""
    model = make_model()
    everywhere, area = prompt(1), prompt(2, area=(16, 8, 0, 8), strength=2.0)
    out = guided(CFGGuider(model, everywhere + area, prompt(3), cfg=1.0), X, SIGMA)
    d_global = model.apply_model(X, SIGMA, everywhere[0][0].repeat(2, 1, 1))
    d_area = model.apply_model(X[..., 8:16], SIGMA, area[0][0].repeat(2, 1, 1))
    w = torch.full((8,), 2.0)
    w[0], w[1] = 2.0 * 0.5, 2.0 * 1.0
    expected = d_global.clone()
    expected[..., 8:16] = (d_global[..., 8:16] + d_area * w) / (1 + w)
    assert torch.allclose(out, expected, atol=1e-5)


def test_area_in_percent_is_resolved_to_latent_pixels():
    model = make_model()
    guider = CFGGuider(model, prompt(1, area=("percentage", 0.5, 0.25, 0.5, 0.75)), prompt(2), cfg=2.0)
    guider.prepare(X.shape, X.device)
    assert guider.conds["positive"][0].area == (8, 4, 8, 12)


def test_uncond_gets_an_entry_for_each_cond_area():
    """ComfyUI's symmetric-area rule: the negative prompt is also run on the positive's area."""
    model = make_model()
    guider = CFGGuider(model, prompt(1, area=(8, 8, 0, 0)), prompt(2), cfg=3.0)
    guider.prepare(X.shape, X.device)
    negative = guider.conds["negative"]
    assert [e.area for e in negative] == [None, (8, 8, 0, 0)]
    assert torch.equal(negative[1].context, negative[0].context)


def test_mask_weights_the_prompt_per_pixel():
    model = make_model()
    mask = torch.zeros(16, 16)
    mask[:, :8] = 1.0
    out = guided(CFGGuider(model, prompt(1) + prompt(2, mask=mask), prompt(3), cfg=1.0), X, SIGMA)
    d1 = model.apply_model(X, SIGMA, prompt(1)[0][0].repeat(2, 1, 1))
    d2 = model.apply_model(X, SIGMA, prompt(2)[0][0].repeat(2, 1, 1))
    assert torch.allclose(out[..., :8], (d1[..., :8] + d2[..., :8]) / 2, atol=1e-5)
    assert torch.allclose(out[..., 8:], d1[..., 8:], atol=1e-5)


def test_prompt_outside_its_percent_range_is_skipped():
    model = make_model()
    late = prompt(2, start_percent=0.5)  # active only below σ at 50 % of the schedule
    guider = CFGGuider(model, prompt(1) + late, prompt(3), cfg=1.0)
    high = guided(guider, X, torch.tensor([10.0, 10.0]))
    assert torch.allclose(high, model.apply_model(X, torch.tensor([10.0, 10.0]), prompt(1)[0][0].repeat(2, 1, 1)))


def test_sdxl_y_comes_from_adm_fn_with_latent_size_defaults():
    seen = []

    def adm_fn(cond, batch, device, dtype):
        seen.append(dict(cond))
        return torch.cat([cond["pooled_output"], torch.tensor([[cond["width"], cond["height"]]], dtype=dtype)], 1)

    model = make_model(adm_fn=adm_fn, adm_channels=6)
    pos = prompt(1, pooled_output=torch.ones(1, 4))
    neg = prompt(2, pooled_output=torch.zeros(1, 4), width=1024, height=768)
    guided(CFGGuider(model, pos, neg, cfg=5.0), X, SIGMA)
    assert [(c["width"], c["height"], c["prompt_type"]) for c in seen] == [(128, 128, "positive"),
                                                                         (1024, 768, "negative")]
    assert model.unet.calls[-1]["y"] is True and model.unet.calls[-1]["batch"] == 4


def test_basic_guider_is_the_conditional_prediction():
    model = make_model()
    out = guided(BasicGuider(model, prompt(1)), X, SIGMA)
    assert torch.equal(out, model.apply_model(X, SIGMA, prompt(1)[0][0].repeat(2, 1, 1)))


def test_calc_cond_batch_blends_each_list_separately():
    model = make_model()
    a, b = parse_conditioning(prompt(1), "a"), parse_conditioning(prompt(2), "b")
    out_a, out_b = calc_cond_batch(model, [a, b], X, SIGMA)
    assert torch.allclose(out_b, model.apply_model(X, SIGMA, prompt(2)[0][0].repeat(2, 1, 1)), atol=1e-6)


@pytest.mark.parametrize("bad,message", [
    ("a prompt", "positive conditioning: expected a list"),
    ([torch.zeros(1, 77, 8)], r"positive conditioning entry 0: expected \[Tensor"),
    ([[torch.zeros(77, 8), {}]], "positive conditioning entry 0: context must be"),
])
def test_malformed_conditioning_names_input_and_entry(bad, message):
    with pytest.raises((TypeError, ValueError), match=message):
        CFGGuider(make_model(), bad, prompt(2))


def test_guider_without_conditioning_says_what_to_do():
    guider = CFGGuider(make_model())
    with pytest.raises(ValueError, match="call set_conds"):
        guider.prepare(X.shape, X.device)
