"""DifferentialDiffusion against its stated formula (written out again here): at each step the soft
noise mask m becomes [m ≥ τ], τ = (t(σ) − t(σ_to)) / (t(σ_from) − t(σ_to)) with SD's timesteps, blended
with m for 0 < strength < 1 — and a whole masked Euler run with it against a hand-written loop."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from patchkit import guider, prompt, tiny_model

from nodes.model_patches import differential_diffusion
from nodes.sd import ksampler as K
from nodes.sd.patches import SamplingRun

SHAPE = (1, 4, 16, 16)


def sd_log_sigmas() -> np.ndarray:
    """SD's 1000 discrete log σ (β from 0.00085 to 0.012, linear in √β), in float64."""
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
    alphas = np.cumprod(1.0 - betas)
    return np.log(np.sqrt((1.0 - alphas) / alphas))


def timestep(sigma: float) -> int:
    """The training timestep nearest to σ in log σ (the float32 table, as the model keeps it)."""
    table = sd_log_sigmas().astype(np.float32)
    return int(np.abs(np.float32(np.log(np.float32(sigma))) - table).argmin())


def expected_mask(mask: np.ndarray, sigma: float, sigmas: list[float], strength: float = 1.0) -> np.ndarray:
    sigma_min = float(np.exp(sd_log_sigmas()[0]))
    t_from, t_to = timestep(sigmas[0]), timestep(max(sigma_min, sigmas[-1]))
    tau = (timestep(sigma) - t_to) / (t_from - t_to)
    binary = (mask >= tau).astype(mask.dtype)
    if 0 < strength < 1:
        return strength * binary + (1 - strength) * mask
    return binary


def soft_mask() -> torch.Tensor:
    """A left-to-right ramp from 0 to 1 over the 16 latent columns, [1, 1, 16, 16]."""
    return torch.linspace(0, 1, 16).reshape(1, 1, 1, 16).expand(1, 1, 16, 16).contiguous()


@pytest.mark.parametrize("strength", [1.0, 0.6, 0.0])
def test_the_mask_hook_thresholds_the_soft_mask_at_each_steps_remaining_share(strength):
    model = differential_diffusion(tiny_model(), strength=strength)
    sigmas = K.ksampler_sigmas(model.model_sampling, "karras", 6)
    run = SamplingRun(model, sigmas=sigmas)
    mask = soft_mask().expand(1, 4, 16, 16)
    hook = model.patches.denoise_mask_function
    for sigma in sigmas[:-1]:
        got = hook(sigma.reshape(1), mask, run)
        expected = expected_mask(mask.numpy(), float(sigma), sigmas.tolist(), strength)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6, atol=1e-6)
    first = hook(sigmas[:1], mask, run)
    assert strength < 1 or (first[..., :-1] == 0).all()  # at the first step only mask value 1 repaints


def test_a_partial_schedule_thresholds_within_its_own_range():
    """τ runs from the run's first σ to its last, not over the model's whole range (img2img, denoise < 1)."""
    model = differential_diffusion(tiny_model(), strength=1.0)
    sigmas = K.ksampler_sigmas(model.model_sampling, "normal", 4, denoise=0.5)
    run = SamplingRun(model, sigmas=sigmas)
    mask = soft_mask()
    for sigma in sigmas[:-1]:
        got = model.patches.denoise_mask_function(sigma.reshape(1), mask, run)
        np.testing.assert_array_equal(got.numpy(), expected_mask(mask.numpy(), float(sigma), sigmas.tolist()))


def test_a_masked_euler_run_equals_a_hand_written_differential_diffusion_loop():
    base = tiny_model()
    model = differential_diffusion(base, strength=1.0)
    start = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(4))
    sigmas = K.ksampler_sigmas(base.model_sampling, "karras", 5, denoise=0.8)
    latent = {"samples": start, "noise_mask": soft_mask()}
    got = K.sample(model, latent, prompt(1), prompt(2), seed=0, steps=5, cfg=5.0, sampler_name="euler",
                   scheduler="karras", noise=noise, sigmas=sigmas)["samples"]

    denoise = guider(base, cfg=5.0, shape=SHAPE)  # the unpatched model: the mask is done by hand below
    clean = start * base.latent_scale
    x = clean + noise * sigmas[0]
    with torch.no_grad():
        for i in range(len(sigmas) - 1):
            s = sigmas[i]
            m = torch.from_numpy(expected_mask(soft_mask().numpy(), float(s), sigmas.tolist())).expand(SHAPE)
            x_in = x * m + (clean + noise * s) * (1 - m)
            d = denoise(x_in, s.reshape(1)) * m + clean * (1 - m)
            x = x + (x - d) / s * (sigmas[i + 1] - s)
    expected = x / base.latent_scale
    # the same float32 operations in the same order, but the hand loop's blends are written apart: a few
    # ulps per step, 5 steps
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    plain = K.sample(base, latent, prompt(1), prompt(2), seed=0, steps=5, cfg=5.0, sampler_name="euler",
                     scheduler="karras", noise=noise, sigmas=sigmas)["samples"]
    assert (got - plain).abs().max() > 1e-2  # not the soft mask used as it is


def test_without_a_noise_mask_the_patch_changes_nothing():
    base = tiny_model()
    kwargs = dict(seed=5, steps=3, cfg=5.0, sampler_name="euler", scheduler="normal")
    latent = {"samples": torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))}
    plain = K.sample(base, latent, prompt(1), prompt(2), denoise=0.7, **kwargs)
    patched = K.sample(differential_diffusion(base, strength=1.0), latent, prompt(1), prompt(2), denoise=0.7,
                       **kwargs)
    assert torch.equal(plain["samples"], patched["samples"])
