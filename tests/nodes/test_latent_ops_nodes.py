"""Latent arithmetic, transform and batch nodes against numpy transcriptions of ComfyUI's formulas."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nodes.latent_ops import (latent_add, latent_batch, latent_batch_seed_behavior, latent_blend, latent_composite,
                              latent_crop, latent_flip, latent_interpolate, latent_multiply, latent_rotate,
                              latent_subtract, repeat_latent_batch)


def latent(*shape, seed=0, **extra):
    return {"samples": torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), **extra}


def test_latent_add_subtract_multiply():
    a, b = latent(2, 4, 5, 6, seed=1), latent(2, 4, 5, 6, seed=2)
    torch.testing.assert_close(latent_add(a, b)["samples"], a["samples"] + b["samples"])
    torch.testing.assert_close(latent_subtract(a, b)["samples"], a["samples"] - b["samples"])
    torch.testing.assert_close(latent_multiply(a, -1.5)["samples"], a["samples"] * -1.5)


def test_latent_add_repeats_a_shorter_second_batch_and_cuts_a_longer_one():
    a, b = latent(3, 4, 2, 2, seed=1), latent(2, 4, 2, 2, seed=2)
    torch.testing.assert_close(latent_add(a, b)["samples"], a["samples"] + b["samples"][[0, 1, 0]])
    torch.testing.assert_close(latent_add(b, a)["samples"], b["samples"] + a["samples"][:2])


def test_latent_add_keeps_the_first_inputs_other_entries():
    a = latent(1, 4, 2, 2, noise_mask=torch.ones(1, 1, 2, 2), batch_index=[7])
    out = latent_add(a, latent(1, 4, 2, 2))
    assert out["batch_index"] == [7] and out["noise_mask"] is a["noise_mask"]


def test_latents_of_different_models_are_refused_naming_both():
    with pytest.raises(ValueError, match=r"samples1 \(1, 4, 2, 2\) and samples2 \(1, 16, 2, 2\) have 4 and 16 "
                                         "channels"):
        latent_add(latent(1, 4, 2, 2), latent(1, 16, 2, 2))


def interpolate_reference(s1, s2, r):
    """Per latent pixel: directions mixed by r and renormalised, lengths mixed linearly."""
    m1 = np.linalg.norm(s1, axis=1, keepdims=True)
    m2 = np.linalg.norm(s2, axis=1, keepdims=True)
    t = s1 / m1 * r + s2 / m2 * (1 - r)
    return t / np.linalg.norm(t, axis=1, keepdims=True) * (m1 * r + m2 * (1 - r))


@pytest.mark.parametrize("ratio", [0.0, 0.3, 1.0])
def test_latent_interpolate_mixes_directions_and_lengths(ratio):
    a, b = latent(2, 4, 3, 5, seed=1), latent(2, 4, 3, 5, seed=2)
    out = latent_interpolate(a, b, ratio)["samples"].numpy()
    np.testing.assert_allclose(out, interpolate_reference(a["samples"].numpy(), b["samples"].numpy(), ratio),
                               rtol=1e-5, atol=1e-6)


def test_latent_interpolate_treats_zero_vectors_as_zero():
    a, b = latent(1, 4, 2, 2, seed=1), {"samples": torch.zeros(1, 4, 2, 2)}
    out = latent_interpolate(a, b, 0.25)["samples"]
    torch.testing.assert_close(out, a["samples"] * 0.25)
    assert torch.isfinite(out).all()


def test_latent_blend_weights_samples1_by_the_factor():
    a, b = latent(2, 4, 3, 3, seed=1), latent(1, 4, 3, 3, seed=2)
    torch.testing.assert_close(latent_blend(a, b, 0.2)["samples"], a["samples"] * 0.2 + b["samples"] * 0.8)


def test_latent_blend_refuses_batches_that_do_not_combine():
    with pytest.raises(ValueError, match=r"\(2, 4, 3, 3\) and samples2 \(3, 4, 3, 3\) have batches of 2 and 3"):
        latent_blend(latent(2, 4, 3, 3), latent(3, 4, 3, 3), 0.5)


def composite_reference(to, src, x, y, feather):
    """ComfyUI's LatentComposite: paste, with (t+1)/feather ramps on the edges inside ``to``."""
    out = to.copy()
    h, w = min(src.shape[2], to.shape[2] - y), min(src.shape[3], to.shape[3] - x)
    src = src[:, :, :h, :w]
    mask = np.ones_like(src)
    for t in range(feather):
        r = (t + 1) / feather
        if y != 0:
            mask[:, :, t] *= r
        if y + h < to.shape[2]:
            mask[:, :, h - 1 - t] *= r
        if x != 0:
            mask[:, :, :, t] *= r
        if x + w < to.shape[3]:
            mask[:, :, :, w - 1 - t] *= r
    out[:, :, y:y + h, x:x + w] = src * mask + out[:, :, y:y + h, x:x + w] * (1 - mask)
    return out


