"""Initial noise is ComfyUI's: a seeded CPU generator, float32, the latent's full shape; batch_index picks rows."""
from __future__ import annotations

import pytest
import torch

from nodes.sd.noise import DisableNoise, RandomNoise, prepare_noise


def test_noise_is_randn_of_the_full_shape_from_a_seeded_cpu_generator():
    latent = torch.zeros(2, 4, 5, 7)
    expected = torch.randn((2, 4, 5, 7), generator=torch.Generator().manual_seed(1234))
    noise = prepare_noise(latent, 1234)
    assert noise.dtype == torch.float32 and noise.device.type == "cpu"
    assert torch.equal(noise, expected)


def test_noise_ignores_the_latent_dtype_and_values():
    a = prepare_noise(torch.zeros(1, 4, 8, 8, dtype=torch.float16), 5)
    b = prepare_noise(torch.randn(1, 4, 8, 8), 5)
    assert a.dtype == torch.float32 and torch.equal(a, b)


def test_noise_does_not_touch_the_global_generator():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    prepare_noise(torch.zeros(1, 4, 4, 4), 99)
    assert torch.equal(torch.get_rng_state(), before)


def test_large_seeds_are_accepted():
    noise = prepare_noise(torch.zeros(1, 4, 2, 2), 0xFFFFFFFFFFFFFFFF)
    assert torch.equal(noise, torch.randn((1, 4, 2, 2), generator=torch.Generator().manual_seed(0xFFFFFFFFFFFFFFFF)))


def test_batch_index_draws_samples_one_by_one_and_keeps_the_requested_ones():
    """Row k is the batch_index[k]-th of single-sample draws from the seeded generator."""
    latent = torch.zeros(2, 4, 3, 3)
    g = torch.Generator().manual_seed(7)
    singles = [torch.randn((1, 4, 3, 3), generator=g) for _ in range(6)]
    noise = prepare_noise(latent, 7, batch_index=[5, 2])
    assert torch.equal(noise, torch.cat([singles[5], singles[2]]))


def test_batch_index_repeats_duplicates_in_order():
    noise = prepare_noise(torch.zeros(3, 4, 2, 2), 3, batch_index=[1, 0, 1])
    g = torch.Generator().manual_seed(3)
    first, second = torch.randn((1, 4, 2, 2), generator=g), torch.randn((1, 4, 2, 2), generator=g)
    assert torch.equal(noise, torch.cat([second, first, second]))


def test_batch_index_slice_of_a_batch_matches_the_batch():
    """For latents whose per-image size is a multiple of 16 values, a one-image re-run reproduces its row."""
    full = prepare_noise(torch.zeros(4, 4, 8, 8), 11)
    assert torch.equal(prepare_noise(torch.zeros(1, 4, 8, 8), 11, batch_index=[2]), full[2:3])


def test_bad_batch_index_is_rejected():
    with pytest.raises(ValueError, match="batch_index"):
        prepare_noise(torch.zeros(1, 4, 2, 2), 1, batch_index=[-1])


def test_random_noise_reads_the_latent_dict():
    latent = {"samples": torch.zeros(1, 4, 4, 4), "batch_index": [3]}
    noise = RandomNoise(21)
    assert noise.seed == 21
    assert torch.equal(noise.generate_noise(latent), prepare_noise(latent["samples"], 21, [3]))


def test_disable_noise_is_zeros_with_seed_zero():
    noise = DisableNoise()
    assert noise.seed == 0
    out = noise.generate_noise({"samples": torch.ones(2, 4, 3, 3)})
    assert out.shape == (2, 4, 3, 3) and not out.any()
