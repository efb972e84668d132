"""Guidance patches against their stated formulas (written out again here in numpy): RescaleCFG's std rescale,
APG's momentum / norm cap / projection, TCFG's SVD projection, CFG-Zero*, CFGNorm, Perp-Neg's projection,
SAG's blur-and-mask step and PAG's identity attention — and each wired into a guider with a tiny U-Net."""
from __future__ import annotations

import copy

import cv2
import numpy as np
import pytest
import torch
from patchkit import LATENT, SIGMA, guider, latent, prompt, rand, step, tiny_model

from nodes.sd.attention_guidance import (PerturbedAttentionGuidance, SelfAttentionGuidance, attention_with_scores,
                                         blur_map)
from nodes.sd.diffusion_model import DiffusionModel
from nodes.sd.attention import attention
from nodes.sd.guidance import CFGGuider, calc_cond_batch
from nodes.sd.guidance_patches import APG, CFGNorm, RescaleCFG, cfg_zero_star, tcfg
from nodes.sd.patches import NO_PATCHES, SamplingRun, UNetHooks
from nodes.sd.perp_neg import PerpNeg, PerpNegGuider, perp_neg

X, C, U = rand(*LATENT, seed=1) * 3, rand(*LATENT, seed=2), rand(*LATENT, seed=3)


def per_sample(values):
    return np.asarray(values, dtype=np.float64).reshape(-1, 1, 1, 1)


# -- RescaleCFG ------------------------------------------------------------------------------------------
def test_rescale_cfg_rescales_the_v_space_std_towards_the_positive_prediction():
    x, c, u, s, m = X.double().numpy(), C.double().numpy(), U.double().numpy(), 7.0, 0.7
    sigma = per_sample(SIGMA.tolist())
    # the v-prediction a VP model would give for denoised D at x: D = x/(σ²+1) − v·σ/√(σ²+1), solved for v
    v_c = (x / (sigma**2 + 1) - c) * np.sqrt(sigma**2 + 1) / sigma
    v_u = (x / (sigma**2 + 1) - u) * np.sqrt(sigma**2 + 1) / sigma
    v_cfg = v_u + s * (v_c - v_u)
    std = lambda a: a.reshape(a.shape[0], -1).std(axis=1, ddof=1).reshape(-1, 1, 1, 1)
    v = m * v_cfg * std(v_c) / std(v_cfg) + (1 - m) * v_cfg
    expected = x / (sigma**2 + 1) - v * sigma / np.sqrt(sigma**2 + 1)
    got = RescaleCFG(m)(step(input=X, cond_denoised=C, uncond_denoised=U, cond_scale=s))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_rescale_cfg_at_multiplier_zero_is_plain_cfg():
    got = RescaleCFG(0.0)(step(input=X, cond_denoised=C, uncond_denoised=U, cond_scale=7.0))
    torch.testing.assert_close(got, U + 7.0 * (C - U), rtol=1e-5, atol=1e-5)


# -- APG ----------------------------------------------------------------------------------------------------
def apg_reference(steps, eta, threshold, momentum, scale):
    """APG over a sequence of (σ, cond, uncond): the modified positive prediction at each step."""
    out, average, last_sigma = [], None, None
    for sigma, c, u in steps:
        if last_sigma is not None and sigma > last_sigma:
            average = None
        last_sigma = sigma
        g = c - u
        if momentum:
            g = g if average is None else momentum * average + g
            average = g
        if threshold > 0:
            norm = np.sqrt((g**2).sum(axis=(1, 2, 3), keepdims=True))
            g = g * np.minimum(1.0, threshold / norm)
        unit = c / np.sqrt((c**2).sum(axis=(1, 2, 3), keepdims=True))
        parallel = (g * unit).sum(axis=(1, 2, 3), keepdims=True) * unit
        out.append(u + (g - parallel) + eta * parallel + (c - u) / scale)
    return out


def test_apg_momentum_norm_cap_and_projection_over_a_run():
    sigmas = [5.0, 3.0, 1.0, 6.0]  # the rise at the end starts a new schedule: the average resets
    pairs = [(rand(*LATENT, seed=10 + i) * 20, rand(*LATENT, seed=20 + i)) for i in range(4)]
    hook, run = APG(eta=0.3, norm_threshold=5.0, momentum=0.5), SamplingRun(None)
    got = [hook(step(input=X, sigma=torch.tensor([s, s]), conds_out=[c, u], cond_scale=4.0, run=run))[0]
           for s, (c, u) in zip(sigmas, pairs)]
    expected = apg_reference([(s, c.double().numpy(), u.double().numpy()) for s, (c, u) in zip(sigmas, pairs)],
                             0.3, 5.0, 0.5, 4.0)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g.numpy(), e, rtol=1e-4, atol=1e-4)