@pytest.mark.parametrize("x,y,feather", [(0, 0, 0), (16, 8, 0), (16, 8, 16), (0, 24, 8), (40, 40, 24)])
def test_latent_composite_pastes_with_feathered_inner_edges(x, y, feather):
    to, src = latent(2, 4, 8, 9, seed=1), latent(2, 4, 6, 6, seed=2)
    out = latent_composite(to, src, x, y, feather)["samples"].numpy()
    np.testing.assert_allclose(out, composite_reference(to["samples"].numpy(), src["samples"].numpy(), x // 8, y // 8,
                                                        feather // 8), atol=1e-6)


def test_latent_composite_refuses_a_source_batch_that_does_not_fit():
    with pytest.raises(ValueError, match=r"samples_to \(2, 4, 8, 8\) and samples_from \(3, 4, 4, 4\) have batches"):
        latent_composite(latent(2, 4, 8, 8), latent(3, 4, 4, 4), 0, 0, 0)


def test_latent_batch_appends_and_keeps_each_latents_batch_position():
    a, b = latent(2, 4, 4, 4, seed=1), latent(3, 4, 2, 2, seed=2, batch_index=[4, 5, 6])
    out = latent_batch(a, b)
    assert out["samples"].shape == (5, 4, 4, 4) and out["batch_index"] == [0, 1, 4, 5, 6]
    torch.testing.assert_close(out["samples"][:2], a["samples"])


def test_seed_behaviour_fixed_gives_every_latent_the_first_position_and_random_forgets_them():
    samples = latent(3, 4, 2, 2, batch_index=[5, 6, 7])
    assert latent_batch_seed_behavior(samples, "fixed")["batch_index"] == [5, 5, 5]
    assert "batch_index" not in latent_batch_seed_behavior(samples, "random")
    assert latent_batch_seed_behavior(latent(2, 4, 2, 2), "fixed")["batch_index"] == [0, 0]


@pytest.mark.parametrize("rotation,turns", [("none", 0), ("90 degrees", 1), ("180 degrees", 2), ("270 degrees", 3)])
def test_latent_rotate_turns_clockwise_like_image_rotate(rotation, turns):
    samples = latent(1, 4, 3, 5)
    expected = np.rot90(samples["samples"].numpy(), k=-turns, axes=(2, 3))
    np.testing.assert_array_equal(latent_rotate(samples, rotation)["samples"].numpy(), expected)


@pytest.mark.parametrize("method,axis", [("x-axis: vertically", 2), ("y-axis: horizontally", 3)])
def test_latent_flip(method, axis):
    samples = latent(1, 4, 3, 5)
    np.testing.assert_array_equal(latent_flip(samples, method)["samples"].numpy(),
                                  np.flip(samples["samples"].numpy(), axis))


def test_latent_crop_works_in_latent_pixels_and_keeps_at_least_eight():
    samples = latent(1, 4, 12, 16)
    np.testing.assert_array_equal(latent_crop(samples, 64, 72, 16, 24)["samples"].numpy(),
                                  samples["samples"].numpy()[:, :, 3:12, 2:10])
    # x = 200 px = 25 latent px is moved back to 16 − 8 = 8
    np.testing.assert_array_equal(latent_crop(samples, 64, 64, 200, 0)["samples"].numpy(),
                                  samples["samples"].numpy()[:, :, 0:8, 8:16])


def test_repeat_latent_batch_repeats_masks_and_continues_batch_positions():
    samples = latent(2, 4, 2, 2, noise_mask=torch.rand(2, 1, 16, 16), batch_index=[3, 4])
    out = repeat_latent_batch(samples, 3)
    assert out["samples"].shape == (6, 4, 2, 2) and out["batch_index"] == [3, 4, 5, 6, 7, 8]
    torch.testing.assert_close(out["noise_mask"], samples["noise_mask"].repeat(3, 1, 1, 1))
