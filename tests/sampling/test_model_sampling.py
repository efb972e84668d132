"""ModelSamplingDiscrete: SD's discrete schedule, σ ↔ timestep, and the U-Net's input/output scaling."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nodes.sd.model_sampling import ModelSamplingDiscrete


@pytest.fixture(scope="module")
def ms():
    return ModelSamplingDiscrete()


def test_sigma_table_is_sd_scaled_linear_schedule(ms):
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
    alphas_cumprod = np.cumprod(1 - betas)
    expected = np.sqrt((1 - alphas_cumprod) / alphas_cumprod)
    np.testing.assert_allclose(ms.sigmas.numpy(), expected, rtol=1e-6)
    assert ms.sigmas.dtype == torch.float32


def test_sigma_table_matches_diffusers_scaled_linear_scheduler(ms):
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                             num_train_timesteps=1000)
    ac = sched.alphas_cumprod.double().numpy()
    # diffusers accumulates the product in float32, hence the looser tolerance
    np.testing.assert_allclose(ms.sigmas.numpy(), np.sqrt((1 - ac) / ac), rtol=2e-4)


def test_sigma_range_is_sd_s(ms):
    assert float(ms.sigma_min) == pytest.approx(0.0291675, abs=1e-6)
    assert float(ms.sigma_max) == pytest.approx(14.614642, abs=1e-5)


def test_timestep_of_each_table_sigma_is_its_index(ms):
    assert torch.equal(ms.timestep(ms.sigmas), torch.arange(1000))


def test_timestep_is_nearest_in_log_sigma(ms):
    lo, hi = ms.sigmas[500], ms.sigmas[501]
    just_below_geometric_mean = (lo * hi).sqrt() * 0.9999
    just_above = (lo * hi).sqrt() * 1.0001
    assert int(ms.timestep(just_below_geometric_mean)) == 500
    assert int(ms.timestep(just_above)) == 501


def test_sigma_interpolates_log_sigma_between_timesteps(ms):
    assert torch.allclose(ms.sigma(torch.arange(1000).float()), ms.sigmas, rtol=1e-6, atol=0)
    half = ms.sigma(torch.tensor(250.5))
    assert float(half) == pytest.approx(math.sqrt(float(ms.sigmas[250]) * float(ms.sigmas[251])), rel=1e-6)
    assert float(ms.sigma(torch.tensor(-5.0))) == pytest.approx(float(ms.sigma_min))
    assert float(ms.sigma(torch.tensor(2000.0))) == pytest.approx(float(ms.sigma_max))


def test_percent_to_sigma(ms):
    assert ms.percent_to_sigma(0.0) == 999999999.9
    assert ms.percent_to_sigma(1.0) == 0.0
    assert ms.percent_to_sigma(0.5) == pytest.approx(float(ms.sigma(torch.tensor(499.5))), rel=1e-6)


def test_calculate_input_scales_to_unit_variance(ms):
    x = torch.full((2, 4, 3, 3), 3.0)
    sigma = torch.tensor([0.0, 2.0])
    out = ms.calculate_input(sigma, x)
    assert torch.allclose(out[0], x[0])
    assert torch.allclose(out[1], x[1] / math.sqrt(5.0))


def test_eps_prediction_recovers_clean_latent():
    ms = ModelSamplingDiscrete("eps")
    x0, eps = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    sigma = torch.tensor([0.5, 7.0])
    noisy = x0 + eps * sigma.view(-1, 1, 1, 1)
    assert torch.allclose(ms.calculate_denoised(sigma, eps, noisy), x0, atol=1e-5)


def test_v_prediction_recovers_clean_latent():
    """For the U-Net input α·x0 + σ_vp·ε (α = 1/√(1+σ²), σ_vp = σα) the v target is α·ε − σ_vp·x0."""
    ms = ModelSamplingDiscrete("v")
    x0, eps = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    sigma = torch.tensor([0.5, 7.0]).view(-1, 1, 1, 1)
    alpha = 1 / (1 + sigma**2).sqrt()
    v = alpha * eps - sigma * alpha * x0
    assert torch.allclose(ms.calculate_denoised(sigma.flatten(), v, x0 + sigma * eps), x0, atol=1e-5)


def test_full_denoise_start_has_the_total_standard_deviation(ms):
    noise, latent = torch.ones(1, 4, 2, 2), torch.full((1, 4, 2, 2), 0.5)
    sigma = ms.sigma_max
    full = ms.noise_scaling(sigma, noise, latent, max_denoise=True)
    partial = ms.noise_scaling(sigma, noise, latent, max_denoise=False)
    assert torch.allclose(full, 0.5 + torch.sqrt(1 + sigma**2).expand_as(full))
    assert torch.allclose(partial, 0.5 + sigma.expand_as(partial))


def test_max_denoise_when_schedule_starts_at_sigma_max(ms):
    assert ms.is_max_denoise(torch.tensor([float(ms.sigma_max), 0.0]))
    assert ms.is_max_denoise(torch.tensor([float(ms.sigma_max) * (1 - 1e-6), 0.0]))
    assert not ms.is_max_denoise(torch.tensor([5.0, 0.0]))


def test_unknown_prediction_is_rejected():
    with pytest.raises(ValueError, match="prediction must be one of eps, v, x0, img_to_img, lcm"):
        ModelSamplingDiscrete("flow")