def test_apg_with_eta_one_and_no_cap_gives_plain_cfg_after_guidance():
    out = APG(1.0, 0.0, 0.0)(step(input=X, conds_out=[C, U], cond_scale=4.0))
    torch.testing.assert_close(U + 4.0 * (out[0] - U), U + 4.0 * (C - U) + (C - U), rtol=1e-5, atol=1e-5)


# -- TCFG -------------------------------------------------------------------------------------------------------
def test_tcfg_keeps_the_negatives_noise_along_the_first_singular_direction():
    out = tcfg(step(input=X, conds_out=[C, U], conds=[[1], [1]]))
    assert out[0] is C
    x, c, u = X.double().numpy(), C.double().numpy(), U.double().numpy()
    expected = []
    for b in range(x.shape[0]):
        un, cn = (x[b] - u[b]).ravel(), (x[b] - c[b]).ravel()
        _, _, vh = np.linalg.svd(np.stack([un, cn]), full_matrices=False)
        expected.append(x[b] - ((un @ vh[0]) * vh[0]).reshape(x[b].shape))
    np.testing.assert_allclose(out[1].numpy(), np.stack(expected), rtol=1e-4, atol=1e-4)


def test_tcfg_leaves_a_skipped_negative_alone():
    out = [C, torch.zeros_like(U)]
    assert tcfg(step(input=X, conds_out=out, conds=[[1], None])) is out


# -- CFG-Zero* and CFGNorm ---------------------------------------------------------------------------------------
def test_cfg_zero_star_rescales_the_negative_by_its_optimal_scale():
    s = 6.0
    x, c, u = X.double().numpy(), C.double().numpy(), U.double().numpy()
    denoised = u + s * (c - u)
    pos, neg = (x - c).reshape(2, -1), (x - u).reshape(2, -1)
    alpha = per_sample((pos * neg).sum(1) / ((neg**2).sum(1) + 1e-8))
    expected = denoised + u * (alpha - 1) + s * u * (1 - alpha)
    got = cfg_zero_star(step(input=X, cond_denoised=C, uncond_denoised=U, denoised=torch.from_numpy(denoised).float(),
                             cond_scale=s))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-4)


def test_cfg_norm_caps_each_pixels_channel_norm_at_the_positives():
    denoised = U + 6.0 * (C - U)
    got = CFGNorm(0.8)(step(input=X, cond_denoised=C, denoised=denoised))
    c, d = C.double().numpy(), denoised.double().numpy()
    ratio = np.clip(np.linalg.norm(c, axis=1, keepdims=True) / (np.linalg.norm(d, axis=1, keepdims=True) + 1e-8), 0, 1)
    np.testing.assert_allclose(got.numpy(), d * ratio * 0.8, rtol=1e-5, atol=1e-5)


# -- Perp-Neg ----------------------------------------------------------------------------------------------------------
def test_perp_neg_subtracts_only_the_negatives_part_perpendicular_to_the_positive():
    e = rand(*LATENT, seed=4)
    p, n = (C - e).double().numpy().ravel(), (U - e).double().numpy().ravel()
    perpendicular = n - (n @ p) / (p @ p) * p
    assert abs(perpendicular @ p) < 1e-6 * np.linalg.norm(p) * np.linalg.norm(n)
    expected = e.double().numpy().ravel() + 5.0 * (p - 0.7 * perpendicular)
    np.testing.assert_allclose(perp_neg(C, U, e, 0.7, 5.0).numpy().ravel(), expected, rtol=1e-5, atol=1e-5)


def single(model, conditioning, x):
    """The model's prediction for one prompt alone."""
    g = CFGGuider(model, conditioning, [], 1.0)
    g.prepare(x.shape, torch.device("cpu"))
    return calc_cond_batch(model, [g.conds["positive"]], x, SIGMA)[0]


def test_perp_neg_patch_and_guider_apply_the_formula_to_the_models_predictions():
    model, x = tiny_model(), latent(4)
    pos, neg, empty = prompt(1), prompt(2), prompt(3)
    d_pos, d_neg, d_empty = (single(model, c, x) for c in (pos, neg, empty))
    expected = perp_neg(d_pos, d_neg, d_empty, 0.5, 4.0)
    patched = guider(model.patched(cfg_function=PerpNeg(empty, 0.5)), cfg=4.0)
    # one- vs two-prompt batches: float32 rounding of the tiny U-Net (~1e-6), times cfg 4
    torch.testing.assert_close(patched(x, SIGMA), expected, rtol=1e-4, atol=1e-4)
    perp_guider = PerpNegGuider(model, pos, neg, empty, cfg=4.0, neg_scale=0.5)
    perp_guider.prepare(x.shape, torch.device("cpu"))
    torch.testing.assert_close(perp_guider(x, SIGMA), expected, rtol=1e-4, atol=1e-4)


def test_perp_neg_guider_runs_only_the_predictions_its_scales_need():
    model, x = tiny_model(), latent(4)
    for cfg, neg_scale, expected in ((4.0, 0.0, [[2, 0]]), (1.0, 0.0, [[0]]), (4.0, 1.0, [[2, 1, 0]])):
        calls = []

        def wrapper(apply, call):
            calls.append(call.cond_or_uncond)
            return apply(call.input, call.sigma, **call.c)

        g = PerpNegGuider(model.patched(model_function_wrapper=wrapper), prompt(1), prompt(2), prompt(3), cfg, neg_scale)
        g.prepare(x.shape, torch.device("cpu"))
        g(x, SIGMA)
        assert calls == expected


# -- SAG ---------------------------------------------------------------------------------------------------------------
def test_attention_scores_are_the_softmax_weights_per_row_and_head():
    q, k, v = rand(2, 16, 32, seed=1), rand(2, 16, 32, seed=2), rand(2, 16, 32, seed=3)
    out, weights = attention_with_scores(q, k, v, heads=4)
    qh, kh = q.view(2, 16, 4, 8).transpose(1, 2), k.view(2, 16, 4, 8).transpose(1, 2)
    expected = torch.softmax(qh @ kh.transpose(-1, -2) / 8**0.5, dim=-1).reshape(8, 16, 16)
    torch.testing.assert_close(weights, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out, attention(q, k, v, 4), rtol=1e-5, atol=1e-6)


def test_sag_records_the_negative_chunks_scores():
    sag, q = SelfAttentionGuidance(0.5, 2.0), rand(4, 16, 32, seed=5)
    hooks = UNetHooks(NO_PATCHES, SIGMA, [0, 1])
    hooks.n_heads = 4
    sag.attend_and_record(q, q, q, hooks)
    _, weights = attention_with_scores(q, q, q, 4)
    assert torch.equal(hooks.scratch(sag)["scores"], weights[8:16])  # rows 2, 3 (the second chunk) × 4 heads


def test_sag_blur_map_blurs_exactly_the_salient_tokens_regions():
    x0 = rand(2, 4, 16, 16, seed=6)
    scores = torch.softmax(rand(2 * 4, 16, 16, seed=7) * 3, dim=-1)
    got = blur_map(x0, scores, 2.0)
    salient = scores.reshape(2, 4, 16, 16).mean(1).sum(1) > 1.0          # [2, 16]: a 4×4 token grid
    mask = salient.reshape(2, 4, 4).repeat_interleave(4, 1).repeat_interleave(4, 2).numpy()[:, None]
    blurred = np.stack([[cv2.GaussianBlur(c, (9, 9), 2.0, borderType=cv2.BORDER_REFLECT_101) for c in img]
                        for img in x0.numpy()])
    assert 0 < mask.mean() < 1
    np.testing.assert_allclose(got.numpy(), blurred * mask + x0.numpy() * (1 - mask), rtol=1e-5, atol=1e-5)


def test_sag_steers_away_from_the_negatives_prediction_on_the_blurred_latent():
    model, x = tiny_model(), latent(4)
    sag = SelfAttentionGuidance(0.8, 2.0)
    g = guider(model.with_patches(sag.patches(model.patches)))
    run = g.run_for(None, None, None)
    got = g(x, SIGMA, run=run)
    cond, uncond = calc_cond_batch(model, [g.conds["positive"], g.conds["negative"]], x, SIGMA)
    degraded = blur_map(uncond, run.scratch(sag)["scores"], 2.0)
    (again,) = calc_cond_batch(model, [g.conds["negative"]], degraded + x - uncond, SIGMA)
    torch.testing.assert_close(got, uncond + 5.0 * (cond - uncond) + 0.8 * (degraded - again), rtol=1e-4, atol=1e-4)


# -- PAG ---------------------------------------------------------------------------------------------------------------
def test_pag_steers_away_from_the_positive_with_identity_middle_self_attention():
    model, x = tiny_model(), latent(4)
    g = guider(model.patched(post_cfg=PerturbedAttentionGuidance(2.0)))
    got = g(x, SIGMA)
    perturbed_unet = copy.deepcopy(model.unet)
    attn = perturbed_unet.middle_block[1].transformer_blocks[0].attn1
    attn.forward = lambda h, context=None: attn.to_out[0](attn.to_v(h))  # softmax(qkᵀ) → I
    perturbed = DiffusionModel.for_family(perturbed_unet, "sd1")
    cond, uncond = calc_cond_batch(model, [g.conds["positive"], g.conds["negative"]], x, SIGMA)
    (identity,) = calc_cond_batch(perturbed, [g.conds["positive"]], x, SIGMA)
    assert not torch.allclose(identity, cond, atol=1e-3)
    torch.testing.assert_close(got, uncond + 5.0 * (cond - uncond) + 2.0 * (cond - identity), rtol=1e-4, atol=1e-4)


def test_pag_at_scale_zero_costs_nothing():
    model, x = tiny_model(), latent(4)
    assert torch.equal(guider(model.patched(post_cfg=PerturbedAttentionGuidance(0.0)))(x, SIGMA), guider(model)(x, SIGMA))


# -- every guidance patch node on a tiny U-Net -------------------------------------------------------------------------
def _norm(a, axis):
    return np.sqrt((a**2).sum(axis=axis, keepdims=True))


def _rescale(x, c, u, s, sigma):
    sigma = per_sample(sigma)
    to_v = lambda d: (x / (sigma**2 + 1) - d) * np.sqrt(sigma**2 + 1) / sigma  # noqa: E731
    v_c, v_cfg = to_v(c), to_v(u) + s * (to_v(c) - to_v(u))
    std = lambda a: a.reshape(a.shape[0], -1).std(axis=1, ddof=1).reshape(-1, 1, 1, 1)  # noqa: E731
    v = 0.7 * v_cfg * std(v_c) / std(v_cfg) + 0.3 * v_cfg
    return x / (sigma**2 + 1) - v * sigma / np.sqrt(sigma**2 + 1)


def _apg(x, c, u, s, sigma):
    (modified,) = apg_reference([(sigma[0], c, u)], 0.5, 2.0, 0.25, s)
    return u + s * (modified - u)


def _tcfg(x, c, u, s, sigma):
    damped = []
    for b in range(x.shape[0]):
        un, cn = (x[b] - u[b]).ravel(), (x[b] - c[b]).ravel()
        _, _, vh = np.linalg.svd(np.stack([un, cn]), full_matrices=False)
        damped.append(x[b] - ((un @ vh[0]) * vh[0]).reshape(x[b].shape))
    u = np.stack(damped)
    return u + s * (c - u)


def _zero_star(x, c, u, s, sigma):
    pos, neg = (x - c).reshape(x.shape[0], -1), (x - u).reshape(x.shape[0], -1)
    alpha = per_sample((pos * neg).sum(1) / ((neg**2).sum(1) + 1e-8))
    return u + s * (c - u) + u * (alpha - 1) + s * u * (1 - alpha)


def _cfg_norm(x, c, u, s, sigma):
    d = u + s * (c - u)
    return d * np.clip(_norm(c, 1) / (_norm(d, 1) + 1e-8), 0, 1) * 1.5


NODE_FORMULAS = [("rescale_cfg", {"multiplier": 0.7}, _rescale),
                 ("apg", {"eta": 0.5, "norm_threshold": 2.0, "momentum": 0.25}, _apg),
                 ("tcfg", {}, _tcfg), ("cfg_zero_star", {}, _zero_star), ("cfg_norm", {"strength": 1.5}, _cfg_norm)]


@pytest.mark.parametrize("name, params, formula", NODE_FORMULAS, ids=[n for n, _, _ in NODE_FORMULAS])
def test_each_guidance_patch_node_applies_its_formula_to_a_tiny_unets_predictions(name, params, formula):
    import nodes.guidance_patches as nodes_module

    model, x = tiny_model(), latent(4) * 3
    g = guider(getattr(nodes_module, name)(model, **params), cfg=6.0)
    got = g(x, SIGMA)
    cond, uncond = calc_cond_batch(model, [g.conds["positive"], g.conds["negative"]], x, SIGMA)
    expected = formula(x.double().numpy(), cond.double().numpy(), uncond.double().numpy(), 6.0, SIGMA.tolist())
    # the predictions are the same batch as the guider's; the formulas in float32 against float64: ~1e-6
    # relative, times cfg 6 (TCFG's SVD: a few 1e-6 of the latent's norm)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-4)
    assert not np.allclose(got.numpy(), (uncond + 6.0 * (cond - uncond)).numpy(), atol=1e-3)
